"""Shared fixtures for the SmolVLA tests: a tiny config and batches that fit it."""

from __future__ import annotations

import pytest
import torch
from edgevla_runtime.features import image_key

from edgevla.policies.smolvla.config import SmolVLAConfig


def _tiny_config(**overrides) -> SmolVLAConfig:
    """~0.4 M parameters, 4 VLM/expert layers (two self-attention, two cross-attention).

    State and action sizes (5 and 3) differ from the robot's 6 to catch hard-coded dimensions;
    init_std is large so that mismatches between code paths show up in the outputs.
    """
    values = dict(
        image_keys=(image_key("top"), image_key("gripper")),
        state_dim=5,
        action_dim=3,
        max_state_dim=8,
        max_action_dim=6,
        resize_imgs_with_padding=(32, 16),  # (width, height)
        vision_hidden_size=32,
        vision_intermediate_size=64,
        vision_num_layers=1,
        vision_num_heads=2,
        vision_patch_size=4,
        pixel_shuffle_factor=2,
        text_hidden_size=64,
        text_intermediate_size=128,
        text_num_heads=4,
        text_num_kv_heads=2,
        text_head_dim=16,
        vocab_size=257,
        num_vlm_layers=4,
        chunk_size=8,
        n_action_steps=8,
        tokenizer_max_length=16,
        freeze_vision_encoder=False,
        train_expert_only=False,
        init_std=0.2,
    )
    values.update(overrides)
    return SmolVLAConfig(**values)


def _make_batch(config: SmolVLAConfig, batch_size: int = 3, seed: int = 0) -> dict:
    """Random normalised inputs; tasks of different lengths so the language padding varies."""
    g = torch.Generator().manual_seed(seed)
    height, width = config.image_size_hw
    batch: dict = {
        key: torch.rand(batch_size, 3, height, width, generator=g) for key in config.image_keys
    }
    batch["observation.state"] = torch.randn(batch_size, config.state_dim, generator=g)
    batch["action"] = torch.randn(batch_size, config.chunk_size, config.action_dim, generator=g)
    tasks = ["put tea in mug", "pick", "go"]  # 15, 5 and 3 tokens of 16
    batch["task"] = [tasks[i % len(tasks)] for i in range(batch_size)]
    return batch


@pytest.fixture
def tiny_config():
    """Factory: tiny_config(**overrides) -> SmolVLAConfig."""
    return _tiny_config


@pytest.fixture
def make_batch():
    """Factory: make_batch(config, batch_size=3, seed=0) -> dict of tensors and task strings."""
    return _make_batch
