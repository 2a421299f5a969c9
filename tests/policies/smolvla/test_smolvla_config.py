"""SmolVLAConfig: presets, derived sizes, validation messages, JSON round trip."""

from __future__ import annotations

import dataclasses

import pytest

from edgevla.policies.common.contract import FeatureType, NormalizationMode, PolicyFeature
from edgevla.policies.smolvla.config import (
    SmolVLAConfig,
    expert_intermediate_size,
    smolvla_base_preset,
    smolvla_cpu_preset,
    smolvla_tiny_preset,
)


def test_base_preset_has_smolvla_sizes():
    cfg = smolvla_base_preset()
    assert cfg.chunk_size == 50 and cfg.num_steps == 10 and cfg.max_action_dim == 32
    assert cfg.tokens_per_image == 64  # 512/16 = 32x32 patches, 4x4 pixel shuffle
    assert cfg.num_image_tokens == 3 * 64
    assert cfg.natural_prefix_length == 3 * 64 + 48 + 1
    assert cfg.expert_hidden_size == 720  # 0.75 * 960
    assert cfg.expert_intermediate_size == 2048
    assert cfg.expert_num_layers == 16
    # LeRobot: VLM layer i self-attends when i % 2 == 0.
    assert cfg.expert_layer_is_self_attn == tuple(i % 2 == 0 for i in range(16))
    assert cfg.optimizer_lr == 1e-4 and cfg.optimizer_betas == (0.9, 0.95)
    assert cfg.scheduler_warmup_steps == 1000


def test_cpu_preset_sizes():
    cfg = smolvla_cpu_preset()
    assert cfg.image_size_hw == (96, 128)
    assert cfg.tokens_per_image == 12
    assert cfg.natural_prefix_length == 3 * 12 + 48 + 1
    assert cfg.expert_hidden_size == 192
    assert not cfg.freeze_vision_encoder and not cfg.train_expert_only


def test_expert_intermediate_size_rule():
    assert expert_intermediate_size(720) == 2048
    assert expert_intermediate_size(192) == 512


def test_shallower_expert_reads_every_mth_vlm_layer():
    cfg = dataclasses.replace(smolvla_cpu_preset(), num_vlm_layers=4, num_expert_layers=2)
    assert cfg.expert_vlm_layer_index == (0, 2)
    assert cfg.expert_layer_is_self_attn == (True, True)
    cfg = dataclasses.replace(cfg, self_attn_every_n_layers=0)
    assert cfg.expert_layer_is_self_attn == (False, False)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"n_action_steps": 60}, "n_action_steps"),
        ({"resize_imgs_with_padding": (100, 96)}, "divisible"),
        ({"num_expert_layers": 3}, "multiple of num_expert_layers"),
        ({"text_num_kv_heads": 3}, "grouped-query"),
        ({"attention_mode": "self_attn"}, "cross_attn"),
        ({"action_dim": 40}, "max_action_dim"),
        ({"vocab_size": 100}, "byte tokenizer"),
        ({"prefix_length": 10}, "prefix_length"),
        ({"vision_hidden_act": "relu"}, "gelu"),
    ],
)
def test_validation_says_what_to_fix(changes, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(smolvla_cpu_preset(), **changes)


def test_presets_take_the_robot_description():
    cfg = smolvla_tiny_preset(cameras=("top", "left"), image_hw=(64, 80), state_dim=4, action_dim=2)
    assert cfg.image_keys == ("observation.images.top", "observation.images.left")
    assert cfg.input_features == {
        "observation.images.top": PolicyFeature(FeatureType.VISUAL, (3, 64, 80)),
        "observation.images.left": PolicyFeature(FeatureType.VISUAL, (3, 64, 80)),
        "observation.state": PolicyFeature(FeatureType.STATE, (4,)),
    }
    assert cfg.output_features == {"action": PolicyFeature(FeatureType.ACTION, (2,))}
    assert list(cfg.image_features) == ["observation.images.top", "observation.images.left"]
    assert cfg.camera_hw == (64, 80)
    assert cfg.action_delta_indices == list(range(10))
    modes = cfg.normalization_modes()
    assert modes["observation.images.top"] is NormalizationMode.IDENTITY
    assert modes["observation.state"] is modes["action"] is NormalizationMode.MEAN_STD
    assert smolvla_cpu_preset(vision_num_layers=2).vision_num_layers == 2


def test_json_round_trip(tmp_path):
    cfg = dataclasses.replace(smolvla_cpu_preset(), chunk_size=20, n_action_steps=10)
    path = cfg.to_json(tmp_path / "config.json")
    assert list(cfg.to_json_dict())[0] == "type"
    assert SmolVLAConfig.from_json(path) == cfg


def test_unknown_field_and_wrong_type_are_rejected():
    data = smolvla_cpu_preset().to_json_dict()
    with pytest.raises(ValueError, match="not_a_field"):
        SmolVLAConfig.from_json_dict(data | {"not_a_field": 1})
    with pytest.raises(ValueError, match="'act' policy"):
        SmolVLAConfig.from_json_dict(data | {"type": "act"})
