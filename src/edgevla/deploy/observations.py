"""Observations for export parity, calibration and quantisation error: rendered or recorded.

Deploy decisions (is the bundle equal to PyTorch? which activation ranges? how much error
does int8 cost?) are only as good as the observations they are measured on. Two sources:

    sim_observations(runner, n, seed)             the simulator at the policy's image size,
                                                  reset at seeded starts, moved by the expert
    dataset_observations(runner, root, n, seed,   frames of a recorded LeRobot dataset: the
                         split)                   cameras, lighting and poses the policy will
                                                  meet on the arm (the paper calibrates on its
                                                  own recordings)

Both return a list of observation dicts in the data contract (features.py):
    "observation.state" float32 (6,), "observation.images.<cam>" uint8 (H, W, 3).
A dataset whose cameras or image size do not match the model is refused before any work,
naming the camera or the size, since calibrating on the wrong images silently mis-sets every
activation range.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from edgevla_runtime.features import STATE_KEY, image_key

from edgevla.errors import BadInput


def sim_observations(runner, n: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """n observations the policy could meet: the simulator at the policy's image size, reset at
    seeded starts and moved by the scripted expert for a few steps (images and state vary)."""
    from edgevla.sim.env import TeaBagMugEnv
    from edgevla.sim.expert import ScriptedExpert
    from edgevla.sim.scene import SceneConfig

    h, w = runner.image_hw
    env = TeaBagMugEnv(SceneConfig(image_height=h, image_width=w))
    observations = []
    try:
        for i in range(n):
            obs, _ = env.reset(seed=seed + i)
            expert = ScriptedExpert()
            expert.reset(env)
            for _ in range(5 * i):  # later observations further into the motion
                obs, *_ = env.step(expert.act(env))
            observations.append({k: np.array(v) for k, v in obs.items()})
    finally:
        env.close()
    return observations


def check_dataset_fits(reader, camera_names, image_hw, dataset: Path) -> None:
    """Refuse a dataset the model cannot see through: a camera it lacks, another image size."""
    missing = [c for c in camera_names if c not in reader.cameras]
    if missing:
        raise BadInput(
            f"has cameras {reader.cameras}, the model needs {list(camera_names)} (missing "
            f"{missing}); calibrate on a dataset recorded with the model's cameras",
            path=dataset,
            field="--dataset",
        )
    if tuple(reader.image_hw) != tuple(image_hw):
        h, w = reader.image_hw
        raise BadInput(
            f"images are {h}x{w}, the model expects {image_hw[0]}x{image_hw[1]}; record at the "
            "model's image size (edgevla record --image-height/--image-width) or use another dataset",
            path=dataset,
            field="--dataset",
        )


def dataset_observations(
    runner, dataset: Path, n: int, seed: int = 0, split: str | None = "train"
) -> list[dict[str, np.ndarray]]:
    """n frames of a recorded dataset, drawn at random (seeded) across the episodes of `split`
    (the recorder's "split" column; every episode when the dataset has none or split is None),
    spread over as many episodes as possible. Calibration uses "train", held-out error "val".
    Each chosen episode's videos are decoded once."""
    from edgevla.dataset.lerobot.layout import DatasetFormatError
    from edgevla.dataset.lerobot.reader import LeRobotDatasetReader

    try:
        reader = LeRobotDatasetReader(dataset)
    except DatasetFormatError as e:
        raise BadInput(f"cannot read the dataset ({e})", path=dataset, field="--dataset") from e
    check_dataset_fits(reader, runner.camera_names, runner.image_hw, dataset)
    episodes = reader.episodes
    chosen = [
        e["episode_index"] for e in episodes if split is None or e.get("split", split) == split
    ]
    if not chosen:
        raise BadInput(f"has no {split!r} episodes to draw observations from",
                       path=dataset, field="--dataset")  # fmt: skip
    rng = np.random.default_rng(seed)
    rng.shuffle(chosen)
    per_episode: dict[int, int] = {}
    for i in range(n):
        per_episode[chosen[i % len(chosen)]] = per_episode.get(chosen[i % len(chosen)], 0) + 1
    observations = []
    for episode, count in per_episode.items():
        frames = reader.frames(episode)
        try:
            videos = {c: reader.video(episode, c) for c in runner.camera_names}
        except DatasetFormatError as e:
            raise BadInput(str(e), path=dataset, field="--dataset") from e
        for t in sorted(rng.choice(len(frames), size=min(count, len(frames)), replace=False)):
            obs = {STATE_KEY: np.asarray(frames.state[t], dtype=np.float32)}
            obs.update({image_key(c): np.ascontiguousarray(v[t]) for c, v in videos.items()})
            observations.append(obs)
    return observations


def observations(
    runner, n: int, seed: int, dataset: Path | None = None, split: str | None = "train"
) -> list[dict[str, np.ndarray]]:
    """From `dataset` when one is given, else rendered by the simulator."""
    if dataset is None:
        return sim_observations(runner, n, seed)
    return dataset_observations(runner, Path(dataset), n, seed, split)


def source_of(dataset: Path | None) -> str:
    """How a manifest or result names where its observations came from."""
    return "simulator" if dataset is None else f"dataset {Path(dataset).resolve()}"
