"""`edgevla eval`: closed-loop success on the plan's Test (20) / Val (10) / Global (30) positions.

Prints the paper-format table (policy, format, latency, Acc. Test, Acc. Val, Global) with one
row per control mode (with `--clock realtime` also latency p99, tick jitter p50/p99 and deadline
misses; with `--remote` the server's inference time and the network's share), the failures and
first-grasp summary per mode, and where results.json went; `--json` prints one JSON object
instead. Ctrl-C keeps the finished episodes (<out>/episodes.jsonl) and the same command
continues from them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from edgevla.commands import present
from edgevla.console import console, table
from edgevla.errors import EXIT_OK
from edgevla.eval.report import fmt_first_grasp, fmt_outcomes
from edgevla.eval.run import TABLE_KEYS, EvalConfig, EvalResult, evaluate


@dataclass
class Args:
    """Closed-loop evaluation on the plan's Test (20) / Val (10) / Global (30) positions."""

    checkpoint: Path | None = None
    """a checkpoint folder or a bundle, run here (or give --remote)"""
    remote: str | None = None
    """HOST:PORT of `edgevla serve`: the policy runs there; each worker is one robot with its
    own session (--workers 4: four robots sharing the server)"""
    token: str | None = None
    """the server's shared token (needed off loopback)"""
    clock: Literal["virtual", "realtime"] = "virtual"
    """virtual: simulated time, latency from --latency (deterministic); realtime: ticks on the
    wall clock at the policy's fps, inference in a thread beside them, each worker a process of
    its own (tick jitter, deadline misses measured; --workers 1 on a 2-core machine)"""
    pin_cpus: str = "off"
    """with --clock realtime and --workers 1 (Linux): auto, or C:I (control thread on CPU C,
    inference on I); measured no better than off on an idle 2-core machine (docs)"""
    plan: Path = Path("outputs/plan.json")
    out: Path | None = None
    """where results.json and figures go (default: <checkpoint>/eval, or
    outputs/eval_remote/HOST_PORT with --remote)"""
    modes: tuple[Literal["sync", "async"], ...] = ("async",)
    threshold: str = "0.5"
    """async chunk_size_threshold in [0, 1], or "auto" (latency-aware)"""
    aggregate: str = "weighted_average"
    n_action_steps: int | None = None
    latency: str = "measured"
    """virtual inference latency: measured | 0.32 | uniform:LO,HI | lognormal:MEDIAN,SIGMA"""
    episodes: int = 1
    """rollouts per position (more seeds: tighter figures for a sampling policy or a drawn
    --latency; a deterministic policy at a fixed latency repeats the same episode)"""
    sets: tuple[Literal["test", "val"], ...] = ("test", "val")
    workers: int = 2
    episode_time_s: float = 20.0
    fps: int | None = None
    """control rate (default: the rate of the policy's training data, from its train_info.json)"""
    camera_moved: str | None = None
    """perturbation: move this camera by --camera-shift-m / --camera-turn-deg"""
    camera_shift_m: tuple[float, float, float] = (0.02, 0.0, 0.0)
    camera_turn_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)
    light_intensity: float = 1.0
    """perturbation: light intensity (1.0 = as recorded)"""
    start_jitter_m: float = 0.0
    """move each rollout's bag start by a seeded offset up to this far (m), as a person resetting
    a real scene would: rollouts of a deterministic policy then differ (0: the planned spot)"""
    start_jitter_deg: float = 0.0
    """... and turn it by up to this much (degrees)"""
    noise_scale: float = 1.0
    """flow-matching policies: scale of the initial noise (1 = SmolVLA's sampler)"""
    label: str | None = None
    resume: bool = True
    """continue from the episodes <out>/episodes.jsonl holds for the same settings
    (--no-resume runs them all again)"""
    json: bool = False
    """print one JSON object instead of tables (for scripts and CI)"""

    def config(self) -> EvalConfig:
        return EvalConfig(
            checkpoint=self.checkpoint, plan=self.plan, out=self.out, modes=tuple(self.modes),
            chunk_size_threshold=self.threshold, aggregate_fn_name=self.aggregate,
            n_action_steps=self.n_action_steps, latency=self.latency, episodes=self.episodes,
            sets=tuple(self.sets), workers=self.workers, episode_time_s=self.episode_time_s,
            fps=self.fps, camera_moved=self.camera_moved,
            camera_shift_m=tuple(self.camera_shift_m), camera_turn_deg=tuple(self.camera_turn_deg),
            light_intensity=self.light_intensity, start_jitter_m=self.start_jitter_m,
            start_jitter_deg=self.start_jitter_deg, noise_scale=self.noise_scale, label=self.label,
            resume=self.resume, remote=self.remote, token=self.token, clock=self.clock,
            pin_cpus=self.pin_cpus,
        )  # fmt: skip


def print_result(result: EvalResult) -> None:
    any_mode = next(iter(result.modes.values())).summary
    rows = result.table()
    cols = ["Policy", "Format", "Mode", "Latency", f"Acc. Test ({any_mode['n_test']})",
            f"Acc. Val ({any_mode['n_val']})", f"Global ({any_mode['n_global']})", "Idle",
            "Completion"]  # fmt: skip
    extra = {"latency_p99": "Latency p99", "jitter_p50": "Jitter p50", "jitter_p99": "Jitter p99",
             "deadline_misses": "Deadline misses", "server_p50": "Server p50",
             "network_p50": "Network p50"}  # fmt: skip
    shown = [key for key in extra if any(key in r for r in rows)]
    cols += [extra[key] for key in shown]
    keys = [*TABLE_KEYS, *shown]
    title = "edgevla eval" + (" (real time)" if any_mode.get("clock") == "realtime" else "")
    console.print(table(title, cols, [tuple(r.get(k, "-") for k in keys) for r in rows]))
    for mode, m in result.modes.items():
        console.print(f"{mode} failures: {fmt_outcomes(m.summary['outcomes'])}")
        console.print(f"{mode} {fmt_first_grasp(m.summary['first_grasp'])}")
        if m.resumed:
            console.print(f"{mode}: {m.resumed} episode(s) kept from an earlier, interrupted run")
    console.print(f"results: {result.results_file}")


def run(args: Args) -> int:
    config = args.config()  # every argument checked before any work
    present(args, lambda report: evaluate(config, progress=report), print_result,
            notes=lambda r: r.warnings)  # fmt: skip
    return EXIT_OK
