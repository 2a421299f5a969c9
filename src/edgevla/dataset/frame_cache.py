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

Entries are memory-mapped (copy-on-write), not read into the process: the frames live in the
OS page cache, shared by every run that trains on the same dataset at the same time (two runs
on a 100,000-frame dataset would otherwise hold 11 GB each), and given back under memory
pressure instead of ending a run with an out-of-memory kill.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np
from edgevla_runtime.features import camera_of

from edgevla.dataset.lerobot.reader import LeRobotDatasetReader


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
        _allow_open_files()
        self._keys: dict[int, str] = {}
        self.hits = 0
        self.decoded = 0

    def _path(self, reader: LeRobotDatasetReader, episode: int, camera: str) -> Path:
        key = self._keys.get(id(reader))
        if key is None:
            key = self._keys[id(reader)] = dataset_key(reader)
        return self.directory / key / f"episode_{episode:06d}_{camera_of(camera)}.npy"

    def frames(self, reader: LeRobotDatasetReader, episode: int, camera: str) -> np.ndarray:
        """(T, 3, H, W) uint8 frames of one episode and camera, memory-mapped from disk (decoded
        and written first if the entry is missing, partial or corrupt)."""
        path = self._path(reader, episode, camera)
        shape = (reader.frames(episode).timestamp.shape[0], 3, *reader.image_hw)
        cached = _open(path, shape)
        if cached is not None:
            self.hits += 1
            return cached
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
        mapped = _open(path, shape)  # the decoded copy is dropped; the page cache holds it
        return frames if mapped is None else mapped


def _allow_open_files() -> None:
    """Each mapped entry holds a file descriptor for the whole run (episodes x cameras: 780 for
    a 260-episode, three-camera dataset), more than the common soft limit of 1024 once two
    datasets are combined: raise the soft limit to the hard one where the OS allows it."""
    try:
        import resource
    except ImportError:  # not on POSIX
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
    if soft != resource.RLIM_INFINITY and soft < target:
        # Where refused, the current limit stays; a decode error then names the problem.
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def _open(path: Path, shape: tuple[int, ...]) -> np.ndarray | None:
    """The entry at `path` memory-mapped copy-on-write (writable for torch.from_numpy, never
    written back), or None if it is missing, partial, corrupt or of another shape."""
    if not path.is_file():
        return None
    try:
        cached = np.load(path, mmap_mode="c")
    except (ValueError, OSError, EOFError):
        return None
    if cached.shape != shape or cached.dtype != np.uint8:
        return None
    return cached
