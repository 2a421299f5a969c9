"""Per-policy training recipes: the policy config for a dataset, the optimizer and the schedule.

Recipes are functions returning typed objects; the loop in loop.py is the same for every policy.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import torch

from edgevla.dataset.reader import LeRobotDatasetReader
from edgevla.train.config import TrainConfig


def _parse_overrides(overrides: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in overrides:
        key, value = item.split("=", 1)
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def policy_config(cfg: TrainConfig, reader: LeRobotDatasetReader):
    """The policy config for this dataset (cameras, image size, state/action sizes) and preset."""
    overrides = _parse_overrides(cfg.overrides)
    cameras = tuple(reader.cameras)
    image_hw = reader.image_hw
    state_dim = int(reader.info["features"]["observation.state"]["shape"][0])
    action_dim = int(reader.info["features"]["action"]["shape"][0])
    if cfg.policy == "act":
        from edgevla.policies.act.config import ACTConfig, act_edge_preset, default_features

        if cfg.preset == "default":
            inputs, outputs = default_features(cameras, image_hw, state_dim, action_dim)
            pc = ACTConfig(input_features=inputs, output_features=outputs, **overrides)
        elif cfg.preset == "edge":
            # From scratch (no ImageNet weights here): a 10x larger learning rate than LeRobot's
            # fine-tuning default, for the backbone too.
            values = {"optimizer_lr": 1e-4, "optimizer_lr_backbone": 1e-4, **overrides}
            pc = act_edge_preset(cameras, image_hw, state_dim, action_dim, **values)
        else:  # tiny
            values = {
                "dim_model": 64, "n_heads": 4, "dim_feedforward": 128, "n_encoder_layers": 1,
                "n_decoder_layers": 1, "n_vae_encoder_layers": 1, "latent_dim": 8, "chunk_size": 10,
                "n_action_steps": 10, "optimizer_lr": 3e-4, "optimizer_lr_backbone": 3e-4, **overrides,
            }  # fmt: skip
            pc = act_edge_preset(cameras, image_hw, state_dim, action_dim, **values)
        if cfg.lr is not None:
            pc = dataclasses.replace(pc, optimizer_lr=cfg.lr, optimizer_lr_backbone=cfg.lr)
        return pc
    if cfg.policy == "smolvla":
        from edgevla.policies.smolvla import config as sv

        preset = {
            "default": sv.smolvla_base_preset,
            "edge": sv.smolvla_cpu_preset,
            "tiny": sv.smolvla_tiny_preset,
        }[cfg.preset]
        pc = preset(
            cameras=cameras,
            image_hw=image_hw,
            state_dim=state_dim,
            action_dim=action_dim,
            **overrides,
        )
        if cfg.lr is not None:
            pc = dataclasses.replace(pc, optimizer_lr=cfg.lr)
        return pc
    raise ValueError(f"unknown policy {cfg.policy!r}")


def load_pretrained_parts(policy: torch.nn.Module, policy_cfg) -> str | None:
    """Before the first step of a fresh run: load the weights the config names for part of the
    model (LeRobot's fields; nothing is downloaded, so they must be local files). Returns the
    file loaded, or None.

    ACT: `pretrained_backbone_weights`, a torchvision-layout ResNet state dict (ImageNet weights
    saved elsewhere, or `edgevla pretrain`'s backbone.safetensors).
    SmolVLA: `load_vlm_weights` with `vlm_model_name` a safetensors file under our parameter
    names (`edgevla pretrain --policy smolvla`'s vision.safetensors); every tensor in it must fit.
    """
    from pathlib import Path

    if getattr(policy_cfg, "load_vlm_weights", False):
        path = Path(policy_cfg.vlm_model_name)
        if not path.is_file():
            raise FileNotFoundError(
                f"load_vlm_weights is set but vlm_model_name={str(path)!r} is not a file; edgevla "
                "never downloads weights: give a local safetensors file with our parameter names, "
                "e.g. runs/vision/vision.safetensors from `edgevla pretrain --policy smolvla`"
            )
        report = policy.load_weights(path)
        if report.shape_mismatch or report.unexpected or not report.loaded:
            raise ValueError(f"{path} does not fit this SmolVLA config: {report.summary()}")
        return str(path)
    name = getattr(policy_cfg, "pretrained_backbone_weights", None)
    if not name:
        return None
    from edgevla.policies.act.resnet import load_torchvision_weights

    if not Path(name).is_file():
        raise FileNotFoundError(
            f"pretrained_backbone_weights={name!r} is not a file; edgevla never downloads "
            "weights: give the path of a torchvision-layout ResNet state dict, e.g. "
            "runs/backbone/backbone.safetensors from `edgevla pretrain`"
        )
    load_torchvision_weights(policy.model.backbone, name)
    return str(name)


def make_optimizer(policy: torch.nn.Module, policy_cfg, cfg: TrainConfig):
    """(optimizer, lr scheduler) as the policy's reference recipe prescribes.

    ACT (LeRobot): AdamW, lr / backbone lr from the config, weight decay, constant rate.
    SmolVLA (LeRobot): AdamW betas (0.9, 0.95), linear warm-up then cosine decay to decay_lr.
    """
    if cfg.policy == "act":
        opt = torch.optim.AdamW(
            policy.get_optim_params(),
            lr=policy_cfg.optimizer_lr,
            weight_decay=policy_cfg.optimizer_weight_decay,
        )
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
        return opt, sched
    opt = torch.optim.AdamW(
        policy.get_optim_params(),
        lr=policy_cfg.optimizer_lr,
        betas=tuple(policy_cfg.optimizer_betas),
        eps=policy_cfg.optimizer_eps,
        weight_decay=policy_cfg.optimizer_weight_decay,
    )
    warmup = min(policy_cfg.scheduler_warmup_steps, max(1, cfg.steps // 10))
    decay = max(policy_cfg.scheduler_decay_steps, cfg.steps)
    floor = policy_cfg.scheduler_decay_lr / policy_cfg.optimizer_lr

    return opt, torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: warmup_cosine(step, warmup, decay, floor)
    )


def warmup_cosine(step: int, warmup: int, total: int, floor: float = 0.0) -> float:
    """Learning-rate factor: linear warm-up over `warmup` steps, then a cosine from 1 down to
    `floor` at step `total` (held there after)."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
