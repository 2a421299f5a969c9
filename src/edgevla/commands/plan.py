"""`edgevla plan`: draw a recording plan (clusters, starts, recovery, held-out cluster,
evaluation sets), save it as JSON and, if asked, a PNG of the workspace."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import tyro

from edgevla.console import console, emit_json, table
from edgevla.dataset.plan import PlanConfig, write_plan
from edgevla.errors import EXIT_OK


@dataclass
class Args:
    """Draw a recording plan (clusters, starts, recovery, held-out cluster, evaluation sets)."""

    out: Path = Path("outputs/plan.json")
    figure: Path | None = None
    """also write a PNG of the workspace here"""
    config: Annotated[PlanConfig, tyro.conf.OmitArgPrefixes] = field(default_factory=PlanConfig)
    json: bool = False
    """print one JSON object instead of the table"""


def run(args: Args) -> int:
    result = write_plan(args.config, args.out, args.figure).to_dict()
    if args.json:
        emit_json(result)
    else:
        console.print(table("edgevla plan", ["", "value"], list(result.items())))
    return EXIT_OK
