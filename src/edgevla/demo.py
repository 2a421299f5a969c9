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
from dataclasses import dataclass, field
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


@dataclass
class DemoRun:
    """What every step shares: where it writes, how it reports, and what it has produced
    (`stages` for --json, `rows` for the summary table)."""

    config: DemoConfig
    progress: ProgressFn
    announce: Callable[[str], None]
    stages: dict[str, Any] = field(default_factory=dict)
    rows: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def out(self) -> Path:
        return Path(self.config.out)

    def row(self, stage: str, result: str, output: str) -> None:
        self.rows.append((stage, result, str(output)))


def run_demo(
    config: DemoConfig,
    progress: ProgressFn = no_progress,
    announce: Callable[[str], None] = lambda title: None,
) -> DemoResult:
    """Every stage in order; `announce(title)` before each, `progress` inside long ones."""
    run = DemoRun(config, progress, announce)
    run.out.mkdir(parents=True, exist_ok=True)
    simulate(run)
    plan_paper(run)
    dataset = record_small(run)
    audit_small(run, dataset)
    train_tiny(run, dataset)
    ckpt = config.checkpoint or (
        SHIPPED_CHECKPOINT if (SHIPPED_CHECKPOINT / "config.json").exists() else None
    )
    evaluate_checkpoint(run, ckpt)
    schedule_budgets(run)
    if ckpt is not None:
        deploy_stages(run, ckpt)
    return DemoResult(run.stages, run.rows)


def simulate(run: DemoRun) -> None:
    """1. An expert episode and the three camera views."""
    from edgevla.sim.snapshot import SnapshotConfig, snapshot

    run.announce("1. simulate: expert episode and camera views")
    snap = snapshot(
        SnapshotConfig(out=run.out / "sim", seed=run.config.seed, episode=True)
    ).to_dict()
    run.stages["sim"] = snap
    run.row("simulate", f"expert episode success={snap['success']} ({snap['episode_steps']} steps)",
            snap["files"][-1])  # fmt: skip


def plan_paper(run: DemoRun) -> None:
    """2. The paper's recording plan (defaults) and its figure."""
    from edgevla.dataset.plan import PlanConfig, write_plan

    run.announce("2. plan: 11 clusters, 120 train + 10 val episodes, 20 test + 10 val positions")
    plan = write_plan(PlanConfig(), run.out / "plan.json", figure=run.out / "plan.png").to_dict()
    run.stages["plan"] = plan
    run.row("plan", f"{plan['train_episodes']} train ({plan['recovery_share']:.0%} recovery) + "
            f"{plan['val_episodes']} val", plan["figure"])  # fmt: skip


def record_small(run: DemoRun) -> Path:
    """3. A small plan (3 clusters) recorded into a LeRobot v3 dataset; returns its folder."""
    from edgevla.dataset.plan import PlanConfig, write_plan
    from edgevla.dataset.record import RecordConfig, record

    run.announce(
        "3. record: a small plan (3 clusters, 14 episodes, 20% recovery) into a LeRobot v3 dataset"
    )
    small = PlanConfig(n_clusters=3, positions_per_cluster=4, recovery_per_cluster=1,
                       val_clusters=(3,), test_per_cluster=1)  # fmt: skip
    write_plan(small, run.out / "small_plan.json")
    dataset = run.out / "dataset"
    rec = record(RecordConfig(plan=run.out / "small_plan.json", out=dataset, overwrite=True),
                 run.progress).to_dict()  # fmt: skip
    run.stages["record"] = rec
    run.row("record", f"{rec['episodes_recorded']} episodes, {rec['frames']} frames, "
            f"{rec['frames_per_s']:.0f} frames/s", dataset)  # fmt: skip
    return dataset


def audit_small(run: DemoRun, dataset: Path) -> None:
    """4. The audit of that dataset."""
    from edgevla.dataset.audit import AuditConfig, audit_dataset

    run.announce("4. audit the recorded dataset (the small plan has 4-5 episodes per cluster)")
    audit = audit_dataset(dataset, run.out / "audit", AuditConfig(min_episodes_per_cluster=4),
                          run.progress).to_dict()  # fmt: skip
    run.stages["audit"] = {k: v for k, v in audit.items() if k != "findings"}
    run.row("audit", f"{audit['status']}: {audit['summary']}", run.out / "audit")


def train_tiny(run: DemoRun, dataset: Path) -> None:
    """5. Pre-train the trunk on rendered scenes, then a tiny ACT from it (both loops)."""
    from edgevla.train.config import TrainConfig
    from edgevla.train.loop import train
    from edgevla.train.pretrain import PretrainConfig, pretrain

    run.announce(
        "5. train: pre-train the trunk on 256 rendered scenes, then a tiny ACT for 30 steps"
    )
    pre = pretrain(
        PretrainConfig(dataset=dataset, out=run.out / "backbone_tiny", preset="tiny", scenes=256,
                       val_scenes=32, batch_size=16, epochs=1, max_minutes=2.0, val_freq=16),
        progress=run.progress,
    ).to_dict()  # fmt: skip
    run.stages["pretrain"] = pre
    run.row("pretrain", f"trunk, {pre['steps']} steps, bag position error "
            f"{pre['bag_xy_error_cm']:.1f} cm", pre["figure"])  # fmt: skip
    run_dir = run.out / "run_tiny"
    shutil.rmtree(run_dir, ignore_errors=True)
    tr = train(
        TrainConfig(policy="act", preset="tiny", dataset=(dataset,), out=run_dir, steps=30,
                    batch_size=4, save_freq=15, log_freq=5,
                    overrides=(f"pretrained_backbone_weights={pre['weights']}",)),
        progress=run.progress,
    ).to_dict()  # fmt: skip
    run.stages["train"] = tr
    run.row("train", f"tiny ACT from that trunk, 30 steps, loss {tr['final_loss']:.3f}, "
            f"val loss {tr['final_val_loss']:.3f}", run_dir / "curves.png")  # fmt: skip


def evaluate_checkpoint(run: DemoRun, ckpt: Path | None) -> None:
    """6. The trained checkpoint on the paper's Test/Val/Global protocol, sync vs async."""
    if ckpt is None or run.config.skip_eval:
        run.row("eval", "skipped: --skip-eval, or no trained checkpoint at assets/act_edge", "-")
        return
    from edgevla.eval.run import EvalConfig, evaluate

    run.announce(f"6. evaluate {ckpt}: Test (20) / Val (10) / Global (30), sync vs async")
    ev = evaluate(EvalConfig(checkpoint=ckpt, plan=run.out / "plan.json", out=run.out / "eval",
                             modes=("sync", "async"), episodes=run.config.eval_episodes,
                             label="ACT edge"), run.progress).to_dict()  # fmt: skip
    run.stages["eval"] = {k: v for k, v in ev.items() if k != "episodes"}
    for r in ev["table"]:
        run.row(f"eval {r['mode']}", f"Test {r['acc_test']}  Val {r['acc_val']}  Global "
                f"{r['global']}  latency {r['latency']}  idle {r['idle']}", ev["results_file"])  # fmt: skip


def schedule_budgets(run: DemoRun) -> None:
    """7. The paper's async budget at its two latencies."""
    from edgevla_runtime.control.schedule import check_budget

    run.announce(
        "7. schedule: T_inference < T_execution at the paper's settings (chunk 100, 60 fps, threshold 0.2)"
    )
    budgets = {lat: check_budget(lat, 60, 100, 0.2) for lat in (0.32, 2.86)}
    run.stages["schedule"] = {str(k): v.to_dict() for k, v in budgets.items()}
    for lat, b in budgets.items():
        run.row(f"schedule {lat} s", f"{'fits' if b.fits else 'does not fit'} (margin "
                f"{b.margin_s:+.3f} s)", f"edgevla schedule --latency {lat}")  # fmt: skip


def deploy_stages(run: DemoRun, ckpt: Path) -> None:
    """Steps 8-13: export, quantise, bench, evaluate the bundle, drive the arm in real time,
    then through a policy server."""
    fp32 = export_checkpoint(run, ckpt)
    quant = quantize_selective(run, Path(fp32.bundle))
    bench_formats(run, ckpt, (Path(fp32.bundle), Path(quant.bundle)))
    evaluate_bundle(run, Path(quant.bundle))
    runner, control = drive_arm(run, Path(quant.bundle))
    remote_stage(run, runner, control)


def export_checkpoint(run: DemoRun, ckpt: Path):
    """8. The ACT as ONNX stages, parity-checked against PyTorch."""
    from edgevla.deploy.export import ExportConfig, export_bundle

    run.announce(
        "8. export: the ACT as ONNX stages (vision, transformer), parity-checked against PyTorch"
    )
    fp32 = export_bundle(
        ExportConfig(checkpoint=ckpt, out=run.out / "bundle_fp32", overwrite=True), run.progress
    )
    run.stages["export"] = fp32.to_dict()
    run.row("export", f"{len(fp32.stages)} stages, parity max |diff| {fp32.parity_max_abs:.1e}",
            fp32.bundle)  # fmt: skip
    return fp32


def quantize_selective(run: DemoRun, bundle: Path):
    """9. The selective plan and its action error against fp32."""
    from edgevla.deploy.quantize import QuantizeConfig, quantize_bundle

    run.announce("9. quantize: selective plan (vision int8 static, transformer fp32)")
    quant = quantize_bundle(QuantizeConfig(bundle=bundle, out=run.out / "bundle_selective",
                                           plan="selective", overwrite=True), run.progress)  # fmt: skip
    run.stages["quantize"] = quant.to_dict()
    run.row("quantize", f"action error vs fp32: max {quant.action_error_max:.4f}, mean "
            f"{quant.action_error_mean:.4f} rad", quant.bundle)  # fmt: skip
    return quant


def bench_formats(run: DemoRun, ckpt: Path, bundles: tuple[Path, ...]) -> None:
    """10. Latency per inference, PyTorch beside the bundles."""
    from edgevla.deploy.bench import LatencyBenchConfig, bench_latency

    run.announce("10. bench: latency per inference, PyTorch vs bundles (1 thread)")
    # the shipped ACT's activations are small: PyTorch with freed memory kept times the same
    lat = bench_latency(LatencyBenchConfig(checkpoint=ckpt, bundles=bundles, threads=1, calls=10,
                                           pytorch_malloc=("system",)), run.progress)  # fmt: skip
    run.stages["bench_latency"] = lat.to_dict()
    run.row("bench latency", "  ".join(f"{r.format} {r.precision} {1000 * r.p50_s:.0f} ms"
            for r in lat.rows), "edgevla bench latency")  # fmt: skip


def evaluate_bundle(run: DemoRun, bundle: Path) -> None:
    """11. The quantised bundle on the same protocol (async), through the same loop."""
    if run.config.skip_eval:
        return
    from edgevla.eval.run import EvalConfig, evaluate

    run.announce("11. evaluate the quantised bundle: Test (20) / Val (10) / Global (30), async")
    ev = evaluate(EvalConfig(checkpoint=bundle, plan=run.out / "plan.json", out=run.out / "eval_bundle",
                             episodes=run.config.eval_episodes, label="ACT edge"), run.progress).to_dict()  # fmt: skip
    run.stages["eval_bundle"] = ev
    for r in ev["table"]:
        run.row(f"eval {r['format']} {r['mode']}", f"Test {r['acc_test']}  Val {r['acc_val']}  "
                f"Global {r['global']}  latency {r['latency']}  idle {r['idle']}", ev["results_file"])  # fmt: skip


def drive_arm(run: DemoRun, bundle: Path):
    """12. The simulated arm in real time through the runtime's robot loop; returns the
    runner and control settings the remote step reuses."""
    from edgevla_runtime.bundle import BundleRunner
    from edgevla_runtime.control import ControlConfig
    from edgevla_runtime.robot import drive

    from edgevla.sim.robot import SimRobot

    config = run.config
    run.announce(
        f"12. robot: the simulated arm driven in real time by the quantised bundle for {config.robot_seconds:g} s"
    )
    runner = BundleRunner(bundle)
    fps = runner.manifest.fps or 30.0
    control = ControlConfig(mode="async", chunk_size_threshold="auto", fps=fps, on_fault="hold",
                            max_steps=round(config.robot_seconds * fps), inference_timeout_s=2.0)  # fmt: skip
    ep = drive(SimRobot(seed=config.seed, fps=fps), runner, control, seed=config.seed)
    run.stages["robot"] = ep.to_dict()
    run.row("robot (real time)", f"{ep.ticks} ticks at {fps:g} fps, jitter p99 "
            f"{1000 * (ep.tick_jitter_p99_s or 0):.1f} ms, {ep.deadline_misses} deadline misses, "
            f"inference p50 {1000 * ep.latency_p50_s:.0f} ms, {ep.faults} faults",
            "edgevla-runtime run --robot sim")  # fmt: skip
    return runner, control


def remote_stage(run: DemoRun, runner, control) -> None:
    """13. The same arm through a policy server on loopback, images as JPEG."""
    from edgevla_runtime.remote import RemoteRunner
    from edgevla_runtime.robot import drive

    from edgevla.deploy.server import PolicyServer
    from edgevla.sim.robot import SimRobot

    config, result, announce = run.config, run.stages, run.announce

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
    run.rows.append(("remote (loopback, JPEG)", f"{ep.ticks} ticks, round trip p50 {1000 * (timing['round_trip_p50_s'] or 0):.1f} ms "
                 f"= server {1000 * (timing['server_inference_p50_s'] or 0):.1f} + network {1000 * (timing['network_p50_s'] or 0):.1f}, "
                 f"{ep.faults} faults", "edgevla serve + edgevla-runtime run --remote"))  # fmt: skip
