"""`edgevla train` / `edgevla pretrain` on the command floor: bad input is refused before any
work, naming the flag, with exit status 2; --json prints one object."""

import json

import pytest

from edgevla.cli import main
from edgevla.errors import BadInput
from edgevla.train.config import TrainConfig
from edgevla.train.pretrain import PretrainConfig


def test_a_missing_dataset_is_refused_naming_the_flag(tmp_path, capsys):
    for verb in ("train", "pretrain"):
        code = main([verb, "--dataset", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
        err = capsys.readouterr().err
        assert code == 2 and "--dataset" in err and "not found" in err, err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "cls,kw,flag",
    [
        (TrainConfig, {"steps": 0}, "--steps"),
        (TrainConfig, {"save_freq": 0}, "--save-freq"),
        (TrainConfig, {"grad_clip_norm": 0.0}, "--grad-clip-norm"),
        (TrainConfig, {"ema_decay": 1.0}, "--ema-decay"),
        (TrainConfig, {"threads": 0}, "--threads"),
        (TrainConfig, {"overrides": ("chunk_size",)}, "--overrides"),
        (PretrainConfig, {"scenes": 3}, "--scenes"),
        (PretrainConfig, {"max_minutes": 0.0}, "--max-minutes"),
    ],
)
def test_configs_name_the_flag(cls, kw, flag):
    with pytest.raises(BadInput, match=flag):
        cls(**kw)


def test_train_json_prints_one_object(tiny_recording, tmp_path, capsys):
    _, ds = tiny_recording
    run = tmp_path / "run"
    argv = ["train", "--json", "--preset", "tiny", "--dataset", str(ds), "--out", str(run),
            "--steps", "1", "--batch-size", "2", "--save-freq", "1", "--threads", "1",
            "--val-batches", "1"]  # fmt: skip
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["steps"] == 1 and result["checkpoints"] == ["step-000001"]
    assert main(argv) == 2  # the run has checkpoints now: --resume or another --out
    assert "--resume" in capsys.readouterr().err
