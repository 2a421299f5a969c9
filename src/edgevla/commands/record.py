"""`edgevla record` (arguments and printing still live in edgevla.dataset.record; moving here)."""

from __future__ import annotations

from edgevla.dataset.record import RecordArgs as Args
from edgevla.dataset.record import run_record as _run


def run(args: Args) -> int:
    result = _run(args)
    code = result.get("exit_code") if isinstance(result, dict) else getattr(result, "exit_code", 0)
    return int(code or 0)


__all__ = ["Args", "run"]
