"""Eager scaled dot-product attention with grouped-query heads and a boolean mask.

Written out (matmul, where, softmax, matmul) instead of F.scaled_dot_product_attention so that
the exported ONNX graph is made of plain operators every runtime and quantiser understands, and so
that a row whose keys are all masked (a padded query) gives a finite uniform average instead of
NaN: masked scores are set to the most negative float32, not -inf. Scores and softmax run in
float32 whatever the input precision.

`self_attention` is the unmasked, one-head-group case over (B, T, D) projections (SigLIP's
vision tower; ACT's nn.MultiheadAttention calls through `module_attention`). While exporting to ONNX it is written as ONNX Runtime's com.microsoft
MultiHeadAttention, one fused kernel instead of the ~15 nodes the eager form exports (head
split and merge, scores, scale, softmax): 3 x 1024 tokens, 12 heads of 64, one thread, 115 ->
83 ms a layer in a standalone graph (2026-12-03); the eager path is unchanged, and export parity
checks the two agree.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn


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


def module_attention(
    attn: nn.MultiheadAttention,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    key_padding_mask: Tensor | None = None,
) -> Tensor:
    """`attn(query, key, value)[0]` for sequence-first (T, B, D) queries and (S, B, D) keys and
    values (ACT's layout): (T, B, D).

    Eager, and whenever a padding mask is given, this is the module itself. While exporting to
    ONNX, an unmasked call becomes the module's own weights around `self_attention`: three
    linears, one MultiHeadAttention node, the output linear. ORT runs that node as one fused
    (flash) kernel in float32, where nn.MultiheadAttention exports ~20 nodes whose (B, H, T, S)
    score tensors pass through memory, and which the int8 quantisers turn into a dynamically
    quantised score product that runs no faster than float here. Paper-size ACT, 902 tokens, one
    thread: scores + softmax + weighted sum 12.3 ms a layer in the int8 graph, the fused node
    11.0 ms (2026-12-03).
    """
    plain = (
        attn._qkv_same_embed_dim
        and not attn.batch_first
        and attn.bias_k is None
        and not attn.add_zero_attn
        and not attn.training
    )
    if key_padding_mask is not None or not plain or not torch.onnx.is_in_onnx_export():
        return attn(query, key, value, key_padding_mask=key_padding_mask, need_weights=False)[0]
    w_q, w_k, w_v = attn.in_proj_weight.chunk(3)  # (D, D) each
    b_q, b_k, b_v = attn.in_proj_bias.chunk(3) if attn.in_proj_bias is not None else (None,) * 3
    q = F.linear(query.transpose(0, 1), w_q, b_q)  # (B, T, D)
    k = F.linear(key.transpose(0, 1), w_k, b_k)  # (B, S, D)
    v = F.linear(value.transpose(0, 1), w_v, b_v)  # (B, S, D)
    out = attn.out_proj(self_attention(q, k, v, attn.num_heads))  # (B, T, D)
    return out.transpose(0, 1)  # (T, B, D)


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
