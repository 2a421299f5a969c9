"""An exponential moving average (EMA) of a policy's weights, the model a checkpoint saves when
`edgevla train --ema-decay D` is given.

Why: at batch size 8 the weights a step leaves behind carry that step's noise, and the
closed-loop success of neighbouring checkpoints jumps (ACT edge, one run: 0.97 / 0.40 / 0.87
at steps 6000 / 7000 / 7577), so choosing a checkpoint becomes a lottery. Averaging the weights
over the last ~1/(1 - D) steps (Polyak averaging, as Diffusion Policy does for its denoiser)
removes most of that noise at no training cost. LeRobot's ACT and SmolVLA recipes have no EMA,
so it is off by default.

The average starts equal to the initial weights and uses decay min(D, (1 + k) / (10 + k)) at
its k-th update, so the early, fast-moving weights are not averaged in for thousands of steps.
Buffers (ACT's frozen batch-norm statistics) are copied, not averaged.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class WeightAverage:
    """model: a frozen copy of the policy holding the averaged weights (eval mode)."""

    def __init__(self, policy: nn.Module, decay: float, updates: int = 0) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema decay {decay} must be in (0, 1), e.g. 0.999 (about 1000 steps)")
        self.decay = decay
        self.updates = updates
        self.model = copy.deepcopy(policy).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, policy: nn.Module) -> None:
        """Fold the policy's current weights in: avg += (1 - d) * (w - avg)."""
        d = self.current_decay()
        averaged = list(self.model.parameters())
        current = [p.detach() for p in policy.parameters()]
        if len(averaged) != len(current):
            raise ValueError("the policy's parameters no longer match the averaged copy")
        torch._foreach_lerp_(averaged, current, 1.0 - d)
        for b_avg, b in zip(self.model.buffers(), policy.buffers(), strict=True):
            b_avg.copy_(b)
        self.updates += 1
