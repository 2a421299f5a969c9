"""The stage graph int8 static quantisation starts from: exact rewrites that leave every output
as it was (to float rounding) and let ONNX Runtime's int8 kernels run at their speed.

1. ORT's quantisation pre-processing (shape inference and its basic, hardware-independent
   fusions), as ORT's guide asks: the ResNet trunk's frozen batch norms (exported as Mul + Add)
   fold into the convolutions and MatMul + Add into Gemm, so QDQ pairs are not placed around
   operations that fp32 fuses away at load time anyway. Measured on the shipped ACT, int8
   static, one thread: vision 2.78 -> 1.95 ms, transformer 1.56 -> 1.04 ms.
2. Stride folding of a stem convolution (`fold_input_stride`): a strided convolution over the
   graph's few-channel input (ResNet's 7x7 / stride 2 over RGB) becomes SpaceToDepth -> a
   stride-1 convolution over s*s*C channels with a ceil((k + shift)/s) kernel and its padding in
   blocks. The multiply-adds are the same (plus the zero taps of the larger kernel), but ORT's
   fast int8 convolution (MLAS ConvSym) needs input channels in multiples of 4: 3 channels took
   its generic path at a third of the speed. The SpaceToDepth stays float (`float_nodes`):
   quantising it would add a QuantizeLinear/DequantizeLinear pair. Measured on the shipped ACT's
   vision stage, int8 static, one thread: stem 534 -> 344 us, stage 1.67 -> 1.46 ms
   (docs/experiments.md, 2026-12-03). fp32 gains nothing from it (MLAS's fp32 convolution
   handles 3 channels well), so fp32 bundles are exported as they are.

3. ReLU before a reshape (`relu_before_reshape`): the pre-processing turns a transformer's
   MatMul + Add over (B, T, D) into Reshape -> Gemm -> Reshape, and the feed-forward's ReLU
   then follows the second Reshape. ORT's quantiser drops a ReLU whose QuantizeLinear clips at
   zero anyway, but the Gemm's own output was calibrated before it, negatives included: the
   graph ran QGemm -> DequantizeLinear -> Reshape -> QuantizeLinear on the (T, 3200) hidden
   layer, requantising it at another scale (half its levels spent on values the ReLU zeroes).
   Reshape(Relu(x)) == Relu(Reshape(x)) exactly, so the ReLU moves before the Reshape: the Gemm
   output is calibrated after the ReLU and ORT fuses it into one QGemm with a uint8 output.
   Measured on the paper-size ACT transformer, int8 static, one thread: see
   docs/experiments.md (2026-12-03, evening).

After quantisation, `quantize_before_space_to_depth` moves the QuantizeLinear that reads the
fold's SpaceToDepth in front of it: the same bytes (quantisation is elementwise, one scale),
but the layout change then moves uint8 instead of float, and ORT's SpaceToDepth is slow on
float at the paper's 3x480x640 (5.3 ms against 2.3 on uint8 in the vision stage).

The rewritten convolution keeps its node name and output, so keep_fp32 patterns and per-layer
comparisons name the same layers as before; so do the moved ReLU and its Reshape.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgevla.deploy.calibration import ort_prints_to_stderr

FOLD_MAX_CHANNELS = 64
"""fold only when s*s*C_in stays at most this (a narrow input, where int8 convolution is slow)"""


def prepared_for_static(src: Path, workdir: Path) -> tuple[Path, list[str]]:
    """`src` pre-processed and stride-folded, written into `workdir`: (path, the names of the
    nodes the rewrite added that must stay float)."""
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out = Path(workdir) / f"{Path(src).stem}.fused.onnx"
    with ort_prints_to_stderr():
        quant_pre_process(str(src), str(out), skip_symbolic_shape=True)
    model = onnx.load(str(out))
    float_nodes = fold_input_stride(model.graph)
    if relu_before_reshape(model.graph) or float_nodes:
        folded = Path(workdir) / f"{Path(src).stem}.folded.onnx"
        onnx.save(model, str(folded))
        out = folded
    return out, float_nodes


def fold_input_stride(graph) -> list[str]:
    """Rewrite, in place, every strided convolution that reads a graph input of static shape
    (N, C, H, W) with s*s*C <= FOLD_MAX_CHANNELS and a kernel wider than its stride:

        Conv(x; W (O, C, k, k), stride s, pads p)
          == Conv(SpaceToDepth_s(x); W' (O, s*s*C, k', k'), stride 1, pads p' (in blocks))

    (H and W multiples of s), with W's taps shifted by d = s*ceil(p/s) - p and zero-padded to
    s*k' taps, k' = ceil((k + d) / s), and W'[o, (i*s + j)*C + c, a, b] = W~[o, c, a*s + i,
    b*s + j] (ONNX SpaceToDepth's channel order). The padding stays the convolution's own, so
    no Pad runs (`_fold_axis`). Returns the names of the SpaceToDepth nodes added."""
    from onnx import helper, numpy_helper

    weights = {t.name: t for t in graph.initializer}
    shapes = {
        i.name: [
            d.dim_value if d.HasField("dim_value") else 0 for d in i.type.tensor_type.shape.dim
        ]
        for i in graph.input
    }
    added: list[str] = []
    for index in reversed(range(len(graph.node))):  # from the end: inserts keep earlier indices
        node = graph.node[index]
        if node.op_type != "Conv" or node.input[0] not in shapes or node.input[1] not in weights:
            continue
        shape = shapes[node.input[0]]
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        w = numpy_helper.to_array(weights[node.input[1]])  # (O, C, kh, kw)
        strides = list(attrs.get("strides", [1, 1]))
        pads = list(attrs.get("pads", [0, 0, 0, 0]))
        s = strides[0]
        if (
            len(shape) != 4
            or 0 in shape
            or w.ndim != 4
            or attrs.get("group", 1) != 1
            or any(d != 1 for d in attrs.get("dilations", [1, 1]))
            or attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET")
            or strides != [s, s]
            or s < 2
            or min(w.shape[2:]) <= s
            or s * s * w.shape[1] > FOLD_MAX_CHANNELS
        ):
            continue
        (_, c, h, wd), (o, _, kh, kw) = shape, w.shape
        rows = _fold_axis(h, kh, pads[0], pads[2], s)
        cols = _fold_axis(wd, kw, pads[1], pads[3], s)
        if rows is None or cols is None:
            continue
        (kh2, shift_h, top, bottom), (kw2, shift_w, left, right) = rows, cols
        taps = np.zeros((o, c, kh2 * s, kw2 * s), dtype=w.dtype)
        taps[:, :, shift_h : shift_h + kh, shift_w : shift_w + kw] = w
        folded = taps.reshape(o, c, kh2, s, kw2, s).transpose(0, 3, 5, 1, 2, 4)
        folded = folded.reshape(o, s * s * c, kh2, kw2)
        name = node.name or node.output[0]
        w_name, moved = f"{node.input[1]}_space_to_depth", f"{name}_fold_space_to_depth"
        graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(folded), w_name))
        s2d = helper.make_node("SpaceToDepth", [node.input[0]], [moved],
                               name=f"{name}_fold_SpaceToDepth", blocksize=s)  # fmt: skip
        conv = helper.make_node("Conv", [moved, w_name, *node.input[2:]], list(node.output),
                                name=node.name, kernel_shape=[kh2, kw2],
                                pads=[top, left, bottom, right])  # fmt: skip
        del graph.node[index]
        for offset, new in enumerate((s2d, conv)):
            graph.node.insert(index + offset, new)
        if not any(node.input[1] in n.input for n in graph.node):  # the unfolded kernel
            graph.initializer.remove(weights.pop(node.input[1]))
        added.append(s2d.name)
    return added


def relu_before_reshape(graph) -> int:
    """Rewrite, in place, every Reshape -> Relu whose Reshape output feeds only that Relu into
    Relu -> Reshape (same node names and output name). Returns how many were moved."""
    users = readers(graph)
    moved = 0
    for reshape in [n for n in graph.node if n.op_type == "Reshape"]:
        after = users.get(reshape.output[0], [])
        if len(after) == 1 and after[0].op_type == "Relu" and not _is_output(graph, reshape):
            _exchange(graph, reshape, after[0])
            moved += 1
    return moved


def quantize_before_space_to_depth(graph) -> int:
    """Rewrite, in place, SpaceToDepth -> QuantizeLinear (a per-tensor scale; the SpaceToDepth
    feeding nothing else) into QuantizeLinear -> SpaceToDepth, keeping both node names and the
    QuantizeLinear's output name. Returns how many were moved."""
    users = readers(graph)
    sizes = {t.name: int(np.prod(t.dims)) for t in graph.initializer}
    moved = 0
    for s2d in [n for n in graph.node if n.op_type == "SpaceToDepth"]:
        after = users.get(s2d.output[0], [])
        if (len(after) == 1 and after[0].op_type == "QuantizeLinear" and not _is_output(graph, s2d)
                and sizes.get(after[0].input[1]) == 1):  # fmt: skip  # per-channel would move
            _exchange(graph, s2d, after[0])
            moved += 1
    return moved


def readers(graph) -> dict[str, list]:
    """Tensor name -> the nodes that read it (the graph rewrites here and in fusions.py and
    conv_weights.py match on it)."""
    users: dict[str, list] = {}
    for n in graph.node:
        for name in n.input:
            users.setdefault(name, []).append(n)
    return users


def _is_output(graph, node) -> bool:
    return node.output[0] in {o.name for o in graph.output}


def _exchange(graph, layout, elementwise) -> None:
    """layout(x) -> mid -> elementwise -> y  becomes  elementwise(x) -> mid -> layout -> y, in
    place: exact when `elementwise` acts on each element alike (a ReLU, a per-tensor
    QuantizeLinear) and `layout` only moves elements (Reshape, SpaceToDepth). `mid` now has x's
    layout, so its recorded shape is dropped (shape inference redoes it); the two nodes trade
    places, keeping the order topological."""
    x, mid, y = layout.input[0], layout.output[0], elementwise.output[0]
    elementwise.input[0], elementwise.output[0] = x, mid
    layout.input[0], layout.output[0] = mid, y
    for info in [v for v in graph.value_info if v.name == mid]:
        graph.value_info.remove(info)
    where = {n.output[0]: k for k, n in enumerate(graph.node)}  # output names are unique
    i, j = where[y], where[mid]  # the layout node's place, the elementwise node's place
    first, second = type(layout)(), type(layout)()
    first.CopyFrom(graph.node[j])
    second.CopyFrom(graph.node[i])
    graph.node[i].CopyFrom(first)
    graph.node[j].CopyFrom(second)


def _fold_axis(n: int, k: int, before: int, after: int, s: int) -> tuple[int, int, int, int] | None:
    """One axis of the fold: (folded kernel k', shift of the taps, padding before and after
    in blocks), or None where the size is not a whole number of blocks.

    The original reads padded index s*y + i (i < k), i.e. input index s*y + i - before. With
    P = ceil(before / s) blocks of padding and the taps shifted by d = s*P - before, tap
    t = s*a + j (i = t - d) reads block y + a - P, offset j: the same element."""
    if n % s:
        return None
    out = (n + before + after - k) // s + 1
    blocks_before = -(-before // s)
    shift = s * blocks_before - before
    k2 = -(-(k + shift) // s)
    blocks_after = out + k2 - 1 - blocks_before - n // s
    if blocks_after < 0:  # the original drops trailing rows; a stride-1 pad cannot crop them
        return None
    return k2, shift, blocks_before, blocks_after
