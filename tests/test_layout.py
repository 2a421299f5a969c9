"""The house reads one way: sim -> dataset -> train -> deploy -> control/eval, commands on top.

Every import in src/edgevla (module level or inside a function) is parsed and checked against
the rules below, so an arrow that goes back up fails here with the file and the import named.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import edgevla

SRC = Path(edgevla.__file__).parent

# room -> rooms (and heavy libraries) it must never import
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "sim": ("edgevla.dataset", "edgevla.policies", "edgevla.train", "edgevla.eval", "edgevla.deploy", "edgevla.commands", "torch"),
    "dataset": ("edgevla.policies", "edgevla.train", "edgevla.eval", "edgevla.deploy", "edgevla.commands"),
    "policies": ("edgevla.train", "edgevla.eval", "edgevla.deploy", "edgevla.commands", "mujoco", "edgevla.sim"),
    "train": ("edgevla.eval", "edgevla.deploy", "edgevla.commands"),
    "deploy": ("edgevla.eval", "edgevla.commands"),
    "eval": ("edgevla.commands",),
}  # fmt: skip


def imports_of(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


@pytest.mark.parametrize("room", sorted(FORBIDDEN))
def test_no_arrow_goes_back_up(room: str) -> None:
    bad = []
    for path in sorted((SRC / room).rglob("*.py")):
        for line, mod in imports_of(path):
            if any(mod == f or mod.startswith(f + ".") for f in FORBIDDEN[room]):
                bad.append(f"{path.relative_to(SRC.parent)}:{line} imports {mod}")
    assert not bad, "\n".join(bad)


def test_the_runtime_is_not_copied_into_the_main_package() -> None:
    """One copy of the control loop and the data contract: edgevla imports edgevla_runtime."""
    for gone in ("control", "features.py", "observation.py"):
        assert not (SRC / gone).exists(), f"src/edgevla/{gone} duplicates edgevla_runtime"


def test_matplotlib_backend_is_chosen_in_one_place() -> None:
    users = [p for p in SRC.rglob("*.py") if 'matplotlib.use("Agg")' in p.read_text()]
    assert len(users) <= 1, users
