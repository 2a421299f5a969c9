"""`edgevla eval open-loop`: predicted chunks vs recorded actions on train / val episodes
(training fit vs generalisation), no simulator in the loop."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from edgevla.commands import present
from edgevla.console import console, table
from edgevla.errors import EXIT_OK
from edgevla.eval.open_loop import OpenLoopConfig, OpenLoopResult, open_loop


@dataclass
class Args:
    """Chunks predicted from recorded frames vs the recorded actions, train vs val split."""

    checkpoint: Path
    dataset: Path | None = None
    """recorded dataset (default: the first dataset the checkpoint was trained on)"""
    splits: tuple[Literal["train", "val"], ...] = ("train", "val")
    episodes_per_split: int = 12
    """episodes per split, spread evenly over the split (recovery episodes skipped)"""
    before_grasp_s: tuple[float, ...] = (1.5, 0.67)
    """anchors: seconds before the first grasp (the episode start is always one)"""
    seed: int = 0
    """seeds a sampling policy's noise (SmolVLA), per episode"""
    noise_scale: float = 1.0
    """flow-matching policies: scale of the initial noise (1 = SmolVLA's sampler)"""
    threads: int = 1
    out: Path | None = None
    """where open_loop.json and open_loop.png go (default: <checkpoint>/eval)"""
    json: bool = False
    """print one JSON object instead of tables (for scripts and CI)"""

    def config(self) -> OpenLoopConfig:
        return OpenLoopConfig(
            checkpoint=self.checkpoint, dataset=self.dataset, splits=tuple(self.splits),
            episodes_per_split=self.episodes_per_split, before_grasp_s=tuple(self.before_grasp_s),
            seed=self.seed, noise_scale=self.noise_scale, threads=self.threads, out=self.out,
        )  # fmt: skip


def print_result(result: OpenLoopResult) -> None:
    rows, names = [], []
    for split, s in result.splits.items():
        if not s.get("episodes"):
            continue
        names, g = list(s["mean_abs_deg"]), s["at_grasp"]
        pan_at = []  # the first joint (the pan) at the grasp: where a one-sided miss shows
        for t in result.before_grasp_s:
            a = g.get(f"{t:g}")
            pan_at.append("-" if a is None else
                          f"{a['mean_deg'][names[0]]:+.1f} / {a['mean_abs_deg'][names[0]]:.1f}")  # fmt: skip
        rows.append([split, s["episodes"], s["arm_mean_abs_deg"],
                     *s["mean_abs_deg"].values(), *pan_at])  # fmt: skip
    cols = ["Split", "Episodes", "Arm |err| (deg)", *names,
            *(f"{names[0] if names else 'pan'} at grasp, {t:g} s ahead: mean / abs"
              for t in result.before_grasp_s)]  # fmt: skip
    console.print(table("edgevla eval open-loop: chunk vs recorded actions (deg)", cols, rows))
    console.print(result.verdict)
    console.print(f"plot: {result.plot}\nresults: {result.results_file}")


def run(args: Args) -> int:
    config = args.config()  # every argument checked before any work
    present(args, lambda report: open_loop(config, progress=report), print_result)
    return EXIT_OK
