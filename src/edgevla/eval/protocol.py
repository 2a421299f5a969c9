"""The paper's evaluation protocol, read from a recording plan.

    Test   = test_per_cluster fresh random positions in each training cluster (20 by default)
    Val    = every position of the held-out cluster(s)                        (10)
    Global = Test + Val                                                         (30)

`--episodes N` repeats each position N times with different seeds (the env and the virtual
latency draw differ), for tighter figures.
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
