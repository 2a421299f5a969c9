"""`edgevla pretrain`: pre-train a policy's vision encoder on labelled simulation frames."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import tyro

from edgevla.commands import present
from edgevla.console import console, table
from edgevla.errors import EXIT_OK
from edgevla.train.pretrain import PretrainConfig, pretrain


@dataclass
class Args:
    """Pre-train a policy's vision encoder on labelled simulation frames (nothing downloads here)."""

    config: Annotated[PretrainConfig, tyro.conf.OmitArgPrefixes]
    json: bool = False
    """print one JSON object instead of tables (for scripts and CI)"""


def run(args: Args) -> int:
    present(args, lambda report: pretrain(args.config, progress=report), show)
    return EXIT_OK


def show(result) -> None:
    console.print(table("edgevla pretrain", ["", "value"], list(result.to_dict().items())))
