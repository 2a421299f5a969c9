"""The real-time robot loop fails safe: every fault holds the arm and the loop recovers.

A fake arm (its state is the last command) and fault-injecting runners (the runtime's
ScriptedRunner: call n returns rows 100 * (n + 1) + i, so each executed value names its chunk)
run under the real-time clock at 50 fps.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from edgevla_runtime.control import ControlConfig
from edgevla_runtime.control.loop import run_episode
from edgevla_runtime.features import ACTION_DIM, STATE_KEY
from edgevla_runtime.robot import Interrupted, Robot, check_fit, drive, latency_budget
from edgevla_runtime.testing import RecordingEnv, ScriptedRunner


class FakeArm:
    """Joint state = last command. Optionally interrupts (Ctrl-C) or stalls on the n-th send."""

    def __init__(self, interrupt_on: int | None = None, limits=None, stall_on: int | None = None,
                 stall_s: float = 0.0) -> None:  # fmt: skip
        self.state = np.zeros(ACTION_DIM, dtype=np.float32)
        self.sent: list[np.ndarray] = []
        self.connected = False
        self.interrupt_on = interrupt_on
        self.stall_on, self.stall_s = stall_on, stall_s
        if limits is not None:
            self.action_limits = limits

    observation_features = {STATE_KEY: (ACTION_DIM,)}
    action_features = {"joints": (ACTION_DIM,)}

    def connect(self) -> None:
        self.connected = True

    def disconnect(self) -> None:
        self.connected = False

    def get_observation(self):
        return {STATE_KEY: self.state.copy()}

    def send_action(self, action):
        if self.interrupt_on is not None and len(self.sent) == self.interrupt_on:
            self.interrupt_on = None
            raise KeyboardInterrupt
        if len(self.sent) == self.stall_on:
            threading.Event().wait(self.stall_s)  # a slow bus write: the tick overruns
        self.state = np.asarray(action, dtype=np.float32).copy()
        self.sent.append(self.state.copy())

    @property
    def trace(self) -> list[float]:
        return [float(a[0]) for a in self.sent]


def config(**kw) -> ControlConfig:
    # A generous timeout: only the hang test relies on one, and a loaded CI machine can stall a
    # thread for a few hundred ms (a spurious timeout would add a second fault).
    base = dict(mode="async", chunk_size_threshold=0.5, fps=50, max_steps=60,
                inference_timeout_s=1.5, on_fault="hold")  # fmt: skip
    return ControlConfig(**{**base, **kw})


def test_fake_arm_is_a_robot() -> None:
    assert isinstance(FakeArm(), Robot)


def test_inference_error_holds_then_recovers() -> None:
    arm = FakeArm()
    result = drive(arm, ScriptedRunner(10, fail_on_call=1), config())
    assert result.error is None and result.faults == 1 and result.fault_ticks > 0
    assert "model exploded" in result.fault_messages[0]
    values = set(arm.trace)
    assert not any(200 <= v < 300 for v in values)  # the failed call produced nothing
    assert any(v >= 300 for v in values)  # recovered: later chunks executed
    # while faulted the command repeats: some run of equal consecutive commands
    assert any(a == b for a, b in zip(arm.trace, arm.trace[1:], strict=False))
    assert arm.connected is False  # disconnected at the end


class HangsOnce(ScriptedRunner):
    """Call 1 hangs for 0.6 s from its own start (twice the test's 0.3 s timeout however late it
    begins; a timer started with the test could release it before the timeout on a slow box)."""

    def predict_chunk(self, observation):
        if self.calls == 1:
            threading.Event().wait(0.6)
        return super().predict_chunk(observation)


def test_hung_inference_times_out_and_its_late_chunk_is_never_executed() -> None:
    arm = FakeArm()
    result = drive(arm, HangsOnce(10), config(max_steps=80, inference_timeout_s=0.3))
    assert result.faults >= 1 and "TimeoutError" in result.fault_messages[0]
    assert not any(200 <= v < 300 for v in arm.trace)  # the stale chunk was dropped
    assert any(v >= 300 for v in arm.trace)  # inference answered again: recovered


class NaNOnce(ScriptedRunner):
    def predict_chunk(self, observation):
        chunk = super().predict_chunk(observation)
        return np.full_like(chunk, np.nan) if self.calls == 2 else chunk


def test_non_finite_chunk_is_a_fault_not_a_motion() -> None:
    arm = FakeArm()
    result = drive(arm, NaNOnce(10), config())
    assert result.faults == 1 and "non-finite" in result.fault_messages[0]
    assert all(np.isfinite(arm.trace)) and any(v >= 300 for v in arm.trace)


class WildOnce(ScriptedRunner):
    def predict_chunk(self, observation):
        chunk = super().predict_chunk(observation)
        return chunk + 10_000 if self.calls == 2 else chunk


def test_out_of_limit_chunk_is_a_fault() -> None:
    limits = (np.full(ACTION_DIM, -1.0, np.float32), np.full(ACTION_DIM, 5_000.0, np.float32))
    arm = FakeArm(limits=limits)
    result = drive(arm, WildOnce(10), config())
    assert result.faults == 1 and "outside" in result.fault_messages[0]
    assert max(arm.trace) < 5_000 and any(v >= 300 for v in arm.trace)


def test_ctrl_c_holds_the_last_command_and_disconnects() -> None:
    arm = FakeArm(interrupt_on=15)
    with pytest.raises(Interrupted) as stop:
        drive(arm, ScriptedRunner(10), config())
    assert arm.connected is False
    assert np.array_equal(arm.sent[-1], arm.sent[-2])  # the held command, sent again
    assert np.array_equal(stop.value.held, arm.sent[-1])


def test_stop_mode_ends_at_the_first_fault() -> None:
    arm = FakeArm()
    result = drive(arm, ScriptedRunner(10, fail_on_call=1), config(on_fault="stop"))
    assert result.error is not None and "model exploded" in result.error and result.faults == 0


def test_a_stalled_tick_shows_in_jitter_and_deadline_misses() -> None:
    # tick 10's command takes 70 ms at 50 fps (20 ms a tick): tick 11 starts >= 50 ms late (a
    # deadline miss), tick 12 >= 30 ms; a loaded machine only adds lateness, so bounds from below
    arm = FakeArm(stall_on=10, stall_s=0.07)
    result = drive(arm, ScriptedRunner(10), config(max_steps=25))
    assert 1 <= result.deadline_misses <= 25
    assert 0 <= result.tick_jitter_p50_s <= result.tick_jitter_p99_s
    assert result.tick_jitter_p99_s >= 0.03


class OneCameraRunner(ScriptedRunner):
    camera_names = ("top",)


@pytest.mark.parametrize(
    ("runner", "says"),
    [
        (OneCameraRunner(10), "observation.images.top"),  # the arm has no such camera
        (type("Wide", (ScriptedRunner,), {"action_dim": ACTION_DIM + 1})(10), "observation.state"),
    ],
)
def test_a_policy_that_does_not_fit_the_arm_is_refused_before_it_moves(runner, says) -> None:
    arm = FakeArm()
    with pytest.raises((KeyError, ValueError), match=says):
        drive(arm, runner, config())
    assert arm.sent == [] and arm.connected is False  # never moved, disconnected


class Learned60(ScriptedRunner):
    fps = 60.0


def test_a_robot_at_another_fps_than_the_policy_learned_is_refused_before_it_moves() -> None:
    arm = FakeArm()
    arm.fps = 30
    with pytest.raises(
        ValueError, match="fps: the policy learned at 60 fps but the robot runs at 30"
    ):
        drive(arm, Learned60(10), config(fps=60))
    assert arm.sent == [] and arm.connected is False  # never connected, never moved
    with pytest.raises(
        ValueError, match="fps: the loop would tick at 50 fps but the robot runs at 30"
    ):
        drive(arm, ScriptedRunner(10), config(fps=50))  # a policy without a rate: the loop's
    arm.fps = 60
    check_fit(arm, Learned60(10), config(fps=60))  # agreeing: fine
    check_fit(FakeArm(), Learned60(10), config(fps=50))  # a robot without fps: caller's choice


@pytest.mark.parametrize(
    ("latency", "threshold", "fits"),
    [("0.05", 0.5, True), ("0.3", 0.5, False), ("0.05", "auto", True), ("0.3", "auto", False)],
)
def test_latency_budget_says_whether_inference_fitted_the_schedule(
    latency, threshold, fits
) -> None:
    """Chunk 10 at 50 fps: g=0.5 leaves 0.1 s; auto keeps async while 2 L + 2 ticks <= 10. Too
    slow, the arm waits between chunks: underruns at a fixed g, auto falls back to sync."""
    cfg = ControlConfig(mode="async", chunk_size_threshold=threshold, fps=50, max_steps=80,
                        latency=latency)  # fmt: skip
    result = run_episode(RecordingEnv(), ScriptedRunner(10), cfg)
    budget = latency_budget(result, cfg, 10)
    assert budget["fits"] is fits and budget["latency_p95_s"] == pytest.approx(float(latency))
    assert budget["t_execution_s"] == pytest.approx(0.1 if threshold == 0.5 else 0.08)
    assert (result.idle_fraction_running > 0) is not fits
    assert (result.underruns > 0) is (not fits and threshold != "auto")
