"""What the control schedule costs and buys at a given inference latency (`edgevla bench async`).

For each virtual latency (default: the paper's 0.32 s and 2.86 s on the i.MX 95) it evaluates the
same checkpoint on the plan's 30 positions with:
    sync                 observe, infer, execute the chunk; the arm idles while the model runs
    async g=...          LeRobot's fixed chunk_size_threshold (the paper: 0.2, weighted_average)
    async auto           the latency-aware trigger (p95 latency + margin)
plus a zero-latency reference, and reports success per set, idle fraction, underruns,
completion time and the largest joint acceleration at chunk boundaries (smoothness), next to the
budget verdict of `edgevla schedule`. Results are reproducible: the latency is virtual.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgevla_runtime.control.schedule import check_budget

from edgevla.dataset.plan import Plan
from edgevla.errors import BadInput
from edgevla.eval.run import (
    EvalConfig,
    check_checkpoint_folder,
    check_control_flags,
    check_start_jitter,
    evaluate,
    parse_threshold,
    policy_rate,
)
from edgevla.jsonio import write_json_atomic
from edgevla.progress import ProgressEvent, ProgressFn


@dataclass(frozen=True)
class AsyncBenchConfig:
    """What `bench_async` runs; validated on construction (messages name the CLI flags)."""

    checkpoint: Path
    plan: Path = Path("outputs/plan.json")
    out: Path = Path("outputs/bench_async")
    latencies: tuple[float, ...] = (0.32, 2.86)  # seconds of virtual inference latency
    thresholds: tuple[float, ...] = (0.2, 0.5, 0.8)  # fixed chunk_size_threshold values
    aggregate_fn_name: str = "weighted_average"
    episodes: int = 1
    workers: int = 2
    episode_time_s: float = 30.0
    fps: int | None = None  # None: the rate of the policy's training data
    start_jitter_m: float = 0.0  # each rollout's bag start moved up to this far (seeded)
    start_jitter_deg: float = 0.0  # ... and turned up to this much
    resume: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "checkpoint", Path(self.checkpoint))
        object.__setattr__(self, "out", Path(self.out))
        if not self.latencies:
            raise BadInput("give at least one latency in seconds", field="--latencies")
        for lat in self.latencies:
            if not (math.isfinite(lat) and lat > 0):
                raise BadInput(f"latencies must be positive seconds (e.g. 0.32 2.86), got {lat}",
                               field="--latencies")  # fmt: skip
        for g in self.thresholds:
            parse_threshold(g, flag="--thresholds")
        check_control_flags(self.aggregate_fn_name, "0", self.episode_time_s, self.episodes,
                            self.workers, self.fps)  # fmt: skip
        check_start_jitter(self.start_jitter_m, self.start_jitter_deg)


SUMMARY_KEYS = ("success_test", "success_val", "success_global", "idle_fraction",
                "idle_fraction_running", "underruns", "completion_time_s", "boundary_accel_max",
                "boundary_accel_mean", "latency_p50_s")  # fmt: skip


@dataclass
class BenchRow:
    """One configuration: its name, settings and the evaluation figures that compare them."""

    config: str  # "zero-latency", "sync@0.32s", "async-g0.2@0.32s", "async-auto@0.32s"
    latency: str
    mode: str
    threshold: str
    success_test: float | None
    success_val: float | None
    success_global: float | None
    idle_fraction: float
    idle_fraction_running: float
    underruns: int
    completion_time_s: float | None
    boundary_accel_max: float
    boundary_accel_mean: float
    latency_p50_s: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class AsyncBenchResult:
    checkpoint: Path
    fps: float
    chunk_size: int
    rows: list[BenchRow]
    budgets: dict[str, dict[str, dict[str, Any]]]  # latency -> threshold -> BudgetCheck dict
    results_file: Path
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """async_bench.json (and --json)."""
        return {"checkpoint": str(self.checkpoint), "fps": self.fps, "chunk_size": self.chunk_size,
                "rows": [r.to_dict() for r in self.rows], "budgets": self.budgets}  # fmt: skip


def bench_async(config: AsyncBenchConfig, progress: ProgressFn | None = None) -> AsyncBenchResult:
    """Evaluate every configuration (each in <out>/<config name>, resumable); writes
    <out>/async_bench.json."""
    from edgevla.policies.runner import TorchPolicyRunner

    check_checkpoint_folder(config.checkpoint)
    Plan.load(config.plan)  # a bad plan fails now, not after the first configuration
    warnings: list[str] = []
    runner = TorchPolicyRunner.from_checkpoint(config.checkpoint)
    fps = policy_rate(config.checkpoint, config.fps, warnings.append)  # one rate for all
    plan: list[tuple[str, str, str, str]] = [("0", "async", "0.5", "zero-latency")]
    budgets: dict[str, dict[str, dict[str, Any]]] = {}
    for lat in config.latencies:
        lat_s = f"{lat:g}"
        budgets[lat_s] = {f"{g:g}": check_budget(lat, fps, runner.chunk_size, g).to_dict()
                          for g in config.thresholds}  # fmt: skip
        plan.append((lat_s, "sync", "0.5", f"sync@{lat_s}s"))
        plan += [(lat_s, "async", f"{g:g}", f"async-g{g:g}@{lat_s}s") for g in config.thresholds]
        plan.append((lat_s, "async", "auto", f"async-auto@{lat_s}s"))
    rows = []
    for i, (latency, mode, threshold, tag) in enumerate(plan):
        if progress:
            progress(ProgressEvent("bench async", i, len(plan), tag))
        res = evaluate(
            EvalConfig(checkpoint=config.checkpoint, plan=config.plan, out=config.out / tag,
                       modes=(mode,), chunk_size_threshold=threshold,
                       aggregate_fn_name=config.aggregate_fn_name, latency=latency,
                       episodes=config.episodes, workers=config.workers,
                       episode_time_s=config.episode_time_s, fps=fps, label=tag,
                       start_jitter_m=config.start_jitter_m,
                       start_jitter_deg=config.start_jitter_deg, resume=config.resume),
            progress=progress,
        )  # fmt: skip
        warnings += res.warnings
        s = res.modes[mode].summary
        rows.append(BenchRow(tag, latency, mode, threshold, **{k: s[k] for k in SUMMARY_KEYS}))
    if progress:
        progress(ProgressEvent("bench async", len(plan), len(plan), "done"))
    result = AsyncBenchResult(config.checkpoint, float(fps), runner.chunk_size, rows, budgets,
                              config.out / "async_bench.json", warnings)  # fmt: skip
    write_json_atomic(result.results_file, result.to_dict(), indent=1)
    return result
