"""Rotary position embeddings (RoPE), split-half layout.

The head dimension is split into two halves (x1, x2) that are rotated as (x1*cos - x2*sin,
x2*cos + x1*sin); this is the layout of LLaMA / SmolLM checkpoints in Hugging Face format and of
SmolVLA's own apply_rope, so weights trained there rotate the same way here. Positions are an
explicit (B, T) tensor rather than an offset, because padded language tokens repeat positions
and the action expert's positions depend on how many prefix tokens are valid.
"""

from __future__ import annotations

import torch
from torch import Tensor


def apply_rope(x: Tensor, positions: Tensor, max_wavelength: float = 10_000.0) -> Tensor:
    """Rotate x (B, H, T, Dh) by angles positions (B, T) / max_wavelength**(2i/Dh).

    Computed in float32 and cast back, so a half-precision model keeps accurate angles.
    """
    head_dim = x.shape[-1]
    if head_dim % 2 != 0:
        raise ValueError(f"RoPE needs an even head dimension, got {head_dim}")
    half = head_dim // 2
    exponents = torch.arange(half, dtype=torch.float32, device=x.device) * (2.0 / head_dim)
    inv_timescale = max_wavelength ** (-exponents)  # (Dh/2,)
    angle = positions.to(torch.float32)[..., None] * inv_timescale  # (B, T, Dh/2)
    sin = torch.sin(angle)[:, None]  # (B, 1, T, Dh/2)
    cos = torch.cos(angle)[:, None]  # (B, 1, T, Dh/2)
    xf = x.to(torch.float32)
    x1, x2 = xf[..., :half], xf[..., half:]  # (B, H, T, Dh/2) each
    out = torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)  # (B, H, T, Dh)
    return out.to(x.dtype)
