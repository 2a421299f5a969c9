"""The paper's evaluation protocol, read from a recording plan.

    Test   = test_per_cluster fresh random positions in each training cluster (20 by default)
    Val    = every position of the held-out cluster(s)                        (10)
    Global = Test + Val                                                         (30)

`--episodes N` repeats each position N times with different seeds: a sampling policy's noise and
a drawn virtual latency (uniform:, lognormal:) differ between repeats. A deterministic policy
(ACT) at a fixed or measured latency replays the same episode, since a position fixes the start:
measured 2026-12-03, ACT's 3 and 10 rollouts gave the same fractions (docs/experiments.md).
`jitter_m` / `jitter_deg` move each rollout's bag start by a seeded offset (uniform in a disc of
that radius, yaw uniform in +-jitter_deg, kept inside the workspace), as a person resetting a
real scene would: then every rollout is a new episode, for deterministic policies too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from edgevla.dataset.plan import Plan, PlannedEpisode

SETS = ("test", "val")


@dataclass(frozen=True)
class EvalEpisode:
    """One evaluation rollout: which set, which planned start, which repeat and seed."""

    set: str  # "test" | "val"
    planned: PlannedEpisode
    repeat: int
    seed: int
    offset: tuple[float, float, float] = (0.0, 0.0, 0.0)  # bag dx, dy (m), dyaw (rad)

    @property
    def key(self) -> str:
        return f"{self.set}-{self.planned.index:03d}-r{self.repeat}"

    def start_state(self):
        """The planned start moved by this rollout's offset (edgevla.sim.env.StartState)."""
        start = self.planned.start_state()
        if self.offset == (0.0, 0.0, 0.0):
            return start
        dx, dy, dyaw = self.offset
        return replace(start, bag_xy=(start.bag_xy[0] + dx, start.bag_xy[1] + dy),
                       bag_yaw=start.bag_yaw + dyaw)  # fmt: skip


def start_offset(seed: int, bag_xy, jitter_m: float, jitter_deg: float, workspace=None,
                 tries: int = 20) -> tuple[float, float, float]:  # fmt: skip
    """A seeded offset: (dx, dy) uniform in the disc of radius jitter_m, dyaw uniform in
    +-jitter_deg; a draw that leaves `workspace` (edgevla.sim.scene.Workspace) is drawn again,
    and after `tries` the bag keeps its planned spot (the yaw still turns)."""
    if jitter_m == 0 and jitter_deg == 0:
        return (0.0, 0.0, 0.0)
    rng = np.random.default_rng([int(seed), 7])
    dyaw = math.radians(float(rng.uniform(-jitter_deg, jitter_deg))) if jitter_deg else 0.0
    for _ in range(tries):
        radius, angle = jitter_m * math.sqrt(rng.uniform()), rng.uniform(0, 2 * math.pi)
        dx, dy = radius * math.cos(angle), radius * math.sin(angle)
        if workspace is None or workspace.contains((bag_xy[0] + dx, bag_xy[1] + dy)):
            return (dx, dy, dyaw)
    return (0.0, 0.0, dyaw)


def eval_episodes(plan: Plan, repeats: int = 1, sets: tuple[str, ...] = SETS,
                  jitter_m: float = 0.0, jitter_deg: float = 0.0,
                  workspace=None) -> list[EvalEpisode]:  # fmt: skip
    """The rollouts of the protocol, test first, in a fixed order; with jitter, each moved by
    its own seeded offset (start_offset)."""
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
                seed = 7_000_000 + planned.seed * 10 + r
                offset = start_offset(seed, planned.bag_xy, jitter_m, jitter_deg, workspace)
                out.append(EvalEpisode(name, planned, r, seed, offset))
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
