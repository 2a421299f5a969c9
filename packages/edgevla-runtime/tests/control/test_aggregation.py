"""Aggregate functions: LeRobot's fixed blends and ACT's temporal ensembling, exact values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from edgevla_runtime.control.aggregation import (
    AGGREGATE_FN_NAMES,
    ensemble_weight_sum,
    get_aggregate_fn,
)
from edgevla_runtime.control.queue import ActionQueue

OLD = np.array([[1.0, 10.0], [2.0, 20.0]], dtype=np.float32)  # (K=2, D=2)
NEW = np.array([[3.0, 30.0], [4.0, 40.0]], dtype=np.float32)
ONE = np.ones(2, dtype=np.int64)


@pytest.mark.parametrize(
    ("name", "old_weight"),
    [("weighted_average", 0.3), ("latest_only", 0.0), ("average", 0.5), ("conservative", 0.7)],
)
def test_fixed_blends_match_lerobot_weights(name: str, old_weight: float) -> None:
    out = get_aggregate_fn(name)(OLD, NEW, ONE)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, old_weight * OLD + (1 - old_weight) * NEW, rtol=1e-6)


def test_weighted_average_exact_value() -> None:
    out = get_aggregate_fn("weighted_average")(OLD[:1], NEW[:1], ONE[:1])
    np.testing.assert_allclose(out, [[0.3 * 1 + 0.7 * 3, 0.3 * 10 + 0.7 * 30]], rtol=1e-6)


def test_unknown_name_lists_choices() -> None:
    with pytest.raises(ValueError, match="weighted_average") as info:
        get_aggregate_fn("median")
    assert "temporal_ensemble" in str(info.value)
    assert set(AGGREGATE_FN_NAMES) == {
        "weighted_average",
        "latest_only",
        "average",
        "conservative",
        "temporal_ensemble",
    }


def test_weight_sum_closed_form() -> None:
    m = 0.01
    for n in range(6):
        assert ensemble_weight_sum(n, m) == pytest.approx(sum(math.exp(-m * i) for i in range(n)))
    np.testing.assert_allclose(ensemble_weight_sum(np.arange(4), 0.0), [0, 1, 2, 3])


@pytest.mark.parametrize("m", [math.log(2.0), 0.01, 0.0, -0.5])
def test_temporal_ensemble_is_weighted_mean_oldest_first(m: float) -> None:
    # Three chunks cover timestep 2; predictions in arrival order (oldest first): 0, 100, 200.
    q = ActionQueue(action_dim=1)
    agg = get_aggregate_fn("temporal_ensemble", temporal_ensemble_coeff=m)
    for k, value in enumerate([0.0, 100.0, 200.0]):
        q.merge(np.full((3, 1), value, dtype=np.float32), start_timestep=k, aggregate=agg)
    w = np.exp(-m * np.arange(3))  # w_0 for the oldest
    expected = float(np.dot(w, [0.0, 100.0, 200.0]) / w.sum())
    assert q.pop(0)[0] == pytest.approx(0.0)
    assert q.pop(1)[0] == pytest.approx(float(np.dot(w[:2], [0, 100]) / w[:2].sum()), rel=1e-6)
    assert q.pop(2)[0] == pytest.approx(expected, rel=1e-6)


def test_temporal_ensemble_ln2_exact() -> None:
    # w = 1, 1/2, 1/4: (0 * 1 + 100 / 2 + 200 / 4) / 1.75 = 57.142857...
    agg = get_aggregate_fn("temporal_ensemble", temporal_ensemble_coeff=math.log(2.0))
    q = ActionQueue(action_dim=1)
    for k, value in enumerate([0.0, 100.0, 200.0]):
        q.merge(np.full((3 - k, 1), value, dtype=np.float32), start_timestep=k, aggregate=agg)
    q.pop(0)
    q.pop(1)
    assert q.pop(2)[0] == pytest.approx(100.0 / 1.75, rel=1e-6)
