"""The queue-size plot eval writes for every mode is a real PNG."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from edgevla_runtime.control.config import ControlConfig
from edgevla_runtime.control.loop import run_episode
from edgevla_runtime.testing import RecordingEnv, ScriptedRunner

from edgevla.eval.report import plot_queue_size


def test_queue_plot_is_a_png_of_the_queue(tmp_path) -> None:
    pngs = []
    for threshold in (0.2, 0.8):  # a different schedule, a different queue trace, another picture
        cfg = ControlConfig(mode="async", chunk_size_threshold=threshold, latency="0.1", fps=30,
                            max_steps=40)  # fmt: skip
        result = run_episode(RecordingEnv(), ScriptedRunner(10), cfg)
        path = plot_queue_size(result, tmp_path / "plots" / f"queue_{threshold}.png", chunk_size=10)
        image = plt.imread(path)  # (H, W, 4) floats
        assert image.shape[0] > 100 and image.shape[1] > 100
        assert len(np.unique(image.reshape(-1, image.shape[-1]), axis=0)) > 10  # drawn, not blank
        pngs.append(path.read_bytes())
    assert pngs[0] != pngs[1]
