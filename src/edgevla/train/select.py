"""`edgevla select`: choose a run's checkpoint by closed-loop success, not by loss.

The paper's rule: pick the final checkpoint by success rate on the training-cluster (Test) and
held-out (Val) positions. Every checkpoint of the run is evaluated with the same protocol and
control settings; ranking is by Global success, then Val success, then the later step (more
training at equal success generalised no worse in the paper). The choice is written to
<run>/selection.json and <run>/best (a symlink to the chosen checkpoint), with a PNG that puts
success and validation loss side by side.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgevla.console import console, emit_json, table
from edgevla.eval.report import fmt_outcomes
from edgevla.eval.run import EvalArgs, evaluate, policy_rate
from edgevla.train.loop import list_checkpoints, read_log


@dataclass
class SelectArgs:
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
    json: bool = False


def rank_key(row: dict[str, Any]) -> tuple:
    return (row["global"], row["val"] if row["val"] is not None else -1, row["step"])


def plot_selection(rows: list[dict[str, Any]], path: Path, chosen: int) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    steps = [r["step"] for r in rows]
    ax.plot(steps, [r["global"] for r in rows], "o-", label="Global success")
    ax.plot(steps, [r["test"] for r in rows], "s--", label="Test success", alpha=0.7)
    ax.plot(steps, [r["val"] for r in rows], "^--", label="Val success (held out)", alpha=0.7)
    ax.axvline(chosen, color="g", ls=":", label=f"chosen: step {chosen}")
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlabel("step")
    ax.set_ylabel("success rate")
    vl = [(r["step"], r["val_loss"]) for r in rows if r.get("val_loss") is not None]
    if vl:
        ax2 = ax.twinx()
        ax2.plot(*zip(*vl, strict=True), "k.-", alpha=0.4, label="validation loss")
        ax2.set_ylabel("validation loss")
        ax2.legend(loc="lower right")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title("checkpoint selection: closed-loop success vs validation loss")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def run_select(args: SelectArgs) -> dict[str, Any]:
    checkpoints = list_checkpoints(args.run)
    if not checkpoints:
        raise FileNotFoundError(
            f"{args.run} has no checkpoints (run `edgevla train --out {args.run}` first)"
        )
    late = [c for c in checkpoints if int(c.name.split("-")[1]) >= args.from_step]
    if not late:
        raise ValueError(
            f"{args.run}: no checkpoint at or after step {args.from_step} (last: "
            f"{checkpoints[-1].name}); lower --from-step"
        )
    picked = late[:: args.every]
    if checkpoints[-1] not in picked:
        picked.append(checkpoints[-1])
    val_loss = {r["step"]: r["val_loss"] for r in read_log(args.run) if "val_loss" in r}
    # One control rate for the whole run, so every checkpoint is judged under the same settings.
    fps = policy_rate(checkpoints[-1], args.fps)
    rows = []
    for ckpt in picked:
        step = int(ckpt.name.split("-")[1])
        res = evaluate(
            EvalArgs(checkpoint=ckpt, plan=args.plan, threshold=args.threshold, aggregate=args.aggregate,
                     latency=args.latency, episodes=args.episodes, workers=args.workers, fps=fps,
                     episode_time_s=args.episode_time_s, noise_scale=args.noise_scale,
                     label=ckpt.name),
            quiet=args.json,
        )  # fmt: skip
        s = res["modes"]["async"]
        rows.append({"checkpoint": str(ckpt), "step": step, "test": s["success_test"], "val": s["success_val"],
                     "global": s["success_global"], "val_loss": val_loss.get(step),
                     "outcomes": s["outcomes"]})  # fmt: skip
        if not args.json:
            console.print(
                f"{ckpt.name}: global {s['success_global']:.2f} (test {s['success_test']:.2f}, "
                f"val {s['success_val']:.2f}); failures: {fmt_outcomes(s['outcomes'])}"
            )
    best = max(rows, key=rank_key)
    lowest_loss = min(
        (r for r in rows if r["val_loss"] is not None), key=lambda r: r["val_loss"], default=None
    )
    link = Path(args.run) / "best"
    if link.is_symlink() or link.exists():
        link.unlink()
    os.symlink(Path(best["checkpoint"]).resolve(), link)
    figure = plot_selection(rows, Path(args.run) / "selection.png", best["step"])
    result = {
        "run": str(args.run),
        "fps": fps,
        "threshold": args.threshold,
        "noise_scale": args.noise_scale,
        "chosen": best,
        "lowest_val_loss": lowest_loss,
        "ranked": sorted(rows, key=rank_key, reverse=True),
        "figure": str(figure),
        "best_link": str(link),
    }
    (Path(args.run) / "selection.json").write_text(json.dumps(result, indent=1))
    if args.json:
        emit_json(result)
    else:
        cols = ["checkpoint", "Test", "Val", "Global", "val loss", "failures", ""]
        trows = [(Path(r["checkpoint"]).name, r["test"], r["val"], r["global"],
                  "-" if r["val_loss"] is None else f"{r['val_loss']:.4f}", fmt_outcomes(r["outcomes"]),
                  "chosen" if r is best else "")
                 for r in sorted(rows, key=lambda r: r["step"])]  # fmt: skip
        console.print(table("edgevla select (closed-loop success, not loss)", cols, trows))
    return result
