"""Encoding cannot block a recording forever (issue #15): each camera is encoded by a worker
process with a deadline; a late or dead worker is killed, its partial file deleted, and the
encoding retried, then given up with a clear error. Ctrl-C stops it at once.

The encoder is real (PyAV, libsvtav1); only the stall is injected, through the worker's
test-only fault hook, which makes the chosen attempts block every signal and sleep forever
after a few frames, like a thread stuck in svt_av1_enc_get_packet.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from synthetic_dataset import check_video, expected_image

from edgevla.dataset import video
from edgevla.dataset.video import (
    EncodeLimits,
    VideoEncodeTimeout,
    VideoSettings,
    decode_video,
    encode_video,
    encoding_retries,
)

# 2 s: far more than 12 small frames need, even on a loaded machine
FAST = EncodeLimits(min_timeout_s=2.0, timeout_s_per_megapixel_frame=0.0, retries=2)


def frames(n: int = 12) -> np.ndarray:
    return np.stack([expected_image(1, t) for t in range(n)])


@pytest.fixture
def fault(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """fault(attempts, mode) arms the worker fault hook; returns the file the faulty worker
    writes its pid to when it starts misbehaving."""
    pid_file = tmp_path / "faulty-worker.pid"

    def arm(attempts: list[int], mode: str = "hang") -> Path:
        spec = {"attempts": attempts, "mode": mode, "after_frames": 3, "pid_file": str(pid_file)}
        monkeypatch.setattr(video, "_FAULT_INJECTION_FOR_TESTS", spec)
        return pid_file

    return arm


def dead(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.suffix == ".partial")


def test_output_is_the_in_process_encoding_byte_for_byte(tmp_path: Path) -> None:
    for settings in (VideoSettings.av1(), VideoSettings.h264()):
        result = encode_video(frames(), tmp_path / "worker.mp4", 30, settings)
        encode_video(frames(), tmp_path / "direct.mp4", 30, settings, EncodeLimits(isolate=False))
        assert (tmp_path / "worker.mp4").read_bytes() == (tmp_path / "direct.mp4").read_bytes()
        assert result.attempts == 1 and result.retries == 0 and result.frames == 12
    assert leftovers(tmp_path) == []


def test_a_stuck_encoder_is_killed_and_the_episode_encoded_again(
    tmp_path: Path, fault, caplog: pytest.LogCaptureFixture
) -> None:
    encode_video(frames(), tmp_path / "warm.mp4", 30)  # worker started: time only the stall
    pid_file = fault([1])
    before = encoding_retries()
    with caplog.at_level(logging.WARNING, logger=video.__name__):
        result = encode_video(
            frames(), tmp_path / "top.mp4", 30, limits=FAST, what="episode 3, camera top"
        )
    assert result.attempts == 2 and result.retries == 1
    assert encoding_retries() == before + 1
    stuck = int(pid_file.read_text())
    assert dead(stuck)  # killed, not left hanging
    assert "episode 3, camera top" in caplog.text and "no result after 2 s" in caplog.text
    assert "attempt 2 of 3" in caplog.text
    check_video(decode_video(tmp_path / "top.mp4"), 1)
    assert (tmp_path / "top.mp4").read_bytes() == (tmp_path / "warm.mp4").read_bytes()
    assert leftovers(tmp_path) == []


def test_a_crashed_worker_is_retried(tmp_path: Path, fault) -> None:
    fault([1], mode="exit")
    result = encode_video(frames(), tmp_path / "top.mp4", 30, limits=FAST)
    assert result.retries == 1
    check_video(decode_video(tmp_path / "top.mp4"), 1)
    assert leftovers(tmp_path) == []


def test_gives_up_after_the_retries_with_a_clear_error(tmp_path: Path, fault) -> None:
    encode_video(frames(), tmp_path / "warm.mp4", 30)
    fault([1, 2])
    before = encoding_retries()
    target = tmp_path / "episode-000017.1a2b3c4d" / "observation.images.top.mp4"
    target.parent.mkdir()
    limits = EncodeLimits(min_timeout_s=1.0, timeout_s_per_megapixel_frame=0.0, retries=1)
    with pytest.raises(VideoEncodeTimeout) as e:
        encode_video(frames(), target, 30, limits=limits)
    message = str(e.value)
    assert "episode-000017.1a2b3c4d/observation.images.top.mp4" in message
    assert "failed 2 times" in message and "--resume" in message and "--codec h264" in message
    assert "no result after 1 s" in message
    assert e.value.attempts == 2 and e.value.path == target
    assert encoding_retries() == before + 1
    assert not target.exists() and leftovers(target.parent) == []


def test_ctrl_c_during_encoding_stops_at_once_and_leaves_no_file(
    tmp_path: Path, fault, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid_file = fault([1])
    target = tmp_path / "top.mp4"
    sent: list[float] = []

    def interrupt_when_stuck() -> None:
        while not pid_file.exists():
            time.sleep(0.02)
        time.sleep(0.3)
        sent.append(time.monotonic())
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_when_stuck, daemon=True).start()
    patient = EncodeLimits(min_timeout_s=60.0)
    with pytest.raises(KeyboardInterrupt):
        encode_video(frames(), target, 30, limits=patient)
    assert time.monotonic() - sent[0] < 1.5
    assert dead(int(pid_file.read_text()))
    assert not target.exists() and leftovers(tmp_path) == []
    monkeypatch.setattr(video, "_FAULT_INJECTION_FOR_TESTS", None)  # the next encoding works
    assert encode_video(frames(), target, 30).attempts == 1


def test_limits() -> None:
    limits = EncodeLimits()
    assert limits.timeout_s(300, 96, 128) == 30.0  # short episodes get the floor
    assert limits.timeout_s(900, 480, 640) == pytest.approx(900 * 0.3072)  # scales with pixels
    for bad in ({"min_timeout_s": 0}, {"retries": -1}, {"timeout_s_per_megapixel_frame": -1}):
        with pytest.raises(ValueError):
            EncodeLimits(**bad)


def test_errors_of_the_encoder_are_not_retried(tmp_path: Path) -> None:
    settings = VideoSettings(encoder="libx264", preset="no-such-preset", extra_options={"bf": "0"})
    with pytest.raises(video.VideoError, match="cannot encode"):
        encode_video(frames(), tmp_path / "top.mp4", 30, settings)
    assert not (tmp_path / "top.mp4").exists() and leftovers(tmp_path) == []
    with pytest.raises(FileNotFoundError):
        encode_video(frames(), tmp_path / "missing" / "top.mp4", 30)
