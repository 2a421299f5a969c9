"""Flow matching for action chunks, with pi0 / SmolVLA conventions.

Time runs from t = 1 (pure noise) to t = 0 (data). A training pair is the straight line between
an action chunk and a noise sample,

    x_t = t * noise + (1 - t) * actions,        target velocity u = dx_t/dt = noise - actions,

and sampling integrates dx/dt = v(x_t, t) from t = 1 down to t = 0 with Euler steps of -1/N.
Training times follow Beta(1.5, 1.0) * 0.999 + 0.001: skewed toward t = 1 (the noisy end, where
the velocity is hardest to guess) and never exactly 0.

Written once here so ACT-style or diffusion variants, the exporter and the board-side runtime all
use the same schedule; nothing in this module knows about a particular network.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

VelocityFn = Callable[[Tensor, Tensor], Tensor]


def sample_beta_time(
    batch_size: int,
    *,
    alpha: float = 1.5,
    beta: float = 1.0,
    scale: float = 0.999,
    offset: float = 0.001,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Draw training times t ~ Beta(alpha, beta) * scale + offset, shape (batch_size,).

    For beta == 1 (SmolVLA's case) the Beta CDF is x**alpha, so we sample by inverting it,
    t = U**(1/alpha), which honours `generator` and makes a seeded run reproducible.
    torch.distributions.Beta takes no generator, so other shapes fall back to it (global RNG).
    """
    if alpha <= 0 or beta <= 0:
        raise ValueError(f"Beta parameters must be positive, got alpha={alpha}, beta={beta}")
    if beta == 1.0:
        u = torch.rand(batch_size, generator=generator, device=device, dtype=torch.float32)
        t = u.pow(1.0 / alpha)
    else:
        dist = torch.distributions.Beta(torch.tensor(alpha), torch.tensor(beta))
        t = dist.sample((batch_size,)).to(device=device, dtype=torch.float32)
    return t * scale + offset


def noisy_actions_and_target(actions: Tensor, noise: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    """Point on the straight path at time t and the velocity that moves along it.

    actions, noise: (B, T, D); t: (B,). Returns x_t (B, T, D) and u = noise - actions (B, T, D).
    """
    if actions.shape != noise.shape:
        raise ValueError(f"actions {tuple(actions.shape)} and noise {tuple(noise.shape)} differ")
    t_ = t[:, None, None]  # (B, 1, 1)
    return t_ * noise + (1.0 - t_) * actions, noise - actions


def flow_matching_loss(velocity: Tensor, target: Tensor, is_pad: Tensor | None = None) -> Tensor:
    """Mean squared velocity error, with the steps past the episode end contributing zero.

    velocity, target: (B, T, D); is_pad: (B, T) bool, True where the chunk ran past the episode
    end (LeRobot's "action_is_pad"); such steps have no real target. As in LeRobot's SmolVLA (and
    our ACT), the mean runs over all B*T*D entries with padded ones zeroed rather than over the
    valid ones only, so loss values compare across the two codebases and every valid entry has
    the same weight whatever the padding in its batch.
    """
    se = (velocity - target).pow(2)  # (B, T, D)
    if is_pad is not None:
        se = se * (~is_pad.bool()).to(se.dtype)[..., None]  # (B, T, D)
    return se.mean()


def sinusoidal_time_embedding(t: Tensor, dim: int, min_period: float, max_period: float) -> Tensor:
    """Sine-cosine embedding of scalar times, shape (B,) -> (B, dim), [sin | cos] halves.

    Periods are spaced geometrically from min_period to max_period, so with SmolVLA's 4e-3..4.0 the
    embedding resolves both the coarse position in [0, 1] and small differences between nearby
    Euler steps. Computed in float64 (as SmolVLA does) because 2*pi/min_period * t reaches ~1.6e3
    radians, where float32 rounding would shift the phase by ~1e-4.
    """
    if dim % 2 != 0:
        raise ValueError(f"time embedding dimension must be even, got {dim}")
    if t.ndim != 1:
        raise ValueError(f"expected times of shape (B,), got {tuple(t.shape)}")
    fraction = torch.linspace(0.0, 1.0, dim // 2, dtype=torch.float64, device=t.device)
    period = min_period * (max_period / min_period) ** fraction  # (dim/2,)
    angle = t.to(torch.float64)[:, None] * (2.0 * math.pi / period)[None, :]  # (B, dim/2)
    return torch.cat([torch.sin(angle), torch.cos(angle)], dim=-1).to(t.dtype)  # (B, dim)


def euler_sample(velocity_fn: VelocityFn, noise: Tensor, num_steps: int) -> Tensor:
    """Integrate dx/dt = velocity_fn(x, t) from t = 1 (x = noise) to t = 0 with num_steps steps.

    velocity_fn(x (B, ...), t (B,)) -> (B, ...). Step k evaluates at t_k = 1 - k/num_steps; times
    are computed from k rather than accumulated, so the last step lands on t = 0 exactly.
    For a straight flow (a point-mass target) one step is already exact.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    dt = -1.0 / num_steps
    x = noise
    batch = noise.shape[0]
    for k in range(num_steps):
        t = torch.full((batch,), 1.0 - k / num_steps, dtype=noise.dtype, device=noise.device)
        x = x + dt * velocity_fn(x, t)
    return x
