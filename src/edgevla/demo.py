"""`edgevla demo` (what `make demo` runs): the whole pipeline as far as it is built, on the
built-in defaults, writing everything under --out (default outputs/demo).

    1. simulate   an expert episode and the three camera views          (sim/)
    2. plan       the paper's recording plan and its figure               (dataset/plan)
    3. record     a small slice of a plan into a LeRobot v3 dataset       (dataset/record)
    4. audit      the recorded dataset                                    (dataset/audit)
    5. train      pre-train the trunk on rendered frames, then a tiny ACT for a few steps
                  from it (shows both loops end to end)                   (train/)
    6. evaluate   the shipped, fully trained ACT (if present) on the paper's Test/Val/Global
                  protocol, sync vs async                                  (eval/, control/)
    7. schedule   the paper's async budget at 0.32 s and 2.86 s           (control/schedule)
    8. export     that ACT as ONNX stages (vision, transformer), parity-checked (deploy/export)
    9. quantize   the selective plan (vision int8 static, transformer fp32): action error
   10. bench      latency per inference: PyTorch vs the fp32 and quantised bundles
   11. evaluate   the quantised bundle on the same protocol (async)
   12. robot      the simulated arm driven in real time by the quantised bundle for a few
                  seconds through the runtime's robot loop (jitter, deadline misses)
   13. remote     the same arm through a policy server on loopback, images as JPEG
                  (round trip split into server inference and network)

Steps 3-5 use small sizes so the demo finishes in minutes on two cores; the README's results
table gives the commands for the full-size runs. The demo calls domain functions; the command
(commands/demo.py) prints.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgevla.progress import ProgressFn, no_progress

SHIPPED_CHECKPOINT = Path(__file__).resolve().parents[2] / "assets" / "act_edge"


@dataclass(frozen=True)
class DemoConfig:
    """Run every built stage of the pipeline on small defaults."""

    out: Path = Path("outputs/demo")
    seed: int = 0
    checkpoint: Path | None = None
    """trained checkpoint to evaluate (default: the shipped assets/act_edge, if present)"""
    eval_episodes: int = 1
    skip_eval: bool = False
    robot_seconds: float = 5.0
    """how long the real-time robot loop drives the simulated arm"""


@dataclass
class DemoResult:
    stages: dict[str, Any]
    rows: list[tuple[str, str, str]]  # (stage, result, output) for the summary table


def run_demo(
    config: DemoConfig,
    progress: ProgressFn = no_progress,
    announce: Callable[[str], None] = lambda title: None,
) -> DemoResult:
    """Every stage in order; `announce(title)` before each, `progress` inside long ones."""
    from edgevla_runtime.control.schedule import check_budget

    from edgevla.dataset.audit import AuditConfig, audit_dataset
    from edgevla.dataset.plan import PlanConfig, write_plan
    from edgevla.dataset.record import RecordConfig, record
    from edgevla.sim.snapshot import SnapshotConfig, snapshot
    from edgevla.train.config import TrainConfig
    from edgevla.train.loop import train

    args = config
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {}
    rows = []

    announce("1. simulate: expert episode and camera views")
    snap = snapshot(SnapshotConfig(out=out / "sim", seed=args.seed, episode=True)).to_dict()
    result["sim"] = snap
    rows.append(
        (
            "simulate",
            f"expert episode success={snap['success']} ({snap['episode_steps']} steps)",
            snap["files"][-1],
        )
    )

    announce("2. plan: 11 clusters, 120 train + 10 val episodes, 20 test + 10 val positions")
    plan = write_plan(PlanConfig(), out / "plan.json", figure=out / "plan.png").to_dict()
    result["plan"] = plan
    rows.append(
        (
            "plan",
            f"{plan['train_episodes']} train ({plan['recovery_share']:.0%} recovery) + {plan['val_episodes']} val",
            plan["figure"],
        )
    )

    announce(
        "3. record: a small plan (3 clusters, 14 episodes, 20% recovery) into a LeRobot v3 dataset"
    )
    small = PlanConfig(
        n_clusters=3,
        positions_per_cluster=4,
        recovery_per_cluster=1,
        val_clusters=(3,),
        test_per_cluster=1,
    )
    write_plan(small, out / "small_plan.json")
    dataset = out / "dataset"
    rec = record(
        RecordConfig(plan=out / "small_plan.json", out=dataset, overwrite=True), progress
    ).to_dict()
    result["record"] = rec
    rows.append(
        (
            "record",
            f"{rec['episodes_recorded']} episodes, {rec['frames']} frames, {rec['frames_per_s']:.0f} frames/s",
            str(dataset),
        )
    )

    announce("4. audit the recorded dataset (the small plan has 4-5 episodes per cluster)")
    audit = audit_dataset(
        dataset, out / "audit", AuditConfig(min_episodes_per_cluster=4), progress
    ).to_dict()
    result["audit"] = {k: v for k, v in audit.items() if k != "findings"}
    rows.append(("audit", f"{audit['status']}: {audit['summary']}", str(out / "audit")))

    announce("5. train: pre-train the trunk on 256 rendered scenes, then a tiny ACT for 30 steps")
    from edgevla.train.pretrain import PretrainConfig, pretrain

    pre = pretrain(
        PretrainConfig(dataset=dataset, out=out / "backbone_tiny", preset="tiny", scenes=256,
                       val_scenes=32, batch_size=16, epochs=1, max_minutes=2.0, val_freq=16),
        progress=progress,
    ).to_dict()  # fmt: skip
    result["pretrain"] = pre
    rows.append(
        (
            "pretrain",
            f"trunk, {pre['steps']} steps, bag position error {pre['bag_xy_error_cm']:.1f} cm",
            pre["figure"],
        )
    )
    run_dir = out / "run_tiny"
    shutil.rmtree(run_dir, ignore_errors=True)
    tr = train(
        TrainConfig(
            policy="act",
            preset="tiny",
            dataset=(dataset,),
            out=run_dir,
            steps=30,
            batch_size=4,
            save_freq=15,
            log_freq=5,
            overrides=(f"pretrained_backbone_weights={pre['weights']}",),
        ),
        progress=progress,
    ).to_dict()
    result["train"] = tr
    rows.append(
        (
            "train",
            f"tiny ACT from that trunk, 30 steps, loss {tr['final_loss']:.3f}, val loss {tr['final_val_loss']:.3f}",
            str(run_dir / "curves.png"),
        )
    )

    ckpt = args.checkpoint or (
        SHIPPED_CHECKPOINT if (SHIPPED_CHECKPOINT / "config.json").exists() else None
    )
    if ckpt is not None and not args.skip_eval:
        from edgevla.eval.run import EvalConfig, evaluate

        announce(f"6. evaluate {ckpt}: Test (20) / Val (10) / Global (30), sync vs async")
        ev = evaluate(EvalConfig(checkpoint=ckpt, plan=out / "plan.json", out=out / "eval", modes=("sync", "async"),
                                 episodes=args.eval_episodes, label="ACT edge"), progress).to_dict()  # fmt: skip
        result["eval"] = {k: v for k, v in ev.items() if k != "episodes"}
        for r in ev["table"]:
            rows.append(
                (
                    f"eval {r['mode']}",
                    f"Test {r['acc_test']}  Val {r['acc_val']}  Global {r['global']}  latency {r['latency']}  idle {r['idle']}",
                    ev["results_file"],
                )
            )
    else:
        rows.append(
            ("eval", "skipped: --skip-eval, or no trained checkpoint at assets/act_edge", "-")
        )

    announce(
        "7. schedule: T_inference < T_execution at the paper's settings (chunk 100, 60 fps, threshold 0.2)"
    )
    budgets = {lat: check_budget(lat, 60, 100, 0.2) for lat in (0.32, 2.86)}
    result["schedule"] = {str(k): v.to_dict() for k, v in budgets.items()}
    for lat, b in budgets.items():
        rows.append(
            (
                f"schedule {lat} s",
                f"{'fits' if b.fits else 'does not fit'} (margin {b.margin_s:+.3f} s)",
                "edgevla schedule --latency " + str(lat),
            )
        )

    if ckpt is not None:
        deploy_stages(config, ckpt, out, result, rows, progress, announce)
    return DemoResult(result, rows)


def deploy_stages(config: DemoConfig, ckpt: Path, out: Path, result: dict, rows: list,
                  progress: ProgressFn, announce: Callable[[str], None]) -> None:  # fmt: skip
    """Steps 8-12: export, quantise, bench, evaluate the bundle, drive the arm in real time."""
    from edgevla_runtime.bundle import BundleRunner
    from edgevla_runtime.control import ControlConfig
    from edgevla_runtime.robot import drive

    from edgevla.deploy.bench import LatencyBenchConfig, bench_latency
    from edgevla.deploy.export import ExportConfig, export_bundle
    from edgevla.deploy.quantize import QuantizeConfig, quantize_bundle
    from edgevla.sim.robot import SimRobot

    announce(
        "8. export: the ACT as ONNX stages (vision, transformer), parity-checked against PyTorch"
    )
    fp32 = export_bundle(
        ExportConfig(checkpoint=ckpt, out=out / "bundle_fp32", overwrite=True), progress
    )
    result["export"] = fp32.to_dict()
    rows.append(
        (
            "export",
            f"{len(fp32.stages)} stages, parity max |diff| {fp32.parity_max_abs:.1e}",
            fp32.bundle,
        )
    )

    announce("9. quantize: selective plan (vision int8 static, transformer fp32)")
    quant = quantize_bundle(QuantizeConfig(bundle=Path(fp32.bundle), out=out / "bundle_selective",
                                           plan="selective", overwrite=True), progress)  # fmt: skip
    result["quantize"] = quant.to_dict()
    rows.append(("quantize", f"action error vs fp32: max {quant.action_error_max:.4f}, mean "
                 f"{quant.action_error_mean:.4f} rad", quant.bundle))  # fmt: skip

    announce("10. bench: latency per inference, PyTorch vs bundles (1 thread)")
    lat = bench_latency(LatencyBenchConfig(checkpoint=ckpt, bundles=(Path(fp32.bundle), Path(quant.bundle)),
                                           threads=1, calls=10), progress)  # fmt: skip
    result["bench_latency"] = lat.to_dict()
    rows.append(("bench latency", "  ".join(f"{r.format} {r.precision} {1000 * r.p50_s:.0f} ms" for r in lat.rows),
                 "edgevla bench latency"))  # fmt: skip

    if not config.skip_eval:
        from edgevla.eval.run import EvalConfig, evaluate

        announce("11. evaluate the quantised bundle: Test (20) / Val (10) / Global (30), async")
        ev = evaluate(EvalConfig(checkpoint=Path(quant.bundle), plan=out / "plan.json", out=out / "eval_bundle",
                                 episodes=config.eval_episodes, label="ACT edge"), progress).to_dict()  # fmt: skip
        result["eval_bundle"] = ev
        for r in ev["table"]:
            rows.append((f"eval {r['format']} {r['mode']}", f"Test {r['acc_test']}  Val {r['acc_val']}  "
                         f"Global {r['global']}  latency {r['latency']}  idle {r['idle']}", ev["results_file"]))  # fmt: skip

    announce(
        f"12. robot: the simulated arm driven in real time by the quantised bundle for {config.robot_seconds:g} s"
    )
    runner = BundleRunner(quant.bundle)
    fps = runner.manifest.fps or 30.0
    control = ControlConfig(mode="async", chunk_size_threshold="auto", fps=fps, on_fault="hold",
                            max_steps=round(config.robot_seconds * fps), inference_timeout_s=2.0)  # fmt: skip
    ep = drive(SimRobot(seed=config.seed, fps=fps), runner, control, seed=config.seed)
    result["robot"] = ep.to_dict()
    rows.append(("robot (real time)", f"{ep.ticks} ticks at {fps:g} fps, jitter p99 "
                 f"{1000 * (ep.tick_jitter_p99_s or 0):.1f} ms, {ep.deadline_misses} deadline misses, "
                 f"inference p50 {1000 * ep.latency_p50_s:.0f} ms, {ep.faults} faults",
                 "edgevla-runtime run --robot sim"))  # fmt: skip
    remote_stage(config, runner, control, result, rows, announce)


def remote_stage(config, runner, control, result: dict, rows: list, announce) -> None:
    """13. The same arm through a policy server on loopback, images as JPEG."""
    from edgevla_runtime.remote import RemoteRunner
    from edgevla_runtime.robot import drive

    from edgevla.deploy.server import PolicyServer
    from edgevla.sim.robot import SimRobot

    announce(
        f"13. remote: the arm streams to a policy server on loopback (JPEG) for {config.robot_seconds:g} s"
    )
    server = PolicyServer.for_runner(runner)
    port = server.start()
    remote = RemoteRunner(f"127.0.0.1:{port}", image_codec="jpeg")
    try:
        ep = drive(SimRobot(seed=config.seed, fps=control.fps), remote, control, seed=config.seed)
        timing = remote.timing()
    finally:
        remote.close()
        server.stop()
    result["remote"] = {**ep.to_dict(), **timing}
    rows.append(("remote (loopback, JPEG)", f"{ep.ticks} ticks, round trip p50 {1000 * (timing['round_trip_p50_s'] or 0):.1f} ms "
                 f"= server {1000 * (timing['server_inference_p50_s'] or 0):.1f} + network {1000 * (timing['network_p50_s'] or 0):.1f}, "
                 f"{ep.faults} faults", "edgevla serve + edgevla-runtime run --remote"))  # fmt: skip
