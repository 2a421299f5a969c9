"""`edgevla bench robots`: N simulated robots sharing one policy server on loopback, against one
robot alone: the latency each saw (p50/p99), the server's own time, and success on the
protocol's Test / Val / Global positions."""

from __future__ import annotations

from dataclasses import dataclass

from edgevla.commands import config_from, present
from edgevla.console import console, table
from edgevla.eval.robots_bench import RobotsBenchConfig, RobotsBenchResult, bench_robots


@dataclass(frozen=True)
class Args(RobotsBenchConfig):
    """Serve the policy once on 127.0.0.1, run the protocol with each robot count (robots are
    worker processes, each its own session), and compare latency and success."""

    json: bool = False
    """print one JSON object instead of tables (for scripts and CI)"""

    def __post_init__(self) -> None:
        """Checked when run() builds the config, so a bad value is one line (exit 2)."""


def run(args: Args) -> int:
    config = config_from(args, RobotsBenchConfig)
    present(args, lambda report: bench_robots(config, progress=report), show,
            notes=lambda r: r.warnings)  # fmt: skip
    return 0


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{1000 * x:.1f}"


def _rate(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def show(result: RobotsBenchResult) -> None:
    realtime = result.clock == "realtime"
    cols = ["robots", "episodes", "Test", "Val", "Global", "latency p50 ms", "p99",
            "server p50 ms", "p99", "network p50 ms", "per robot p50 / p99 ms"]  # fmt: skip
    if realtime:
        cols += ["jitter p99 ms", "deadline misses"]
    rows = []
    for r in result.rows:
        each = ", ".join(f"{_ms(p['latency_p50_s'])}/{_ms(p['latency_p99_s'])}"
                         for p in r.per_robot)  # fmt: skip
        row = [r.robots, r.episodes, _rate(r.success_test), _rate(r.success_val),
               _rate(r.success_global), _ms(r.latency_p50_s), _ms(r.latency_p99_s),
               _ms(r.server_p50_s), _ms(r.server_p99_s), _ms(r.network_p50_s), each]  # fmt: skip
        if realtime:
            row += [_ms(r.tick_jitter_p99_s), r.deadline_misses]
        rows.append(tuple(row))
    title = (f"edgevla bench robots ({result.policy}, {result.fps} fps, threshold "
             f"{result.threshold}, {result.clock} clock, server in a {result.server}, "
             f"{result.machine})")  # fmt: skip
    console.print(table(title, cols, rows))
    console.print(f"results: {result.results_file}")
