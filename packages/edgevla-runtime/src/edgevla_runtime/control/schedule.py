"""When to request the next chunk: sync, async with a fixed threshold, or auto; and the budget.

All schedules answer one question per control tick, before the tick's action is popped:
given `queue_size` actions queued (this tick's included) and whether a request is in flight,
send the current observation now? At most one request is in flight (a second would be computed
from an observation barely newer and would only add load on a CPU the model already saturates).

    sync    request when the queue is empty; the chunk is executed from its first row when it
            arrives (`anchor = "arrival"`): the arm holds still while the model runs.
    async   request when queue_size / chunk_len <= g (LeRobot's chunk_size_threshold); the
            chunk is anchored at its observation tick, rows already past are dropped.
    auto    request when the queued time queue_size / fps <= p95(latency) + margin. The p95 is
            over the last ~20 inferences (the first measurement seeds it). That is the latest
            request that still beats the queue running dry, i.e. the least stale chunk with
            T_inference < T_execution; a fixed g is either stale (too high) or starves (too low).

`check_budget` answers the design question before any run: does latency L fit a chunk C at
fps F with threshold g? See queue.py for the timing diagram behind the arithmetic.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import asdict, dataclass
from typing import Literal, Protocol

import numpy as np

from edgevla_runtime.control.clocks import latency_ticks
from edgevla_runtime.control.config import ControlConfig

_EPS = 1e-9
Anchor = Literal["request", "arrival"]


class Schedule(Protocol):
    """Decides, once per tick, whether to send the current observation for inference."""

    anchor: Anchor  # which tick a chunk's row 0 is for: its observation's or its arrival's

    @property
    def trigger_actions(self) -> float:
        """Queue size (actions) at or below which a request is sent; for traces and plots."""
        ...

    def should_request(self, queue_size: int, in_flight: bool) -> bool:
        """True to request a chunk now, from this tick's observation."""
        ...

    def observe_latency(self, latency_s: float) -> None:
        """Learn from a finished inference (only "auto" uses it)."""
        ...


class SyncSchedule:
    """Observe, infer, execute the chunk, repeat; the arm holds still while the model runs."""

    anchor: Anchor = "arrival"

    @property
    def trigger_actions(self) -> float:
        return 0.0

    def should_request(self, queue_size: int, in_flight: bool) -> bool:
        return queue_size == 0 and not in_flight

    def observe_latency(self, latency_s: float) -> None:
        return None


class ThresholdSchedule:
    """LeRobot's rule: request when queue_size / chunk_len <= threshold (g in [0, 1])."""

    anchor: Anchor = "request"

    def __init__(self, threshold: float, chunk_len: int) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}")
        if chunk_len < 1:
            raise ValueError(f"chunk_len must be >= 1, got {chunk_len}")
        self.threshold = threshold
        self.chunk_len = chunk_len

    @property
    def trigger_actions(self) -> float:
        return self.threshold * self.chunk_len

    def should_request(self, queue_size: int, in_flight: bool) -> bool:
        return not in_flight and queue_size / self.chunk_len <= self.threshold + _EPS

    def observe_latency(self, latency_s: float) -> None:
        return None


class AutoSchedule:
    """Request when the queued time falls to the running p95 latency plus a margin.

    Before the first measurement nothing is known, so it requests only on an empty queue
    (which is the first tick of an episode). `threshold` reports the equivalent fixed g.

    A chunk anchored at its observation tick loses the L ticks of latency when it lands, so in
    steady state each chunk supplies C - L actions and must cover the next L ticks: async can
    only keep the queue fed when C >= 2 L + margin (L = p95 latency in ticks, C = chunk
    length). Past that, every threshold starves the arm on fragments of stale chunks. Auto then falls back to synchronous
    execution (request on an empty queue, run the chunk from its arrival): the arm waits, but
    executes whole, coherent chunks. `fell_back` says whether it is in that regime.
    """

    def __init__(self, fps: float, chunk_len: int, margin_ticks: int = 2, window: int = 20) -> None:
        if fps <= 0 or chunk_len < 1 or margin_ticks < 0 or window < 1:
            raise ValueError(
                f"need fps > 0, chunk_len >= 1, margin_ticks >= 0, window >= 1; got fps={fps}, "
                f"chunk_len={chunk_len}, margin_ticks={margin_ticks}, window={window}"
            )
        self.fps = fps
        self.chunk_len = chunk_len
        self.margin_ticks = margin_ticks
        self._latencies: deque[float] = deque(maxlen=window)

    @property
    def p95_s(self) -> float | None:
        """Running p95 of the recent inference latencies (None before the first)."""
        if not self._latencies:
            return None
        return float(np.percentile(np.fromiter(self._latencies, dtype=np.float64), 95))

    @property
    def trigger_actions(self) -> float:
        """Queue size (actions) at or below which a request is sent: (p95 * fps) + margin."""
        p95 = self.p95_s
        if p95 is None:
            return 0.0
        return p95 * self.fps + self.margin_ticks

    @property
    def threshold(self) -> float:
        """The fixed chunk_size_threshold this currently amounts to (may exceed 1)."""
        return self.trigger_actions / self.chunk_len

    @property
    def fell_back(self) -> bool:
        """True while the measured latency rules out asynchronous execution (see class doc)."""
        return (
            self.p95_s is not None
            and self.trigger_actions + self.p95_s * self.fps > self.chunk_len + _EPS
        )

    @property
    def anchor(self) -> Anchor:  # type: ignore[override]
        return "arrival" if self.fell_back else "request"

    def should_request(self, queue_size: int, in_flight: bool) -> bool:
        if in_flight:
            return False
        if self.fell_back:
            return queue_size == 0
        return queue_size <= self.trigger_actions + _EPS

    def observe_latency(self, latency_s: float) -> None:
        self._latencies.append(float(latency_s))


def make_schedule(config: ControlConfig, chunk_len: int) -> Schedule:
    """The schedule a config asks for; chunk_len is the number of actions used per chunk."""
    if config.mode == "sync":
        return SyncSchedule()
    if config.chunk_size_threshold == "auto":
        return AutoSchedule(config.fps, chunk_len, config.auto_margin_ticks, config.auto_window)
    return ThresholdSchedule(float(config.chunk_size_threshold), chunk_len)


@dataclass(frozen=True)
class BudgetCheck:
    """Does an inference latency fit the execution horizon of an async schedule?

    t_execution_s = floor(threshold * chunk_size) / fps is the time the queue still covers when
    a request is sent; it fits when latency_s <= t_execution_s (the chunk arrives no later
    than the tick the queue would run dry). The suggestions are limits that make it fit with
    the other two knobs unchanged: min_threshold (None: no threshold in [0, 1] suffices),
    max_fps (None: no rate suffices; inf with zero latency) and min_chunk_size (None:
    threshold 0 leaves nothing queued, no chunk suffices).
    """

    latency_s: float
    fps: float
    chunk_size: int
    threshold: float
    latency_ticks: int
    actions_left_at_request: int
    t_execution_s: float
    margin_s: float
    fits: bool
    min_threshold: float | None
    max_fps: float | None
    min_chunk_size: int | None

    def to_dict(self) -> dict[str, float | int | bool | None]:
        """JSON-safe dict (an infinite max_fps becomes None)."""
        d = asdict(self)
        if d["max_fps"] is not None and not math.isfinite(d["max_fps"]):
            d["max_fps"] = None
        return d


def check_budget(latency_s: float, fps: float, chunk_size: int, threshold: float) -> BudgetCheck:
    """Check T_inference <= T_execution for an async schedule, and what would make it fit.

    The paper's case (chunk 100, 60 fps, threshold 0.2): T_execution = 20 / 60 = 0.333 s, so
    the optimised ACT (0.32 s) fits and the FP32 ONNX ACT (2.86 s) does not.
    """
    if not (math.isfinite(latency_s) and latency_s >= 0):
        raise ValueError(f"latency must be >= 0 seconds, got {latency_s}")
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be > 0, got {fps}")
    if chunk_size < 1:
        raise ValueError(f"chunk size must be >= 1 actions, got {chunk_size}")
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")

    k = latency_ticks(latency_s, fps)
    left = math.floor(threshold * chunk_size + _EPS)  # actions queued when the request goes
    t_execution_s = left / fps
    min_threshold = k / chunk_size if k <= chunk_size else None
    if latency_s == 0:
        max_fps: float | None = math.inf
    else:
        max_fps = left / latency_s if left > 0 else None
    if k == 0:
        min_chunk: int | None = 1
    elif threshold <= 0:
        min_chunk = None
    else:
        min_chunk = max(1, math.ceil(k / threshold - _EPS))
        while math.floor(threshold * min_chunk + _EPS) < k:  # float rounding at the edge
            min_chunk += 1
    return BudgetCheck(
        latency_s=latency_s,
        fps=fps,
        chunk_size=chunk_size,
        threshold=threshold,
        latency_ticks=k,
        actions_left_at_request=left,
        t_execution_s=t_execution_s,
        margin_s=t_execution_s - latency_s,
        fits=k <= left,
        min_threshold=min_threshold,
        max_fps=max_fps,
        min_chunk_size=min_chunk,
    )
