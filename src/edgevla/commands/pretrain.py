"""`edgevla pretrain`: pre-train a policy's vision encoder on labelled simulation frames."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import tyro

from edgevla.console import console, emit_json, progress_bar, table
from edgevla.errors import EXIT_OK
from edgevla.train.pretrain import PretrainConfig, pretrain


@dataclass
class Args:
    """Pre-train a policy's vision encoder on labelled simulation frames (nothing downloads here)."""

    config: Annotated[PretrainConfig, tyro.conf.OmitArgPrefixes]
    json: bool = False


def run(args: Args) -> int:
    with progress_bar(args.json) as report:
        result = pretrain(args.config, progress=report)
    if args.json:
        emit_json(result.to_dict())
    else:
        console.print(table("edgevla pretrain", ["", "value"], list(result.to_dict().items())))
    return EXIT_OK
