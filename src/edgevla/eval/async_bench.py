"""`edgevla bench async`: what the control schedule costs and buys at a given inference latency.

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

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from edgevla_runtime.control.schedule import check_budget

from edgevla.console import console, emit_json, table
from edgevla.eval.run import EvalArgs, evaluate, policy_rate


@dataclass
class AsyncBenchArgs:
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
    json: bool = False


def _one(args: AsyncBenchArgs, latency: str, mode: str, threshold: str, tag: str) -> dict[str, Any]:
    res = evaluate(
        EvalArgs(checkpoint=args.checkpoint, plan=args.plan, out=args.out / tag, modes=(mode,), threshold=threshold,
                 aggregate=args.aggregate, latency=latency, episodes=args.episodes, workers=args.workers,
                 episode_time_s=args.episode_time_s, fps=args.fps, label=tag),
        quiet=True,
    )  # fmt: skip
    s = res["modes"][mode]
    return {"config": tag, "latency": latency, "mode": mode, "threshold": threshold, **{k: s[k] for k in (
        "success_test", "success_val", "success_global", "idle_fraction", "idle_fraction_running", "underruns", "completion_time_s",
        "boundary_accel_max", "boundary_accel_mean", "latency_p50_s")}}  # fmt: skip


def run_async_bench(args: AsyncBenchArgs) -> dict[str, Any]:
    from edgevla.policies.runner import TorchPolicyRunner

    runner = TorchPolicyRunner.from_checkpoint(args.checkpoint)
    fps = float(policy_rate(Path(args.checkpoint), args.fps))
    args = replace(args, fps=int(fps))  # every configuration at the same, resolved rate
    rows = [_one(args, "0", "async", "0.5", "zero-latency")]
    budgets = {}
    for lat in args.latencies:
        lat_s = f"{lat:g}"
        budgets[lat_s] = {
            f"{g:g}": check_budget(lat, fps, runner.chunk_size, g).to_dict()
            for g in args.thresholds
        }
        rows.append(_one(args, lat_s, "sync", "0.5", f"sync@{lat_s}s"))
        for g in args.thresholds:
            rows.append(_one(args, lat_s, "async", f"{g:g}", f"async-g{g:g}@{lat_s}s"))
        rows.append(_one(args, lat_s, "async", "auto", f"async-auto@{lat_s}s"))
        if not args.json:
            console.print(f"latency {lat_s} s done")
    result = {
        "checkpoint": str(args.checkpoint),
        "fps": fps,
        "chunk_size": runner.chunk_size,
        "rows": rows,
        "budgets": budgets,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "async_bench.json").write_text(json.dumps(result, indent=1, default=str))
    if args.json:
        emit_json(result)
    else:

        def f(x, spec=".2f"):
            return "-" if x is None else format(x, spec)

        console.print(table(
            f"edgevla bench async ({args.checkpoint}, chunk {runner.chunk_size}, {fps:g} fps, virtual clock)",
            ["config", "Test", "Val", "Global", "idle", "idle after 1st chunk", "underruns", "completion (s)", "max boundary accel (rad/s^2)"],
            [(r["config"], f(r["success_test"]), f(r["success_val"]), f(r["success_global"]), f"{r['idle_fraction']:.1%}", f"{r['idle_fraction_running']:.1%}",
              r["underruns"], f(r["completion_time_s"]), f(r["boundary_accel_max"], ".1f")) for r in rows],
        ))  # fmt: skip
    return result
