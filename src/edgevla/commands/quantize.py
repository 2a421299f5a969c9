"""`edgevla quantize`: a bundle at a precision plan, with the action error it costs vs fp32."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from edgevla_runtime.bundle import Manifest

from edgevla.commands import config_from, present
from edgevla.console import console, table
from edgevla.deploy.quantize import QuantizeConfig, quantize_bundle
from edgevla.deploy.stage_files import StageFiles
from edgevla.errors import BadInput


@dataclass(frozen=True)
class Args(QuantizeConfig):
    """Quantise a bundle's stages by a plan (fp32, int8-all, int8-static-all, int8-static-linear,
    int8-mixed, int4-all, selective, selective-dynamic, auto, or a YAML file with per-stage
    precisions and layers kept fp32)."""

    confirm_episodes: int = 0
    """with --plan auto: evaluate the fp32 bundle and the chosen one closed loop with this many
    rollouts per position; while the chosen one loses more than --confirm-tolerance Global
    success, try the next fastest plan within the budget (0: no confirmation). Exit 1 if none
    holds"""
    confirm_tolerance: float = 0.02
    """Global success a confirmed plan may lose against fp32"""
    confirm_plan: Path = Path("outputs/plan.json")
    """the recording plan whose Test/Val positions the confirmation evaluates"""
    confirm_threshold: float = 0.2
    """async chunk_size_threshold of the confirmation's evaluation"""
    confirm_noise_scale: float = 1.0
    """flow-matching policies: initial-noise scale of the confirmation's evaluation"""
    confirm_latency: str = "measured"
    """virtual inference latency of the confirmation's evaluations: measured (each bundle's own
    on this machine; load can move a chunk a tick) or seconds, e.g. 0.004 (deterministic)"""
    confirm_episode_time_s: float = 20.0
    """time limit of each confirmation episode (an episode not done by then is a failure)"""
    json: bool = False
    """print one JSON object instead of tables (for scripts and CI)"""

    def __post_init__(self) -> None:
        """Checked when run() builds the QuantizeConfig, so a bad value is one line (exit 2)."""


def run(args: Args) -> int:
    from edgevla.eval.confirm_plan import ConfirmConfig, confirm_auto_plan

    config = config_from(args, QuantizeConfig)
    confirm = None
    if args.confirm_episodes:
        if config.plan != "auto":
            raise BadInput("--confirm-episodes confirms what --plan auto chose; evaluate a named "
                           "plan's bundle with `edgevla eval`", field="--confirm-episodes")  # fmt: skip
        if args.confirm_noise_scale != 1.0 and Manifest.read(config.bundle).sampler is None:
            raise BadInput("applies to a sampling policy (SmolVLA); this bundle's policy is "
                           "deterministic: leave it at 1", field="--confirm-noise-scale")  # fmt: skip
        confirm = ConfirmConfig(episodes=args.confirm_episodes, tolerance=args.confirm_tolerance,
                                plan=args.confirm_plan, chunk_size_threshold=args.confirm_threshold,
                                noise_scale=args.confirm_noise_scale,
                                latency=args.confirm_latency,
                                episode_time_s=args.confirm_episode_time_s)  # fmt: skip

    def compute(report):
        with tempfile.TemporaryDirectory(prefix="edgevla-stages.") as tmp:
            files = StageFiles(tmp)  # auto's graphs, reused by the bundle and its candidates
            result = quantize_bundle(config, report, files)
            if confirm is not None:
                result, confirmation = confirm_auto_plan(config, result, confirm, report, files)
                result.confirmation = confirmation.to_dict()
        return result

    result = present(args, compute, show)
    return 1 if result.confirmation and result.confirmation["accepted"] is None else 0


def show(result) -> None:
    rows = [
        (name, prec, f"{result.sizes_bytes[name] / 1e6:.2f} MB")
        for name, prec in result.plan.items()
    ]
    console.print(table(f"edgevla quantize: {result.bundle}", ["stage", "precision", "size"], rows))
    if result.candidates:
        rows = [(" ".join(f"{k}={v}" for k, v in c["plan"].items()), f"{c['action_error_max']:.4f}",
                 f"{1000 * c['p50_s']:.1f} ms", "yes" if c["within_budget"] else "no") for c in result.candidates]  # fmt: skip
        cols = ["candidate plan", "action err max", "p50", "within budget"]
        console.print(table("--plan auto: every combination, fastest first", cols, rows))
    console.print(
        f"action error vs the fp32 bundle on {result.eval_observations} held-out observations: "
        f"max {result.action_error_max:.4f}, mean {result.action_error_mean:.4f} (action units, rad); "
        f"calibration {result.calibration}; {result.seconds:.1f} s"
    )
    if result.stages_reused:
        console.print(f"stages taken from auto's search, not quantised again: "
                      f"{', '.join(result.stages_reused)}")  # fmt: skip
    if result.conv_weights:
        counts = "; ".join(f"{stage} {c['symmetric']} / {c['asymmetric']}"
                           for stage, c in result.conv_weights.items())  # fmt: skip
        console.print("int8 convolutions with symmetric (ConvSym) / asymmetric (im2col + GEMM) "
                      f"weights, the faster on this CPU: {counts}")  # fmt: skip
    if result.confirmation:
        c = result.confirmation
        ref = c["reference"]

        def rate(x) -> str:  # None: a set the confirmation did not evaluate
            return "-" if x is None else f"{x:.2f}"

        rows = [("fp32", rate(ref["success_test"]), rate(ref["success_val"]),
                 rate(ref["success_global"]), "-", "reference")]  # fmt: skip
        rows += [(" ".join(f"{k}={v}" for k, v in t["plan"].items()), rate(t["success_test"]),
                  rate(t["success_val"]), rate(t["success_global"]),
                  f"{t['global_loss']:+.2f}", "accepted" if t["accepted"] else "rejected")
                 for t in c["tried"]]  # fmt: skip
        cols = ["plan", "Acc. Test", "Acc. Val", "Global", "Global lost", "verdict"]
        title = f"closed-loop confirmation ({c['episodes']} rollout(s) per position, tolerance {c['tolerance']})"
        console.print(table(title, cols, rows))
        if c["accepted"] is None:
            step = c.get("rollouts")
            grain = "" if not step else (f" (one failed rollout of {step} is {1 / step:.3f} of "
                                         "Global)")  # fmt: skip
            console.print("no candidate within the budget held Global success; --out keeps auto's "
                          f"first choice: raise --confirm-tolerance{grain}, --confirm-episodes "
                          "or --budget, or use a named plan")  # fmt: skip
    if result.reduce_range:
        console.print(
            "int8 weights in 7 bits (--reduce-range): this CPU (x86-64 without VNNI) saturates "
            "8-bit products; pass --reduce-range off for a bundle meant for an Arm board"
        )
