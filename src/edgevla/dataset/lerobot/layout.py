"""LeRobot dataset format v3.0, written down once: paths, info.json, parquet schemas.

Everything here was checked field for field against a dataset written by LeRobot 0.6.1 itself
(/work/shared/reference/lerobot-v3-dataset, see tests/dataset/test_golden.py). The writer builds
its files from these functions and the reader validates against them, so the two cannot drift.

    meta/info.json                                    dataset card: fps, features, totals, paths
    meta/stats.json                                   per-feature min/max/mean/std/count/q01..q99
    meta/tasks.parquet                                task_index, task (pandas index: task)
    meta/episodes/chunk-XXX/file-YYY.parquet          one row per episode (+ flattened stats)
    data/chunk-XXX/file-YYY.parquet                   one row per frame
    videos/<video_key>/chunk-XXX/file-YYY.mp4         episodes concatenated, addressed by time
    meta/edgevla.json                                 ours: calibration + extra column types

Extra per-episode columns (edgevla's cluster id, start pose, recovery flag, split, plan seed)
are ordinary columns of the episodes parquet. LeRobot's load_episodes keeps every column that
does not start with "stats/", so a LeRobot user loads them unchanged.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from edgevla_runtime.features import (
    ACTION_KEY,
    CAMERA_NAMES,
    JOINT_FEATURE_NAMES,
    STATE_KEY,
    image_key,
)

from edgevla.dataset.stats import QUANTILE_KEYS
from edgevla.dataset.video import VideoSettings
from edgevla.errors import BadInput
from edgevla.jsonio import read_json as _read_json

CODEBASE_VERSION = "v3.0"
CHUNKS_SIZE = 1000
DATA_FILES_SIZE_IN_MB = 100
VIDEO_FILES_SIZE_IN_MB = 200

INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
TASKS_PATH = "meta/tasks.parquet"
EDGEVLA_PATH = "meta/edgevla.json"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
EPISODES_GLOB = "meta/episodes/chunk-*/file-*.parquet"

STAT_KEYS: tuple[str, ...] = ("min", "max", "mean", "std", "count", *QUANTILE_KEYS)

# Per-frame bookkeeping features LeRobot adds to every dataset, in its order.
DEFAULT_FEATURES: dict[str, dict[str, Any]] = {
    "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    "frame_index": {"dtype": "int64", "shape": [1], "names": None},
    "episode_index": {"dtype": "int64", "shape": [1], "names": None},
    "index": {"dtype": "int64", "shape": [1], "names": None},
    "task_index": {"dtype": "int64", "shape": [1], "names": None},
}

# Types an extra per-episode column may take (declared once, when the dataset is created).
EPISODE_COLUMN_TYPES: dict[str, pa.DataType] = {
    "int64": pa.int64(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
    "string": pa.string(),
    "list<float64>": pa.list_(pa.float64()),
}
_COLUMN_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class DatasetFormatError(BadInput):
    """A dataset on disk is not what LeRobot v3.0 (or edgevla's additions) says it must be."""


def build_features(
    fps: int,
    cameras: Sequence[str] = CAMERA_NAMES,
    image_hw: tuple[int, int] = (96, 128),
    video: VideoSettings | None = None,
    motor_names: Sequence[str] = JOINT_FEATURE_NAMES,
) -> dict[str, dict[str, Any]]:
    """info.json "features": state, action, one video per camera, then LeRobot's defaults."""
    video = video or VideoSettings.av1()
    height, width = image_hw
    vector = {"dtype": "float32", "shape": [len(motor_names)], "names": list(motor_names)}
    features: dict[str, dict[str, Any]] = {STATE_KEY: dict(vector), ACTION_KEY: dict(vector)}
    for cam in cameras:
        features[image_key(cam)] = {
            "dtype": "video",
            "shape": [height, width, 3],
            "names": ["height", "width", "channels"],
            "info": video.info_block(height, width, fps),
        }
    features.update(json.loads(json.dumps(DEFAULT_FEATURES)))  # deep copy
    return features


def build_info(
    features: Mapping[str, Any],
    fps: int,
    robot_type: str,
    total_episodes: int = 0,
    total_frames: int = 0,
    total_tasks: int = 0,
) -> dict[str, Any]:
    """meta/info.json with LeRobot 0.6's key order; splits stays LeRobot's "train": "0:N"
    (our train/val split is a per-episode column, which a range string cannot express)."""
    return {
        "codebase_version": CODEBASE_VERSION,
        "fps": fps,
        "features": dict(features),
        "total_episodes": total_episodes,
        "total_frames": total_frames,
        "total_tasks": total_tasks,
        "chunks_size": CHUNKS_SIZE,
        "data_files_size_in_mb": DATA_FILES_SIZE_IN_MB,
        "video_files_size_in_mb": VIDEO_FILES_SIZE_IN_MB,
        "data_path": DATA_PATH,
        "video_path": VIDEO_PATH,
        "robot_type": robot_type,
        "splits": {"train": f"0:{total_episodes}"} if total_episodes else {},
    }


def video_keys(features: Mapping[str, Mapping[str, Any]]) -> list[str]:
    return [k for k, f in features.items() if f.get("dtype") == "video"]


def _hf_feature(ft: Mapping[str, Any]) -> dict[str, Any]:
    """HF `datasets` type description, as LeRobot stores it in the parquet schema metadata."""
    value = {"dtype": ft["dtype"], "_type": "Value"}
    if list(ft["shape"]) == [1]:
        return value
    return {"feature": value, "length": int(ft["shape"][0]), "_type": "List"}


def data_schema(features: Mapping[str, Mapping[str, Any]]) -> pa.Schema:
    """Schema of data/*.parquet: every non-video feature, vectors as fixed-size lists.

    The "huggingface" metadata is what HF datasets (LeRobot's loader) reads to restore types.
    """
    fields, hf = [], {}
    for key, ft in features.items():
        if ft["dtype"] in ("video", "image"):
            continue
        scalar = pa.from_numpy_dtype(ft["dtype"])
        shape = list(ft["shape"])
        if len(shape) != 1:
            raise ValueError(f"feature {key!r}: only 1-D features are supported, shape {shape}")
        typ = scalar if shape == [1] else pa.list_(scalar, shape[0])
        fields.append(pa.field(key, typ))
        hf[key] = _hf_feature(ft)
    meta = {"huggingface": json.dumps({"info": {"features": hf}})}
    return pa.schema(fields, metadata=meta)


def _stat_type(ft: Mapping[str, Any], stat: str) -> pa.DataType:
    if stat == "count":
        return pa.list_(pa.int64())
    if ft["dtype"] in ("video", "image"):  # (3, 1, 1) per channel
        return pa.list_(pa.list_(pa.list_(pa.float64())))
    return pa.list_(pa.float64())


def episodes_schema(
    features: Mapping[str, Mapping[str, Any]], episode_columns: Mapping[str, str] | None = None
) -> pa.Schema:
    """Schema of meta/episodes/*.parquet in LeRobot's column order, extra columns last."""
    fields = [
        pa.field("episode_index", pa.int64()),
        pa.field("tasks", pa.list_(pa.string())),
        pa.field("length", pa.int64()),
        pa.field("data/chunk_index", pa.int64()),
        pa.field("data/file_index", pa.int64()),
        pa.field("dataset_from_index", pa.int64()),
        pa.field("dataset_to_index", pa.int64()),
    ]
    for vk in video_keys(features):
        fields += [
            pa.field(f"videos/{vk}/chunk_index", pa.int64()),
            pa.field(f"videos/{vk}/file_index", pa.int64()),
            pa.field(f"videos/{vk}/from_timestamp", pa.float64()),
            pa.field(f"videos/{vk}/to_timestamp", pa.float64()),
        ]
    for key, ft in features.items():
        fields += [pa.field(f"stats/{key}/{s}", _stat_type(ft, s)) for s in STAT_KEYS]
    fields += [
        pa.field("meta/episodes/chunk_index", pa.int64()),
        pa.field("meta/episodes/file_index", pa.int64()),
    ]
    for name, typ in (episode_columns or {}).items():
        fields.append(pa.field(name, EPISODE_COLUMN_TYPES[typ]))
    return pa.schema(fields)


def lerobot_episode_column(name: str) -> bool:
    """True for the columns LeRobot defines (as opposed to extra ones a recorder adds)."""
    return name in {
        "episode_index",
        "tasks",
        "length",
        "dataset_from_index",
        "dataset_to_index",
    } or name.startswith(("data/", "videos/", "stats/", "meta/"))


def validate_episode_columns(episode_columns: Mapping[str, str]) -> None:
    """Extra column names are snake_case (LeRobot reserves "/" namespaces) with a known type."""
    for name, typ in episode_columns.items():
        if not _COLUMN_NAME.match(name) or lerobot_episode_column(name):
            raise ValueError(
                f"extra episode column {name!r} must be snake_case ([a-z][a-z0-9_]*) and not one "
                "of LeRobot's own columns (episode_index, tasks, length, dataset_*_index)"
            )
        if typ not in EPISODE_COLUMN_TYPES:
            raise ValueError(
                f"extra episode column {name!r} has type {typ!r}; use one of "
                f"{sorted(EPISODE_COLUMN_TYPES)}"
            )


def tasks_table(tasks: Sequence[str]) -> pa.Table:
    """meta/tasks.parquet. LeRobot reads it with pandas.read_parquet and looks tasks up by
    string, so the file carries pandas metadata making "task" the index (written without
    pandas, which edgevla does not depend on)."""
    table = pa.table(
        {
            "task_index": pa.array(range(len(tasks)), pa.int64()),
            "task": pa.array(list(tasks), pa.string()),
        }
    )
    pandas_meta = {
        "index_columns": ["task"],
        "column_indexes": [
            {
                "name": None,
                "field_name": None,
                "pandas_type": "unicode",
                "numpy_type": "object",
                "metadata": {"encoding": "UTF-8"},
            }
        ],
        "columns": [
            {
                "name": "task_index",
                "field_name": "task_index",
                "pandas_type": "int64",
                "numpy_type": "int64",
                "metadata": None,
            },
            {
                "name": "task",
                "field_name": "task",
                "pandas_type": "unicode",
                "numpy_type": "object",
                "metadata": None,
            },
        ],
        "attributes": {},
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.3.3",
    }
    return table.replace_schema_metadata({"pandas": json.dumps(pandas_meta)})


def next_chunk_file(chunk_index: int, file_index: int) -> tuple[int, int]:
    """The (chunk, file) after this one; a chunk holds CHUNKS_SIZE files."""
    file_index += 1
    if file_index >= CHUNKS_SIZE:
        return chunk_index + 1, 0
    return chunk_index, file_index


# Where the edgevla writer keeps work in progress (see writer.py). Hidden, inside the root so
# that publishing is a same-filesystem rename; LeRobot never looks at it.
STAGING_DIR = ".edgevla_staging"
STAGED_EPISODES_DIR = f"{STAGING_DIR}/episodes"
FINALIZE_COMMIT_PATH = f"{STAGING_DIR}/finalize.json"


def read_parquet(path: Path, what: str) -> pa.Table:
    """Read a parquet file, turning "missing" and "corrupt" into one error that names it."""
    if not path.is_file():
        raise DatasetFormatError(f"missing {what}: {path} does not exist")
    try:
        return pq.read_table(path)
    except (pa.ArrowException, OSError) as e:
        raise DatasetFormatError(
            f"corrupt {what}: {path} is not a readable parquet file ({e}); restore it from a "
            "copy or re-record the dataset"
        ) from e


def read_json(path: Path, what: str) -> dict[str, Any]:
    """A JSON object of the dataset, or DatasetFormatError naming the file: "missing <what>"
    or "corrupt <what>" (not UTF-8, not JSON, empty, not an object)."""
    if not path.is_file():
        raise DatasetFormatError(f"missing {what}: {path} does not exist")
    try:
        fix = "restore it from a copy or re-record the dataset"
        return _read_json(path, what.split(" (")[0], fix=fix)
    except BadInput as e:
        raise DatasetFormatError(f"corrupt {what}: {e}") from e


def episodes_files(root: Path) -> list[Path]:
    """meta/episodes parquet files in (chunk, file) order."""
    return sorted(root.glob(EPISODES_GLOB))


def read_episodes_table(root: Path) -> pa.Table | None:
    """All rows of meta/episodes/*/*.parquet, sorted by episode_index (None if there are none)."""
    files = episodes_files(root)
    if not files:
        return None
    tables = [read_parquet(f, "episodes metadata") for f in files]
    table = pa.concat_tables(tables, promote_options="default")
    return table.sort_by("episode_index")


def stats_columns(stats: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, Any]:
    """Per-episode stats flattened to "stats/<feature>/<stat>" columns (nested lists)."""
    return {
        f"stats/{feature}/{name}": np.asarray(value).tolist()
        for feature, s in stats.items()
        for name, value in s.items()
    }


def stats_from_row(row: Mapping[str, Any]) -> dict[str, dict[str, np.ndarray]]:
    """Inverse of stats_columns for one episodes-table row."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for col, value in row.items():
        if not col.startswith("stats/") or value is None:
            continue
        feature, name = col[len("stats/") :].rsplit("/", 1)
        dtype = np.int64 if name == "count" else np.float64
        out.setdefault(feature, {})[name] = np.asarray(value, dtype=dtype)
    return out
