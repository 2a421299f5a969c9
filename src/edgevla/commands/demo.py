"""`edgevla demo` (what `make demo` runs): the whole pipeline as far as it is built."""

from __future__ import annotations

from dataclasses import dataclass

from edgevla.commands import config_from
from edgevla.console import console, emit_json, progress_bar, table
from edgevla.demo import DemoConfig, run_demo


@dataclass(frozen=True)
class Args(DemoConfig):
    """Run every built stage of the pipeline on small defaults."""

    json: bool = False
    """print one JSON object instead of tables (for scripts and CI)"""


def run(args: Args) -> int:
    config = config_from(args, DemoConfig)

    def announce(title: str) -> None:
        if not args.json:
            console.rule(f"[bold]{title}")

    with progress_bar(quiet=args.json) as report:
        result = run_demo(config, progress=report, announce=announce)
    if args.json:
        emit_json(result.stages)
    else:
        console.print(
            table("edgevla demo: pipeline summary", ["stage", "result", "output"], result.rows)
        )
    return 0
