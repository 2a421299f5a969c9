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
                 "--confirm-latency", "0.1", "--confirm-episode-time-s", "4", "--json"])  # fmt: skip
    result = json.loads(capsys.readouterr().out)
    c = result["confirmation"]
    assert set(c["reference"]) == {"success_test", "success_val", "success_global"}
    fp32_eval = json.loads((tmp_path / "auto.confirm" / "eval_fp32" / "results.json").read_text())
    assert c["rollouts"] == fp32_eval["modes"]["async"]["n_global"]
    first = c["tried"][0]
    # int4 applies to MatMul weights: the convolution trunk's int4 graph would repeat fp32's
    plans = [cand["plan"] for cand in result["candidates"]]
    assert not any(p["vision"] == "int4-weights" for p in plans)
    assert any(p["transformer"] == "int4-weights" for p in plans) and len(plans) == 3 * 4
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
    assert main([*auto, "--confirm-plan", str(plan_path), "--confirm-episode-time-s", "0"]) == 2
    assert "--confirm-episode-time-s" in capsys.readouterr().err
    assert main([*auto, "--confirm-plan", str(plan_path), "--confirm-noise-scale", "0"]) == 2
    assert "--confirm-noise-scale: applies to a sampling policy" in capsys.readouterr().err
    assert not (tmp_path / "q").exists()


@pytest.mark.slow
def test_a_rejected_choice_is_replaced_by_the_next_candidate_that_holds(
    tiny_recording, tiny_bundle, tmp_path
) -> None:
    """The swap. Auto's first choice is played here by a bundle that cannot do the task (the
    tiny test policy, put at --out in its place); the reference is the shipped ACT's fp32
    bundle, which can. The first choice loses, so the next candidate (fp32 everywhere: the
    reference's own graphs, so it must hold) is built, evaluated and moved to --out."""
    import shutil
    from pathlib import Path

    from edgevla_runtime.bundle import Manifest

    from edgevla.deploy.export import ExportConfig, export_bundle
    from edgevla.deploy.quantize import QuantizeConfig, QuantizeResult
    from edgevla.eval.confirm_plan import ConfirmConfig, confirm_auto_plan

    plan_path, _ = tiny_recording
    shipped = Path(__file__).resolve().parents[2] / "assets" / "act_edge"
    fp32 = tmp_path / "fp32"
    export_bundle(ExportConfig(checkpoint=shipped, out=fp32, parity_observations=1))
    out = tmp_path / "auto"
    shutil.copytree(tiny_bundle, out)
    chosen = {"vision": "int8-static", "transformer": "int8-static"}
    fallback = {"vision": "fp32", "transformer": "fp32"}
    result = QuantizeResult(bundle=str(out), plan=chosen, calibration="minmax",
                            action_error_max=0.0, action_error_mean=0.0, eval_observations=1,
                            candidates=[{"plan": chosen, "within_budget": True},
                                        {"plan": fallback, "within_budget": True}])  # fmt: skip
    quantize = QuantizeConfig(bundle=fp32, out=out, plan="auto", budget=1.0, overwrite=True,
                              calibration_observations=1, eval_observations=1)  # fmt: skip
    # one position (the test set's), in this process; the shipped ACT does it in about 5 s
    confirm = ConfirmConfig(episodes=1, plan=plan_path, latency="0.004", episode_time_s=8.0,
                            sets=("test",), workers=1)  # fmt: skip
    built, c = confirm_auto_plan(quantize, result, confirm)

    assert c.reference["success_global"] > 0.02  # the shipped ACT does the task here
    assert c.rollouts == 1  # one position, one rollout: a failure costs all of Global
    assert [t["plan"] for t in c.tried] == [chosen, fallback]
    assert [t["accepted"] for t in c.tried] == [False, True]
    assert c.tried[0]["global_loss"] > 0.02
    assert c.tried[1]["success_global"] == c.reference["success_global"]
    assert c.accepted == fallback and built.bundle == str(out) and built.plan == fallback
    m = Manifest.read(out)  # --out now holds the candidate built from the reference
    assert Path(m.checkpoint).resolve() == shipped.resolve()
    assert {s.name: s.precision for s in m.stages} == fallback
    work = tmp_path / "auto.confirm"
    assert not (work / "replaced").exists() and not (work / "candidate1").exists()
