"""Trunk pre-training on rendered frames: scenes respect the held-out cluster, the trunk
learns, and its weights start an ACT run."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from edgevla.errors import BadInput
from edgevla.policies.act.config import BACKBONE_FILE
from edgevla.sim.kinematics import forward_tcp
from edgevla.sim.scenes import LABEL_NAMES, sample_scene
from edgevla.train.config import TrainConfig
from edgevla.train.loop import train
from edgevla.train.pretrain import (
    INFO_FILE,
    LOG_FILE,
    PretrainConfig,
    pretrain,
    scene_source,
)

# the policies raise BadInput (was FileNotFoundError) for a weights name that is not a file
NEVER_DOWNLOADS = (BadInput, FileNotFoundError)


def test_scenes_keep_out_of_the_held_out_cluster(tiny_recording):
    _, ds = tiny_recording
    source = scene_source(ds)
    assert len(source.held_out_xy) == 2 and source.held_out_radius == pytest.approx(0.1)
    rng = np.random.default_rng(0)
    on_table = held = 0
    for _ in range(400):
        q, bag, yaw = sample_scene(rng, source)
        assert 0 <= yaw < np.pi and q.shape == (6,)
        if bag[2] < 0.01:  # on the table
            on_table += 1
            assert np.hypot(*(source.held_out_xy - bag[:2]).T).min() >= source.held_out_radius
            assert source.scene.workspace.contains(bag[:2])
        elif np.linalg.norm(bag - forward_tcp(q)) < 0.03:
            held += 1
    assert 230 < on_table < 330 and 30 < held < 90  # 70% / 15% of 400


def _pretrain(ds, out, **kw):
    torch.set_num_threads(1)
    return pretrain(PretrainConfig(dataset=ds, out=out, max_minutes=None, **kw))


def test_pretrain_learns_and_its_trunk_starts_an_act_run(tiny_recording, tmp_path):
    _, ds = tiny_recording
    out = tmp_path / "pre"
    result = _pretrain(ds, out, scenes=48, val_scenes=8, batch_size=8, epochs=8, lr=2e-3,
                       log_freq=1, val_freq=24)  # fmt: skip
    assert result.steps == 48
    losses = [json.loads(line)["loss"] for line in (out / LOG_FILE).read_text().splitlines()
              if "loss" in json.loads(line)]  # fmt: skip
    first, last = np.mean(losses[:6]), np.mean(losses[-6:])
    assert last < first / 2, (first, last)
    info = json.loads((out / INFO_FILE).read_text())
    assert info["labels"] == list(LABEL_NAMES) and (out / "pretrain.png").stat().st_size > 0
    weights = load_file(out / BACKBONE_FILE)

    base = dict(policy="act", preset="tiny", dataset=(ds,), steps=1, batch_size=2, save_freq=1,
                log_freq=1, threads=1, val_batches=1, augment=False)  # fmt: skip
    path = out / BACKBONE_FILE
    run = tmp_path / "act"
    train(TrainConfig(**base, out=run, lr=1e-12, overrides=(f"pretrained_backbone_weights={path}",)))  # fmt: skip
    trained = load_file(run / "checkpoints" / "step-000001" / "model.safetensors")
    for name in ("bn1.running_mean", "layer3.1.bn2.running_var", "layer4.0.conv1.weight"):
        torch.testing.assert_close(
            trained[f"model.backbone.{name}"], weights[name], atol=1e-6, rtol=0
        )

    with pytest.raises(NEVER_DOWNLOADS, match="never downloads"):
        train(TrainConfig(**base, out=tmp_path / "x",
                          overrides=("pretrained_backbone_weights=ResNet18_Weights.IMAGENET1K_V1",)))  # fmt: skip
    assert not (tmp_path / "x").exists()


def test_smolvla_vision_pretrains_and_starts_a_smolvla_run(tiny_recording, tmp_path):
    from edgevla.policies.smolvla.config import VISION_FILE

    _, ds = tiny_recording
    out = tmp_path / "pre"
    result = _pretrain(ds, out, policy="smolvla", preset="tiny", scenes=16, val_scenes=4,
                       batch_size=4, epochs=1)  # fmt: skip
    assert result.weights == str(out / VISION_FILE) and "load_vlm_weights=true" in result.use_with
    weights = load_file(out / VISION_FILE)
    assert weights and all(k.startswith(("vision.", "connector.")) for k in weights)

    base = dict(policy="smolvla", preset="tiny", dataset=(ds,), steps=1, batch_size=2, save_freq=1,
                log_freq=1, threads=1, val_batches=1, augment=False, lr=1e-12)  # fmt: skip
    run = tmp_path / "sv"
    train(TrainConfig(**base, out=run, overrides=("load_vlm_weights=true", f"vlm_model_name={out / VISION_FILE}")))  # fmt: skip
    trained = load_file(run / "checkpoints" / "step-000001" / "model.safetensors")
    name = "vision.embeddings.patch_embedding.weight"
    torch.testing.assert_close(trained[name], weights[name], atol=1e-6, rtol=0)
    with pytest.raises(NEVER_DOWNLOADS, match="never downloads"):
        train(
            TrainConfig(**base, out=tmp_path / "x", overrides=("load_vlm_weights=true",)),
        )
