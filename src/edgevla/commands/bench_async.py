"""`edgevla bench async`: sync vs async vs auto at the paper's latencies (virtual clock)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgevla.commands import present
from edgevla.console import console, table
from edgevla.errors import EXIT_OK
from edgevla.eval.async_bench import AsyncBenchConfig, AsyncBenchResult, bench_async


@dataclass
class Args:
    """Sync vs async vs auto at the paper's latencies, on the virtual clock."""

    checkpoint: Path
    plan: Path = Path("outputs/plan.json")
    out: Path = Path("outputs/bench_async")
    latencies: tuple[float, ...] = (0.32, 2.86)
    thresholds: tuple[float, ...] = (0.2, 0.5, 0.8)
    """fixed chunk_size_threshold values to compare with auto (the paper used 0.2)"""
    aggregate: str = "weighted_average"
    episodes: int = 1
    workers: int = 2
    episode_time_s: float = 30.0
    fps: int | None = None
    """control rate (default: the rate of the policy's training data)"""
    start_jitter_m: float = 0.0
    """move each rollout's bag start by a seeded offset up to this far (m): rollouts of a
    deterministic policy then differ, so --episodes N measures N different starts"""
    start_jitter_deg: float = 0.0
    """... and turn it by up to this much (degrees)"""
    resume: bool = True
    """continue from the episodes already finished for the same settings"""
    json: bool = False
    """print one JSON object instead of tables (for scripts and CI)"""

    def config(self) -> AsyncBenchConfig:
        return AsyncBenchConfig(
            checkpoint=self.checkpoint, plan=self.plan, out=self.out,
            latencies=tuple(self.latencies), thresholds=tuple(self.thresholds),
            aggregate_fn_name=self.aggregate, episodes=self.episodes, workers=self.workers,
            episode_time_s=self.episode_time_s, fps=self.fps, start_jitter_m=self.start_jitter_m,
            start_jitter_deg=self.start_jitter_deg, resume=self.resume,
        )  # fmt: skip


def print_result(result: AsyncBenchResult) -> None:
    def f(x, spec=".2f"):
        return "-" if x is None else format(x, spec)

    console.print(table(
        f"edgevla bench async ({result.checkpoint}, chunk {result.chunk_size}, {result.fps:g} fps, virtual clock)",
        ["config", "Test", "Val", "Global", "idle", "idle after 1st chunk", "underruns", "completion (s)", "max boundary accel (rad/s^2)"],
        [(r.config, f(r.success_test), f(r.success_val), f(r.success_global), f"{r.idle_fraction:.1%}", f"{r.idle_fraction_running:.1%}",
          r.underruns, f(r.completion_time_s), f(r.boundary_accel_max, ".1f")) for r in result.rows],
    ))  # fmt: skip
    console.print(f"results: {result.results_file}")


def run(args: Args) -> int:
    config = args.config()  # every argument checked before any work
    present(args, lambda report: bench_async(config, progress=report), print_result,
            notes=lambda r: r.warnings)  # fmt: skip
    return EXIT_OK
