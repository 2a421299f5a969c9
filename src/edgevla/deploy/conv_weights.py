"""Each int8 convolution's weights quantised symmetric or asymmetric, whichever ONNX Runtime runs
faster on this CPU.

ORT chooses a QLinearConv's kernel from its weights. Symmetric int8 weights (every zero point 0,
the quantiser's default) go to MLAS's ConvSym kernels (AVX-512 VNNI on this Xeon, NEON dot
products on Arm); any other zero point goes to im2col + MLAS's int8 GEMM, which runs on AMX
where the CPU has it. Neither wins everywhere. Paper-size ACT trunk (3 x 480x640), one thread,
ms per convolution, symmetric vs asymmetric: stem 21 vs 32, layer1 7 vs 8-10 (few channels,
large maps: ConvSym), layer3 / layer4 6.2-6.8 vs 2.9-3.4 (many channels, small maps: the GEMM);
all symmetric 129 ms, all asymmetric 120 ms, each the faster of the two ~100 ms.

So the choice is measured (`mode="fastest"`): the stage is built both ways, each convolution is
timed under ORT's profiler on a calibration input, and each keeps the weights whose kernel was
faster by more than `MARGIN`. Asymmetric weights are computed from the float weights the same
way ORT's quantiser does (per output channel, range widened to include 0, 255 levels; 127 with
reduce_range), so they are at least as fine as the symmetric ones; the bias, stored int32 at
input scale x weight scale, is rescaled with them. The timing is this CPU's: a bundle quantised
here for an Arm board carries x86's choice (quantise on the board, or `conv_weights:
symmetric`, to get the board's own).
"""

from __future__ import annotations

import collections
import json
import tempfile
from pathlib import Path

import numpy as np

from edgevla.deploy.graph_prep import readers

CONV_WEIGHTS = ("fastest", "symmetric", "asymmetric")
MARGIN = 0.9
"""asymmetric weights are kept only where their kernel took under 0.9x the symmetric's time:
closer than that is timing noise, and symmetric stays ORT's default"""
PROFILE_RUNS = 3


def _quantised_convs(graph) -> dict[str, tuple]:
    """{conv name: (weight DequantizeLinear, bias DequantizeLinear or None)} for every Conv whose
    weight is a DequantizeLinear of an int8 initializer used by that Conv alone."""
    inits = {i.name: i for i in graph.initializer}
    producers = {o: n for n in graph.node for o in n.output}
    users = readers(graph)
    found = {}
    for node in graph.node:
        if node.op_type != "Conv" or len(node.input) < 2:
            continue
        w_dq = producers.get(node.input[1])
        if (w_dq is None or w_dq.op_type != "DequantizeLinear" or len(w_dq.input) < 3
                or w_dq.input[0] not in inits or inits[w_dq.input[0]].data_type != 3  # int8
                or len(users[w_dq.output[0]]) != 1 or len(users[w_dq.input[0]]) != 1):  # fmt: skip
            continue
        b_dq = producers.get(node.input[2]) if len(node.input) > 2 else None
        if b_dq is not None and (b_dq.op_type != "DequantizeLinear" or b_dq.input[0] not in inits):
            continue
        found[node.name] = (w_dq, b_dq)
    return found


def _axis(node) -> int:
    return next((a.i for a in node.attribute if a.name == "axis"), 1)


def make_asymmetric(model, float_weights: dict[str, np.ndarray], names, reduce_range: bool):
    """Requantise, in place, the weights of the convolutions `names` per output channel with a
    zero point: scale = (max(w, 0) - min(w, 0)) / 255, zero point = round(-128 - min / scale)
    (with reduce_range: 127 levels from -64). Their bias is requantised at the new weight scale.
    `float_weights`: float weights and biases, by the quantised initializer's name minus ORT's
    "_quantized" suffix. Returns the names requantised (a weight not found is left as it was)."""
    from onnx import numpy_helper

    qmin, qmax = (-64, 63) if reduce_range else (-128, 127)
    inits = {i.name: i for i in model.graph.initializer}
    convs = _quantised_convs(model.graph)
    done = []
    for name in names:
        w_dq, b_dq = convs[name]
        w_name = w_dq.input[0].removesuffix("_quantized")
        w = float_weights.get(w_name)
        if w is None or w.shape != tuple(inits[w_dq.input[0]].dims) or _axis(w_dq) != 0:
            continue
        flat = w.reshape(w.shape[0], -1).astype(np.float64)
        lo, hi = np.minimum(flat.min(axis=1), 0.0), np.maximum(flat.max(axis=1), 0.0)
        scale = (hi - lo) / (qmax - qmin)
        scale[scale == 0] = 1.0
        zero = np.clip(np.round(qmin - lo / scale), qmin, qmax)
        q = np.clip(np.round(flat / scale[:, None]) + zero[:, None], qmin, qmax)
        old_scale = numpy_helper.to_array(inits[w_dq.input[1]]).astype(np.float64)
        for init, value in ((w_dq.input[0], q.reshape(w.shape).astype(np.int8)),
                            (w_dq.input[1], scale.astype(np.float32)),
                            (w_dq.input[2], zero.astype(np.int8))):  # fmt: skip
            inits[init].CopyFrom(numpy_helper.from_array(value, init))
        if b_dq is not None:  # int32 at x_scale * w_scale: same x_scale, new w_scale
            b_scale = numpy_helper.to_array(inits[b_dq.input[1]]).astype(np.float64)
            b = float_weights.get(b_dq.input[0].removesuffix("_quantized"))
            if b is None:  # not found: the stored bias, dequantised
                b = numpy_helper.to_array(inits[b_dq.input[0]]).astype(np.float64) * b_scale
            new_b_scale = b_scale * scale / old_scale
            new_q = np.clip(np.round(b / new_b_scale), -(2**31), 2**31 - 1)
            inits[b_dq.input[0]].CopyFrom(
                numpy_helper.from_array(new_q.astype(np.int32), b_dq.input[0])
            )
            inits[b_dq.input[1]].CopyFrom(
                numpy_helper.from_array(new_b_scale.astype(np.float32), b_dq.input[1])
            )
        done.append(name)
    return done


def conv_times(graph: Path | bytes, feed: dict[str, np.ndarray], names, runs: int = PROFILE_RUNS,
               threads: int = 1) -> dict[str, float]:  # fmt: skip
    """Seconds each convolution of `names` took in `graph` (a path or a serialised model; best
    of `runs` after a warm-up), from ORT's profiler at `threads` threads. ORT renames the QLinearConv it fuses (name + "_quant",
    "_token_N", ...), so a profiled node belongs to the longest conv name it starts with."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="edgevla-convprof.") as tmp:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "p")
        source = graph if isinstance(graph, bytes) else str(graph)
        session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        for _ in range(runs + 1):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    by_length = sorted(names, key=len, reverse=True)
    starts = sorted(e["ts"] for e in events if e.get("name") == "model_run")
    per_run: dict[str, dict[int, float]] = collections.defaultdict(dict)
    for e in events:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time"):
            continue
        if e.get("args", {}).get("op_name") != "QLinearConv" or e["ts"] < starts[1]:
            continue  # the first run warms up
        node = e["name"].removesuffix("_kernel_time")
        owner = next((n for n in by_length if node == n or node.startswith(n + "_")), None)
        if owner is not None:
            run = sum(e["ts"] >= s for s in starts)
            per_run[owner][run] = per_run[owner].get(run, 0.0) + e["dur"] * 1e-6
    return {n: min(r.values()) for n, r in per_run.items()}


def choose_conv_weights(model, float_src: Path, feed: dict[str, np.ndarray], mode: str,
                        reduce_range: bool = False) -> dict[str, list[str]]:  # fmt: skip
    """Give each quantised convolution of the int8 static `model` (in place) the weights `mode`
    asks for: "symmetric" (as ORT wrote them), "asymmetric", or "fastest" (timed both ways on
    `feed`). `float_src`: the float graph `model` was quantised from. Returns
    {"asymmetric": [...], "symmetric": [...]} conv names."""
    import onnx
    from onnx import numpy_helper

    names = list(_quantised_convs(model.graph))
    if mode == "symmetric" or not names:
        return {"asymmetric": [], "symmetric": names}
    source = onnx.load(str(float_src))
    float_weights = {i.name: numpy_helper.to_array(i) for i in source.graph.initializer
                     if i.data_type == 1}  # fmt: skip
    chosen = names
    if mode == "fastest":
        other = onnx.ModelProto()
        other.CopyFrom(model)
        movable = make_asymmetric(other, float_weights, names, reduce_range)
        sym_t = conv_times(model.SerializeToString(), feed, movable)
        asym_t = conv_times(other.SerializeToString(), feed, movable)
        chosen = [n for n in movable if n in sym_t and n in asym_t
                  and asym_t[n] < MARGIN * sym_t[n]]  # fmt: skip
    done = make_asymmetric(model, float_weights, chosen, reduce_range)
    return {"asymmetric": done, "symmetric": [n for n in names if n not in done]}


def conv_weightings(path: Path) -> dict[str, int]:
    """How many of the int8 convolutions at `path` have symmetric weights (every zero point 0:
    ConvSym) and how many asymmetric (im2col + GEMM)."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path), load_external_data=False).graph
    inits = {i.name: i for i in graph.initializer}
    counts = {"symmetric": 0, "asymmetric": 0}
    for w_dq, _ in _quantised_convs(graph).values():
        asymmetric = w_dq.input[2] in inits and numpy_helper.to_array(inits[w_dq.input[2]]).any()
        counts["asymmetric" if asymmetric else "symmetric"] += 1
    return counts
