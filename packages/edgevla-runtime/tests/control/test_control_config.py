"""ControlConfig validation: refused values come with a message that says how to fix them."""

from __future__ import annotations

import dataclasses

import pytest
from edgevla_runtime.control.config import ControlConfig


def test_defaults_are_valid_and_frozen() -> None:
    c = ControlConfig()
    assert c.mode == "async" and c.chunk_size_threshold == 0.5
    assert c.aggregate_fn_name == "weighted_average"
    assert c.step_limit == 30 * 30
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.fps = 60  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"chunk_size_threshold": 1.5}, r"in \[0, 1\]"),
        ({"chunk_size_threshold": -0.1}, r"in \[0, 1\]"),
        ({"chunk_size_threshold": float("nan")}, r"in \[0, 1\]"),
        ({"chunk_size_threshold": "fast"}, "'auto'"),
        ({"mode": "turbo"}, "'sync'"),
        ({"fps": 0}, "positive control rate"),
        ({"fps": -30}, "positive control rate"),
        ({"n_action_steps": 0}, ">= 1"),
        ({"aggregate_fn_name": "median"}, "weighted_average"),
        ({"latency": "-0.2"}, "negative"),
        ({"latency": "gaussian:1,2"}, "lognormal"),
        ({"max_steps": 0}, ">= 1"),
        ({"episode_time_s": 0}, "positive"),
        ({"temporal_ensemble_coeff": float("inf")}, "finite"),
        ({"auto_margin_ticks": -1}, ">= 0"),
        ({"auto_window": 0}, ">= 1"),
        ({"inference_timeout_s": 0}, "> 0"),
    ],
)
def test_invalid_values_refused(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ControlConfig(**kwargs)


def test_accepted_forms() -> None:
    assert ControlConfig(chunk_size_threshold="auto").chunk_size_threshold == "auto"
    assert ControlConfig(chunk_size_threshold=0).chunk_size_threshold == 0
    assert ControlConfig(latency="uniform:0.2,0.4").latency_spec.kind == "uniform"
    assert ControlConfig(max_steps=7, episode_time_s=100).step_limit == 7
    assert ControlConfig(fps=60, episode_time_s=2.5).step_limit == 150
