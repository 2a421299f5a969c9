"""Random posed scenes with their ground truth, for pre-training a vision encoder.

    scene   = one of a dataset's own arm poses, the bag on the table anywhere in the workspace
              outside the held-out cluster (70%), held at the tool (15%) or in the mug (15%),
              any yaw; posed with MuJoCo, not simulated (about 3 ms for 3 cameras)
    labels  = LABEL_NAMES: bag position and yaw (as sin/cos of 2*yaw: the bag is symmetric under
              a half turn), tool position, bag relative to the tool, joint angles

The arm poses, held-out cluster and cameras come in a `SceneSource` (the caller reads them from
a dataset; the simulator does not know datasets).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from edgevla_runtime.features import MOTOR_NAMES, image_key

from edgevla.progress import ProgressEvent, ProgressFn, no_progress
from edgevla.sim.kinematics import forward_tcp
from edgevla.sim.scene import BAG_HALF_SIZE, MUG_HEIGHT, MUG_INNER_RADIUS, MUG_POS, SceneConfig

LABEL_NAMES = (
    "bag_x", "bag_y", "bag_z", "bag_sin2yaw", "bag_cos2yaw",
    "tcp_x", "tcp_y", "tcp_z", "bag_rel_x", "bag_rel_y", "bag_rel_z",
    *(f"{m}_rad" for m in MOTOR_NAMES),
)  # fmt: skip
BAG_KINDS = ("table", "held", "mug")
BAG_KIND_P = (0.70, 0.15, 0.15)


@dataclass(frozen=True)
class SceneSource:
    """What the scene sampler draws from: arm poses (N, 6), the bag starts of the held-out
    split (M, 2), how far from them a bag may not go, and the cameras (in `scene`)."""

    arm_poses: np.ndarray
    held_out_xy: np.ndarray
    held_out_radius: float
    scene: SceneConfig


def sample_scene(
    rng: np.random.Generator, source: SceneSource
) -> tuple[np.ndarray, np.ndarray, float]:
    """(q_arm (6,), bag_pos (3,), bag_yaw) of one random scene (module docstring)."""
    q = source.arm_poses[rng.integers(len(source.arm_poses))].copy()
    yaw = float(rng.uniform(0.0, math.pi))
    kind = BAG_KINDS[rng.choice(len(BAG_KINDS), p=BAG_KIND_P)]
    if kind == "held":
        bag = forward_tcp(q) + rng.normal(0.0, 0.005, 3)
    elif kind == "mug":
        r = MUG_INNER_RADIUS * 0.5 * math.sqrt(rng.uniform())
        a = rng.uniform(0.0, 2 * math.pi)
        z = rng.uniform(BAG_HALF_SIZE[2] + 0.005, MUG_HEIGHT * 0.6)
        bag = np.array([MUG_POS[0] + r * math.cos(a), MUG_POS[1] + r * math.sin(a), z])
    else:
        while True:
            xy = source.scene.workspace.sample(rng)
            far = np.hypot(*(source.held_out_xy - xy).T) >= source.held_out_radius
            if far.all():
                break
        bag = np.array([xy[0], xy[1], BAG_HALF_SIZE[2] + 0.0005])
    return q, bag, yaw


def render_scenes(
    source: SceneSource, n: int, seed: int, progress: ProgressFn | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """n scenes -> images uint8 (n, K, 3, H, W) in the source's camera order, labels (n, L)."""
    from edgevla.sim.env import TeaBagMugEnv

    report = progress or no_progress
    rng = np.random.default_rng(seed)
    env = TeaBagMugEnv(source.scene)
    cams = source.scene.cameras
    h, w = source.scene.image_height, source.scene.image_width
    images = np.empty((n, len(cams), 3, h, w), dtype=np.uint8)
    labels = np.empty((n, len(LABEL_NAMES)), dtype=np.float32)
    try:
        for i in range(n):
            q, bag, yaw = sample_scene(rng, source)
            obs = env.pose_scene(q, bag, yaw)
            for k, cam in enumerate(cams):
                images[i, k] = obs[image_key(cam)].transpose(2, 0, 1)  # (H, W, 3) -> (3, H, W)
            truth = env.privileged_state()
            tcp, bag_pos = truth["tcp_pos"], truth["bag_pos"]
            labels[i] = np.concatenate(
                [bag_pos, [math.sin(2 * yaw), math.cos(2 * yaw)], tcp, bag_pos - tcp,
                 truth["joint_pos"]]
            )  # fmt: skip
            report(ProgressEvent("render scenes", i + 1, n))
    finally:
        env.close()
    return images, labels
