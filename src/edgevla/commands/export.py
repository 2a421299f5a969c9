"""`edgevla export`: a checkpoint to an ONNX bundle (one graph per stage), checked against PyTorch."""

from __future__ import annotations

from dataclasses import dataclass

from edgevla.commands import config_from, present
from edgevla.console import console, table
from edgevla.deploy.export import ExportConfig, export_bundle


@dataclass(frozen=True)
class Args(ExportConfig):
    """Export a checkpoint to a bundle folder: stages as ONNX, manifest.json, parity checked."""

    json: bool = False
    """print one JSON object instead of tables (for scripts and CI)"""

    def __post_init__(self) -> None:
        """Checked when run() builds the ExportConfig, so a bad value is one line (exit 2)."""


def run(args: Args) -> int:
    config = config_from(args, ExportConfig)
    present(args, lambda report: export_bundle(config, progress=report), show,
            notes=lambda r: r.warnings, label="note")  # fmt: skip
    return 0


def show(result) -> None:
    rows = [
        (s["name"], s["file"], s["precision"], " ".join(f"{t['name']}{tuple(t['shape'])}" for t in s["inputs"]),
         " ".join(f"{t['name']}{tuple(t['shape'])}" for t in s["outputs"]))
        for s in result.stages
    ]  # fmt: skip
    console.print(
        table(
            f"edgevla export: {result.bundle}",
            ["stage", "file", "precision", "inputs", "outputs"],
            rows,
        )
    )
    console.print(
        f"parity vs PyTorch: max |diff| {result.parity_max_abs:.2e} over "
        f"{result.parity_observations} observations (tolerance {result.tolerance:g}); "
        f"{result.seconds:.1f} s"
    )
