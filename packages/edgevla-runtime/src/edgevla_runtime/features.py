"""The data contract, written once: feature keys, motor names, cameras, task and rates.

Every stage (simulation, recording, training, export, control) names its tensors with these
keys, which are LeRobot's, so a dataset or checkpoint crosses over without renaming.

Observation (one time step, as the environment returns it and a policy runner consumes it):
    "observation.state"          float32 (6,)       joint positions, order MOTOR_NAMES, radians
    "observation.images.<cam>"   uint8   (H, W, 3)  RGB, cam in CAMERA_NAMES
Action (one time step): float32 (6,) joint position targets, same order and units as the state.
Action chunk (what a policy predicts): float32 (chunk_size, 6).

This module is plain Python (no numpy, no torch) so the board-side runtime can share it.
"""

from __future__ import annotations

# SO-101 motor order; LeRobot names the per-motor features "<motor>.pos".
MOTOR_NAMES: tuple[str, ...] = (
    "shoulder_pan",
    "shoulder_lift",
    "elbow_flex",
    "wrist_flex",
    "wrist_roll",
    "gripper",
)
JOINT_FEATURE_NAMES: tuple[str, ...] = tuple(f"{m}.pos" for m in MOTOR_NAMES)
ACTION_DIM = len(MOTOR_NAMES)
STATE_DIM = len(MOTOR_NAMES)

STATE_KEY = "observation.state"
ACTION_KEY = "action"
IMAGE_KEY_PREFIX = "observation.images."

# top: global view of the scene; gripper: wrist-mounted, looking at the claws;
# left: side view that complements the top view for height and depth.
CAMERA_NAMES: tuple[str, ...] = ("top", "gripper", "left")

TASK = "Put the tea bag in the mug."
ROBOT_TYPE = "so101_follower"
DEFAULT_FPS = 30

# Default render size (height, width). 96x128 keeps the 4:3 aspect of the paper's 640x480
# cameras while three renders plus physics stay well above 150 steps/s on a 2-core CPU, and it is
# the size the ACT edge preset consumes without resizing.
DEFAULT_IMAGE_HW: tuple[int, int] = (96, 128)
MIN_IMAGE_HW: tuple[int, int] = (64, 64)
MAX_IMAGE_HW: tuple[int, int] = (480, 640)


def image_key(camera: str) -> str:
    """Feature key of a camera stream, e.g. image_key("top") == "observation.images.top"."""
    return f"{IMAGE_KEY_PREFIX}{camera}"


def camera_of(key: str) -> str:
    """Inverse of image_key: "observation.images.top" -> "top"."""
    if not key.startswith(IMAGE_KEY_PREFIX):
        raise ValueError(
            f"{key!r} is not an image feature key (expected '{IMAGE_KEY_PREFIX}<camera>')"
        )
    return key[len(IMAGE_KEY_PREFIX) :]
