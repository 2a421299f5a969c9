"""Coverage: does the dataset span the workspace the way the recording plan says it must?

Reads only the per-episode bookkeeping columns edgevla's recorder writes (cluster_id, split,
is_recovery, orientation) and the plan saved with the dataset; a dataset without them is not
judged (a warning says so)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from edgevla.dataset.audit.config import AuditConfig
from edgevla.dataset.audit.data import AuditData
from edgevla.dataset.audit.findings import Finding
from edgevla.dataset.plan import ORIENTATIONS

CHECK = "coverage"
NEEDED = ("cluster_id", "split", "is_recovery", "orientation")


def cluster_counts(episodes: list[dict[str, Any]]) -> dict[int, dict[str, int]]:
    """{cluster: {"train": n, "val": n, "recovery": n}} (recovery counted within train)."""
    out: dict[int, dict[str, int]] = {}
    for row in episodes:
        c = out.setdefault(int(row["cluster_id"]), {"train": 0, "val": 0, "recovery": 0})
        split = str(row["split"])
        c[split] = c.get(split, 0) + 1
        c["recovery"] += bool(row["is_recovery"])
    return dict(sorted(out.items()))


def check_coverage(data: AuditData, cfg: AuditConfig) -> list[Finding]:
    eps = data.episodes
    missing = [c for c in NEEDED if not eps or c not in eps[0]]
    if missing:
        return [
            Finding(
                CHECK, "plan columns", "warn",
                f"the episodes table lacks {missing}: coverage cannot be judged (record with "
                "`edgevla record`, which writes them, or add them)",
            )
        ]  # fmt: skip
    counts = cluster_counts(eps)
    return [
        _per_cluster(counts, cfg),
        _recovery(eps, cfg),
        _orientations(eps),
        *_held_out(eps, counts, data, cfg),
    ]


def _per_cluster(counts: dict[int, dict[str, int]], cfg: AuditConfig) -> Finding:
    n = {c: v["train"] + v["val"] for c, v in counts.items()}
    few = {c: k for c, k in n.items() if k < cfg.min_episodes_per_cluster}
    summary = ", ".join(f"{c}: {k}" for c, k in n.items())
    if few:
        lacking = ", ".join(
            f"cluster {c} has {k} (record {cfg.min_episodes_per_cluster - k} more)"
            for c, k in few.items()
        )
        return Finding(
            CHECK, "episodes per cluster", "fail",
            f"need >= {cfg.min_episodes_per_cluster} per cluster: {lacking}", value=n,
        )  # fmt: skip
    return Finding(
        CHECK, "episodes per cluster", "pass",
        f"all {len(n)} clusters have >= {cfg.min_episodes_per_cluster} ({summary})", value=n,
    )  # fmt: skip


def _recovery(eps: list[dict[str, Any]], cfg: AuditConfig) -> Finding:
    train = [e for e in eps if e["split"] == "train"]
    rec = sum(bool(e["is_recovery"]) for e in train)
    share = rec / len(train) if train else 0.0
    lo, hi = cfg.recovery_share_min, cfg.recovery_share_max
    text = f"{rec} of {len(train)} training episodes are recovery starts ({share:.0%})"
    if not lo <= share <= hi:
        fix = "record more recovery starts" if share < lo else "record more rest starts"
        return Finding(
            CHECK, "recovery share", "fail",
            f"{text}; expected {lo:.0%}..{hi:.0%}: {fix}", value=share,
        )  # fmt: skip
    return Finding(
        CHECK, "recovery share", "pass", f"{text}, within {lo:.0%}..{hi:.0%}", value=share
    )


def _orientations(eps: list[dict[str, Any]]) -> Finding:
    seen = Counter(str(e["orientation"]) for e in eps if not e["is_recovery"])
    absent = [o for o in ORIENTATIONS if seen[o] == 0]
    text = ", ".join(f"{o}: {seen[o]}" for o in ORIENTATIONS)
    if absent:
        return Finding(
            CHECK, "orientations", "fail",
            f"no {' / '.join(absent)} grasps ({text}): the policy will only know one way to "
            "pick the object up; record both",
            value=dict(seen),
        )  # fmt: skip
    return Finding(
        CHECK, "orientations", "pass", f"both orientations present ({text})", value=dict(seen)
    )


def _held_out(
    eps: list[dict[str, Any]], counts: dict[int, dict[str, int]], data: AuditData, cfg: AuditConfig
) -> list[Finding]:
    declared = cfg.val_clusters
    source = "--val-clusters"
    if declared is None:
        plan = data.plan_config or {}
        declared = tuple(plan.get("val_clusters", ()))
        source = "the recording plan"
    out: list[Finding] = []
    mixed = {c: v for c, v in counts.items() if v["train"] and v["val"]}
    leaked = {c: counts[c]["train"] for c in declared if c in counts and counts[c]["train"]}
    if mixed or leaked:
        bad = sorted(set(mixed) | set(leaked))
        where = [
            e["episode_index"] for e in eps if e["cluster_id"] in bad and e["split"] == "train"
        ]
        out.append(
            Finding(
                CHECK, "val clusters held out", "fail",
                f"training episodes in held-out clusters {bad} (declared val clusters "
                f"{list(declared)}, or clusters that also hold val episodes): validation would "
                "measure memory, not generalisation; mark them val or record them elsewhere",
                episodes=tuple(where),
            )
        )  # fmt: skip
    else:
        out.append(
            Finding(
                CHECK, "val clusters held out", "pass",
                f"no cluster mixes train and val; val clusters {list(declared)} have no "
                "training episodes",
            )
        )  # fmt: skip
    if not declared:
        out.append(
            Finding(
                CHECK, "val clusters present", "warn",
                f"no held-out cluster declared ({source}): generalisation to unseen positions "
                "cannot be measured",
            )
        )  # fmt: skip
        return out
    undeclared = [c for c, v in counts.items() if v["val"] and not v["train"] and c not in declared]
    if undeclared:
        out.append(
            Finding(
                CHECK, "val clusters declared", "warn",
                f"clusters {undeclared} hold only val episodes but {source} does not hold them "
                f"out ({list(declared)}): is the plan the one this dataset was recorded with?",
            )
        )  # fmt: skip
    absent = [c for c in declared if counts.get(c, {}).get("val", 0) == 0]
    if absent:
        out.append(
            Finding(
                CHECK, "val clusters present", "fail",
                f"declared val clusters {absent} (from {source}) have no validation episodes: "
                "record them",
            )
        )  # fmt: skip
    else:
        n = {c: counts[c]["val"] for c in declared}
        out.append(
            Finding(CHECK, "val clusters present", "pass", f"val clusters recorded: {n}", value=n)
        )
    return out
