"""Which layers of a stage lose the most when it is quantised: a per-layer error table.

Both graphs, fp32 and quantised, are made to output every intermediate activation the
quantised graph still names (ORT's quantisers keep the original tensor names: QDQ inserts
Quantize/DequantizeLinear around them, dynamic and 4-bit quantisation end each replaced node
on its original output). On the same inputs, each activation's signal-to-quantisation-noise
ratio is measured against fp32 (the cumulative error up to that point, as ORT's
qdq_loss_debug computes it), and each layer is charged with the noise it adds to the noisiest
of its inputs:

    NSR(t) = |fp32(t) - quant(t)|^2 / |fp32(t)|^2   (= 10^(-SQNR/10); 0 at the stage input)
    noise_added(node) = NSR(output) - max(NSR(inputs))

The layers that add the most are the ones worth keeping in fp32 (a plan's keep_fp32); the
table is sorted by it. Works for every precision, with or without calibration.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

DEQUANT_SUFFIX = "_DequantizeLinear_Output"  # ORT's QDQ naming (qdq_loss_debug uses it too)
QUANTISABLE = ("Conv", "ConvTranspose", "MatMul", "Gemm")
"""Operators ORT's quantisers replace; only they are charged (a Relu adds no noise of its own,
though zeroing part of the signal raises the relative noise it passes on)."""


@dataclass
class LayerError:
    node: str
    op_type: str
    output: str
    sqnr_db: float
    """signal-to-noise of this layer's output against fp32, accumulated (higher is better)"""
    noise_added: float
    """noise-to-signal ratio this layer adds: its output's minus its noisiest input's"""

    def to_dict(self) -> dict:
        return asdict(self)


def sqnr_db(reference: list[np.ndarray], other: list[np.ndarray]) -> float:
    """10 log10(|ref|^2 / |ref - other|^2) over every sample; inf when equal."""
    signal = sum(float(np.sum(np.square(r.astype(np.float64)))) for r in reference)
    noise = sum(
        float(np.sum(np.square(r.astype(np.float64) - o.astype(np.float64))))
        for r, o in zip(reference, other, strict=True)
    )
    if noise == 0.0:
        return math.inf
    if signal == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def _activations(model_path: Path, names: list[str], feeds: list[dict[str, np.ndarray]]):
    """{tensor name: [value per feed]} for `names`, by adding them as graph outputs."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(model_path))
    present = {o.name for o in model.graph.output}
    for name in names:
        if name not in present:
            model.graph.output.append(onnx.ValueInfoProto(name=name))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])  # fmt: skip
    out: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for feed in feeds:
        for name, value in zip(names, session.run(names, feed), strict=True):
            out[name].append(np.asarray(value))
    return out


def layer_errors(
    fp32_path: Path, quant_path: Path, feeds: list[dict[str, np.ndarray]]
) -> list[LayerError]:
    """Every layer of the fp32 graph whose float output the quantised graph still names,
    sorted by the dB it loses (largest first)."""
    import onnx

    fp32 = onnx.load(str(fp32_path), load_external_data=False).graph
    quant = onnx.load(str(quant_path), load_external_data=False).graph
    quant_tensors = {t for n in quant.node for t in n.output} | {o.name for o in quant.output}
    skip = {"Shape", "Constant", "Gather", "Unsqueeze", "Squeeze", "Reshape", "Concat", "Cast",
            "ConstantOfShape", "Range", "Slice", "Transpose", "Identity", "Flatten"}  # fmt: skip
    nodes = [
        n for n in fp32.node if n.op_type not in skip and n.output and n.output[0] in quant_tensors
    ]
    names = [n.output[0] for n in nodes]
    # In a QDQ graph consumers see the dequantised copy of a tensor (and a Relu the quantiser
    # folded into its range exists only there), so that copy is the one to compare.
    seen = [f"{n}{DEQUANT_SUFFIX}" if f"{n}{DEQUANT_SUFFIX}" in quant_tensors else n for n in names]
    ref = _activations(fp32_path, names, feeds)
    got = dict(zip(names, _activations(quant_path, seen, feeds).values(), strict=True))
    sqnr = {  # float in both graphs (a fused Relu's name may land on a uint8 tensor)
        name: sqnr_db(ref[name], got[name])
        for name in names
        if ref[name][0].dtype.kind == "f"
        and got[name][0].dtype.kind == "f"
        and ref[name][0].shape == got[name][0].shape
        and ref[name][0].size > 1
    }
    # Noise-to-signal ratio carried along the graph in topological order; reshapes and other
    # data movement pass their input's noise through unchanged.
    nsr: dict[str, float] = {}
    rows = []
    for node in fp32.node:
        upstream = max((nsr.get(i, 0.0) for i in node.input), default=0.0)
        out = node.output[0] if node.output else None
        if out in sqnr:
            here = 0.0 if math.isinf(sqnr[out]) else 10.0 ** (-sqnr[out] / 10.0)
            nsr[out] = here
            if node.op_type in QUANTISABLE:  # what a plan can keep in fp32
                rows.append(LayerError(node.name, node.op_type, out, sqnr[out], here - upstream))
        else:
            for o in node.output:
                nsr[o] = upstream
    rows.sort(key=lambda r: -r.noise_added)
    return rows
