"""`edgevla record`: run the scripted expert through a recording plan into a LeRobot v3.0
dataset, crash-safely.

Each planned episode is recorded from its planned start; an episode the expert fails is
re-recorded from the same start with a new seed (as an operator would) and counted. Only
policy-visible data is recorded (joint positions, actions, camera streams); the plan's
bookkeeping goes to extra per-episode columns a LeRobot user can ignore: cluster_id,
start_pose [bag x, bag y, bag yaw], is_recovery, orientation, split, plan_seed, seed, attempts.

Crash safety comes from the writer (see lerobot_v3.py): every finished episode is durable the
moment add_episode returns. `--resume` reopens the dataset, checks that the scene ("our
calibration") and the plan are the ones it was recorded with, and records what is missing.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from edgevla_runtime.features import ACTION_KEY, STATE_KEY, image_key

from edgevla.console import console, emit_json, progress, table
from edgevla.dataset.lerobot_v3 import DatasetSpec, LeRobotDatasetWriter
from edgevla.dataset.plan import Plan, PlannedEpisode
from edgevla.dataset.video import VideoSettings
from edgevla.sim.env import TeaBagMugEnv
from edgevla.sim.expert import ActionNoise, ScriptedExpert, rollout_expert
from edgevla.sim.kinematics import UnreachableError
from edgevla.sim.scene import SceneConfig

EPISODE_COLUMNS = {
    "cluster_id": "int64",
    "start_pose": "list<float64>",
    "is_recovery": "bool",
    "orientation": "string",
    "split": "string",
    "plan_seed": "int64",
    "seed": "int64",
    "attempts": "int64",
}


class CalibrationMismatch(RuntimeError):
    """The dataset was recorded with another scene or plan than the one given now."""


@dataclass
class RecordArgs:
    """Record the expert through a plan into a LeRobot v3.0 dataset (crash-safe, resumable)."""

    plan: Path = Path("outputs/plan.json")
    out: Path = Path("datasets/teabag")
    resume: bool = False
    """continue a recording that was interrupted (kill, crash, Ctrl-C)"""
    overwrite: bool = False
    """replace an existing dataset at --out"""
    height: int = 96
    width: int = 128
    fps: int = 30
    """control and camera rate (the paper's async runs used 60)"""
    codec: Literal["av1", "h264"] = "av1"
    max_attempts: int = 4
    """attempts per planned episode before giving up on it"""
    limit: int | None = None
    """record only the first N planned episodes (quick checks)"""
    action_noise_rad: float = 0.0
    """DART-style: execute the expert's targets plus a smooth random offset of this std per arm
    joint, record the clean targets (states off the path, labelled with the way back); 0 = off"""
    json: bool = False


def scene_calibration(scene: SceneConfig) -> dict[str, Any]:
    """The scene configuration as JSON: saved with the dataset and checked on resume."""
    return json.loads(json.dumps(dataclasses.asdict(scene)))


def _calibration(scene: SceneConfig, plan: Plan, noise: ActionNoise) -> dict[str, Any]:
    """The scene, plan and expert-noise settings saved with a dataset, as JSON would give them
    back (lists, not tuples), so a resume compares like with like."""
    return json.loads(
        json.dumps(
            {
                "scene": scene_calibration(scene),
                "plan_config": plan.to_dict()["config"],
                "expert_noise": dataclasses.asdict(noise),
            }
        )
    )


def _as_recorded_today(calibration: dict[str, Any]) -> dict[str, Any]:
    """A dataset's saved calibration with fields added since it was recorded filled in with
    what they meant then (plans before `recovery_starts` had mug recovery starts only; before
    `expert_noise` the expert was recorded without noise)."""
    plan_config = dict(calibration.get("plan_config") or {})
    plan_config.setdefault("recovery_starts", ["mug"])
    noise = calibration.get("expert_noise") or dataclasses.asdict(ActionNoise())
    return {**calibration, "plan_config": plan_config, "expert_noise": noise}


def _diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _diff(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [f"{prefix.rstrip('.')}: recorded {a!r}, now {b!r}"]


def episode_metadata(
    planned: PlannedEpisode, plan_seed: int, seed: int, attempts: int
) -> dict[str, Any]:
    """The extra per-episode columns (EPISODE_COLUMNS) for a recorded planned start."""
    x, y = planned.bag_xy
    return {
        "cluster_id": planned.cluster,
        "start_pose": [x, y, planned.bag_yaw],
        "is_recovery": planned.kind == "recovery",
        "orientation": planned.orientation,
        "split": planned.split,
        "plan_seed": plan_seed,
        "seed": seed,
        "attempts": attempts,
    }


def record_episode(
    env: TeaBagMugEnv, planned: PlannedEpisode, seed: int, noise: ActionNoise | None = None
) -> tuple[dict[str, np.ndarray], bool]:
    """Roll out the expert from the planned start (disturbed by `noise`, if given). Returns the
    frames {state (T,6), action (T,6) the clean targets, images (T,H,W,3) per camera} and
    whether it succeeded."""
    expert = ScriptedExpert(rng=np.random.default_rng(seed))
    states, actions = [], []
    images: dict[str, list[np.ndarray]] = {c: [] for c in env.scene.cameras}
    info: dict[str, Any] = {"success": False}
    options = {"start_state": planned.start_state()}
    rollout = rollout_expert(env, seed=seed, options=options, expert=expert, noise=noise)
    try:
        for obs, action, info in rollout:
            states.append(obs[STATE_KEY])
            actions.append(action)
            for c in env.scene.cameras:
                images[c].append(obs[image_key(c)])
    except UnreachableError:
        # A re-grasp planned where the bag ended up out of reach (pushed by a missed grasp):
        # a failed attempt, recorded again from the planned start with another seed.
        return {}, False
    frames: dict[str, np.ndarray] = {
        STATE_KEY: np.asarray(states, dtype=np.float32),
        ACTION_KEY: np.asarray(actions, dtype=np.float32),
    }
    for c, imgs in images.items():
        frames[image_key(c)] = np.stack(imgs)
    return frames, bool(info["success"])


def run_record(args: RecordArgs) -> dict[str, Any]:
    plan = Plan.load(args.plan)
    scene = SceneConfig(image_height=args.height, image_width=args.width, fps=args.fps)
    noise = ActionNoise(std_rad=args.action_noise_rad)
    calibration = _calibration(scene, plan, noise)
    video = VideoSettings.av1() if args.codec == "av1" else VideoSettings.h264()
    if args.resume:
        writer, done = LeRobotDatasetWriter.open_for_resume(args.out)
        mismatch = _diff(_as_recorded_today(writer.calibration), calibration)
        if mismatch:
            writer.close()
            raise CalibrationMismatch(
                f"{args.out} was recorded with another scene or plan; resuming would mix them:\n  "
                + "\n  ".join(mismatch[:10])
                + "\nResume with the same plan and settings, or record a new dataset (--out elsewhere)."
            )
    else:
        spec = DatasetSpec(
            fps=scene.fps, cameras=scene.cameras, image_hw=(scene.image_height, scene.image_width),
            video=video, episode_columns=EPISODE_COLUMNS,
        )  # fmt: skip
        writer = LeRobotDatasetWriter.create(
            args.out, spec, calibration=calibration, overwrite=args.overwrite
        )
        done = set()
    todo = [e for e in plan.episodes if e.index not in done]
    if args.limit is not None:
        todo = [e for e in todo if e.index < args.limit]
    env = TeaBagMugEnv(scene)
    stats = {"recorded": 0, "re_recorded": 0, "failed": [], "frames": 0}
    t0 = time.perf_counter()
    try:
        with progress(args.json) as bar:
            task = bar.add_task("recording", total=len(todo), status="")
            for planned in todo:
                for attempt in range(args.max_attempts):
                    seed = planned.seed + 1_000_000 * attempt
                    frames, ok = record_episode(env, planned, seed, noise)
                    if ok:
                        break
                    stats["re_recorded"] += 1
                if not ok:
                    stats["failed"].append(planned.index)
                    bar.update(task, advance=1)
                    continue
                writer.add_episode(
                    frames,
                    episode_index=planned.index,
                    metadata=episode_metadata(planned, plan.config.seed, seed, attempt + 1),
                )
                stats["recorded"] += 1
                stats["frames"] += len(frames[STATE_KEY])
                elapsed = time.perf_counter() - t0
                bar.update(task, advance=1, status=f"{stats['frames'] / elapsed:.0f} frames/s")
        if not stats["failed"]:
            writer.finalize()
    finally:
        writer.close()
        env.close()
    elapsed = time.perf_counter() - t0
    result = {
        "dataset": str(args.out),
        "episodes_planned": len(plan.episodes),
        "episodes_already_done": len(done),
        "episodes_recorded": stats["recorded"],
        "re_recorded_failures": stats["re_recorded"],
        "episodes_given_up": stats["failed"],
        "frames": stats["frames"],
        "wall_s": elapsed,
        "frames_per_s": stats["frames"] / elapsed if elapsed > 0 else 0.0,
        "exit_code": 1 if stats["failed"] else 0,
    }
    if args.json:
        emit_json(result)
    else:
        console.print(
            table(
                "edgevla record",
                ["", "value"],
                [(k, v) for k, v in result.items() if k != "exit_code"],
            )
        )
    return result
