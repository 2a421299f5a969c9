"""Precision plans applied to the shipped ACT's bundle with ONNX Runtime's quantisers."""

from __future__ import annotations

import json

import numpy as np
import pytest
from edgevla_runtime.bundle import BundleRunner, Manifest, sha256_of

from edgevla.cli import main
from edgevla.deploy.observations import sim_observations
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
    # the static trunk's 21 convolutions, each with the weights timed faster, are counted
    if plan == "selective":
        counts = result.conv_weights["vision"]
        assert counts["symmetric"] + counts["asymmetric"] == 21
        assert m.parity["conv_weights"] == result.conv_weights
    else:
        assert result.conv_weights == {}


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


def test_int4_all_is_a_named_plan_for_every_stage() -> None:
    plan = resolve_plan("int4-all", ["vision", "transformer"])
    assert {k: v.precision for k, v in plan.items()} == {"vision": "int4-weights",
                                                         "transformer": "int4-weights"}  # fmt: skip


def test_int8_mixed_keeps_convolutions_static_and_the_rest_dynamic() -> None:
    act = resolve_plan("int8-mixed", ["vision", "transformer"])
    smolvla = resolve_plan("int8-mixed", ["vision", "prefill", "expert_step"])
    assert {k: v.precision for k, v in act.items()} == {"vision": "int8-static",
                                                        "transformer": "int8-dynamic"}  # fmt: skip
    assert {k: v.precision for k, v in smolvla.items()} == {
        "vision": "int8-static", "prefill": "int8-dynamic", "expert_step": "int8-dynamic"}  # fmt: skip


def test_int8_static_linear_keeps_attention_fp32_in_every_stage(tmp_path) -> None:
    from edgevla.deploy.quantize import read_plan_file, write_plan_file

    plan = resolve_plan("int8-static-linear", ["vision", "transformer"])
    assert all(p.precision == "int8-static" and p.attention_fp32 for p in plan.values())
    again = read_plan_file(write_plan_file(plan, tmp_path / "p.yaml"))
    assert again == plan
    with pytest.raises(BadInput, match="attention_fp32 must be true or false"):
        resolve_plan({"*": {"precision": "int8-static", "attention_fp32": "yes"}}, ["vision"])


def test_plan_files_round_trip_with_layer_overrides(tmp_path) -> None:
    from edgevla.deploy.quantize import StagePlan, read_plan_file, write_plan_file

    plan = {"vision": StagePlan("int8-static", keep_fp32=("/trunk/layer4/*",)),
            "transformer": StagePlan("int8-dynamic", op_types=("MatMul",)), "*": StagePlan("fp32")}  # fmt: skip
    assert read_plan_file(write_plan_file(plan, tmp_path / "plan.yaml")) == plan
    (tmp_path / "bad.yaml").write_text("vision: {precision: int8-static, keep: [x]}\n")
    with pytest.raises(BadInput, match="unknown keys"):
        read_plan_file(tmp_path / "bad.yaml")


def test_layers_kept_fp32_are_left_unquantised(bundle, tmp_path) -> None:
    import onnx

    convs = [
        n.name for n in onnx.load(str(bundle / "vision.onnx")).graph.node if n.op_type == "Conv"
    ]
    keep = convs[-2:]  # the last two convolutions of the trunk
    plan = tmp_path / "plan.yaml"
    plan.write_text(f"vision: {{precision: int8-dynamic, keep_fp32: {json.dumps(keep)}}}\n")
    result = quantize_bundle(
        QuantizeConfig(bundle=bundle, out=tmp_path / "q", plan=str(plan), calibration_observations=1,
                       eval_observations=1)
    )  # fmt: skip
    nodes = {n.name: n.op_type for n in onnx.load(str(tmp_path / "q" / "vision.onnx")).graph.node}
    assert all(nodes.get(k) == "Conv" for k in keep)  # still float convolutions
    assert sum(op == "ConvInteger" for op in nodes.values()) == len(convs) - 2
    assert result.overrides["vision"]["keep_fp32"] == keep
    assert Manifest.read(tmp_path / "q").parity["plan"]["vision"]["keep_fp32"] == keep


def test_a_pattern_matching_no_layer_is_refused(bundle, tmp_path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text("vision: {precision: int8-dynamic, keep_fp32: ['/no/such/layer*']}\n")
    with pytest.raises(BadInput, match="matches no node"):
        quantize_bundle(QuantizeConfig(bundle=bundle, out=tmp_path / "q", plan=str(plan),
                                       calibration_observations=1, eval_observations=1))  # fmt: skip
    assert not (tmp_path / "q").exists()


def test_quantising_a_quantised_bundle_is_refused(bundle, tmp_path, capsys) -> None:
    quantize_bundle(QuantizeConfig(bundle=bundle, out=tmp_path / "q", plan="int8-all",
                                   calibration_observations=1, eval_observations=1))  # fmt: skip
    code = main(["quantize", "--bundle", str(tmp_path / "q"), "--out", str(tmp_path / "qq")])
    err = capsys.readouterr().err
    assert code == 2 and "already int8-dynamic" in err and "fp32 bundle" in err
    assert main(["quantize", "--bundle", str(bundle), "--out", str(tmp_path / "q4"),
                 "--int4-block-size", "24"]) == 2  # fmt: skip
    assert "power of two" in capsys.readouterr().err


def test_calibration_on_recorded_frames(bundle, tiny_recording, tmp_path) -> None:
    _, dataset = tiny_recording
    result = quantize_bundle(
        QuantizeConfig(bundle=bundle, out=tmp_path / "q", plan="selective", dataset=dataset,
                       calibration_observations=4, eval_observations=2)
    )  # fmt: skip
    assert 0 < result.action_error_max < 0.2
    assert str(dataset.resolve()) in Manifest.read(tmp_path / "q").parity["observations_from"]
