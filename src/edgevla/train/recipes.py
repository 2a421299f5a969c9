"""Per-policy training recipes: the policy config for a dataset, the optimizer and the schedule.

Recipes are functions returning typed objects; the loop in loop.py is the same for every policy.
What differs per policy lives with the policy (edgevla.policies.<type>.config): its presets
(`preset(name, ...)`), `with_lr`, `make_optimizer` and `load_pretrained_parts`; this module
only reads the dataset's robot description and dispatches by `--policy`.
"""

from __future__ import annotations

import json
from typing import Any

import torch

from edgevla.dataset.lerobot.reader import LeRobotDatasetReader
from edgevla.errors import BadInput
from edgevla.policies.common.schedules import warmup_cosine
from edgevla.policies.factory import ROBOT_FIELDS, preset_config
from edgevla.train.config import TrainConfig

__all__ = ["load_pretrained_parts", "make_optimizer", "policy_config", "warmup_cosine"]


def _parse_overrides(overrides: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in overrides:
        key, value = item.split("=", 1)
        if key.strip() in ROBOT_FIELDS:
            raise BadInput(f"{key.strip()} comes from the dataset (its cameras, image size, state "
                           "and action sizes), not from an override", field="--overrides")  # fmt: skip
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def policy_config(cfg: TrainConfig, reader: LeRobotDatasetReader):
    """The policy config for this dataset (cameras, image size, state/action sizes) and preset."""
    pc = preset_config(
        cfg.policy,
        cfg.preset,
        cameras=tuple(reader.cameras),
        image_hw=reader.image_hw,
        state_dim=int(reader.info["features"]["observation.state"]["shape"][0]),
        action_dim=int(reader.info["features"]["action"]["shape"][0]),
        **_parse_overrides(cfg.overrides),
    )
    return pc if cfg.lr is None else pc.with_lr(cfg.lr)


def load_pretrained_parts(policy: torch.nn.Module, policy_cfg) -> str | None:
    """Before the first step of a fresh run: load the weights the config names for part of the
    model (LeRobot's fields: ACT `pretrained_backbone_weights`, SmolVLA `load_vlm_weights` +
    `vlm_model_name`; nothing is downloaded, so they must be local files). Returns the file
    loaded, or None."""
    return policy_cfg.load_pretrained_parts(policy)


def make_optimizer(policy: torch.nn.Module, policy_cfg, cfg: TrainConfig):
    """(optimizer, lr scheduler) as the policy's reference recipe prescribes."""
    return policy_cfg.make_optimizer(policy.get_optim_params(), cfg.steps)
