"""Figures of training runs: loss curves of `edgevla train`, and `edgevla pretrain`'s curves
beside its predicted vs true bag positions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgevla.figures import pyplot, save_png
from edgevla.train.run_folder import CURVES_FILE, read_log


def plot_curves(run: Path) -> Path:
    """<run>/curves.png: train loss (and L1), validation loss, log scale."""
    plt = pyplot()
    log = read_log(run)
    train = [r for r in log if "loss" in r]
    val = [r for r in log if "val_loss" in r]
    fig, ax = plt.subplots(figsize=(7, 4))
    if train:
        ax.plot([r["step"] for r in train], [r["loss"] for r in train], label="train loss", lw=1)
        if "l1_loss" in train[0]:
            ax.plot(
                [r["step"] for r in train], [r["l1_loss"] for r in train], label="train L1", lw=1
            )
    if val:
        ax.plot(
            [r["step"] for r in val],
            [r["val_loss"] for r in val],
            "o-",
            label="validation loss (held-out cluster)",
        )
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(f"training curves: {run}")
    fig.tight_layout()
    return save_png(fig, Path(run) / CURVES_FILE, dpi=100)


def plot_pretraining(
    out: Path, log: list[dict[str, Any]], pred: np.ndarray, true: np.ndarray
) -> Path:
    """pretrain.png: loss curves, and predicted vs true bag positions of the validation scenes."""
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
    train = [r for r in log if "loss" in r]
    val = [r for r in log if "val_loss" in r]
    ax1.plot([r["step"] for r in train], [r["loss"] for r in train], lw=1, label="train")
    ax1.plot([r["step"] for r in val], [r["val_loss"] for r in val], "o-", label="validation")
    ax1.set_yscale("log")
    ax1.set_xlabel("step")
    ax1.set_ylabel("MSE (standardised labels)")
    ax1.grid(alpha=0.3)
    ax1.legend()
    ax1.set_title("trunk pre-training")
    for (tx, ty), (px, py) in zip(true[:, :2], pred[:, :2], strict=True):
        ax2.plot([ty, py], [tx, px], color="tab:red", lw=0.6)
    ax2.scatter(true[:, 1], true[:, 0], s=6, color="k", label="true bag position")
    ax2.scatter(pred[:, 1], pred[:, 0], s=6, color="tab:red", label="predicted")
    ax2.set_aspect("equal")
    ax2.invert_xaxis()
    ax2.set_xlabel("y (m, arm's left)")
    ax2.set_ylabel("x (m, ahead)")
    ax2.legend(loc="lower left", fontsize=8)
    err = np.linalg.norm(pred[:, :2] - true[:, :2], axis=1).mean() * 100
    ax2.set_title(f"validation scenes: bag xy error {err:.1f} cm (mean)")
    fig.tight_layout()
    return save_png(fig, Path(out) / "pretrain.png", dpi=110)
