"""Eager scaled dot-product attention with grouped-query heads and a boolean mask.

Written out (matmul, where, softmax, matmul) instead of F.scaled_dot_product_attention so that
the exported ONNX graph is made of plain operators every runtime and quantiser understands, and so
that a row whose keys are all masked (a padded query) gives a finite uniform average instead of
NaN: masked scores are set to the most negative float32, not -inf. Scores and softmax run in
float32 whatever the input precision.

`self_attention` is the unmasked, one-head-group case over (B, T, D) projections (SigLIP's
vision tower). While exporting to ONNX it is written as ONNX Runtime's com.microsoft
MultiHeadAttention, one fused kernel instead of the ~15 nodes the eager form exports (head
split and merge, scores, scale, softmax): 3 x 1024 tokens, 12 heads of 64, one thread, 115 ->
83 ms a layer in a standalone graph (2026-12-03); the eager path is unchanged, and export parity
checks the two agree.
"""

from __future__ import annotations

import torch
from torch import Tensor


def repeat_kv(x: Tensor, n_rep: int) -> Tensor:
    """(B, Hkv, S, Dh) -> (B, Hkv * n_rep, S, Dh); query head h reads key/value head h // n_rep."""
    if n_rep == 1:
        return x
    b, h_kv, s, d = x.shape
    x = x[:, :, None].expand(b, h_kv, n_rep, s, d)  # (B, Hkv, n_rep, S, Dh)
    return x.reshape(b, h_kv * n_rep, s, d)  # (B, H, S, Dh)


def attend(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None) -> Tensor:
    """Attention output (B, H, T, Dh) for q (B, H, T, Dh), k/v (B, Hkv, S, Dh), mask (B, T, S).

    mask is True where query t may attend to key s; None lets every query see every key.
    """
    n_heads, n_kv = q.shape[1], k.shape[1]
    if n_heads % n_kv != 0:
        raise ValueError(f"{n_heads} query heads cannot share {n_kv} key/value heads evenly")
    k = repeat_kv(k, n_heads // n_kv)  # (B, H, S, Dh)
    v = repeat_kv(v, n_heads // n_kv)  # (B, H, S, Dh)
    scale = q.shape[-1] ** -0.5
    scores = torch.matmul(q.float(), k.float().transpose(-1, -2)) * scale  # (B, H, T, S)
    if mask is not None:
        big_neg = torch.finfo(torch.float32).min
        scores = torch.where(mask[:, None], scores, big_neg)  # (B, H, T, S)
    probs = torch.softmax(scores, dim=-1).to(v.dtype)  # (B, H, T, S)
    return torch.matmul(probs, v)  # (B, H, T, Dh)


def self_attention(q: Tensor, k: Tensor, v: Tensor, num_heads: int) -> Tensor:
    """Unmasked attention over projections q, k, v (B, T, D) with `num_heads` heads of D / H:
    (B, T, D), the heads merged back. Exported as ORT's MultiHeadAttention (see above)."""
    if torch.onnx.is_in_onnx_export():
        return _OrtMultiHeadAttention.apply(q, k, v, num_heads)
    return _self_attention(q, k, v, num_heads)


def _self_attention(q: Tensor, k: Tensor, v: Tensor, num_heads: int) -> Tensor:
    b, t, d = q.shape

    def heads(y: Tensor) -> Tensor:
        return y.view(b, y.shape[1], num_heads, d // num_heads).transpose(1, 2)  # (B, H, T, Dh)

    out = attend(heads(q), heads(k), heads(v))  # (B, H, T, Dh)
    return out.transpose(1, 2).reshape(b, t, d)


class _OrtMultiHeadAttention(torch.autograd.Function):
    """Export-only: the eager computation for tracing, one com.microsoft node in the graph
    (scale left at ORT's default, 1 / sqrt(head size), the same as `attend`'s)."""

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, num_heads: int) -> Tensor:
        return _self_attention(q, k, v, num_heads)

    @staticmethod
    def symbolic(g, q, k, v, num_heads: int):
        out = g.op("com.microsoft::MultiHeadAttention", q, k, v, num_heads_i=num_heads)
        out.setType(q.type())
        return out
