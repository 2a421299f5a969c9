"""`edgevla audit D`: audit a recorded dataset (coverage, camera consistency, lighting,
contrast, integrity, no cheating). Exit status 1 when any check fails, 0 otherwise."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import tyro
from rich.markup import escape

from edgevla.commands import present
from edgevla.console import console, table
from edgevla.dataset.audit import AuditConfig, audit_dataset
from edgevla.errors import EXIT_NO, EXIT_OK

_STYLE = {"pass": "[green]pass[/]", "warn": "[yellow]warn[/]", "fail": "[bold red]FAIL[/]"}


@dataclass
class Args:
    """Audit a recorded dataset for what ruins policies: coverage, camera consistency,
    lighting, contrast, integrity and policy-invisible inputs."""

    dataset: tyro.conf.Positional[Path]
    """the LeRobot v3 dataset to audit"""
    out: Path | None = None
    """where the JSON report and PNG figures go (default outputs/audit/<dataset name>); the
    dataset itself is never written to"""
    config: Annotated[AuditConfig, tyro.conf.OmitArgPrefixes] = field(default_factory=AuditConfig)
    json: bool = False
    """print one JSON object instead of the table"""

    @property
    def out_dir(self) -> Path:
        return self.out if self.out is not None else Path("outputs/audit") / self.dataset.name


def run(args: Args) -> int:
    out = args.out_dir

    def show(result) -> None:
        rows = [(f.check, f.item, _STYLE[f.status], escape(f.detail)) for f in result.findings]
        title = f"edgevla audit {escape(str(args.dataset))}"
        console.print(table(title, ["check", "item", "", "detail"], rows))
        counts = result.summary
        console.print(
            f"{counts['pass']} pass, {counts['warn']} warn, {counts['fail']} fail; report "
            f"{escape(str(result.report))}, figures in {escape(str(out))}"
        )

    result = present(
        args, lambda report: audit_dataset(args.dataset, out, args.config, progress=report), show
    )
    return EXIT_NO if result.failed else EXIT_OK
