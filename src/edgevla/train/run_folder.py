"""A training run's folder: the one module that knows its layout.

    <run>/train_config.json      the TrainConfig of the run's first session
    <run>/log.jsonl              one JSON object per logged step and per validation
    <run>/curves.png             loss curves, redrawn at every checkpoint
    <run>/.lock                  held (flock) by the `edgevla train` writing the run
    <run>/checkpoints/step-000500/        a complete checkpoint: the policy folder (config.json,
                                          model.safetensors, normalization_stats.safetensors),
                                          train_info.json and training_state.pt
    <run>/checkpoints/.step-000500.tmp/   a checkpoint being written, or left by a kill
    <run>/best -> checkpoints/step-NNNNNN the checkpoint `edgevla select` chose
    <run>/selection.json, selection.png   `edgevla select`'s ranking

A checkpoint exists only once complete: it is written into a hidden temporary folder, every
file and the folder are fsynced, then one rename publishes it (`write_checkpoint`). Whatever a
kill leaves behind (a temporary folder, an `.old` folder of a re-save) is never listed, and is
removed, with a note, by the next `list_checkpoints` when no trainer holds the run.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from edgevla.durable import fsync_file
from edgevla.errors import BadInput

CHECKPOINTS = "checkpoints"
STATE_FILE = "training_state.pt"
LOG_FILE = "log.jsonl"
CONFIG_FILE = "train_config.json"
CURVES_FILE = "curves.png"
BEST_LINK = "best"
SELECTION_FILE = "selection.json"
SELECTION_FIGURE = "selection.png"
LOCK_FILE = ".lock"
# What a complete checkpoint folder holds (policies.checkpoint's CONFIG_FILE and WEIGHTS_FILE).
REQUIRED_FILES = ("config.json", "model.safetensors", STATE_FILE)

_STEP = re.compile(r"^step-(\d{6,})$")
# Left behind by a kill: ".step-000005.tmp", ".step-000005.old" and the older "step-000005.tmp".
_PARTIAL = re.compile(r"^\.?step-\d+\.(tmp|old)$")

Note = Callable[[str], None]

# Tests set this to pause (and be killed) at named points of a save; None everywhere else.
PAUSE_HOOK: Callable[[str], None] | None = None


def pause_point(name: str) -> None:
    """A named point inside a checkpoint save, where a test may pause the process."""
    if PAUSE_HOOK is not None:
        PAUSE_HOOK(name)


def checkpoints_root(run: str | Path) -> Path:
    return Path(run) / CHECKPOINTS


def checkpoint_dir(run: str | Path, step: int) -> Path:
    """Where the (complete) checkpoint of `step` lives."""
    if step < 0:
        raise ValueError(f"step {step} must be >= 0")
    return checkpoints_root(run) / f"step-{step:06d}"


def parse_step(name: str) -> int | None:
    """The step of a checkpoint folder name ("step-000500" -> 500); None for anything else."""
    m = _STEP.match(name)
    return int(m.group(1)) if m else None


def missing_files(folder: str | Path) -> list[str]:
    """The files a complete checkpoint has that `folder` lacks (or holds empty)."""
    folder = Path(folder)
    return [
        f for f in REQUIRED_FILES if not (folder / f).is_file() or (folder / f).stat().st_size == 0
    ]


def list_checkpoints(
    run: str | Path, note: Note | None = None, clean: bool = True
) -> list[tuple[int, Path]]:
    """The run's complete checkpoints as (step, folder), oldest first.

    Half-written folders are never listed. With clean=True they are removed (each with a call to
    `note`) unless a trainer is writing the run right now; a `step-NNNNNN` folder that lacks
    files (copied in part, say) is skipped with a note and left alone."""
    root = checkpoints_root(run)
    if not root.is_dir():
        return []
    if clean:
        with _try_hold(run) as held:
            if held:
                remove_partial(run, note)
    found = []
    for p in sorted(root.iterdir()):
        step = parse_step(p.name)
        if step is None or not p.is_dir():
            continue
        lacking = missing_files(p)
        if lacking:
            if note is not None:
                note(f"skipped {p}: not a complete checkpoint (no {', '.join(lacking)})")
            continue
        found.append((step, p))
    return sorted(found)


def last_checkpoint(run: str | Path, note: Note | None = None) -> tuple[int, Path] | None:
    """The newest complete checkpoint as (step, folder), or None."""
    found = list_checkpoints(run, note)
    return found[-1] if found else None


def remove_partial(run: str | Path, note: Note | None = None) -> list[Path]:
    """Delete what killed saves left in checkpoints/ and return it. Call it only while holding
    the run (`RunLock`) or knowing nobody writes it: a live save's folder looks the same."""
    root = checkpoints_root(run)
    if not root.is_dir():
        return []
    removed = []
    for p in sorted(root.iterdir()):
        if _PARTIAL.match(p.name):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
            if note is not None:
                note(f"removed {p}: a checkpoint save that did not finish (killed?)")
    return removed


@contextlib.contextmanager
def write_checkpoint(run: str | Path, step: int) -> Iterator[Path]:
    """Yield an empty temporary folder to write the checkpoint of `step` into; on a normal exit
    fsync its files and itself, and rename it to `checkpoint_dir(run, step)` (replacing an
    older folder of that step). On an exception the temporary folder is removed."""
    final = checkpoint_dir(run, step)
    tmp = final.with_name(f".{final.name}.tmp")
    final.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        for path in sorted(tmp.rglob("*")):
            if path.is_file():
                fsync_file(path)
        fsync_file(tmp)
        pause_point("publish")
        old = final.with_name(f".{final.name}.old")
        if final.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.rename(final, old)
        os.rename(tmp, final)
        fsync_file(final.parent)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    pause_point("published")


# --- the best checkpoint (written by select) ---


def best_link(run: str | Path) -> Path:
    return Path(run) / BEST_LINK


def set_best(run: str | Path, checkpoint: str | Path) -> Path:
    """Point <run>/best at `checkpoint` (atomically: a new link renamed over the old one)."""
    link = best_link(run)
    tmp = link.with_name(f".{BEST_LINK}.tmp")
    tmp.unlink(missing_ok=True)
    os.symlink(Path(checkpoint).resolve(), tmp)
    os.replace(tmp, link)
    return link


def best_checkpoint(run: str | Path) -> Path | None:
    """The checkpoint <run>/best points at, if it is there and complete."""
    link = best_link(run)
    if not link.exists():
        return None
    target = link.resolve()
    return target if not missing_files(target) else None


# --- the log ---


def read_config(run: str | Path) -> dict[str, Any] | None:
    """The run's first TrainConfig as written (None if missing or unreadable: it only informs)."""
    try:
        obj = json.loads((Path(run) / CONFIG_FILE).read_text())
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def log_path(run: str | Path) -> Path:
    return Path(run) / LOG_FILE


def read_log(run: str | Path, note: Note | None = None) -> list[dict[str, Any]]:
    """The run's log records. A torn last line (a kill during an append) is dropped with a note;
    a bad line elsewhere is an error naming the file and line."""
    path = log_path(run)
    if not path.exists():
        return []
    lines = [(i, s) for i, s in enumerate(path.read_text().splitlines(), 1) if s.strip()]
    records = []
    for k, (lineno, line) in enumerate(lines):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            if k == len(lines) - 1:
                if note is not None:
                    note(f"{path}: dropped a torn last line {lineno} (a write that was killed)")
                break
            raise BadInput(
                f"line {lineno} is not JSON ({e.msg}); delete the line or the log", path=path
            ) from e
    return records


def append_log(run: str | Path, record: dict[str, Any]) -> None:
    with open(log_path(run), "a") as f:
        f.write(json.dumps(record) + "\n")


def truncate_log(run: str | Path, step: int, note: Note | None = None) -> None:
    """Keep the records up to `step` (a resumed run rewrites what came after its checkpoint)."""
    kept = [r for r in read_log(run, note) if r.get("step", 0) <= step]
    tmp = log_path(run).with_name(f".{LOG_FILE}.tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
    os.replace(tmp, log_path(run))


# --- who writes the run ---


class RunLock:
    """An exclusive flock on <run>/.lock, held by the trainer while it writes the run (so a
    second trainer is refused and `list_checkpoints` leaves a live save alone). The kernel
    drops it when the process dies, kill -9 included."""

    def __init__(self, run: str | Path) -> None:
        self.run = Path(run)
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock (once; later calls do nothing); raise if another process holds it."""
        if self._fd is not None:
            return
        fd = _lock(self.run)
        if fd is None:
            raise BadInput(
                "another process is training into this run right now; wait for it, stop it, "
                "or pass another --out",
                path=self.run,
            )
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _lock(run: Path) -> int | None:
    """An open, flocked descriptor of <run>/.lock, or None when another process holds it."""
    import fcntl

    fd = os.open(run / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


@contextlib.contextmanager
def _try_hold(run: str | Path) -> Iterator[bool]:
    """True while we hold the run's lock; False when a trainer holds it or it cannot be taken
    (a read-only folder, say)."""
    try:
        fd = _lock(Path(run))
    except (OSError, ImportError):
        fd = None
    try:
        yield fd is not None
    finally:
        if fd is not None:
            os.close(fd)
