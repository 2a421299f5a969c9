"""`edgevla train`: train a policy on recorded datasets; checkpoints, validation loss, curves."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import tyro

from edgevla.console import console, emit_json, err_console, progress_bar, table
from edgevla.errors import EXIT_OK
from edgevla.train.config import TrainConfig
from edgevla.train.loop import TrainingInterrupted, train


@dataclass
class Args:
    """Train a policy on recorded datasets; checkpoints, validation loss, curves; --resume.

    Ctrl-C finishes the step under way and saves a checkpoint at it before stopping."""

    config: Annotated[TrainConfig, tyro.conf.OmitArgPrefixes]
    json: bool = False


def run(args: Args) -> int:
    try:
        with progress_bar(args.json) as report:
            result = train(args.config, progress=report)
    except TrainingInterrupted as stop:
        err_console.print(f"edgevla train: {stop}")
        raise
    for note in result.notes:
        err_console.print(f"note: {note}")
    if args.json:
        emit_json(result.to_dict())
    else:
        rows = [(k, v) for k, v in result.to_dict().items() if k != "notes"]
        console.print(table("edgevla train", ["", "value"], rows))
    return EXIT_OK
