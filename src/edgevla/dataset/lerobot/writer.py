"""Crash-safe writer of LeRobot v3.0 datasets.

LeRobot v3.0 concatenates many episodes per file (data parquet, one mp4 per camera). Appending
to such files while recording means a kill at the wrong moment corrupts every episode already
in them. So recording and publishing are two steps:

    add_episode()  ->  .edgevla_staging/tmp/episode-000007.<id>/      (encode, write, fsync)
                   ->  .edgevla_staging/episodes/episode-000007/      (one atomic rename)
    finalize()     ->  .edgevla_staging/tmp/finalize.<id>/...          (build new files, fsync)
                   ->  .edgevla_staging/finalize.json                  (commit point)
                   ->  data/, videos/, meta/ (os.replace each file, meta/info.json last),
                       then staged episodes and finalize.json are removed

Invariants a kill -9 at any instant cannot break:
- An episode is completed exactly when its directory exists under staging/episodes (or it is
  in meta/episodes after a finalize). The rename is the commit; partial episodes only ever live
  under staging/tmp, which resume deletes. Each episode directory has a manifest (lengths, file
  sizes) that resume checks.
- finalize never modifies a published file except the small meta/info.json, stats.json and
  tasks.parquet, which it replaces atomically; new episodes go to new chunk/file indices.
  Before finalize.json exists, resume discards the build; after, it completes the moves (each
  is idempotent: a file already moved is no longer in the build directory).

    writer = LeRobotDatasetWriter.create(root, DatasetSpec(...), calibration=scene_cfg)
    writer.add_episode({"observation.state": s, "action": a, "observation.images.top": v, ...},
                       metadata={"split": "train", ...})
    writer.finalize()
    # after a crash:
    writer, done = LeRobotDatasetWriter.open_for_resume(root)   # done: set of episode indices

The staging directory is hidden inside the root (renames must stay on one filesystem) and is
empty or absent after finalize; LeRobot never reads it.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import time
import uuid
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgevla.dataset.lerobot import layout, staging
from edgevla.dataset.lerobot.consolidate import build_publication
from edgevla.dataset.lerobot.layout import DatasetFormatError
from edgevla.dataset.lerobot.staging import LOCK_PATH, TMP_DIR, episode_dir_name
from edgevla.dataset.spec import DatasetSpec
from edgevla.durable import (
    atomic_write_json,
    fsync_dir,
    fsync_tree,
    remove_tree,
    replace_durable,
)
from edgevla.errors import BadInput
from edgevla.jsonio import read_json

__all__ = ["DatasetSpec", "LeRobotDatasetWriter", "MissingEpisodesError"]

EDGEVLA_FORMAT = 1


class MissingEpisodesError(ValueError):
    """finalize() found gaps: LeRobot needs episodes 0..N-1; `missing` lists the gaps."""

    def __init__(self, missing: list[int], message: str) -> None:
        super().__init__(message)
        self.missing = missing


class LeRobotDatasetWriter:
    """Records episodes into a LeRobot v3.0 dataset; see the module docstring for the protocol.

    Use `create` or `open_for_resume`, not the constructor. One writer per dataset at a time (an
    advisory lock, released by the OS when the process dies, enforces it).
    """

    def __init__(self, root: Path, spec: DatasetSpec, calibration: Any, lock_fd: int) -> None:
        self.root = root
        self.spec = spec
        self._calibration = calibration
        self._lock_fd: int | None = lock_fd
        self._finalized: set[int] = set()
        self._staged: set[int] = set()
        self.encode_retries = 0  # video encodings retried after a stuck encoder (video.py)
        self._recover()

    # ------------------------------------------------------------------ opening

    @classmethod
    def create(
        cls,
        root: str | Path,
        spec: DatasetSpec | None = None,
        *,
        calibration: Any = None,
        overwrite: bool = False,
    ) -> LeRobotDatasetWriter:
        """Start a new dataset at root. calibration: any JSON value (the scene configuration),
        saved in meta/edgevla.json so a resumed recording can check it has not changed.

        Refuses an existing non-empty root unless overwrite=True, and even then only deletes a
        directory that is a dataset (has meta/info.json or a staging area). Race-safe: of two
        writers creating one root at once, one wins and the other raises BadInput naming it.
        A create that fails (unwritable folder, the lost race) leaves nothing behind, and
        one that was killed is cleaned up by the next create or resume.
        """
        root = Path(root)
        spec = spec or DatasetSpec()
        json.dumps(calibration)  # fail now, not after recording, if it is not JSON
        if root.exists() and (not root.is_dir() or folder_contents(root)):
            if not overwrite:
                raise FileExistsError(
                    f"{root} already exists and is not empty; pass overwrite=True (edgevla "
                    "record --overwrite) to replace the dataset, or continue it with "
                    "open_for_resume (edgevla record --resume)"
                )
            if not ((root / layout.INFO_PATH).is_file() or (root / layout.STAGING_DIR).is_dir()):
                raise FileExistsError(
                    f"{root} is not empty and does not look like a dataset (no meta/info.json); "
                    "refusing to delete it even with --overwrite"
                )
            _ensure_unlocked(root)
            if os.path.ismount(root):  # a mount point cannot be renamed aside: empty it
                for entry in list(root.iterdir()):
                    remove_tree(entry) if entry.is_dir() else entry.unlink()
            else:
                remove_tree(root)
        try:
            root.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise BadInput(f"cannot make its parent folder ({e.strerror})", path=root) from e
        # Build aside and rename into place, so a crash leaves no half dataset at root. An
        # existing empty root (a mount point, a folder made by hand) cannot be renamed over
        # from outside, so the build then happens inside it and its meta/ is moved in. Either
        # way one rename decides a race between two writers: it fails for the second.
        in_place = root.is_dir()
        holder = root if in_place else root.parent
        _remove_stale_builds(holder, root.name)
        build = holder / f".{root.name}.{uuid.uuid4().hex[:8]}.creating"
        lock_fd: int | None = None
        try:
            (build / layout.STAGING_DIR).mkdir(parents=True)
            lock_fd = _lock(build)  # held from the start: the winner of a race holds it
            (build / layout.STAGED_EPISODES_DIR).mkdir(parents=True)
            (build / TMP_DIR).mkdir(parents=True)
            edgevla_meta = {
                "edgevla_format": EDGEVLA_FORMAT,
                "episode_columns": dict(spec.episode_columns),
                "task": spec.task,
                "calibration": calibration,
            }
            atomic_write_json(build / layout.EDGEVLA_PATH, edgevla_meta)
            info = layout.build_info(spec.features, spec.fps, spec.robot_type)
            atomic_write_json(build / layout.INFO_PATH, info)
            fsync_tree(build)
            if in_place:
                os.rename(build / "meta", root / "meta")  # the commit (fails if taken)
                os.rename(build / layout.STAGING_DIR, root / layout.STAGING_DIR)
                build.rmdir()
            else:
                os.rename(build, root)  # the commit: fails if root is no longer empty
            fsync_dir(holder)
        except BaseException as e:
            if lock_fd is not None:
                os.close(lock_fd)
            _discard(build)
            if isinstance(e, OSError) and e.errno in (errno.ENOTEMPTY, errno.EEXIST):
                raise BadInput(
                    f"another writer{_holder_of(root)} created this dataset at the same moment "
                    "and is recording into it; this one stopped and left it alone. Record to "
                    "another folder, or wait for it to finish and resume",
                    path=root,
                ) from None
            if isinstance(e, OSError) and e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise BadInput(
                    f"cannot create the dataset: {holder} is not writable ({e.strerror})",
                    path=root,
                ) from e
            raise
        return cls(root, spec, calibration, lock_fd)

    @classmethod
    def open_for_resume(cls, root: str | Path) -> tuple[LeRobotDatasetWriter, set[int]]:
        """Reopen a dataset after a crash (or to add episodes after finalize).

        Deletes partial episodes, completes or discards an interrupted finalize, and returns
        the writer with the set of completed episode indices (staged and finalized). Check
        `writer.calibration` against the current scene before recording more.
        """
        root = Path(root)
        info = layout.read_json(root / layout.INFO_PATH, "dataset info (is this a dataset?)")
        if info.get("codebase_version") != layout.CODEBASE_VERSION:
            raise DatasetFormatError(
                f"{root} is a LeRobot {info.get('codebase_version')} dataset; the writer only "
                f"continues {layout.CODEBASE_VERSION} datasets"
            )
        ours = _read_edgevla_meta(root)
        try:
            spec = DatasetSpec.from_disk(info, ours)
        except DatasetFormatError as e:
            raise DatasetFormatError(f"{root}: {e}") from e
        for d in (layout.STAGED_EPISODES_DIR, TMP_DIR):
            (root / d).mkdir(parents=True, exist_ok=True)
        writer = cls(root, spec, ours.get("calibration"), _lock(root))
        return writer, writer.completed_episodes

    # ------------------------------------------------------------------ state

    @property
    def calibration(self) -> Any:
        """The JSON value given to create(); compare it with the scene before resuming."""
        return self._calibration

    @property
    def completed_episodes(self) -> set[int]:
        """Episode indices that are safely on disk (staged or finalized)."""
        return self._finalized | self._staged

    @property
    def staged_episodes(self) -> set[int]:
        """Completed episodes that finalize() has not yet published in LeRobot's layout."""
        return set(self._staged)

    def close(self) -> None:
        """Release the dataset lock. Staged episodes stay on disk for a later finalize; with
        none left, the staging directory is removed so the root holds only LeRobot's layout."""
        if self._lock_fd is None:
            return
        staging_dir = self.root / layout.STAGING_DIR
        idle = {"LOCK", "episodes", "tmp"}  # anything else (e.g. rejected/) is kept
        busy = [p for p in staging_dir.iterdir() if p.name not in idle]
        busy += [
            p for d in (layout.STAGED_EPISODES_DIR, TMP_DIR) for p in (self.root / d).iterdir()
        ]
        if not busy:
            remove_tree(staging_dir)
        os.close(self._lock_fd)
        self._lock_fd = None

    def __enter__(self) -> LeRobotDatasetWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._lock_fd is None:
            raise RuntimeError(
                "this writer is closed; reopen with LeRobotDatasetWriter.open_for_resume"
            )

    # ------------------------------------------------------------------ recording

    def add_episode(
        self,
        frames: Mapping[str, np.ndarray],
        *,
        episode_index: int | None = None,
        task: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> int:
        """Write one complete episode durably; returns its index.

        frames: {"observation.state": (T, 6) float, "action": (T, 6) float,
                 "observation.images.<cam>": (T, H, W, 3) uint8 for every camera}.
        episode_index: defaults to one past the highest completed index; pass it explicitly
            when re-recording a planned episode after a crash. Must not be completed already.
        metadata: one value per declared extra episode column (all required).
        When this returns, the episode survives a kill -9; if it raises or is killed, nothing
        of the episode remains after resume.
        """
        self._check_open()
        arrays, _ = self.spec.check_frames(frames)
        done = self.completed_episodes
        if episode_index is None:
            episode_index = max(done) + 1 if done else 0
        if not isinstance(episode_index, int | np.integer) or episode_index < 0:
            raise ValueError(f"episode_index must be a non-negative int, got {episode_index!r}")
        episode_index = int(episode_index)
        if episode_index in done:
            raise ValueError(
                f"episode {episode_index} is already recorded in {self.root}; completed "
                f"episodes are kept (use another index, or recreate the dataset)"
            )
        task = self.spec.task if task is None else task
        if not isinstance(task, str) or not task.strip():
            raise ValueError(f"task must be a non-empty string, got {task!r}")
        meta = self.spec.check_metadata(metadata or {})

        name = episode_dir_name(episode_index)
        tmp = self.root / TMP_DIR / f"{name}.{uuid.uuid4().hex[:8]}"
        tmp.mkdir(parents=True)
        final = self.root / layout.STAGED_EPISODES_DIR / name
        try:
            self.encode_retries += staging.write_episode_files(
                tmp, self.spec, arrays, episode_index, task, meta
            )
            fsync_tree(tmp)
            os.rename(tmp, final)  # the commit: atomic, and fails if final exists
        except BaseException:
            remove_tree(tmp)
            raise
        self._staged.add(episode_index)
        fsync_dir(final.parent)  # make the rename itself survive a power cut
        return episode_index

    # ------------------------------------------------------------------ publishing

    def finalize(self) -> None:
        """Publish staged episodes in LeRobot's concatenated layout (new chunk/file indices).

        Idempotent: with nothing staged it changes nothing. Interrupted, it is completed or
        rolled back by open_for_resume, and can then be called again. Staged episodes must
        continue the finalized ones without gaps (LeRobot needs episode_index == row).
        """
        self._check_open()
        if not self._staged:
            return
        existing = layout.read_episodes_table(self.root)
        n_done = 0 if existing is None else existing.num_rows
        todo = sorted(self._staged)
        if todo != list(range(n_done, n_done + len(todo))):
            missing = sorted(set(range(n_done, todo[-1] + 1)) - set(todo))
            raise MissingEpisodesError(
                missing,
                f"cannot finalize {self.root}: episodes {missing} are missing (staged: {todo}, "
                f"finalized: {f'0..{n_done - 1}' if n_done else 'none'}); record them first, "
                "LeRobot requires contiguous episode indices",
            )
        build = self.root / TMP_DIR / f"finalize.{uuid.uuid4().hex[:8]}"
        try:
            staged = [self.root / layout.STAGED_EPISODES_DIR / episode_dir_name(e) for e in todo]
            files = build_publication(self.root, build, self.spec, staged, existing)
            fsync_tree(build)
        except BaseException:
            remove_tree(build)
            raise
        commit = {"build": build.name, "files": files, "episodes": todo}
        atomic_write_json(self.root / layout.FINALIZE_COMMIT_PATH, commit)
        self._apply_commit()

    def _apply_commit(self) -> None:
        """Second half of finalize (also run by resume): idempotent moves, then clean-up."""
        commit_path = self.root / layout.FINALIZE_COMMIT_PATH
        commit = read_json(commit_path, "finalize commit")
        build = self.root / TMP_DIR / commit["build"]
        for rel in commit["files"]:
            src = build / rel
            if src.exists():
                replace_durable(src, self.root / rel)
        info = layout.read_json(self.root / layout.INFO_PATH, "dataset info")
        if info.get("total_episodes", 0) <= max(commit["episodes"]):
            # Only possible if the build directory was removed by hand before its moves.
            raise DatasetFormatError(
                f"{commit_path} could not be applied (its build directory is gone); the staged "
                "episodes are kept: delete that file and call finalize() again"
            )
        for e in commit["episodes"]:
            remove_tree(self.root / layout.STAGED_EPISODES_DIR / episode_dir_name(e))
            self._staged.discard(e)
            self._finalized.add(e)
        os.remove(commit_path)
        fsync_dir(commit_path.parent)
        remove_tree(build)

    # ------------------------------------------------------------------ recovery

    def _recover(self) -> None:
        """Bring the directory to a clean state after whatever happened before we opened it."""
        staging_dir = self.root / layout.STAGING_DIR
        if (self.root / layout.FINALIZE_COMMIT_PATH).exists():
            self._apply_commit()
        for leftover in (self.root / TMP_DIR).iterdir():  # partial episodes / discarded builds
            if leftover.is_dir():
                remove_tree(leftover)
            else:
                leftover.unlink()
        # Interrupted remove_tree (here or, for the staging dir itself, in the root) and
        # interrupted atomic writes (the finalize.json temp file).
        leftovers = [*staging_dir.glob("**/.*.deleting"), *staging_dir.glob(".*.tmp")]
        for leftover in leftovers + list(self.root.glob(f".{layout.STAGING_DIR}.*.deleting")):
            if leftover.is_dir():
                remove_tree(leftover)
            else:
                leftover.unlink()
        _remove_stale_builds(self.root, self.root.name)  # a create into this folder, killed
        existing = layout.read_episodes_table(self.root)
        if existing is not None:
            self._finalized = set(existing.column("episode_index").to_pylist())
        for d in sorted((self.root / layout.STAGED_EPISODES_DIR).iterdir()):
            problem = staging.check_episode_dir(d)
            if problem is None:
                self._staged.add(int(d.name.removeprefix("episode-")))
                continue
            rejected = staging_dir / "rejected" / f"{d.name}.{uuid.uuid4().hex[:8]}"
            rejected.parent.mkdir(exist_ok=True)
            os.replace(d, rejected)
            warnings.warn(
                f"staged episode {d} is damaged ({problem}); moved to {rejected}, it will be "
                "re-recorded",
                stacklevel=3,
            )
        overlap = self._staged & self._finalized
        if overlap:
            raise DatasetFormatError(
                f"{self.root}: episodes {sorted(overlap)} are both staged and finalized"
            )


def _read_edgevla_meta(root: Path) -> dict[str, Any]:
    path = root / layout.EDGEVLA_PATH
    if not path.exists():  # a dataset LeRobot wrote: no calibration, no extra columns
        return {}
    meta = layout.read_json(path, "edgevla metadata")
    if meta.get("edgevla_format") != EDGEVLA_FORMAT:
        raise DatasetFormatError(
            f"{path}: edgevla_format {meta.get('edgevla_format')} is not {EDGEVLA_FORMAT}"
        )
    return meta


def _lock(root: Path) -> int:
    """Take the dataset's writer lock (flock: released by the kernel if the process dies)."""
    path = root / LOCK_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
        os.close(fd)
        raise RuntimeError(
            f"another writer (pid {holder or '?'}) has {root} open; close it first"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


def folder_contents(root: Path) -> list[Path]:
    """What a folder holds, not counting datasets being created in it right now."""
    building = f".{root.name}."
    return [
        p
        for p in root.iterdir()
        if not (p.name.startswith(building) and p.name.endswith(".creating"))
    ]


def _holder_of(root: Path) -> str:
    """' (pid N)' of the writer holding root's lock, or '' if it cannot be told."""
    try:
        pid = (root / LOCK_PATH).read_text().strip()
    except OSError:
        return ""
    return f" (pid {pid})" if pid else ""


def _discard(build: Path) -> None:
    """Remove a build folder that will not be published (best effort: never hides the error
    that got us here)."""
    shutil.rmtree(build, ignore_errors=True)


STALE_BUILD_S = 60.0


def _remove_stale_builds(holder: Path, name: str) -> None:
    """Delete `.<name>.<id>.creating` folders a killed writer left in `holder`: those whose
    lock nobody holds (a live writer holds its build's lock from the start), or that never got
    a lock file and are older than a minute."""
    for build in holder.glob(f".{name}.*.creating"):
        lock = build / LOCK_PATH
        try:
            if lock.exists():
                fd = os.open(lock, os.O_RDWR)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a writer is building it right now
                finally:
                    os.close(fd)
            elif time.time() - build.stat().st_mtime < STALE_BUILD_S:
                continue
        except OSError:
            continue
        _discard(build)


def _ensure_unlocked(root: Path) -> None:
    if (root / LOCK_PATH).exists():
        os.close(_lock(root))
