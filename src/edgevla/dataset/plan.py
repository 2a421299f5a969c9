"""The recording plan: workspace clusters, start positions and rotations, recovery episodes,
a held-out validation cluster, and the evaluation positions (the paper's protocol).

Layout: the reachable workspace (an annular sector around the arm's base, see
`edgevla.sim.scene.Workspace`) is tiled with square clusters (default 10 x 10 cm, 11 of them)
arranged in rings and turned to face the base, numbered 1.. from the inner ring outward and,
within a ring, from the arm's right to its left. Every corner of every square lies in the
workspace, so every position drawn inside a cluster is reachable and clear of the mug.

Per training cluster: `positions_per_cluster` starts (bag position and yaw, half "horizontal"
and half "vertical") plus `recovery_per_cluster` recovery starts, taking turns through
`recovery_starts`: "mug" (the arm starts above the mug, gripper empty: the bag was dropped on the
way) and "missed_grasp" (the arm starts low beside the bag, gripper closed on nothing: the state
a policy is in after a grasp 2-4 cm off, which a policy trained without it does not leave). Validation clusters (default: 6) are recorded with split "val" and never appear
in training. Evaluation: Test = `test_per_cluster` fresh random positions in each training
cluster (20), Val = the held-out cluster's positions (10), Global = both (30).

Orientation (the paper grasped the bag both ways): "horizontal" = the bag's 5 cm side points at
the arm's base (yaw = radial direction +- `yaw_jitter_deg`), "vertical" = turned a quarter.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgevla.errors import BadInput
from edgevla.figures import pyplot, save_png
from edgevla.jsonio import read_json, write_json_atomic
from edgevla.sim.env import StartState
from edgevla.sim.scene import MUG_POS, Workspace

PLAN_VERSION = 1
ORIENTATIONS = ("horizontal", "vertical")
RECOVERY_STARTS = ("mug", "missed_grasp")


class PlanError(BadInput):
    """A plan that cannot be made or read; the message names the field or file."""


@dataclass(frozen=True)
class PlanConfig:
    """How to record (defaults follow the paper: 11 clusters of 10 x 10 cm, 10 positions and 2 recovery starts per training cluster = 120 episodes, cluster 6 held out = 10)."""

    n_clusters: int = 11
    cluster_size_m: float = 0.10
    positions_per_cluster: int = 10
    recovery_per_cluster: int = 2
    recovery_starts: tuple[str, ...] = ("mug", "missed_grasp")
    """where recovery starts put the arm, taking turns: mug, missed_grasp"""
    val_clusters: tuple[int, ...] = (6,)
    test_per_cluster: int = 2
    yaw_jitter_deg: float = 30.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_clusters < 2:
            raise PlanError(
                f"n_clusters={self.n_clusters}: need at least 2 (one to train on, one held out)"
            )
        if not 0.03 <= self.cluster_size_m <= 0.2:
            raise PlanError(f"cluster_size_m={self.cluster_size_m} must be between 0.03 and 0.2 m")
        if self.positions_per_cluster < 1:
            raise PlanError("positions_per_cluster must be >= 1")
        if self.recovery_per_cluster < 0 or self.test_per_cluster < 0:
            raise PlanError("recovery_per_cluster and test_per_cluster must be >= 0")
        bad_starts = [s for s in self.recovery_starts if s not in RECOVERY_STARTS]
        if bad_starts or not self.recovery_starts:
            raise PlanError(
                f"recovery_starts {list(self.recovery_starts)}: each must be one of "
                f"{list(RECOVERY_STARTS)} (and at least one given)"
            )
        bad = [c for c in self.val_clusters if not 1 <= c <= self.n_clusters]
        if bad:
            raise PlanError(f"val_clusters {bad} are not cluster ids 1..{self.n_clusters}")
        if len(set(self.val_clusters)) >= self.n_clusters:
            raise PlanError(
                "every cluster is held out for validation: leave at least one for training"
            )

    @property
    def recovery_share(self) -> float:
        per = self.positions_per_cluster + self.recovery_per_cluster
        return self.recovery_per_cluster / per


@dataclass(frozen=True)
class Cluster:
    id: int
    center_xy: tuple[float, float]
    theta: float  # direction of the square's radial axis (rad)
    size: float
    split: str  # "train" or "val"

    def corners(self) -> np.ndarray:
        """(4, 2) corners, counter-clockwise."""
        c, s = math.cos(self.theta), math.sin(self.theta)
        radial, tangential = np.array([c, s]), np.array([-s, c])
        h = self.size / 2
        centre = np.asarray(self.center_xy)
        return np.array(
            [
                centre + dr * radial + dt * tangential
                for dr, dt in ((-h, -h), (h, -h), (h, h), (-h, h))
            ]
        )

    def sample(self, rng: np.random.Generator, margin: float = 0.005) -> np.ndarray:
        """A uniform position inside the square (keeping `margin` from its edges)."""
        h = self.size / 2 - margin
        dr, dt = rng.uniform(-h, h, size=2)
        c, s = math.cos(self.theta), math.sin(self.theta)
        return np.asarray(self.center_xy) + dr * np.array([c, s]) + dt * np.array([-s, c])


@dataclass(frozen=True)
class PlannedEpisode:
    """One start to record (or evaluate). `seed` drives the env and expert for this start."""

    index: int
    cluster: int
    split: str  # train | val | test (test only in the evaluation sets)
    kind: str  # position | recovery
    bag_xy: tuple[float, float]
    bag_yaw: float
    orientation: str
    seed: int
    arm_tcp: tuple[float, float, float] | None = None
    gripper: float = 0.1
    recovery_start: str | None = None  # mug | missed_grasp, for recovery episodes

    def start_state(self) -> StartState:
        return StartState(
            bag_xy=tuple(self.bag_xy),
            bag_yaw=self.bag_yaw,
            start="recovery" if self.kind == "recovery" else "rest",
            arm_tcp=tuple(self.arm_tcp) if self.arm_tcp is not None else None,
            gripper=self.gripper,
        )


@dataclass
class Plan:
    config: PlanConfig
    workspace: Workspace
    clusters: list[Cluster]
    episodes: list[PlannedEpisode]  # what to record
    test: list[PlannedEpisode]  # evaluation: fresh positions in training clusters
    val: list[PlannedEpisode]  # evaluation: the held-out clusters' positions
    mug_xy: tuple[float, float] = field(default=MUG_POS)

    @property
    def global_set(self) -> list[PlannedEpisode]:
        return self.test + self.val

    def summary(self) -> dict[str, Any]:
        train = [e for e in self.episodes if e.split == "train"]
        rec = [e for e in train if e.kind == "recovery"]
        by_start = {w: sum(e.recovery_start == w for e in rec) for w in self.config.recovery_starts}
        return {
            "clusters": len(self.clusters),
            "val_clusters": list(self.config.val_clusters),
            "train_episodes": len(train),
            "val_episodes": sum(e.split == "val" for e in self.episodes),
            "recovery_episodes": len(rec),
            "recovery_share": len(rec) / max(1, len(train)),
            "recovery_starts": by_start,
            # over the position episodes (train and val), as the audit counts them
            "orientations": {
                o: sum(e.orientation == o and e.kind == "position" for e in self.episodes)
                for o in ORIENTATIONS
            },
            "eval_test": len(self.test),
            "eval_val": len(self.val),
            "eval_global": len(self.global_set),
        }

    # ---------------------------------------------------------------- file format
    def to_dict(self) -> dict[str, Any]:
        cfg = asdict(self.config)
        cfg["val_clusters"] = list(self.config.val_clusters)
        return {
            "edgevla_plan_version": PLAN_VERSION,
            "config": cfg,
            "workspace": asdict(self.workspace),
            "mug_xy": list(self.mug_xy),
            "clusters": [asdict(c) for c in self.clusters],
            "episodes": [asdict(e) for e in self.episodes],
            "evaluation": {
                "test": [asdict(e) for e in self.test],
                "val": [asdict(e) for e in self.val],
            },
        }

    def save(self, path: str | Path) -> Path:
        return write_json_atomic(path, self.to_dict(), indent=1)

    @classmethod
    def load(cls, path: str | Path) -> Plan:
        path = Path(path)
        try:
            raw = read_json(path, "plan file", fix=f"make one with `edgevla plan --out {path}`")
        except BadInput as e:
            raise PlanError(str(e)) from e
        if raw.get("edgevla_plan_version") != PLAN_VERSION:
            raise PlanError(
                f"{path}: edgevla_plan_version {raw.get('edgevla_plan_version')!r}, expected {PLAN_VERSION}"
            )
        try:
            cfg = dict(raw["config"])
            cfg["val_clusters"] = tuple(cfg["val_clusters"])
            if "recovery_starts" in cfg:
                cfg["recovery_starts"] = tuple(cfg["recovery_starts"])
            else:  # plans written before missed-grasp recovery starts existed
                cfg["recovery_starts"] = ("mug",)
            config = PlanConfig(**cfg)

            def ep(d: dict) -> PlannedEpisode:
                d = dict(d)
                d["bag_xy"] = tuple(d["bag_xy"])
                d["arm_tcp"] = tuple(d["arm_tcp"]) if d.get("arm_tcp") is not None else None
                if d.get("kind") == "recovery" and d.get("recovery_start") is None:
                    d["recovery_start"] = "mug"  # the only kind before the field existed
                return PlannedEpisode(**d)

            clusters = [
                Cluster(**{**c, "center_xy": tuple(c["center_xy"])}) for c in raw["clusters"]
            ]
            return cls(
                config=config,
                workspace=Workspace(**raw["workspace"]),
                clusters=clusters,
                episodes=[ep(e) for e in raw["episodes"]],
                test=[ep(e) for e in raw["evaluation"]["test"]],
                val=[ep(e) for e in raw["evaluation"]["val"]],
                mug_xy=tuple(raw["mug_xy"]),
            )
        except (KeyError, TypeError) as e:
            raise PlanError(
                f"{path}: missing or malformed field {e}; re-create it with `edgevla plan`"
            ) from e


def tile_workspace(
    workspace: Workspace, size: float, gap: float = 0.002
) -> list[tuple[tuple[float, float], float]]:
    """All squares (centre, radial angle) that fit the workspace, ring by ring from the base.

    In each ring the squares' inner edges touch the ring's inner radius; the angular step is set
    at that radius (where neighbours are closest), so squares never overlap."""
    h = size / 2
    squares: list[tuple[tuple[float, float], float]] = []
    r_in = workspace.r_min
    span = workspace.theta_max - workspace.theta_min
    while math.hypot(r_in + size, h) <= workspace.r_max:
        rc = r_in + h
        half = math.atan(h / r_in) + math.atan(gap / 2 / r_in)
        n = int(span // (2 * half))
        th0 = workspace.theta_min + (span - n * 2 * half) / 2 + half
        for i in range(n):
            th = th0 + i * 2 * half
            centre = (rc * math.cos(th), rc * math.sin(th))
            cl = Cluster(0, centre, th, size, "train")
            if all(workspace.contains(p) for p in cl.corners()):
                squares.append((centre, th))
        r_in = math.hypot(r_in + size, h) + gap
    return squares


def _yaw_for(orientation: str, theta: float, rng: np.random.Generator, jitter_deg: float) -> float:
    base = theta if orientation == "horizontal" else theta + math.pi / 2
    return float((base + math.radians(rng.uniform(-jitter_deg, jitter_deg))) % math.pi)


def _recovery_arm(
    where: str, bag_xy: np.ndarray, rng: np.random.Generator
) -> tuple[tuple[float, float, float], float]:
    """(tool position, gripper angle) of a recovery start.

    mug: 11-14 cm above the mug, gripper anywhere from closed to open.
    missed_grasp: 2-4 cm beside the bag in any direction, pad tips 3-8 cm above the table (clear
    of the 1.5 cm bag), gripper 0-0.4 rad (12-38 mm: closed past every side of the bag)."""
    if where == "mug":
        tcp = (
            float(MUG_POS[0] + rng.uniform(-0.02, 0.02)),
            float(MUG_POS[1] + rng.uniform(-0.02, 0.02)),
            float(rng.uniform(0.11, 0.14)),
        )
        return tcp, float(rng.uniform(0.0, 1.0))
    d, phi = rng.uniform(0.02, 0.04), rng.uniform(-math.pi, math.pi)
    tcp = (
        float(bag_xy[0] + d * math.cos(phi)),
        float(bag_xy[1] + d * math.sin(phi)),
        float(rng.uniform(0.04, 0.09)),
    )
    return tcp, float(rng.uniform(0.0, 0.4))


def make_plan(config: PlanConfig | None = None, workspace: Workspace | None = None) -> Plan:
    """Draw a plan. Deterministic in config.seed."""
    config = config or PlanConfig()
    workspace = workspace or Workspace()
    squares = tile_workspace(workspace, config.cluster_size_m)
    if config.n_clusters > len(squares):
        raise PlanError(
            f"n_clusters={config.n_clusters} clusters of {config.cluster_size_m * 100:.0f} cm do not fit the "
            f"reachable workspace: at most {len(squares)} do. Ask for fewer or smaller clusters."
        )
    clusters = [
        Cluster(
            i + 1,
            (round(c[0], 5), round(c[1], 5)),
            round(th, 5),
            config.cluster_size_m,
            "val" if i + 1 in config.val_clusters else "train",
        )
        for i, (c, th) in enumerate(squares[: config.n_clusters])
    ]
    rng = np.random.default_rng(config.seed)
    episodes: list[PlannedEpisode] = []
    test: list[PlannedEpisode] = []
    val: list[PlannedEpisode] = []

    def draw(cluster: Cluster, kind: str, split: str, k: int, index: int) -> PlannedEpisode:
        xy = cluster.sample(rng)
        orientation = ORIENTATIONS[k % 2]
        theta = math.atan2(xy[1], xy[0])
        yaw = _yaw_for(orientation, theta, rng, config.yaw_jitter_deg)
        arm_tcp, gripper = None, 0.1
        recovery_start = None
        if kind == "recovery":
            # Offset by the cluster so that start kind and orientation (k % 2) do not move in
            # lockstep: every start kind meets both bag orientations across clusters.
            recovery_start = config.recovery_starts[(k + cluster.id) % len(config.recovery_starts)]
            arm_tcp, gripper = _recovery_arm(recovery_start, xy, rng)
        return PlannedEpisode(
            index=index, cluster=cluster.id, split=split, kind=kind,
            bag_xy=(float(xy[0]), float(xy[1])), bag_yaw=yaw, orientation=orientation,
            seed=int(config.seed * 100_000 + index + (0 if split in ("train", "val") else 50_000)),
            arm_tcp=arm_tcp, gripper=gripper, recovery_start=recovery_start,
        )  # fmt: skip

    for cluster in clusters:
        for k in range(config.positions_per_cluster):
            episodes.append(draw(cluster, "position", cluster.split, k, len(episodes)))
        if cluster.split == "train":
            for k in range(config.recovery_per_cluster):
                episodes.append(draw(cluster, "recovery", "train", k, len(episodes)))
    for cluster in clusters:
        if cluster.split == "train":
            for k in range(config.test_per_cluster):
                test.append(draw(cluster, "position", "test", k, len(test)))
    for e in episodes:
        if e.split == "val" and e.kind == "position":
            val.append(e)
    return Plan(config, workspace, clusters, episodes, test, val)


def draw_workspace(ax, plan: Plan, cluster_faces: dict[int, Any] | None = None) -> None:
    """Draw the plan's ground truth on a matplotlib axis: workspace sector, clusters (held-out
    ones hatched), the mug and the arm's base. cluster_faces: {cluster id: colour} to override
    the default train/val colours (the evaluation's success map uses it)."""
    from matplotlib.patches import Circle, Polygon, Wedge

    ws = plan.workspace
    ax.add_patch(
        Wedge((0, 0), ws.r_max, math.degrees(ws.theta_min), math.degrees(ws.theta_max),
              width=ws.r_max - ws.r_min, facecolor="0.93", edgecolor="0.6", label="reachable workspace")
    )  # fmt: skip
    for c in plan.clusters:
        val = c.split == "val"
        face = (cluster_faces or {}).get(c.id, "#fde0dd" if val else "#e5f0fa")
        ax.add_patch(
            Polygon(c.corners(), closed=True, facecolor=face, edgecolor="#c51b7d" if val else "#3182bd",
                    hatch="//" if val else None, lw=1.2)
        )  # fmt: skip
    ax.add_patch(Circle(plan.mug_xy, 0.05, facecolor="#2171b5", alpha=0.8, label="mug"))
    ax.add_patch(Circle((0, 0), 0.045, facecolor="0.2", label="arm base"))
    ax.set_aspect("equal")
    ax.set_xlim(-0.2, 0.45)
    ax.set_ylim(-0.42, 0.42)
    ax.set_xlabel("x (m, forward)")
    ax.set_ylabel("y (m, left)")


def plot_plan(plan: Plan, path: str | Path) -> Path:
    """PNG of the workspace: clusters (held-out ones hatched), recorded starts, recovery
    starts, evaluation positions, the mug and the arm's base."""
    fig, ax = pyplot().subplots(figsize=(7.5, 6.5))
    draw_workspace(ax, plan)
    for c in plan.clusters:
        ax.text(*c.center_xy, str(c.id), ha="center", va="center", fontsize=11, weight="bold",
                color="#c51b7d" if c.split == "val" else "#08519c")  # fmt: skip
    pos = np.array([e.bag_xy for e in plan.episodes if e.kind == "position" and e.split == "train"])
    rec = np.array([e.bag_xy for e in plan.episodes if e.kind == "recovery"] or np.zeros((0, 2)))
    valp = np.array([e.bag_xy for e in plan.val] or np.zeros((0, 2)))
    test = np.array([e.bag_xy for e in plan.test] or np.zeros((0, 2)))
    ax.scatter(pos[:, 0], pos[:, 1], s=12, c="#08519c", label="training start")
    if len(rec):
        ax.scatter(
            rec[:, 0], rec[:, 1], s=40, marker="x", c="#e6550d", label="recovery start (bag)"
        )
    if len(valp):
        ax.scatter(valp[:, 0], valp[:, 1], s=16, c="#c51b7d", label="validation (held out)")
    if len(test):
        ax.scatter(
            test[:, 0],
            test[:, 1],
            s=36,
            marker="^",
            facecolors="none",
            edgecolors="k",
            label="test position",
        )
    ax.annotate(
        "forward (+x)",
        xy=(0.42, 0.0),
        xytext=(0.33, -0.02),
        fontsize=8,
        arrowprops={"arrowstyle": "->"},
    )
    s = plan.summary()
    ax.set_title(
        f"Recording plan (seed {plan.config.seed}): {s['clusters']} clusters, {s['train_episodes']} train "
        f"({s['recovery_share']:.0%} recovery), {s['val_episodes']} val; eval {s['eval_test']} test + {s['eval_val']} val",
        fontsize=9,
    )
    ax.legend(loc="lower left", fontsize=7)
    fig.tight_layout()
    return save_png(fig, path, dpi=110)


@dataclass
class PlanResult:
    """What `write_plan` wrote: the plan file, its figure (if asked for) and the plan's counts."""

    plan: Path
    summary: dict[str, Any]
    figure: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"plan": str(self.plan), **self.summary}
        if self.figure is not None:
            out["figure"] = str(self.figure)
        return out


def write_plan(config: PlanConfig, out: str | Path, figure: str | Path | None = None) -> PlanResult:
    """Draw the plan for `config`, save it to `out` (and a PNG of it to `figure`)."""
    plan = make_plan(config)
    path = plan.save(out)
    fig = plot_plan(plan, figure) if figure is not None else None
    return PlanResult(plan=path, summary=plan.summary(), figure=fig)
