"""`edgevla quantize --plan auto --confirm-episodes N`: auto's choice and the fp32 bundle run the
evaluation protocol, and the bundle at --out is the one that held Global success."""

from __future__ import annotations

import json

import pytest

from edgevla.cli import main


@pytest.fixture(scope="module")
def tiny_bundle(tiny_checkpoint, tmp_path_factory):
    from edgevla.deploy.export import ExportConfig, export_bundle

    out = tmp_path_factory.mktemp("confirm") / "fp32"
    export_bundle(ExportConfig(checkpoint=tiny_checkpoint, out=out, parity_observations=1))
    return out


@pytest.mark.slow
def test_auto_choice_is_confirmed_closed_loop(
    tiny_recording, tiny_bundle, tmp_path, capsys
) -> None:
    plan_path, _ = tiny_recording
    out = tmp_path / "auto"
    code = main(["quantize", "--bundle", str(tiny_bundle), "--out", str(out), "--plan", "auto",
                 "--budget", "100", "--confirm-episodes", "1", "--confirm-plan", str(plan_path),
                 "--confirm-latency", "0.1", "--json"])  # fmt: skip
    result = json.loads(capsys.readouterr().out)
    c = result["confirmation"]
    assert set(c["reference"]) == {"success_test", "success_val", "success_global"}
    first = c["tried"][0]
    # the budget admits every candidate; the first tried is auto's choice, the fastest
    assert first["plan"] == result["plan"] == result["candidates"][0]["plan"]
    loss = c["reference"]["success_global"] - first["success_global"]
    assert first["global_loss"] == pytest.approx(loss)
    assert first["accepted"] == (loss <= 0.02 + 1e-9)
    assert code == (0 if c["accepted"] is not None else 1)
    if first["accepted"]:
        assert c["accepted"] == result["plan"] and len(c["tried"]) == 1
    manifest = json.loads((out / "manifest.json").read_text())
    assert {s["name"]: s["precision"] for s in manifest["stages"]} == result["plan"]
    evals = out.parent / "auto.confirm"
    assert (evals / "eval_fp32" / "results.json").is_file()
    assert (evals / "eval_candidate0" / "results.json").is_file()


def test_confirmation_flags_are_checked_before_any_work(tiny_recording, tiny_bundle, tmp_path,
                                                        capsys) -> None:  # fmt: skip
    plan_path, _ = tiny_recording
    base = ["quantize", "--bundle", str(tiny_bundle), "--out", str(tmp_path / "q")]
    assert main([*base, "--plan", "int8-all", "--confirm-episodes", "1"]) == 2
    assert "--confirm-episodes: " in capsys.readouterr().err
    auto = [*base, "--plan", "auto", "--budget", "0.1", "--confirm-episodes", "1"]
    assert main([*auto, "--confirm-plan", str(plan_path), "--confirm-tolerance", "1.5"]) == 2
    assert "--confirm-tolerance" in capsys.readouterr().err
    assert main([*auto, "--confirm-plan", str(tmp_path / "none.json")]) == 2
    assert "--confirm-plan" in capsys.readouterr().err
    assert main([*auto, "--confirm-plan", str(plan_path), "--confirm-latency", "soon"]) == 2
    assert "--confirm-latency" in capsys.readouterr().err
    assert main([*auto, "--confirm-plan", str(plan_path), "--confirm-noise-scale", "0"]) == 2
    assert "--confirm-noise-scale: applies to a sampling policy" in capsys.readouterr().err
    assert not (tmp_path / "q").exists()
