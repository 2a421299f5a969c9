"""Closed-loop evaluation of a checkpoint (or, later, a bundle) with the paper's protocol.

`evaluate(EvalConfig) -> EvalResult`: per control mode, success on the plan's Test (20) / Val
(10) / Global (30) positions with the control metrics, written to results.json with a
per-cluster success map, a first-grasp scatter and a queue-size plot. The scene can be
perturbed (a camera that moved, dimmer light) to measure the accuracy loss the paper warns
about. Each finished episode is kept in <out>/episodes.jsonl as it finishes (edgevla.eval.resume),
so an interrupted evaluation continues where it stopped. `edgevla eval` prints the table.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgevla_runtime.control.aggregation import AGGREGATE_FN_NAMES
from edgevla_runtime.control.clocks import parse_latency_spec
from edgevla_runtime.control.config import ControlConfig
from edgevla_runtime.features import CAMERA_NAMES, DEFAULT_FPS

from edgevla.dataset.plan import Plan
from edgevla.errors import BadInput
from edgevla.eval.parallel import EnvSpec, EpisodeOutcome, RunnerSpec, is_bundle, run_parallel
from edgevla.eval.protocol import SETS, eval_episodes, positions_seen_in_training
from edgevla.eval.report import (
    fmt_rate,
    fmt_s,
    plot_cluster_map,
    plot_first_grasps,
    plot_queue_size,
    summarise,
)
from edgevla.eval.resume import (
    PROGRESS_FILE,
    EpisodeLog,
    checkpoint_identity,
    file_identity,
    run_key,
)
from edgevla.jsonio import write_json_atomic
from edgevla.progress import ProgressEvent, ProgressFn
from edgevla.sim.scene import CameraOffset, SceneConfig

MODES = ("sync", "async")


def parse_threshold(text: str | float, flag: str = "--threshold") -> float | str:
    """chunk_size_threshold from the command line: a number in [0, 1] or "auto"."""
    if text == "auto":
        return "auto"
    try:
        g = float(text)
    except (TypeError, ValueError):
        raise BadInput(f"expected a number in [0, 1] or 'auto', got {text!r}", field=flag) from None
    if not (math.isfinite(g) and 0.0 <= g <= 1.0):
        raise BadInput(
            f"must be in [0, 1] (the fraction of the chunk still queued when the next "
            f"observation is sent; LeRobot's default 0.5, the paper 0.2) or 'auto'; got {text}",
            field=flag,
        )
    return g


def threshold_text(g: float | str) -> str:
    return g if isinstance(g, str) else f"{g:g}"


def check_noise_scale(noise_scale: float) -> None:
    """A flow-matching policy's initial-noise scale: finite and >= 0 (1 = SmolVLA's sampler)."""
    if not (math.isfinite(noise_scale) and noise_scale >= 0):
        raise BadInput(
            f"must be >= 0 (1 = SmolVLA's sampler), got {noise_scale}", field="--noise-scale"
        )


def check_control_flags(aggregate: str, latency: str, episode_time_s: float, episodes: int,
                        workers: int, fps: int | None) -> None:  # fmt: skip
    """The checks eval, select and bench async share (messages name the flags)."""
    if aggregate not in AGGREGATE_FN_NAMES:
        raise BadInput(f"unknown {aggregate!r}; choose one of {', '.join(AGGREGATE_FN_NAMES)}",
                       field="--aggregate")  # fmt: skip
    try:
        parse_latency_spec(latency)
    except ValueError as e:
        raise BadInput(str(e), field="--latency") from None
    if not (math.isfinite(episode_time_s) and episode_time_s > 0):
        raise BadInput(f"must be a positive number of seconds, got {episode_time_s}",
                       field="--episode-time-s")  # fmt: skip
    if episodes < 1:
        raise BadInput(f"rollouts per position must be >= 1, got {episodes}", field="--episodes")
    if workers < 1:
        raise BadInput(f"must be >= 1 worker process, got {workers}", field="--workers")
    if fps is not None and fps <= 0:
        raise BadInput(f"must be a positive control rate, got {fps}", field="--fps")


@dataclass(frozen=True)
class EvalConfig:
    """What `evaluate` runs; validated on construction (messages name the CLI flags)."""

    checkpoint: Path  # a checkpoint folder, or a bundle from `edgevla export` / `quantize`
    plan: Path = Path("outputs/plan.json")
    out: Path | None = None  # where results.json and figures go (default: <checkpoint>/eval)
    modes: tuple[str, ...] = ("async",)
    chunk_size_threshold: float | str = 0.5  # async: a fraction in [0, 1], or "auto"
    aggregate_fn_name: str = "weighted_average"
    n_action_steps: int | None = None
    latency: str = "measured"  # virtual inference latency (edgevla_runtime.control.clocks)
    episodes: int = 1  # rollouts per position
    sets: tuple[str, ...] = SETS
    workers: int = 2
    episode_time_s: float = 20.0
    fps: int | None = None  # None: the rate of the policy's training data
    camera_moved: str | None = None  # perturbation: move this camera by the shift and turn
    camera_shift_m: tuple[float, float, float] = (0.02, 0.0, 0.0)
    camera_turn_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)
    light_intensity: float = 1.0  # perturbation: 1.0 = as recorded
    noise_scale: float = 1.0  # flow-matching policies: scale of the initial noise
    label: str | None = None
    resume: bool = True  # reuse the episodes <out>/episodes.jsonl already holds for these settings

    def __post_init__(self) -> None:
        object.__setattr__(self, "checkpoint", Path(self.checkpoint))
        object.__setattr__(self, "plan", Path(self.plan))
        if not self.modes or any(m not in MODES for m in self.modes):
            raise BadInput(f"choose from {list(MODES)}, got {list(self.modes)}", field="--modes")
        if len(set(self.modes)) != len(self.modes):
            raise BadInput(f"a mode is listed twice: {list(self.modes)}", field="--modes")
        object.__setattr__(self, "chunk_size_threshold", parse_threshold(self.chunk_size_threshold))
        check_control_flags(self.aggregate_fn_name, self.latency, self.episode_time_s,
                            self.episodes, self.workers, self.fps)  # fmt: skip
        if self.n_action_steps is not None and self.n_action_steps < 1:
            raise BadInput(f"must be >= 1 or left out (the whole chunk), got {self.n_action_steps}",
                           field="--n-action-steps")  # fmt: skip
        bad = [s for s in self.sets if s not in SETS]
        if bad or not self.sets:
            raise BadInput(f"choose from {list(SETS)}, got {list(self.sets)}", field="--sets")
        if self.camera_moved is not None and self.camera_moved not in CAMERA_NAMES:
            raise BadInput(f"unknown camera {self.camera_moved!r}; choose from {list(CAMERA_NAMES)}",
                           field="--camera-moved")  # fmt: skip
        if not (math.isfinite(self.light_intensity) and self.light_intensity >= 0):
            raise BadInput(f"must be >= 0 (1.0 = as recorded), got {self.light_intensity}",
                           field="--light-intensity")  # fmt: skip
        check_noise_scale(self.noise_scale)

    @property
    def out_dir(self) -> Path:
        return Path(self.out) if self.out is not None else self.checkpoint / "eval"

    def control(self, mode: str, fps: float) -> ControlConfig:
        return ControlConfig(
            mode=mode, chunk_size_threshold=self.chunk_size_threshold,
            aggregate_fn_name=self.aggregate_fn_name, n_action_steps=self.n_action_steps,
            fps=fps, latency=self.latency, episode_time_s=self.episode_time_s,
        )  # fmt: skip

    def tag(self, mode: str) -> str:
        """The mode as figure names show it: "sync", "async-0.5", "async-auto"."""
        return mode + (f"-{threshold_text(self.chunk_size_threshold)}" if mode == "async" else "")


@dataclass
class ModeResult:
    """One control mode's episodes and their summary (a "modes" entry of results.json)."""

    mode: str
    control: ControlConfig
    summary: dict[str, Any]
    episodes: list[EpisodeOutcome]
    resumed: int = 0  # episodes taken from the progress file instead of run again


TABLE_KEYS = ("policy", "format", "mode", "latency", "acc_test", "acc_val", "global", "idle",
              "completion")  # fmt: skip


@dataclass
class EvalResult:
    checkpoint: Path
    plan: Path
    fps: int
    noise_scale: float
    perturbation: dict[str, Any]
    label: str
    modes: dict[str, ModeResult]
    positions_seen_in_training: dict[str, list[int]]
    results_file: Path
    warnings: list[str] = field(default_factory=list)
    format: str = "PyTorch FP32"  # or "ONNX <precisions>" for a bundle

    def table(self) -> list[dict[str, str]]:
        """The paper-format rows, one per mode (formatted for people)."""
        rows = []
        for mode, m in self.modes.items():
            s = m.summary
            rows.append(dict(zip(TABLE_KEYS, (
                self.label, self.format, mode, fmt_s(s["latency_p50_s"]),
                fmt_rate(s["success_test"]), fmt_rate(s["success_val"]),
                fmt_rate(s["success_global"]), f"{s['idle_fraction']:.1%}",
                fmt_s(s["completion_time_s"])), strict=True)))  # fmt: skip
        return rows

    def to_dict(self) -> dict[str, Any]:
        """What --json prints: results.json without the episodes, plus the table."""
        return {
            "checkpoint": str(self.checkpoint),
            "format": self.format,
            "plan": str(self.plan),
            "fps": self.fps,
            "noise_scale": self.noise_scale,
            "perturbation": self.perturbation,
            "modes": {m: r.summary for m, r in self.modes.items()},
            "positions_seen_in_training": self.positions_seen_in_training,
            "table": self.table(),
            "results_file": str(self.results_file),
        }

    def results_json(self) -> dict[str, Any]:
        """The contents of results.json."""
        d = self.to_dict()
        del d["table"], d["results_file"]
        d["episodes"] = {m: [e.to_dict() for e in r.episodes] for m, r in self.modes.items()}
        return d


def policy_rate(checkpoint: Path, requested: int | None,
                warn: Callable[[str], None] | None = None) -> int:  # fmt: skip
    """The control rate to run a checkpoint at: the requested one, else the rate its training
    data was recorded at, else 30 fps. A request that differs from the training rate is allowed
    (it is an experiment) but said out loud (through `warn`): the chunk then plays faster or
    slower than taught."""
    from edgevla.policies.checkpoint import Checkpoint

    warn = warn or (lambda message: None)
    if requested is not None and requested <= 0:
        raise BadInput(f"must be positive, got {requested}", field="--fps")
    if is_bundle(checkpoint):
        from edgevla_runtime.bundle import Manifest

        trained = Manifest.read(checkpoint).fps
    else:
        trained = Checkpoint.open(checkpoint).fps
    if requested is None and trained:
        return int(trained)
    if requested is None:
        warn(
            f"{checkpoint} does not say what rate it learned at (no train_info.json); running it "
            f"at {DEFAULT_FPS} fps: pass --fps with its dataset's rate if that is wrong"
        )
        return DEFAULT_FPS
    if trained and int(trained) != requested:
        warn(
            f"{checkpoint} learned from {trained} fps data; running it at {requested} fps plays "
            f"its action chunks at {requested / trained:.2g}x speed"
        )
    return requested


_overlaps: dict[tuple[str, tuple[str, ...]], dict[str, list[int]]] = {}


def training_overlap(plan: Plan, plan_path: Path, checkpoint: Path,
                     warn: Callable[[str], None] | None = None) -> dict[str, list[int]]:  # fmt: skip
    """Which Test / Val positions the checkpoint's training data started from (its
    train_info.json names the datasets); warns when any did, since those are not fresh.
    Computed once per (plan, datasets): `select` asks for every checkpoint of a run."""
    from edgevla.policies.checkpoint import Checkpoint

    if is_bundle(checkpoint):  # the checkpoint it was exported from, if it is still there
        from edgevla_runtime.bundle import Manifest

        source = Path(Manifest.read(checkpoint).checkpoint or checkpoint)
        datasets = (
            list(Checkpoint.open(source).train_info.datasets)
            if source.is_dir() and not is_bundle(source)
            else []
        )
    else:
        datasets = list(Checkpoint.open(checkpoint).train_info.datasets)
    key = (str(plan_path), tuple(datasets))
    if key not in _overlaps:
        _overlaps[key] = positions_seen_in_training(plan, datasets)
    seen = _overlaps[key]
    for name, idx in seen.items():
        if idx and warn:
            warn(
                f"{len(idx)} {name} position(s) of the plan ({idx}) are start positions "
                f"of training episodes in {datasets}: scores on them are not {name} scores; "
                "evaluate with the plan the dataset was recorded from"
            )
    return seen


def check_checkpoint_folder(folder: Path, flag: str = "--checkpoint") -> None:
    if not folder.is_dir():
        raise BadInput("checkpoint folder not found (a folder with config.json and "
                       "model.safetensors, e.g. <run>/checkpoints/step-000100)", path=folder,
                       field=flag)  # fmt: skip


def evaluate(config: EvalConfig, progress: ProgressFn | None = None) -> EvalResult:
    """Run the protocol for each mode of `config`; writes <out>/results.json and figures."""
    check_checkpoint_folder(config.checkpoint)
    plan = Plan.load(config.plan)
    warnings: list[str] = []
    fps = policy_rate(config.checkpoint, config.fps, warnings.append)
    spec = RunnerSpec.of(config.checkpoint, noise_scale=config.noise_scale)
    probe = spec.build()  # fail fast in this process on a bad checkpoint or bundle
    fmt = "PyTorch FP32"
    if spec.kind == "bundle":
        fmt = "ONNX " + "+".join(sorted({s.precision for s in probe.manifest.stages}))
    h, w = probe.image_hw
    offsets = ()
    if config.camera_moved:
        offsets = (CameraOffset(config.camera_moved, tuple(config.camera_shift_m),
                                tuple(config.camera_turn_deg)),)  # fmt: skip
    scene = SceneConfig(image_height=h, image_width=w, fps=fps, camera_offsets=offsets,
                        light_intensity=config.light_intensity)  # fmt: skip
    env_spec = EnvSpec(scene, config.episode_time_s)
    episodes = eval_episodes(plan, config.episodes, tuple(config.sets))
    seen = training_overlap(plan, config.plan, config.checkpoint, warnings.append)
    out = config.out_dir
    out.mkdir(parents=True, exist_ok=True)
    label = config.label or config.checkpoint.name
    identity = {"checkpoint": checkpoint_identity(config.checkpoint),
                "plan": file_identity(config.plan), "scene": repr(scene),
                "noise_scale": config.noise_scale}  # fmt: skip
    per_mode: dict[str, ModeResult] = {}
    for mode in config.modes:
        control = config.control(mode, scene.fps)
        log = EpisodeLog(out / PROGRESS_FILE, run_key(identity | {"control": asdict(control)}))
        kept = log.load() if config.resume else {}
        done = {ep.key: kept[(ep.key, ep.seed)] for ep in episodes if (ep.key, ep.seed) in kept}
        todo = [ep for ep in episodes if ep.key not in done]
        task = f"eval {mode}"
        count = {"ok": sum(r.success for r in done.values()), "n": len(done)}

        def finished(r: EpisodeOutcome, count=count, log=log, task=task) -> None:
            log.append(r)  # on disk first: a Ctrl-C after this keeps it
            count["n"] += 1
            count["ok"] += bool(r.success)
            if progress:
                progress(ProgressEvent(task, count["n"], len(episodes),
                                       f"success {count['ok']}/{count['n']}"))  # fmt: skip

        if progress:
            progress(ProgressEvent(task, len(done), len(episodes),
                                   f"{len(done)} kept from {log.path.name}" if done else ""))  # fmt: skip
        t0 = time.perf_counter()
        fresh = run_parallel(todo, spec, env_spec, control, config.workers, on_done=finished)
        results = [done.get(ep.key) for ep in episodes]
        by_key = {r.key: r for r in fresh}
        results = [
            r if r is not None else by_key[ep.key] for r, ep in zip(results, episodes, strict=True)
        ]
        summary = summarise(results)
        summary["wall_s"] = time.perf_counter() - t0
        summary["control"] = dict(control.__dict__)
        tag = config.tag(mode)
        title = f"{config.label or config.checkpoint} ({tag})"
        summary["cluster_map"] = str(
            plot_cluster_map(plan, results, out / f"clusters_{tag}.png", title)
        )
        summary["grasp_plot"] = str(plot_first_grasps(results, out / f"grasps_{tag}.png", title))
        first = results[0]
        summary["queue_plot"] = str(plot_queue_size(first.control, out / f"queue_{tag}.png",
                                                    chunk_size=probe.chunk_size,
                                                    title=f"{tag}: {first.key}"))  # fmt: skip
        per_mode[mode] = ModeResult(mode, control, summary, results, resumed=len(done))
    result = EvalResult(
        checkpoint=config.checkpoint, plan=config.plan, fps=scene.fps,
        noise_scale=config.noise_scale,
        perturbation={"camera_moved": config.camera_moved, "camera_shift_m": config.camera_shift_m,
                      "camera_turn_deg": config.camera_turn_deg,
                      "light_intensity": config.light_intensity},
        label=label, modes=per_mode, positions_seen_in_training=seen,
        results_file=out / "results.json", warnings=warnings, format=fmt,
    )  # fmt: skip
    write_json_atomic(result.results_file, result.results_json(), indent=None)
    return result
