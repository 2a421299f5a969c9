"""`edgevla bench latency`: inference latency of a checkpoint in PyTorch and of bundles in ONNX
Runtime, per call and per stage, at each thread count, with memory, size on disk and the floor
(FLOPs over this CPU's measured GEMM peak)."""

from __future__ import annotations

from dataclasses import dataclass

from edgevla.commands import config_from, present
from edgevla.console import console, table
from edgevla.deploy.bench import LatencyBenchConfig, bench_latency


@dataclass(frozen=True)
class Args(LatencyBenchConfig):
    """Time predict_chunk (p50/p90/p99) for a checkpoint and bundles at 1 and 2 threads, with
    per-stage latency, peak RSS, size on disk and "x of the floor" (latency / (graph FLOPs /
    measured GEMM peak)); --plot writes a bar chart."""

    json: bool = False

    def __post_init__(self) -> None:
        """Checked when run() builds the config, so a bad value is one line (exit 2)."""


def run(args: Args) -> int:
    config = config_from(args, LatencyBenchConfig)
    present(args, lambda report: bench_latency(config, progress=report), show, notes=_notes)
    return 0


def _notes(result) -> list[str]:
    return [
        f"{r.name}: {r.unresolved_nodes} conv/GEMM nodes of unknown shape are left out of its "
        "FLOPs, so its floor is too low"
        for r in result.rows
        if r.unresolved_nodes
    ]


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{1000 * seconds:.1f}"


def _x(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.1f}x"


def show(result) -> None:
    rows = [
        (r.name, r.format, r.precision, r.threads, _ms(r.p50_s), _ms(r.p90_s), _ms(r.p99_s),
         "-" if r.vs_pytorch is None else f"{r.vs_pytorch:.2f}x", _ms(r.floor_s), _x(r.x_floor),
         f"{r.rss_mb:.0f}", f"{r.disk_mb:.1f}",
         " ".join(f"{k} {_ms(v)} ({_x(r.stages_x_floor.get(k))})" for k, v in r.stages_p50_s.items()))
        for r in result.rows
    ]  # fmt: skip
    cols = ["policy", "format", "precision", "threads", "p50 ms", "p90 ms", "p99 ms",
            "vs PyTorch", "floor ms", "x floor", "RSS MB", "disk MB", "stages p50 ms (x floor)"]  # fmt: skip
    console.print(
        table(f"edgevla bench latency ({result.calls} calls, {result.machine})", cols, rows)
    )
    peaks = ", ".join(f"{p['threads']} thread(s) fp32 {p['fp32_gflops']:.0f} GFLOP/s, int8 "
                      f"{p['int8_gops']:.0f} GOP/s" for p in result.peaks)  # fmt: skip
    console.print(f"floor = graph FLOPs / measured GEMM peak ({peaks})")
    if result.figure:
        console.print(f"figure: {result.figure}")
