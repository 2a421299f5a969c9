"""Clocks: how time passes and when an inference result becomes available to the loop.

The control loop (`loop.py`) is written once against the `Clock` protocol; the clock decides
what a tick means and how long an inference takes.

VirtualClock (simulation, deterministic):
    One environment step per control tick at `fps`; the simulation never waits. An inference
    runs to completion immediately (wall time irrelevant) but "takes" a virtual latency L, from
    a `LatencySpec`: the runner's measured wall time, a fixed figure, or a seeded distribution.
    Requested at tick t with the observation of tick t, its result becomes available at tick
    t + ceil(L * fps), so the chunk is as stale as it would be on the board. This is how a
    2.86 s board latency is reproduced on a fast workstation, and how the same episode replays.

RealTimeClock (hardware, or a sim stepped in wall time):
    The calling thread is the control thread: it sleeps to the start of each tick (1 / fps
    apart). Inference runs on one worker thread; a result is delivered at the first tick after
    it finishes. A runner that raises, or does not answer within `timeout_s`, is reported as an
    error result (the loop's `on_fault` decides: end the episode, or hold and retry); a chunk
    that arrives after its request timed out is stale and dropped, never executed. `close`
    stops the worker without waiting on a hung runner (a daemon, it exits when the call
    returns). Each tick's lateness (start - due) is kept for jitter figures.

    CPU placement (`CpuPlacement`, `pin_cpus` in ControlConfig; Linux): the control thread is
    pinned to one CPU and the inference worker to the others (meant for boards with more
    cores: on an idle 2-core x86 it measured no better than the scheduler, docs/experiments.md
    2026-12-02 evening, so it is off by default); while pinned, the interpreter's GIL switch interval drops
    from 5 ms to 1 ms, so the control thread waits at most that long for the worker's numpy
    pre-/post-processing. ONNX Runtime with one intra-op thread computes on the worker thread
    itself, so `--threads 1` keeps the model on the inference CPUs. Both are restored at close.
"""

from __future__ import annotations

import math
import os
import queue
import sys
import threading
import time
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from edgevla_runtime.runner import PolicyRunner, timed_predict

# Float noise guard: 0.35 * 60 = 20.999999999999996 must count as 21 ticks, 0.1 * 30 = 3.0000..4 as 3.
_TICK_EPS = 1e-9

LatencyKind = Literal["measured", "fixed", "uniform", "lognormal"]

_LATENCY_HELP = (
    "Latency specs: 'measured' (the runner's wall time), a number of seconds such as '0.32' or "
    "'fixed:0.32', 'uniform:LOW,HIGH' (seconds), 'lognormal:MEDIAN,SIGMA' (median seconds, "
    "sigma of the log)."
)


def latency_ticks(latency_s: float, fps: float) -> int:
    """Whole control ticks an inference of `latency_s` spans: ceil(latency * fps), >= 0."""
    return max(0, math.ceil(latency_s * fps - _TICK_EPS))


@dataclass(frozen=True)
class LatencySpec:
    """How long a virtual inference takes. Build one with `parse_latency_spec`.

    fixed: a seconds; uniform: [a, b) seconds; lognormal: median a seconds, log-sigma b
    (a long right tail, like a CPU shared with other processes).
    """

    kind: LatencyKind = "measured"
    a: float = 0.0
    b: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in ("measured", "fixed", "uniform", "lognormal"):
            raise ValueError(f"unknown latency kind {self.kind!r}. {_LATENCY_HELP}")
        if not (math.isfinite(self.a) and math.isfinite(self.b)):
            raise ValueError(f"latency parameters must be finite, got {self}. {_LATENCY_HELP}")
        if self.kind == "fixed" and self.a < 0:
            raise ValueError(
                f"a fixed latency cannot be negative (got {self.a} s); give the seconds one "
                "inference takes, e.g. 'fixed:0.32'."
            )
        if self.kind == "uniform" and not 0 <= self.a <= self.b:
            raise ValueError(
                f"uniform latency needs 0 <= LOW <= HIGH seconds, got LOW={self.a}, "
                f"HIGH={self.b}; e.g. 'uniform:0.25,0.40'."
            )
        if self.kind == "lognormal" and (self.a <= 0 or self.b < 0):
            raise ValueError(
                f"lognormal latency needs MEDIAN > 0 seconds and SIGMA >= 0, got "
                f"MEDIAN={self.a}, SIGMA={self.b}; e.g. 'lognormal:0.32,0.2'."
            )

    def sample(self, rng: np.random.Generator, measured_s: float) -> float:
        """Draw one latency in seconds (`measured_s` is the runner's wall time)."""
        if self.kind == "measured":
            value = measured_s
        elif self.kind == "fixed":
            value = self.a
        elif self.kind == "uniform":
            value = float(rng.uniform(self.a, self.b))
        else:
            value = float(rng.lognormal(math.log(self.a), self.b))
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"latency sample {value} from {self} is not a finite value >= 0")
        return value

    def __str__(self) -> str:
        if self.kind == "measured":
            return "measured"
        if self.kind == "fixed":
            return f"fixed:{self.a:g}"
        return f"{self.kind}:{self.a:g},{self.b:g}"


def parse_latency_spec(spec: str | float | LatencySpec) -> LatencySpec:
    """Parse 'measured', '0.32', 'fixed:0.32', 'uniform:0.2,0.4' or 'lognormal:0.3,0.25'."""
    if isinstance(spec, LatencySpec):
        return spec
    if isinstance(spec, int | float) and not isinstance(spec, bool):
        return LatencySpec("fixed", float(spec))
    if not isinstance(spec, str):
        raise TypeError(f"latency spec must be a string or a number, got {type(spec).__name__}")
    text = spec.strip().lower()
    if text == "measured":
        return LatencySpec("measured")
    kind, _, params = text.partition(":")
    if not params:  # a bare number
        kind, params = "fixed", text
    try:
        values = [float(p) for p in params.split(",")]
    except ValueError:
        raise ValueError(f"cannot parse latency spec {spec!r}. {_LATENCY_HELP}") from None
    expected = {"fixed": 1, "uniform": 2, "lognormal": 2}
    if kind not in expected or len(values) != expected[kind]:
        raise ValueError(f"cannot parse latency spec {spec!r}. {_LATENCY_HELP}")
    return LatencySpec(kind, *values)  # type: ignore[arg-type]


@dataclass(frozen=True)
class InferenceResult:
    """One finished inference, as the loop receives it.

    chunk: float32 (chunk_size, action_dim), predicted from the observation of `request_tick`;
    None when `error` is set. latency_s is what the schedule learns from: the virtual latency
    under a VirtualClock, the measured wall time under a RealTimeClock.
    """

    request_tick: int
    chunk: np.ndarray | None
    latency_s: float
    error: str | None = None


class Clock(Protocol):
    """What the control loop needs from time; see the module docstring for the two kinds."""

    def start(self, runner: PolicyRunner, fps: float) -> None:
        """Begin an episode (and its worker, if any)."""
        ...

    def wait_for_tick(self, tick: int) -> None:
        """Return when control tick `tick` should start."""
        ...

    def submit(self, observation: dict[str, np.ndarray], tick: int) -> None:
        """Start one inference on `observation`, taken at `tick` (one in flight at a time)."""
        ...

    def poll(self, tick: int) -> list[InferenceResult]:
        """Results available at the start of `tick` (or errors: failure, timeout)."""
        ...

    def elapsed_s(self, ticks_done: int) -> float:
        """Episode time so far, after `ticks_done` ticks."""
        ...

    def close(self) -> None:
        """End the episode; must not block on a hung runner."""
        ...


class VirtualClock:
    """Simulated time: deterministic, one env step per tick, latency from a `LatencySpec`.

    latency: a LatencySpec or its text ('measured', '0.32', 'uniform:0.2,0.4', ...).
    seed: seeds the latency distribution; the same seed replays the same latencies.
    A runner exception propagates (the run is deterministic, so the traceback is what a
    developer needs); only the RealTimeClock turns errors into a result.
    """

    def __init__(self, latency: LatencySpec | str | float = "measured", seed: int = 0) -> None:
        self.latency = parse_latency_spec(latency)
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self._runner: PolicyRunner | None = None
        self._fps = 1.0
        self._pending: list[tuple[int, InferenceResult]] = []  # (ready tick, result)

    def start(self, runner: PolicyRunner, fps: float) -> None:
        self._runner, self._fps = runner, fps
        self._pending = []
        self._rng = np.random.default_rng(self.seed)

    def wait_for_tick(self, tick: int) -> None:
        return None  # the simulation never waits

    def submit(self, observation: dict[str, np.ndarray], tick: int) -> None:
        if self._runner is None:
            raise RuntimeError("VirtualClock.submit before start(); run it through run_episode")
        chunk, measured_s = timed_predict(self._runner, observation)
        latency_s = self.latency.sample(self._rng, measured_s)
        ready = tick + latency_ticks(latency_s, self._fps)
        self._pending.append((ready, InferenceResult(tick, chunk, latency_s)))

    def poll(self, tick: int) -> list[InferenceResult]:
        ready = [r for t, r in self._pending if t <= tick]
        self._pending = [(t, r) for t, r in self._pending if t > tick]
        return ready

    def elapsed_s(self, ticks_done: int) -> float:
        return ticks_done / self._fps

    def close(self) -> None:
        self._pending = []


_STOP = object()  # sentinel that wakes the worker so it can exit


@dataclass(frozen=True)
class CpuPlacement:
    """Which CPUs the control thread and the inference worker may run on (disjoint sets)."""

    control: frozenset[int]
    inference: frozenset[int]


PIN_SWITCH_INTERVAL_S = 0.001


def cpu_placement(setting: str) -> CpuPlacement | None:
    """Parse `pin_cpus`: "off" (no pinning), "auto" (control on the lowest CPU this process
    may use, inference on the rest; off when fewer than two), or "C:I[,I...]" (control CPU C,
    inference CPUs I). Explicit CPUs must be ones this process may use (os.sched_getaffinity)."""
    setting = str(setting).strip()
    if setting == "off":
        return None
    if not hasattr(os, "sched_setaffinity"):
        if setting == "auto":
            return None
        raise ValueError(f"pin_cpus={setting!r}: CPU pinning needs Linux; use 'off'")
    allowed = sorted(os.sched_getaffinity(0))
    if setting == "auto":
        if len(allowed) < 2:
            return None
        return CpuPlacement(frozenset(allowed[:1]), frozenset(allowed[1:]))
    try:
        control_part, inference_part = setting.split(":")
        control = frozenset([int(control_part)])
        inference = frozenset(int(c) for c in inference_part.split(","))
    except ValueError:
        raise ValueError(
            f"pin_cpus must be 'off', 'auto' or 'C:I[,I...]' (control CPU : inference CPUs, "
            f"e.g. 0:1); got {setting!r}"
        ) from None
    unknown = sorted((control | inference) - set(allowed))
    if unknown or control & inference:
        raise ValueError(
            f"pin_cpus={setting!r}: control and inference CPUs must be disjoint and among the "
            f"CPUs this process may use {allowed}" + (f"; {unknown} are not" if unknown else "")
        )
    return CpuPlacement(control, inference)


class RealTimeClock:
    """Wall-clock time: the caller is the control thread, inference runs on one worker thread.

    timeout_s: an inference running longer than this ends the episode with an error (the arm
    holds). join_timeout_s: how long `close` waits for the worker before leaving it behind as
    a daemon (only when the runner is stuck inside a call).
    """

    def __init__(
        self,
        timeout_s: float = 30.0,
        join_timeout_s: float = 1.0,
        placement: CpuPlacement | None = None,
    ) -> None:
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0 seconds, got {timeout_s}")
        self.timeout_s = timeout_s
        self.join_timeout_s = join_timeout_s
        self.placement = placement
        self._restore: tuple[set[int], float] | None = None  # control thread's before pinning
        self.thread: threading.Thread | None = None
        self.late_ticks = 0  # ticks that started more than one period late (loop overran)
        self.lateness_s: list[float] = []  # per tick: start - due (>= 0 up to sleep precision)
        self._timed_out: set[int] = set()  # request ticks whose results are stale if they come
        self._fps = 1.0
        self._t0 = 0.0
        self._in_flight_since: float | None = None
        self._in_flight_tick = -1

    def start(self, runner: PolicyRunner, fps: float) -> None:
        self._fps = fps
        self._requests: queue.Queue[object] = queue.Queue()
        self._results: queue.Queue[InferenceResult] = queue.Queue()
        self._stop = threading.Event()
        self._in_flight_since = None
        self.late_ticks = 0
        self.lateness_s = []
        self._timed_out = set()
        if self.placement is not None and self._restore is None:
            self._restore = (os.sched_getaffinity(0), sys.getswitchinterval())
            os.sched_setaffinity(0, self.placement.control)  # 0: the calling (control) thread
            sys.setswitchinterval(PIN_SWITCH_INTERVAL_S)
        self.thread = threading.Thread(
            target=self._work, args=(runner,), name="edgevla-inference", daemon=True
        )
        self.thread.start()
        self._t0 = time.perf_counter()

    def _work(self, runner: PolicyRunner) -> None:
        """Worker: one inference per request; exits on the stop sentinel or event."""
        if self.placement is not None:
            os.sched_setaffinity(0, self.placement.inference)
        while not self._stop.is_set():
            item = self._requests.get()
            if item is _STOP or self._stop.is_set():
                return
            observation, tick = item  # type: ignore[misc]
            start = time.perf_counter()
            try:
                chunk, latency_s = timed_predict(runner, observation)
                result = InferenceResult(tick, chunk, latency_s)
            except Exception as exc:  # reported to the control thread, which stops the arm
                result = InferenceResult(
                    tick, None, time.perf_counter() - start, f"{type(exc).__name__}: {exc}"
                )
            if self._stop.is_set():
                return  # the episode ended (e.g. timed out) while this call ran
            self._results.put(result)

    def wait_for_tick(self, tick: int) -> None:
        target = self._t0 + tick / self._fps
        delay = target - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        elif -delay > 1.0 / self._fps:
            self.late_ticks += 1
        self.lateness_s.append(max(0.0, time.perf_counter() - target))

    def submit(self, observation: dict[str, np.ndarray], tick: int) -> None:
        if self.thread is None or not self.thread.is_alive():
            raise RuntimeError("RealTimeClock.submit without a running worker; call start()")
        self._in_flight_since, self._in_flight_tick = time.perf_counter(), tick
        self._requests.put((observation, tick))

    def poll(self, tick: int) -> list[InferenceResult]:
        out: list[InferenceResult] = []
        while True:
            try:
                result = self._results.get_nowait()
            except queue.Empty:
                break
            if result.request_tick in self._timed_out:  # stale: its request already failed
                self._timed_out.discard(result.request_tick)
                continue
            out.append(result)
        if out:
            self._in_flight_since = None
        elif self._in_flight_since is not None:
            waited = time.perf_counter() - self._in_flight_since
            if waited > self.timeout_s:
                self._in_flight_since = None
                self._timed_out.add(self._in_flight_tick)
                out.append(
                    InferenceResult(
                        self._in_flight_tick,
                        None,
                        waited,
                        f"TimeoutError: inference requested at tick {self._in_flight_tick} did "
                        f"not finish within timeout_s={self.timeout_s:g} s",
                    )
                )
        return out

    def elapsed_s(self, ticks_done: int) -> float:
        return time.perf_counter() - self._t0

    def close(self) -> None:
        if self._restore is not None:
            cpus, interval = self._restore
            self._restore = None
            os.sched_setaffinity(0, cpus)
            sys.setswitchinterval(interval)
        if self.thread is None:
            return
        self._stop.set()
        self._requests.put(_STOP)
        self.thread.join(self.join_timeout_s)
