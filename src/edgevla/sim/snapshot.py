"""A PNG of the three camera views side by side, and optionally a strip of frames from an expert
rollout, so a person can check the scene at a glance (`edgevla sim snapshot`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from edgevla_runtime.features import image_key

from edgevla.figures import pyplot, save_png
from edgevla.sim.env import TeaBagMugEnv
from edgevla.sim.expert import ScriptedExpert, rollout_expert
from edgevla.sim.scene import SceneConfig


@dataclass(frozen=True)
class SnapshotConfig:
    """Which PNGs to write: the camera views, and an expert rollout strip with `episode`."""

    out: Path = Path("outputs/snapshot")
    seed: int = 0
    episode: bool = False
    """also write a strip of frames from an expert rollout"""
    frames: int = 8
    """frames in the episode strip"""
    height: int = 96
    width: int = 128

    def __post_init__(self) -> None:
        if self.frames < 1:
            from edgevla.errors import BadInput

            raise BadInput(f"must be >= 1, got {self.frames}", field="--frames")
        SceneConfig(image_height=self.height, image_width=self.width)  # checks the size


@dataclass
class SnapshotResult:
    files: list[str]
    success: bool | None = None
    episode_steps: int | None = None

    def to_dict(self) -> dict:
        d = {"files": self.files, "success": self.success}
        if self.episode_steps is not None:
            d["episode_steps"] = self.episode_steps
        return d


def _figure(
    images: list[list[np.ndarray]],
    row_titles: list[str],
    col_titles: list[str],
    path: Path,
    title: str,
):
    plt = pyplot()
    rows, cols = len(images), len(images[0])
    h, w = images[0][0].shape[:2]
    scale = 2.4 / h if h <= 240 else 1.6 / h
    fig, axes = plt.subplots(
        rows, cols, figsize=(cols * w * scale + 0.4, rows * h * scale + 0.6), squeeze=False
    )
    for r in range(rows):
        for c in range(cols):
            ax = axes[r][c]
            ax.imshow(images[r][c], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(col_titles[c], fontsize=9)
            if c == 0:
                ax.set_ylabel(row_titles[r], fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_png(fig, path, dpi=100)


def snapshot(config: SnapshotConfig) -> SnapshotResult:
    scene = SceneConfig(image_height=config.height, image_width=config.width)
    env = TeaBagMugEnv(scene)
    obs, _ = env.reset(seed=config.seed)
    cams = list(scene.cameras)
    written = []
    views = config.out / "views.png"
    _figure(
        [[obs[image_key(c)] for c in cams]],
        [f"seed {config.seed}"],
        cams,
        views,
        f"edgevla TeaBagMug: cameras at {config.height}x{config.width}",
    )
    written.append(views)
    result = SnapshotResult(files=[])
    if config.episode:
        frames, infos = [], []
        expert = ScriptedExpert()
        for o, _, info in rollout_expert(env, seed=config.seed, expert=expert):
            frames.append(o)
            infos.append(info)
        idx = np.linspace(0, len(frames) - 1, config.frames).round().astype(int)
        grid = [[frames[i][image_key(c)] for i in idx] for c in cams]
        strip = config.out / "episode.png"
        success = bool(infos[-1]["success"])
        _figure(
            grid,
            cams,
            [f"t={i / scene.fps:.1f}s" for i in idx],
            strip,
            f"expert rollout, seed {config.seed}: {len(frames)} steps, success={success}",
        )
        written.append(strip)
        result.success = success
        result.episode_steps = len(frames)
    env.close()
    result.files = [str(p) for p in written]
    return result
