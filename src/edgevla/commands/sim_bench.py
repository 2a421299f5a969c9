"""`edgevla sim bench` (arguments and printing still live in edgevla.sim.bench; moving here)."""

from __future__ import annotations

from edgevla.sim.bench import SimBenchArgs as Args
from edgevla.sim.bench import run as _run


def run(args: Args) -> int:
    result = _run(args)
    code = result.get("exit_code") if isinstance(result, dict) else getattr(result, "exit_code", 0)
    return int(code or 0)


__all__ = ["Args", "run"]
