"""One recorded episode waiting to be published: a directory with everything it needs.

    .edgevla_staging/episodes/episode-000007/
        data.parquet                     state, action, timestamp, frame_index, episode_index
        observation.images.<cam>.mp4     one per camera, encoded once (finalize only remuxes)
        manifest.json                    length, task, extra columns, image stats, file sizes

The directory is complete before it gets its final name (the writer writes it under tmp/ and
renames it), so whatever lies under episodes/ is a finished episode; the manifest's file sizes
let resume reject one damaged by the storage itself. Image statistics are computed here, from
the raw frames, because the published videos are lossy.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from edgevla_runtime.features import ACTION_KEY, STATE_KEY

from edgevla.dataset import stats
from edgevla.dataset.lerobot import layout
from edgevla.dataset.spec import DatasetSpec
from edgevla.dataset.video import encode_video, probe_video
from edgevla.errors import BadInput
from edgevla.jsonio import read_json

TMP_DIR = f"{layout.STAGING_DIR}/tmp"
LOCK_PATH = f"{layout.STAGING_DIR}/LOCK"
MANIFEST = "manifest.json"
DATA_FILE = "data.parquet"
STAGING_FORMAT = 1


def episode_dir_name(index: int) -> str:
    return f"episode-{index:06d}"


def video_file(episode_dir: Path, video_key: str) -> Path:
    return episode_dir / f"{video_key}.mp4"


def write_episode_files(
    directory: Path,
    spec: DatasetSpec,
    arrays: Mapping[str, np.ndarray],
    episode_index: int,
    task: str,
    metadata: Mapping[str, Any],
) -> int:
    """Fill `directory` with one episode (arrays already checked by spec.check_frames).
    The manifest is written last; the caller makes the directory durable and publishes it.
    Returns how many video encodings had to be retried (a stuck encoder, see video.py)."""
    length = len(arrays[STATE_KEY])
    t = np.arange(length)
    table = pa.table(
        {
            STATE_KEY: _fixed_list(arrays[STATE_KEY]),
            ACTION_KEY: _fixed_list(arrays[ACTION_KEY]),
            "timestamp": pa.array((t / spec.fps).astype(np.float32)),
            "frame_index": pa.array(t.astype(np.int64)),
            "episode_index": pa.array(np.full(length, episode_index, dtype=np.int64)),
        }
    )
    pq.write_table(table, directory / DATA_FILE)
    image_stats = {}
    retries = 0
    for key in spec.video_keys:
        path = video_file(directory, key)
        encoded = encode_video(arrays[key], path, spec.fps, spec.video,
                               what=f"episode {episode_index}, camera {key}")  # fmt: skip
        retries += encoded.retries
        got = probe_video(path).frames
        if got != length:
            raise RuntimeError(f"encoder wrote {got} frames for {key}, expected {length}")
        image_stats[key] = stats.to_json({key: stats.image_stats(arrays[key])})[key]
    manifest = {
        "staging_format": STAGING_FORMAT,
        "episode_index": episode_index,
        "length": length,
        "task": task,
        "metadata": dict(metadata),
        "image_stats": image_stats,
        "files": {p.name: p.stat().st_size for p in sorted(directory.iterdir())},
    }
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return retries


def read_manifest(episode_dir: Path) -> dict[str, Any]:
    return read_json(episode_dir / MANIFEST, "staged episode manifest")


def check_episode_dir(episode_dir: Path) -> str | None:
    """Why a staged episode directory cannot be trusted, or None if it can."""
    suffix = episode_dir.name.removeprefix("episode-")
    if not episode_dir.name.startswith("episode-") or not suffix.isdigit():
        return "unexpected name"
    try:
        manifest = read_manifest(episode_dir)
    except BadInput as e:
        return f"manifest unreadable: {e}"
    if manifest.get("episode_index") != int(suffix):
        return "manifest is for another episode"
    for name, size in manifest.get("files", {}).items():
        p = episode_dir / name
        if not p.is_file() or p.stat().st_size != size:
            return f"{name} missing or of the wrong size"
    return None


def _fixed_list(x: np.ndarray) -> pa.FixedSizeListArray:
    return pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), x.shape[1])
