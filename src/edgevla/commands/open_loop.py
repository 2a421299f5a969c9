"""`edgevla eval open-loop` (arguments and printing still live in edgevla.eval.open_loop; moving here)."""

from __future__ import annotations

from edgevla.eval.open_loop import OpenLoopArgs as Args
from edgevla.eval.open_loop import run_open_loop as _run


def run(args: Args) -> int:
    result = _run(args)
    code = result.get("exit_code") if isinstance(result, dict) else getattr(result, "exit_code", 0)
    return int(code or 0)


__all__ = ["Args", "run"]
