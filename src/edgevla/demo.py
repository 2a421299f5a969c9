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

Steps 3-5 use small sizes so the demo finishes in minutes on two cores; the README's results
table gives the commands for the full-size runs.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgevla.console import console, emit_json, table

SHIPPED_CHECKPOINT = Path(__file__).resolve().parents[2] / "assets" / "act_edge"


@dataclass
class DemoArgs:
    """Run every built stage of the pipeline on small defaults."""

    out: Path = Path("outputs/demo")
    seed: int = 0
    checkpoint: Path | None = None
    """trained checkpoint to evaluate (default: the shipped assets/act_edge, if present)"""
    eval_episodes: int = 1
    skip_eval: bool = False
    json: bool = False


def _stage(title: str, quiet: bool) -> None:
    if not quiet:
        console.rule(f"[bold]{title}")


def run(args: DemoArgs) -> dict[str, Any]:
    from edgevla_runtime.control.schedule import check_budget

    from edgevla.dataset.audit import AuditArgs, AuditConfig, run_audit
    from edgevla.dataset.plan import PlanArgs, PlanConfig, run_plan
    from edgevla.dataset.record import RecordArgs, run_record
    from edgevla.sim import snapshot
    from edgevla.train.config import TrainConfig
    from edgevla.train.loop import train

    q = args.json
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {}
    rows = []

    _stage("1. simulate: expert episode and camera views", q)
    snap = snapshot.run(
        snapshot.SnapshotArgs(out=out / "sim", seed=args.seed, episode=True, json=q)
    )
    result["sim"] = snap
    rows.append(
        (
            "simulate",
            f"expert episode success={snap['success']} ({snap['episode_steps']} steps)",
            snap["files"][-1],
        )
    )

    _stage("2. plan: 11 clusters, 120 train + 10 val episodes, 20 test + 10 val positions", q)
    plan = run_plan(PlanArgs(out=out / "plan.json", figure=out / "plan.png", json=q))
    result["plan"] = plan
    rows.append(
        (
            "plan",
            f"{plan['train_episodes']} train ({plan['recovery_share']:.0%} recovery) + {plan['val_episodes']} val",
            plan["figure"],
        )
    )

    _stage(
        "3. record: a small plan (3 clusters, 14 episodes, 20% recovery) into a LeRobot v3 dataset",
        q,
    )
    small = PlanConfig(
        n_clusters=3,
        positions_per_cluster=4,
        recovery_per_cluster=1,
        val_clusters=(3,),
        test_per_cluster=1,
    )
    run_plan(
        PlanArgs(out=out / "small_plan.json", config=small, json=True)
        if q
        else PlanArgs(out=out / "small_plan.json", config=small)
    )
    dataset = out / "dataset"
    rec = run_record(RecordArgs(plan=out / "small_plan.json", out=dataset, overwrite=True, json=q))
    result["record"] = rec
    rows.append(
        (
            "record",
            f"{rec['episodes_recorded']} episodes, {rec['frames']} frames, {rec['frames_per_s']:.0f} frames/s",
            str(dataset),
        )
    )

    _stage("4. audit the recorded dataset (the small plan has 4-5 episodes per cluster)", q)
    audit = run_audit(
        AuditArgs(
            dataset=dataset,
            out=out / "audit",
            config=AuditConfig(min_episodes_per_cluster=4),
            json=q,
        )
    )
    result["audit"] = {k: v for k, v in audit.items() if k != "findings"}
    rows.append(("audit", f"{audit['status']}: {audit['summary']}", str(out / "audit")))

    _stage("5. train: pre-train the trunk on 256 rendered scenes, then a tiny ACT for 30 steps", q)
    from edgevla.train.pretrain import PretrainConfig, pretrain

    pre = pretrain(
        PretrainConfig(dataset=dataset, out=out / "backbone_tiny", preset="tiny", scenes=256,
                       val_scenes=32, batch_size=16, epochs=1, max_minutes=2.0, val_freq=16),
        quiet=q,
    )  # fmt: skip
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
        quiet=q,
    )
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
        from edgevla.eval.run import EvalArgs, evaluate

        _stage(f"6. evaluate {ckpt}: Test (20) / Val (10) / Global (30), sync vs async", q)
        ev = evaluate(EvalArgs(checkpoint=ckpt, plan=out / "plan.json", out=out / "eval", modes=("sync", "async"),
                               episodes=args.eval_episodes, label="ACT edge"), quiet=q)  # fmt: skip
        result["eval"] = {k: v for k, v in ev.items() if k != "episodes"}
        for r in ev["table"]:
            rows.append(
                (
                    f"eval {r['mode']}",
                    f"Test {r['acc_test']}  Val {r['acc_val']}  Global {r['global']}  latency {r['latency']}  idle {r['idle']}",
                    ev["results_file"],
                )
            )
    elif not q:
        console.print(
            "(closed-loop evaluation skipped: --skip-eval, or no trained checkpoint at assets/act_edge)"
        )

    _stage(
        "7. schedule: T_inference < T_execution at the paper's settings (chunk 100, 60 fps, threshold 0.2)",
        q,
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

    if q:
        emit_json(result)
    else:
        console.print(table("edgevla demo: pipeline summary", ["stage", "result", "output"], rows))
    return result
