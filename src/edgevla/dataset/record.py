"""`edgevla record`: run the scripted expert through a recording plan into a LeRobot v3.0
dataset, crash-safely.

Each planned episode is recorded from its planned start; an episode the expert fails is
re-recorded from the same start with a new seed (as an operator would) and counted. Only
policy-visible data is recorded (joint positions, actions, camera streams); the plan's
bookkeeping goes to extra per-episode columns a LeRobot user can ignore: cluster_id,
start_pose [bag x, bag y, bag yaw], is_recovery, orientation, split, plan_seed, seed, attempts.

Crash safety comes from the writer (see lerobot/writer.py): every finished episode is durable the
moment add_episode returns. `--resume` reopens the dataset, checks that the scene ("our
calibration") and the plan are the ones it was recorded with, and records what is missing.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from edgevla_runtime.features import ACTION_KEY, STATE_KEY, image_key

from edgevla.dataset.lerobot import layout
from edgevla.dataset.lerobot.writer import DatasetSpec, LeRobotDatasetWriter, folder_contents
from edgevla.dataset.plan import Plan, PlannedEpisode
from edgevla.dataset.video import VideoSettings
from edgevla.errors import BadInput
from edgevla.progress import ProgressEvent, ProgressFn, no_progress
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


class CalibrationMismatch(BadInput):
    """The dataset was recorded with another scene or plan than the one given now."""


@dataclass(frozen=True)
class RecordConfig:
    """What to record and how (field names are the `edgevla record` flags)."""

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

    def __post_init__(self) -> None:
        object.__setattr__(self, "plan", Path(self.plan))
        object.__setattr__(self, "out", Path(self.out))
        if self.max_attempts < 1:
            raise BadInput(
                f"{self.max_attempts}: must be >= 1 (0 attempts records nothing)",
                field="--max-attempts",
            )
        if self.limit is not None and self.limit < 1:
            raise BadInput(
                f"{self.limit}: must be >= 1 (leave it out to record the whole plan)",
                field="--limit",
            )
        if self.resume and self.overwrite:
            raise BadInput("--resume continues a dataset, --overwrite replaces it: give one")
        if self.fps < 1:
            raise BadInput(f"{self.fps}: must be a positive rate", field="--fps")
        if self.action_noise_rad < 0:
            raise BadInput(f"{self.action_noise_rad}: must be >= 0", field="--action-noise-rad")


@dataclass
class RecordResult:
    """What a recording did. `complete` is False when some planned episode was given up on
    (the dataset then stays unfinalized: re-run with --resume)."""

    dataset: Path
    episodes_planned: int
    episodes_already_done: int
    episodes_recorded: int = 0
    re_recorded_failures: int = 0
    video_encode_retries: int = 0  # encodings retried after a stuck encoder
    episodes_given_up: list[int] = field(default_factory=list)
    frames: int = 0
    wall_s: float = 0.0

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def complete(self) -> bool:
        return not self.episodes_given_up

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": str(self.dataset),
            "episodes_planned": self.episodes_planned,
            "episodes_already_done": self.episodes_already_done,
            "episodes_recorded": self.episodes_recorded,
            "re_recorded_failures": self.re_recorded_failures,
            "video_encode_retries": self.video_encode_retries,
            "episodes_given_up": list(self.episodes_given_up),
            "frames": self.frames,
            "wall_s": self.wall_s,
            "frames_per_s": self.frames_per_s,
        }


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


# calibration fields that `edgevla record` sets from a flag: a mismatch names the flag
CALIBRATION_FLAGS = {"scene.fps": "--fps", "scene.image_height": "--height",
                     "scene.image_width": "--width", "expert_noise.std_rad": "--action-noise-rad"}  # fmt: skip


def _diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _diff(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    name = prefix.rstrip(".")
    name = f"{CALIBRATION_FLAGS[name]} ({name})" if name in CALIBRATION_FLAGS else name
    return [] if a == b else [f"{name}: recorded {a!r}, now {b!r}"]


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


def _check_out(config: RecordConfig) -> None:
    """Refuse, before anything is created, an --out that the flags given do not fit."""
    out = config.out
    exists = out.exists() and (not out.is_dir() or bool(folder_contents(out)))
    if config.resume:
        if not (out / layout.INFO_PATH).is_file():
            raise BadInput(
                "no dataset to resume here (no meta/info.json); record one without --resume",
                path=out,
            )
    elif exists and not config.overwrite:
        raise FileExistsError(
            f"{out} already exists and is not empty; pass --overwrite to replace the dataset, "
            "or --resume to continue it"
        )


def record(config: RecordConfig, progress: ProgressFn | None = None) -> RecordResult:
    """Record the expert through `config.plan` into `config.out` (see the module docstring).

    Every argument is checked before anything is created. Episodes the expert fails
    `config.max_attempts` times are given up on (listed in the result); the dataset is
    finalized only when none was."""
    report = progress or no_progress
    plan = Plan.load(config.plan)
    if not plan.episodes:
        raise BadInput(
            "the plan has no episodes to record; draw one with `edgevla plan`", path=config.plan
        )
    _check_out(config)
    scene = SceneConfig(image_height=config.height, image_width=config.width, fps=config.fps)
    noise = ActionNoise(std_rad=config.action_noise_rad)
    calibration = _calibration(scene, plan, noise)
    video = VideoSettings.av1() if config.codec == "av1" else VideoSettings.h264()
    if config.resume:
        writer, done = LeRobotDatasetWriter.open_for_resume(config.out)
        mismatch = _diff(_as_recorded_today(writer.calibration), calibration)
        if mismatch:
            writer.close()
            raise CalibrationMismatch(
                f"{config.out} was recorded with another scene or plan; resuming would mix them: "
                + "; ".join(mismatch[:10])
                + ". Resume with the same plan and settings, or record a new dataset (--out elsewhere)."
            )
    else:
        spec = DatasetSpec(
            fps=scene.fps, cameras=scene.cameras, image_hw=(scene.image_height, scene.image_width),
            video=video, episode_columns=EPISODE_COLUMNS,
        )  # fmt: skip
        writer = LeRobotDatasetWriter.create(
            config.out, spec, calibration=calibration, overwrite=config.overwrite
        )
        done = set()
    todo = [e for e in plan.episodes if e.index not in done]
    if config.limit is not None:
        todo = [e for e in todo if e.index < config.limit]
    result = RecordResult(config.out, len(plan.episodes), len(done))
    env = TeaBagMugEnv(scene)
    t0 = time.perf_counter()
    try:
        report(ProgressEvent("recording", 0, len(todo)))
        for n, planned in enumerate(todo, start=1):
            for attempt in range(config.max_attempts):
                seed = planned.seed + 1_000_000 * attempt
                frames, ok = record_episode(env, planned, seed, noise)
                if ok:
                    break
                result.re_recorded_failures += 1
            if not ok:
                result.episodes_given_up.append(planned.index)
            else:
                writer.add_episode(
                    frames,
                    episode_index=planned.index,
                    metadata=episode_metadata(planned, plan.config.seed, seed, attempt + 1),
                )
                result.episodes_recorded += 1
                result.frames += len(frames[STATE_KEY])
            elapsed = time.perf_counter() - t0
            report(
                ProgressEvent("recording", n, len(todo), f"{result.frames / elapsed:.0f} frames/s")
            )
        if result.complete:
            writer.finalize()
    finally:
        result.video_encode_retries = writer.encode_retries
        writer.close()
        env.close()
    result.wall_s = time.perf_counter() - t0
    return result
