"""A policy cut into stages, each a torch module with named tensor inputs and outputs that
exports to one ONNX graph. The cut follows where the compute and the precision needs differ:

ACT, layout "split":
    vision       images (K, 3, H, W) normalised -> image_features (K, D, h, w)
                 the ResNet trunk + 1x1 projection; weights shared by every camera, so the K
                 cameras run as one batch
    transformer  state (1, Ds) normalised, image_features (K, D, h, w)
                 -> actions (1, S, A) normalised: encoder over [latent, state, camera tokens],
                 decoder with one query per chunk step, action head
ACT, layout "single": the same in one graph (policy: state, images -> actions).

Stage tensors are named as `edgevla_runtime.bundle` expects ("state", "images", "actions"), so
the runtime connects stages by name. The modules call the policy's own methods
(`ACT.image_features`, `ACT.decode`): there is one forward pass, exported in pieces.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from edgevla_runtime.bundle import TensorSpec
from torch import nn

LAYOUTS = ("split", "single")


@dataclass
class Stage:
    """One exportable piece: the module, example inputs (in `inputs` order) and the specs."""

    name: str
    module: nn.Module
    example: tuple[torch.Tensor, ...]
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


class ACTVision(nn.Module):
    def __init__(self, act: nn.Module):
        super().__init__()
        self.act = act

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.act.image_features(images)  # (K, D, h, w)


class ACTTransformer(nn.Module):
    def __init__(self, act: nn.Module):
        super().__init__()
        self.act = act

    def forward(self, state: torch.Tensor, image_features: torch.Tensor) -> torch.Tensor:
        z = state.new_zeros(state.shape[0], self.act.config.latent_dim)  # (1, L): inference z = 0
        return self.act.decode(z, state, None, image_features[:, None])  # (1, S, A)


class ACTSingle(nn.Module):
    def __init__(self, act: nn.Module):
        super().__init__()
        self.vision = ACTVision(act)
        self.transformer = ACTTransformer(act)

    def forward(self, state: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        return self.transformer(state, self.vision(images))


def act_stages(policy: nn.Module, layout: str = "split") -> list[Stage]:
    """The stages of an ACTPolicy (eval mode, no environment-state input)."""
    act = policy.model.eval()
    cfg = act.config
    if cfg.env_state_key is not None:
        raise ValueError("export of ACT with an environment-state input is not supported yet")
    if not cfg.image_features or cfg.robot_state_key is None:
        raise ValueError("export needs an ACT with cameras and a robot state input")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    k = len(cfg.image_features)
    _, h, w = cfg.image_features[next(iter(cfg.image_features))].shape
    ds = cfg.robot_state_feature.shape[0]
    a = cfg.action_feature.shape[0]
    state = torch.zeros(1, ds)
    images = torch.zeros(k, 3, h, w)
    with torch.no_grad():
        feats = act.image_features(images)
    state_spec = TensorSpec("state", (1, ds))
    images_spec = TensorSpec("images", (k, 3, h, w))
    feats_spec = TensorSpec("image_features", tuple(feats.shape))
    actions_spec = TensorSpec("actions", (1, cfg.chunk_size, a))
    if layout == "single":
        return [
            Stage(
                "policy",
                ACTSingle(act),
                (state, images),
                (state_spec, images_spec),
                (actions_spec,),
            )
        ]
    return [
        Stage("vision", ACTVision(act), (images,), (images_spec,), (feats_spec,)),
        Stage("transformer", ACTTransformer(act), (state, feats), (state_spec, feats_spec), (actions_spec,)),
    ]  # fmt: skip


def stages_of(policy: nn.Module, policy_type: str, layout: str = "split") -> list[Stage]:
    """The stages of any exportable policy."""
    if policy_type == "act":
        return act_stages(policy, layout)
    raise ValueError(
        f"export of {policy_type!r} policies is not built yet (ACT is); SmolVLA's stages "
        "(vision, prefill, expert step) are next"
    )
