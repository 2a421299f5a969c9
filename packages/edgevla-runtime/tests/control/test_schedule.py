"""Schedules (sync, fixed threshold, auto) and the T_inference <= T_execution budget check."""

from __future__ import annotations

import numpy as np
import pytest
from edgevla_runtime.control.config import ControlConfig
from edgevla_runtime.control.schedule import (
    AutoSchedule,
    SyncSchedule,
    ThresholdSchedule,
    check_budget,
    make_schedule,
)


def test_sync_requests_only_on_empty_queue_and_anchors_at_arrival() -> None:
    s = SyncSchedule()
    assert s.anchor == "arrival"
    assert s.should_request(0, in_flight=False)
    assert not s.should_request(0, in_flight=True)
    assert not s.should_request(1, in_flight=False)


def test_threshold_boundaries() -> None:
    s = ThresholdSchedule(0.2, chunk_len=100)
    assert s.anchor == "request"
    assert not s.should_request(21, in_flight=False)
    assert s.should_request(20, in_flight=False)  # 20 / 100 <= 0.2 despite float noise
    assert not s.should_request(20, in_flight=True)
    assert ThresholdSchedule(0.0, 10).should_request(0, False)
    assert not ThresholdSchedule(0.0, 10).should_request(1, False)
    assert ThresholdSchedule(1.0, 10).should_request(10, False)


def test_auto_waits_for_empty_queue_before_first_measurement() -> None:
    s = AutoSchedule(fps=30, chunk_len=20, margin_ticks=2)
    assert s.p95_s is None
    assert s.should_request(0, False)
    assert not s.should_request(1, False)


def test_auto_trigger_is_p95_latency_plus_margin() -> None:
    s = AutoSchedule(fps=30, chunk_len=20, margin_ticks=2)
    s.observe_latency(0.3)  # the first measurement seeds the estimate: 9 ticks + 2 margin
    assert s.trigger_actions == pytest.approx(11.0)
    assert s.threshold == pytest.approx(11 / 20)
    assert s.should_request(11, False)
    assert not s.should_request(12, False)
    assert not s.should_request(5, True)


def test_auto_p95_tracks_a_window() -> None:
    s = AutoSchedule(fps=60, chunk_len=100, margin_ticks=0, window=20)
    lat = [0.1] * 19 + [1.0]
    for x in lat:
        s.observe_latency(x)
    assert s.p95_s == pytest.approx(float(np.percentile(lat, 95)))
    for _ in range(20):  # the slow outlier leaves the window
        s.observe_latency(0.1)
    assert s.p95_s == pytest.approx(0.1)


def test_make_schedule_follows_config() -> None:
    assert isinstance(make_schedule(ControlConfig(mode="sync"), 10), SyncSchedule)
    t = make_schedule(ControlConfig(chunk_size_threshold=0.2), 100)
    assert isinstance(t, ThresholdSchedule) and t.trigger_actions == pytest.approx(20)
    a = make_schedule(ControlConfig(chunk_size_threshold="auto", auto_margin_ticks=3), 50)
    assert isinstance(a, AutoSchedule) and a.margin_ticks == 3


def test_budget_paper_optimised_act_fits() -> None:
    b = check_budget(latency_s=0.32, fps=60, chunk_size=100, threshold=0.2)
    assert b.fits
    assert b.actions_left_at_request == 20
    assert b.latency_ticks == 20  # ceil(19.2)
    assert b.t_execution_s == pytest.approx(1 / 3)
    assert b.margin_s == pytest.approx(1 / 3 - 0.32)


def test_budget_paper_fp32_act_does_not_fit_and_suggests() -> None:
    b = check_budget(latency_s=2.86, fps=60, chunk_size=100, threshold=0.2)
    assert not b.fits
    assert b.margin_s == pytest.approx(1 / 3 - 2.86)
    assert b.latency_ticks == 172
    assert b.min_threshold is None  # 172 of 100 actions: no threshold can cover it
    assert b.max_fps == pytest.approx(20 / 2.86)
    assert b.min_chunk_size == 860
    assert check_budget(2.86, b.max_fps, 100, 0.2).fits
    assert check_budget(2.86, 60, b.min_chunk_size, 0.2).fits
    assert not check_budget(2.86, 60, b.min_chunk_size - 1, 0.2).fits


def test_budget_edge_and_degenerate_cases() -> None:
    assert check_budget(1 / 3, 60, 100, 0.2).fits  # arrives exactly when the queue empties
    b = check_budget(0.1, 30, 10, 0.1)  # 3 ticks needed, 1 queued
    assert not b.fits and b.min_threshold == pytest.approx(0.3)
    assert check_budget(0.1, 30, 10, b.min_threshold).fits
    zero = check_budget(0.1, 30, 10, 0.0)
    assert not zero.fits and zero.min_chunk_size is None and zero.max_fps is None
    instant = check_budget(0.0, 30, 10, 0.0)
    assert instant.fits and instant.to_dict()["max_fps"] is None
    with pytest.raises(ValueError, match=">= 0"):
        check_budget(-0.1, 30, 10, 0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        check_budget(0.1, 30, 10, 1.5)


def test_auto_falls_back_to_sync_when_no_threshold_can_fit():
    """2.86 s at 30 fps is 86 ticks: a 100-action chunk loses 86 of them to latency and the 14
    left cannot cover the next 86 (needs C >= 2L + margin), so auto stops anchoring chunks in
    the past and waits for whole chunks instead."""
    s = AutoSchedule(fps=30, chunk_len=100, margin_ticks=2)
    assert s.anchor == "request" and not s.fell_back
    s.observe_latency(1.6)  # 48 ticks: 2 * 48 + 2 = 98 <= 100 still fits
    assert not s.fell_back
    s.observe_latency(2.86)
    assert s.fell_back and s.anchor == "arrival"
    assert not s.should_request(queue_size=5, in_flight=False)  # finish the current chunk first
    assert s.should_request(queue_size=0, in_flight=False)
    assert not s.should_request(queue_size=0, in_flight=True)
    for _ in range(20):  # latency drops (e.g. a faster runtime): async again
        s.observe_latency(0.1)
    assert not s.fell_back and s.should_request(queue_size=5, in_flight=False)
