"""Gymnasium environment for "Put the tea bag in the mug." (id `edgevla/TeaBagMug-v0`).

Observation (dict; the data contract of edgevla_runtime.features):
    "observation.state"          float32 (6,)      joint positions, radians, MOTOR_NAMES order
    "observation.images.<cam>"   uint8 (H, W, 3)   one per configured camera
Action: float32 (6,) joint position targets, same order and units. Targets outside the joint
limits are clipped to them (as a servo's firmware would) and `info["action_clipped"]` says so;
a wrong shape, NaN or inf is refused with ValueError.

One `step` = one control tick at `SceneConfig.fps`: the targets are held for `n_substeps`
physics steps, then every camera renders once. `info["success"]` is true when the tea bag
rests inside the mug below its rim and neither pad touches it; the episode terminates once
that has held for `success_hold_s`. The object's pose is privileged: it never appears in an
observation, only in `privileged_state()` for the scripted expert and the evaluator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import gymnasium as gym
import mujoco
import numpy as np
from edgevla_runtime.features import ACTION_DIM, MOTOR_NAMES, STATE_KEY, image_key

from edgevla.sim.kinematics import UnreachableError, reachable_tilts
from edgevla.sim.scene import (
    BAG_HALF_SIZE,
    JOINT_LIMITS,
    MUG_HEIGHT,
    MUG_INNER_RADIUS,
    MUG_POS,
    SceneConfig,
    apply_camera_offsets,
    build_mjcf,
)

StartKind = Literal["rest", "recovery"]

# Rest pose: folded above the base, gripper nearly closed (SO-101's parking pose, roughly).
REST_TCP = (0.12, 0.0, 0.18)
REST_GRIPPER = 0.1


@dataclass(frozen=True)
class StartState:
    """Where an episode begins. bag_xy in metres (world), bag_yaw in radians.

    start == "recovery": the arm starts away from rest with the gripper empty (the paper's
    recovery episodes: above the mug, or beside the bag after a missed grasp); arm_tcp /
    gripper give its tool position and opening. Out at the far edge the gripper is tilted
    outward as much as needed to reach arm_tcp, as the expert does there.
    """

    bag_xy: tuple[float, float]
    bag_yaw: float
    start: StartKind = "rest"
    arm_tcp: tuple[float, float, float] | None = None
    gripper: float = REST_GRIPPER

    def __post_init__(self) -> None:
        if self.start not in ("rest", "recovery"):
            raise ValueError(f"start must be 'rest' or 'recovery', got {self.start!r}")
        if not all(math.isfinite(v) for v in (*self.bag_xy, self.bag_yaw)):
            raise ValueError(f"start state has a NaN or inf: {self}")


def sample_start(
    rng: np.random.Generator, scene: SceneConfig, recovery: bool = False
) -> StartState:
    """A random start: bag anywhere in the workspace with any yaw; rest or recovery arm pose."""
    xy = scene.workspace.sample(rng)
    yaw = float(rng.uniform(0.0, math.pi))  # the bag is symmetric under a half turn
    if not recovery:
        return StartState((float(xy[0]), float(xy[1])), yaw, "rest")
    tcp = (
        MUG_POS[0] + float(rng.uniform(-0.03, 0.03)),
        MUG_POS[1] + float(rng.uniform(-0.03, 0.03)),
        float(rng.uniform(0.11, 0.14)),
    )
    return StartState(
        (float(xy[0]), float(xy[1])), yaw, "recovery", tcp, float(rng.uniform(0.0, 1.0))
    )


class TeaBagMugEnv(gym.Env):
    """MuJoCo tea-bag-in-mug task with an SO-101-class arm and top / gripper / left cameras."""

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(
        self,
        scene: SceneConfig | None = None,
        max_episode_s: float = 20.0,
        success_hold_s: float = 0.3,
        render_images: bool = True,
    ):
        self.scene = scene or SceneConfig()
        self.model = mujoco.MjModel.from_xml_string(build_mjcf(self.scene))
        apply_camera_offsets(self.model, self.scene)
        self.data = mujoco.MjData(self.model)
        self.render_images = render_images
        self.max_episode_steps = int(round(max_episode_s * self.scene.fps))
        self.success_hold_steps = max(1, int(round(success_hold_s * self.scene.fps)))
        self._renderer: mujoco.Renderer | None = None

        m = self.model
        jid = [mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, n) for n in MOTOR_NAMES]
        self._qadr = np.array([m.jnt_qposadr[j] for j in jid])
        self._dadr = np.array([m.jnt_dofadr[j] for j in jid])
        self._pad_qadr = np.array(
            [
                m.jnt_qposadr[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, n)]
                for n in ("pad_left", "pad_right")
            ]
        )
        bag_joint = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, "bag")
        self._bag_qadr = m.jnt_qposadr[bag_joint]
        self._bag_dadr = m.jnt_dofadr[bag_joint]
        self._bag_geom = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, "bag")
        self._pad_geoms = {
            mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, n) for n in ("pad_left", "pad_right")
        }
        self._tcp_site = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_SITE, "tcp")
        self._cam_ids = {
            c: mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_CAMERA, c) for c in self.scene.cameras
        }

        h, w = self.scene.image_height, self.scene.image_width
        spaces: dict[str, gym.Space] = {
            STATE_KEY: gym.spaces.Box(
                JOINT_LIMITS[:, 0].astype(np.float32),
                JOINT_LIMITS[:, 1].astype(np.float32),
                dtype=np.float32,
            )
        }
        for cam in self.scene.cameras if render_images else ():
            spaces[image_key(cam)] = gym.spaces.Box(0, 255, (h, w, 3), dtype=np.uint8)
        self.observation_space = gym.spaces.Dict(spaces)
        self.action_space = gym.spaces.Box(
            JOINT_LIMITS[:, 0].astype(np.float32),
            JOINT_LIMITS[:, 1].astype(np.float32),
            dtype=np.float32,
        )
        self.start_state: StartState | None = None
        self._steps = 0
        self._success_streak = 0

    # ------------------------------------------------------------------ gymnasium API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        options = options or {}
        start = options.get("start_state")
        if start is None:
            start = sample_start(
                self.np_random, self.scene, recovery=bool(options.get("recovery", False))
            )
        if not isinstance(start, StartState):
            raise TypeError(
                f"options['start_state'] must be a StartState, got {type(start).__name__}"
            )
        if not self.scene.workspace.contains(np.asarray(start.bag_xy)):
            raise ValueError(
                f"bag start {start.bag_xy} is outside the workspace {self.scene.workspace}; "
                "pick a position inside it (edgevla plan draws valid ones)"
            )
        self.start_state = start
        mujoco.mj_resetData(self.model, self.data)
        q_arm = self._start_arm_qpos(start)
        bx, by = start.bag_xy
        self._place(q_arm, (bx, by, BAG_HALF_SIZE[2] + 0.0005), start.bag_yaw)
        # Let the bag settle on the table before the first observation.
        for _ in range(self.scene.n_substeps):
            mujoco.mj_step(self.model, self.data)
        self._steps = 0
        self._success_streak = 0
        return self._observation(), self._info(clipped=False)

    def step(self, action):
        target = self._validate_action(action)
        clipped_target = np.clip(target, JOINT_LIMITS[:, 0], JOINT_LIMITS[:, 1])
        clipped = bool(np.any(clipped_target != target))
        self.data.ctrl[:] = clipped_target
        mujoco.mj_step(self.model, self.data, nstep=self.scene.n_substeps)
        self._steps += 1
        success = self.is_success()
        self._success_streak = self._success_streak + 1 if success else 0
        terminated = self._success_streak >= self.success_hold_steps
        truncated = not terminated and self._steps >= self.max_episode_steps
        return self._observation(), float(success), terminated, truncated, self._info(clipped)

    def render(self):
        return self.render_camera(self.scene.cameras[0])

    def close(self):
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    # ------------------------------------------------------------------ helpers
    def _start_arm_qpos(self, start: StartState) -> np.ndarray:
        tcp = REST_TCP if start.start == "rest" else start.arm_tcp
        if tcp is None:
            raise ValueError("a recovery start needs arm_tcp (the tool position near the mug)")
        pos = np.asarray(tcp, dtype=float)
        for _, q5 in reachable_tilts(pos, np.arange(0.0, 1.21, 0.05)):
            return np.append(q5, start.gripper)
        raise UnreachableError(
            f"recovery start arm_tcp {pos.round(3).tolist()} is out of the arm's reach at any "
            "gripper tilt; put it nearer the base"
        )

    def _place(self, q_arm: np.ndarray, bag_pos, bag_yaw: float) -> None:
        """Put the arm at joint positions q_arm (6,) (servo targets too) and the bag at bag_pos
        (3,) with yaw bag_yaw; recompute positions without stepping physics."""
        self.data.qpos[self._qadr] = q_arm
        self.data.qpos[self._pad_qadr] = q_arm[5] * 0.0325
        self.data.qpos[self._bag_qadr : self._bag_qadr + 3] = bag_pos
        self.data.qpos[self._bag_qadr + 3 : self._bag_qadr + 7] = (
            math.cos(bag_yaw / 2),
            0.0,
            0.0,
            math.sin(bag_yaw / 2),
        )
        self.data.qvel[:] = 0.0
        self.data.ctrl[:] = q_arm
        mujoco.mj_forward(self.model, self.data)

    def pose_scene(self, q_arm: np.ndarray, bag_pos, bag_yaw: float) -> dict[str, np.ndarray]:
        """Observation of a posed, not simulated, scene: arm at q_arm (6,) (clipped to the joint
        limits), bag at bag_pos (3,) metres with yaw bag_yaw radians. For rendering labelled
        frames (backbone pre-training); the episode state is left undefined, so reset() before
        stepping again."""
        q = np.asarray(q_arm, dtype=float)
        pos = np.asarray(bag_pos, dtype=float)
        if q.shape != (ACTION_DIM,) or pos.shape != (3,):
            raise ValueError(
                f"pose_scene needs q_arm ({ACTION_DIM},) and bag_pos (3,), got {q.shape} and {pos.shape}"
            )
        if not (np.isfinite(q).all() and np.isfinite(pos).all() and math.isfinite(bag_yaw)):
            raise ValueError(f"pose_scene got NaN or inf: q_arm={q}, bag_pos={pos}, yaw={bag_yaw}")
        q = np.clip(q, JOINT_LIMITS[:, 0], JOINT_LIMITS[:, 1])
        self.start_state = None
        self._place(q, pos, float(bag_yaw))
        return self._observation()

    def _validate_action(self, action) -> np.ndarray:
        a = np.asarray(action, dtype=np.float64)
        if a.shape != (ACTION_DIM,):
            raise ValueError(
                f"action must have shape ({ACTION_DIM},) = joint targets for {list(MOTOR_NAMES)}, got {a.shape}"
            )
        bad = ~np.isfinite(a)
        if bad.any():
            names = [MOTOR_NAMES[i] for i in np.flatnonzero(bad)]
            raise ValueError(f"action has NaN or inf in {names}: {a.tolist()}")
        return a

    def joint_positions(self) -> np.ndarray:
        return self.data.qpos[self._qadr].astype(np.float32)

    def render_camera(
        self, camera: str, height: int | None = None, width: int | None = None
    ) -> np.ndarray:
        h = height or self.scene.image_height
        w = width or self.scene.image_width
        if camera not in self._cam_ids:
            self._cam_ids[camera] = mujoco.mj_name2id(
                self.model, mujoco.mjtObj.mjOBJ_CAMERA, camera
            )
        if self._renderer is None or (self._renderer.height, self._renderer.width) != (h, w):
            if self._renderer is not None:
                self._renderer.close()
            self._renderer = mujoco.Renderer(self.model, h, w)
        self._renderer.update_scene(self.data, camera=self._cam_ids[camera])
        return self._renderer.render()

    def _observation(self) -> dict[str, np.ndarray]:
        obs: dict[str, np.ndarray] = {STATE_KEY: self.joint_positions()}
        if self.render_images:
            for cam in self.scene.cameras:
                obs[image_key(cam)] = self.render_camera(cam)
        return obs

    def privileged_state(self) -> dict[str, np.ndarray]:
        """Ground truth the policy never sees: object pose, tool pose, contacts."""
        q = self.data.qpos
        return {
            "bag_pos": q[self._bag_qadr : self._bag_qadr + 3].copy(),
            "bag_quat": q[self._bag_qadr + 3 : self._bag_qadr + 7].copy(),
            "bag_vel": self.data.qvel[self._bag_dadr : self._bag_dadr + 6].copy(),
            "tcp_pos": self.data.site_xpos[self._tcp_site].copy(),
            "mug_pos": np.array([MUG_POS[0], MUG_POS[1], 0.0]),
            "joint_pos": q[self._qadr].copy(),
        }

    def pads_touch_bag(self) -> bool:
        d = self.data
        for i in range(d.ncon):
            g1, g2 = d.contact[i].geom1, d.contact[i].geom2
            if (g1 == self._bag_geom and g2 in self._pad_geoms) or (
                g2 == self._bag_geom and g1 in self._pad_geoms
            ):
                return True
        return False

    def bag_in_mug(self) -> bool:
        pos = self.data.qpos[self._bag_qadr : self._bag_qadr + 3]
        radial = math.hypot(pos[0] - MUG_POS[0], pos[1] - MUG_POS[1])
        return radial < MUG_INNER_RADIUS and pos[2] < MUG_HEIGHT

    def is_success(self) -> bool:
        """Tea bag inside the mug below the rim, at rest, and released by the gripper."""
        speed = float(np.linalg.norm(self.data.qvel[self._bag_dadr : self._bag_dadr + 3]))
        return self.bag_in_mug() and speed < 0.05 and not self.pads_touch_bag()

    def _info(self, clipped: bool) -> dict[str, Any]:
        return {
            "success": self.is_success(),
            "action_clipped": clipped,
            "step": self._steps,
            "time_s": self._steps / self.scene.fps,
        }


def register() -> None:
    """Register `edgevla/TeaBagMug-v0` with gymnasium (idempotent)."""
    if "edgevla/TeaBagMug-v0" not in gym.registry:
        gym.register(id="edgevla/TeaBagMug-v0", entry_point="edgevla.sim.env:TeaBagMugEnv")
