"""`edgevla bench latency`: inference latency of a checkpoint in PyTorch and of bundles in ONNX
Runtime, per call and per stage."""

from __future__ import annotations

from dataclasses import dataclass

from edgevla.commands import config_from, present
from edgevla.console import console, table
from edgevla.deploy.bench import LatencyBenchConfig, bench_latency


@dataclass(frozen=True)
class Args(LatencyBenchConfig):
    """Time predict_chunk (p50/p95) for a checkpoint and bundles, with per-stage medians."""

    json: bool = False

    def __post_init__(self) -> None:
        """Checked when run() builds the config, so a bad value is one line (exit 2)."""


def run(args: Args) -> int:
    config = config_from(args, LatencyBenchConfig)
    present(args, lambda report: bench_latency(config, progress=report), show)
    return 0


def show(result) -> None:
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
