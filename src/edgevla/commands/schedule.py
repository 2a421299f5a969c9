"""`edgevla schedule`: does T_inference < T_execution hold for a latency, fps, chunk, threshold?"""

from __future__ import annotations

import math
from dataclasses import dataclass

from edgevla_runtime.control.schedule import BudgetCheck, check_budget

from edgevla.console import console, emit_json, table
from edgevla.errors import EXIT_NO, EXIT_OK


@dataclass
class Args:
    """Does T_inference < T_execution hold? Exit status 0 when it fits, 1 when it does not."""

    latency: float
    """inference latency in seconds (e.g. 0.32 or 2.86, the paper's i.MX 95 figures)"""
    fps: float = 60.0
    chunk: int = 100
    threshold: float = 0.2
    """chunk_size_threshold g in [0, 1]: request when g * chunk actions remain"""
    json: bool = False
    """print one JSON object instead of tables (for scripts and CI)"""


def budget_rows(check: BudgetCheck) -> list[tuple[str, str]]:
    """The check as (quantity, value) rows for a person."""

    def fmt(x: float | None, unit: str = "", spec: str = ".3f") -> str:
        if x is None:
            return "none fits"
        if not math.isfinite(x):
            return "any"
        return f"{x:{spec}}{unit}"

    return [
        ("inference latency", f"{check.latency_s:.3f} s ({check.latency_ticks} ticks)"),
        ("control rate", f"{check.fps:g} fps"),
        ("chunk size", f"{check.chunk_size} actions"),
        ("threshold", f"{check.threshold:g} ({check.actions_left_at_request} actions queued)"),
        ("T_execution", f"{check.t_execution_s:.3f} s"),
        ("margin", f"{check.margin_s:+.3f} s"),
        ("verdict", "fits" if check.fits else "does NOT fit"),
        ("smallest threshold that fits", fmt(check.min_threshold)),
        ("highest fps that fits", fmt(check.max_fps, " fps", ".1f")),
        ("smallest chunk that fits", fmt(check.min_chunk_size, " actions", "d")),
    ]


def run(args: Args) -> int:
    check = check_budget(args.latency, args.fps, args.chunk, args.threshold)
    if args.json:
        emit_json(check.to_dict())
    else:
        title = "Async budget: T_inference <= T_execution?"
        console.print(table(title, ["quantity", "value"], budget_rows(check)))
    return EXIT_OK if check.fits else EXIT_NO
