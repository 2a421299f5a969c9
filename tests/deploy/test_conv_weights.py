"""Int8 convolutions get symmetric or asymmetric weights as the plan asks; asymmetric weights
(with their rescaled bias) compute the same convolution, and "fastest" times every convolution
through ORT's renaming of the nodes it fuses."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgevla.deploy.conv_weights import _quantised_convs, choose_conv_weights, conv_times
from edgevla.deploy.quantize import _stage_plan, quantize_stage, read_plan_file, write_plan_file
from edgevla.errors import BadInput

SHAPE = (2, 8, 20, 24)


def _two_convs(path) -> None:
    """x -> Conv(3x3) -> Relu -> Conv(1x1) -> y, with weights all of one sign but for a few
    (where asymmetric weights are finer) and a large bias (where a bias left at the old weight
    scale would show)."""
    rng = np.random.default_rng(0)
    w1 = (rng.random((16, 8, 3, 3)) - 0.05).astype(np.float32)
    w2 = (rng.random((8, 16, 1, 1)) - 0.05).astype(np.float32)
    inits = [numpy_helper.from_array(w1, "W1"), numpy_helper.from_array(w2, "W2"),
             numpy_helper.from_array(np.full(16, 3.0, np.float32), "B1"),
             numpy_helper.from_array(rng.standard_normal(8).astype(np.float32) * 5, "B2")]  # fmt: skip
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "W1", "B1"], ["a"], name="/block/conv1",
                          kernel_shape=[3, 3], pads=[1] * 4),
         helper.make_node("Relu", ["a"], ["r"], name="/block/relu"),
         helper.make_node("Conv", ["r", "W2", "B2"], ["y"], name="/block/conv1_1",
                          kernel_shape=[1, 1])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(SHAPE))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 8, 20, 24])],
        inits,
    )  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def _run(path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def _zero_points(path) -> dict[str, np.ndarray]:
    model = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    return {name: inits[w_dq.input[2]] for name, (w_dq, _) in _quantised_convs(model.graph).items()}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    folder = tmp_path_factory.mktemp("convw")
    _two_convs(folder / "fp32.onnx")
    rng = np.random.default_rng(1)
    feeds = [{"x": rng.standard_normal(SHAPE).astype(np.float32)} for _ in range(4)]
    paths = {}
    for mode in ("symmetric", "asymmetric", "fastest"):
        paths[mode] = folder / f"{mode}.onnx"
        plan = {"precision": "int8-static", "conv_weights": mode}
        quantize_stage(folder / "fp32.onnx", paths[mode], plan, feeds, "minmax", stage="s")
    return folder, paths, feeds, feeds[0]["x"]  # inside the calibrated ranges


def test_symmetric_is_orts_default(built) -> None:
    _, paths, _, _ = built
    zps = _zero_points(paths["symmetric"])
    assert set(zps) == {"/block/conv1", "/block/conv1_1"}
    assert not any(z.any() for z in zps.values())


def test_asymmetric_weights_compute_the_same_convolution(built) -> None:
    folder, paths, _, x = built
    zps = _zero_points(paths["asymmetric"])
    assert set(zps) == {"/block/conv1", "/block/conv1_1"}
    assert all((z < -100).all() for z in zps.values())  # mostly positive weights: zp near -128
    ref = _run(folder / "fp32.onnx", x)
    err = {m: np.abs(_run(paths[m], x) - ref) for m in ("symmetric", "asymmetric")}
    assert err["asymmetric"].max() < 0.02 * np.abs(ref).max()
    assert err["asymmetric"].mean() <= err["symmetric"].mean() * 1.05
    # the bias: ORT's QLinearConv reads it as int32 at x_scale * w_scale, whatever its own scale
    model = onnx.load(str(paths["asymmetric"]))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    floats = {"B1": np.full(16, 3.0), "B2": numpy_helper.to_array(
        onnx.load(str(folder / "fp32.onnx")).graph.initializer[3])}  # fmt: skip
    for name, (w_dq, b_dq) in _quantised_convs(model.graph).items():
        conv = next(n for n in model.graph.node if n.name == name)
        x_scale = inits[producers[conv.input[0]].input[1]]
        b_q, b_scale = inits[b_dq.input[0]], inits[b_dq.input[1]]
        np.testing.assert_allclose(b_scale, x_scale * inits[w_dq.input[1]], rtol=1e-6)
        np.testing.assert_allclose(b_q * b_scale, floats[b_dq.input[0].split("_")[0]],
                                   atol=0.51 * b_scale.max())  # fmt: skip


def test_fastest_times_every_convolution_through_orts_renaming(built) -> None:
    folder, paths, feeds, _ = built
    names = ["/block/conv1", "/block/conv1_1"]  # one name a prefix of the other
    times = conv_times(paths["symmetric"], feeds[0], names)
    assert set(times) == set(names) and all(t > 0 for t in times.values())
    # fastest wrote one of the two weightings for each convolution, and they compute the same
    zps = _zero_points(paths["fastest"])
    assert set(zps) == set(names)
    for name, z in zps.items():
        assert not z.any() or (z < -100).all(), name


def test_symmetric_mode_leaves_the_graph(built) -> None:
    folder, paths, feeds, _ = built
    model = onnx.load(str(paths["symmetric"]))
    before = model.SerializeToString()
    report = choose_conv_weights(model, folder / "fp32.onnx", feeds[0], "symmetric")
    assert report == {"asymmetric": [], "symmetric": ["/block/conv1", "/block/conv1_1"]}
    assert model.SerializeToString() == before


def test_plan_entry_checks_and_round_trips_conv_weights(tmp_path) -> None:
    with pytest.raises(BadInput, match="conv_weights must be one of"):
        _stage_plan({"precision": "int8-static", "conv_weights": "skewed"}, "vision")
    plan = {"vision": _stage_plan({"precision": "int8-static", "conv_weights": "symmetric"}, "v")}
    assert read_plan_file(write_plan_file(plan, tmp_path / "p.yaml")) == plan
    assert _stage_plan("int8-static", "vision").conv_weights == "fastest"
