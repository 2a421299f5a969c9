"""The control loop: one function for every policy, runtime (torch, ONNX, remote) and mode.

Per control tick t, in this order:
    1. wait for the tick (RealTimeClock sleeps; VirtualClock does not)
    2. merge every chunk that has arrived by t into the queue (rows for past ticks dropped)
    3. ask the schedule whether to send this tick's observation; if so submit it (a result
       with zero latency is merged at once, so a zero-latency sync loop never idles)
    4. pop the action for t; if the queue has none, hold the last command (never replay an
       old action) and count the tick idle (an underrun in async mode after the first chunk)
    5. step the environment with the command; stop when it terminates or truncates (the sim
       terminates once success has held for a while) or at the config's step limit

Faults (an inference error or timeout, a chunk with non-finite actions or actions outside
`action_limits`) follow `config.on_fault`: "stop" ends the episode with the arm holding; "hold"
drops the queued actions, holds the last command and keeps asking until inference answers
again, counting the fault and the ticks held.

The episode succeeds when the last step's `info["success"]` is true and no inference error
ended it; its completion time is when that final success streak began (the task was done then;
the sim's hold only confirms it).

Everything mode-specific lives in the schedule (when to request, where a chunk is anchored)
and everything time-specific in the clock; the loop itself never branches on either.
Standard library and numpy only: the board-side runtime and the remote policy server reuse it.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from edgevla_runtime.control.aggregation import get_aggregate_fn
from edgevla_runtime.control.clocks import Clock, InferenceResult, VirtualClock
from edgevla_runtime.control.config import ControlConfig
from edgevla_runtime.control.metrics import EpisodeRecorder, EpisodeResult
from edgevla_runtime.control.queue import ActionQueue
from edgevla_runtime.control.schedule import make_schedule
from edgevla_runtime.features import STATE_KEY
from edgevla_runtime.runner import PolicyRunner, check_observation


class ControlEnv(Protocol):
    """The gymnasium-style environment the loop drives (edgevla.sim provides one).

    Observations follow edgevla_runtime.features; `info["success"]` marks task completion; the action
    is float32 (action_dim,) joint position targets.
    """

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]: ...

    def step(
        self, action: np.ndarray
    ) -> tuple[dict[str, Any], float, bool, bool, dict[str, Any]]: ...


def _snapshot(observation: dict[str, Any]) -> dict[str, Any]:
    """Copy the arrays of an observation: the env may reuse its buffers while inference runs."""
    return {
        k: np.array(v, copy=True) if isinstance(v, np.ndarray) else v
        for k, v in observation.items()
    }


def chunk_length(config: ControlConfig, runner: PolicyRunner) -> int:
    """Actions used from each chunk: n_action_steps, or the runner's whole chunk."""
    if config.n_action_steps is None:
        return runner.chunk_size
    if config.n_action_steps > runner.chunk_size:
        raise ValueError(
            f"n_action_steps={config.n_action_steps} exceeds the runner's chunk_size="
            f"{runner.chunk_size}; a chunk cannot supply more actions than it predicts. Use "
            f"n_action_steps <= {runner.chunk_size} or None."
        )
    return config.n_action_steps


def run_episode(
    env: ControlEnv,
    runner: PolicyRunner,
    config: ControlConfig,
    clock: Clock | None = None,
    *,
    seed: int | None = None,
    reset_options: dict[str, Any] | None = None,
    action_limits: tuple[np.ndarray, np.ndarray] | None = None,
) -> EpisodeResult:
    """Run one episode and measure it; see the module docstring for the per-tick order.

    clock: None uses VirtualClock(config.latency, seed=config.latency_seed). With a
    RealTimeClock, an inference error or timeout is a fault handled by `config.on_fault`;
    with a VirtualClock runner errors propagate.
    action_limits: (low, high) per joint, each (action_dim,); a chunk reaching outside is a
    fault (a robot's joint limits: a policy must never command past them).
    seed, reset_options: passed to env.reset (e.g. the planned start state); seed also goes to
    runner.reset(seed) (a sampling policy reseeds its noise).
    """
    if clock is None:
        clock = VirtualClock(config.latency, seed=config.latency_seed)
    chunk_len = chunk_length(config, runner)
    schedule = make_schedule(config, chunk_len)
    aggregate = get_aggregate_fn(config.aggregate_fn_name, config.temporal_ensemble_coeff)
    queue = ActionQueue(runner.action_dim)
    recorder = EpisodeRecorder(config.fps)

    observation, _ = env.reset(seed=seed, options=reset_options)
    runner.reset(seed)  # a sampling policy reseeds its noise; others do nothing
    check_observation(observation, runner)
    command = np.array(observation[STATE_KEY], dtype=np.float32)  # (D,) hold the start pose
    in_flight = False
    chunk_seen = False
    holding = False  # after a fault, until a chunk arrives
    error: str | None = None
    if action_limits is not None:
        low, high = (np.asarray(x, dtype=np.float32) for x in action_limits)
    ticks_done = 0
    success_at_s: float | None = None  # episode time when the final success streak began

    def deliver(results: list[InferenceResult], tick: int) -> tuple[bool, str | None]:
        """Merge arrived chunks; returns (merged anything, first error)."""
        nonlocal in_flight, chunk_seen
        merged = False
        for result in results:
            in_flight = False
            if result.error is not None or result.chunk is None:
                return merged, result.error or "inference returned no chunk"
            if action_limits is not None:
                outside = (result.chunk < low) | (result.chunk > high)  # (C, D)
                if outside.any():
                    row, joint = np.argwhere(outside)[0]
                    return merged, (
                        f"chunk from tick {result.request_tick} commands joint {joint} to "
                        f"{result.chunk[row, joint]:.3f} at step {row}, outside "
                        f"[{low[joint]:.3f}, {high[joint]:.3f}]"
                    )
            schedule.observe_latency(result.latency_s)
            recorder.record_arrival(tick, result.latency_s)
            start = result.request_tick if schedule.anchor == "request" else tick
            queue.merge(result.chunk[:chunk_len], start, aggregate)  # (chunk_len, D)
            merged = chunk_seen = True
        return merged, None

    clock.start(runner, config.fps)
    try:
        for tick in range(config.step_limit):
            clock.wait_for_tick(tick)
            merged, error = deliver(clock.poll(tick), tick)
            if error is None and schedule.should_request(len(queue), in_flight):
                clock.submit(_snapshot(observation), tick)
                in_flight = True
                recorder.record_request(tick)
                merged_now, error = deliver(clock.poll(tick), tick)
                merged = merged or merged_now
            if error is not None and config.on_fault == "stop":
                break  # the arm keeps its last command; no further steps are sent
            if error is not None:  # hold: drop what is queued, keep asking
                recorder.record_fault(f"tick {tick}: {error}")
                queue.clear()  # never replayed after the fault
                in_flight, holding, error = False, True, None
            elif merged:
                holding = False
            recorder.fault_ticks += holding

            queue_size = len(queue)
            action = queue.pop(tick)  # (D,) or None
            fresh = action is not None
            if fresh:
                command = action
            underrun = not fresh and chunk_seen and schedule.anchor == "request"
            recorder.record_tick(
                queue_size, command, fresh, merged, underrun, schedule.trigger_actions
            )
            observation, _, terminated, truncated, info = env.step(command.copy())
            ticks_done += 1
            if not info.get("success", False):
                success_at_s = None
            elif success_at_s is None:  # the current success streak starts at this step
                success_at_s = clock.elapsed_s(ticks_done)
            if terminated or truncated:
                break
        duration_s = clock.elapsed_s(ticks_done)  # before close, which may wait on a worker
    finally:
        clock.close()
    return recorder.finish(
        success=success_at_s is not None and error is None,
        duration_s=duration_s,
        completion_time_s=success_at_s,
        error=error,
        lateness_s=getattr(clock, "lateness_s", None),
        deadline_misses=getattr(clock, "late_ticks", 0),
    )
