"""How two predictions for the same future timestep become one action.

With asynchronous inference a new chunk arrives while the previous one still has actions
queued, so some timesteps have two predictions: an old one (made from an older observation,
already partly executed around it) and a new one (fresher, but possibly discontinuous with
what the arm is doing). The aggregate function decides the trade-off between reactivity and
smoothness. Names and weights follow LeRobot's async client (`aggregate_fn_name`), so a
LeRobot user's setting means the same thing here:

    weighted_average   0.3 * old + 0.7 * new    (LeRobot's default, used by NXP)
    latest_only        new                      (most reactive, jumps at chunk boundaries)
    average            0.5 * old + 0.5 * new
    conservative       0.7 * old + 0.3 * new    (smoothest, least reactive)
    temporal_ensemble  ACT's temporal ensembling (Zhao et al. 2023, Algorithm 2)

Temporal ensembling keeps a running weighted average over every chunk that covered a timestep,
with weights w_i = exp(-m * i) where i = 0 is the OLDEST prediction (m =
temporal_ensemble_coeff, 0.01 in the ACT paper: older predictions count slightly more, which
smooths; m = 0 is a plain mean; m < 0 favours newer ones). The pairwise functions above only
ever see the current queued value, so after three chunks "weighted_average" gives the newest
0.7, the middle 0.21 and the oldest 0.09; ensembling gives each its w_i / sum(w).

Every function has the signature `(old, new, n_old) -> merged` over K overlapping timesteps:
    old    float32 (K, D)  value in the queue (already an aggregate of n_old predictions)
    new    float32 (K, D)  the incoming chunk's prediction for the same timesteps
    n_old  int     (K,)    how many predictions `old` already combines (>= 1)
Only temporal ensembling uses n_old; it needs it to keep the running average exact.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

# (old (K, D), new (K, D), n_old (K,)) -> merged (K, D)
AggregateFn = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]

DEFAULT_TEMPORAL_ENSEMBLE_COEFF = 0.01


def _blend(old_weight: float) -> AggregateFn:
    """A fixed convex blend: old_weight * old + (1 - old_weight) * new."""
    new_weight = 1.0 - old_weight

    def blend(old: np.ndarray, new: np.ndarray, n_old: np.ndarray) -> np.ndarray:
        return (old_weight * old + new_weight * new).astype(np.float32)

    return blend


def latest_only(old: np.ndarray, new: np.ndarray, n_old: np.ndarray) -> np.ndarray:
    """Keep the newest prediction: most reactive, no smoothing across chunk boundaries."""
    return np.array(new, dtype=np.float32, copy=True)


def ensemble_weight_sum(n: np.ndarray | int, coeff: float) -> np.ndarray:
    """S(n) = sum_{i<n} exp(-coeff * i), the total weight of the n oldest predictions.

    Closed form (1 - e^{-m n}) / (1 - e^{-m}) via expm1 so a tiny m (0.01) stays accurate;
    m = 0 degenerates to S(n) = n. No cap on n: a timestep can be covered by any number of
    chunks when a new one is requested every tick.
    """
    n = np.asarray(n, dtype=np.float64)
    if coeff == 0.0:
        return n
    return np.expm1(-coeff * n) / math.expm1(-coeff)


def temporal_ensemble(coeff: float = DEFAULT_TEMPORAL_ENSEMBLE_COEFF) -> AggregateFn:
    """ACT's temporal ensembling as a running weighted average over all covering chunks.

    If `old` is the weighted mean of the n_old oldest predictions (weights w_0..w_{n_old-1}),
    then adding the new one with weight w_{n_old} = exp(-m * n_old) gives
        merged = (old * S(n_old) + new * w_{n_old}) / S(n_old + 1)
    which equals the full weighted mean without storing the history.
    """
    if not math.isfinite(coeff):
        raise ValueError(f"temporal_ensemble_coeff must be finite, got {coeff}")

    def ensemble(old: np.ndarray, new: np.ndarray, n_old: np.ndarray) -> np.ndarray:
        n = np.asarray(n_old, dtype=np.float64)  # (K,)
        s_old = ensemble_weight_sum(n, coeff)[:, None]  # (K, 1)
        w_new = np.exp(-coeff * n)[:, None]  # (K, 1)
        merged = (old * s_old + new * w_new) / (s_old + w_new)  # (K, D)
        return merged.astype(np.float32)

    return ensemble


# LeRobot's names (robot_client aggregate_fn_name) plus ACT's ensembling.
_FIXED: dict[str, AggregateFn] = {
    "weighted_average": _blend(0.3),
    "latest_only": latest_only,
    "average": _blend(0.5),
    "conservative": _blend(0.7),
}
AGGREGATE_FN_NAMES: tuple[str, ...] = (*_FIXED, "temporal_ensemble")


def get_aggregate_fn(
    name: str, temporal_ensemble_coeff: float = DEFAULT_TEMPORAL_ENSEMBLE_COEFF
) -> AggregateFn:
    """Look an aggregate function up by name; `temporal_ensemble_coeff` only affects ACT's."""
    if name == "temporal_ensemble":
        return temporal_ensemble(temporal_ensemble_coeff)
    if name in _FIXED:
        return _FIXED[name]
    raise ValueError(
        f"unknown aggregate_fn_name {name!r}; choose one of {', '.join(AGGREGATE_FN_NAMES)} "
        "(LeRobot's default is 'weighted_average')."
    )
