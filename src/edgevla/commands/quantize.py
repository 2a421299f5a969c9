"""`edgevla quantize`: a bundle at a precision plan, with the action error it costs vs fp32."""

from __future__ import annotations

from dataclasses import dataclass

from edgevla.commands import config_from, present
from edgevla.console import console, table
from edgevla.deploy.quantize import QuantizeConfig, quantize_bundle


@dataclass(frozen=True)
class Args(QuantizeConfig):
    """Quantise a bundle's stages by a plan (fp32, int8-all, int8-static-all, int8-static-linear,
    int8-mixed, int4-all, selective, selective-dynamic, auto, or a YAML file with per-stage
    precisions and layers kept fp32)."""

    json: bool = False

    def __post_init__(self) -> None:
        """Checked when run() builds the QuantizeConfig, so a bad value is one line (exit 2)."""


def run(args: Args) -> int:
    config = config_from(args, QuantizeConfig)
    present(args, lambda report: quantize_bundle(config, progress=report), show)
    return 0


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
    if result.reduce_range:
        console.print(
            "int8 weights in 7 bits (--reduce-range): this CPU (x86-64 without VNNI) saturates "
            "8-bit products; pass --reduce-range off for a bundle meant for an Arm board"
        )
