"""The arm, as the board sees it, and the real-time loop that drives it safely.

`Robot` is shaped like LeRobot's robots, so an SO-101 driver plugs in with a few lines:
    connect() / disconnect()
    get_observation() -> {"observation.state": (6,) float32, "observation.images.<cam>": (H, W, 3) uint8}
    send_action(action (6,) float32 joint targets, or a {"<motor>.pos": value} dict)
    observation_features / action_features: what it produces and accepts
    action_limits (optional): (low, high) per joint; a chunk outside them is a fault

`RobotEnv` turns a Robot into the environment the one control loop (`control.loop.run_episode`)
drives; `drive(robot, runner, ...)` runs it in real time (RealTimeClock: a control thread
ticking at fps, inference beside it, as onnxruntime releases the GIL), with faults held
(on_fault="hold": the arm keeps its last command, never jumps, never replays a stale chunk,
and resumes when inference answers again). Ctrl-C stops the loop with the arm holding its last
command, then disconnects.

Adapting a LeRobot robot (its get_observation returns "<motor>.pos" keys and camera names):

    class LeRobotArm:
        def __init__(self, robot): self.robot = robot
        def connect(self): self.robot.connect()
        def disconnect(self): self.robot.disconnect()
        def get_observation(self):
            obs = self.robot.get_observation()
            state = np.array([obs[f"{m}.pos"] for m in MOTOR_NAMES], dtype=np.float32)
            return {STATE_KEY: state, **{image_key(c): obs[c] for c in CAMERA_NAMES}}
        def send_action(self, action):
            self.robot.send_action({f"{m}.pos": float(a) for m, a in zip(MOTOR_NAMES, action)})
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np

from edgevla_runtime.control.clocks import RealTimeClock
from edgevla_runtime.control.config import ControlConfig
from edgevla_runtime.control.loop import run_episode
from edgevla_runtime.control.metrics import EpisodeResult
from edgevla_runtime.features import JOINT_FEATURE_NAMES, STATE_KEY
from edgevla_runtime.runner import PolicyRunner


@runtime_checkable
class Robot(Protocol):
    def connect(self) -> None: ...

    def disconnect(self) -> None: ...

    def get_observation(self) -> dict[str, Any]: ...

    def send_action(self, action: np.ndarray | Mapping[str, float]) -> Any: ...

    @property
    def observation_features(self) -> dict[str, Any]: ...

    @property
    def action_features(self) -> dict[str, Any]: ...


def action_array(action: np.ndarray | Mapping[str, float]) -> np.ndarray:
    """A joint-target action as float32 (6,): an array, or LeRobot's {"<motor>.pos": value}."""
    if isinstance(action, Mapping):
        missing = [k for k in JOINT_FEATURE_NAMES if k not in action]
        if missing:
            raise KeyError(f"action lacks {missing}; expected keys {list(JOINT_FEATURE_NAMES)}")
        return np.array([action[k] for k in JOINT_FEATURE_NAMES], dtype=np.float32)
    return np.asarray(action, dtype=np.float32)


class RobotEnv:
    """A Robot as the control loop's environment: reset reads an observation, step sends the
    command and reads the next. A real arm has no reward or end: `info["success"]` is whatever
    the robot reports through an optional `task_success` attribute (the simulated arm has one)."""

    def __init__(self, robot: Robot):
        self.robot = robot
        self.last_command: np.ndarray | None = None  # what to hold if the loop is stopped

    def _info(self) -> dict[str, Any]:
        return {"success": bool(getattr(self.robot, "task_success", False))}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        return self.robot.get_observation(), self._info()

    def step(self, action: np.ndarray):
        self.robot.send_action(action)
        self.last_command = action_array(action)  # what the arm was last told, to hold
        return self.robot.get_observation(), 0.0, False, False, self._info()


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during drive(): the arm was left holding its last command and disconnected."""

    def __init__(self, held: np.ndarray | None):
        super().__init__("stopped by Ctrl-C; the arm holds its last command")
        self.held = held


def drive(
    robot: Robot,
    runner: PolicyRunner,
    config: ControlConfig,
    *,
    seed: int | None = None,
    connect: bool = True,
) -> EpisodeResult:
    """Drive `robot` with `runner` in real time for config.max_steps ticks (or episode_time_s).

    Faults are held (config.on_fault should be "hold"; "stop" ends at the first fault). On
    Ctrl-C the last command is sent once more (the arm holds, no motion from a half-merged
    chunk) and the robot disconnects; Interrupted carries the held command.
    """
    env = RobotEnv(robot)
    limits = getattr(robot, "action_limits", None)
    if connect:
        robot.connect()
    try:
        clock = RealTimeClock(timeout_s=config.inference_timeout_s)
        return run_episode(env, runner, config, clock, seed=seed, action_limits=limits)
    except KeyboardInterrupt:
        held = env.last_command
        if held is None:  # interrupted before the first command: hold where it stands
            held = np.asarray(robot.get_observation()[STATE_KEY], dtype=np.float32)
        robot.send_action(held)
        raise Interrupted(held) from None
    finally:
        if connect:
            robot.disconnect()
