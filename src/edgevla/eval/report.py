"""Evaluation summaries: the paper-format table, per-set figures, the per-cluster success map."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from edgevla_runtime.control.metrics import EpisodeResult

from edgevla.dataset.plan import Plan, draw_workspace
from edgevla.eval.parallel import EpisodeOutcome, iter_sets
from edgevla.figures import pyplot, save_png


def summarise(results: list[EpisodeOutcome]) -> dict[str, Any]:
    """Success per set and the control metrics, for one policy/format/mode (the "modes"
    entries of results.json)."""
    out: dict[str, Any] = {}
    for name, rs in iter_sets(results):
        n = len(rs)
        out[f"success_{name}"] = float(np.mean([r.success for r in rs])) if n else None
        out[f"n_{name}"] = n
    loop = [r.control for r in results]
    ok = [c for c in loop if c.success]
    lat = [x for c in loop for x in c.latencies_s]
    out.update(
        {
            "latency_p50_s": float(np.median(lat)) if lat else None,
            "latency_p95_s": float(np.percentile(lat, 95)) if lat else None,
            "latency_p99_s": float(np.percentile(lat, 99)) if lat else None,
            "completion_time_s": float(np.mean([c.completion_time_s for c in ok])) if ok else None,
            "idle_fraction": float(np.mean([c.idle_fraction for c in loop])),
            "idle_fraction_running": float(np.mean([c.idle_fraction_running for c in loop])),
            "underruns": int(sum(c.underruns for c in loop)),
            "boundary_accel_max": float(np.max([c.boundary_accel_max for c in loop])),
            "boundary_accel_mean": float(np.mean([c.boundary_accel_max for c in loop])),
            "inferences": int(sum(c.inference_count for c in loop)),
            "errors": [c.error for c in loop if c.error],
            "outcomes": outcome_counts(results),
            "first_grasp": first_grasp_summary([r.grasps for r in results]),
        }
    )
    out.update(realtime_summary(loop))
    out.update(remote_summary(results))
    return out


def realtime_summary(loop: list[EpisodeResult]) -> dict[str, Any]:
    """Tick timing of real-time episodes (empty on the virtual clock): the median episode's
    jitter p50, the worst episode's jitter p99, and deadline misses (ticks that started more
    than one period late) summed over the episodes."""
    timed = [c for c in loop if c.tick_jitter_p50_s is not None]
    if not timed:
        return {}
    return {
        "tick_jitter_p50_s": float(np.median([c.tick_jitter_p50_s for c in timed])),
        "tick_jitter_p99_s": float(np.max([c.tick_jitter_p99_s for c in timed])),
        "deadline_misses": int(sum(c.deadline_misses for c in timed)),
        "episodes_with_deadline_misses": int(sum(c.deadline_misses > 0 for c in timed)),
    }


def remote_summary(results: list[EpisodeOutcome]) -> dict[str, Any]:
    """A remote policy's calls pooled over the episodes (empty for a local policy): the
    server's own inference time, the round trip the robot measured, and their difference per
    call (network + framing), p50 / p99."""
    server = [x for r in results for x in r.server_inference_s]
    if not server:
        return {}
    trip = [x for r in results for x in r.round_trip_s]
    net = [
        t - s for r in results for t, s in zip(r.round_trip_s, r.server_inference_s, strict=False)
    ]

    def p(xs: list[float], q: float) -> float | None:
        return float(np.percentile(xs, q)) if xs else None

    return {
        "server_inference_p50_s": p(server, 50), "server_inference_p99_s": p(server, 99),
        "round_trip_p50_s": p(trip, 50), "round_trip_p99_s": p(trip, 99),
        "network_p50_s": p(net, 50), "network_p99_s": p(net, 99),
        "remote_calls": len(server),
    }  # fmt: skip


# A first grasp this close to the bag's centre (horizontally) is "on target": the expert's
# single grasp still succeeds 93% of the time aimed 1.5 cm sideways, 88% aimed 1.5 cm too far
# (`edgevla sim bench`). Height is not part of it (a grasp closing high on the bag counts as on
# target); off-target grasps report their median height.
ON_TARGET_M = 0.015


def first_grasp_summary(grasps: list[list[dict[str, float]]]) -> dict[str, Any]:
    """Where the first grasp of each episode closed, relative to the bag (sim.outcome.grasp_offset).

    grasps: each episode's grasps, in order (EpisodeOutcome.grasps); only the first counts.

    {"n_on_target", "n_off_target", "n_never_closed", and over the off-target grasps the median
    "off_distance_m" and median "off_radial_m" / "off_tangential_m" / "off_height_m"} : a
    systematic miss (all to one side) shows as a median far from zero in one direction."""
    firsts = [g[0] for g in grasps if g]
    off = [g for g in firsts if np.hypot(g["radial_m"], g["tangential_m"]) > ON_TARGET_M]
    out: dict[str, Any] = {
        "n_on_target": len(firsts) - len(off),
        "n_off_target": len(off),
        "n_never_closed": sum(1 for g in grasps if not g),
    }
    if off:
        out["off_distance_m"] = float(
            np.median([np.hypot(g["radial_m"], g["tangential_m"]) for g in off])
        )
        for axis in ("radial", "tangential", "height"):
            out[f"off_{axis}_m"] = float(np.median([g[f"{axis}_m"] for g in off]))
    return out


def fmt_first_grasp(s: dict[str, Any]) -> str:
    """ "first grasp: 17 on target, 11 off (median 4.8 cm; radial +0.9, tangential +4.7,
    height +1.9 cm), 2 never closed" """
    text = f"first grasp: {s['n_on_target']} on target (within {ON_TARGET_M * 100:.1f} cm horizontally), {s['n_off_target']} off"
    if s["n_off_target"]:
        text += (
            f" (median {s['off_distance_m'] * 100:.1f} cm; radial {s['off_radial_m'] * 100:+.1f},"
            f" tangential {s['off_tangential_m'] * 100:+.1f}, height {s['off_height_m'] * 100:+.1f} cm)"
        )
    return text + f", {s['n_never_closed']} never closed"


def plot_first_grasps(results: list[EpisodeOutcome], path: str | Path, title: str) -> Path:
    """Scatter of each episode's first grasp, tool point relative to the bag (radial across,
    tangential up, cm), marked by how the episode ended; the bag's footprint for scale."""
    plt = pyplot()
    from edgevla.sim.outcome import OUTCOMES
    from edgevla.sim.scene import BAG_HALF_SIZE

    fig, ax = plt.subplots(figsize=(6, 5.5))
    half = 100 * max(BAG_HALF_SIZE[0], BAG_HALF_SIZE[1])
    ax.add_patch(plt.Circle((0, 0), half, fill=False, ls="--", color="0.5", label="bag (widest)"))
    ax.add_patch(plt.Circle((0, 0), 100 * ON_TARGET_M, fill=False, color="g", label="on target"))
    markers = dict(zip(OUTCOMES, ("o", "x", "v", "s", "D"), strict=True))
    for kind in OUTCOMES:
        pts = [r.grasps[0] for r in results if r.outcome == kind and r.grasps]
        if pts:
            ax.scatter([100 * g["radial_m"] for g in pts], [100 * g["tangential_m"] for g in pts],
                       marker=markers[kind], label=f"{kind} ({len(pts)})")  # fmt: skip
    ax.axhline(0, color="0.85", lw=0.8)
    ax.axvline(0, color="0.85", lw=0.8)
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel("radial offset (cm, + beyond the bag)")
    ax.set_ylabel("tangential offset (cm, + counter-clockwise)")
    ax.set_title(
        title + "\nfirst grasp of each episode, tool point relative to the bag", fontsize=9
    )
    ax.legend(fontsize=8, loc="best")
    return _save(fig, path)


def outcome_counts(results: list[EpisodeOutcome]) -> dict[str, int]:
    """How the episodes ended (edgevla.sim.outcome.OUTCOMES), in that order, zeros left out."""
    from edgevla.sim.outcome import OUTCOMES

    counts = {k: sum(r.outcome == k for r in results) for k in OUTCOMES}
    return {k: v for k, v in counts.items() if v}


def fmt_outcomes(counts: dict[str, int]) -> str:
    """ "never_lifted 5, dropped 2" (failures only)."""
    return ", ".join(f"{k} {v}" for k, v in counts.items() if k != "success") or "none"


def per_cluster(results: list[EpisodeOutcome]) -> dict[int, float]:
    by: dict[int, list[bool]] = {}
    for r in results:
        by.setdefault(int(r.cluster), []).append(bool(r.success))
    return {c: float(np.mean(v)) for c, v in sorted(by.items())}


def plot_cluster_map(
    plan: Plan, results: list[EpisodeOutcome], path: str | Path, title: str
) -> Path:
    """Clusters coloured by success rate (red 0 -> green 1), each position marked pass/fail."""
    plt = pyplot()
    rates = per_cluster(results)
    cmap = plt.get_cmap("RdYlGn")
    fig, ax = plt.subplots(figsize=(7, 6.2))
    draw_workspace(ax, plan, {c: cmap(r) for c, r in rates.items()})
    for c in plan.clusters:
        rate = rates.get(c.id)
        label = f"{c.id}\n{rate:.0%}" if rate is not None else str(c.id)
        ax.text(*c.center_xy, label, ha="center", va="center", fontsize=9, weight="bold")
    positions = {e.index: e for e in plan.test}
    val_positions = {e.index: e for e in plan.val}
    for r in results:
        e = (positions if r.set == "test" else val_positions).get(r.position)
        if e is not None:
            ax.plot(*e.bag_xy, "o" if r.success else "x", color="k", ms=4)
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(0, 1))
    fig.colorbar(sm, ax=ax, label="success rate", shrink=0.8)
    ax.set_title(
        title + "\n(o success, x failure; hatched = held-out validation cluster)", fontsize=9
    )
    return _save(fig, path)


def _save(fig, path: str | Path) -> Path:
    """Lay out, write as PNG (folders created) and free a figure."""
    fig.tight_layout()
    return save_png(fig, path, dpi=100)


def fmt_rate(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def fmt_s(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f} s"


def plot_queue_size(
    result: EpisodeResult, path: str | Path, chunk_size: int | None = None, title: str = ""
) -> Path:
    """Write a PNG of the queue size per tick, with requests, arrivals and the trigger level.

    Reading it: a saw-tooth that never touches zero is healthy async control; flat stretches at
    zero are underruns (async) or waits (sync); the dotted line is where requests are sent.
    """
    t = np.arange(len(result.queue_sizes)) / result.fps  # (T,) seconds
    fig, ax = pyplot().subplots(figsize=(8, 3.2))
    ax.step(t, result.queue_sizes, where="post", lw=1.2, label="queue size")
    trig = np.asarray(result.trigger_sizes, dtype=np.float64)
    if trig.size and np.isfinite(trig).any():
        ax.step(t, trig, where="post", ls=":", c="0.4", lw=1.0, label="request trigger")
    for i, tick in enumerate(result.request_ticks):
        ax.axvline(tick / result.fps, c="tab:orange", lw=0.6, alpha=0.6,
                   label="request" if i == 0 else None)  # fmt: skip
    for i, tick in enumerate(result.arrival_ticks):
        ax.axvline(tick / result.fps, c="tab:green", lw=0.6, alpha=0.6, ls="--",
                   label="arrival" if i == 0 else None)  # fmt: skip
    if chunk_size:
        ax.set_ylim(0, chunk_size * 1.05)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("queued actions")
    ax.set_title(
        title
        or f"idle {result.idle_fraction:.0%}, underruns {result.underruns}, "
        f"p95 latency {result.latency_p95_s:.3f} s"
    )
    ax.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    return save_png(fig, path, dpi=110)
