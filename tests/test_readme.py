"""The README is the front door: its examples run, its links resolve, it stays short.

A python block preceded by `<!-- test: run -->` is executed as written, in a fresh interpreter
from the repository root, so an example that drifts from the code fails here.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAX_LINES = 200
RUN_MARK = "<!-- test: run -->"
EXAMPLE_TIMEOUT_S = 120  # generous for a loaded 2-core machine; each runs in a few seconds idle


def readme_text() -> str:
    return README.read_text(encoding="utf-8")


def runnable_blocks(text: str) -> list[str]:
    """Python blocks directly preceded by the run mark (blank lines between are allowed)."""
    pattern = re.compile(re.escape(RUN_MARK) + r"\s*\n```python\n(.*?)\n```", re.DOTALL)
    return pattern.findall(text)


def _example(needle: str) -> str:
    blocks = [b for b in runnable_blocks(readme_text()) if needle in b]
    assert blocks, f"no README block marked {RUN_MARK!r} contains {needle!r}"
    return blocks[0]


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, MUJOCO_GL=os.environ.get("MUJOCO_GL", "egl"))
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=EXAMPLE_TIMEOUT_S,
    )


def test_readme_is_at_most_200_lines():
    n = len(readme_text().splitlines())
    assert n <= MAX_LINES, f"README.md has {n} lines; the limit is {MAX_LINES}"


def test_readme_marks_the_two_examples():
    blocks = runnable_blocks(readme_text())
    assert len(blocks) >= 2, f"expected >= 2 blocks marked {RUN_MARK!r}, found {len(blocks)}"


def test_gymnasium_example_runs():
    code = _example("env.reset(seed=0)")
    assert 'gym.make("edgevla/TeaBagMug-v0")' in code and "env.step(" in code
    done = run_python(code)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "observation.state" in done.stdout


def test_plug_in_your_own_policy_example_runs():
    code = _example("run_episode")
    assert "def predict_chunk" in code and "def reset" in code and "ControlConfig(" in code
    done = run_python(code)
    assert done.returncode == 0, done.stderr[-3000:]
    success, ticks = done.stdout.split()[:2]
    assert success in ("True", "False")
    assert 0 < int(ticks) <= 45  # the example's max_steps


def test_readme_links_and_images_exist():
    targets = re.findall(r"\]\(([^)#\s]+)\)", readme_text())
    assert targets, "the README links nothing"
    for target in targets:
        if target.startswith(("http://", "https://")):
            continue
        assert (ROOT / target).exists(), f"README links {target}, which does not exist"
    image = ROOT / "docs" / "img" / "episode.png"
    assert image.stat().st_size < 200_000, "keep the README's picture under 200 KB"


def _results_rows(text: str) -> list[list[str]]:
    """Body rows of every table in the Results section (each table's last column: reproduce)."""
    section = text.split("## Results", 1)[1].split("\n## ", 1)[0]
    tables = re.findall(r"((?:^\|.*\n)+)", section + "\n", re.MULTILINE)
    assert tables, "the Results section has no table"
    rows = []
    for table in tables:
        header, _rule, *body = table.strip().splitlines()
        assert header.strip("| ").split(" | ")[-1] == "reproduce", header
        rows += [[c.strip() for c in row.strip().strip("|").split("|")] for row in body]
    return rows


def test_every_result_has_a_date_and_a_reproduce_command():
    rows = _results_rows(readme_text())
    assert rows, "the Results table is empty"
    for cells in rows:
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", cells[-2]), f"no date in {cells}"
        assert cells[-1] == "same" or cells[-1].startswith(
            ("`edgevla ", "`edgevla-runtime ", "`.venv/bin/python benchmarks/")
        ), f"no command: {cells}"
        longest = max(cells, key=len)
        assert len(longest) <= 200, f"keep the rows short; this cell has {len(longest)}: {longest}"


def _code(text: str) -> str:
    """The README's shell blocks and inline code spans, where its commands are."""
    fenced = re.findall(r"```(?:bash|sh)\n(.*?)```", text, re.DOTALL)
    prose = re.sub(r"```[a-z]*\n.*?```", "", text, flags=re.DOTALL)
    return "\n".join(fenced + re.findall(r"`([^`\n]+)`", prose))


def test_readme_commands_are_cli_verbs():
    """Every `edgevla VERB` the README shows is a verb `edgevla --help` lists."""
    listing = subprocess.run(
        [sys.executable, "-m", "edgevla.cli", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    verbs = set(re.findall(r"^  ([a-z][a-z-]*(?: [a-z][a-z-]*)?)  ", listing, re.MULTILINE))
    assert {"plan", "record", "eval", "schedule"} <= verbs, listing
    used = re.findall(r"\bedgevla ([a-z][a-z-]*)(?: ([a-z][a-z-]*))?", _code(readme_text()))
    assert used, "the README shows no edgevla command"
    for first, second in used:
        if f"{first} {second}" in verbs or first in verbs:
            continue
        raise AssertionError(f"the README uses `edgevla {first} {second}`: not a command")
