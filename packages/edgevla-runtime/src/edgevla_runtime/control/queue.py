"""The action queue: future actions keyed by absolute control tick, and how chunks merge into it.

Every action carries the absolute timestep (control tick) it is meant for, so a chunk that
arrives late lines up with the queue by arithmetic, not by position: its first rows belong to
ticks that are already past and are dropped, the rows that overlap queued actions are merged
by an aggregate function (`aggregation.py`), the rest are appended.

Timing of asynchronous requests (chunk C = 10 actions, threshold g = 0.5, inference k = 3
ticks; `o` observation sent, `=` inference running, `A`/`B` rows of the old/new chunk, `m` a
tick where both predict and `aggregate(A, B)` runs, `-` a row of B dropped as already past):

    tick               5   6   7   8   9  10  11  12  13
    queue at tick      5   4   3   7   6   5   4   3   7     (size before this tick's pop)
    observation        o                   o                 sent when q / C <= g, none in flight
    inference          [=========]         [=========]       k = ceil(latency * fps) ticks
    chunk B (from o5)  -   -   -   m   m   B   B   B   m     row i is for tick 5 + i
    executed           A   A   A   m   m   B   B   B   m

    observation horizon: one observation per chunk; B's first executed row (tick 8) was
                         predicted from the tick-5 observation, i.e. k ticks stale
    execution horizon:   T_execution = floor(g * C) / fps   (what is queued at the request)
    inference time:      T_inference = k / fps
    no underrun:         k <= floor(g * C)  <=>  T_inference <= T_execution

A chunk arriving at tick t + k is merged at the start of that tick, before the tick's pop, so
equality still fits. When it does not fit the queue runs dry for k - floor(g * C) ticks: the
loop holds the last commanded position (never replays an old action) and counts an underrun.

Sync mode is the special case where the arm stops while the model runs: the queue is empty at
the request and the chunk is anchored at its arrival tick instead of its observation tick, so
row 0 is executed first (the arm did not move, so the observation is still current).

Differences from LeRobot's robot client, on purpose: the threshold is checked before the tick's
pop (so q counts the action about to run), row 0 of a chunk is the action for the observation's
own tick, and queued actions the new chunk does not cover are kept rather than discarded.

Storage: the queued actions always cover contiguous ticks, kept as one (n, D) float32 array
plus a per-row count of how many predictions it combines (temporal ensembling needs it).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from edgevla_runtime.control.aggregation import AggregateFn


class MergeReport(NamedTuple):
    """What a merge did with the chunk's rows (dropped + aggregated + appended = rows)."""

    dropped: int  # rows for ticks already executed
    aggregated: int  # rows merged with a queued action for the same tick
    appended: int  # rows for ticks the queue did not cover


class ActionQueue:
    """Future actions keyed by absolute timestep; see the module docstring for the timing.

    `pop(t)` is called once per control tick with increasing t; it marks t as executed whether
    or not an action was queued for it, so nothing for a past tick is ever returned later.
    """

    def __init__(self, action_dim: int) -> None:
        if action_dim < 1:
            raise ValueError(f"action_dim must be >= 1, got {action_dim}")
        self.action_dim = action_dim
        self._first = 0  # timestep of _actions[0]
        self._actions = np.zeros((0, action_dim), dtype=np.float32)  # (n, D)
        self._counts = np.zeros((0,), dtype=np.int64)  # (n,) predictions combined per row
        self._last_executed = -1

    def __len__(self) -> int:
        return int(self._actions.shape[0])

    @property
    def last_executed(self) -> int:
        """The latest timestep passed to `pop` (-1 before the first tick)."""
        return self._last_executed

    @property
    def timesteps(self) -> np.ndarray:
        """Timesteps currently queued, int64 (n,)."""
        return np.arange(self._first, self._first + len(self), dtype=np.int64)

    @property
    def actions(self) -> np.ndarray:
        """Copy of the queued actions, float32 (n, D), row i for timesteps[i]."""
        return self._actions.copy()

    @property
    def counts(self) -> np.ndarray:
        """Copy of how many predictions each queued action combines, int64 (n,)."""
        return self._counts.copy()

    def clear(self) -> None:
        """Forget every queued action (the executed-tick mark stays)."""
        self._actions = self._actions[:0]
        self._counts = self._counts[:0]

    def pop(self, timestep: int) -> np.ndarray | None:
        """Return the action for `timestep` (float32 (D,)) or None if none is queued.

        Actions for earlier timesteps still queued are discarded: they are stale and replaying
        them would move the arm back along a path it has already left.
        """
        if timestep <= self._last_executed:
            raise ValueError(
                f"pop({timestep}) after timestep {self._last_executed} was executed; control "
                "ticks must increase by at least one per call."
            )
        self._last_executed = timestep
        self._drop_before(timestep)
        if len(self) == 0 or self._first != timestep:
            return None
        action = self._actions[0].copy()
        self._drop_before(timestep + 1)
        return action

    def merge(self, chunk: np.ndarray, start_timestep: int, aggregate: AggregateFn) -> MergeReport:
        """Merge a chunk whose row i is the action for timestep start_timestep + i.

        Rows for timesteps already executed are dropped, rows whose timestep is queued are
        combined with `aggregate(old, new, n_old)`, the rest are added. The result must cover
        contiguous timesteps: a chunk that would leave a hole is refused, because the loop
        never produces one (chunks start at or before the next tick) and a hole would mean a
        bookkeeping bug upstream.
        """
        chunk = np.asarray(chunk, dtype=np.float32)  # (C, D)
        if chunk.ndim != 2 or chunk.shape[1] != self.action_dim:
            raise ValueError(
                f"chunk has shape {chunk.shape}; expected (rows, action_dim={self.action_dim})"
            )
        keep_from = max(start_timestep, self._last_executed + 1)
        dropped = min(keep_from - start_timestep, chunk.shape[0])
        new = chunk[dropped:]  # (C', D) for timesteps keep_from ...
        if new.shape[0] == 0:
            return MergeReport(dropped=dropped, aggregated=0, appended=0)
        new_first, new_end = keep_from, keep_from + new.shape[0]  # [first, end)
        if len(self) == 0:
            self._first = new_first
            self._actions = new.copy()
            self._counts = np.ones(new.shape[0], dtype=np.int64)
            return MergeReport(dropped=dropped, aggregated=0, appended=new.shape[0])

        old_first, old_end = self._first, self._first + len(self)
        if new_first > old_end or new_end < old_first:
            raise ValueError(
                f"merging timesteps {new_first}..{new_end - 1} into a queue holding "
                f"{old_first}..{old_end - 1} would leave a gap without actions; chunks must "
                "start at or before the tick after the last queued one."
            )
        first, end = min(old_first, new_first), max(old_end, new_end)
        actions = np.zeros((end - first, self.action_dim), dtype=np.float32)  # (n, D)
        counts = np.zeros(end - first, dtype=np.int64)  # (n,)
        actions[old_first - first : old_end - first] = self._actions
        counts[old_first - first : old_end - first] = self._counts

        rows = slice(new_first - first, new_end - first)
        region_counts = counts[rows]  # (C',)
        overlap = region_counts > 0  # (C',) bool
        region = actions[rows]  # (C', D) view
        if overlap.any():
            region[overlap] = aggregate(region[overlap], new[overlap], region_counts[overlap])
        region[~overlap] = new[~overlap]
        counts[rows] = region_counts + 1

        self._first, self._actions, self._counts = first, actions, counts
        n_overlap = int(overlap.sum())
        return MergeReport(dropped=dropped, aggregated=n_overlap, appended=new.shape[0] - n_overlap)

    def _drop_before(self, timestep: int) -> None:
        """Discard queued rows for timesteps < timestep (views, no copy)."""
        n = min(max(timestep - self._first, 0), len(self))
        if n:
            self._actions = self._actions[n:]
            self._counts = self._counts[n:]
            self._first += n
