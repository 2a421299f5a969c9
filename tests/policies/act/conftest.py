"""Shared fixtures for the ACT tests: the LeRobot reference folder and a tiny config."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edgevla.policies.act.config import ACTConfig, default_features

# ../shared/reference beside the checkout (CI clones next to shared/); EDGEVLA_REFERENCE overrides.
REFERENCE = Path(
    os.environ.get(
        "EDGEVLA_REFERENCE", Path(__file__).resolve().parents[3].parent / "shared" / "reference"
    )
)
ACT_CHECKPOINT = REFERENCE / "lerobot-act-checkpoint"
DEFAULT_PARAMS_TSV = REFERENCE / "lerobot-act-default-params.tsv"


def _tiny_config(**overrides) -> ACTConfig:
    """A few-thousand-parameter transformer on ResNet-18; dims unlike 6 to catch hard-coding."""
    inputs, outputs = default_features(
        cameras=("top", "gripper"), image_hw=(32, 40), state_dim=3, action_dim=4
    )
    values = {
        "input_features": inputs,
        "output_features": outputs,
        "chunk_size": 8,
        "n_action_steps": 8,
        "dim_model": 32,
        "n_heads": 4,
        "dim_feedforward": 64,
        "n_encoder_layers": 1,
        "n_decoder_layers": 1,
        "n_vae_encoder_layers": 1,
        "latent_dim": 8,
        "dropout": 0.0,
    }
    values.update(overrides)
    return ACTConfig(**values)


@pytest.fixture
def tiny_config():
    """Factory: tiny_config(**overrides) -> ACTConfig."""
    return _tiny_config


@pytest.fixture
def act_checkpoint() -> Path:
    """The folder LeRobot 0.6.1 wrote with ACTPolicy.save_pretrained (+ golden_io.safetensors)."""
    if not ACT_CHECKPOINT.is_dir():
        pytest.skip(f"reference checkpoint not found at {ACT_CHECKPOINT}")
    return ACT_CHECKPOINT


@pytest.fixture
def default_params_tsv() -> Path:
    if not DEFAULT_PARAMS_TSV.is_file():
        pytest.skip(f"reference parameter list not found at {DEFAULT_PARAMS_TSV}")
    return DEFAULT_PARAMS_TSV
