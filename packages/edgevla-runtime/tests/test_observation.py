"""The observation contract check shared by the control loop and the PyTorch runner."""

import numpy as np
import pytest
from edgevla_runtime.observation import check_observation

CAMS = ("top", "gripper")


def _obs(**changes):
    obs = {"observation.state": np.zeros(6, np.float32)}
    obs.update({f"observation.images.{c}": np.zeros((96, 128, 3), np.uint8) for c in CAMS})
    obs.update(changes)
    return {k: v for k, v in obs.items() if v is not None}


def test_a_matching_observation_passes():
    check_observation(_obs(), 6, CAMS, (96, 128))


@pytest.mark.parametrize(
    "changes, error, message",
    [
        ({"observation.state": None}, KeyError, "no 'observation.state'"),
        ({"observation.state": np.zeros(7)}, ValueError, r"shape \(7,\); the arm expects \(6,\)"),
        ({"observation.images.gripper": None}, KeyError, "needs camera 'gripper'"),
        (
            {"observation.images.top": np.zeros((64, 64, 3), np.uint8)},
            ValueError,
            r"\(64, 64, 3\); the arm expects \(H, W, 3\) = \(96, 128, 3\)",
        ),
        (
            {"observation.images.top": np.zeros((96, 128), np.uint8)},
            ValueError,
            "convert grey or RGBA frames to RGB",
        ),
        (
            {"observation.images.top": np.zeros((96, 128, 4), np.uint8)},
            ValueError,
            "convert grey or RGBA frames to RGB",
        ),
        (
            {"observation.images.top": np.zeros((96, 128, 3), np.float32)},
            ValueError,
            "float32 .* RGB uint8",
        ),
    ],
)
def test_each_mismatch_names_the_feature_and_the_fix(changes, error, message):
    with pytest.raises(error, match=message):
        check_observation(_obs(**changes), 6, CAMS, (96, 128), who="the arm")


def test_extra_cameras_are_ignored():
    check_observation(_obs(), 6, ("top",), (96, 128))
