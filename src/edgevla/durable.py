"""Durable file operations: the few primitives the crash-safe writer is built from.

A `kill -9` (or a power cut) can stop the recorder between any two system calls. The writer
therefore never edits a file in place: it writes a new file, flushes it to disk with fsync, and
publishes it with a rename, which POSIX makes atomic. A reader (or a resumed writer) sees either
the old state or the new one, never a half-written file. Renames are made durable by fsyncing
the directory that holds the entry.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any


def fsync_file(path: Path) -> None:
    """Flush a file's content to disk (no-op cost when the page cache is already clean)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Flush a directory's entries, which is what makes a rename or a new file survive a crash."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """fsync every file and directory under root (bottom-up), before root is published."""
    for dirpath, _dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames:
            fsync_file(Path(dirpath) / name)
        fsync_dir(Path(dirpath))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so that a crash leaves either the old or the new content."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def atomic_write_json(path: Path, obj: Any) -> None:
    """JSON with LeRobot's formatting (indent 4, UTF-8 kept as is), written atomically."""
    text = json.dumps(obj, indent=4, ensure_ascii=False)
    atomic_write_bytes(path, text.encode("utf-8"))


def replace_durable(src: Path, dst: Path) -> None:
    """Move src over dst atomically and make the move survive a crash.

    Both paths must be on the same filesystem (the writer keeps its staging area inside the
    dataset root for this reason).
    """
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.replace(src, dst)
    fsync_dir(dst.parent)
    if src.parent != dst.parent:
        fsync_dir(src.parent)


def remove_tree(path: Path) -> None:
    """Delete a directory tree; renaming it aside first makes the deletion itself atomic.

    Without the rename, a crash half-way through rmtree would leave a directory that still
    looks like (a damaged version of) what it was.
    """
    if not path.exists():
        return
    trash = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.deleting")
    os.replace(path, trash)
    fsync_dir(path.parent)
    shutil.rmtree(trash)
