"""Terminal output shared by every command: rich tables and progress bars for people, one JSON
object for scripts (`--json`). Commands build a plain dict of results and hand it here."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

# Human output goes to stderr when --json is given, so stdout holds exactly one JSON object.
# Not a terminal (logs, CI): rich would wrap tables at 80 columns; results tables need more.
console = Console(stderr=False, width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True)


def _default(o: Any):
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    if hasattr(o, "__fspath__"):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def emit_json(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, default=_default) + "\n")
    sys.stdout.flush()


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Table:
    t = Table(title=title, title_justify="left")
    for c in columns:
        t.add_column(c, overflow="fold")
    for r in rows:
        t.add_row(*(_fmt(v) for v in r))
    return t


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def _progress(quiet: bool) -> Progress:
    """A progress bar on stderr, so --json output stays clean."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        disable=quiet,
        transient=False,
    )


@contextmanager
def progress_bar(quiet: bool = False):
    """A rich progress bar driven by domain code's ProgressEvents: yields a ProgressFn.

    One bar per task name, created on its first event. The bar starts with the first event: a
    command refused before any work prints its one-line error alone, not after the blank line
    an empty bar leaves on stderr when it stops."""
    from edgevla.progress import ProgressEvent

    bar = _progress(quiet)
    tasks: dict[str, Any] = {}
    lock, closed = threading.Lock(), threading.Event()

    def report(event: ProgressEvent) -> None:
        with lock:  # reports may come from worker threads; none restarts a closed bar
            if closed.is_set():
                return
            if not tasks:
                bar.start()
            if event.task not in tasks:
                tasks[event.task] = bar.add_task(event.task, total=event.total, status="")
        bar.update(tasks[event.task], completed=event.done, total=event.total, status=event.status)

    try:
        yield report
    finally:
        with lock:
            closed.set()
            if tasks:
                bar.stop()
