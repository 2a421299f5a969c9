"""Control: action queue and aggregation, schedules (sync, async, auto), clocks, the loop.

Standard library and numpy only: this is what runs on the board and in the remote policy
server's loop, so it never imports torch, MuJoCo, matplotlib or rich.
"""

from edgevla_runtime.control.aggregation import AGGREGATE_FN_NAMES, get_aggregate_fn
from edgevla_runtime.control.clocks import (
    InferenceResult,
    LatencySpec,
    RealTimeClock,
    VirtualClock,
    latency_ticks,
    parse_latency_spec,
)
from edgevla_runtime.control.config import ControlConfig
from edgevla_runtime.control.loop import ControlEnv, run_episode
from edgevla_runtime.control.metrics import EpisodeResult
from edgevla_runtime.control.queue import ActionQueue, MergeReport
from edgevla_runtime.control.schedule import (
    AutoSchedule,
    BudgetCheck,
    SyncSchedule,
    ThresholdSchedule,
    check_budget,
    make_schedule,
)

__all__ = [
    "AGGREGATE_FN_NAMES",
    "ActionQueue",
    "AutoSchedule",
    "BudgetCheck",
    "ControlConfig",
    "ControlEnv",
    "EpisodeResult",
    "InferenceResult",
    "LatencySpec",
    "MergeReport",
    "RealTimeClock",
    "SyncSchedule",
    "ThresholdSchedule",
    "VirtualClock",
    "check_budget",
    "get_aggregate_fn",
    "latency_ticks",
    "make_schedule",
    "parse_latency_spec",
    "run_episode",
]
