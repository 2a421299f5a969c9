"""The floor: FLOPs counted from a graph, and this CPU's GEMM peak measured through ORT."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from edgevla.deploy.floor import floor_s, graph_flops, measured_peak


def _hand_built(path) -> None:
    """Conv (grouped, symbolic batch), MatMul (broadcast), Gemm (transB), MatMulInteger, and a
    QDQ MatMul (DequantizeLinear on both inputs), each with a count worked out by hand."""
    f32, rng = TensorProto.FLOAT, np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((8, 2, 3, 3), dtype=np.float32), "w_conv"),
        numpy_helper.from_array(rng.standard_normal((4, 5), dtype=np.float32), "w_mm"),
        numpy_helper.from_array(rng.standard_normal((5, 4), dtype=np.float32), "w_gemm"),
        numpy_helper.from_array(rng.integers(-5, 5, (4, 3), dtype=np.int8), "w_int"),
        numpy_helper.from_array(rng.integers(-5, 5, (4, 7), dtype=np.int8), "w_q"),
        numpy_helper.from_array(np.float32(0.1), "scale"),
        numpy_helper.from_array(np.uint8(128), "zp_u8"),
        numpy_helper.from_array(np.int8(0), "zp_s8"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w_conv"], ["y_conv"], group=2, pads=[1, 1, 1, 1]),
        helper.make_node("MatMul", ["m", "w_mm"], ["y_mm"]),
        helper.make_node("Gemm", ["g", "w_gemm"], ["y_gemm"], transB=1),
        helper.make_node("MatMulInteger", ["q", "w_int"], ["y_int"]),
        helper.make_node("DequantizeLinear", ["q2", "scale", "zp_u8"], ["dq_a"]),
        helper.make_node("DequantizeLinear", ["w_q", "scale", "zp_s8"], ["dq_w"]),
        helper.make_node("MatMul", ["dq_a", "dq_w"], ["y_qdq"]),
    ]
    inputs = [
        helper.make_tensor_value_info("x", f32, ["batch", 4, 6, 6]),
        helper.make_tensor_value_info("m", f32, [2, 3, 4]),
        helper.make_tensor_value_info("g", f32, [3, 4]),
        helper.make_tensor_value_info("q", TensorProto.UINT8, [2, 4]),
        helper.make_tensor_value_info("q2", TensorProto.UINT8, [6, 4]),
    ]
    outputs = [helper.make_tensor_value_info(n, TensorProto.UNDEFINED, None)
               for n in ("y_conv", "y_mm", "y_gemm", "y_int", "y_qdq")]  # fmt: skip
    graph = helper.make_graph(nodes, "hand", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path.write_bytes(model.SerializeToString())


def test_graph_flops_equals_the_count_worked_out_by_hand(tmp_path) -> None:
    path = tmp_path / "hand.onnx"
    _hand_built(path)
    conv = 2 * (2 * 8 * 6 * 6) * (2 * 3 * 3)  # 2 x out elements x (Cin / group x kh x kw)
    matmul = 2 * (2 * 3 * 5) * 4  # (2, 3, 4) @ (4, 5)
    gemm = 2 * (3 * 5) * 4  # (3, 4) @ (5, 4)^T
    integer = 2 * (2 * 3) * 4  # (2, 4) @ (4, 3), uint8 x int8
    qdq = 2 * (6 * 7) * 4  # DQ (6, 4) @ DQ (4, 7): ORT runs it as int8
    flops = graph_flops(path, {"x": (2, 4, 6, 6)})
    assert flops["fp32_flops"] == conv + matmul + gemm
    assert flops["int8_flops"] == integer + qdq
    assert flops["flops"] == conv + matmul + gemm + integer + qdq
    assert flops["by_op"] == {"Conv": conv, "MatMul": matmul + qdq, "Gemm": gemm,
                              "MatMulInteger": integer}  # fmt: skip
    assert flops["unresolved"] == [] and flops["nodes"] == 5
    # without the batch size the Conv cannot be counted: it is named, not guessed
    open_batch = graph_flops(path)
    assert len(open_batch["unresolved"]) == 1
    assert open_batch["flops"] == matmul + gemm + integer + qdq


def test_fused_attention_counts_its_two_products_in_fp32(tmp_path) -> None:
    """ORT's MultiHeadAttention (the SmolVLA vision tower's export form): q (B, T, D) against
    k, v (B, L, D) is 2 x B x T x L x D for the scores and as much for the weighted sum, fp32
    even when its inputs are dequantised."""
    shape = {"q": [2, 5, 8], "k": [2, 7, 8], "v": [2, 7, 8]}
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in shape.items()]
    scale = numpy_helper.from_array(np.float32(0.1), "s")
    zero = numpy_helper.from_array(np.uint8(0), "z")
    nodes = [
        helper.make_node(op, [f"{t}{a}", "s", "z"], [f"{t}{b}"])
        for t in "qk"
        for op, a, b in (("QuantizeLinear", "", "8"), ("DequantizeLinear", "8", "d"))
    ]
    nodes.append(helper.make_node("MultiHeadAttention", ["qd", "kd", "v"], ["y"],
                                  domain="com.microsoft", num_heads=2))  # fmt: skip
    graph = helper.make_graph(nodes, "mha", inputs,
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [scale, zero])  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("com.microsoft", 1)])  # fmt: skip
    (tmp_path / "mha.onnx").write_bytes(model.SerializeToString())
    flops = graph_flops(tmp_path / "mha.onnx")
    assert flops["fp32_flops"] == 4 * 2 * 5 * 7 * 8 and flops["int8_flops"] == 0
    assert flops["unresolved"] == []


def test_a_quantised_stage_counts_the_same_flops_as_its_fp32_parent(bundle, tmp_path) -> None:
    from edgevla.deploy.quantize import quantize_stage

    quantize_stage(bundle / "transformer.onnx", tmp_path / "t.onnx", "int8-dynamic", [], "minmax")
    fp32, int8 = graph_flops(bundle / "transformer.onnx"), graph_flops(tmp_path / "t.onnx")
    assert fp32["flops"] > 0 and fp32["int8_flops"] == 0 and not fp32["unresolved"]
    assert int8["flops"] == fp32["flops"]
    # weights x activations went int8 (MatMulInteger); activation x activation products stayed
    assert 0 < int8["fp32_flops"] < int8["int8_flops"]


def test_measured_peak_is_positive_and_cached() -> None:
    peak = measured_peak(1, sizes=(32, 64), repeats=1)
    assert peak["fp32_gflops"] > 0 and peak["int8_gops"] > 0
    assert peak["fp32_size"] in (32, 64) and peak["int8_size"] in (32, 64)  # the best size
    assert measured_peak(1, sizes=(32, 64), repeats=1) is peak


def test_floor_adds_each_precision_at_its_own_peak() -> None:
    flops = {"fp32_flops": 2e9, "int8_flops": 6e9}
    assert floor_s(flops, {"fp32_gflops": 1.0, "int8_gops": 3.0}) == 4.0
