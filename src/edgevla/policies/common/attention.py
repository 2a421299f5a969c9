"""Eager scaled dot-product attention with grouped-query heads and a boolean mask.

Written out (matmul, where, softmax, matmul) instead of F.scaled_dot_product_attention so that
the exported ONNX graph is made of plain operators every runtime and quantiser understands, and so
that a row whose keys are all masked (a padded query) gives a finite uniform average instead of
NaN: masked scores are set to the most negative float32, not -inf. Scores and softmax run in
float32 whatever the input precision.
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
