"""Checkpoint folders: LeRobot layout, exact round trip, strict and explanatory loading."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from edgevla.errors import BadInput
from edgevla.policies import checkpoint
from edgevla.policies.act.model import ACTPolicy
from edgevla.policies.common.normalize import Normalizer


def _stats() -> dict[str, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    image = {"mean": rng.random((3, 1, 1)), "std": rng.random((3, 1, 1)) + 0.1}
    return {
        "observation.state": {
            "mean": rng.random(3),
            "std": rng.random(3) + 0.1,
            "min": -rng.random(3),
        },
        "observation.images.top": image,
        "observation.images.gripper": image,
        "action": {"mean": rng.random(4), "std": rng.random(4) + 0.1},
    }


def test_round_trip_is_exact(tiny_config, tmp_path):
    torch.manual_seed(0)
    policy = ACTPolicy(tiny_config())
    stats = _stats()
    folder = policy.save_pretrained(tmp_path / "ckpt", stats=stats)
    assert sorted(p.name for p in folder.iterdir()) == [
        "config.json",
        "model.safetensors",
        "normalization_stats.safetensors",
        "policy_postprocessor.json",
        "policy_postprocessor_step_0_unnormalizer_processor.safetensors",
        "policy_preprocessor.json",
        "policy_preprocessor_step_3_normalizer_processor.safetensors",
    ]
    assert json.loads((folder / "config.json").read_text())["type"] == "act"
    assert all(k.startswith("model.") for k in load_file(str(folder / "model.safetensors")))

    loaded = ACTPolicy.from_pretrained(folder)
    assert loaded.config == policy.config
    assert not loaded.training
    for (name, a), (name_b, b) in zip(
        policy.state_dict().items(), loaded.state_dict().items(), strict=True
    ):
        assert name == name_b and torch.equal(a, b), name

    loaded_stats = checkpoint.Checkpoint.open(folder).stats
    assert loaded_stats.keys() == stats.keys()
    for feature, per_stat in stats.items():
        for stat, value in per_stat.items():
            np.testing.assert_array_equal(loaded_stats[feature][stat], value.astype(np.float32))
    Normalizer(loaded_stats, loaded.config.normalization_modes())  # usable as saved


def test_reference_checkpoint_loads_without_our_stats_file(act_checkpoint):
    """LeRobot's folder has no normalization_stats.safetensors: its stats come from its
    processor files (tests/policies/test_checkpoint.py checks their values)."""
    policy = ACTPolicy.from_pretrained(act_checkpoint)
    assert policy.config.chunk_size == 20
    assert not (act_checkpoint / checkpoint.STATS_FILE).exists()
    stats = checkpoint.Checkpoint.open(act_checkpoint).stats
    assert sorted(stats) == sorted(policy.config.all_features)


def test_other_policy_type_rejected(act_checkpoint, tmp_path):
    folder = tmp_path / "diffusion"
    shutil.copytree(act_checkpoint, folder)
    config = json.loads((folder / "config.json").read_text()) | {"type": "diffusion"}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="describes a 'diffusion' policy, but a 'act' policy"):
        ACTPolicy.from_pretrained(folder)


def test_shape_mismatch_named(tiny_config, tmp_path):
    folder = ACTPolicy(tiny_config()).save_pretrained(tmp_path / "ckpt")
    config = json.loads((folder / "config.json").read_text()) | {
        "chunk_size": 12,
        "n_action_steps": 12,
    }
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="shape mismatch") as err:
        ACTPolicy.from_pretrained(folder)
    assert "model.decoder_pos_embed.weight: file (8, 32) vs model (12, 32)" in str(err.value)


def test_missing_and_unexpected_keys_named(tiny_config, tmp_path):
    folder = ACTPolicy(tiny_config()).save_pretrained(tmp_path / "ckpt")
    weights = load_file(str(folder / "model.safetensors"))
    weights.pop("model.action_head.bias")
    weights["model.extra_head.weight"] = torch.zeros(2)
    save_file(weights, str(folder / "model.safetensors"))
    with pytest.raises(ValueError, match="missing from file") as err:
        ACTPolicy.from_pretrained(folder)
    assert "model.action_head.bias" in str(err.value)
    assert "unexpected in file (1): model.extra_head.weight" in str(err.value)


def test_missing_folder_explained(tmp_path):
    with pytest.raises(BadInput, match="config.json"):
        ACTPolicy.from_pretrained(tmp_path)
