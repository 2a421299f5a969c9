"""Latency specs (parsing, validation, seeded sampling) and tick arithmetic."""

from __future__ import annotations

import numpy as np
import pytest
from edgevla_runtime.control.clocks import LatencySpec, latency_ticks, parse_latency_spec


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("measured", LatencySpec("measured")),
        ("0.32", LatencySpec("fixed", 0.32)),
        ("fixed:2.86", LatencySpec("fixed", 2.86)),
        ("uniform:0.2,0.4", LatencySpec("uniform", 0.2, 0.4)),
        ("lognormal:0.3,0.25", LatencySpec("lognormal", 0.3, 0.25)),
        (0.5, LatencySpec("fixed", 0.5)),
    ],
)
def test_parse(text: str | float, expected: LatencySpec) -> None:
    assert parse_latency_spec(text) == expected
    assert parse_latency_spec(str(expected)) == expected  # round-trips


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("-0.1", "cannot be negative"),
        ("fixed:-1", "cannot be negative"),
        ("uniform:-0.1,0.2", "0 <= LOW <= HIGH"),
        ("uniform:0.4,0.2", "0 <= LOW <= HIGH"),
        ("lognormal:0,0.2", "MEDIAN > 0"),
        ("lognormal:0.3,-1", "SIGMA >= 0"),
        ("uniform:0.2", "cannot parse"),
        ("soon", "cannot parse"),
        ("fixed:nan", "finite"),
    ],
)
def test_invalid_specs_refused(text: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_latency_spec(text)


def test_sampling_is_seeded_and_nonnegative() -> None:
    for spec in (LatencySpec("uniform", 0.2, 0.4), LatencySpec("lognormal", 0.3, 0.5)):
        a = [spec.sample(np.random.default_rng(7), 0.0) for _ in range(3)]
        rng1, rng2 = np.random.default_rng(7), np.random.default_rng(7)
        x = [spec.sample(rng1, 0.0) for _ in range(200)]
        y = [spec.sample(rng2, 0.0) for _ in range(200)]
        assert x == y and min(x) >= 0 and len(set(a)) == 1
    u = [LatencySpec("uniform", 0.2, 0.4).sample(np.random.default_rng(i), 0) for i in range(50)]
    assert min(u) >= 0.2 and max(u) <= 0.4
    assert LatencySpec("measured").sample(np.random.default_rng(0), 0.123) == 0.123
    assert LatencySpec("fixed", 0.5).sample(np.random.default_rng(0), 9.0) == 0.5


def test_negative_measured_latency_rejected() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        LatencySpec("measured").sample(np.random.default_rng(0), -0.01)


@pytest.mark.parametrize(
    ("latency", "fps", "ticks"),
    [(0.0, 30, 0), (0.1, 30, 3), (0.35, 60, 21), (0.32, 60, 20), (2.86, 60, 172), (1e-4, 30, 1)],
)
def test_latency_ticks(latency: float, fps: float, ticks: int) -> None:
    assert latency_ticks(latency, fps) == ticks
