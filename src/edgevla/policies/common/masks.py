"""Boolean attention masks built from padding and "block start" flags.

One rule covers prefix-LM, causal and block-causal attention (big_vision's mask_ar convention,
used by pi0 and SmolVLA): each token carries a flag that is 1 when it starts a new block. Token i
may attend to token j when j's block index (cumulative sum of flags) is <= i's, and both are real
tokens (not padding). Examples, flags per token:

    [0 0 0 0]        one block: full bidirectional attention
    [1 1 1 1]        every token its own block: causal attention
    [0 0 0 1 1 1]    bidirectional prefix of 3, then causal
    [0 0 1 1 1]      SmolVLA prefix: images/language bidirectional, the state token in its own block
                     (it sees them, they do not see it), then causal action tokens

Masks are True where attention is allowed, shape (B, T_query, T_key).
"""

from __future__ import annotations

import torch
from torch import Tensor


def block_attention_mask(pad_mask: Tensor, block_start: Tensor) -> Tensor:
    """Build the (B, T, T) mask from pad_mask (B, T) bool and block_start (B, T) or (T,) flags."""
    if pad_mask.ndim != 2:
        raise ValueError(f"pad_mask must be (B, T), got {tuple(pad_mask.shape)}")
    if block_start.ndim == 1:
        block_start = block_start[None].expand_as(pad_mask)  # (B, T)
    if block_start.shape != pad_mask.shape:
        raise ValueError(
            f"block_start {tuple(block_start.shape)} does not match pad_mask {tuple(pad_mask.shape)}"
        )
    block = torch.cumsum(block_start.long(), dim=1)  # (B, T)
    allowed = block[:, None, :] <= block[:, :, None]  # (B, Tq, Tk)
    real = pad_mask.bool()
    both_real = real[:, None, :] & real[:, :, None]  # (B, Tq, Tk)
    return allowed & both_real


def causal_mask(n: int, device: torch.device | str | None = None) -> Tensor:
    """(n, n) bool, True on and below the diagonal: token i attends to tokens 0..i."""
    return torch.ones(n, n, dtype=torch.bool, device=device).tril()
