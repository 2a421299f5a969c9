"""Save / load, partial loading with a report, LeRobot names, and the real-size preset on meta."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file as load_numpy
from safetensors.torch import save_file

from edgevla.policies.checkpoint import (
    Checkpoint,
    LeRobotCompatibilityWarning,
)
from edgevla.policies.common.contract import FeatureType, PolicyFeature
from edgevla.policies.runner import TorchPolicyRunner
from edgevla.policies.smolvla.config import (
    smolvla_base_preset,
    smolvla_cpu_preset,
    smolvla_tiny_preset,
)
from edgevla.policies.smolvla.model import SmolVLAPolicy

LEROBOT_PROCESSOR_FILES = (
    "policy_preprocessor.json",
    "policy_preprocessor_step_3_normalizer_processor.safetensors",
    "policy_postprocessor.json",
    "policy_postprocessor_step_0_unnormalizer_processor.safetensors",
)


def test_save_load_round_trip_is_exact(tiny_config, make_batch, tmp_path):
    cfg = tiny_config()
    model = SmolVLAPolicy(cfg)
    stats = {
        "observation.state": {"mean": np.zeros(5, np.float32), "std": np.ones(5, np.float32)},
        "action": {"mean": np.zeros(3, np.float32), "std": np.ones(3, np.float32)},
    }
    with pytest.warns(LeRobotCompatibilityWarning, match="LeRobot cannot load"):
        model.save_pretrained(tmp_path / "ckpt", stats)
    files = {p.name for p in (tmp_path / "ckpt").iterdir()}
    assert files == {
        "config.json",
        "model.safetensors",
        "normalization_stats.safetensors",
        *LEROBOT_PROCESSOR_FILES,
    }
    loaded = SmolVLAPolicy.from_pretrained(tmp_path / "ckpt")
    assert loaded.config == cfg and not loaded.training
    assert np.array_equal(
        Checkpoint.open(tmp_path / "ckpt").stats["observation.state"]["std"], np.ones(5)
    )
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name
    batch = make_batch(cfg)
    noise = torch.randn(3, cfg.chunk_size, cfg.max_action_dim)
    out = model.predict_action_chunk(batch, noise=noise)
    assert torch.equal(out, loaded.predict_action_chunk(batch, noise=noise))


def test_partial_load_reports_shape_mismatches(tiny_config, tmp_path):
    source = SmolVLAPolicy(tiny_config(max_action_dim=6))
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    target = SmolVLAPolicy(tiny_config(max_action_dim=7))
    report = target.load_weights(path)
    mismatched = {name for name, _, _ in report.shape_mismatch}
    assert mismatched == {"action_in_proj.weight", "action_out_proj.weight", "action_out_proj.bias"}
    assert not report.missing and not report.unexpected  # the names all exist on both sides
    assert len(report.loaded) == len(source.state_dict()) - 3
    assert torch.equal(target.lm_expert.norm.weight, source.lm_expert.norm.weight)
    assert torch.equal(target.vision.post_layernorm.bias, source.vision.post_layernorm.bias)
    assert "shape mismatch 3" in report.summary()


def test_lerobot_names_map_onto_ours(tiny_config, tmp_path):
    cfg = tiny_config()
    model = SmolVLAPolicy(cfg)
    ours = model.state_dict()
    names = {
        "model.state_proj.weight": "state_proj.weight",
        "model.vlm_with_expert.lm_expert.layers.1.self_attn.k_proj.weight": (
            "lm_expert.layers.1.self_attn.k_proj.weight"
        ),
        "model.vlm_with_expert.vlm.model.vision_model.post_layernorm.weight": (
            "vision.post_layernorm.weight"
        ),
        "model.vlm_with_expert.vlm.model.connector.modality_projection.proj.weight": (
            "connector.modality_projection.proj.weight"
        ),
        "model.vlm_with_expert.vlm.model.text_model.layers.0.mlp.up_proj.weight": (
            "text_model.layers.0.mlp.up_proj.weight"
        ),
    }
    tensors = {theirs: torch.full_like(ours[mine], 0.5) for theirs, mine in names.items()}
    tensors["model.vlm_with_expert.vlm.lm_head.weight"] = torch.zeros(3, 3)
    path = tmp_path / "lerobot.safetensors"
    save_file(tensors, str(path))
    report = model.load_weights(path, key_map="lerobot")
    assert sorted(report.loaded) == sorted(names.values())
    assert report.unexpected == ["vlm_with_expert.vlm.lm_head.weight"]
    assert (
        "unexpected: vlm_with_expert.vlm.lm_head.weight" in report.summary()
    )  # named, not counted
    assert all(torch.all(model.state_dict()[mine] == 0.5) for mine in names.values())
    with pytest.raises(ValueError, match="lerobot"):
        model.load_weights(path, key_map="hf")


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_base_preset_builds_on_meta_with_smolvla_size():
    """SmolVLA reports ~450 M parameters. Ours has no LM head (SmolVLA never decodes text; the
    untied head of SmolVLM2 is 49280 x 960 = 47.3 M), so ~400 M here, ~450 M with it."""
    cfg = smolvla_base_preset()
    with torch.device("meta"):
        model = SmolVLAPolicy(cfg)
    parts = {
        "vision": _count(model.vision),  # SigLIP-B/16 at 512: ~86 M
        "connector": _count(model.connector),  # 12288 x 960
        "text_model": _count(model.text_model),  # embeddings 47.3 M + 16 layers
        "lm_expert": _count(model.lm_expert),
    }
    total = _count(model)
    assert parts["connector"] == 768 * 16 * 960
    assert 85e6 < parts["vision"] < 88e6
    assert 95e6 < parts["lm_expert"] < 101e6
    assert 390e6 < total < 410e6
    assert 440e6 < total + 49_280 * 960 < 460e6
    # shapes flow through all three stages at full size (meta tensors: no memory, no compute)
    b = 1
    with torch.device("meta"):
        images = torch.empty(b, 3, 3, 512, 512)
        image_tokens = model.embed_images(images)
        tokens = torch.zeros(b, 48, dtype=torch.long)
        keys, values, mask = model.prefill(
            image_tokens, tokens, torch.ones(b, 48, dtype=torch.bool), torch.empty(b, 32)
        )
        velocity = model.denoise_step(torch.empty(b, 50, 32), torch.empty(b), keys, values, mask)
    assert image_tokens.shape == (b, 192, 960)
    assert keys.shape == (16, b, 5, 241, 64)
    assert velocity.shape == (b, 50, 32)


def test_strict_load_refuses_a_different_config(tiny_config, tmp_path):
    SmolVLAPolicy(tiny_config()).save_pretrained(tmp_path / "ckpt")
    cfg = tiny_config(num_vlm_layers=2)
    cfg.to_json(tmp_path / "ckpt" / "config.json")
    with pytest.raises(ValueError, match="unexpected in file"):
        SmolVLAPolicy.from_pretrained(tmp_path / "ckpt")


def test_preset_sizes():
    assert 6e6 < _count(SmolVLAPolicy(smolvla_cpu_preset())) < 8e6
    assert _count(SmolVLAPolicy(smolvla_tiny_preset())) < 0.5e6


OLD_CHECKPOINT = Path(__file__).resolve().parents[1] / "fixtures" / "smolvla_tiny_v0"


def test_checkpoint_written_before_the_feature_contract_still_runs_the_same():
    """A folder the code before PolicyFeature wrote (config.json without features; golden chunk
    from its runner with reset(11)) opens and predicts the same actions."""
    ckpt = Checkpoint.open(OLD_CHECKPOINT)
    assert ckpt.policy_type == "smolvla" and ckpt.train_info.fps is None
    assert ckpt.config.input_features["observation.state"] == PolicyFeature(FeatureType.STATE, (6,))
    runner = TorchPolicyRunner.from_checkpoint(ckpt)
    runner.reset(11)
    golden = load_numpy(str(OLD_CHECKPOINT / "golden_io.safetensors"))
    expected = golden.pop("output.chunk")
    np.testing.assert_allclose(runner.predict_chunk(golden), expected, rtol=0, atol=1e-5)
