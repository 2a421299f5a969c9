"""`edgevla record`: run the scripted expert through a plan into a LeRobot v3.0 dataset
(crash-safe, resumable). Exit status 1 when some planned episode was given up on."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

import tyro

from edgevla.commands import present
from edgevla.console import console, table
from edgevla.dataset.record import RecordConfig, record
from edgevla.errors import EXIT_NO, EXIT_OK


@dataclass
class Args:
    """Record the expert through a plan into a LeRobot v3.0 dataset (crash-safe, resumable)."""

    config: Annotated[RecordConfig, tyro.conf.OmitArgPrefixes] = field(default_factory=RecordConfig)
    json: bool = False
    """print one JSON object instead of the table"""


def run(args: Args) -> int:
    result = present(args, lambda report: record(args.config, progress=report), show)
    return EXIT_OK if result.complete else EXIT_NO


def show(result) -> None:
    console.print(table("edgevla record", ["", "value"], list(result.to_dict().items())))
    if not result.complete:
        console.print(
            f"gave up on episodes {result.episodes_given_up}: the dataset is not finalized; "
            "run again with --resume to record them"
        )
