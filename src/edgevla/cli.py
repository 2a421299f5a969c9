"""The `edgevla` command line: thin. Each command is a dataclass of arguments (parsed by tyro)
and one function that takes it. Commands are looked up by their words, e.g. `edgevla sim bench`.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

# command words -> (module, Args dataclass name, function name, one-line help)
COMMANDS: dict[tuple[str, ...], tuple[str, str, str, str]] = {
    ("demo",): ("edgevla.demo", "DemoArgs", "run", "run the whole pipeline as far as it is built"),
    ("bench", "async"): (
        "edgevla.eval.async_bench",
        "AsyncBenchArgs",
        "run_async_bench",
        "sync vs async vs auto at the paper's latencies (virtual clock)",
    ),
    ("sim", "bench"): (
        "edgevla.sim.bench",
        "SimBenchArgs",
        "run",
        "environment steps/s and expert success rate",
    ),
    ("sim", "snapshot"): (
        "edgevla.sim.snapshot",
        "SnapshotArgs",
        "run",
        "PNG of the camera views (and an expert rollout)",
    ),
    ("plan",): (
        "edgevla.dataset.plan",
        "PlanArgs",
        "run_plan",
        "draw a recording plan: clusters, starts, recovery, held-out cluster, eval sets",
    ),
    ("record",): (
        "edgevla.dataset.record",
        "RecordArgs",
        "run_record",
        "record the expert through a plan into a LeRobot v3 dataset (crash-safe)",
    ),
    ("audit",): (
        "edgevla.dataset.audit",
        "AuditArgs",
        "run_audit",
        "audit a dataset: coverage, camera consistency, lighting, contrast, integrity, no cheating",
    ),
    ("train",): (
        "edgevla.train.loop",
        "TrainArgs",
        "run_train",
        "train ACT or the SmolVLA-architecture VLA; checkpoints, val loss, --resume",
    ),
    ("pretrain",): (
        "edgevla.train.pretrain",
        "PretrainArgs",
        "run_pretrain",
        "pre-train ACT's ResNet trunk on labelled simulation frames (no ImageNet here)",
    ),
    ("select",): (
        "edgevla.train.select",
        "SelectArgs",
        "run_select",
        "choose a run's checkpoint by closed-loop success on Test/Val",
    ),
    ("eval",): (
        "edgevla.eval.run",
        "EvalArgs",
        "run_eval",
        "closed-loop success on the plan's Test/Val/Global positions, sync vs async",
    ),
    ("eval", "open-loop"): (
        "edgevla.eval.open_loop",
        "OpenLoopArgs",
        "run_open_loop",
        "predicted chunks vs recorded actions on train / val episodes (fit vs generalisation)",
    ),
    ("schedule",): (
        "edgevla.control.schedule",
        "ScheduleArgs",
        "run_schedule",
        "does T_inference < T_execution hold for a latency, fps, chunk, threshold",
    ),
}


def _usage() -> str:
    lines = [
        "usage: edgevla COMMAND [ARGS]  (edgevla COMMAND --help for its arguments)",
        "",
        "commands:",
    ]
    width = max(len(" ".join(k)) for k in COMMANDS)
    for words, (_, _, _, help_) in COMMANDS.items():
        lines.append(f"  {' '.join(words):<{width}}  {help_}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    import tyro

    argv = list(sys.argv[1:] if argv is None else argv)
    match = None
    for n in (2, 1):
        if tuple(argv[:n]) in COMMANDS:
            match = tuple(argv[:n])
            break
    if match is None:
        print(_usage(), file=sys.stderr if argv and argv[0] not in ("-h", "--help") else sys.stdout)
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    module_name, args_name, fn_name, help_ = COMMANDS[match]
    module = importlib.import_module(module_name)
    args_type = getattr(module, args_name)
    args = tyro.cli(
        args_type, args=argv[len(match) :], prog=f"edgevla {' '.join(match)}", description=help_
    )
    result = getattr(module, fn_name)(args)
    code = (
        getattr(result, "exit_code", None)
        if not isinstance(result, dict)
        else result.get("exit_code")
    )
    return int(code or 0)


if __name__ == "__main__":
    raise SystemExit(main())
