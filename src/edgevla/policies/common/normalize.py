"""Feature normalisation with LeRobot's modes and statistics layout.

LeRobot keeps normalisation outside the model (in its processors), with per-feature statistics
{mean, std, min, max} as stored in a dataset's meta/stats.json. Images are normalised per
channel after conversion to float in [0, 1] and (C, H, W) layout, so image stats have shape
(3, 1, 1); state and action stats have shape (D,).

We follow the same split: the policy's nn.Module sees normalised tensors, the Normalizer is a
separate module saved next to the weights. That keeps our parameter names identical to
LeRobot's and lets the exporter choose whether to bake normalisation into an ONNX stage.
`Stats` and its file I/O live in edgevla.dataset.stats (re-exported here).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import Tensor, nn

from edgevla.dataset.stats import Stats, load_stats, stats_from_json, stats_to_json
from edgevla.policies.common.contract import NormalizationMode

__all__ = [
    "EPS",
    "STAT_NAMES",
    "NormalizationMode",
    "Normalizer",
    "Stats",
    "load_stats",
    "stats_from_json",
    "stats_to_json",
]

EPS = 1e-8  # LeRobot's normalizer eps: (x - mean) / (std + eps)
STAT_NAMES = ("mean", "std", "min", "max")


def _buffer_name(feature: str, stat: str) -> str:
    # nn.Module buffer names may not contain dots.
    return f"{feature.replace('.', '__')}__{stat}"


class Normalizer(nn.Module):
    """Normalises (or un-normalises) the features named in `modes` using `stats`.

    stats: {feature: {"mean": (D,) or (3,1,1), "std": ..., "min": ..., "max": ...}}
    modes: {feature: NormalizationMode}; features missing from `modes` pass through untouched.
    Statistics live in buffers so they move with .to(device) and are saved in state_dict().
    """

    def __init__(self, stats: Stats, modes: Mapping[str, NormalizationMode | str]):
        super().__init__()
        self.modes = {k: NormalizationMode(v) for k, v in modes.items()}
        for feature, mode in self.modes.items():
            if mode is NormalizationMode.IDENTITY:
                continue
            if feature not in stats:
                raise KeyError(
                    f"no statistics for feature {feature!r} (have: {sorted(stats)}); "
                    "compute them from the dataset (meta/stats.json) or set its mode to IDENTITY"
                )
            needed = ("mean", "std") if mode is NormalizationMode.MEAN_STD else ("min", "max")
            for stat in needed:
                if stat not in stats[feature]:
                    raise KeyError(
                        f"statistics of {feature!r} lack {stat!r} needed by {mode.value}"
                    )
                value = torch.as_tensor(np.asarray(stats[feature][stat], dtype=np.float32))
                if not torch.isfinite(value).all():
                    raise ValueError(f"statistic {feature}/{stat} contains NaN or inf: {value}")
                self.register_buffer(_buffer_name(feature, stat), value)

    def _stat(self, feature: str, stat: str) -> Tensor:
        return getattr(self, _buffer_name(feature, stat))

    def normalize(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        out = dict(batch)
        for feature, mode in self.modes.items():
            if feature not in batch or mode is NormalizationMode.IDENTITY:
                continue
            x = batch[feature]
            if mode is NormalizationMode.MEAN_STD:
                out[feature] = (x - self._stat(feature, "mean")) / (
                    self._stat(feature, "std") + EPS
                )
            else:  # MIN_MAX to [-1, 1]
                lo, hi = self._stat(feature, "min"), self._stat(feature, "max")
                out[feature] = (x - lo) / (hi - lo + EPS) * 2.0 - 1.0
        return out

    def unnormalize(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        out = dict(batch)
        for feature, mode in self.modes.items():
            if feature not in batch or mode is NormalizationMode.IDENTITY:
                continue
            x = batch[feature]
            if mode is NormalizationMode.MEAN_STD:
                out[feature] = x * (self._stat(feature, "std") + EPS) + self._stat(feature, "mean")
            else:
                lo, hi = self._stat(feature, "min"), self._stat(feature, "max")
                out[feature] = (x + 1.0) / 2.0 * (hi - lo + EPS) + lo
        return out
