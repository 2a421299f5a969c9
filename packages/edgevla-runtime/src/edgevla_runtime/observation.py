"""The observation contract, checked once for everyone who feeds a policy.

An observation is one time step as `edgevla_runtime.features` defines it:
    "observation.state"          float32 (state_dim,)  joint positions, radians
    "observation.images.<cam>"   uint8   (H, W, 3)     one entry per camera the policy uses
The control loop checks it once per episode (`edgevla_runtime.runner.check_observation`), and a
PyTorch runner checks every call it receives directly (tests, a policy server): both through
`check_observation` here, so the messages (what is wrong, how to fix it) are written once.
numpy only: it ships in the board-side runtime.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from edgevla_runtime.features import STATE_KEY, image_key


def check_observation(
    observation: Mapping[str, object],
    state_dim: int,
    camera_names: Sequence[str],
    image_hw: tuple[int, int],
    who: str = "the policy",
) -> None:
    """Raise KeyError (something missing) or ValueError (wrong shape) naming the feature, what
    `who` expects and the fix; return None when the observation suits it."""
    if STATE_KEY not in observation:
        raise KeyError(
            f"the observation has no {STATE_KEY!r} (keys: {sorted(observation)}); {who} needs "
            "the joint state (and the control loop holds the arm at it before the first chunk)"
        )
    state_shape = np.shape(observation[STATE_KEY])
    if state_shape != (state_dim,):
        raise ValueError(
            f"{STATE_KEY!r} has shape {state_shape}; {who} expects ({state_dim},): one joint "
            "position per joint, in the order of edgevla_runtime.features.MOTOR_NAMES"
        )
    h, w = image_hw
    for cam in camera_names:
        key = image_key(cam)
        if key not in observation:
            raise KeyError(
                f"{who} needs camera {cam!r} ({key!r}) but the observation only has "
                f"{sorted(observation)}; render that camera in the environment or train/export "
                "the policy for the cameras you have"
            )
        image = np.asarray(observation[key])
        if image.shape[:2] != (h, w):
            raise ValueError(
                f"{key!r} has shape {image.shape}; {who} expects (H, W, 3) = ({h}, {w}, 3). Set "
                "the environment's render size to the policy's image size"
            )
        if image.shape != (h, w, 3) or image.dtype != np.uint8:
            raise ValueError(
                f"{key!r} is {image.dtype} {image.shape}; {who} expects RGB uint8 (H, W, 3) = "
                f"({h}, {w}, 3), values 0-255: convert grey or RGBA frames to RGB and float "
                "images to uint8 before the policy"
            )
