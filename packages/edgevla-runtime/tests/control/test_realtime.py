"""RealTimeClock: the same loop on two threads; errors and hangs end cleanly, nothing hangs.

Timing is never asserted tightly (the CI machine is shared); only upper bounds that a hang
would break by seconds.
"""

from __future__ import annotations

import threading
import time

import pytest
from edgevla_runtime.control.clocks import RealTimeClock
from edgevla_runtime.control.config import ControlConfig
from edgevla_runtime.control.loop import run_episode

pytestmark = pytest.mark.timeout(30)

CONFIG = ControlConfig(fps=100, chunk_size_threshold=0.5, max_steps=30)


def test_realtime_runs_and_shuts_down(make_env, make_runner) -> None:
    env, clock = make_env(), RealTimeClock(timeout_s=5.0)
    result = run_episode(env, make_runner(10), CONFIG, clock)
    assert result.error is None
    assert len(env.commands) == 30 and result.ticks == 30
    assert result.inference_count >= 1 and result.idle_ticks < 30
    assert result.duration_s == pytest.approx(0.3, abs=0.25)
    assert clock.thread is not None and not clock.thread.is_alive()


def test_runner_exception_is_reported_and_arm_holds(make_env, make_runner) -> None:
    env, clock = make_env(), RealTimeClock(timeout_s=5.0)
    config = ControlConfig(fps=100, chunk_size_threshold=0.5, max_steps=300)
    start = time.perf_counter()
    result = run_episode(env, make_runner(10, fail_on_call=1), config, clock)
    assert time.perf_counter() - start < 2.0  # ended at the error, not at max_steps (3 s)
    assert result.error == "RuntimeError: model exploded"
    assert not result.success and len(env.commands) < 300
    assert not clock.thread.is_alive()


def test_hung_runner_times_out_and_nothing_hangs(make_env, make_runner) -> None:
    release = threading.Event()
    env, clock = make_env(), RealTimeClock(timeout_s=0.2, join_timeout_s=0.1)
    runner = make_runner(10, block=release, block_on_call=0)
    config = ControlConfig(fps=100, max_steps=500)
    start = time.perf_counter()
    try:
        result = run_episode(env, runner, config, clock)
        elapsed = time.perf_counter() - start
    finally:
        release.set()  # let the stuck call return so the daemon worker can exit
    assert elapsed < 2.0
    assert result.error is not None and result.error.startswith("TimeoutError")
    assert set(env.trace) == {0.0}  # held the start pose the whole time
    clock.thread.join(2.0)
    assert not clock.thread.is_alive()


def test_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="timeout_s"):
        RealTimeClock(timeout_s=0)
