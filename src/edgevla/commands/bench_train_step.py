"""`edgevla bench train-step`: one ACT training step on this CPU, LeRobot's default vs the edge preset."""

from __future__ import annotations

from dataclasses import dataclass

from edgevla.console import console, emit_json, table
from edgevla.errors import BadInput


@dataclass(frozen=True)
class Args:
    """Median forward+backward and AdamW step time, batch of synthetic inputs, 3 cameras."""

    threads: int = 1
    batch: int = 8
    full_res: bool = False
    """also time LeRobot's default ACT at 480x640 (slow: one repeat)"""
    json: bool = False
    """print one JSON object instead of tables (for scripts and CI)"""


def run(args: Args) -> int:
    if args.threads < 1 or args.batch < 1:
        raise BadInput("--threads and --batch must be >= 1")
    import torch

    from edgevla.policies.act.bench import train_step_rows

    torch.set_num_threads(args.threads)
    rows = train_step_rows(args.batch, args.full_res)
    if args.json:
        emit_json({"threads": args.threads, "batch": args.batch, "rows": rows})
        return 0
    title = f"ACT training step, batch {args.batch}, 3 cameras, {args.threads} thread(s)"
    console.print(table(title, ["config", "params", "fwd+bwd", "step"],
                        [(r["config"], f"{r['params_m']:.1f}M", f"{r['fwd_bwd_s']:.3f} s", f"{r['step_s']:.3f} s")
                         for r in rows]))  # fmt: skip
    return 0
