"""How domain code reports progress without printing: a callback.

Long work (recording, training, evaluation) calls `report(task, done, total, status)` as it
goes; the command floor hands in a callback that draws a rich progress bar, the demo hands in
its own, tests hand in a list's append or nothing. Domain code never imports rich.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class ProgressEvent:
    """task: what is being done ("record", "eval async"); done/total: units so far / in all
    (total None when unknown); status: a short free text ("success 12/15", "loss 0.053")."""

    task: str
    done: int
    total: int | None = None
    status: str = ""


class ProgressFn(Protocol):
    def __call__(self, event: ProgressEvent) -> None: ...


def no_progress(event: ProgressEvent) -> None:
    """The default callback: report nothing."""
