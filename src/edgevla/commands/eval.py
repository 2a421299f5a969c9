"""`edgevla eval` (arguments and printing still live in edgevla.eval.run; moving here)."""

from __future__ import annotations

from edgevla.eval.run import EvalArgs as Args
from edgevla.eval.run import run_eval as _run


def run(args: Args) -> int:
    result = _run(args)
    code = result.get("exit_code") if isinstance(result, dict) else getattr(result, "exit_code", 0)
    return int(code or 0)


__all__ = ["Args", "run"]
