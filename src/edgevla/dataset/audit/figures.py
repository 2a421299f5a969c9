"""The audit's PNG figures: what a person looks at before deciding to re-record.

consistency.png  per camera, the camera-motion score of every episode and the threshold
brightness.png   per camera, every episode's static-scene brightness relative to the median
clusters.png     episodes per cluster (train rest / train recovery / val) and the minimum
contrast.png     object and arm contrast per episode (contrast cameras only)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgevla.dataset.audit.config import AuditConfig
from edgevla.dataset.audit.coverage import cluster_counts
from edgevla.figures import pyplot, save_png


def _per_camera(
    metrics: dict[str, Any], key: str, path: Path, ylabel: str, title: str, bands: tuple[float, ...]
) -> Path | None:
    cams = [c for c, m in metrics.items() if key in m]
    if not cams:
        return None
    plt = pyplot()
    fig, axes = plt.subplots(
        len(cams), 1, figsize=(8, 1.9 * len(cams) + 0.8), sharex=True, squeeze=False
    )
    for ax, cam in zip(axes[:, 0], cams, strict=True):
        eps = np.asarray(sorted(metrics[cam][key]))
        values = np.asarray([metrics[cam][key][e] for e in eps], dtype=float)
        bad = np.zeros(len(values), dtype=bool)
        for b in bands:
            bad |= values > b if b > 0 else values < b
            ax.axhline(b, color="#c51b7d", lw=1, ls="--")
        ax.bar(eps, values, color=np.where(bad, "#d7301f", "#3182bd"), width=0.8)
        ax.set_ylabel(f"{cam}\n{ylabel}", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    axes[-1, 0].set_xlabel("episode")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_png(fig, path, dpi=100)


def _clusters(episodes: list[dict[str, Any]], cfg: AuditConfig, path: Path) -> Path | None:
    if not episodes or "cluster_id" not in episodes[0]:
        return None
    counts = cluster_counts(episodes)
    ids = list(counts)
    rest = np.array([counts[c]["train"] - counts[c]["recovery"] for c in ids])
    rec = np.array([counts[c]["recovery"] for c in ids])
    val = np.array([counts[c]["val"] for c in ids])
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(5, 0.6 * len(ids) + 2), 3.6))
    x = np.arange(len(ids))
    ax.bar(x, rest, color="#3182bd", label="train (rest start)")
    ax.bar(x, rec, bottom=rest, color="#fd8d3c", label="train (recovery start)")
    ax.bar(x, val, bottom=rest + rec, color="#c51b7d", hatch="//", label="val (held out)")
    ax.axhline(cfg.min_episodes_per_cluster, color="k", ls="--", lw=1, label="minimum")
    ax.set_xticks(x, [str(c) for c in ids])
    ax.set_xlabel("cluster")
    ax.set_ylabel("episodes")
    ax.set_title("Episodes per cluster", fontsize=10)
    ax.set_ylim(0, max(int((rest + rec + val).max()), cfg.min_episodes_per_cluster) * 1.3)
    ax.legend(fontsize=7, loc="upper center", ncol=4)
    fig.tight_layout()
    return save_png(fig, path, dpi=100)


def _contrast(metrics: dict[str, Any], cfg: AuditConfig, path: Path) -> Path | None:
    cams = [c for c, m in metrics.items() if "object_contrast" in m]
    if not cams:
        return None
    plt = pyplot()
    fig, axes = plt.subplots(len(cams), 1, figsize=(8, 2.2 * len(cams) + 0.8), squeeze=False)
    for ax, cam in zip(axes[:, 0], cams, strict=True):
        for key, dx, color in (
            ("object_contrast", -0.2, "#fd8d3c"),
            ("arm_contrast", 0.2, "#636363"),
        ):
            eps = np.asarray(sorted(metrics[cam][key]))
            values = [metrics[cam][key][e] for e in eps]
            ax.bar(eps + dx, values, width=0.4, color=color, label=key.split("_")[0])
        ax.axhline(cfg.min_object_contrast, color="#fd8d3c", ls="--", lw=1)
        ax.axhline(cfg.min_arm_contrast, color="#636363", ls=":", lw=1)
        ax.set_ylabel(f"{cam}\nRGB distance", fontsize=8)
        ax.set_ylim(0, ax.get_ylim()[1] * 1.25)
        ax.legend(fontsize=7, loc="upper right", ncol=2)
    axes[-1, 0].set_xlabel("episode")
    fig.suptitle("Contrast against the background (dashed: warning level)", fontsize=10)
    fig.tight_layout()
    return save_png(fig, path, dpi=100)


def write_figures(
    out: Path, metrics: dict[str, Any], episodes: list[dict[str, Any]], cfg: AuditConfig
) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    made = [
        _per_camera(
            metrics, "consistency", out / "consistency.png", "motion score",
            "Camera consistency: net share of the static structure a camera motion brings back into register",
            (cfg.consistency_threshold,),
        ),
        _per_camera(
            metrics, "brightness_rel", out / "brightness.png", "vs median",
            "Brightness of the static scene relative to the dataset median",
            (cfg.brightness_rel_tol, -cfg.brightness_rel_tol),
        ),
        _clusters(episodes, cfg, out / "clusters.png"),
        _contrast(metrics, cfg, out / "contrast.png"),
    ]  # fmt: skip
    return [p for p in made if p is not None]
