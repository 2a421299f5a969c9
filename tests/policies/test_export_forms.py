"""The forms layers take only while exported compute what the eager forms do: unmasked
self-attention (softmax(q k^T / sqrt(d_h)) v per head) as one ORT MultiHeadAttention node, and
SigLIP's patch embedding as one MatMul."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import onnxruntime as ort
import torch

from edgevla.deploy.export import OPSET
from edgevla.policies.common.attention import self_attention
from edgevla.policies.smolvla.config import smolvla_cpu_preset
from edgevla.policies.smolvla.vision import VisionEmbeddings

B, T, D, H = 2, 7, 24, 3


def _inputs():
    g = torch.Generator().manual_seed(0)
    return [torch.randn(B, T, D, generator=g) for _ in range(3)]


def test_eager_is_softmax_attention_per_head() -> None:
    q, k, v = _inputs()
    out = self_attention(q, k, v, H)
    dh = D // H
    for h in range(H):
        cols = slice(h * dh, (h + 1) * dh)
        scores = q[..., cols] @ k[..., cols].transpose(1, 2) / dh**0.5
        expected = torch.softmax(scores, dim=-1) @ v[..., cols]
        torch.testing.assert_close(out[..., cols], expected, atol=1e-5, rtol=1e-5)


def test_export_writes_one_fused_node_with_the_same_output(tmp_path) -> None:
    class Block(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.q, self.k, self.v = (torch.nn.Linear(D, D) for _ in range(3))

        def forward(self, x):
            return self_attention(self.q(x), self.k(x), self.v(x), H)

    block, x = Block().eval(), torch.randn(B, T, D)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(block, (x,), str(tmp_path / "a.onnx"), input_names=["x"],
                          output_names=["y"], opset_version=OPSET, dynamo=False)  # fmt: skip
        expected = block(x).numpy()
    ops = [n.op_type for n in onnx.load(str(tmp_path / "a.onnx")).graph.node]
    assert ops.count("MultiHeadAttention") == 1 and "Softmax" not in ops
    session = ort.InferenceSession(str(tmp_path / "a.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"x": x.numpy()})[0], expected, atol=1e-5)


def test_patch_embedding_as_a_matmul_is_the_convolution() -> None:
    embed = VisionEmbeddings(smolvla_cpu_preset()).eval()
    pixels = torch.rand(3, 3, 96, 128)
    with torch.no_grad():
        conv = embed.patch_embedding(pixels).flatten(2).transpose(1, 2)
        torch.testing.assert_close(embed.patches_as_matmul(pixels), conv, atol=1e-5, rtol=1e-5)
