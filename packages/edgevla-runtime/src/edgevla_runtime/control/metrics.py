"""What one episode of control measured, and a plot of the queue over time.

Definitions (ticks are control ticks at the configured fps):
    idle_fraction        ticks without a fresh queued action / all ticks. In sync mode these are
                         the ticks the arm waits for the model; in async mode the warm-up before
                         the first chunk plus underruns.
    idle_fraction_running  the same after the first fresh action (startup_ticks before it): the
                         wait for the very first chunk is the same in every mode, so this is the
                         figure that compares schedules. 1.0 when no fresh action was ever
                         executed (every chunk arrived stale: latency longer than a chunk).
    underruns            times an async queue ran dry after the first chunk arrived (each run of
                         consecutive starved ticks counts once; underrun_ticks counts the ticks).
    effective_control_hz fresh actions executed per second of episode time.
    boundary_accel_max   largest |joint acceleration| (rad/s^2) at chunk boundaries: second finite
                         difference of the executed command sequence, (a[t+1] - 2a[t] + a[t-1])
                         * fps^2, at the ticks where a merged chunk takes over or a hold starts
                         or ends. This is where async jerks (and where aggregation should help).
    latency_*            over the inferences that finished in the episode (virtual latency under
                         the VirtualClock, wall time under the RealTimeClock).

Plain numpy (the board runs this); the queue plot is drawn by edgevla.eval.report.plot_queue_size.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

_TRACES = ("queue_sizes", "request_ticks", "arrival_ticks", "latencies_s", "trigger_sizes")


@dataclass
class EpisodeResult:
    """One episode's outcome and timing; `to_dict(traces=False)` gives the table row."""

    success: bool
    completion_time_s: float | None  # when the final success streak began; None if failed
    duration_s: float
    ticks: int
    fps: float
    idle_ticks: int
    idle_fraction: float
    startup_ticks: int
    idle_fraction_running: float
    underruns: int
    underrun_ticks: int
    inference_count: int
    latency_p50_s: float
    latency_p95_s: float
    latency_max_s: float
    effective_control_hz: float
    boundary_accel_max: float  # rad/s^2
    max_accel: float  # rad/s^2 over the whole episode, for comparison
    error: str | None = None
    queue_sizes: list[int] = field(default_factory=list)  # per tick, before the tick's pop
    request_ticks: list[int] = field(default_factory=list)
    arrival_ticks: list[int] = field(default_factory=list)
    latencies_s: list[float] = field(default_factory=list)
    trigger_sizes: list[float] = field(default_factory=list)  # request threshold, in actions
    faults: int = 0  # inference faults the loop held through (on_fault="hold")
    fault_ticks: int = 0  # ticks spent holding because of a fault
    fault_messages: list[str] = field(default_factory=list)  # the first few, for the report
    tick_jitter_p50_s: float | None = None  # real time only: how late ticks started
    tick_jitter_p99_s: float | None = None
    deadline_misses: int = 0  # real time only: ticks that started over one period late

    def to_dict(self, traces: bool = False) -> dict[str, object]:
        """JSON-safe dict; NaN becomes None; the per-tick traces only when asked."""
        d = asdict(self)
        if not traces:
            for key in _TRACES:
                d.pop(key)
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in d.items()}


class EpisodeRecorder:
    """Collects per-tick facts during `run_episode` and turns them into an EpisodeResult."""

    def __init__(self, fps: float) -> None:
        self.fps = fps
        self._actions: list[np.ndarray] = []  # executed commands, each (D,)
        self._fresh: list[bool] = []
        self._boundary: list[bool] = []
        self._underrun: list[bool] = []
        self.queue_sizes: list[int] = []
        self.trigger_sizes: list[float] = []
        self.request_ticks: list[int] = []
        self.arrival_ticks: list[int] = []
        self.latencies_s: list[float] = []
        self.faults = 0
        self.fault_ticks = 0
        self.fault_messages: list[str] = []

    def record_fault(self, message: str) -> None:
        self.faults += 1
        if len(self.fault_messages) < 5:
            self.fault_messages.append(message)

    def record_request(self, tick: int) -> None:
        self.request_ticks.append(tick)

    def record_arrival(self, tick: int, latency_s: float) -> None:
        self.arrival_ticks.append(tick)
        self.latencies_s.append(latency_s)

    def record_tick(
        self,
        queue_size: int,
        action: np.ndarray,
        fresh: bool,
        merged: bool,
        underrun: bool,
        trigger_size: float = math.nan,
    ) -> None:
        """One control tick: queue size before the pop, the command sent, and its origin."""
        prev_fresh = self._fresh[-1] if self._fresh else fresh
        self.queue_sizes.append(queue_size)
        self.trigger_sizes.append(trigger_size)
        self._actions.append(np.array(action, dtype=np.float32, copy=True))
        self._fresh.append(fresh)
        self._boundary.append((merged and fresh) or fresh != prev_fresh)
        self._underrun.append(underrun)

    def finish(
        self,
        success: bool,
        duration_s: float,
        completion_time_s: float | None = None,
        error: str | None = None,
        lateness_s: list[float] | None = None,
        deadline_misses: int = 0,
    ) -> EpisodeResult:
        ticks = len(self._actions)
        jitter = np.asarray(lateness_s or [], dtype=np.float64)
        fresh_ticks = sum(self._fresh)
        startup = next((i for i, f in enumerate(self._fresh) if f), ticks)
        running = ticks - startup
        underrun_ticks = sum(self._underrun)
        underruns = sum(
            1 for i, u in enumerate(self._underrun) if u and (i == 0 or not self._underrun[i - 1])
        )
        lat = np.asarray(self.latencies_s, dtype=np.float64)
        if lat.size:
            p50, p95, lmax = (float(np.percentile(lat, q)) for q in (50, 95, 100))
        else:
            p50 = p95 = lmax = math.nan
        boundary_accel, max_accel = self._accelerations()
        return EpisodeResult(
            success=success,
            completion_time_s=completion_time_s if success else None,
            duration_s=duration_s,
            ticks=ticks,
            fps=self.fps,
            idle_ticks=ticks - fresh_ticks,
            idle_fraction=(ticks - fresh_ticks) / ticks if ticks else 0.0,
            startup_ticks=startup,
            idle_fraction_running=(running - fresh_ticks) / running
            if running
            else float(ticks > 0),
            underruns=underruns,
            underrun_ticks=underrun_ticks,
            inference_count=len(self.latencies_s),
            latency_p50_s=p50,
            latency_p95_s=p95,
            latency_max_s=lmax,
            effective_control_hz=fresh_ticks / duration_s if duration_s > 0 else 0.0,
            boundary_accel_max=boundary_accel,
            max_accel=max_accel,
            error=error,
            queue_sizes=list(self.queue_sizes),
            request_ticks=list(self.request_ticks),
            arrival_ticks=list(self.arrival_ticks),
            latencies_s=list(self.latencies_s),
            trigger_sizes=list(self.trigger_sizes),
            faults=self.faults,
            fault_ticks=self.fault_ticks,
            fault_messages=list(self.fault_messages),
            tick_jitter_p50_s=float(np.percentile(jitter, 50)) if jitter.size else None,
            tick_jitter_p99_s=float(np.percentile(jitter, 99)) if jitter.size else None,
            deadline_misses=deadline_misses,
        )

    def _accelerations(self) -> tuple[float, float]:
        """(max |accel| at chunk boundaries, max |accel| overall), rad/s^2."""
        if len(self._actions) < 3:
            return 0.0, 0.0
        a = np.stack(self._actions).astype(np.float64)  # (T, D)
        acc = np.abs(a[2:] - 2.0 * a[1:-1] + a[:-2]) * self.fps**2  # (T-2, D), centred on 1..T-2
        per_tick = np.zeros(len(a))  # (T,) max over joints; 0 at the two ends
        per_tick[1:-1] = acc.max(axis=1)
        boundary = np.flatnonzero(self._boundary)
        # A switch between ticks b-1 and b shows in the accelerations centred on both.
        around = np.unique(np.concatenate([boundary - 1, boundary]))
        around = around[(around >= 1) & (around <= len(a) - 2)]
        boundary_max = float(per_tick[around].max()) if around.size else 0.0
        return boundary_max, float(per_tick.max())
