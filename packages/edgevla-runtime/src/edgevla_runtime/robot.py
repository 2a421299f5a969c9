"""The arm, as the board sees it, and the real-time loop that drives it safely.

`Robot` is shaped like LeRobot's robots, so an SO-101 driver plugs in with a few lines:
    connect() / disconnect()
    get_observation() -> {"observation.state": (6,) float32, "observation.images.<cam>": (H, W, 3) uint8}
    send_action(action (6,) float32 joint targets, or a {"<motor>.pos": value} dict)
    observation_features / action_features: what it produces and accepts
    action_limits (optional): (low, high) per joint; a chunk outside them is a fault
    fps (optional): the rate the robot runs at (a simulator's step, a driver's control rate)

`RobotEnv` turns a Robot into the environment the one control loop (`control.loop.run_episode`)
drives; `drive(robot, runner, ...)` runs it in real time (RealTimeClock: a control thread
ticking at fps, inference beside it, as onnxruntime releases the GIL), with faults held
(on_fault="hold": the arm keeps its last command, never jumps, never replays a stale chunk,
and resumes when inference answers again). Ctrl-C stops the loop with the arm holding its last
command, then disconnects. Before the robot is connected, `check_fit` refuses a policy and
robot that disagree on fps (the policy's, from its bundle or server; the robot's `fps`, when it
has one), or a loop ticking at another rate than the robot's, naming the field; cameras, image size and action width are
checked on the first observation, before the first command. `latency_budget` says afterwards
whether the measured inference latency fitted the schedule (a slow policy or server shows as
underruns, each held, and as a budget that does not fit).

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

import math
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np

from edgevla_runtime.control.clocks import RealTimeClock
from edgevla_runtime.control.config import ControlConfig
from edgevla_runtime.control.loop import run_episode
from edgevla_runtime.control.metrics import EpisodeResult
from edgevla_runtime.control.schedule import check_budget
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


def policy_fps(runner: PolicyRunner) -> float | None:
    """The rate the policy learned at: its `fps`, or its bundle manifest's; None if unknown."""
    fps = getattr(runner, "fps", None)
    if fps is None:
        fps = getattr(getattr(runner, "manifest", None), "fps", None)
    return float(fps) if fps is not None else None


def check_fit(robot: Robot, runner: PolicyRunner, config: ControlConfig) -> None:
    """Refuse, before the robot moves, a policy and robot that disagree on fps, and a loop
    that would tick at another rate than the robot runs.

    A chunk is a sequence of actions one tick apart: played at another rate it is the same
    motion too fast or too slow. Raises ValueError naming the field; values not known (a robot
    without `fps`, a policy without a recorded rate) are not checked, and a loop rate chosen
    for a robot without `fps` is the caller's choice.
    """
    learned, robot_fps, tick = policy_fps(runner), getattr(robot, "fps", None), config.fps
    if learned is not None and robot_fps is not None and not math.isclose(learned, robot_fps):
        raise ValueError(
            f"fps: the policy learned at {learned:g} fps but the robot runs at {robot_fps:g} fps, "
            f"so every motion would play {robot_fps / learned:.2g}x as fast; run the robot at "
            f"{learned:g} fps or use a policy trained at {robot_fps:g} fps"
        )
    if robot_fps is not None and not math.isclose(tick, robot_fps):
        raise ValueError(
            f"fps: the loop would tick at {tick:g} fps but the robot runs at {robot_fps:g} fps; "
            f"control it at {robot_fps:g} fps (drop --fps)"
        )


def latency_budget(
    result: EpisodeResult, config: ControlConfig, chunk_len: int
) -> dict[str, float | bool | None]:
    """Did the measured inference latency (p95) fit the schedule's execution horizon?

    Fixed threshold g: T_execution = floor(g * chunk_len) / fps (schedule.check_budget).
    "auto": asynchronous execution holds while 2 L + margin <= chunk_len (L in ticks), so
    T_execution = (chunk_len - margin) / (2 fps); past it auto falls back to sync. Sync mode
    waits by design: fits is None. When it does not fit, the run shows underruns (the arm
    holding between chunks).
    """
    p95 = result.latency_p95_s
    if config.mode == "sync" or p95 is None or math.isnan(p95):
        return {"latency_p95_s": None, "t_execution_s": None, "fits": None}
    if config.chunk_size_threshold == "auto":
        t_execution = (chunk_len - config.auto_margin_ticks) / (2 * config.fps)
        fits = p95 <= t_execution
    else:
        budget = check_budget(p95, config.fps, chunk_len, float(config.chunk_size_threshold))
        t_execution, fits = budget.t_execution_s, budget.fits
    return {"latency_p95_s": p95, "t_execution_s": t_execution, "fits": bool(fits)}


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
    chunk) and the robot disconnects; Interrupted carries the held command. A policy that does
    not fit the robot (check_fit; then the first observation) is refused before it moves.
    """
    check_fit(robot, runner, config)
    env = RobotEnv(robot)
    limits = getattr(robot, "action_limits", None)
    if connect:
        robot.connect()
    try:
        clock = RealTimeClock(timeout_s=config.inference_timeout_s, placement=config.cpu_placement)
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
