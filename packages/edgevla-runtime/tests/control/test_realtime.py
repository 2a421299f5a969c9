"""RealTimeClock: the same loop on two threads; errors and hangs end cleanly, nothing hangs.

Timing is never asserted tightly (the CI machine is shared); only upper bounds that a hang
would break by seconds.
"""

from __future__ import annotations

import os
import sys
import threading
import time

import pytest
from edgevla_runtime.control.clocks import (
    PIN_SWITCH_INTERVAL_S,
    CpuPlacement,
    RealTimeClock,
    cpu_placement,
)
from edgevla_runtime.control.config import ControlConfig
from edgevla_runtime.control.loop import run_episode
from edgevla_runtime.testing import ScriptedRunner

pytestmark = pytest.mark.timeout(30)

CONFIG = ControlConfig(fps=100, chunk_size_threshold=0.5, max_steps=30)


def test_realtime_runs_and_shuts_down(make_env, make_runner) -> None:
    env, clock = make_env(), RealTimeClock(timeout_s=5.0)
    result = run_episode(env, make_runner(10), CONFIG, clock)
    assert result.error is None
    assert len(env.commands) == 30 and result.ticks == 30
    assert result.inference_count >= 1 and result.idle_ticks < 30
    # wall time: tick 29 is not started before 0.29 s (the loop waits for each tick); a loaded
    # machine only makes it later, a hang by seconds
    assert 0.29 <= result.duration_s < 3.0
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


# --- CPU placement: the control thread on one CPU, inference on the others -------------------

linux_two_cpus = pytest.mark.skipif(
    not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="needs Linux and two CPUs this process may use",
)


def test_pin_cpus_forms_are_parsed_and_bad_ones_refused() -> None:
    assert cpu_placement("off") is None
    for bad in ("0", "0:", "a:b", "0:1:2", "x"):
        with pytest.raises(ValueError, match="pin_cpus"):
            cpu_placement(bad)
    with pytest.raises(ValueError, match="pin_cpus"):
        ControlConfig(pin_cpus="first")


@linux_two_cpus
def test_pin_cpus_auto_and_explicit_use_allowed_disjoint_cpus() -> None:
    allowed = sorted(os.sched_getaffinity(0))
    auto = cpu_placement("auto")
    assert auto == CpuPlacement(frozenset(allowed[:1]), frozenset(allowed[1:]))
    a, b = allowed[:2]
    assert cpu_placement(f"{b}:{a}") == CpuPlacement(frozenset([b]), frozenset([a]))
    with pytest.raises(ValueError, match="disjoint"):
        cpu_placement(f"{a}:{a}")
    with pytest.raises(ValueError, match="not"):
        cpu_placement(f"{a}:{max(allowed) + 1000}")


class _WhereRunner(ScriptedRunner):
    """Records the CPUs and switch interval its predict_chunk ran under."""

    def __init__(self) -> None:
        super().__init__(10)
        self.cpus: list[set[int]] = []

    def predict_chunk(self, observation):
        self.cpus.append(os.sched_getaffinity(0))
        return super().predict_chunk(observation)


@linux_two_cpus
def test_pinned_episode_runs_inference_on_its_cpus_and_restores_the_caller(make_env) -> None:
    allowed = sorted(os.sched_getaffinity(0))
    control_cpu, inference_cpu = allowed[0], allowed[1]
    before_cpus, before_interval = os.sched_getaffinity(0), sys.getswitchinterval()
    runner, seen_control = _WhereRunner(), []

    class Env:  # the control thread's view while the episode runs
        def __init__(self, env) -> None:
            self.env = env

        def __getattr__(self, name):
            return getattr(self.env, name)

        def step(self, action):
            seen_control.append((os.sched_getaffinity(0), sys.getswitchinterval()))
            return self.env.step(action)

    clock = RealTimeClock(timeout_s=5.0, placement=cpu_placement(f"{control_cpu}:{inference_cpu}"))
    result = run_episode(Env(make_env()), runner, CONFIG, clock)
    assert result.error is None and runner.cpus
    assert all(c == {inference_cpu} for c in runner.cpus)
    assert seen_control and all(c == ({control_cpu}, PIN_SWITCH_INTERVAL_S) for c in seen_control)
    assert os.sched_getaffinity(0) == before_cpus
    assert sys.getswitchinterval() == before_interval
