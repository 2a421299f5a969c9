"""--pretrained-path: a run that starts from a checkpoint's weights (fine-tuning), with a fresh
optimizer and step count, and refuses weights that do not fit the network it builds."""

from __future__ import annotations

import pytest
from safetensors.torch import load_file

from edgevla.errors import BadInput
from edgevla.train.config import TrainConfig
from edgevla.train.loop import train


def _cfg(dataset, out, **kw) -> TrainConfig:
    base = dict(policy="act", preset="tiny", dataset=(dataset,), out=out, steps=3, batch_size=2,
                save_freq=3, log_freq=1, threads=1, val_batches=1)  # fmt: skip
    return TrainConfig(**{**base, **kw})


def _weights(run, step):
    return load_file(str(run / "checkpoints" / f"step-{step:06d}" / "model.safetensors"))


def _largest_difference(a, b) -> float:
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def test_a_run_starts_from_the_checkpoint_weights(tiny_recording, tmp_path) -> None:
    _, ds = tiny_recording
    first = tmp_path / "first"
    train(_cfg(ds, first))
    source = first / "checkpoints" / "step-000003"
    tuned = train(
        _cfg(ds, tmp_path / "tuned", steps=1, save_freq=1, pretrained_path=source, seed=7)
    )
    fresh = train(_cfg(ds, tmp_path / "fresh", steps=1, save_freq=1, seed=7))
    assert tuned.resumed_from == 0 and fresh.resumed_from == 0  # a new run, step 0
    start = _weights(first, 3)
    # one optimizer step away from the source, while a fresh start is its own random draw
    assert _largest_difference(_weights(tmp_path / "tuned", 1), start) < 0.01
    assert _largest_difference(_weights(tmp_path / "fresh", 1), start) > 0.1


def test_weights_that_do_not_fit_are_refused_before_training(tiny_recording, tmp_path) -> None:
    _, ds = tiny_recording
    first = tmp_path / "first"
    train(_cfg(ds, first))
    source = first / "checkpoints" / "step-000003"
    with pytest.raises(BadInput, match="shape mismatch"):
        train(_cfg(ds, tmp_path / "wide", pretrained_path=source, overrides=("dim_model=32",)))
    with pytest.raises(BadInput, match="'act' checkpoint"):
        train(_cfg(ds, tmp_path / "vla", policy="smolvla", pretrained_path=source))
    with pytest.raises(BadInput, match="not found"):
        _cfg(ds, tmp_path / "x", pretrained_path=tmp_path / "missing")
