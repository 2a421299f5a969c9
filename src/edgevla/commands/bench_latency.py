"""`edgevla bench latency`: inference latency of a checkpoint in PyTorch and of bundles in ONNX
Runtime, per call and per stage."""

from __future__ import annotations

from dataclasses import dataclass, fields

from edgevla.console import console, emit_json, progress_bar, table
from edgevla.deploy.bench import LatencyBenchConfig, bench_latency


@dataclass(frozen=True)
class Args(LatencyBenchConfig):
    """Time predict_chunk (p50/p95) for a checkpoint and bundles, with per-stage medians."""

    json: bool = False

    def __post_init__(self) -> None:
        """Checked when run() builds the config, so a bad value is one line (exit 2)."""


def run(args: Args) -> int:
    config = LatencyBenchConfig(
        **{f.name: getattr(args, f.name) for f in fields(LatencyBenchConfig)}
    )
    with progress_bar(quiet=args.json) as report:
        result = bench_latency(config, progress=report)
    if args.json:
        emit_json(result.to_dict())
        return 0
    base = result.rows[0].p50_s
    rows = [
        (r.name, r.format, r.precision, r.threads, f"{1000 * r.p50_s:.1f} ms", f"{1000 * r.p95_s:.1f} ms",
         f"{base / r.p50_s:.2f}x", " ".join(f"{k} {1000 * v:.1f}" for k, v in r.stages_p50_s.items()))
        for r in result.rows
    ]  # fmt: skip
    cols = ["policy", "format", "precision", "threads", "p50", "p95", "speed-up", "stages p50 (ms)"]
    console.print(
        table(f"edgevla bench latency ({result.calls} calls, {result.machine})", cols, rows)
    )
    return 0
