"""Reading a dataset for an audit: as much of it as can be read.

LeRobotDatasetReader refuses a dataset whose video holds fewer frames than its rows, which is
right for training and wrong for an audit: the audit must say *which* episodes a truncated file
costs and still check the rest. So the reader is used with its video check deferred, and each
episode's frames are counted here from the packets (no decoding). If the reader refuses the
dataset for another reason, the audit keeps what it can read without it (info.json, the
episodes table, the data schema) and reports the refusal as a failing integrity line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pyarrow.parquet as pq
from edgevla_runtime.features import camera_of, image_key

from edgevla.dataset.lerobot import layout
from edgevla.dataset.lerobot.layout import DatasetFormatError
from edgevla.dataset.lerobot.reader import LeRobotDatasetReader
from edgevla.dataset.video import VideoError, decode_video


class _DeferredVideoReader(LeRobotDatasetReader):
    """The reader without its refusal of short videos: `AuditData.video_frames` counts every
    episode's frames instead, so one bad file does not hide the state of the others."""

    def _check_videos(self) -> None:
        return None


@dataclass
class AuditData:
    """What the checks read. `reader` is None when the dataset could not be opened at all;
    `load_errors` then says why, and only the metadata-level checks run."""

    root: Path
    info: dict[str, Any]
    episodes: list[dict[str, Any]]
    data_columns: list[str]
    edgevla_meta: dict[str, Any]
    reader: LeRobotDatasetReader | None
    load_errors: list[str] = field(default_factory=list)
    video_problems: list[str] = field(default_factory=list)
    # camera -> frames found in the video for each episode (index = episode)
    video_frames: dict[str, np.ndarray] = field(default_factory=dict)
    # (camera, episode) -> why its frames could not be decoded
    decode_errors: dict[tuple[str, int], str] = field(default_factory=dict)

    @property
    def fps(self) -> int:
        return int(self.info.get("fps") or 0)

    @property
    def cameras(self) -> list[str]:
        return [camera_of(k) for k in layout.video_keys(self.info.get("features", {}))]

    @property
    def plan_config(self) -> dict[str, Any] | None:
        calibration = self.edgevla_meta.get("calibration")
        return calibration.get("plan_config") if isinstance(calibration, dict) else None

    def complete_episodes(self, camera: str) -> list[int]:
        """Episodes whose video for `camera` holds exactly their rows (safe to decode)."""
        counts = self.video_frames.get(camera)
        if counts is None or self.reader is None:
            return []
        return [
            e
            for e, row in enumerate(self.episodes)
            if counts[e] == row["length"] and (camera, e) not in self.decode_errors
        ]

    def sample_frames(self, camera: str, fractions: tuple[float, ...]) -> dict[int, np.ndarray]:
        """{episode: (len(fractions), H, W, 3) uint8} at those fractions of each complete
        episode (fraction 0 = first frame). Episodes that fail to decode are recorded in
        decode_errors and left out."""
        assert self.reader is not None
        key = image_key(camera)
        out: dict[int, np.ndarray] = {}
        for e in self.complete_episodes(camera):
            row = self.episodes[e]
            path = _video_path(self.root, self.info, key, row)
            start = float(row[f"videos/{key}/from_timestamp"])
            n = int(row["length"])
            frames = []
            try:
                for f in fractions:
                    i = min(n - 1, round(f * (n - 1)))
                    clip = decode_video(
                        path, start + i / self.fps, start + (i + 1) / self.fps, fps=self.fps
                    )
                    if len(clip) != 1:
                        raise VideoError(f"{path}: frame {i} of episode {e} did not decode")
                    frames.append(clip[0])
            except VideoError as err:
                self.decode_errors[(camera, e)] = str(err)
                continue
            out[e] = np.stack(frames)
        return out


def video_files(data: AuditData, key: str) -> list[Path]:
    """The mp4 files of one video feature: those the episodes table points to, or (when it
    could not be read) whatever lies under videos/<key>/."""
    rows = [r for r in data.episodes if f"videos/{key}/chunk_index" in r]
    if rows:
        return sorted({_video_path(data.root, data.info, key, r) for r in rows})
    return sorted(data.root.glob(f"videos/{key}/chunk-*/file-*.mp4"))


def _video_path(root: Path, info: dict[str, Any], key: str, row: dict[str, Any]) -> Path:
    rel = info.get("video_path", layout.VIDEO_PATH)
    return root / rel.format(
        video_key=key,
        chunk_index=row[f"videos/{key}/chunk_index"],
        file_index=row[f"videos/{key}/file_index"],
    )


def _count_frames(path: Path, fps: int, ranges: list[tuple[int, int]]) -> tuple[list[int], str]:
    """Frames present in [first, last) for each range, from packet timestamps (no decoding).

    A truncated file keeps its index but loses packets, so packets, not the header, are counted;
    a file that breaks off mid-way still yields the packets before the break."""
    present: list[int] = []
    problem = ""
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            tb, rate = Fraction(stream.time_base), Fraction(fps)
            try:
                for packet in container.demux(stream):
                    if packet.dts is None or packet.pts is None:
                        continue
                    present.append(round(packet.pts * tb * rate))
            except (av.FFmpegError, OSError) as e:
                problem = f"{path} breaks off after {len(present)} frames ({e})"
    except (av.FFmpegError, OSError, IndexError) as e:
        return [0] * len(ranges), f"cannot read video {path}: {e}"
    frames = np.unique(np.asarray(present, dtype=np.int64))
    counts = [int(np.searchsorted(frames, hi) - np.searchsorted(frames, lo)) for lo, hi in ranges]
    return counts, problem


def _count_video_frames(data: AuditData) -> None:
    """Fill data.video_frames (per camera, per episode) and data.video_problems."""
    for key in layout.video_keys(data.info["features"]):
        camera = camera_of(key)
        counts = np.zeros(len(data.episodes), dtype=np.int64)
        by_file: dict[Path, list[int]] = {}
        for e, row in enumerate(data.episodes):
            by_file.setdefault(_video_path(data.root, data.info, key, row), []).append(e)
        for path, eps in by_file.items():
            if not path.is_file():
                data.video_problems.append(f"missing video {path} (episodes {eps[0]}..{eps[-1]})")
                continue
            ranges = [
                (
                    round(data.episodes[e][f"videos/{key}/from_timestamp"] * data.fps),
                    round(data.episodes[e][f"videos/{key}/to_timestamp"] * data.fps),
                )
                for e in eps
            ]
            found, problem = _count_frames(path, data.fps, ranges)
            if problem:
                data.video_problems.append(problem)
            counts[eps] = found
        data.video_frames[camera] = counts


def load(root: Path) -> AuditData:
    """Open `root` as leniently as the checks allow; never raises for a damaged dataset. What
    could not be read is in `load_errors` (an unreadable meta/info.json leaves `info` empty:
    the checks that need it then have nothing to judge, and say so)."""
    root = Path(root)
    errors: list[str] = []
    info: dict[str, Any] = {}
    try:
        info = layout.read_json(root / layout.INFO_PATH, "dataset info (is this a dataset?)")
        if not isinstance(info.get("features"), dict):
            raise DatasetFormatError(f"{root / layout.INFO_PATH} has no 'features' mapping")
        if not isinstance(info.get("fps", 0), int | float):
            raise DatasetFormatError(f"{root / layout.INFO_PATH}: fps is not a number")
    except (DatasetFormatError, OSError) as e:
        errors.append(str(e))
        info = {"features": {}}
    edgevla_path = root / layout.EDGEVLA_PATH
    meta: dict[str, Any] = {}
    if edgevla_path.is_file():
        try:
            meta = layout.read_json(edgevla_path, "edgevla metadata")
        except (DatasetFormatError, OSError) as e:
            errors.append(str(e))
    data_columns: list[str] = []
    for path in sorted(root.glob("data/chunk-*/file-*.parquet")):
        try:
            data_columns += [n for n in pq.read_schema(path).names if n not in data_columns]
        except Exception as e:  # pyarrow raises several types for a damaged file
            errors.append(f"corrupt frame data {path}: {e}")
    reader: LeRobotDatasetReader | None = None
    episodes: list[dict[str, Any]] = []
    try:
        reader = _DeferredVideoReader(root)
        episodes = reader.episodes
    except Exception as e:  # DatasetFormatError, or whatever a damaged file throws
        if info.get("features"):  # else the reader only repeats why info.json is unreadable
            errors.append(
                str(e) if isinstance(e, DatasetFormatError) else f"{type(e).__name__}: {e}"
            )
        reader = None
        try:
            table = layout.read_episodes_table(root)
            if table is not None:
                cols = [c for c in table.column_names if not c.startswith("stats/")]
                episodes = table.select(cols).to_pylist()
        except Exception:
            pass
    data = AuditData(root, info, episodes, data_columns, meta, reader, load_errors=errors)
    if reader is not None:
        _count_video_frames(data)
    return data
