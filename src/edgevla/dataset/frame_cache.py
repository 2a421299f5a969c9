"""Decoded camera frames kept on disk between training runs.

Decoding the videos of a 48,000-frame, three-camera dataset takes 2-4 minutes of a 2-core CPU
at the start of every run, a few percent of a 60-minute training budget each time. With a frame
cache the first run writes each decoded episode as a .npy file (T, 3, H, W) uint8 and later runs
read it back in seconds. Disk: 3 * H * W bytes per frame and camera (5.3 GB for that dataset at
96x128), so it is opt-in (`edgevla train --frame-cache DIR`).

Entries are keyed by the dataset's resolved path and the name, size and modification time of
its video files and info.json: a re-recorded dataset gets fresh entries, never stale frames. A
partial or corrupt entry (a killed run) is decoded again and rewritten; files are written to a
temporary name and renamed, so a reader never sees half a file.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np

from edgevla.dataset.reader import LeRobotDatasetReader
from edgevla.features import camera_of


def dataset_key(reader: LeRobotDatasetReader) -> str:
    """16 hex digits naming this exact recording (path, video files and info.json)."""
    root = Path(reader.root).resolve()
    h = hashlib.sha1(str(root).encode())
    files = sorted([root / "meta" / "info.json", *root.glob("videos/**/*.mp4")])
    for f in files:
        st = f.stat()
        h.update(f"{f.relative_to(root)}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


class FrameCache:
    """Decoded frames of (dataset, episode, camera) under `directory`."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory).expanduser()
        self._keys: dict[int, str] = {}
        self.hits = 0
        self.decoded = 0

    def _path(self, reader: LeRobotDatasetReader, episode: int, camera: str) -> Path:
        key = self._keys.get(id(reader))
        if key is None:
            key = self._keys[id(reader)] = dataset_key(reader)
        return self.directory / key / f"episode_{episode:06d}_{camera_of(camera)}.npy"

    def frames(self, reader: LeRobotDatasetReader, episode: int, camera: str) -> np.ndarray:
        """(T, 3, H, W) uint8 frames of one episode and camera, from disk or decoded (and kept)."""
        path = self._path(reader, episode, camera)
        length = reader.frames(episode).timestamp.shape[0]
        h, w = reader.image_hw
        if path.is_file():
            try:
                cached = np.load(path)
                if cached.shape == (length, 3, h, w) and cached.dtype == np.uint8:
                    self.hits += 1
                    return cached
            except (ValueError, OSError, EOFError):
                pass  # partial or corrupt: decode again below
        frames = np.ascontiguousarray(reader.video(episode, camera).transpose(0, 3, 1, 2))
        self.decoded += 1
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.save(f, frames)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return frames
