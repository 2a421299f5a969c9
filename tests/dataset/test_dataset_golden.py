"""Our reader on the dataset LeRobot 0.6.1 wrote itself: every known value comes back."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest
from edgevla_runtime.features import CAMERA_NAMES, JOINT_FEATURE_NAMES, ROBOT_TYPE, TASK
from synthetic_dataset import GOLDEN_ROOT, check_video, expected_state

from edgevla.dataset.lerobot.reader import LeRobotDatasetReader


@pytest.fixture(scope="module")
def golden() -> LeRobotDatasetReader:
    return LeRobotDatasetReader(GOLDEN_ROOT)


def test_metadata(golden: LeRobotDatasetReader) -> None:
    assert golden.fps == 30
    assert golden.robot_type == ROBOT_TYPE
    assert golden.num_episodes == 2 and golden.num_frames == 40
    assert golden.cameras == list(CAMERA_NAMES)
    assert golden.image_hw == (96, 128)
    assert golden.tasks == [TASK]
    assert golden.features["observation.state"]["names"] == list(JOINT_FEATURE_NAMES)
    assert golden.extra_episode_columns == []
    assert golden.calibration is None
    assert [ep["length"] for ep in golden.episodes] == [20, 20]
    assert golden.stats["observation.images.top"]["mean"].shape == (3, 1, 1)
    assert golden.stats["observation.state"]["count"].tolist() == [40]


@pytest.mark.parametrize("episode", [0, 1])
def test_frames(golden: LeRobotDatasetReader, episode: int) -> None:
    f = golden.frames(episode)
    np.testing.assert_array_equal(f.state, expected_state(episode, 20))
    np.testing.assert_array_equal(f.action, expected_state(episode, 20) + 0.5)
    np.testing.assert_array_equal(f.frame_index, np.arange(20))
    np.testing.assert_array_equal(f.index, np.arange(20) + 20 * episode)
    np.testing.assert_allclose(f.timestamp, np.arange(20) / 30, atol=1e-6)
    assert f.state.dtype == np.float32 and f.task_index.tolist() == [0] * 20


@pytest.mark.parametrize("episode", [0, 1])
def test_video_pixels(golden: LeRobotDatasetReader, episode: int) -> None:
    for k, cam in enumerate(golden.cameras):
        frames = golden.video(episode, cam)
        assert frames.shape == (20, 96, 128, 3) and frames.dtype == np.uint8
        check_video(frames, k)


def test_video_streams() -> None:
    """What LeRobot's mp4s look like; our writer's files are compared against these facts."""
    for cam in CAMERA_NAMES:
        path = f"{GOLDEN_ROOT}/videos/observation.images.{cam}/chunk-000/file-000.mp4"
        with av.open(path) as c:
            s = c.streams.video[0]
            assert s.codec_context.codec.canonical_name == "av1"
            assert s.codec_context.pix_fmt == "yuv420p"
            assert Fraction(s.time_base) == Fraction(1, 15360)
            assert s.frames == 40 and s.average_rate == 30
            pts = [f.pts for f in c.decode(s)]
        assert pts == [512 * i for i in range(40)]
