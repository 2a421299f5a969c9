"""Control: action queue and aggregation, schedules (sync, async, auto), clocks, the loop.

Standard library and numpy only (matplotlib and rich are imported lazily where a plot or a
table is drawn): this package becomes the board-side runtime and the remote policy server's
loop, so it must never import torch.
"""

from edgevla.control.aggregation import AGGREGATE_FN_NAMES, get_aggregate_fn
from edgevla.control.clocks import (
    InferenceResult,
    LatencySpec,
    RealTimeClock,
    VirtualClock,
    latency_ticks,
    parse_latency_spec,
)
from edgevla.control.config import ControlConfig
from edgevla.control.loop import ControlEnv, run_episode
from edgevla.control.metrics import EpisodeResult, plot_queue_size
from edgevla.control.queue import ActionQueue, MergeReport
from edgevla.control.runner import PolicyRunner, check_chunk
from edgevla.control.schedule import (
    AutoSchedule,
    BudgetCheck,
    SyncSchedule,
    ThresholdSchedule,
    check_budget,
    make_schedule,
    schedule_command,
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
    "PolicyRunner",
    "RealTimeClock",
    "SyncSchedule",
    "ThresholdSchedule",
    "VirtualClock",
    "check_budget",
    "check_chunk",
    "get_aggregate_fn",
    "latency_ticks",
    "make_schedule",
    "parse_latency_spec",
    "plot_queue_size",
    "run_episode",
    "schedule_command",
]
