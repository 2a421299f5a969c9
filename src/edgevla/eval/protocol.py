"""The paper's evaluation protocol, read from a recording plan.

    Test   = test_per_cluster fresh random positions in each training cluster (20 by default)
    Val    = every position of the held-out cluster(s)                        (10)
    Global = Test + Val                                                         (30)

`--episodes N` repeats each position N times with different seeds: a sampling policy's noise and
a drawn virtual latency (uniform:, lognormal:) differ between repeats. A deterministic policy
(ACT) at a fixed or measured latency replays the same episode, since a position fixes the start:
measured 2026-12-03, ACT's 3 and 10 rollouts gave the same fractions (docs/experiments.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from edgevla.dataset.plan import Plan, PlannedEpisode

SETS = ("test", "val")


@dataclass(frozen=True)
class EvalEpisode:
    """One evaluation rollout: which set, which planned start, which repeat and seed."""

    set: str  # "test" | "val"
    planned: PlannedEpisode
    repeat: int
    seed: int

    @property
    def key(self) -> str:
        return f"{self.set}-{self.planned.index:03d}-r{self.repeat}"


def eval_episodes(plan: Plan, repeats: int = 1, sets: tuple[str, ...] = SETS) -> list[EvalEpisode]:
    """The rollouts of the protocol, test first, in a fixed order."""
    if repeats < 1:
        raise ValueError(f"episodes per position must be >= 1, got {repeats}")
    bad = [s for s in sets if s not in SETS]
    if bad:
        raise ValueError(f"unknown evaluation set(s) {bad}; choose from {list(SETS)}")
    out = []
    for name in sets:
        positions = plan.test if name == "test" else plan.val
        for planned in positions:
            for r in range(repeats):
                out.append(EvalEpisode(name, planned, r, 7_000_000 + planned.seed * 10 + r))
    return out


def positions_seen_in_training(
    plan: Plan, dataset_roots: list[str], tolerance_m: float = 1e-4
) -> dict[str, list[int]]:
    """Evaluation positions (plan indices per set) where a training episode of these datasets
    also started: the bag at the same spot, within `tolerance_m`.

    Test positions are fresh within one plan, but a dataset recorded from another plan (more
    positions per cluster, same seed) can contain them, and a score on positions the policy was
    trained on is not a test score. Datasets that are not on disk, or that lack edgevla's
    start_pose / split columns, are skipped (nothing can be said about them)."""
    import numpy as np

    from edgevla.dataset.lerobot.reader import LeRobotDatasetReader

    starts = []
    for root in dataset_roots:
        try:
            episodes = LeRobotDatasetReader(root).episodes
        except (OSError, ValueError):
            continue
        starts += [e["start_pose"][:2] for e in episodes
                   if e.get("split") == "train" and e.get("start_pose") is not None]  # fmt: skip
    seen: dict[str, list[int]] = {name: [] for name in SETS}
    if not starts:
        return seen
    xy = np.asarray(starts, dtype=np.float64)
    for name in SETS:
        for planned in plan.test if name == "test" else plan.val:
            d = np.hypot(*(xy - np.asarray(planned.bag_xy)).T)
            if float(d.min()) <= tolerance_m:
                seen[name].append(planned.index)
    return seen
