"""`edgevla sim snapshot`: a PNG of the three camera views side by side, and with `--episode`
a strip of frames from an expert rollout, so a person can check the scene at a glance."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from edgevla_runtime.features import image_key

from edgevla.console import console, emit_json
from edgevla.sim.env import TeaBagMugEnv
from edgevla.sim.expert import ScriptedExpert, rollout_expert
from edgevla.sim.scene import SceneConfig


@dataclass
class SnapshotArgs:
    """Write PNGs of the camera views (and an expert rollout strip with --episode)."""

    out: Path = Path("outputs/snapshot")
    seed: int = 0
    episode: bool = False
    """also write a strip of frames from an expert rollout"""
    frames: int = 8
    """frames in the episode strip"""
    height: int = 96
    width: int = 128
    json: bool = False


def _figure(
    images: list[list[np.ndarray]],
    row_titles: list[str],
    col_titles: list[str],
    path: Path,
    title: str,
):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run(args: SnapshotArgs) -> dict:
    scene = SceneConfig(image_height=args.height, image_width=args.width)
    env = TeaBagMugEnv(scene)
    obs, _ = env.reset(seed=args.seed)
    cams = list(scene.cameras)
    written = []
    views = args.out / "views.png"
    _figure(
        [[obs[image_key(c)] for c in cams]],
        [f"seed {args.seed}"],
        cams,
        views,
        f"edgevla TeaBagMug: cameras at {args.height}x{args.width}",
    )
    written.append(views)
    result: dict = {"files": [], "success": None}
    if args.episode:
        frames, infos = [], []
        expert = ScriptedExpert()
        for o, _, info in rollout_expert(env, seed=args.seed, expert=expert):
            frames.append(o)
            infos.append(info)
        idx = np.linspace(0, len(frames) - 1, args.frames).round().astype(int)
        grid = [[frames[i][image_key(c)] for i in idx] for c in cams]
        strip = args.out / "episode.png"
        success = bool(infos[-1]["success"])
        _figure(
            grid,
            cams,
            [f"t={i / scene.fps:.1f}s" for i in idx],
            strip,
            f"expert rollout, seed {args.seed}: {len(frames)} steps, success={success}",
        )
        written.append(strip)
        result["success"] = success
        result["episode_steps"] = len(frames)
    env.close()
    result["files"] = [str(p) for p in written]
    if args.json:
        emit_json(result)
    else:
        for p in written:
            console.print(f"wrote {p}")
    return result
