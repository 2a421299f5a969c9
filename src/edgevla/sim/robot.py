"""The simulated arm behind the runtime's `Robot` protocol, so `edgevla-runtime run --robot sim`
drives it exactly as it would drive an SO-101: connect, read observations, send joint targets.

Registered for the runtime through the entry point group `edgevla_runtime.robots` (name "sim").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np
from edgevla_runtime.features import CAMERA_NAMES, JOINT_FEATURE_NAMES
from edgevla_runtime.robot import action_array

from edgevla.sim.env import TeaBagMugEnv
from edgevla.sim.scene import JOINT_LIMITS, SceneConfig

# A command this far past a joint limit is not rounding (the servo clips that) but a broken
# policy: the loop treats it as a fault and holds.
LIMIT_MARGIN_RAD = 0.1


class SimRobot:
    """TeaBagMugEnv as a robot. seed: the start the first connect() resets to; fps: the control
    rate it steps at (default: the scene's), so a policy is driven at the rate it learned."""

    def __init__(self, scene: SceneConfig | None = None, seed: int = 0, fps: float | None = None):
        self.scene = scene or SceneConfig()
        if fps is not None and fps != self.scene.fps:
            if not float(fps).is_integer():
                raise ValueError(f"fps: the simulated arm steps at whole rates, got {fps}")
            self.scene = replace(self.scene, fps=int(fps))
        self.seed = seed
        self.env: TeaBagMugEnv | None = None
        self._observation: dict[str, Any] | None = None
        self.task_success = False
        self.action_limits = (
            (JOINT_LIMITS[:, 0] - LIMIT_MARGIN_RAD).astype(np.float32),
            (JOINT_LIMITS[:, 1] + LIMIT_MARGIN_RAD).astype(np.float32),
        )

    @property
    def fps(self) -> int:
        return self.scene.fps

    @property
    def observation_features(self) -> dict[str, Any]:
        h, w = self.scene.image_height, self.scene.image_width
        return {**{k: float for k in JOINT_FEATURE_NAMES}, **{c: (h, w, 3) for c in CAMERA_NAMES}}

    @property
    def action_features(self) -> dict[str, Any]:
        return {k: float for k in JOINT_FEATURE_NAMES}

    def connect(self) -> None:
        self.env = TeaBagMugEnv(self.scene)
        self._observation, info = self.env.reset(seed=self.seed)
        self.task_success = bool(info.get("success", False))

    def disconnect(self) -> None:
        if self.env is not None:
            self.env.close()
        self.env = None

    def _require(self) -> TeaBagMugEnv:
        if self.env is None:
            raise ConnectionError("SimRobot is not connected; call connect() first")
        return self.env

    def get_observation(self) -> dict[str, Any]:
        self._require()
        obs = self._observation
        return {k: np.array(v) for k, v in obs.items() if k.startswith("observation.")}

    def send_action(self, action: np.ndarray | Mapping[str, float]) -> np.ndarray:
        env = self._require()
        target = action_array(action)
        self._observation, _, _, _, info = env.step(target)
        self.task_success = bool(info.get("success", False))
        return target
