"""Build or load a policy by its type name ("act", "smolvla") without importing every policy.

Each policy package offers the same small surface, which is all training, evaluation and export
rely on. Its model class:
    forward(batch) -> (loss, info)              normalised batch, training loss
    predict_action_chunk(batch) -> (B, C, A)    normalised observation -> normalised chunk
    get_optim_params() -> param groups
    save_pretrained(folder, stats) / from_pretrained(folder)
Its config module: a PRESETS table of (cameras, image_hw, state_dim, action_dim, **overrides) -> config and a
config class (FeatureViews: input_features, output_features, normalization_modes(), chunk_size)
with from_json_dict / to_json_dict, with_lr(lr), make_optimizer(param_groups, total_steps),
load_pretrained_parts(policy), vision_part() and lerobot_incompatibilities().
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import Any

from edgevla.errors import BadInput

# type -> (config module, config class, model module, model class); imported on first use.
POLICY_TYPES = {
    "act": ("edgevla.policies.act.config", "ACTConfig", "edgevla.policies.act.model", "ACTPolicy"),
    "smolvla": (
        "edgevla.policies.smolvla.config",
        "SmolVLAConfig",
        "edgevla.policies.smolvla.model",
        "SmolVLAPolicy",
    ),
}


def _entry(policy_type: str) -> tuple[str, str, str, str]:
    if policy_type not in POLICY_TYPES:
        raise BadInput(
            f"unknown policy type {policy_type!r}; choose one of {sorted(POLICY_TYPES)}",
            field="policy",
        )
    return POLICY_TYPES[policy_type]


def policy_class(policy_type: str) -> Any:
    _, _, module, name = _entry(policy_type)
    return getattr(importlib.import_module(module), name)


def config_module(policy_type: str) -> ModuleType:
    """The policy's config module (its PRESETS table and config class)."""
    return importlib.import_module(_entry(policy_type)[0])


def config_class(policy_type: str) -> Any:
    module, name, _, _ = _entry(policy_type)
    return getattr(importlib.import_module(module), name)


def checkpoint_policy_type(folder: str | Path) -> str:
    """The "type" field of a checkpoint's config.json."""
    from edgevla.policies.checkpoint import Checkpoint

    return Checkpoint.open(folder).policy_type


def load_policy(folder: str | Path, expected_type: str | None = None) -> Any:
    """Load a checkpoint folder strictly (eval mode); `expected_type` refuses other policy types."""
    from edgevla.policies.checkpoint import Checkpoint

    return Checkpoint.open(folder, expected_type).load_policy()


def preset_config(policy_type: str, name: str, **kwargs: Any) -> Any:
    """The `edgevla train --preset NAME` config of a policy for a robot: kwargs are cameras,
    image_hw, state_dim, action_dim and any config field to override."""
    presets = config_module(policy_type).PRESETS
    if name not in presets:
        raise ValueError(f"unknown {policy_type} preset {name!r}; choose one of {sorted(presets)}")
    return presets[name](**kwargs)
