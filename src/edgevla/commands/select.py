"""`edgevla select`: choose a run's checkpoint by closed-loop success on Test/Val, not by loss."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgevla.commands import present
from edgevla.console import console, table
from edgevla.errors import EXIT_OK
from edgevla.eval.report import fmt_outcomes
from edgevla.eval.select import SelectConfig, SelectResult, select


@dataclass
class Args:
    """Rank a run's checkpoints by closed-loop success on the plan's Test and Val positions."""

    run: Path
    plan: Path = Path("outputs/plan.json")
    threshold: str = "0.5"
    aggregate: str = "weighted_average"
    latency: str = "measured"
    fps: int | None = None
    """control rate (default: the rate of the run's training data)"""
    episodes: int = 1
    episode_time_s: float = 20.0
    workers: int = 2
    every: int = 1
    """evaluate every N-th checkpoint (the last one always)"""
    from_step: int = 0
    """skip checkpoints before this step (early ones rarely win and each costs a full eval)"""
    noise_scale: float = 1.0
    """flow-matching policies: scale of the initial noise (1 = SmolVLA's sampler)"""
    start_jitter_m: float = 0.0
    """move each rollout's bag start by a seeded offset up to this far (m): rollouts of a
    deterministic policy then differ, so --episodes N measures N different starts"""
    start_jitter_deg: float = 0.0
    """... and turn it by up to this much (degrees)"""
    resume: bool = True
    """continue from the episodes already finished for the same settings"""
    json: bool = False
    """print one JSON object instead of tables (for scripts and CI)"""

    def config(self) -> SelectConfig:
        return SelectConfig(
            run=self.run, plan=self.plan, chunk_size_threshold=self.threshold,
            aggregate_fn_name=self.aggregate, latency=self.latency, fps=self.fps,
            episodes=self.episodes, episode_time_s=self.episode_time_s, workers=self.workers,
            every=self.every, from_step=self.from_step, noise_scale=self.noise_scale,
            start_jitter_m=self.start_jitter_m, start_jitter_deg=self.start_jitter_deg,
            resume=self.resume,
        )  # fmt: skip


def print_result(result: SelectResult) -> None:
    cols = ["checkpoint", "Test", "Val", "Global", "val loss", "failures", ""]
    rows = [(r.checkpoint.name, r.test, r.val, r.global_,
             "-" if r.val_loss is None else f"{r.val_loss:.4f}", fmt_outcomes(r.outcomes),
             "chosen" if r is result.chosen else "")
            for r in sorted(result.ranked, key=lambda r: r.step)]  # fmt: skip
    console.print(table("edgevla select (closed-loop success, not loss)", cols, rows))
    console.print(f"best: {result.best_link} -> {result.chosen.checkpoint}")
    console.print(f"figure: {result.figure}")


def run(args: Args) -> int:
    config = args.config()  # every argument checked before any work
    present(args, lambda report: select(config, progress=report), print_result,
            notes=lambda r: r.notes, label="note")  # fmt: skip
    return EXIT_OK
