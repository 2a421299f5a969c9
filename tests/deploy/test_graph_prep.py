"""Stride folding rewrites a stem convolution exactly, only where it applies, and int8 static
quantisation keeps the layout nodes it adds in float."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgevla.deploy.graph_prep import fold_input_stride, prepared_for_static
from edgevla.deploy.quantize import quantize_stage


def _conv_graph(path, shape, out_channels=8, kernel=7, stride=2, pad=3, bias=True) -> None:
    """x (N, C, H, W) -> Conv -> Relu -> y: a ResNet-like stem."""
    n, c, h, w = shape
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(
        rng.standard_normal((out_channels, c, kernel, kernel)).astype(np.float32), "W")]  # fmt: skip
    inputs = ["x", "W"]
    if bias:
        inits.append(numpy_helper.from_array(rng.standard_normal(out_channels).astype(np.float32), "B"))  # fmt: skip
        inputs.append("B")
    ho, wo = (h + 2 * pad - kernel) // stride + 1, (w + 2 * pad - kernel) // stride + 1
    graph = helper.make_graph(
        [helper.make_node("Conv", inputs, ["c"], name="stem", kernel_shape=[kernel, kernel],
                          strides=[stride, stride], pads=[pad] * 4),
         helper.make_node("Relu", ["c"], ["y"], name="relu")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n, out_channels, ho, wo])],
        inits,
    )  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def _run(path, x: np.ndarray) -> np.ndarray:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]).run(
        None, {"x": x}
    )[0]


@pytest.mark.parametrize(
    ("shape", "kernel", "stride", "pad", "bias"),
    [((3, 3, 24, 32), 7, 2, 3, False), ((1, 3, 22, 26), 7, 2, 3, True),
     ((2, 4, 18, 20), 3, 2, 1, True), ((1, 3, 30, 33), 5, 3, 2, True),
     ((1, 3, 20, 24), 4, 2, 0, True), ((1, 3, 24, 24), 5, 2, 1, True)],
)  # fmt: skip
def test_fold_gives_the_same_output(tmp_path, shape, kernel, stride, pad, bias) -> None:
    _conv_graph(tmp_path / "a.onnx", shape, kernel=kernel, stride=stride, pad=pad, bias=bias)
    model = onnx.load(tmp_path / "a.onnx")
    added = fold_input_stride(model.graph)
    onnx.save(model, tmp_path / "b.onnx")
    ops = [n.op_type for n in model.graph.node]
    assert ops == ["SpaceToDepth", "Conv", "Relu"] and len(added) == 1  # no Pad: the conv pads
    conv = model.graph.node[1]
    assert conv.name == "stem"  # keep_fp32 patterns and layer tables still name it
    weights = {t.name: t for t in model.graph.initializer}
    shift = stride * -(-pad // stride) - pad
    taps = -(-(kernel + shift) // stride)
    assert list(weights[conv.input[1]].dims)[1:] == [stride * stride * shape[1], taps, taps]
    assert "W" not in weights  # the unfolded kernel is gone
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    np.testing.assert_allclose(_run(tmp_path / "b.onnx", x), _run(tmp_path / "a.onnx", x),
                               atol=1e-4, rtol=1e-5)  # fmt: skip


@pytest.mark.parametrize(
    ("channels", "kernel", "stride", "pad", "size"),
    [(3, 3, 1, 1, 16),  # not strided
     (32, 7, 2, 3, 16),  # already wide: 2*2*32 channels would not pay
     (3, 4, 4, 0, 16),  # a patch embedding: kernel == stride is a GEMM already
     (3, 7, 2, 3, 17)],  # a size that is not a whole number of blocks
)  # fmt: skip
def test_fold_leaves_other_convolutions(tmp_path, channels, kernel, stride, pad, size) -> None:
    _conv_graph(tmp_path / "a.onnx", (1, channels, size, size), kernel=kernel, stride=stride,
                pad=pad)  # fmt: skip
    model = onnx.load(tmp_path / "a.onnx")
    assert fold_input_stride(model.graph) == []
    assert [n.op_type for n in model.graph.node] == ["Conv", "Relu"]


def test_int8_static_keeps_the_fold_float_and_close(tmp_path) -> None:
    shape = (3, 3, 24, 32)
    _conv_graph(tmp_path / "a.onnx", shape, out_channels=16)
    rng = np.random.default_rng(2)
    feeds = [{"x": rng.standard_normal(shape).astype(np.float32)} for _ in range(4)]
    quantize_stage(tmp_path / "a.onnx", tmp_path / "q.onnx", "int8-static", feeds, "minmax")
    model = onnx.load(tmp_path / "q.onnx")
    by_output = {o: n for n in model.graph.node for o in n.output}
    s2d = next(n for n in model.graph.node if n.op_type == "SpaceToDepth")
    # the input is quantised once, then laid out as uint8 (no QuantizeLinear/DequantizeLinear
    # pair around the SpaceToDepth)
    assert by_output[s2d.input[0]].op_type == "QuantizeLinear"
    assert by_output[s2d.input[0]].input[0] == "x"
    assert not any(n.op_type == "Pad" for n in model.graph.node)
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    assert by_output[conv.input[0]].op_type == "DequantizeLinear"  # the convolution is int8
    assert by_output[conv.input[0]].input[0] == s2d.output[0]
    x = feeds[0]["x"]
    ref = _run(tmp_path / "a.onnx", x)
    err = np.abs(_run(tmp_path / "q.onnx", x) - ref).max()
    assert err < 0.05 * np.abs(ref).max()


def test_keep_fp32_still_names_the_folded_convolution(tmp_path) -> None:
    from edgevla.deploy.quantize import StagePlan

    shape = (1, 3, 24, 32)
    _conv_graph(tmp_path / "a.onnx", shape)
    feeds = [{"x": np.random.default_rng(3).standard_normal(shape).astype(np.float32)}]
    plan = StagePlan("int8-static", keep_fp32=("stem",))
    quantize_stage(tmp_path / "a.onnx", tmp_path / "q.onnx", plan, feeds, "minmax")
    model = onnx.load(tmp_path / "q.onnx")
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    assert conv.name == "stem" and not any(n.op_type == "QuantizeLinear" for n in model.graph.node)
    x = feeds[0]["x"]
    np.testing.assert_allclose(_run(tmp_path / "q.onnx", x), _run(tmp_path / "a.onnx", x),
                               atol=1e-4, rtol=1e-5)  # fmt: skip


def test_prepared_graph_is_untouched_without_a_stem(tmp_path) -> None:
    _conv_graph(tmp_path / "a.onnx", (1, 32, 16, 16))
    path, float_nodes = prepared_for_static(tmp_path / "a.onnx", tmp_path)
    assert float_nodes == [] and path.name == "a.fused.onnx"


def test_attention_fp32_leaves_activation_matmuls_and_softmax_float(tmp_path) -> None:
    """A one-head attention: q = x Wq, k = x Wk; softmax(q k^T) x. Only the projections (a
    weight on one side) are quantised; the scores, softmax and weighted sum stay fp32."""
    from edgevla.deploy.quantize import StagePlan, attention_nodes

    rng = np.random.default_rng(4)
    wq, wk = (numpy_helper.from_array(rng.standard_normal((16, 16)).astype(np.float32), n)
              for n in ("Wq", "Wk"))  # fmt: skip
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "Wq"], ["q"], name="q_proj"),
         helper.make_node("MatMul", ["x", "Wk"], ["k"], name="k_proj"),
         helper.make_node("Transpose", ["k"], ["kt"], name="kt", perm=[1, 0]),
         helper.make_node("MatMul", ["q", "kt"], ["s"], name="scores"),
         helper.make_node("Softmax", ["s"], ["p"], name="softmax", axis=-1),
         helper.make_node("MatMul", ["p", "x"], ["y"], name="weighted")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [8, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [8, 16])],
        [wq, wk],
    )  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]),
              tmp_path / "a.onnx")  # fmt: skip
    assert attention_nodes(tmp_path / "a.onnx") == ["scores", "softmax", "weighted"]
    feeds = [{"x": rng.standard_normal((8, 16)).astype(np.float32)} for _ in range(4)]
    quantize_stage(tmp_path / "a.onnx", tmp_path / "q.onnx",
                   StagePlan("int8-static", attention_fp32=True), feeds, "minmax")  # fmt: skip
    model = onnx.load(tmp_path / "q.onnx")
    by_output = {o: n for n in model.graph.node for o in n.output}
    nodes = {n.name: n for n in model.graph.node}
    assert nodes["softmax"].op_type == "Softmax"
    assert by_output[nodes["softmax"].input[0]] is nodes["scores"]  # scores -> softmax, float
    assert by_output[nodes["weighted"].input[0]] is nodes["softmax"]
    assert by_output[nodes["q_proj"].input[1]].op_type == "DequantizeLinear"  # int8 weights


def _feed_forward(path, tokens=6, dim=8, hidden=32) -> None:
    """x (1, T, D) -> MatMul + Add -> Relu -> MatMul + Add -> y: a transformer's feed-forward,
    as torch exports it."""
    rng = np.random.default_rng(5)
    inits = [numpy_helper.from_array(a.astype(np.float32), n) for n, a in (
        ("W1", rng.standard_normal((dim, hidden))), ("b1", rng.standard_normal(hidden)),
        ("W2", rng.standard_normal((hidden, dim))), ("b2", rng.standard_normal(dim)))]  # fmt: skip
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W1"], ["h0"], name="linear1"),
         helper.make_node("Add", ["h0", "b1"], ["h1"], name="linear1_bias"),
         helper.make_node("Relu", ["h1"], ["h"], name="relu"),
         helper.make_node("MatMul", ["h", "W2"], ["y0"], name="linear2"),
         helper.make_node("Add", ["y0", "b2"], ["y"], name="linear2_bias")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, tokens, dim])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, tokens, dim])],
        inits,
    )  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def test_relu_moves_before_the_reshape_and_the_hidden_layer_is_quantised_once(tmp_path) -> None:
    """Pre-processing makes MatMul + Add a Reshape -> Gemm -> Reshape, leaving the ReLU after the
    second Reshape; moved before it, the same outputs come out, and after int8 static
    quantisation ORT runs the hidden layer as one QGemm with a uint8 output (no
    DequantizeLinear -> Reshape -> QuantizeLinear requantising it at a second scale)."""
    _feed_forward(tmp_path / "a.onnx")
    path, _ = prepared_for_static(tmp_path / "a.onnx", tmp_path)
    ops = [n.op_type for n in onnx.load(path).graph.node]
    assert ops[ops.index("Gemm") + 1 : ops.index("Gemm") + 3] == ["Relu", "Reshape"], ops
    rng = np.random.default_rng(6)
    feeds = [{"x": rng.standard_normal((1, 6, 8)).astype(np.float32)} for _ in range(8)]
    x = feeds[0]["x"]
    np.testing.assert_allclose(_run(path, x), _run(tmp_path / "a.onnx", x), rtol=1e-5, atol=1e-5)

    quantize_stage(tmp_path / "a.onnx", tmp_path / "q.onnx", "int8-static", feeds, "minmax")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.optimized_model_filepath = str(tmp_path / "q.ort.onnx")
    ort.InferenceSession(str(tmp_path / "q.onnx"), options, providers=["CPUExecutionProvider"])
    ran = [n.op_type for n in onnx.load(tmp_path / "q.ort.onnx").graph.node]
    assert ran.count("QGemm") == 2, ran
    between = ran[ran.index("QGemm") + 1 : len(ran) - 1 - ran[::-1].index("QGemm")]
    assert "QuantizeLinear" not in between and "DequantizeLinear" not in between, ran
    ref = _run(tmp_path / "a.onnx", x)
    assert np.abs(_run(tmp_path / "q.onnx", x) - ref).max() < 0.05 * np.abs(ref).max()


def test_int8_static_leaves_layer_norm_weights_float(tmp_path) -> None:
    """ORT has no int8 LayerNormalization: its scale and bias stay float initializers instead
    of int8 weights dequantised at every call; the MatMul after it is still int8."""
    rng = np.random.default_rng(7)
    inits = [numpy_helper.from_array(a.astype(np.float32), n) for n, a in (
        ("gamma", 1 + 0.1 * rng.standard_normal(8)), ("beta", 0.1 * rng.standard_normal(8)),
        ("W", rng.standard_normal((8, 8))))]  # fmt: skip
    graph = helper.make_graph(
        [helper.make_node("LayerNormalization", ["x", "gamma", "beta"], ["n"], name="norm",
                          axis=-1),
         helper.make_node("MatMul", ["n", "W"], ["y"], name="proj")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [6, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [6, 8])],
        inits,
    )  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]),
              tmp_path / "a.onnx")  # fmt: skip
    feeds = [{"x": rng.standard_normal((6, 8)).astype(np.float32)} for _ in range(4)]
    quantize_stage(tmp_path / "a.onnx", tmp_path / "q.onnx", "int8-static", feeds, "minmax")
    model = onnx.load(tmp_path / "q.onnx")
    weights = {t.name for t in model.graph.initializer}
    by_output = {o: n for n in model.graph.node for o in n.output}
    norm = next(n for n in model.graph.node if n.op_type == "LayerNormalization")
    assert norm.input[1] in weights and norm.input[2] in weights  # float, no DequantizeLinear
    proj = next(n for n in model.graph.node if n.op_type == "MatMul")
    assert by_output[proj.input[1]].op_type == "DequantizeLinear"  # int8 weights
    x = feeds[0]["x"]
    ref = _run(tmp_path / "a.onnx", x)
    assert np.abs(_run(tmp_path / "q.onnx", x) - ref).max() < 0.05 * np.abs(ref).max()
