"""A damaged or foreign dataset is refused at open, with a message naming the file to blame."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from synthetic_dataset import GOLDEN_ROOT

from edgevla.dataset.lerobot.layout import DatasetFormatError
from edgevla.dataset.lerobot.reader import LeRobotDatasetReader
from edgevla.dataset.video import encode_video

TOP = "videos/observation.images.top/chunk-000/file-000.mp4"
DATA = "data/chunk-000/file-000.parquet"
EPISODES = "meta/episodes/chunk-000/file-000.parquet"


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    root = tmp_path / "ds"
    shutil.copytree(GOLDEN_ROOT, root)
    for p in root.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)  # the reference files are read-only
    return root


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def set_version(root: Path, version: str) -> None:
    info = json.loads((root / "meta/info.json").read_text())
    info["codebase_version"] = version
    (root / "meta/info.json").write_text(json.dumps(info))


def fewer_frames(root: Path) -> None:
    encode_video(np.zeros((39, 96, 128, 3), np.uint8), root / TOP, fps=30)


def bad_shape(root: Path) -> None:
    info = json.loads((root / "meta/info.json").read_text())
    info["features"]["observation.images.top"]["shape"] = [96, 128]
    (root / "meta/info.json").write_text(json.dumps(info))


CASES: dict[str, tuple[Callable[[Path], None], str]] = {
    "v2.1 refused": (lambda r: set_version(r, "v2.1"), r"'v2\.1'.*reads 'v3\.0' only.*convert"),
    "no info.json": (
        lambda r: (r / "meta/info.json").unlink(),
        r"missing dataset info: .*meta/info\.json",
    ),
    "info.json not JSON": (
        lambda r: truncate(r / "meta/info.json"),
        r"corrupt dataset info: .*info\.json",
    ),
    "no stats.json": (lambda r: (r / "meta/stats.json").unlink(), r"missing .*meta/stats\.json"),
    "no tasks": (
        lambda r: (r / "meta/tasks.parquet").unlink(),
        r"missing tasks table: .*tasks\.parquet",
    ),
    "episodes corrupt": (
        lambda r: truncate(r / EPISODES),
        rf"corrupt episodes metadata: .*{EPISODES}",
    ),
    "data missing": (lambda r: (r / DATA).unlink(), rf"missing frame data: .*{DATA}"),
    "data corrupt": (lambda r: truncate(r / DATA), rf"corrupt frame data: .*{DATA}"),
    "video missing": (lambda r: (r / TOP).unlink(), rf"missing video: .*{TOP}"),
    "video corrupt": (lambda r: truncate(r / TOP), rf"corrupt video: .*{TOP}"),
    "frame count": (fewer_frames, rf"{TOP} holds 39 frames but its episodes have 40 rows"),
    "feature shape": (bad_shape, r"shape \[H, W, 3\]"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_refused_with_clear_message(copy: Path, case: str) -> None:
    damage, message = CASES[case]
    damage(copy)
    with pytest.raises(DatasetFormatError, match=message):
        LeRobotDatasetReader(copy)


def test_not_a_dataset(tmp_path: Path) -> None:
    with pytest.raises(DatasetFormatError, match="not a directory"):
        LeRobotDatasetReader(tmp_path / "nowhere")


def test_unfinalized_dataset_explains(tmp_path: Path) -> None:
    from edgevla.dataset.lerobot.writer import LeRobotDatasetWriter

    LeRobotDatasetWriter.create(tmp_path / "ds").close()
    with pytest.raises(DatasetFormatError, match="finalize the writer"):
        LeRobotDatasetReader(tmp_path / "ds")
