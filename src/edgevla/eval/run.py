"""`edgevla eval`: the paper's protocol for a checkpoint (or, later, a bundle).

Prints the paper-format table (policy, format, latency, Acc. Test (20), Acc. Val (10),
Global (30)) with one row per control mode asked for, writes results.json, a per-cluster
success map and a queue-size plot, and can perturb the scene (a camera that moved, dimmer
light) to measure the accuracy loss the paper warns about.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from edgevla_runtime.control.config import ControlConfig
from edgevla_runtime.control.metrics import EpisodeResult
from edgevla_runtime.features import DEFAULT_FPS

from edgevla.console import console, emit_json, err_console, progress, table
from edgevla.dataset.plan import Plan
from edgevla.eval.parallel import EnvSpec, RunnerSpec, run_parallel
from edgevla.eval.protocol import eval_episodes, positions_seen_in_training
from edgevla.eval.report import (
    fmt_first_grasp,
    fmt_outcomes,
    fmt_rate,
    fmt_s,
    plot_cluster_map,
    plot_first_grasps,
    plot_queue_size,
    summarise,
)
from edgevla.sim.scene import CameraOffset, SceneConfig


@dataclass
class EvalArgs:
    """Closed-loop evaluation on the plan's Test (20) / Val (10) / Global (30) positions."""

    checkpoint: Path
    plan: Path = Path("outputs/plan.json")
    out: Path | None = None
    """where results.json and figures go (default: <checkpoint>/eval)"""
    modes: tuple[Literal["sync", "async"], ...] = ("async",)
    threshold: str = "0.5"
    """async chunk_size_threshold in [0, 1], or "auto" (latency-aware)"""
    aggregate: str = "weighted_average"
    n_action_steps: int | None = None
    latency: str = "measured"
    """virtual inference latency: measured | 0.32 | uniform:LO,HI | lognormal:MEDIAN,SIGMA"""
    episodes: int = 1
    """rollouts per position (more seeds, tighter figures)"""
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
    noise_scale: float = 1.0
    """flow-matching policies: scale of the initial noise (1 = SmolVLA's sampler)"""
    label: str | None = None
    json: bool = False


def policy_rate(checkpoint: Path, requested: int | None) -> int:
    """The control rate to run a checkpoint at: the requested one, else the rate its training
    data was recorded at, else 30 fps. A request that differs from the training rate is allowed
    (it is an experiment) but said out loud: the chunk then plays faster or slower than taught."""
    from edgevla.policies.checkpoint import read_train_info

    trained = read_train_info(checkpoint).get("fps")
    if requested is not None and requested <= 0:
        raise ValueError(f"--fps must be positive, got {requested}")
    if requested is None and trained:
        return int(trained)
    if requested is None:
        _warn_once(
            f"{checkpoint} does not say what rate it learned at (no train_info.json); running it "
            f"at {DEFAULT_FPS} fps: pass --fps with its dataset's rate if that is wrong"
        )
        return DEFAULT_FPS
    if trained and int(trained) != requested:
        _warn_once(
            f"{checkpoint} learned from {trained} fps data; running it at {requested} fps plays "
            f"its action chunks at {requested / trained:.2g}x speed"
        )
    return requested


_overlaps: dict[tuple[str, tuple[str, ...]], dict[str, list[int]]] = {}


def training_overlap(plan: Plan, plan_path: Path, checkpoint: Path) -> dict[str, list[int]]:
    """Which Test / Val positions the checkpoint's training data started from (its
    train_info.json names the datasets); warns when any did, since those are not fresh.
    Computed once per (plan, datasets): `select` asks for every checkpoint of a run."""
    from edgevla.policies.checkpoint import read_train_info

    datasets = [str(d) for d in read_train_info(checkpoint).get("datasets") or []]
    key = (str(plan_path), tuple(datasets))
    if key not in _overlaps:
        _overlaps[key] = positions_seen_in_training(plan, datasets)
    seen = _overlaps[key]
    for name, idx in seen.items():
        if idx:
            _warn_once(
                f"{len(idx)} {name} position(s) of the plan ({idx}) are start positions "
                f"of training episodes in {datasets}: scores on them are not {name} scores; "
                "evaluate with the plan the dataset was recorded from"
            )
    return seen


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    """Print a warning to stderr once per process (select and bench ask for every run)."""
    if message not in _warned:
        _warned.add(message)
        err_console.print(f"[yellow]warning:[/] {message}")


def control_config(args: EvalArgs, mode: str, fps: float) -> ControlConfig:
    threshold: float | str = args.threshold if args.threshold == "auto" else float(args.threshold)
    return ControlConfig(
        mode=mode, chunk_size_threshold=threshold, aggregate_fn_name=args.aggregate,
        n_action_steps=args.n_action_steps, fps=fps, latency=args.latency,
        episode_time_s=args.episode_time_s,
    )  # fmt: skip


def evaluate(args: EvalArgs, quiet: bool = False) -> dict[str, Any]:
    plan = Plan.load(args.plan)
    spec = RunnerSpec("checkpoint", Path(args.checkpoint), noise_scale=args.noise_scale)
    probe = spec.build()  # fail fast in this process on a bad checkpoint
    h, w = probe.image_hw
    offsets = ()
    if args.camera_moved:
        offsets = (
            CameraOffset(
                args.camera_moved, tuple(args.camera_shift_m), tuple(args.camera_turn_deg)
            ),
        )
    scene = SceneConfig(
        image_height=h,
        image_width=w,
        fps=policy_rate(Path(args.checkpoint), args.fps),
        camera_offsets=offsets,
        light_intensity=args.light_intensity,
    )
    env_spec = EnvSpec(scene, args.episode_time_s)
    episodes = eval_episodes(plan, args.episodes, tuple(args.sets))
    seen = training_overlap(plan, Path(args.plan), Path(args.checkpoint))
    out = Path(args.out) if args.out else Path(args.checkpoint) / "eval"
    out.mkdir(parents=True, exist_ok=True)
    rows, per_mode = [], {}
    for mode in args.modes:
        cfg = control_config(args, mode, scene.fps)
        t0 = time.perf_counter()
        with progress(quiet) as bar:
            task = bar.add_task(f"eval {mode}", total=len(episodes), status="")
            done = {"ok": 0, "n": 0}

            def tick(r: dict[str, Any], done=done, task=task) -> None:
                done["n"] += 1
                done["ok"] += bool(r["success"])
                bar.update(task, advance=1, status=f"success {done['ok']}/{done['n']}")

            results = run_parallel(episodes, spec, env_spec, cfg, args.workers, on_done=tick)
        summary = summarise(results)
        summary["wall_s"] = time.perf_counter() - t0
        summary["control"] = {k: v for k, v in cfg.__dict__.items()}
        tag = f"{mode}" + (f"-{args.threshold}" if mode == "async" else "")
        summary["cluster_map"] = str(
            plot_cluster_map(
                plan,
                results,
                out / f"clusters_{tag}.png",
                f"{args.label or args.checkpoint} ({tag})",
            )
        )
        summary["grasp_plot"] = str(
            plot_first_grasps(
                results, out / f"grasps_{tag}.png", f"{args.label or args.checkpoint} ({tag})"
            )
        )
        first = results[0]
        trace = EpisodeResult(
            **{k: first[k] for k in EpisodeResult.__dataclass_fields__ if k in first}
        )
        summary["queue_plot"] = str(
            plot_queue_size(
                trace,
                out / f"queue_{tag}.png",
                chunk_size=probe.chunk_size,
                title=f"{tag}: {first['key']}",
            )
        )
        per_mode[mode] = {"summary": summary, "episodes": results}
        rows.append(
            (args.label or Path(args.checkpoint).name, "PyTorch FP32", mode, fmt_s(summary["latency_p50_s"]),
             fmt_rate(summary["success_test"]), fmt_rate(summary["success_val"]), fmt_rate(summary["success_global"]),
             f"{summary['idle_fraction']:.1%}", fmt_s(summary["completion_time_s"]))
        )  # fmt: skip
    result = {
        "checkpoint": str(args.checkpoint),
        "plan": str(args.plan),
        "fps": scene.fps,
        "noise_scale": args.noise_scale,
        "perturbation": {"camera_moved": args.camera_moved, "camera_shift_m": args.camera_shift_m,
                         "camera_turn_deg": args.camera_turn_deg, "light_intensity": args.light_intensity},
        "modes": {m: v["summary"] for m, v in per_mode.items()},
        "positions_seen_in_training": seen,
    }  # fmt: skip
    (out / "results.json").write_text(
        json.dumps(
            {**result, "episodes": {m: v["episodes"] for m, v in per_mode.items()}}, default=str
        )
    )
    result["table"] = [
        dict(
            zip(
                [
                    "policy",
                    "format",
                    "mode",
                    "latency",
                    "acc_test",
                    "acc_val",
                    "global",
                    "idle",
                    "completion",
                ],
                r,
                strict=True,
            )
        )
        for r in rows
    ]
    result["results_file"] = str(out / "results.json")
    return result


def run_eval(args: EvalArgs) -> dict[str, Any]:
    result = evaluate(args, quiet=args.json)
    if args.json:
        emit_json(result)
    else:
        n = {m: v for m, v in result["modes"].items()}
        any_mode = next(iter(n.values()))
        cols = ["Policy", "Format", "Mode", "Latency", f"Acc. Test ({any_mode['n_test']})",
                f"Acc. Val ({any_mode['n_val']})", f"Global ({any_mode['n_global']})", "Idle", "Completion"]  # fmt: skip
        console.print(table("edgevla eval", cols, [tuple(r.values()) for r in result["table"]]))
        for mode, summary in result["modes"].items():
            console.print(f"{mode} failures: {fmt_outcomes(summary['outcomes'])}")
            console.print(f"{mode} {fmt_first_grasp(summary['first_grasp'])}")
        console.print(f"results: {result['results_file']}")
    return result
