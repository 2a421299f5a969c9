"""The floor: how fast a stage could run on this CPU if every multiply-add ran at GEMM speed.

    floor(stage) = fp32 FLOPs / fp32 peak + int8 ops / int8 peak          (seconds)
    x of the floor = measured stage latency / floor(stage)                (>= 1 in practice)

FLOPs are counted from the graph, not from a paper: 2 x the multiply-accumulates of every
Conv, MatMul and Gemm and of their quantised forms (ConvInteger, MatMulInteger, QLinearConv,
QLinearMatMul, MatMulNBits), and of ORT's fused MultiHeadAttention (its two products, always
fp32), with shapes from ONNX shape inference (ONNX Runtime's symbolic
shape inference where ONNX's leaves a shape open, e.g. after a com.microsoft op). Everything
else (adds, norms, softmax, pooling, reshapes) is left out: it is memory bound and small next
to the GEMMs, so the floor is a lower bound a stage cannot beat, not a prediction.

An op counts as int8 when it is an integer op or a float op fed by DequantizeLinear on both
inputs (a QDQ graph: ONNX Runtime fuses DQ -> Conv/MatMul/Gemm into its int8 kernels);
MatMulNBits counts as int8 only with accuracy_level 4 (int8 compute), otherwise it dequantises
its 4-bit weights and runs in fp32. So a dynamic-int8 transformer whose attention products stay
fp32 gets the fp32 peak for those and the int8 peak for the rest.

The peaks are measured here, not read from a datasheet: square GEMMs through ONNX Runtime's
CPU execution provider (MatMul in fp32; MatMulInteger uint8 x int8 -> int32, the kernel
ONNX Runtime's int8 paths run), constant weights (as in a model, so ORT pre-packs them), best
of a few calls, at the same intra-op thread count as the bench row, and the best over
PEAK_SIZES: the throughput moves with the size, not in one direction (one thread, int8: 1.03
TOP/s at 256, 2.23 at 512, 1.64 at 1024, 1.99 at 1536; two threads: 2.80 at 512, 4.65 at 640,
3.34 at 1024; 2026-12-03), so a single size understates the peak and flatters "x of the floor"
(the floor used 1024 alone until 2026-12-03).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

CONV_OPS = {"Conv": 1, "ConvInteger": 1, "QLinearConv": 3}  # op -> index of its weight input
MATMUL_OPS = ("MatMul", "Gemm", "MatMulInteger", "QLinearMatMul", "MatMulNBits",
              "MultiHeadAttention")  # fmt: skip
INT8_OPS = ("ConvInteger", "MatMulInteger", "QLinearConv", "QLinearMatMul")
COUNTED_OPS = (*CONV_OPS, *MATMUL_OPS)


def graph_flops(
    onnx_path: str | Path, input_shapes: Mapping[str, Sequence[int]] | None = None
) -> dict[str, Any]:
    """FLOPs (2 x multiply-accumulates) of one run of the graph at `onnx_path`.

    input_shapes: {graph input name: shape} making symbolic input dims concrete (a bundle's
    manifest gives them; dims <= 0 are left as they are). Weights stored as external data are
    not read: only their shapes are needed.

    Returns {"flops", "fp32_flops", "int8_flops", "by_op": {op type: flops}, "nodes": counted
    nodes, "unresolved": names of counted nodes whose shapes stayed unknown (not in the sum)}.
    """
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    for inp in model.graph.input:
        shape = (input_shapes or {}).get(inp.name)
        dims = inp.type.tensor_type.shape.dim
        if shape is None or len(shape) != len(dims):
            continue
        for dim, value in zip(dims, shape, strict=True):
            if int(value) > 0:
                dim.dim_value = int(value)  # replaces a dim_param
    shapes = _infer_shapes(model)
    producers = {out: node.op_type for node in model.graph.node for out in node.output}
    totals = {"fp32_flops": 0, "int8_flops": 0}
    by_op: dict[str, int] = {}
    unresolved, nodes = [], 0
    for node in model.graph.node:
        if node.op_type not in COUNTED_OPS:
            continue
        flops = _node_flops(node, shapes)
        if flops is None:
            unresolved.append(node.name or node.output[0])
            continue
        nodes += 1
        key = "int8_flops" if _runs_int8(node, producers) else "fp32_flops"
        totals[key] += flops
        by_op[node.op_type] = by_op.get(node.op_type, 0) + flops
    return {
        "flops": totals["fp32_flops"] + totals["int8_flops"],
        **totals,
        "by_op": by_op,
        "nodes": nodes,
        "unresolved": unresolved,
    }


def floor_s(flops: Mapping[str, float], peak: Mapping[str, float]) -> float:
    """Seconds for `flops` (graph_flops' dict) at `peak` (measured_peak's dict)."""
    return flops["fp32_flops"] / (peak["fp32_gflops"] * 1e9) + flops["int8_flops"] / (
        peak["int8_gops"] * 1e9
    )


PEAK_SIZES = (384, 512, 640, 768, 1024, 1536)


@functools.cache
def measured_peak(
    threads: int = 1, sizes: tuple[int, ...] = PEAK_SIZES, repeats: int = 10
) -> dict[str, float]:
    """This CPU's GEMM throughput through ONNX Runtime at `threads` intra-op threads:
    {"fp32_gflops", "int8_gops", "threads", "fp32_size", "int8_size"}: for each precision the
    best over `sizes` of a (size x size) @ (size x size) product, each timed as the best of
    `repeats` calls after one warm-up, and the size that gave it. Cached per process."""
    out: dict[str, float] = {"threads": threads}
    for key, int8 in (("fp32_gflops", False), ("int8_gops", True)):
        out[key] = 0.0
        for size in sizes:
            session, feed = _gemm_session(size, int8, threads)
            session.run(None, feed)  # warm-up: pre-packing, thread pool start
            best = float("inf")
            for _ in range(max(1, repeats)):
                t0 = time.perf_counter()
                session.run(None, feed)
                best = min(best, time.perf_counter() - t0)
            if 2 * size**3 / best / 1e9 > out[key]:
                out[key] = 2 * size**3 / best / 1e9
                out[key.split("_")[0] + "_size"] = size
    return out


def _gemm_session(size: int, int8: bool, threads: int):
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    if int8:
        a = rng.integers(0, 256, (size, size), dtype=np.uint8)
        b = rng.integers(-127, 128, (size, size), dtype=np.int8)
        types, op = (TensorProto.UINT8, TensorProto.INT32), "MatMulInteger"
    else:
        a = rng.standard_normal((size, size), dtype=np.float32)
        b = rng.standard_normal((size, size), dtype=np.float32)
        types, op = (TensorProto.FLOAT, TensorProto.FLOAT), "MatMul"
    graph = helper.make_graph(
        [helper.make_node(op, ["A", "B"], ["Y"])],
        "gemm",
        [helper.make_tensor_value_info("A", types[0], [size, size])],
        [helper.make_tensor_value_info("Y", types[1], [size, size])],
        [numpy_helper.from_array(b, "B")],  # constant weights, as in a model
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(
        model.SerializeToString(), sess_options=options, providers=["CPUExecutionProvider"]
    )
    return session, {"A": a}


def _shapes_of(model) -> dict[str, list[int | None]]:
    shapes: dict[str, list[int | None]] = {}
    graph = model.graph
    for vi in (*graph.input, *graph.value_info, *graph.output):
        t = vi.type.tensor_type
        if t.HasField("shape"):
            shapes[vi.name] = [
                d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                for d in t.shape.dim
            ]
    for init in graph.initializer:
        shapes[init.name] = list(init.dims)
    return shapes


def _known(shape) -> bool:
    return shape is not None and all(d is not None for d in shape)


def _infer_shapes(model) -> dict[str, list[int | None]]:
    """Tensor name -> shape (None for an unknown dim): ONNX's shape inference with data
    propagation (Reshape targets computed by Shape/Concat), then ONNX Runtime's symbolic shape
    inference for what that left open (it knows the com.microsoft ops, e.g. MatMulNBits)."""
    from onnx import shape_inference

    try:
        shapes = _shapes_of(shape_inference.infer_shapes(model, data_prop=True))
    except Exception:  # an op ONNX's checker cannot type; the symbolic pass may still cope
        shapes = _shapes_of(model)
    outputs = [n.output[0] for n in model.graph.node if n.op_type in COUNTED_OPS]
    if all(_known(shapes.get(name)) for name in outputs):
        return shapes
    try:
        from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

        symbolic = _shapes_of(SymbolicShapeInference.infer_shapes(model, auto_merge=True))
    except Exception:  # keep ONNX's shapes; the nodes left open are reported as unresolved
        return shapes
    for name, shape in symbolic.items():
        if _known(shape) and not _known(shapes.get(name)):
            shapes[name] = shape
    return shapes


def _attr(node, name: str, default: int = 0) -> int:
    return next((a.i for a in node.attribute if a.name == name), default)


def _node_flops(node, shapes) -> int | None:
    out = shapes.get(node.output[0])
    a = shapes.get(node.input[0])
    if node.op_type in CONV_OPS:  # out (N, Cout, *spatial), weight (Cout, Cin/group, *kernel)
        w = shapes.get(node.input[CONV_OPS[node.op_type]])
        if not (_known(out) and _known(w)):
            return None
        return 2 * int(np.prod(out)) * int(np.prod(w[1:]))
    if node.op_type == "MatMulNBits":  # attributes K, N; A (..., K) -> (..., N)
        k, n = _attr(node, "K"), _attr(node, "N")
        if _known(out):
            return 2 * int(np.prod(out)) * k
        return 2 * int(np.prod(a[:-1])) * n * k if _known(a) else None
    if node.op_type == "MultiHeadAttention":  # q (B, T, D), k (B, L, D): scores and sum, fp32
        k = shapes.get(node.input[1])
        if not (_known(a) and _known(k) and len(a) == 3 and len(k) == 3):
            return None
        return 4 * int(np.prod(a)) * int(k[1])
    if not (_known(out) and _known(a)):
        return None
    # Gemm: A (M, K), or (K, M) with transA; the MatMul family: (..., M, K) @ (..., K, N)
    k = (a[0] if _attr(node, "transA") else a[1]) if node.op_type == "Gemm" else a[-1]
    return 2 * int(np.prod(out)) * int(k)


def _runs_int8(node, producers: Mapping[str, str]) -> bool:
    if node.op_type in INT8_OPS:
        return True
    if node.op_type == "MultiHeadAttention":  # dequantises its inputs, computes in fp32
        return False
    if node.op_type == "MatMulNBits":
        return _attr(node, "accuracy_level") == 4
    return all(producers.get(name) == "DequantizeLinear" for name in node.input[:2])
