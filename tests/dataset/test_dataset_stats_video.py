"""Building blocks: statistics (exactness, aggregation) and video (timestamps in joined files)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from synthetic_dataset import expected_image

from edgevla.dataset import stats
from edgevla.dataset.video import (
    VideoSettings,
    available_encoders,
    concat_videos,
    decode_video,
    encode_video,
    probe_video,
)


def test_image_stats_are_exact() -> None:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (7, 16, 20, 3), dtype=np.uint8)
    frames[..., 2] //= 4  # a channel with another range
    s = stats.image_stats(frames)
    flat = frames.reshape(-1, 3).astype(np.float64) / 255
    assert s["count"].tolist() == [7]
    for name, q in zip(stats.QUANTILE_KEYS, stats.QUANTILES, strict=True):
        expected = np.quantile(flat, q, axis=0, method="inverted_cdf")
        np.testing.assert_allclose(s[name].ravel(), expected, atol=1e-12)
    np.testing.assert_allclose(s["mean"].ravel(), flat.mean(0), atol=1e-12)
    np.testing.assert_allclose(s["std"].ravel(), flat.std(0), atol=1e-12)
    assert s["min"].shape == (3, 1, 1)


def test_aggregate_equals_direct() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 6)) * 3 + 1
    parts = [stats.vector_stats(x[:20]), stats.vector_stats(x[20:])]
    agg, direct = stats.aggregate(parts), stats.vector_stats(x)
    for name in ("min", "max", "mean", "std", "count"):
        np.testing.assert_allclose(agg[name], direct[name], atol=1e-12)
    assert stats.vector_stats(np.arange(5.0))["mean"].shape == (1,)


def test_decode_by_timestamps_in_a_joined_file(tmp_path: Path) -> None:
    lengths = [7, 4, 9]
    parts = []
    for e, n in enumerate(lengths):
        path = tmp_path / f"e{e}.mp4"
        encode_video(np.stack([expected_image(e, t) for t in range(n)]), path, fps=30)
        parts.append(path)
    joined = tmp_path / "joined.mp4"
    assert concat_videos(parts, joined) == lengths
    probe = probe_video(joined, count_packets=True)
    assert probe.frames == probe.packets == sum(lengths) and probe.codec == "av1"
    start = 0
    for e, n in enumerate(lengths):
        frames = decode_video(joined, start / 30, (start + n) / 30, fps=30)
        assert len(frames) == n
        # camera pattern e: the lit rows of channel (e+1) % 3 number 4t+4 in frame t
        lit = [(f[..., (e + 1) % 3].mean(axis=1) > 100).sum() for f in frames]
        assert np.abs(np.array(lit) - (4 * np.arange(n) + 4)).max() <= 1
        start += n


def test_video_settings_validation() -> None:
    assert "libsvtav1" in available_encoders()  # PyAV's wheel here; AV1 is LeRobot's default
    assert VideoSettings.av1().codec == "av1" and VideoSettings.h264().codec == "h264"
    with pytest.raises(ValueError, match="not in PyAV's FFmpeg build"):
        VideoSettings(encoder="libnothing")
    with pytest.raises(ValueError, match="B-frames"):
        VideoSettings(encoder="libx264", preset="ultrafast", extra_options={"bf": "3"})
    info = VideoSettings.av1().info_block(96, 128, 30)
    assert VideoSettings.from_info_block(info) == VideoSettings.av1()
