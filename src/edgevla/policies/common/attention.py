"""Eager scaled dot-product attention with grouped-query heads and a boolean mask.

Written out (matmul, where, softmax, matmul) instead of F.scaled_dot_product_attention so that
a row whose keys are all masked (a padded query) gives a finite uniform average instead of NaN:
masked scores are set to the most negative float32, not -inf. Scores and softmax run in float32
whatever the input precision.

While exporting to ONNX, every form here is written as ONNX Runtime's com.microsoft
MultiHeadAttention, one fused kernel instead of the ~15-20 nodes the eager form exports (head
split and merge, key/value repeat, scores, scale, mask, softmax); the eager path is unchanged,
and export parity checks the two agree:

    attend            masked grouped-query attention (SmolVLA's prefill and expert): the mask
                      becomes an additive bias; full-size expert step, int8, two threads, 23.6 ->
                      21.4 ms (2026-12-03)
    self_attention    the unmasked case over (B, T, D) projections (SigLIP's vision tower): 3 x
                      1024 tokens, 12 heads of 64, one thread, 115 -> 83 ms a layer
    module_attention  an nn.MultiheadAttention call (ACT's sequence-first layers)
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
    Exported as one MultiHeadAttention node (`_attend_as_one_node`).
    """
    n_heads, n_kv = q.shape[1], k.shape[1]
    if n_heads % n_kv != 0:
        raise ValueError(f"{n_heads} query heads cannot share {n_kv} key/value heads evenly")
    if torch.onnx.is_in_onnx_export():
        return _attend_as_one_node(q, k, v, mask)
    return _attend(q, k, v, mask)


def _attend(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, bias: Tensor | None = None
) -> Tensor:
    """`attend`'s eager computation; `bias` (broadcast to (B, H, T, S)) is added to the scaled
    scores, as the exported node's attention_bias is."""
    n_heads, n_kv = q.shape[1], k.shape[1]
    k = repeat_kv(k, n_heads // n_kv)  # (B, H, S, Dh)
    v = repeat_kv(v, n_heads // n_kv)  # (B, H, S, Dh)
    scale = q.shape[-1] ** -0.5
    scores = torch.matmul(q.float(), k.float().transpose(-1, -2)) * scale  # (B, H, T, S)
    if bias is not None:
        scores = scores + bias
    if mask is not None:
        big_neg = torch.finfo(torch.float32).min
        scores = torch.where(mask[:, None], scores, big_neg)  # (B, H, T, S)
    probs = torch.softmax(scores, dim=-1).to(v.dtype)  # (B, H, T, S)
    return torch.matmul(probs, v)  # (B, H, T, Dh)


# an additive score bias for a masked key: exp() of it is 0, and unlike float32's minimum it
# stays finite when a score is added, so a row whose keys are all masked (a padded query, never
# read) gets a finite softmax rather than NaN
MASKED_BIAS = -1.0e9


def _attend_as_one_node(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
    """`attend` as ORT's MultiHeadAttention: (B, H, T, Dh) like `attend`.

    Grouped-query heads without repeating keys and values: the n_rep query heads that share one
    key/value head are stacked along the query axis, so the node sees Hkv heads of n_rep * T
    queries each (query head h = g * n_rep + r is row r * T + t of group g). The boolean mask
    becomes an additive bias (B, 1, n_rep * T, S). In SmolVLA's expert step this replaces, per
    layer, the key/value Expand, the scaled score MatMul, Where, Softmax, the weighted MatMul
    and their transposes.
    """
    b, n_heads, t, dh = q.shape
    n_kv, s = int(k.shape[1]), k.shape[2]  # a plain int: a traced size breaks the node's attribute
    rep = n_heads // n_kv
    qg = q.reshape(b, n_kv, rep * t, dh).transpose(1, 2).reshape(b, rep * t, n_kv * dh)
    kg = k.transpose(1, 2).reshape(b, s, n_kv * dh)  # (B, S, Hkv*Dh)
    vg = v.transpose(1, 2).reshape(b, s, n_kv * dh)  # (B, S, Hkv*Dh)
    if mask is None:
        out = _OrtMultiHeadAttention.apply(qg.float(), kg.float(), vg.float(), n_kv)
    else:
        allowed = mask[:, None].expand(b, rep, t, s).reshape(b, 1, rep * t, s)
        bias = torch.where(allowed, 0.0, MASKED_BIAS).to(torch.float32)  # (B, 1, rep*T, S)
        out = _OrtBiasedMultiHeadAttention.apply(qg.float(), kg.float(), vg.float(), bias, n_kv)
    out = out.reshape(b, rep * t, n_kv, dh).transpose(1, 2)  # (B, Hkv, rep*T, Dh)
    return out.reshape(b, n_heads, t, dh).to(v.dtype)


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


def _self_attention(
    q: Tensor, k: Tensor, v: Tensor, num_heads: int, bias: Tensor | None = None
) -> Tensor:
    b, t, d = q.shape

    def heads(y: Tensor) -> Tensor:
        return y.view(b, y.shape[1], num_heads, d // num_heads).transpose(1, 2)  # (B, H, T, Dh)

    out = _attend(heads(q), heads(k), heads(v), None, bias)  # (B, H, T, Dh)
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


class _OrtBiasedMultiHeadAttention(torch.autograd.Function):
    """As _OrtMultiHeadAttention with an additive score bias (B or 1, 1, T, S), the node's
    attention_bias input (its bias and key_padding_mask inputs left empty)."""

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, bias: Tensor, num_heads: int) -> Tensor:
        return _self_attention(q, k, v, num_heads, bias)

    @staticmethod
    def symbolic(g, q, k, v, bias, num_heads: int):
        absent = g.op("prim::Constant")
        absent.setType(torch._C.OptionalType.ofTensor())
        out = g.op("com.microsoft::MultiHeadAttention", q, k, v, absent, absent, bias,
                   num_heads_i=num_heads)  # fmt: skip
        out.setType(q.type())
        return out
