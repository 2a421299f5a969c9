"""Build or load a policy by its type name ("act", "smolvla") without importing every policy.

Each policy class offers the same small surface, which is all training, evaluation and export
rely on:
    forward(batch) -> (loss, info)              normalised batch, training loss
    predict_action_chunk(batch) -> (B, C, A)    normalised observation -> normalised chunk
    get_optim_params() -> param groups
    save_pretrained(folder, stats) / from_pretrained(folder)
and its config has `input_features`, `output_features`, `chunk_size`, `normalization_modes()`.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

POLICY_TYPES = {
    "act": ("edgevla.policies.act.model", "ACTPolicy"),
    "smolvla": ("edgevla.policies.smolvla.model", "SmolVLAPolicy"),
}


def policy_class(policy_type: str):
    if policy_type not in POLICY_TYPES:
        raise ValueError(
            f"unknown policy type {policy_type!r}; choose one of {sorted(POLICY_TYPES)}"
        )
    module, name = POLICY_TYPES[policy_type]
    return getattr(importlib.import_module(module), name)


def checkpoint_policy_type(folder: str | Path) -> str:
    """The "type" field of a checkpoint's config.json."""
    path = Path(folder) / "config.json"
    try:
        cfg = json.loads(path.read_text())
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{folder} is not a policy checkpoint: no config.json") from e
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e})") from e
    policy_type = cfg.get("type")
    if policy_type not in POLICY_TYPES:
        raise ValueError(
            f"{path}: policy type {policy_type!r} is not one of {sorted(POLICY_TYPES)}"
        )
    return policy_type


def load_policy(folder: str | Path, expected_type: str | None = None) -> Any:
    """Load a checkpoint folder strictly (eval mode); `expected_type` refuses other policy types."""
    policy_type = checkpoint_policy_type(folder)
    if expected_type is not None and policy_type != expected_type:
        raise ValueError(
            f"{folder} holds a {policy_type!r} checkpoint, but a {expected_type!r} policy was asked for"
        )
    return policy_class(policy_type).from_pretrained(folder)
