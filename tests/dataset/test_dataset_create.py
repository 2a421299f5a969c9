"""Creating a dataset is race-safe and leaves nothing behind when it fails: two writers
started together into one new folder end with one dataset and one clear error naming the
winner; a folder that cannot be written is refused before anything is left in it."""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import pytest

from edgevla.dataset.lerobot import writer as writer_module
from edgevla.dataset.lerobot.writer import LeRobotDatasetWriter
from edgevla.errors import BadInput


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".creating"))


def race(root: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[list, list]:
    """Two writers create `root` at once: both finish building before either publishes."""
    barrier = threading.Barrier(2, timeout=30)
    real = writer_module.fsync_tree

    def build_then_wait(path: Path) -> None:
        real(path)
        if path.name.endswith(".creating"):
            barrier.wait()

    monkeypatch.setattr(writer_module, "fsync_tree", build_then_wait)
    writers, errors = [], []

    def create() -> None:
        try:
            writers.append(LeRobotDatasetWriter.create(root))
        except Exception as e:  # noqa: BLE001 - collected for the asserts
            errors.append(e)

    threads = [threading.Thread(target=create) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return writers, errors


@pytest.mark.parametrize("existing_empty_folder", [False, True], ids=["new", "empty folder"])
def test_two_writers_racing_end_with_one_dataset_and_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, existing_empty_folder: bool
) -> None:
    root = tmp_path / "ds"
    if existing_empty_folder:  # a mount point, or a folder made by hand
        root.mkdir()
    writers, errors = race(root, monkeypatch)
    assert len(writers) == 1 and len(errors) == 1, errors
    assert isinstance(errors[0], BadInput)
    assert f"pid {os.getpid()}" in str(errors[0]) and "same moment" in str(errors[0])
    assert str(root) in str(errors[0])
    assert leftovers(tmp_path) == [] and leftovers(root) == []
    writers[0].close()
    writer, done = LeRobotDatasetWriter.open_for_resume(root)
    assert done == set()
    writer.close()
    assert sorted(p.name for p in root.iterdir()) == ["meta"]


def test_unwritable_parent_is_refused_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the file system's refusal injected: a chmod 555 folder would do it only for a non-root
    # user, and this machine and CI run as root (a test that always skipped here was removed)
    def refuse(path: Path, obj: object) -> None:
        raise PermissionError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(writer_module, "atomic_write_json", refuse)
    with pytest.raises(BadInput, match="not writable"):
        LeRobotDatasetWriter.create(tmp_path / "ds")
    assert list(tmp_path.iterdir()) == []


def test_a_killed_create_is_cleaned_up_by_the_next(tmp_path: Path) -> None:
    stale = tmp_path / ".ds.0123abcd.creating"
    (stale / ".edgevla_staging").mkdir(parents=True)
    (stale / ".edgevla_staging" / "LOCK").write_text("99999")  # its writer died: lock free
    LeRobotDatasetWriter.create(tmp_path / "ds").close()
    assert leftovers(tmp_path) == []
