"""`edgevla schedule`: the budget as a table or one JSON object, exit 1 when it does not fit."""

from __future__ import annotations

import json

import pytest

from edgevla.cli import main


def schedule(latency: str, *extra: str) -> int:
    """`edgevla schedule` at the paper's settings (60 fps, chunk 100, threshold 0.2)."""
    return main(["schedule", "--latency", latency, "--fps", "60", "--chunk", "100",
                 "--threshold", "0.2", *extra])  # fmt: skip


def test_schedule_command_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert schedule("2.86", "--json") == 1
    data = json.loads(capsys.readouterr().out)
    assert data["fits"] is False
    assert data["margin_s"] == pytest.approx(1 / 3 - 2.86)
    assert schedule("0.32", "--json") == 0
    assert json.loads(capsys.readouterr().out)["fits"] is True


def test_schedule_command_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert schedule("0.32") == 0
    out = capsys.readouterr().out
    assert "T_execution" in out and "0.333 s" in out and "fits" in out


def test_schedule_refuses_a_threshold_outside_0_1_in_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["schedule", "--latency", "0.32", "--threshold", "1.5"]) == 2
    err = capsys.readouterr().err
    assert "threshold must be in [0, 1], got 1.5" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
