"""`edgevla plan` (arguments and printing still live in edgevla.dataset.plan; moving here)."""

from __future__ import annotations

from edgevla.dataset.plan import PlanArgs as Args
from edgevla.dataset.plan import run_plan as _run


def run(args: Args) -> int:
    result = _run(args)
    code = result.get("exit_code") if isinstance(result, dict) else getattr(result, "exit_code", 0)
    return int(code or 0)


__all__ = ["Args", "run"]
