"""The forms layers take only while exported compute what the eager forms do: unmasked
self-attention (softmax(q k^T / sqrt(d_h)) v per head) as one ORT MultiHeadAttention node, ACT's
nn.MultiheadAttention calls (sequence-first, cross-attention too) as that node between the
module's own projections, masked grouped-query attention (SmolVLA's prefill and expert) as that
node with an additive bias, and SigLIP's patch embedding as one MatMul."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import onnxruntime as ort
import torch

from edgevla.deploy.export import OPSET
from edgevla.policies.common.attention import attend, module_attention, self_attention
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


def _export(module, args, path):
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(path), opset_version=OPSET, dynamo=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {i.name: a.numpy() for i, a in zip(session.get_inputs(), args, strict=True)}
    return [n.op_type for n in onnx.load(str(path)).graph.node], session.run(None, feed)[0]


class _Cross(torch.nn.Module):
    """ACT's call shape: queries (T, B, D) + positions, keys (S, B, D) + positions, values (S, B, D)."""

    def __init__(self) -> None:
        super().__init__()
        self.attn = torch.nn.MultiheadAttention(D, H)

    def forward(self, x, memory, pos):
        return module_attention(self.attn, x + 1.0, memory + pos, memory)


def test_module_attention_exports_the_module_as_one_fused_node(tmp_path) -> None:
    torch.manual_seed(0)
    block = _Cross().eval()
    x, memory, pos = torch.randn(5, B, D), torch.randn(T, B, D), torch.randn(T, 1, D)
    with torch.no_grad():
        expected = block.attn(x + 1.0, memory + pos, memory, need_weights=False)[0].numpy()
        torch.testing.assert_close(block(x, memory, pos), torch.from_numpy(expected))
    ops, got = _export(block, (x, memory, pos), tmp_path / "cross.onnx")
    assert ops.count("MultiHeadAttention") == 1 and "Softmax" not in ops
    assert got.shape == (5, B, D)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_module_attention_with_a_padding_mask_exports_the_module_itself(tmp_path) -> None:
    class Masked(_Cross):
        def forward(self, x, memory, pad):
            return module_attention(self.attn, x, memory, memory, key_padding_mask=pad)

    torch.manual_seed(0)
    block = Masked().eval()
    x, memory = torch.randn(5, B, D), torch.randn(T, B, D)
    pad = torch.zeros(B, T, dtype=torch.bool)
    pad[:, -2:] = True  # the last two keys are padding: the fused node has no mask input here
    with torch.no_grad():
        expected = block.attn(x, memory, memory, key_padding_mask=pad, need_weights=False)[0]
    ops, got = _export(block, (x, memory, pad), tmp_path / "masked.onnx")
    assert "MultiHeadAttention" not in ops
    np.testing.assert_allclose(got, expected.numpy(), atol=1e-5)


def test_masked_grouped_query_attention_exports_as_one_node(tmp_path) -> None:
    class Attend(torch.nn.Module):
        def forward(self, q, k, v, mask):
            return attend(q, k, v, mask)

    g = torch.Generator().manual_seed(0)
    q = torch.randn(1, 6, 5, 8, generator=g)  # 6 query heads share 2 key/value heads
    k, v = torch.randn(1, 2, 9, 8, generator=g), torch.randn(1, 2, 9, 8, generator=g)
    mask = torch.rand(1, 5, 9, generator=g) > 0.4
    mask[:, 1:, 0] = True  # every query but the first sees a key
    mask[:, 0] = False  # the first sees none (a padded query: finite, never read)
    expected = attend(q, k, v, mask).numpy()
    ops, got = _export(Attend(), (q, k, v, mask), tmp_path / "gqa.onnx")
    assert ops.count("MultiHeadAttention") == 1 and "Softmax" not in ops
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got[:, :, 1:], expected[:, :, 1:], atol=1e-5)


def test_patch_embedding_as_a_matmul_is_the_convolution() -> None:
    embed = VisionEmbeddings(smolvla_cpu_preset()).eval()
    pixels = torch.rand(3, 3, 96, 128)
    with torch.no_grad():
        conv = embed.patch_embedding(pixels).flatten(2).transpose(1, 2)
        torch.testing.assert_close(embed.patches_as_matmul(pixels), conv, atol=1e-5, rtol=1e-5)
