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

import dataclasses
import difflib
import importlib
import json
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


ROBOT_FIELDS = ("cameras", "image_hw", "state_dim", "action_dim")


def preset_config(policy_type: str, name: str, **kwargs: Any) -> Any:
    """The `edgevla train --preset NAME` config of a policy for a robot: kwargs are cameras,
    image_hw, state_dim, action_dim and any config field to override (`--overrides`).

    An override is checked before the config is built: a field the config does not have is
    refused with the nearest names, a text where the preset holds a number or a flag (JSON
    values: 50, 1e-4, true) is refused, and whatever the config's own checks refuse is said as
    the override's fault, all as BadInput on --overrides rather than a TypeError from inside."""
    presets = config_module(policy_type).PRESETS
    if name not in presets:
        raise ValueError(f"unknown {policy_type} preset {name!r}; choose one of {sorted(presets)}")
    robot = {k: v for k, v in kwargs.items() if k in ROBOT_FIELDS}
    overrides = {k: v for k, v in kwargs.items() if k not in ROBOT_FIELDS}
    if not overrides:
        return presets[name](**robot)
    fields = {f.name for f in dataclasses.fields(config_class(policy_type))}
    for key in overrides:
        if key not in fields:
            near = difflib.get_close_matches(key, sorted(fields), n=3)
            hint = f"did you mean {', '.join(near)}?" if near else "see a checkpoint's config.json"
            raise BadInput(
                f"{policy_type} has no config field {key!r}; {hint}", field="--overrides"
            )
    base = presets[name](**robot)
    for key, value in overrides.items():
        default = getattr(base, key)
        # JSON true is a Python int too: a flag and a number are told apart first
        if default is not None and (
            isinstance(default, bool) != isinstance(value, bool)
            or (isinstance(default, (int, float)) and not isinstance(value, (int, float)))
        ):
            raise BadInput(f"{key}={value!r} must be {_a(type(default).__name__)} (the preset has "
                           f"{default!r}); values are JSON, e.g. {key}={json.dumps(default)}",
                           field="--overrides")  # fmt: skip
    try:
        return presets[name](**robot, **overrides)
    except (TypeError, ValueError) as e:
        given = " ".join(f"{k}={json.dumps(v)}" for k, v in overrides.items())
        raise BadInput(f"{given} refused by the {policy_type} config: {e}",
                       field="--overrides") from e  # fmt: skip


def _a(noun: str) -> str:
    return ("an " if noun[0] in "aeiou" else "a ") + noun
