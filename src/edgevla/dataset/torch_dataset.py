"""Training samples from recorded datasets: one observation, the action chunk that follows.

For sample (episode e, frame t) with chunk size C and episode length T:

    frames      0   1  ...  t  t+1 ... T-1 | (past the end)
    observation             ^ state[t], images[t]
    action                  [a_t, a_t+1, ..., a_T-1, a_T-1, a_T-1]   (C rows)
    action_is_pad           [F,   F,    ..., F,     T,     T    ]

Rows past the episode end repeat the last action and are flagged in `action_is_pad`, as LeRobot
does (it clamps the query index and sets "action_is_pad"); ACT masks them out of the L1 loss.

Video is decoded once per episode into an in-memory uint8 cache in (T, 3, H, W) layout, so a
sample costs one slice and one uint8 -> float conversion per camera. Memory: 3 * H * W bytes
per frame and camera (110 KB for three 96x128 cameras, ~3.3 GB per 30,000 frames); see
`cache_nbytes_estimate`. With DataLoader workers each worker fills its own cache; call
`warm_up()` before creating the DataLoader so forked workers share the decoded frames. With
`frame_cache` (a directory, see frame_cache.py) decoded episodes are kept on disk and
memory-mapped from there instead (the page cache is shared by runs on the same dataset), so the
next run skips decoding.

Values are returned raw (not normalised), like LeRobot's datasets; `stats` holds the
meta/stats.json statistics (aggregated over datasets) for the policy's Normalizer.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from edgevla_runtime.features import ACTION_KEY, STATE_KEY, image_key
from torch.utils.data import Dataset

from edgevla.dataset import stats as dstats
from edgevla.dataset.frame_cache import FrameCache
from edgevla.dataset.lerobot.reader import LeRobotDatasetReader
from edgevla.dataset.stats import Stats, load_stats, stats_from_json


class ActionChunkDataset(Dataset):
    """Samples (observation at t, actions t..t+C-1) over one or more datasets and a split.

    roots: dataset directories (or open readers).
    split: keep episodes whose `split_column` equals it ("train", "val"); None keeps all.
    cameras: camera names to return (default: all cameras of the first dataset).
    """

    def __init__(
        self,
        roots: str | Path | LeRobotDatasetReader | Sequence[str | Path | LeRobotDatasetReader],
        *,
        chunk_size: int = 100,
        split: str | None = "train",
        split_column: str = "split",
        cameras: Sequence[str] | None = None,
        frame_cache: str | Path | FrameCache | None = None,
    ) -> None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        if isinstance(roots, str | Path | LeRobotDatasetReader):
            roots = [roots]
        self.readers = [
            r if isinstance(r, LeRobotDatasetReader) else LeRobotDatasetReader(r) for r in roots
        ]
        if not self.readers:
            raise ValueError("no datasets given")
        self.chunk_size = chunk_size
        if frame_cache is not None and not isinstance(frame_cache, FrameCache):
            frame_cache = FrameCache(frame_cache)
        self.frame_cache = frame_cache
        first = self.readers[0]
        self.fps = first.fps
        self.cameras = list(cameras) if cameras is not None else first.cameras
        self.image_keys = [image_key(c) for c in self.cameras]
        for r in self.readers:
            missing = [c for c in self.cameras if c not in r.cameras]
            if r.fps != self.fps or missing or r.image_hw != first.image_hw:
                raise ValueError(
                    f"{r.root} does not match {first.root}: fps {r.fps} vs {self.fps}, image "
                    f"{r.image_hw} vs {first.image_hw}, missing cameras {missing}"
                )
            if r.features[STATE_KEY]["shape"] != first.features[STATE_KEY]["shape"]:
                raise ValueError(f"{r.root}: state shape differs from {first.root}")

        # Episodes of the split, with their (cheap) vector data prepared once.
        self.episodes: list[tuple[int, int]] = []  # (dataset, episode)
        self._state: list[torch.Tensor] = []
        self._action: list[torch.Tensor] = []  # padded to T + C - 1 rows
        self._meta: list[dict[str, Any]] = []
        for d, r in enumerate(self.readers):
            if split is not None and split_column not in r.extra_episode_columns:
                raise ValueError(
                    f"{r.root} has no {split_column!r} episode column to select split "
                    f"{split!r}; pass split=None to use all its episodes"
                )
            for ep in r.episodes:
                if split is not None and ep[split_column] != split:
                    continue
                f = r.frames(ep["episode_index"])
                pad = np.repeat(f.action[-1:], chunk_size - 1, axis=0)
                self.episodes.append((d, ep["episode_index"]))
                self._state.append(torch.from_numpy(f.state.copy()))  # reader arrays are read-only
                self._action.append(torch.from_numpy(np.concatenate([f.action, pad])))
                self._meta.append(
                    {
                        "length": len(f),
                        "index": torch.from_numpy(f.index.copy()),
                        "timestamp": torch.from_numpy(f.timestamp.copy()),
                        "task_index": torch.from_numpy(f.task_index.copy()),
                        "tasks": r.tasks,
                    }
                )
        if not self.episodes:
            raise ValueError(f"no episodes with {split_column} == {split!r} in the given datasets")
        lengths = np.array([m["length"] for m in self._meta])
        self._sample_episode = np.repeat(np.arange(len(lengths)), lengths)
        self._sample_t = np.concatenate([np.arange(n) for n in lengths])
        self._steps = torch.arange(chunk_size)
        self._cache: dict[int, dict[str, torch.Tensor]] = {}

    def __len__(self) -> int:
        return len(self._sample_t)

    @property
    def stats(self) -> Stats:
        """meta/stats.json of the dataset (count-weighted aggregate over several), float32."""
        if len(self.readers) == 1:
            return load_stats(self.readers[0].root / "meta" / "stats.json")
        merged = dstats.aggregate_all([r.stats for r in self.readers])
        return stats_from_json(dstats.to_json(merged))

    @property
    def cache_nbytes_estimate(self) -> int:
        """Bytes the decoded-frame cache takes once every episode has been visited."""
        h, w = self.readers[0].image_hw
        return len(self) * len(self.cameras) * 3 * h * w

    def warm_up(self) -> None:
        """Decode every episode now (otherwise each is decoded on its first sample)."""
        for i in range(len(self.episodes)):
            self._images(i)

    def _images(self, i: int) -> dict[str, torch.Tensor]:
        cached = self._cache.get(i)
        if cached is None:
            d, e = self.episodes[i]
            reader = self.readers[d]
            if self.frame_cache is not None:
                cached = {
                    k: torch.from_numpy(self.frame_cache.frames(reader, e, k))
                    for k in self.image_keys
                }
            else:
                cached = {
                    k: torch.from_numpy(reader.video(e, k)).permute(0, 3, 1, 2).contiguous()
                    for k in self.image_keys
                }  # each (T, 3, H, W) uint8
            self._cache[i] = cached
        return cached

    def __getitem__(self, idx: int) -> dict[str, Any]:
        i = int(self._sample_episode[idx])
        t = int(self._sample_t[idx])
        meta = self._meta[i]
        item: dict[str, Any] = {STATE_KEY: self._state[i][t]}
        for key, frames in self._images(i).items():
            item[key] = frames[t].float().div_(255.0)  # (3, H, W) in [0, 1]
        item[ACTION_KEY] = self._action[i][t : t + self.chunk_size]  # (C, D)
        item["action_is_pad"] = (self._steps + t) >= meta["length"]  # (C,)
        task_index = int(meta["task_index"][t])
        item.update(
            {
                "episode_index": torch.tensor(self.episodes[i][1]),
                "dataset_index": torch.tensor(self.episodes[i][0]),
                "frame_index": torch.tensor(t),
                "index": meta["index"][t],
                "timestamp": meta["timestamp"][t],
                "task_index": meta["task_index"][t],
                "task": meta["tasks"][task_index],
            }
        )
        return item
