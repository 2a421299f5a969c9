"""ACTConfig: LeRobot defaults, config.json round trip, validation messages, edge preset."""

from __future__ import annotations

import dataclasses
import json

import pytest
from edgevla_runtime.features import ACTION_KEY, STATE_KEY, image_key

from edgevla.policies.act.config import (
    ACTConfig,
    FeatureType,
    PolicyFeature,
    act_edge_preset,
    default_features,
)
from edgevla.policies.common.normalize import NormalizationMode

LEROBOT_DEFAULTS = {
    "n_obs_steps": 1,
    "chunk_size": 100,
    "n_action_steps": 100,
    "vision_backbone": "resnet18",
    "replace_final_stride_with_dilation": False,
    "pre_norm": False,
    "dim_model": 512,
    "n_heads": 8,
    "dim_feedforward": 3200,
    "feedforward_activation": "relu",
    "n_encoder_layers": 4,
    "n_decoder_layers": 1,
    "use_vae": True,
    "latent_dim": 32,
    "n_vae_encoder_layers": 4,
    "temporal_ensemble_coeff": None,
    "dropout": 0.1,
    "kl_weight": 10.0,
    "optimizer_lr": 1e-5,
    "optimizer_weight_decay": 1e-4,
    "optimizer_lr_backbone": 1e-5,
}


def test_defaults_are_lerobots():
    cfg = ACTConfig()
    assert {k: getattr(cfg, k) for k in LEROBOT_DEFAULTS} == LEROBOT_DEFAULTS
    assert cfg.normalization_mapping == {
        t: NormalizationMode.MEAN_STD for t in ("VISUAL", "STATE", "ACTION")
    }
    assert list(cfg.image_features) == [image_key(c) for c in ("top", "gripper", "left")]
    assert cfg.robot_state_feature == PolicyFeature(FeatureType.STATE, (6,))
    assert cfg.action_delta_indices == list(range(100))


def test_reference_config_json_round_trips(act_checkpoint, tmp_path):
    path = act_checkpoint / "config.json"
    cfg = ACTConfig.from_json(path)
    assert (cfg.chunk_size, cfg.dim_model, cfg.n_heads, cfg.latent_dim) == (20, 128, 4, 16)
    assert list(cfg.image_features) == ["observation.images.top", "observation.images.gripper"]
    assert cfg.extra["push_to_hub"] is True  # a LeRobot base key: tolerated and kept
    original = json.loads(path.read_text())
    written = json.loads(cfg.to_json(tmp_path / "config.json").read_text())
    assert written == original
    assert list(written) == list(original)  # same key order as LeRobot writes


def test_our_config_json_has_lerobot_keys(tmp_path, act_checkpoint):
    written = ACTConfig().to_json_dict()
    reference = json.loads((act_checkpoint / "config.json").read_text())
    assert list(written) == list(reference)
    assert written["type"] == "act"
    assert ACTConfig.from_json_dict(written) == ACTConfig()


def test_other_policy_type_rejected():
    obj = ACTConfig().to_json_dict() | {"type": "diffusion"}
    with pytest.raises(ValueError, match="'diffusion'.*not 'act'"):
        ACTConfig.from_json_dict(obj)


def test_unknown_key_warns_and_round_trips():
    obj = ACTConfig().to_json_dict() | {"dim_modle": 64}
    with pytest.warns(UserWarning, match="dim_modle"):
        cfg = ACTConfig.from_json_dict(obj)
    assert cfg.to_json_dict()["dim_modle"] == 64


@pytest.mark.parametrize(
    ("overrides", "hint"),
    [
        ({"n_action_steps": 101}, "lower n_action_steps or raise chunk_size"),
        ({"temporal_ensemble_coeff": 0.01}, "set n_action_steps=1"),
        ({"dim_model": 100, "n_heads": 8}, "multiple of n_heads"),
        ({"dim_model": 6, "n_heads": 2}, "multiple of 4"),
        ({"vision_backbone": "resnet50"}, "use resnet10, resnet18 or resnet34"),
        (
            {"replace_final_stride_with_dilation": True},
            "set replace_final_stride_with_dilation=False",
        ),
        ({"n_obs_steps": 2}, "set n_obs_steps=1"),
        ({"feedforward_activation": "glu"}, "use one of"),
        ({"dropout": 1.0}, r"\[0, 1\)"),
        (
            {"input_features": {STATE_KEY: PolicyFeature(FeatureType.STATE, (6,))}},
            "at least one camera",
        ),
        (
            {"output_features": {"act": PolicyFeature(FeatureType.ACTION, (6,))}},
            "exactly one output",
        ),
        ({"normalization_mapping": {"STATES": "MEAN_STD"}}, "are not feature types"),
    ],
)
def test_validation_says_how_to_fix(overrides, hint):
    with pytest.raises(ValueError, match=hint):
        ACTConfig(**overrides)


def test_cameras_must_share_a_shape():
    inputs, _ = default_features(cameras=("top",))
    inputs[image_key("left")] = PolicyFeature(FeatureType.VISUAL, (3, 64, 64))
    with pytest.raises(ValueError, match="common"):
        ACTConfig(input_features=inputs)


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        ACTConfig().dim_model = 3  # type: ignore[misc]


def test_normalization_modes_per_feature():
    modes = ACTConfig(
        normalization_mapping={"VISUAL": "IDENTITY", "STATE": "MEAN_STD", "ACTION": "MIN_MAX"}
    )
    got = modes.normalization_modes()
    assert got[image_key("top")] is NormalizationMode.IDENTITY
    assert got[STATE_KEY] is NormalizationMode.MEAN_STD
    assert got[ACTION_KEY] is NormalizationMode.MIN_MAX
    partial = ACTConfig(normalization_mapping={"STATE": "MEAN_STD"}).normalization_modes()
    assert partial[ACTION_KEY] is NormalizationMode.IDENTITY  # unmapped types pass through


def test_edge_preset_is_a_smaller_act():
    edge = act_edge_preset()
    assert edge.vision_backbone == "resnet18-w32" and edge.use_vae and edge.n_heads == 8
    assert edge.chunk_size == edge.n_action_steps == 100
    assert edge.dim_model <= 256 and edge.dim_feedforward <= 1024
    assert edge.n_encoder_layers < ACTConfig().n_encoder_layers
    assert {f.shape for f in edge.image_features.values()} == {(3, 96, 128)}
    assert act_edge_preset(chunk_size=50, dim_model=128).dim_model == 128
