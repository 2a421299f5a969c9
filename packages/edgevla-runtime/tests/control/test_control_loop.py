"""run_episode under the VirtualClock: exact executed sequences, idle arithmetic, underruns.

ScriptedRunner (conftest) makes chunk n's row i worth 100 * (n + 1) + i, so a trace such as
[0, 0, 0, 103, ...] reads "held the start pose for 3 ticks, then row 3 of the first chunk".
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from edgevla_runtime.control.clocks import VirtualClock
from edgevla_runtime.control.config import ControlConfig
from edgevla_runtime.control.loop import run_episode


def cfg(**kw) -> ControlConfig:
    kw.setdefault("fps", 30)
    return ControlConfig(**kw)


@pytest.mark.parametrize(
    ("latency", "fps", "n_steps", "chunk", "cycles"),
    [(0.1, 30, 5, 10, 4), (0.32, 60, 100, 100, 2), (0.0, 30, 5, 10, 3), (2.86, 60, 100, 100, 1)],
)
def test_sync_idle_fraction(make_env, make_runner, latency, fps, n_steps, chunk, cycles) -> None:
    k = math.ceil(round(latency * fps, 9))
    config = cfg(
        mode="sync", latency=str(latency), fps=fps, n_action_steps=n_steps,
        max_steps=cycles * (k + n_steps),
    )  # fmt: skip
    result = run_episode(make_env(), make_runner(chunk), config)
    assert result.idle_fraction == pytest.approx(k / (k + n_steps))
    assert result.idle_ticks == cycles * k
    assert result.inference_count == cycles
    assert result.underruns == 0  # waiting is by design in sync mode
    assert result.effective_control_hz == pytest.approx(fps * n_steps / (k + n_steps))


def test_sync_exact_sequence_holds_still_while_model_runs(make_env, make_runner) -> None:
    env, runner = make_env(), make_runner(10)
    config = cfg(mode="sync", latency="0.1", n_action_steps=5, max_steps=19)  # 3-tick latency
    result = run_episode(env, runner, config)
    assert env.trace == [0, 0, 0, 100, 101, 102, 103, 104, 104, 104, 104,
                         200, 201, 202, 203, 204, 204, 204, 204]  # fmt: skip
    assert runner.seen_states == [0, 104, 204]  # observations taken at the request ticks
    assert result.request_ticks == [0, 8, 16] and result.arrival_ticks == [3, 11]


ASYNC = dict(chunk_size_threshold=0.5, latency="0.1", max_steps=16)  # C=10, k=3 ticks


def test_async_latest_only_exact_sequence(make_env, make_runner) -> None:
    env, runner = make_env(), make_runner(10)
    result = run_episode(env, runner, cfg(aggregate_fn_name="latest_only", **ASYNC))
    assert env.trace == [0, 0, 0, 103, 104, 105, 106, 107,
                         203, 204, 205, 206, 207, 303, 304, 305]  # fmt: skip
    assert result.queue_sizes == [0, 0, 0, 7, 6, 5, 4, 3, 7, 6, 5, 4, 3, 7, 6, 5]
    assert result.request_ticks == [0, 5, 10, 15]
    assert result.arrival_ticks == [3, 8, 13]
    assert runner.seen_states == [0, 104, 204, 304]  # staleness is real: k ticks old on arrival
    assert result.underruns == 0 and result.idle_ticks == 3


def test_async_weighted_average_exact_sequence(make_env, make_runner) -> None:
    env = make_env()
    run_episode(env, make_runner(10), cfg(aggregate_fn_name="weighted_average", **ASYNC))
    expected = [0, 0, 0, 103, 104, 105, 106, 107,
                0.3 * 108 + 0.7 * 203, 0.3 * 109 + 0.7 * 204, 205, 206, 207,
                0.3 * 208 + 0.7 * 303, 0.3 * 209 + 0.7 * 304, 305]  # fmt: skip
    np.testing.assert_allclose(env.trace, expected, rtol=1e-6)


def test_underrun_holds_last_command_and_is_counted(make_env, make_runner) -> None:
    # Threshold 0: request only on an empty queue, so each 3-tick inference starves the arm.
    env = make_env()
    result = run_episode(env, make_runner(10), cfg(chunk_size_threshold=0.0, latency="0.1",
                                                   aggregate_fn_name="latest_only", max_steps=20))  # fmt: skip
    assert env.trace == [0, 0, 0, 103, 104, 105, 106, 107, 108, 109,
                         109, 109, 109, 203, 204, 205, 206, 207, 208, 209]  # fmt: skip
    assert result.underruns == 1 and result.underrun_ticks == 3
    assert result.idle_ticks == 6 and result.idle_fraction == pytest.approx(0.3)
    assert result.queue_sizes[10:13] == [0, 0, 0]


def test_async_idle_fraction_fixed_latency(make_env, make_runner) -> None:
    fits = run_episode(make_env(), make_runner(10), cfg(**{**ASYNC, "max_steps": 60}))
    assert fits.idle_fraction == pytest.approx(3 / 60) and fits.underruns == 0
    # the 3 idle ticks are the wait for the first chunk: none once the arm is running
    assert fits.startup_ticks == 3 and fits.idle_fraction_running == 0.0
    starved = run_episode(
        make_env(), make_runner(10), cfg(chunk_size_threshold=0.0, latency="0.1", max_steps=40)
    )
    # one request per 10 ticks, 3 ticks waiting each: 4 cycles, the first is warm-up
    assert starved.idle_fraction == pytest.approx(12 / 40)
    assert starved.underruns == 3 and starved.underrun_ticks == 9
    assert starved.idle_fraction_running == pytest.approx(9 / 37)


def test_chunks_that_arrive_stale_never_move_the_arm(make_env, make_runner) -> None:
    """Latency 15 ticks > chunk 10: every action is in the past on arrival and dropped, the arm
    holds its start for the whole episode and counts as idle throughout, not "0% idle after
    the first chunk"."""
    env = make_env()
    result = run_episode(env, make_runner(10), cfg(chunk_size_threshold=0.2, latency="0.5",
                                                   max_steps=40))  # fmt: skip
    assert set(env.trace) == {0}
    assert result.idle_fraction == 1.0 and result.idle_fraction_running == 1.0
    assert result.startup_ticks == 40 and result.inference_count >= 2


def test_auto_requests_at_p95_plus_margin(make_env, make_runner) -> None:
    config = cfg(chunk_size_threshold="auto", latency="0.1", auto_margin_ticks=2, max_steps=40)
    result = run_episode(make_env(), make_runner(20), config)
    # trigger = 3 ticks + 2 margin = 5 actions: the least stale request that never starves
    assert result.request_ticks == [0, 15, 30]
    assert result.arrival_ticks == [3, 18, 33]
    assert [result.queue_sizes[t] for t in (14, 15)] == [6, 5]
    assert result.underruns == 0 and result.idle_ticks == 3
    assert result.trigger_sizes[0] == 0.0 and result.trigger_sizes[3] == pytest.approx(5.0)


def test_seeded_latency_distribution_replays(make_env, make_runner) -> None:
    config = cfg(chunk_size_threshold="auto", latency="lognormal:0.2,0.3", max_steps=120)
    a = run_episode(make_env(), make_runner(20), config)
    b = run_episode(make_env(), make_runner(20), config)
    c = run_episode(make_env(), make_runner(20), config, VirtualClock(config.latency, seed=1))
    assert a.latencies_s == b.latencies_s and a.queue_sizes == b.queue_sizes
    assert a.latencies_s != c.latencies_s
    assert a.latency_p50_s <= a.latency_p95_s <= a.latency_max_s


def test_temporal_ensemble_every_tick(make_env, make_runner) -> None:
    m, chunk, steps = 0.01, 4, 8
    env = make_env()
    config = cfg(chunk_size_threshold=1.0, latency="0", aggregate_fn_name="temporal_ensemble",
                 temporal_ensemble_coeff=m, max_steps=steps)  # fmt: skip
    result = run_episode(env, make_runner(chunk), config)
    assert result.inference_count == steps and result.idle_ticks == 0
    for t in range(steps):
        ns = range(max(0, t - chunk + 1), t + 1)  # chunks covering tick t, oldest first
        values = np.array([100 * (n + 1) + (t - n) for n in ns], dtype=np.float64)
        w = np.exp(-m * np.arange(len(values)))
        assert env.trace[t] == pytest.approx(float(w @ values / w.sum()), rel=1e-6)


def test_measured_latency_costs_at_least_one_tick(make_env, make_runner) -> None:
    result = run_episode(make_env(), make_runner(10), cfg(max_steps=12))
    assert result.inference_count >= 1
    assert 0 < result.latency_max_s < 1.0
    assert result.arrival_ticks[0] == 1


def test_boundary_acceleration(make_env, make_runner) -> None:
    # Start at 103 so the warm-up hold is continuous with the first chunk's row 3.
    latest = run_episode(make_env(start=103), make_runner(10),
                         cfg(aggregate_fn_name="latest_only", **ASYNC))  # fmt: skip
    blended = run_episode(make_env(start=103), make_runner(10),
                          cfg(aggregate_fn_name="weighted_average", **ASYNC))  # fmt: skip
    # latest_only: 107 -> 203 -> 204 at tick 8: (203 - 214 + 106) * 30^2
    assert latest.boundary_accel_max == pytest.approx(95 * 900)
    assert blended.boundary_accel_max == pytest.approx(66.5 * 900, rel=1e-5)
    assert latest.max_accel >= latest.boundary_accel_max


def test_episode_ends_when_env_terminates_on_success(make_env, make_runner) -> None:
    result = run_episode(make_env(success_after=5), make_runner(10), cfg(latency="0", max_steps=50))
    assert result.success and result.ticks == 5
    assert result.completion_time_s == pytest.approx(5 / 30)
    failed = run_episode(make_env(), make_runner(10), cfg(latency="0", max_steps=7))
    assert not failed.success and failed.completion_time_s is None and failed.ticks == 7
    assert failed.to_dict()["completion_time_s"] is None and "queue_sizes" not in failed.to_dict()


def test_success_is_judged_on_the_last_step(make_env, make_runner) -> None:
    config = cfg(latency="0", max_steps=10)
    held = make_env(success_after=3, terminate_on_success=False)
    result = run_episode(held, make_runner(10), config)
    assert result.success and result.ticks == 10
    assert result.completion_time_s == pytest.approx(3 / 30)  # when the streak began
    flicker = make_env(success_after=3, success_until=4, terminate_on_success=False)
    lost = run_episode(flicker, make_runner(10), config)
    assert not lost.success and lost.completion_time_s is None


def test_runner_and_env_contract_errors(make_env, make_runner) -> None:
    with pytest.raises(ValueError, match="n_action_steps=20 exceeds"):
        run_episode(make_env(), make_runner(10), cfg(n_action_steps=20))

    class Batched(make_runner):
        def predict_chunk(self, observation):
            return super().predict_chunk(observation)[None]  # (1, C, D)

    with pytest.raises(ValueError, match="batched"):
        run_episode(make_env(), Batched(10), cfg(latency="0", max_steps=3))

    class NoState(make_env):
        def _obs(self):
            return {}

    with pytest.raises(KeyError, match="observation.state"):
        run_episode(NoState(), make_runner(10), cfg(max_steps=3))


def test_loop_reseeds_the_runner_every_episode(make_env, make_runner) -> None:
    """A sampling policy reseeds its noise per episode: the loop hands it the episode seed."""
    runner = make_runner(10)
    run_episode(make_env(), runner, cfg(max_steps=5), seed=17)
    run_episode(make_env(), runner, cfg(max_steps=5))
    assert runner.reset_seeds == [17, None]
