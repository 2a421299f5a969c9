"""The three calibration methods give the activation ranges they are meant to, and ORT's
progress prints stay off stdout."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgevla.cli import main
from edgevla.deploy.quantize import quantize_stage


def _matmul_graph(path) -> None:
    """y = x @ W with x (1, 64): one activation whose range the calibration decides."""
    w = np.random.default_rng(0).standard_normal((64, 32)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"], name="matmul")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 32])],
        [numpy_helper.from_array(w, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, path)


def _input_scale(path) -> float:
    """The scale of the QuantizeLinear that quantises the graph input x."""
    model = onnx.load(path)
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    q = next(n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "x")
    return float(inits[q.input[1]])


@pytest.fixture
def heavy_tailed_feeds():
    """Gaussian activations with one rare outlier 40 sigma out: the case where a threshold
    below the maximum keeps resolution for the values that matter."""
    rng = np.random.default_rng(1)
    feeds = [{"x": rng.standard_normal((1, 64)).astype(np.float32)} for _ in range(32)]
    feeds[5]["x"][0, 3] = 40.0
    return feeds


def test_entropy_clips_an_outlier_that_minmax_keeps(tmp_path, heavy_tailed_feeds) -> None:
    _matmul_graph(tmp_path / "f.onnx")
    scales = {}
    for method in ("minmax", "entropy", "percentile"):
        quantize_stage(tmp_path / "f.onnx", tmp_path / f"{method}.onnx", "int8-static",
                       heavy_tailed_feeds, method)  # fmt: skip
        scales[method] = _input_scale(tmp_path / f"{method}.onnx")
    largest = max(float(np.abs(f["x"]).max()) for f in heavy_tailed_feeds)
    low = min(float(f["x"].min()) for f in heavy_tailed_feeds)
    # MinMax covers [min, max] with 255 steps; entropy picks a threshold well inside it (ORT's
    # quantize_static alone used 128 bins against 128 levels: entropy was exactly MinMax).
    assert scales["minmax"] == pytest.approx((largest - min(low, 0.0)) / 255, rel=1e-3)
    assert scales["entropy"] < 0.5 * scales["minmax"]
    assert scales["percentile"] < scales["minmax"]


def test_entropy_calibration_keeps_json_output_one_object(bundle, tmp_path, capsys) -> None:
    rc = main(["quantize", "--bundle", str(bundle), "--out", str(tmp_path / "q"),
               "--plan", "selective", "--calibration", "entropy", "--calibration-observations",
               "2", "--eval-observations", "1", "--json"])  # fmt: skip
    out = capsys.readouterr()
    assert rc == 0
    result = json.loads(out.out)  # ORT's "Collecting tensor data ..." went to stderr
    assert result["calibration"] == "entropy" and result["plan"]["vision"] == "int8-static"
    assert sorted(p.name for p in (tmp_path / "q").iterdir()) == [
        "manifest.json",
        "transformer.onnx",
        "vision.onnx",
    ]  # no calibration leftovers in the bundle
