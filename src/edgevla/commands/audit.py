"""`edgevla audit` (arguments and printing still live in edgevla.dataset.audit; moving here)."""

from __future__ import annotations

from edgevla.dataset.audit import AuditArgs as Args
from edgevla.dataset.audit import run_audit as _run


def run(args: Args) -> int:
    result = _run(args)
    code = result.get("exit_code") if isinstance(result, dict) else getattr(result, "exit_code", 0)
    return int(code or 0)


__all__ = ["Args", "run"]
