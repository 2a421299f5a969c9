"""What a training batch is: a function of (seed, step) alone, so a resumed run draws the
same batches, with the same augmentation, as one that was never interrupted."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from edgevla_runtime.features import IMAGE_KEY_PREFIX


def batch_indices(seed: int, step: int, batch_size: int, n: int) -> np.ndarray:
    """Sample indices of batch `step`: epochs are seeded permutations, concatenated."""
    start = step * batch_size
    out = []
    while len(out) < batch_size:
        epoch, offset = divmod(start + len(out), n)
        perm = np.random.default_rng([seed, epoch]).permutation(n)
        take = min(batch_size - len(out), n - offset)
        out.extend(perm[offset : offset + take])
    return np.asarray(out)


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack tensors; other values (the task strings a VLA tokenizes) become lists."""
    return {
        k: torch.stack([s[k] for s in samples])
        if isinstance(v, torch.Tensor)
        else [s[k] for s in samples]
        for k, v in samples[0].items()
    }


def augment(batch: dict[str, torch.Tensor], generator: torch.Generator, max_shift: int = 4) -> None:
    """In place: per-image random shift (replicate padding) and brightness/contrast jitter."""
    for key in [k for k in batch if k.startswith(IMAGE_KEY_PREFIX)]:
        x = batch[key]  # (B, 3, H, W) in [0, 1]
        b, _, h, w = x.shape
        padded = torch.nn.functional.pad(x, (max_shift,) * 4, mode="replicate")
        dx = torch.randint(0, 2 * max_shift + 1, (b,), generator=generator)
        dy = torch.randint(0, 2 * max_shift + 1, (b,), generator=generator)
        shifted = torch.stack(
            [padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(b)]
        )
        brightness = 1 + (torch.rand(b, 1, 1, 1, generator=generator) - 0.5) * 0.3
        contrast = 1 + (torch.rand(b, 1, 1, 1, generator=generator) - 0.5) * 0.3
        mean = shifted.mean(dim=(1, 2, 3), keepdim=True)
        batch[key] = ((shifted - mean) * contrast + mean * brightness).clamp_(0, 1)
