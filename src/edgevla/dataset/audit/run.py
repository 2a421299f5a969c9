"""`edgevla audit D`: run every check, print the table (or one JSON object), write the JSON
report and the figures, and return exit_code 1 when anything fails."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from typing import Any

from rich.markup import escape

from edgevla.console import console, emit_json, table
from edgevla.dataset.audit.config import AuditArgs
from edgevla.dataset.audit.coverage import check_coverage
from edgevla.dataset.audit.data import load
from edgevla.dataset.audit.figures import write_figures
from edgevla.dataset.audit.findings import Finding, worst
from edgevla.dataset.audit.integrity import check_integrity, check_no_cheating, decode_findings
from edgevla.dataset.audit.views import check_views

ORDER = ("coverage", "camera consistency", "lighting", "contrast", "integrity", "no cheating")
_STYLE = {"pass": "[green]pass[/]", "warn": "[yellow]warn[/]", "fail": "[bold red]FAIL[/]"}


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
                rows[e][f"{cam}.{key}"] = value
    return rows


def run_audit(args: AuditArgs) -> dict[str, Any]:
    cfg = args.config
    t0 = time.perf_counter()
    data = load(args.dataset)
    findings: list[Finding] = []
    findings += check_coverage(data, cfg)
    view_findings, metrics = check_views(data, cfg)
    findings += view_findings
    findings += check_integrity(data, cfg)
    findings += decode_findings(data)
    findings += check_no_cheating(data, cfg)
    findings.sort(key=lambda f: ORDER.index(f.check))
    out = args.out_dir
    figures = write_figures(out, metrics, data.episodes, cfg)
    status = worst(findings)
    counts = {s: sum(f.status == s for f in findings) for s in ("pass", "warn", "fail")}
    report = {
        "dataset": str(args.dataset),
        "status": status,
        "summary": counts,
        "findings": [f.to_dict() for f in findings],
        "episodes": _episode_table(metrics, data.episodes),
        "config": asdict(cfg),
    }
    out.mkdir(parents=True, exist_ok=True)
    report_path = out / "audit.json"
    report_path.write_text(json.dumps(report, indent=1, default=str))
    result: dict[str, Any] = {
        "dataset": str(args.dataset),
        "status": status,
        "summary": counts,
        "findings": report["findings"],
        "report": str(report_path),
        "figures": [str(p) for p in figures],
        "wall_s": time.perf_counter() - t0,
        "exit_code": 1 if status == "fail" else 0,
    }
    if args.json:
        emit_json(result)
    else:
        rows = [
            (f.check, f.item, _STYLE[f.status], escape(f.detail)) for f in findings
        ]  # fmt: skip
        console.print(
            table(
                f"edgevla audit {escape(str(args.dataset))}", ["check", "item", "", "detail"], rows
            )
        )
        console.print(
            f"{counts['pass']} pass, {counts['warn']} warn, {counts['fail']} fail; report "
            f"{escape(str(report_path))}, figures in {escape(str(out))}"
        )
    return result
