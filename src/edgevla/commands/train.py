"""`edgevla train` (arguments and printing still live in edgevla.train.loop; moving here)."""

from __future__ import annotations

from edgevla.train.loop import TrainArgs as Args
from edgevla.train.loop import run_train as _run


def run(args: Args) -> int:
    result = _run(args)
    code = result.get("exit_code") if isinstance(result, dict) else getattr(result, "exit_code", 0)
    return int(code or 0)


__all__ = ["Args", "run"]
