"""ActionQueue: absolute-timestep bookkeeping, dropping executed steps, exact merged sequences."""

from __future__ import annotations

import numpy as np
import pytest
from edgevla_runtime.control.aggregation import get_aggregate_fn
from edgevla_runtime.control.queue import ActionQueue, MergeReport

LATEST = get_aggregate_fn("latest_only")


def chunk(base: float, rows: int, dim: int = 1) -> np.ndarray:
    """(rows, dim) with row i = base + i."""
    return np.repeat((base + np.arange(rows, dtype=np.float32))[:, None], dim, axis=1)


def test_pop_in_order_then_empty() -> None:
    q = ActionQueue(action_dim=2)
    assert q.merge(chunk(100, 3, 2), 0, LATEST) == MergeReport(0, 0, 3)
    assert len(q) == 3
    assert [q.pop(t)[0] for t in range(3)] == [100, 101, 102]
    assert q.pop(3) is None
    assert len(q) == 0 and q.last_executed == 3


def test_pop_returns_copy_of_float32_row() -> None:
    q = ActionQueue(action_dim=2)
    q.merge(chunk(5, 2, 2), 0, LATEST)
    a = q.pop(0)
    assert a.dtype == np.float32 and a.shape == (2,)
    a[:] = -1
    assert q.pop(1)[0] == 6


def test_merge_drops_executed_timesteps() -> None:
    q = ActionQueue(action_dim=1)
    for t in range(5):  # ticks 0..4 executed with an empty queue (underrun)
        assert q.pop(t) is None
    report = q.merge(chunk(200, 6), start_timestep=2, aggregate=LATEST)  # ticks 2..7
    assert report == MergeReport(dropped=3, aggregated=0, appended=3)
    np.testing.assert_array_equal(q.timesteps, [5, 6, 7])
    assert [q.pop(t)[0] for t in (5, 6, 7)] == [203, 204, 205]


def test_merge_of_fully_stale_chunk_is_noop() -> None:
    q = ActionQueue(action_dim=1)
    for t in range(10):
        q.pop(t)
    assert q.merge(chunk(0, 4), 3, LATEST) == MergeReport(4, 0, 0)
    assert len(q) == 0


def test_skipped_ticks_are_never_replayed() -> None:
    q = ActionQueue(action_dim=1)
    q.merge(chunk(100, 5), 0, LATEST)
    assert q.pop(0)[0] == 100
    assert q.pop(3)[0] == 103  # ticks 1 and 2 were skipped: their actions are stale
    assert q.pop(4)[0] == 104
    assert q.pop(5) is None


def test_pop_must_move_forward() -> None:
    q = ActionQueue(action_dim=1)
    q.pop(3)
    with pytest.raises(ValueError, match="must increase"):
        q.pop(3)


def test_gap_is_refused() -> None:
    q = ActionQueue(action_dim=1)
    q.merge(chunk(100, 5), 0, LATEST)  # ticks 0..4
    with pytest.raises(ValueError, match="gap"):
        q.merge(chunk(200, 3), 7, LATEST)


def test_wrong_width_is_refused() -> None:
    q = ActionQueue(action_dim=6)
    with pytest.raises(ValueError, match="action_dim=6"):
        q.merge(np.zeros((4, 5), np.float32), 0, LATEST)


# Old chunk A: ticks 0..9 = 100..109. Ticks 0..4 execute. New chunk B (observation of tick 3,
# arrived at tick 5): ticks 3..12 = 200..209. Expected actions for ticks 5..12:
#   ticks 5..9  aggregate(A[t], B[t - 3])   ticks 10..12  B[t - 3] (appended)
BLENDS = {"weighted_average": 0.3, "latest_only": 0.0, "average": 0.5, "conservative": 0.7}


@pytest.mark.parametrize("name", sorted(BLENDS))
def test_exact_merged_sequence(name: str) -> None:
    q = ActionQueue(action_dim=1)
    q.merge(chunk(100, 10), 0, LATEST)
    for t in range(5):
        q.pop(t)
    report = q.merge(chunk(200, 10), 3, get_aggregate_fn(name))
    assert report == MergeReport(dropped=2, aggregated=5, appended=3)
    w = BLENDS[name]
    expected = [w * (100 + t) + (1 - w) * (200 + t - 3) for t in range(5, 10)]
    expected += [200 + t - 3 for t in range(10, 13)]
    got = [float(q.pop(t)[0]) for t in range(5, 13)]
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert q.pop(13) is None


def test_weighted_average_literal_values() -> None:
    q = ActionQueue(action_dim=1)
    q.merge(chunk(100, 10), 0, LATEST)
    for t in range(5):
        q.pop(t)
    q.merge(chunk(200, 10), 3, get_aggregate_fn("weighted_average"))
    # tick 5: 0.3 * 105 + 0.7 * 202 = 31.5 + 141.4
    assert q.pop(5)[0] == pytest.approx(172.9, rel=1e-6)


def test_counts_track_predictions_per_timestep() -> None:
    q = ActionQueue(action_dim=1)
    q.merge(chunk(0, 4), 0, LATEST)  # ticks 0..3
    q.merge(chunk(0, 4), 2, LATEST)  # ticks 2..5
    np.testing.assert_array_equal(q.timesteps, np.arange(6))
    np.testing.assert_array_equal(q.counts, [1, 1, 2, 2, 1, 1])


def test_chunk_may_start_before_queue() -> None:
    # A chunk anchored earlier than the queued range extends it backwards (ticks not executed).
    q = ActionQueue(action_dim=1)
    q.merge(chunk(100, 2), 3, LATEST)  # ticks 3, 4
    q.merge(chunk(200, 3), 1, LATEST)  # ticks 1..3
    assert [float(q.pop(t)[0]) for t in range(1, 5)] == [200, 201, 202, 101]
