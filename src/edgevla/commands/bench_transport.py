"""`edgevla bench transport`: what a remote policy pays for the network on loopback, three
cameras at each image size, raw and JPEG (round trip minus the server's inference)."""

from __future__ import annotations

from dataclasses import dataclass

from edgevla.commands import config_from, present
from edgevla.console import console, table
from edgevla.deploy.transport_bench import TransportBenchConfig, bench_transport


@dataclass(frozen=True)
class Args(TransportBenchConfig):
    """Time remote vs in-process predict_chunk on 127.0.0.1 (p50/p99), per image size and codec."""

    json: bool = False
    """print one JSON object instead of tables (for scripts and CI)"""

    def __post_init__(self) -> None:
        """Checked when run() builds the config, so a bad value is one line (exit 2)."""


def run(args: Args) -> int:
    config = config_from(args, TransportBenchConfig)
    present(args, lambda report: bench_transport(config, progress=report), show)
    return 0


def _ms(x: float) -> str:
    return f"{1000 * x:.2f}"


def show(result) -> None:
    rows = [
        (f"3 x {r.size}", r.codec, f"{r.request_kb:.0f}", _ms(r.in_process_p50_s),
         _ms(r.in_process_p99_s), _ms(r.remote_p50_s), _ms(r.remote_p99_s),
         _ms(r.overhead_p50_s), _ms(r.overhead_p99_s))
        for r in result.rows
    ]  # fmt: skip
    cols = ["cameras", "codec", "request KB", "in-process p50 ms", "p99", "remote p50 ms", "p99",
            "overhead p50 ms", "p99"]  # fmt: skip
    title = (f"edgevla bench transport ({result.calls} calls, chunk {result.chunk_size}, "
             f"JPEG q{result.jpeg_quality}, {result.machine})")  # fmt: skip
    console.print(table(title, cols, rows))
    if result.meets_goal is not None:
        verdict = "met" if result.meets_goal else "missed"
        console.print(f"goal: overhead p50 <= {1000 * result.goal_overhead_p50_s:g} ms at 96x128 "
                      f"raw: {verdict}")  # fmt: skip
    for note in result.notes:
        console.print(f"note: {note}")
