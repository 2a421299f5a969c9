"""`audit_dataset`: run every check, write the JSON report and the figures, return the result.

It never crashes on a damaged dataset: what cannot be read, and a check that stops on what it
read, become failing findings, and the report is written all the same. Printing (the table,
`--json`) and the exit status are edgevla.commands.audit's."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgevla.dataset.audit.config import AuditConfig
from edgevla.dataset.audit.coverage import check_coverage
from edgevla.dataset.audit.data import AuditData, load
from edgevla.dataset.audit.figures import write_figures
from edgevla.dataset.audit.findings import Finding, Status, worst
from edgevla.dataset.audit.integrity import (
    INTEGRITY,
    check_integrity,
    check_no_cheating,
    check_video_metadata,
    decode_findings,
)
from edgevla.dataset.audit.views import check_views
from edgevla.errors import BadInput
from edgevla.jsonio import write_json_atomic
from edgevla.progress import ProgressEvent, ProgressFn, no_progress

ORDER = ("coverage", "camera consistency", "lighting", "contrast", "integrity", "no cheating")


@dataclass
class AuditResult:
    """The audit's verdict: `status` is the worst finding's; `failed` when any finding fails."""

    dataset: Path
    status: Status
    findings: list[Finding]
    report: Path
    figures: list[Path] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def failed(self) -> bool:
        return self.status == "fail"

    @property
    def summary(self) -> dict[str, int]:
        return {s: sum(f.status == s for f in self.findings) for s in ("pass", "warn", "fail")}

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": str(self.dataset),
            "status": self.status,
            "summary": self.summary,
            "findings": [f.to_dict() for f in self.findings],
            "report": str(self.report),
            "figures": [str(p) for p in self.figures],
            "wall_s": self.wall_s,
        }


def _episode_table(metrics: dict[str, Any], episodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per-episode view of the measurements (one row per episode) for the JSON report."""
    rows: list[dict[str, Any]] = []
    for e, ep in enumerate(episodes):
        row: dict[str, Any] = {"episode": e, "length": ep.get("length")}
        for k in ("cluster_id", "split", "is_recovery"):
            if k in ep:
                row[k] = ep[k]
        rows.append(row)
    for cam, m in metrics.items():
        for key, per_episode in m.items():
            for e, value in per_episode.items():
                if e < len(rows):
                    rows[e][f"{cam}.{key}"] = value
    return rows


def _stopped(check: str, exc: Exception) -> Finding:
    return Finding(
        check if check in ORDER else INTEGRITY, "check ran", "fail",
        f"the {check} check stopped on what it read ({type(exc).__name__}: {exc}); the dataset "
        "is damaged in a way the audit does not describe yet: the other checks still ran",
    )  # fmt: skip


def audit_dataset(
    dataset: str | Path,
    out: str | Path,
    config: AuditConfig | None = None,
    progress: ProgressFn | None = None,
) -> AuditResult:
    """Audit the dataset at `dataset`; the report (audit.json) and PNG figures go to `out`
    (the dataset itself is never written to). Raises BadInput only when `dataset` is not a
    folder; every problem inside it is a finding."""
    cfg = config or AuditConfig()
    report_progress = progress or no_progress
    dataset, out = Path(dataset), Path(out)
    if not dataset.is_dir():
        raise BadInput("no dataset here: not a folder; give the --out of `edgevla record`",
                       path=dataset)  # fmt: skip
    t0 = time.perf_counter()
    data = load(dataset)
    findings: list[Finding] = []
    metrics: dict[str, Any] = {}

    def views(d: AuditData) -> list[Finding]:
        found, m = check_views(d, cfg)
        metrics.update(m)
        return found

    steps: list[tuple[str, Callable[[AuditData], list[Finding]]]] = [
        ("coverage", lambda d: check_coverage(d, cfg)),
        ("camera consistency", views),
        ("integrity", lambda d: check_integrity(d, cfg)),
        ("integrity", check_video_metadata),
        ("integrity", decode_findings),
        ("no cheating", lambda d: check_no_cheating(d, cfg)),
    ]
    for i, (name, step) in enumerate(steps):
        report_progress(ProgressEvent("audit", i, len(steps), name))
        try:
            findings += step(data)
        except Exception as exc:  # a damaged dataset must not end the audit
            findings.append(_stopped(name, exc))
    report_progress(ProgressEvent("audit", len(steps), len(steps), "figures"))
    findings.sort(key=lambda f: ORDER.index(f.check))
    try:
        figures = write_figures(out, metrics, data.episodes, cfg)
    except Exception as exc:
        figures = []
        findings.append(
            Finding(
                INTEGRITY, "figures", "warn", f"figures not drawn ({type(exc).__name__}: {exc})"
            )
        )
    status = worst(findings)
    result = AuditResult(dataset, status, findings, out / "audit.json", figures)
    report = {
        "dataset": str(dataset),
        "status": status,
        "summary": result.summary,
        "findings": [f.to_dict() for f in findings],
        "episodes": _episode_table(metrics, data.episodes),
        "config": asdict(cfg),
    }
    write_json_atomic(result.report, report, indent=1)
    result.wall_s = time.perf_counter() - t0
    return result
