"""One line of an audit report: which check, what was looked at, pass / warn / fail, and a
message that says what was expected, what was found and what to do."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["pass", "warn", "fail"]
_RANK: dict[str, int] = {"pass": 0, "warn": 1, "fail": 2}


@dataclass(frozen=True)
class Finding:
    check: str  # coverage | camera consistency | lighting | contrast | integrity | no cheating
    item: str  # what was looked at, e.g. "episodes per cluster" or "camera top"
    status: Status
    detail: str
    episodes: tuple[int, ...] = ()  # the episodes concerned (empty when none or all)
    value: Any = field(default=None, compare=False)  # the measured quantity, for the JSON

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "check": self.check,
            "item": self.item,
            "status": self.status,
            "detail": self.detail,
        }
        if self.episodes:
            out["episodes"] = list(self.episodes)
        if self.value is not None:
            out["value"] = self.value
        return out


def worst(findings: Iterable[Finding]) -> Status:
    ranked = max((_RANK[f.status] for f in findings), default=0)
    return ("pass", "warn", "fail")[ranked]  # type: ignore[return-value]


def episode_list(episodes: Sequence[int], limit: int = 8) -> str:
    """'3, 7, 11' or '3, 7, 11, ... (+12 more)': short enough for a table cell."""
    eps = [str(e) for e in episodes]
    if len(eps) <= limit:
        return ", ".join(eps)
    return ", ".join(eps[:limit]) + f", ... (+{len(eps) - limit} more)"
