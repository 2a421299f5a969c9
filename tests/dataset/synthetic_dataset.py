"""The golden dataset's content, as a generator and a checker (shared by tests and the crash
subprocess).

Frame t of episode e: observation.state = [0..5] + t + 100e, action = state + 0.5; camera k's
channel k is 10t everywhere and its first 4t+4 rows carry 200 in channel (k+1) mod 3. This is
exactly what /work/shared/reference/lerobot-v3-dataset (written by LeRobot 0.6.1) holds for
2 episodes x 20 frames at 96x128.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from edgevla_runtime.features import ACTION_KEY, CAMERA_NAMES, STATE_KEY, image_key

# ../shared/reference beside the checkout (CI clones next to shared/); EDGEVLA_REFERENCE overrides.
GOLDEN_ROOT = str(
    Path(
        os.environ.get(
            "EDGEVLA_REFERENCE", Path(__file__).resolve().parents[2].parent / "shared" / "reference"
        )
    )
    / "lerobot-v3-dataset"
)
H, W = 96, 128


def expected_state(episode: int, length: int) -> np.ndarray:
    t = np.arange(length)[:, None]
    return (np.arange(6)[None] + t + 100 * episode).astype(np.float32)


def expected_image(camera_k: int, t: int) -> np.ndarray:
    img = np.zeros((H, W, 3), np.uint8)
    img[..., camera_k] = 10 * t
    img[: 4 * t + 4, :, (camera_k + 1) % 3] = 200
    return img


def golden_episode(episode: int, length: int = 20) -> dict[str, np.ndarray]:
    """add_episode frames of one episode (length <= 23 keeps 4t+4 within the 96 rows)."""
    state = expected_state(episode, length)
    frames = {STATE_KEY: state, ACTION_KEY: state + 0.5}
    for k, cam in enumerate(CAMERA_NAMES):
        frames[image_key(cam)] = np.stack([expected_image(k, t) for t in range(length)])
    return frames


def check_video(frames: np.ndarray, camera_k: int) -> None:
    """Decoded (T, H, W, 3) frames hold the golden pattern within lossy-codec tolerance.

    AV1 at crf 30 (LeRobot's setting) is lossy: over an episode channel k is within ~2 of 10t
    on average, but single inter frames can drift by up to ~11 (measured on LeRobot's own files
    and ours). The number of rows lit in channel (k+1) mod 3 (4t+4) is sharp, so it pins every
    frame to its time step exactly: a frame off by one would be off by 4 rows.
    """
    frames = frames.astype(np.float64)
    other = (camera_k + 1) % 3
    for t, img in enumerate(frames):
        lit_rows = int((img[..., other].mean(axis=1) > 100).sum())
        assert abs(lit_rows - min(4 * t + 4, H)) <= 1, (t, lit_rows)
        assert abs(np.median(img[..., camera_k]) - 10 * t) <= 12, (t, np.median(img[..., camera_k]))
    truth = 10 * np.arange(len(frames))[:, None, None]
    assert np.abs(frames[..., camera_k] - truth).mean() < 4
