"""The tanh-form GELU the exporter writes becomes one FastGelu with the same output; chains
that are not exactly that, or whose parts are read elsewhere, are left alone."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper
from onnxruntime.quantization import QuantType, quantize_dynamic

from edgevla.deploy.export import OPSET
from edgevla.deploy.fusions import fuse_exported

SHAPE = [2, 5, 16]


def _run(model, x: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})


def _chain(swap: bool = False, tanh_out: bool = False, half: float = 0.5):
    """x -> the nine-node tanh GELU -> y (operands swapped with `swap`; the tanh also a graph
    output with `tanh_out`)."""

    def mul(a, b, out):
        return helper.make_node("Mul", [b, a] if swap else [a, b], [out])

    def const(name, value):
        return helper.make_node("Constant", [], [name],
                                value=helper.make_tensor(name, TensorProto.FLOAT, [], [value]))  # fmt: skip

    nodes = [const("c1", 0.7978845608028654), const("c2", 0.044715), const("one", 1.0),
             const("half", half), mul("x", "x", "sq"), mul("x", "sq", "cube"),
             mul("c2", "cube", "scaled"), helper.make_node("Add", ["x", "scaled"], ["inner"]),
             mul("c1", "inner", "arg"), helper.make_node("Tanh", ["arg"], ["t"], name="/mlp/Tanh"),
             helper.make_node("Add", ["one", "t"], ["onep"]), mul("x", "onep", "xt"),
             mul("half", "xt", "y")]  # fmt: skip
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, SHAPE)]
    if tanh_out:
        outputs.append(helper.make_tensor_value_info("t", TensorProto.FLOAT, SHAPE))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, SHAPE)],
                              outputs)  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_the_chain_becomes_one_fastgelu_with_the_same_output() -> None:
    x = np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32) * 3
    for swap in (False, True):
        model = _chain(swap=swap)
        before = _run(model, x)[0]
        assert fuse_exported(model) == {"FastGelu": 1}
        assert [n.op_type for n in model.graph.node] == ["FastGelu"]  # its constants gone
        assert model.graph.node[-1].name == "/mlp/FastGelu"
        np.testing.assert_allclose(_run(model, x)[0], before, atol=1e-5)


def test_other_chains_are_left_alone() -> None:
    for model in (_chain(tanh_out=True), _chain(half=0.25)):
        ops = [n.op_type for n in model.graph.node]
        assert fuse_exported(model) == {"FastGelu": 0}
        assert [n.op_type for n in model.graph.node] == ops
        assert not any(o.domain == "com.microsoft" for o in model.opset_import)


def test_what_the_exporter_writes_is_matched(tmp_path) -> None:
    """The pattern is the exporter's own: a module with F.gelu(approximate="tanh") exported as
    edgevla exports stages."""

    class MLP(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.fc2 = torch.nn.Linear(16, 32), torch.nn.Linear(32, 16)

        def forward(self, x):
            return self.fc2(torch.nn.functional.gelu(self.fc1(x), approximate="tanh"))

    module, x = MLP().eval(), torch.randn(SHAPE)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x,), str(tmp_path / "m.onnx"), input_names=["x"],
                          output_names=["y"], opset_version=OPSET, dynamo=False)  # fmt: skip
        expected = module(x).numpy()
    model = onnx.load(str(tmp_path / "m.onnx"))
    assert "Tanh" in [n.op_type for n in model.graph.node]
    assert fuse_exported(model) == {"FastGelu": 1}
    assert "Tanh" not in [n.op_type for n in model.graph.node]
    np.testing.assert_allclose(_run(model, x.numpy())[0], expected, atol=1e-5)
    # ORT's quantisers need the type of every tensor after the com.microsoft node
    onnx.save(model, str(tmp_path / "fused.onnx"))
    quantize_dynamic(tmp_path / "fused.onnx", tmp_path / "q.onnx", weight_type=QuantType.QInt8)
    quantised = onnx.load(str(tmp_path / "q.onnx"))
    assert [n.op_type for n in quantised.graph.node].count("MatMulInteger") == 2
    assert np.abs(_run(quantised, x.numpy())[0] - expected).max() < 0.05
