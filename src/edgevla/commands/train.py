"""`edgevla train`: train a policy on recorded datasets; checkpoints, validation loss, curves."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import tyro

from edgevla.commands import present
from edgevla.console import console, err_console, table
from edgevla.errors import EXIT_OK
from edgevla.train.config import TrainConfig
from edgevla.train.loop import TrainingInterrupted, train


@dataclass
class Args:
    """Train a policy on recorded datasets; checkpoints, validation loss, curves; --resume.

    Ctrl-C finishes the step under way and saves a checkpoint at it before stopping."""

    config: Annotated[TrainConfig, tyro.conf.OmitArgPrefixes]
    json: bool = False
    """print one JSON object instead of tables (for scripts and CI)"""


def run(args: Args) -> int:
    try:
        present(args, lambda report: train(args.config, progress=report), show,
                notes=lambda r: r.notes, label="note")  # fmt: skip
    except TrainingInterrupted as stop:
        err_console.print(f"edgevla train: {stop}")
        raise
    return EXIT_OK


def show(result) -> None:
    rows = [(k, v) for k, v in result.to_dict().items() if k != "notes"]
    console.print(table("edgevla train", ["", "value"], rows))
