"""kill -9 the writer mid-episode, mid-finalize and at random instants; resume must keep every
completed episode intact, hold no partial one, and leave only files pyarrow and PyAV read."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq
import pytest
from synthetic_dataset import expected_state, golden_episode

from edgevla.dataset.lerobot.layout import DatasetFormatError
from edgevla.dataset.lerobot.reader import LeRobotDatasetReader
from edgevla.dataset.lerobot.writer import LeRobotDatasetWriter

SCRIPT = Path(__file__).with_name("crash_writer.py")
LENGTH = 12  # crash_writer.LENGTH


def start(root: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), str(root), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(proc: subprocess.Popen, marker: str, timeout: float = 60) -> list[str]:
    lines, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"writer exited before {marker!r}: {proc.stderr.read()}")
        lines.append(line.strip())
        if line.strip() == marker:
            return lines
    raise AssertionError(f"timed out waiting for {marker!r}")


def kill9(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    proc.stdout.close()
    proc.stderr.close()


def assert_files_readable(root: Path) -> None:
    """Every file a reader could meet opens cleanly (staging leftovers included)."""
    for path in root.rglob("*"):
        if not path.is_file() or path.name == "LOCK":
            continue
        if path.suffix == ".parquet":
            pq.read_table(path)
        elif path.suffix == ".mp4":
            with av.open(str(path)) as c:
                assert sum(1 for _ in c.decode(video=0)) > 0
        elif path.suffix == ".json":
            json.loads(path.read_text())


def finish_and_verify(root: Path, n: int) -> None:
    """Resume, record what is missing, finalize, and check every episode's content."""
    writer, done = LeRobotDatasetWriter.open_for_resume(root)
    with writer:
        for e in sorted(set(range(n)) - done):
            writer.add_episode(
                golden_episode(e, LENGTH),
                episode_index=e,
                metadata={"split": "train", "plan_seed": 1000 + e},
            )
        writer.finalize()
    reader = LeRobotDatasetReader(root)
    assert reader.num_episodes == n
    assert [ep["plan_seed"] for ep in reader.episodes] == [1000 + e for e in range(n)]
    for e in range(n):
        np.testing.assert_array_equal(reader.frames(e).state, expected_state(e, LENGTH))
        top = reader.video(e, "top")
        assert len(top) == LENGTH
        assert abs(np.median(top[-1, ..., 0]) - 10 * (LENGTH - 1)) <= 6
    assert not (root / ".edgevla_staging").exists()


def test_kill_mid_episode_keeps_completed_and_drops_partial(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    proc = start(root, "--episodes", "4", "--pause-at", "episode")
    lines = wait_for(proc, "PAUSED")
    assert lines == ["done 0", "done 1", "PAUSED"]
    partial = list((root / ".edgevla_staging" / "tmp").iterdir())
    assert partial, "the kill should happen with a partial episode on disk"
    kill9(proc)

    writer, done = LeRobotDatasetWriter.open_for_resume(root)
    assert done == {0, 1}
    assert writer.calibration == {"seed": 7}
    assert not list((root / ".edgevla_staging" / "tmp").iterdir())
    assert sorted(p.name for p in (root / ".edgevla_staging" / "episodes").iterdir()) == [
        "episode-000000",
        "episode-000001",
    ]
    writer.close()
    assert_files_readable(root)
    finish_and_verify(root, 4)


@pytest.mark.parametrize("point", ["build", "commit", "cleanup"])
def test_kill_mid_finalize_is_completed_or_rolled_back(tmp_path: Path, point: str) -> None:
    root = tmp_path / "ds"
    proc = start(root, "--episodes", "3", "--finalize", "--pause-at", point)
    wait_for(proc, "PAUSED")
    kill9(proc)
    if point == "commit":  # between the commit marker and meta/info.json
        with pytest.raises(DatasetFormatError, match="finalize was interrupted"):
            LeRobotDatasetReader(root)

    writer, done = LeRobotDatasetWriter.open_for_resume(root)
    assert done == {0, 1, 2}
    # build: rolled back (still staged); commit/cleanup: completed (published)
    assert writer.staged_episodes == ({0, 1, 2} if point == "build" else set())
    writer.close()
    assert_files_readable(root)
    finish_and_verify(root, 3)


@pytest.mark.slow
def test_kill_at_random_instants(tmp_path: Path) -> None:
    """Kills wherever they land (encoding, fsync, rename, finalize); 3 rounds, ~6 s."""
    rng = random.Random(1234)
    for round_ in range(3):
        root = tmp_path / f"ds{round_}"
        proc = start(root, "--episodes", "5", "--finalize")
        wait_for(proc, "done 0")
        time.sleep(rng.uniform(0.0, 0.3))  # the 5 episodes + finalize take ~0.4 s
        kill9(proc)
        writer, done = LeRobotDatasetWriter.open_for_resume(root)
        assert done == set(range(len(done))), done  # episodes are written in order
        writer.close()
        assert_files_readable(root)
        finish_and_verify(root, 5)


def test_leftovers_of_interrupted_housekeeping_are_cleaned(tmp_path: Path) -> None:
    """What a kill leaves inside atomic_write (finalize.json temp) or remove_tree (a directory
    renamed aside, here the staging directory itself during close) is removed on resume."""
    root = tmp_path / "ds"
    proc = start(root, "--episodes", "2")
    proc.communicate(timeout=60)
    (root / ".edgevla_staging" / ".finalize.json.1234abcd.tmp").write_text('{"half": ')
    aside = root / "..edgevla_staging.1234abcd.deleting" / "tmp"
    aside.mkdir(parents=True)
    finish_and_verify(root, 3)
    assert sorted(p.name for p in root.iterdir()) == ["data", "meta", "videos"]
