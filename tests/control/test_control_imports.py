"""edgevla.control becomes the board-side runtime: standard library and numpy only, never torch.

Module-level imports may name only the standard library, numpy and edgevla's own
torch-free modules; matplotlib (plots) and rich (CLI table) may be imported inside functions.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import edgevla.control
import edgevla.observation

CONTROL_DIR = Path(edgevla.control.__file__).parent
ALLOWED_TOP = set(sys.stdlib_module_names) | {"numpy", "__future__"}
ALLOWED_EDGEVLA = ("edgevla.control", "edgevla.features", "edgevla.observation")
ALLOWED_LAZY = {"matplotlib", "rich"}


def imported_modules(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        return [node.module]
    return []


def test_control_imports_stay_light() -> None:
    files = sorted(CONTROL_DIR.glob("*.py")) + [Path(edgevla.observation.__file__)]
    assert len(files) >= 9
    for path in files:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in tree.body:
            for mod in imported_modules(node):
                ok = mod.split(".")[0] in ALLOWED_TOP or mod.startswith(ALLOWED_EDGEVLA)
                assert ok, f"{path.name} imports {mod} at module level"
        for node in ast.walk(tree):
            for mod in imported_modules(node):
                top = mod.split(".")[0]
                assert top != "torch", f"{path.name} imports torch"
                assert top in ALLOWED_TOP | ALLOWED_LAZY or mod.startswith(ALLOWED_EDGEVLA), (
                    f"{path.name} imports {mod}"
                )
