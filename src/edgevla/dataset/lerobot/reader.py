"""One reader for LeRobot v3.0 datasets: ours and those LeRobot writes.

Opening validates everything that is cheap to check, so a broken dataset fails at once with the
file to blame rather than hours into training:
- meta/info.json: codebase_version "v3.0" (older ones are refused with the conversion to run),
  fps, features (state/action 1-D float32, cameras "video" with shape [H, W, 3]);
- meta/stats.json, meta/tasks.parquet, meta/episodes/*: present and readable; episodes numbered
  0..N-1 and their lengths summing to total_frames;
- data parquet: every referenced file readable, columns typed as the features say, global index
  contiguous, rows agreeing with the episodes table;
- videos: every referenced mp4 opens, has the feature's size, and holds as many frames as the
  rows of its episodes, counted in the header and by demuxing every packet (no decoding, ~1 s
  per 150k frames), which catches a truncated file whose header survived; decoding an
  episode re-checks its count.
Frames (state, action) are loaded eagerly (small); video is decoded per episode on request.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from edgevla_runtime.features import ACTION_KEY, IMAGE_KEY_PREFIX, STATE_KEY, camera_of, image_key

from edgevla.dataset import stats
from edgevla.dataset.lerobot import layout
from edgevla.dataset.lerobot.layout import DatasetFormatError
from edgevla.dataset.video import VideoError, decode_video, probe_video

_REQUIRED_INFO = ("codebase_version", "fps", "features", "total_episodes", "total_frames")


@dataclass(frozen=True)
class EpisodeFrames:
    """Per-frame columns of one episode, as numpy arrays of length T."""

    episode_index: int
    state: np.ndarray  # (T, D) float32
    action: np.ndarray  # (T, D) float32
    timestamp: np.ndarray  # (T,) float32, seconds from the episode start
    frame_index: np.ndarray  # (T,) int64
    index: np.ndarray  # (T,) int64, global frame index
    task_index: np.ndarray  # (T,) int64

    def __len__(self) -> int:
        return len(self.timestamp)


class LeRobotDatasetReader:
    """Read-only view of a finalized LeRobot v3.0 dataset at `root`."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetFormatError(f"no dataset at {self.root}: not a directory")
        if (self.root / layout.FINALIZE_COMMIT_PATH).exists():
            raise DatasetFormatError(
                f"{self.root}: an edgevla finalize was interrupted; complete it before reading "
                f"with `edgevla record --resume --out {self.root}` (in Python: "
                "LeRobotDatasetWriter.open_for_resume)"
            )
        self.info = self._read_info()
        if not self.info["total_episodes"]:
            raise DatasetFormatError(
                f"{self.root} has no finalized episodes (empty, or recorded but not yet "
                "published: finalize the writer first, e.g. `edgevla record --resume`)"
            )
        self.fps: int = int(self.info["fps"])
        self.features: dict[str, dict[str, Any]] = self.info["features"]
        self.robot_type: str | None = self.info.get("robot_type")
        self.video_keys: list[str] = layout.video_keys(self.features)
        self._check_features()
        self.stats: dict[str, stats.FeatureStats] = stats.from_json(
            layout.read_json(self.root / layout.STATS_PATH, "dataset statistics")
        )
        tasks = layout.read_parquet(self.root / layout.TASKS_PATH, "tasks table")
        if not {"task_index", "task"} <= set(tasks.column_names):
            raise DatasetFormatError(
                f"{self.root / layout.TASKS_PATH} lacks task_index/task columns"
            )
        order = np.argsort(tasks.column("task_index").to_numpy())
        self.tasks: list[str] = [tasks.column("task").to_pylist()[i] for i in order]
        self._episodes = self._read_episodes()
        self._data = self._read_data()
        self._check_videos()
        edgevla = self.root / layout.EDGEVLA_PATH
        self._edgevla = layout.read_json(edgevla, "edgevla metadata") if edgevla.exists() else {}
        staged = list((self.root / layout.STAGED_EPISODES_DIR).glob("episode-*"))
        if staged:
            warnings.warn(
                f"{self.root} has {len(staged)} recorded episodes not yet finalized; they are "
                "not visible here (call finalize() on the writer)",
                stacklevel=2,
            )

    # ------------------------------------------------------------------ validation

    def _read_info(self) -> dict[str, Any]:
        path = self.root / layout.INFO_PATH
        info = layout.read_json(path, "dataset info")
        version = info.get("codebase_version") if isinstance(info, dict) else None
        if version != layout.CODEBASE_VERSION:
            raise DatasetFormatError(
                f"{path}: codebase_version is {version!r}, this reader reads "
                f"{layout.CODEBASE_VERSION!r} only. Convert older datasets with LeRobot's "
                "`python -m lerobot.datasets.v30.convert_dataset_v21_to_v30 --repo-id=<id>`"
            )
        missing = [k for k in _REQUIRED_INFO if k not in info]
        if missing:
            raise DatasetFormatError(f"{path} lacks required keys {missing}")
        return info

    def _check_features(self) -> None:
        path = self.root / layout.INFO_PATH
        for key in (STATE_KEY, ACTION_KEY):
            ft = self.features.get(key)
            if ft is None or ft.get("dtype") != "float32" or len(ft.get("shape", [])) != 1:
                raise DatasetFormatError(
                    f"{path}: feature {key!r} must be float32 with a 1-D shape"
                )
        for key in layout.DEFAULT_FEATURES:
            if key not in self.features:
                raise DatasetFormatError(f"{path}: default feature {key!r} is missing")
        for key, ft in self.features.items():
            if ft.get("dtype") == "image":
                raise DatasetFormatError(
                    f"{path}: {key!r} is stored as images; only video features are supported"
                )
            if ft.get("dtype") == "video":
                shape = list(ft.get("shape", []))
                if len(shape) != 3 or shape[2] != 3 or not key.startswith(IMAGE_KEY_PREFIX):
                    raise DatasetFormatError(
                        f"{path}: video feature {key!r} must be observation.images.<cam> with "
                        f"shape [H, W, 3], got {shape}"
                    )
        if not self.video_keys:
            raise DatasetFormatError(f"{path}: the dataset has no camera (video) features")

    def _read_episodes(self) -> pa.Table:
        table = layout.read_episodes_table(self.root)
        if table is None:
            raise DatasetFormatError(
                f"{self.root}: no meta/episodes/chunk-*/file-*.parquet (an empty or unfinalized "
                "dataset: finalize the writer first)"
            )
        needed = ["episode_index", "length", "dataset_from_index", "dataset_to_index"]
        needed += ["data/chunk_index", "data/file_index"]
        for vk in self.video_keys:
            needed += [f"videos/{vk}/{c}" for c in ("chunk_index", "file_index")]
            needed += [f"videos/{vk}/{c}" for c in ("from_timestamp", "to_timestamp")]
        missing = [c for c in needed if c not in table.column_names]
        if missing:
            raise DatasetFormatError(f"{self.root}/meta/episodes: missing columns {missing}")
        idx = table.column("episode_index").to_pylist()
        if idx != list(range(len(idx))) or len(idx) != self.info["total_episodes"]:
            raise DatasetFormatError(
                f"{self.root}/meta/episodes: episode_index must be 0..{self.info['total_episodes'] - 1}"
                f" (total_episodes in info.json), got {idx[:5]}...{idx[-3:]} ({len(idx)} rows)"
            )
        lengths = table.column("length").to_numpy()
        if lengths.sum() != self.info["total_frames"]:
            raise DatasetFormatError(
                f"{self.root}: episode lengths sum to {lengths.sum()}, info.json total_frames "
                f"is {self.info['total_frames']}"
            )
        return table

    def _read_data(self) -> dict[str, np.ndarray]:
        eps = self._episodes
        files = sorted(
            set(
                zip(
                    eps.column("data/chunk_index").to_pylist(),
                    eps.column("data/file_index").to_pylist(),
                    strict=True,
                )
            )
        )
        schema = layout.data_schema(self.features)
        tables = []
        for chunk, file in files:
            rel = self.info.get("data_path", layout.DATA_PATH)
            path = self.root / rel.format(chunk_index=chunk, file_index=file)
            t = layout.read_parquet(path, "frame data")
            missing = [n for n in schema.names if n not in t.column_names]
            if missing:
                raise DatasetFormatError(f"{path}: missing columns {missing}")
            try:
                tables.append(t.select(schema.names).cast(schema.remove_metadata()))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
                raise DatasetFormatError(
                    f"{path}: columns do not match info.json features ({e})"
                ) from e
        table = pa.concat_tables(tables).sort_by("index")
        data = {}
        for name in schema.names:
            col = table.column(name).combine_chunks()
            if pa.types.is_fixed_size_list(col.type):
                data[name] = col.flatten().to_numpy().reshape(len(col), col.type.list_size)
            else:
                data[name] = col.to_numpy()
        n = self.info["total_frames"]
        if not np.array_equal(data["index"], np.arange(n)):
            raise DatasetFormatError(f"{self.root}/data: global index is not 0..{n - 1}")
        frm = eps.column("dataset_from_index").to_numpy()
        to = eps.column("dataset_to_index").to_numpy()
        expected_ep = np.repeat(np.arange(len(frm)), to - frm)
        if not (np.array_equal(to - frm, eps.column("length").to_numpy())) or not np.array_equal(
            data["episode_index"], expected_ep
        ):
            raise DatasetFormatError(
                f"{self.root}/data: rows do not match the episodes' dataset_from/to_index"
            )
        return data

    def _check_videos(self) -> None:
        eps = self._episodes.to_pydict()
        for vk in self.video_keys:
            h, w, _ = self.features[vk]["shape"]
            per_file: dict[tuple[int, int], int] = {}
            for c, f, n in zip(
                eps[f"videos/{vk}/chunk_index"],
                eps[f"videos/{vk}/file_index"],
                eps["length"],
                strict=True,
            ):
                per_file[(c, f)] = per_file.get((c, f), 0) + n
            for (chunk, file), rows in per_file.items():
                path = self._video_path(vk, chunk, file)
                if not path.is_file():
                    raise DatasetFormatError(f"missing video: {path} does not exist")
                try:
                    probe = probe_video(path, count_packets=True)
                except VideoError as e:
                    raise DatasetFormatError(f"corrupt video: {e}") from e
                if (probe.height, probe.width) != (h, w):
                    raise DatasetFormatError(
                        f"{path} is {probe.height}x{probe.width}, info.json says {h}x{w}"
                    )
                if probe.frames and probe.frames != rows:
                    raise DatasetFormatError(
                        f"{path} holds {probe.frames} frames but its episodes have {rows} rows"
                    )
                if probe.packets != rows:
                    raise DatasetFormatError(
                        f"corrupt video: {path} has {probe.packets} frames of data for {rows} "
                        "rows (truncated?); restore it from a copy or re-record"
                    )

    def _video_path(self, video_key: str, chunk: int, file: int) -> Path:
        rel = self.info.get("video_path", layout.VIDEO_PATH)
        return self.root / rel.format(video_key=video_key, chunk_index=chunk, file_index=file)

    # ------------------------------------------------------------------ access

    @property
    def num_episodes(self) -> int:
        return self._episodes.num_rows

    @property
    def num_frames(self) -> int:
        return int(self.info["total_frames"])

    @property
    def cameras(self) -> list[str]:
        return [camera_of(k) for k in self.video_keys]

    @property
    def image_hw(self) -> tuple[int, int]:
        h, w, _ = self.features[self.video_keys[0]]["shape"]
        return int(h), int(w)

    @property
    def calibration(self) -> Any:
        """The scene configuration edgevla saved at creation (None for other datasets)."""
        return self._edgevla.get("calibration")

    @property
    def extra_episode_columns(self) -> list[str]:
        """Per-episode columns a recorder added beyond LeRobot's (e.g. split, cluster_id)."""
        return [c for c in self._episodes.column_names if not layout.lerobot_episode_column(c)]

    @property
    def episodes(self) -> list[dict[str, Any]]:
        """One dict per episode: LeRobot's columns (without stats/*) and the extra ones."""
        cols = [c for c in self._episodes.column_names if not c.startswith("stats/")]
        return self._episodes.select(cols).to_pylist()

    def episode_stats(self, episode_index: int) -> dict[str, stats.FeatureStats]:
        row = self._episodes.slice(episode_index, 1).to_pylist()[0]
        return layout.stats_from_row(row)

    def frames(self, episode_index: int) -> EpisodeFrames:
        """State, action and bookkeeping columns of one episode."""
        lo, hi = self._bounds(episode_index)
        d = self._data
        return EpisodeFrames(
            episode_index=episode_index,
            state=d[STATE_KEY][lo:hi],
            action=d[ACTION_KEY][lo:hi],
            timestamp=d["timestamp"][lo:hi],
            frame_index=d["frame_index"][lo:hi],
            index=d["index"][lo:hi],
            task_index=d["task_index"][lo:hi],
        )

    def video(self, episode_index: int, camera: str) -> np.ndarray:
        """Decoded frames (T, H, W, 3) uint8 of one camera ("top" or "observation.images.top")."""
        key = camera if camera.startswith(IMAGE_KEY_PREFIX) else image_key(camera)
        if key not in self.video_keys:
            raise KeyError(f"no camera {camera!r}; have {self.video_keys}")
        row = self._episodes.slice(episode_index, 1).to_pylist()[0]
        path = self._video_path(
            key, row[f"videos/{key}/chunk_index"], row[f"videos/{key}/file_index"]
        )
        try:
            frames = decode_video(
                path,
                row[f"videos/{key}/from_timestamp"],
                row[f"videos/{key}/to_timestamp"],
                fps=self.fps,
            )
        except VideoError as e:
            raise DatasetFormatError(str(e)) from e
        if len(frames) != row["length"]:
            raise DatasetFormatError(
                f"{path}: episode {episode_index} decodes to {len(frames)} frames, the data has "
                f"{row['length']} rows"
            )
        return frames

    def videos(self, episode_index: int) -> dict[str, np.ndarray]:
        """All cameras of one episode, keyed by feature key."""
        return {k: self.video(episode_index, k) for k in self.video_keys}

    def _bounds(self, episode_index: int) -> tuple[int, int]:
        if not 0 <= episode_index < self.num_episodes:
            raise IndexError(f"episode {episode_index} out of range 0..{self.num_episodes - 1}")
        row = self._episodes.slice(episode_index, 1)
        return (
            int(row.column("dataset_from_index")[0].as_py()),
            int(row.column("dataset_to_index")[0].as_py()),
        )
