"""`edgevla sensitivity`: each stage quantised alone vs fp32 (action error, stage latency), and
for a flow-matching expert the error after every denoising step."""

from __future__ import annotations

import json
from dataclasses import dataclass

from edgevla.commands import config_from, present
from edgevla.console import console, table
from edgevla.deploy.sensitivity import SensitivityConfig, sensitivity


@dataclass(frozen=True)
class Args(SensitivityConfig):
    """Measure where quantisation error comes from, stage by stage (table, PNG, JSON)."""

    json: bool = False
    """print one JSON object instead of tables (for scripts and CI)"""

    def __post_init__(self) -> None:
        """Checked when run() builds the config, so a bad value is one line (exit 2)."""


def run(args: Args) -> int:
    config = config_from(args, SensitivityConfig)
    present(args, lambda report: sensitivity(config, progress=report), show)
    return 0


def show(result) -> None:
    rows = [(r.stage, r.precision, f"{r.action_error_max:.4f}", f"{r.action_error_mean:.4f}",
             f"{1000 * r.stage_latency_s:.1f} ms") for r in result.rows]  # fmt: skip
    cols = ["stage", "precision", "action err max", "action err mean", "stage p50"]
    console.print(table(f"edgevla sensitivity: {result.bundle}", cols, rows))
    for precision, errors in result.expert_steps.items():
        console.print(
            f"expert at {precision}, error after each step: " + " ".join(f"{e:.4f}" for e in errors)
        )
    if result.layers:
        where = f"{result.layers_of['stage']} at {result.layers_of['precision']}"
        rows = [
            (r.node, r.op_type, f"{r.sqnr_db:.1f}", f"{r.noise_added:.2e}") for r in result.layers
        ]
        cols = ["layer (node)", "op", "SQNR vs fp32 (dB)", "noise added"]
        console.print(table(f"the noisiest layers of {where}", cols, rows))
        console.print(
            f"to keep the first three in fp32, a plan file entry: {json.dumps(result.keep_fp32_plan())}"
        )
    console.print(f"figure: {result.figure}\nresults: {result.results_file}")
