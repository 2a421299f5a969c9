"""Corrupted copies of a checkpoint and of a bundle, every file kind, through the CLI: each is
refused before any work with exit 2 and one line on stderr that names the file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edgevla.cli import main

ASSET = Path(__file__).resolve().parents[2] / "assets" / "act_edge"
FILES = ("config.json", "model.safetensors", "normalization_stats.safetensors", "train_info.json")


def truncate(p: Path) -> None:
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])


def empty(p: Path) -> None:
    p.write_bytes(b"")


def garbage(p: Path) -> None:
    p.write_bytes(b"\x00\xffnot what it should be" * 40)


def wrong_json_type(p: Path) -> None:
    p.write_text(json.dumps(["a", "list"]))


def delete(p: Path) -> None:
    p.unlink()


CORRUPTIONS = {
    "truncated": truncate,
    "empty": empty,
    "garbage": garbage,
    "wrong type": wrong_json_type,
    "deleted": delete,
}


def cases(files: tuple[str, ...]) -> list[tuple[str, str]]:
    """(file, corruption) pairs; a JSON type applies to JSON files only."""
    return [(name, how) for name in files for how in sorted(CORRUPTIONS)
            if how != "wrong type" or name.endswith(".json")]  # fmt: skip


@pytest.mark.parametrize(("name", "how"), cases(FILES))
def test_corrupt_checkpoint_file_is_refused_in_one_line(name, how, tmp_path, capsys) -> None:
    ckpt = Path(shutil.copytree(ASSET, tmp_path / "ckpt"))
    CORRUPTIONS[how](ckpt / name)
    code = main(["export", "--checkpoint", str(ckpt), "--out", str(tmp_path / "bundle")])
    err = capsys.readouterr().err.strip()
    if name == "train_info.json" and how == "deleted":
        # train_info is optional (a LeRobot checkpoint has none): the export runs, fps unknown.
        assert code == 0, err
        return
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert name in err or str(ckpt) in err, err
    assert not (tmp_path / "bundle").exists()


@pytest.fixture(scope="module")
def act_bundle(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("b") / "act"
    assert (
        main(
            ["export", "--checkpoint", str(ASSET), "--out", str(out), "--parity-observations", "1"]
        )
        == 0
    )
    return out


@pytest.mark.parametrize(
    ("name", "how"), cases(("manifest.json", "vision.onnx", "transformer.onnx"))
)
def test_corrupt_bundle_file_is_refused_in_one_line(
    act_bundle, name, how, tmp_path, capsys
) -> None:
    bundle = Path(shutil.copytree(act_bundle, tmp_path / "bundle"))
    CORRUPTIONS[how](bundle / name)
    capsys.readouterr()
    code = main(["quantize", "--bundle", str(bundle), "--out", str(tmp_path / "q")])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert name in err or str(bundle) in err, err
    assert not (tmp_path / "q").exists()
