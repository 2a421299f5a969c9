"""ControlConfig: every knob of the control loop, frozen and validated once.

Field names follow LeRobot's async client where the concept is the same
(chunk_size_threshold, aggregate_fn_name, fps) and ACT's config otherwise (n_action_steps,
temporal_ensemble_coeff), so a LeRobot user's settings carry over unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from edgevla_runtime.control.aggregation import AGGREGATE_FN_NAMES, DEFAULT_TEMPORAL_ENSEMBLE_COEFF
from edgevla_runtime.control.clocks import (
    CpuPlacement,
    LatencySpec,
    cpu_placement,
    parse_latency_spec,
)
from edgevla_runtime.features import DEFAULT_FPS


@dataclass(frozen=True)
class ControlConfig:
    """How the loop schedules inference and turns chunks into one action per tick.

    mode: "sync" stops the arm while the model runs (observe, infer, execute n_action_steps,
        repeat); "async" keeps executing queued actions while the next chunk is computed.
    chunk_size_threshold: async only. Request a chunk when queue_size / chunk length <= this
        fraction (0: only when the queue is empty; 1: every tick; LeRobot's default 0.5; NXP
        used 0.2), or "auto": request when the queued time falls to the p95 inference latency
        plus `auto_margin_ticks`, the least staleness that still avoids underruns.
    aggregate_fn_name: how overlapping predictions merge; see `aggregation.py`.
    n_action_steps: actions taken from each chunk (None: the whole chunk). In sync mode the
        number executed between inferences; in async mode the chunk length the threshold is a
        fraction of.
    fps: control rate; one action is executed (or held) per tick.
    latency: virtual inference latency for the VirtualClock: "measured", "0.32",
        "uniform:0.2,0.4", "lognormal:0.32,0.2" (see clocks.parse_latency_spec).
    latency_seed: seed of the latency distribution (same seed, same latencies).
    max_steps: hard tick limit; None derives it from episode_time_s * fps.
    episode_time_s: episode time limit in seconds.
    temporal_ensemble_coeff: ACT's m in w_i = exp(-m * i), used by "temporal_ensemble".
    auto_margin_ticks: safety margin of the "auto" threshold, in control ticks.
    auto_window: number of recent inferences the "auto" p95 estimate uses.
    inference_timeout_s: RealTimeClock only; an inference running longer is a fault.
    on_fault: what an inference fault (an error, a timeout, non-finite or out-of-limit actions)
        does. "stop": the episode ends, the arm holding its last command (evaluation: a fault
        is a failed episode). "hold": the arm holds its last command, the queued actions are
        dropped (never replayed once the fault is over), the fault is counted, and the loop
        keeps requesting until inference answers again (the robot loop).
    pin_cpus: RealTimeClock only, Linux: "off", "auto" (control thread on the first CPU,
        inference on the others) or "C:I[,I...]"; see clocks.cpu_placement.
    """

    mode: Literal["sync", "async"] = "async"
    chunk_size_threshold: float | Literal["auto"] = 0.5
    aggregate_fn_name: str = "weighted_average"
    n_action_steps: int | None = None
    fps: float = float(DEFAULT_FPS)
    latency: str = "measured"
    latency_seed: int = 0
    max_steps: int | None = None
    episode_time_s: float = 30.0
    temporal_ensemble_coeff: float = DEFAULT_TEMPORAL_ENSEMBLE_COEFF
    auto_margin_ticks: int = 2
    auto_window: int = 20
    inference_timeout_s: float = 30.0
    on_fault: Literal["stop", "hold"] = "stop"
    pin_cpus: str = "off"

    def __post_init__(self) -> None:
        if self.on_fault not in ("stop", "hold"):
            raise ValueError(f"on_fault must be 'stop' or 'hold', got {self.on_fault!r}")
        if self.mode not in ("sync", "async"):
            raise ValueError(
                f"mode must be 'sync' (arm stops while the model runs) or 'async' (next chunk "
                f"computed while the queue executes); got {self.mode!r}."
            )
        g = self.chunk_size_threshold
        if isinstance(g, str):
            if g != "auto":
                raise ValueError(
                    f"chunk_size_threshold must be a number in [0, 1] or 'auto', got {g!r}."
                )
        elif not (isinstance(g, int | float) and math.isfinite(g) and 0.0 <= g <= 1.0):
            raise ValueError(
                f"chunk_size_threshold must be in [0, 1] (the fraction of the chunk still queued "
                f"when a new observation is sent: 0 = only when empty, 1 = every tick, LeRobot's "
                f"default 0.5) or 'auto'; got {g!r}."
            )
        if self.aggregate_fn_name not in AGGREGATE_FN_NAMES:
            raise ValueError(
                f"aggregate_fn_name {self.aggregate_fn_name!r} is unknown; choose one of "
                f"{', '.join(AGGREGATE_FN_NAMES)}."
            )
        if self.n_action_steps is not None and self.n_action_steps < 1:
            raise ValueError(
                f"n_action_steps must be >= 1 (actions used per chunk) or None for the whole "
                f"chunk; got {self.n_action_steps}."
            )
        if not (math.isfinite(self.fps) and self.fps > 0):
            raise ValueError(
                f"fps must be a positive control rate in Hz, the rate the policy's dataset was "
                f"recorded at (its checkpoint's train_info.json; default {DEFAULT_FPS}); got {self.fps}."
            )
        parse_latency_spec(self.latency)  # raises with the accepted forms
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1 or None, got {self.max_steps}.")
        if not (math.isfinite(self.episode_time_s) and self.episode_time_s > 0):
            raise ValueError(
                f"episode_time_s must be a positive number of seconds, got {self.episode_time_s}."
            )
        if not math.isfinite(self.temporal_ensemble_coeff):
            raise ValueError(
                f"temporal_ensemble_coeff must be finite (ACT uses 0.01), got "
                f"{self.temporal_ensemble_coeff}."
            )
        if self.auto_margin_ticks < 0:
            raise ValueError(
                f"auto_margin_ticks must be >= 0 control ticks, got {self.auto_margin_ticks}."
            )
        if self.auto_window < 1:
            raise ValueError(
                f"auto_window must be >= 1 inferences (about 20 gives a stable p95), got "
                f"{self.auto_window}."
            )
        if not (math.isfinite(self.inference_timeout_s) and self.inference_timeout_s > 0):
            raise ValueError(
                f"inference_timeout_s must be > 0 seconds, got {self.inference_timeout_s}; set it "
                "above the slowest inference you expect (SmolVLA FP32 took 29 s on the i.MX 95)."
            )
        cpu_placement(self.pin_cpus)  # raises with the accepted forms

    @property
    def cpu_placement(self) -> CpuPlacement | None:
        """The parsed `pin_cpus` (None: not pinned)."""
        return cpu_placement(self.pin_cpus)

    @property
    def latency_spec(self) -> LatencySpec:
        """The parsed `latency`."""
        return parse_latency_spec(self.latency)

    @property
    def step_limit(self) -> int:
        """Ticks an episode may last: max_steps, else round(episode_time_s * fps)."""
        if self.max_steps is not None:
            return self.max_steps
        return max(1, round(self.episode_time_s * self.fps))
