"""Closed-loop evaluation of a checkpoint (or, later, a bundle) with the paper's protocol.

`evaluate(EvalConfig) -> EvalResult`: per control mode, success on the plan's Test (20) / Val
(10) / Global (30) positions with the control metrics, written to results.json with a
per-cluster success map, a first-grasp scatter and a queue-size plot. The scene can be
perturbed (a camera that moved, dimmer light) to measure the accuracy loss the paper warns
about. The policy is a checkpoint or bundle run here, or a policy server (`remote`: each worker
process is one robot with its own session; the episodes keep the server's inference time and
the round trip of every call). Episodes run on the virtual clock (default: deterministic, the
latency simulated) or on the wall clock (`clock="realtime"`: ticks at the policy's fps with
inference in a thread beside them, measuring tick jitter and deadline misses); the same loop
and the same success check run either way. Each finished episode is kept in
<out>/episodes.jsonl as it finishes (edgevla.eval.resume), so an interrupted evaluation
continues where it stopped. `edgevla eval` prints the table.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgevla_runtime.control.aggregation import AGGREGATE_FN_NAMES
from edgevla_runtime.control.clocks import cpu_placement, parse_latency_spec
from edgevla_runtime.control.config import ControlConfig
from edgevla_runtime.features import CAMERA_NAMES, DEFAULT_FPS

from edgevla.dataset.plan import Plan
from edgevla.errors import BadInput
from edgevla.eval.parallel import (
    CLOCKS,
    EnvSpec,
    EpisodeOutcome,
    RunnerSpec,
    is_bundle,
    run_parallel,
)
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


def check_start_jitter(metres: float, degrees: float) -> None:
    """How far each rollout's bag start may move and turn (eval, select, bench async)."""
    if not (math.isfinite(metres) and 0 <= metres <= 0.05):
        raise BadInput(f"must be in [0, 0.05] m (a cluster is 0.10 m wide), got {metres}",
                       field="--start-jitter-m")  # fmt: skip
    if not (math.isfinite(degrees) and 0 <= degrees <= 90):
        raise BadInput(f"must be in [0, 90] degrees, got {degrees}", field="--start-jitter-deg")


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

    checkpoint: Path | None = None  # a checkpoint folder, or a bundle (`edgevla export`)
    plan: Path = Path("outputs/plan.json")
    out: Path | None = None  # results.json and figures (default: <checkpoint>/eval)
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
    start_jitter_m: float = 0.0  # each rollout's bag start moved up to this far (seeded)
    start_jitter_deg: float = 0.0  # ... and turned up to this much
    noise_scale: float = 1.0  # flow-matching policies: scale of the initial noise
    label: str | None = None
    resume: bool = True  # reuse the episodes <out>/episodes.jsonl already holds for these settings
    remote: str | None = None  # HOST:PORT of `edgevla serve`, instead of a checkpoint
    token: str | None = None  # the server's shared token (off loopback)
    clock: str = "virtual"  # or "realtime": wall-clock ticks, inference in a thread
    pin_cpus: str = "off"  # realtime: "auto" or "C:I[,I...]" pins control and inference threads

    def __post_init__(self) -> None:
        if (self.checkpoint is None) == (self.remote is None):
            raise BadInput(
                "give --checkpoint (a checkpoint folder or a bundle, run here) or --remote "
                "HOST:PORT (a policy server from `edgevla serve`), not both",
                field="--checkpoint/--remote",
            )
        if self.checkpoint is not None:
            object.__setattr__(self, "checkpoint", Path(self.checkpoint))
        if self.remote is not None:
            check_address(self.remote)
        elif self.token is not None:
            raise BadInput("a token is for a policy server: give --remote HOST:PORT with it",
                           field="--token")  # fmt: skip
        if self.clock not in CLOCKS:
            raise BadInput(f"choose from {list(CLOCKS)}, got {self.clock!r}", field="--clock")
        if self.clock == "realtime" and self.latency != "measured":
            raise BadInput(
                f"--latency {self.latency} simulates inference time on the virtual clock; in real "
                "time the latency is what inference takes: drop --latency or use --clock virtual",
                field="--latency",
            )
        if self.pin_cpus != "off":
            if self.clock != "realtime":
                raise BadInput("pinning applies to wall-clock episodes: add --clock realtime",
                               field="--pin-cpus")  # fmt: skip
            if self.workers != 1:
                raise BadInput("pinned episodes share the CPUs you name: use --workers 1",
                               field="--pin-cpus")  # fmt: skip
            try:
                cpu_placement(self.pin_cpus)
            except ValueError as exc:
                raise BadInput(str(exc), field="--pin-cpus") from None
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
        check_start_jitter(self.start_jitter_m, self.start_jitter_deg)
        check_noise_scale(self.noise_scale)

    @property
    def out_dir(self) -> Path:
        if self.out is not None:
            return Path(self.out)
        if self.checkpoint is None:  # a remote policy: one folder per server address
            return Path("outputs/eval_remote") / self.remote.replace(":", "_")
        return self.checkpoint / "eval"

    @property
    def policy_name(self) -> str:
        """The policy as results name it: the checkpoint folder, or the server's URL."""
        return str(self.checkpoint) if self.checkpoint is not None else f"ws://{self.remote}"

    def control(self, mode: str, fps: float) -> ControlConfig:
        return ControlConfig(
            mode=mode, chunk_size_threshold=self.chunk_size_threshold,
            aggregate_fn_name=self.aggregate_fn_name, n_action_steps=self.n_action_steps,
            fps=fps, latency=self.latency, episode_time_s=self.episode_time_s,
            pin_cpus=self.pin_cpus,
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
# Added to a row when the episodes measured them: real time, and a remote policy's split.
REALTIME_TABLE_KEYS = ("latency_p99", "jitter_p50", "jitter_p99", "deadline_misses")
REMOTE_TABLE_KEYS = ("server_p50", "network_p50")


def check_address(address: str, flag: str = "--remote") -> None:
    """HOST:PORT, checked before any connection."""
    host, _, port = str(address).rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise BadInput(f"expected HOST:PORT of `edgevla serve` (e.g. 127.0.0.1:8765), got "
                       f"{address!r}", field=flag)  # fmt: skip


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{1000 * x:.1f} ms"


@dataclass
class EvalResult:
    checkpoint: Path | str  # the folder, or "ws://HOST:PORT" for a remote policy
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
        """The paper-format rows, one per mode (formatted for people), with the real-time
        figures (latency p99, tick jitter, deadline misses) and the remote split (server
        inference, network) when the episodes measured them."""
        rows = []
        for mode, m in self.modes.items():
            s = m.summary
            row = dict(zip(TABLE_KEYS, (
                self.label, self.format, mode, fmt_s(s["latency_p50_s"]),
                fmt_rate(s["success_test"]), fmt_rate(s["success_val"]),
                fmt_rate(s["success_global"]), f"{s['idle_fraction']:.1%}",
                fmt_s(s["completion_time_s"])), strict=True))  # fmt: skip
            if s.get("clock") == "realtime":
                timing = (fmt_s(s["latency_p99_s"]), _ms(s["tick_jitter_p50_s"]),
                          _ms(s["tick_jitter_p99_s"]), str(s["deadline_misses"]))  # fmt: skip
                row.update(zip(REALTIME_TABLE_KEYS, timing, strict=True))
            if "server_inference_p50_s" in s:
                split = (_ms(s["server_inference_p50_s"]), _ms(s["network_p50_s"]))
                row.update(zip(REMOTE_TABLE_KEYS, split, strict=True))
            rows.append(row)
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


def remote_rate(served: float | None, requested: int | None, address: str,
                warn: Callable[[str], None]) -> int:  # fmt: skip
    """policy_rate for a policy server: the requested rate, else the one the server reports."""
    if requested is None and served:
        return int(served)
    if requested is None:
        warn(f"the policy server at {address} does not say what rate its policy learned at; "
             f"running it at {DEFAULT_FPS} fps: pass --fps with its dataset's rate if that is "
             "wrong")  # fmt: skip
        return DEFAULT_FPS
    if served and int(served) != requested:
        warn(f"the served policy learned from {served:g} fps data; running it at {requested} fps "
             f"plays its action chunks at {requested / served:.2g}x speed")  # fmt: skip
    return requested


@dataclass
class PolicyInfo:
    """What `evaluate` needs to know about the policy before the episodes run."""

    spec: RunnerSpec  # how each worker builds its runner
    fps: int
    format: str  # "PyTorch FP32", "ONNX <precisions>", "remote"
    image_hw: tuple[int, int]
    chunk_size: int
    identity: str  # a fingerprint of the policy, for resuming
    label: str


def open_policy(config: EvalConfig, warn: Callable[[str], None]) -> PolicyInfo:
    """Check and open the policy in this process (a bad checkpoint, bundle or server address
    fails here, before any episode); a server's probe session is closed again."""
    if config.remote is None:
        check_checkpoint_folder(config.checkpoint)
        fps = policy_rate(config.checkpoint, config.fps, warn)
        spec = RunnerSpec.of(config.checkpoint, noise_scale=config.noise_scale)
        probe = spec.build()
        fmt = "PyTorch FP32"
        if spec.kind == "bundle":
            fmt = "ONNX " + "+".join(sorted({s.precision for s in probe.manifest.stages}))
        identity = checkpoint_identity(config.checkpoint)
        return PolicyInfo(spec, fps, fmt, tuple(probe.image_hw), probe.chunk_size, identity,
                          config.checkpoint.name)  # fmt: skip
    from edgevla_runtime.remote import RemoteError

    spec = RunnerSpec.remote(config.remote, config.token)
    try:
        probe = spec.build()
    except RemoteError as e:
        raise BadInput(f"{e}; start one with `edgevla serve --policy BUNDLE --port PORT`",
                       field="--remote") from None  # fmt: skip
    try:
        served = dict(probe.policy)
    finally:
        probe.close()
    if config.noise_scale != 1.0:
        warn("--noise-scale applies to a policy run here; the server samples at its own "
             "(`edgevla serve --noise-scale`)")  # fmt: skip
    fps = remote_rate(served.get("fps"), config.fps, config.remote, warn)
    identity = run_key({"remote": config.remote, "policy": served})
    return PolicyInfo(spec, fps, "remote", tuple(probe.image_hw), probe.chunk_size, identity,
                      config.remote)  # fmt: skip


def evaluate(config: EvalConfig, progress: ProgressFn | None = None) -> EvalResult:
    """Run the protocol for each mode of `config`; writes <out>/results.json and figures."""
    if config.checkpoint is not None:
        check_checkpoint_folder(config.checkpoint)
    plan = Plan.load(config.plan)
    warnings: list[str] = []
    policy = open_policy(config, warnings.append)
    fps, spec, fmt = policy.fps, policy.spec, policy.format
    if config.clock == "realtime" and config.remote is None:
        cores = os.cpu_count() or 1
        if 2 * config.workers > cores:
            warnings.append(
                f"real time with {config.workers} worker(s) on {cores} core(s): each worker's "
                "control thread and inference thread want a core of their own, so tick jitter "
                "and latency include the sharing (--workers 1 on a 2-core board)"
            )
    h, w = policy.image_hw
    offsets = ()
    if config.camera_moved:
        offsets = (CameraOffset(config.camera_moved, tuple(config.camera_shift_m),
                                tuple(config.camera_turn_deg)),)  # fmt: skip
    scene = SceneConfig(image_height=h, image_width=w, fps=fps, camera_offsets=offsets,
                        light_intensity=config.light_intensity)  # fmt: skip
    env_spec = EnvSpec(scene, config.episode_time_s)
    episodes = eval_episodes(plan, config.episodes, tuple(config.sets), config.start_jitter_m,
                             config.start_jitter_deg, scene.workspace)  # fmt: skip
    seen = {name: [] for name in SETS}  # a server's policy: its training data is not known here
    if config.checkpoint is not None:
        seen = training_overlap(plan, config.plan, config.checkpoint, warnings.append)
    out = config.out_dir
    out.mkdir(parents=True, exist_ok=True)
    label = config.label or policy.label
    identity = {"checkpoint": policy.identity, "plan": file_identity(config.plan),
                "scene": repr(scene), "noise_scale": config.noise_scale}  # fmt: skip
    if config.clock != "virtual":  # virtual-clock runs keep their earlier run keys
        identity["clock"] = config.clock
    if config.start_jitter_m or config.start_jitter_deg:  # so do runs without jitter
        identity["start_jitter"] = [config.start_jitter_m, config.start_jitter_deg]
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
        fresh = run_parallel(todo, spec, env_spec, control, config.workers, on_done=finished,
                             clock=config.clock)  # fmt: skip
        results = [done.get(ep.key) for ep in episodes]
        by_key = {r.key: r for r in fresh}
        results = [
            r if r is not None else by_key[ep.key] for r, ep in zip(results, episodes, strict=True)
        ]
        summary = summarise(results)
        summary["wall_s"] = time.perf_counter() - t0
        summary["clock"] = config.clock
        summary["control"] = dict(control.__dict__)
        tag = config.tag(mode)
        title = f"{config.label or config.policy_name} ({tag})"
        summary["cluster_map"] = str(
            plot_cluster_map(plan, results, out / f"clusters_{tag}.png", title)
        )
        summary["grasp_plot"] = str(plot_first_grasps(results, out / f"grasps_{tag}.png", title))
        first = results[0]
        summary["queue_plot"] = str(plot_queue_size(first.control, out / f"queue_{tag}.png",
                                                    chunk_size=policy.chunk_size,
                                                    title=f"{tag}: {first.key}"))  # fmt: skip
        per_mode[mode] = ModeResult(mode, control, summary, results, resumed=len(done))
    result = EvalResult(
        checkpoint=config.checkpoint if config.checkpoint is not None else config.policy_name,
        plan=config.plan, fps=scene.fps,
        noise_scale=config.noise_scale,
        perturbation={"camera_moved": config.camera_moved, "camera_shift_m": config.camera_shift_m,
                      "camera_turn_deg": config.camera_turn_deg,
                      "light_intensity": config.light_intensity,
                      "start_jitter_m": config.start_jitter_m,
                      "start_jitter_deg": config.start_jitter_deg},
        label=label, modes=per_mode, positions_seen_in_training=seen,
        results_file=out / "results.json", warnings=warnings, format=fmt,
    )  # fmt: skip
    write_json_atomic(result.results_file, result.results_json(), indent=None)
    return result
