"""Figures for people: the one place that picks matplotlib's backend.

Every PNG edgevla writes goes through `pyplot()` (headless Agg, chosen once, before pyplot is
first imported) and `save_png` (makes the folder, closes the figure so long runs do not leak).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed, safe in worker processes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig: Any, path: str | Path, dpi: int = 110) -> Path:
    """Write `fig` to `path` (folders made), close it, return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)
    return path
