"""Precision plans applied to the shipped ACT's bundle with ONNX Runtime's quantisers."""

from __future__ import annotations

import json

import numpy as np
import pytest
from edgevla_runtime.bundle import BundleRunner, Manifest, sha256_of

from edgevla.cli import main
from edgevla.deploy.export import sim_observations
from edgevla.deploy.quantize import QuantizeConfig, quantize_bundle, resolve_plan
from edgevla.errors import BadInput


@pytest.mark.parametrize(("plan", "expected"), [
    ("int8-all", {"vision": "int8-dynamic", "transformer": "int8-dynamic"}),
    ("selective", {"vision": "int8-static", "transformer": "fp32"}),
])  # fmt: skip
def test_plan_writes_a_bundle_with_its_precisions_and_error(
    bundle, tmp_path, plan, expected
) -> None:
    result = quantize_bundle(
        QuantizeConfig(bundle=bundle, out=tmp_path / plan, plan=plan, calibration_observations=4,
                       eval_observations=2)
    )  # fmt: skip
    m = Manifest.read(tmp_path / plan)
    assert {s.name: s.precision for s in m.stages} == expected == result.plan
    for s in m.stages:
        assert s.sha256 == sha256_of(tmp_path / plan / s.file)
    # Quantised, not broken: the chunk stays within a few degrees of fp32 (a broken graph is off
    # by radians), and it is not the fp32 graph copied (some error).
    assert 0 < result.action_error_max < 0.2
    assert m.parity["max_abs_action_diff"] == pytest.approx(result.action_error_max)
    obs = sim_observations(BundleRunner(bundle), 1, seed=7)[0]
    chunk = BundleRunner(tmp_path / plan).predict_chunk(obs)
    assert chunk.shape == (100, 6) and np.isfinite(chunk).all()


def test_fp32_plan_is_a_copy_with_no_error(bundle, tmp_path) -> None:
    result = quantize_bundle(
        QuantizeConfig(bundle=bundle, out=tmp_path / "same", plan="fp32", calibration_observations=1,
                       eval_observations=1)
    )  # fmt: skip
    assert result.action_error_max == 0.0


def test_plan_naming_unknown_stages_or_precisions_is_refused() -> None:
    with pytest.raises(BadInput, match="does not have"):
        resolve_plan({"expert": "fp32"}, ["vision", "transformer"])
    with pytest.raises(BadInput, match="unknown precision"):
        resolve_plan({"vision": "int3"}, ["vision", "transformer"])


def test_bad_arguments_are_refused_before_work(bundle, tmp_path, capsys) -> None:
    assert (
        main(["quantize", "--bundle", str(bundle), "--out", str(tmp_path / "q"), "--plan", "int2"])
        == 2
    )
    assert "unknown plan 'int2'" in capsys.readouterr().err
    assert main(["quantize", "--bundle", str(tmp_path), "--out", str(tmp_path / "q")]) == 2
    assert "is not a bundle" in capsys.readouterr().err
    assert not (tmp_path / "q").exists()


def test_bench_latency_times_pytorch_and_the_bundle(bundle, capsys) -> None:
    from .conftest import ASSET

    code = main(["bench", "latency", "--checkpoint", str(ASSET), "--bundles", str(bundle),
                 "--calls", "2", "--warmup", "1", "--json"])  # fmt: skip
    assert code == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert [r["format"] for r in rows] == ["PyTorch", "ONNX Runtime"]
    assert all(r["p50_s"] > 0 for r in rows)
    assert set(rows[1]["stages_p50_s"]) == {"vision", "transformer"}


def test_int4_weights_for_the_transformer(bundle, tmp_path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text("transformer: int4-weights\n'*': fp32\n")
    result = quantize_bundle(
        QuantizeConfig(bundle=bundle, out=tmp_path / "q", plan=str(plan), calibration_observations=1,
                       eval_observations=2)
    )  # fmt: skip
    import onnx

    ops = {n.op_type for n in onnx.load(str(tmp_path / "q" / "transformer.onnx")).graph.node}
    assert "MatMulNBits" in ops  # 4-bit weights really are in the graph
    assert result.plan == {"vision": "fp32", "transformer": "int4-weights"}
    assert 0 < result.action_error_max < 0.5
    fp32_size = (bundle / "transformer.onnx").stat().st_size
    assert result.sizes_bytes["transformer"] < fp32_size / 2
