"""Feature statistics in LeRobot's layout: per episode, then aggregated over episodes.

Each feature gets min, max, mean, std, count and quantiles q01, q10, q50, q90, q99. Vectors get
one value per dimension, shape (D,); scalars shape (1,); images one value per channel in [0, 1],
shape (3, 1, 1), so they broadcast over (3, H, W) tensors; count is (1,) in frames.

Where we compute differently from LeRobot (values legitimately differ a little, keys and shapes
do not):
- mean/std in float64 over all frames of the episode (LeRobot samples up to ~100 frames per
  episode for images and accumulates in float32, which shows as ~1e-3 relative error on std);
- quantiles are exact ("inverted CDF": the smallest value with at least q of the samples at or
  below it) where LeRobot interpolates in a 5000-bin histogram, so they agree within one bin;
- images: a 256-bin histogram per channel gives every statistic exactly and fast.
Aggregation over episodes follows LeRobot: count-weighted mean, pooled variance, min of mins,
max of maxes, and count-weighted average of quantiles (an approximation LeRobot also makes).

`Stats` (float32 arrays per feature and statistic) is what a policy's Normalizer takes. It is
stored two ways: meta/stats.json (nested lists, `load_stats` / `stats_to_json`) and a
safetensors file of flat "<feature>.<stat>" tensors (`write_stats_safetensors` /
`read_stats_safetensors`), the tensor layout of LeRobot's normalizer processor state
(policy_preprocessor_step_*_normalizer_processor.safetensors), e.g. "observation.state.mean"
(D,), "observation.images.top.std" (3, 1, 1). Safetensors keeps dtype and shape and loads
without parsing, and the same tensors serve our checkpoint file and LeRobot's processor files.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from edgevla.errors import BadInput
from edgevla.jsonio import read_json

QUANTILES: tuple[float, ...] = (0.01, 0.10, 0.50, 0.90, 0.99)
QUANTILE_KEYS: tuple[str, ...] = tuple(f"q{int(round(q * 100)):02d}" for q in QUANTILES)

FeatureStats = dict[str, np.ndarray]
Stats = dict[str, dict[str, np.ndarray]]  # {feature: {stat: float32 array}}, for normalisation


def vector_stats(x: np.ndarray) -> FeatureStats:
    """Stats of a per-frame feature: x is (T,) for scalars or (T, D) for vectors."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"expected (T,) or (T, D) with T >= 1, got shape {x.shape}")
    out: FeatureStats = {
        "min": x.min(axis=0),
        "max": x.max(axis=0),
        "mean": x.mean(axis=0),
        "std": x.std(axis=0),
        "count": np.array([len(x)], dtype=np.int64),
    }
    qs = np.quantile(x, QUANTILES, axis=0, method="inverted_cdf")
    for key, q in zip(QUANTILE_KEYS, qs, strict=True):
        out[key] = q
    return out


def image_stats(frames: np.ndarray) -> FeatureStats:
    """Per-channel stats of (T, H, W, 3) uint8 frames, scaled to [0, 1], shapes (3, 1, 1)."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected (T, H, W, 3) uint8 frames, got {frames.shape} {frames.dtype}")
    values = np.arange(256, dtype=np.float64)
    per_channel: dict[str, list[float]] = {
        k: [] for k in ("min", "max", "mean", "std", *QUANTILE_KEYS)
    }
    for c in range(3):
        hist = np.bincount(frames[..., c].ravel(), minlength=256).astype(np.float64)
        n = hist.sum()
        present = np.nonzero(hist)[0]
        mean = (hist * values).sum() / n
        per_channel["min"].append(present[0])
        per_channel["max"].append(present[-1])
        per_channel["mean"].append(mean)
        per_channel["std"].append(np.sqrt((hist * (values - mean) ** 2).sum() / n))
        cdf = np.cumsum(hist)
        for key, q in zip(QUANTILE_KEYS, QUANTILES, strict=True):
            # smallest value v with cdf(v) >= q * n (numpy's inverted_cdf); the tiny slack
            # absorbs float round-off of q * n.
            per_channel[key].append(np.searchsorted(cdf, q * n - 1e-9 * n, side="left"))
    out: FeatureStats = {
        k: (np.asarray(v, dtype=np.float64) / 255.0).reshape(3, 1, 1)
        for k, v in per_channel.items()
    }
    out["count"] = np.array([len(frames)], dtype=np.int64)
    return {k: out[k] for k in ("min", "max", "mean", "std", "count", *QUANTILE_KEYS)}


def aggregate(per_episode: Sequence[FeatureStats]) -> FeatureStats:
    """Combine one feature's stats over episodes (see the module docstring for the rules)."""
    if not per_episode:
        raise ValueError("no statistics to aggregate")
    counts = np.array([int(s["count"][0]) for s in per_episode], dtype=np.float64)
    total = counts.sum()
    means = np.stack([np.asarray(s["mean"], np.float64) for s in per_episode])
    w = counts.reshape(-1, *([1] * (means.ndim - 1)))
    mean = (means * w).sum(axis=0) / total
    variances = np.stack([np.asarray(s["std"], np.float64) ** 2 for s in per_episode])
    var = ((variances + (means - mean) ** 2) * w).sum(axis=0) / total
    out: FeatureStats = {
        "min": np.min(np.stack([s["min"] for s in per_episode]), axis=0).astype(np.float64),
        "max": np.max(np.stack([s["max"] for s in per_episode]), axis=0).astype(np.float64),
        "mean": mean,
        "std": np.sqrt(var),
        "count": np.array([int(total)], dtype=np.int64),
    }
    for key in QUANTILE_KEYS:
        if all(key in s for s in per_episode):
            q = np.stack([np.asarray(s[key], np.float64) for s in per_episode])
            out[key] = (q * w).sum(axis=0) / total
    return out


def aggregate_all(per_episode: Sequence[Mapping[str, FeatureStats]]) -> dict[str, FeatureStats]:
    """Aggregate {feature: stats} dicts of several episodes (or datasets), feature by feature."""
    keys: list[str] = []
    for ep in per_episode:
        keys += [k for k in ep if k not in keys]
    return {k: aggregate([ep[k] for ep in per_episode if k in ep]) for k in keys}


def to_json(stats: Mapping[str, FeatureStats]) -> dict[str, dict[str, Any]]:
    """meta/stats.json content: nested lists, ints for count."""
    return {f: {k: np.asarray(v).tolist() for k, v in s.items()} for f, s in stats.items()}


def from_json(obj: Mapping[str, Mapping[str, Any]]) -> dict[str, FeatureStats]:
    """Inverse of to_json (float64; count int64)."""
    return {
        f: {k: np.asarray(v, dtype=np.int64 if k == "count" else np.float64) for k, v in s.items()}
        for f, s in obj.items()
    }


def stats_from_json(obj: Mapping[str, Mapping[str, Any]]) -> Stats:
    """A meta/stats.json-style mapping (lists) as float32 arrays (count and quantiles too)."""
    out: Stats = {}
    for feature, per_stat in obj.items():
        if not isinstance(per_stat, Mapping):
            raise BadInput(
                f"statistics of {feature!r} should be an object of named values, "
                f"found {type(per_stat).__name__}",
                field=feature,
            )
        try:
            out[feature] = {
                name: np.asarray(value, dtype=np.float32) for name, value in per_stat.items()
            }
        except (TypeError, ValueError) as e:
            raise BadInput(f"statistics of {feature!r} are not numbers ({e})", field=feature) from e
    return out


def stats_to_json(stats: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, list]]:
    return {f: {k: np.asarray(v).tolist() for k, v in s.items()} for f, s in stats.items()}


def load_stats(path: str | Path) -> Stats:
    """Read a stats.json file (LeRobot meta/stats.json layout) as float32 `Stats`."""
    obj = read_json(path, "normalisation statistics", fix="re-create it from the dataset")
    try:
        return stats_from_json(obj)
    except BadInput as e:
        raise BadInput(str(e), path=path, field=e.field) from None


def write_stats_safetensors(path: str | Path, stats: Mapping[str, Mapping[str, Any]]) -> Path:
    """Write stats as flat "<feature>.<stat>" float32 tensors (LeRobot normalizer layout)."""
    flat = {
        f"{feature}.{stat}": np.ascontiguousarray(np.asarray(value, dtype=np.float32))
        for feature, per_stat in stats.items()
        for stat, value in per_stat.items()
    }
    save_file(flat, str(path), metadata={"format": "pt", "content": "normalization_stats"})
    return Path(path)


def read_stats_safetensors(path: str | Path, what: str = "normalisation statistics") -> Stats:
    """Inverse of write_stats_safetensors; BadInput naming the file for a missing, truncated or
    garbage file, or a key that is not "<feature>.<stat>"."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"{what} not found", path=path)
    try:
        flat = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise BadInput(
            f"{what} is not a readable safetensors file ({e}); was it written completely?",
            path=path,
        ) from e
    stats: Stats = {}
    for key, array in flat.items():
        feature, _, stat = key.rpartition(".")
        if not feature or not stat:
            raise BadInput(f"key {key!r} is not '<feature>.<stat>'", path=path, field=key)
        if not np.issubdtype(array.dtype, np.number):
            raise BadInput(f"{key} has dtype {array.dtype}, not a number", path=path, field=key)
        stats.setdefault(feature, {})[stat] = array.astype(np.float32, copy=False)
    return stats
