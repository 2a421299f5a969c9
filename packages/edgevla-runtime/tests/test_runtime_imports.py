"""The runtime is what goes on the board: the standard library, numpy, ONNX Runtime, and
msgpack + websockets for the remote client; never torch, MuJoCo, matplotlib or edgevla.

Two checks: every module's imports (parsed, so a lazy import inside a function counts too), and
a real control episode in a fresh interpreter where torch, MuJoCo, matplotlib and rich cannot be
imported at all, so an import sneaking in through any path fails here.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import edgevla_runtime

PACKAGE_DIR = Path(edgevla_runtime.__file__).parent
ALLOWED_TOP = set(sys.stdlib_module_names) | {
    "numpy",
    "onnxruntime",
    "msgpack",
    "websockets",
    "PIL",  # the optional jpeg extra, imported only when JPEG images are sent or received
    "__future__",
    "edgevla_runtime",
}
FORBIDDEN = ("torch", "mujoco", "matplotlib", "rich", "edgevla", "gymnasium", "tyro")


def imported_modules(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        return [node.module]
    return []


def test_every_module_imports_only_stdlib_numpy_and_itself() -> None:
    files = sorted(PACKAGE_DIR.rglob("*.py"))
    assert len(files) >= 12
    for path in files:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            for mod in imported_modules(node):
                assert mod.split(".")[0] in ALLOWED_TOP, f"{path.name} imports {mod}"


def test_control_episode_runs_with_heavy_packages_unimportable() -> None:
    script = f"""
import sys
for name in {FORBIDDEN!r}:
    sys.modules[name] = None  # `import name` now raises ImportError
from edgevla_runtime.control import ControlConfig, run_episode
from edgevla_runtime.testing import RecordingEnv, ScriptedRunner
cfg = ControlConfig(mode="async", chunk_size_threshold=0.5, latency="0.1", fps=30, max_steps=20)
result = run_episode(RecordingEnv(), ScriptedRunner(10), cfg, seed=3)
assert result.inference_count >= 2, result
loaded = sorted(m for m in sys.modules if m.split(".")[0] in {FORBIDDEN!r} and sys.modules[m] is not None)
assert not loaded, loaded
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
