"""The queue-size plot eval writes for every mode is a real PNG."""

from __future__ import annotations

from edgevla_runtime.control.config import ControlConfig
from edgevla_runtime.control.loop import run_episode
from edgevla_runtime.testing import RecordingEnv, ScriptedRunner

from edgevla.eval.report import plot_queue_size


def test_queue_plot_is_a_png(tmp_path) -> None:
    cfg = ControlConfig(mode="async", chunk_size_threshold=0.5, latency="0.1", fps=30, max_steps=40)
    result = run_episode(RecordingEnv(), ScriptedRunner(10), cfg)
    path = plot_queue_size(result, tmp_path / "plots" / "queue.png", chunk_size=10)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
