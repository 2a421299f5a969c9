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

SmolVLA-architecture (layout "split" only):
    vision       images (K, 3, H, W) in [0, 1] -> image_tokens (1, K*T, D): ViT + connector
    prefill      image_tokens, state (1, Ds) normalised -> prefix_keys, prefix_values
                 (L_e, 1, Hkv, P, Dh), prefix_mask (1, P): the language model over
                 [images | task | state], once per chunk. The task's tokens are baked into the
                 graph at export (the manifest names the task).
    expert_step  x_t (1, C, A_max), t (1,), prefix_keys, prefix_values, prefix_mask
                 -> velocity (1, C, A_max): one action-expert pass. The Euler loop over
                 num_steps lives in the runtime (numpy), so the expert can run at its own
                 precision and the error after each step can be measured.

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


class SmolVLAVision(nn.Module):
    def __init__(self, policy: nn.Module):
        super().__init__()
        self.policy = policy

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.policy.embed_images(images[None])  # (1, K*T, D)


class SmolVLAPrefill(nn.Module):
    def __init__(self, policy: nn.Module, task: str):
        super().__init__()
        self.policy = policy
        tokens, mask = policy.tokenizer([task])
        self.register_buffer("lang_tokens", tokens)  # (1, L) int64, the task baked in
        self.register_buffer("lang_mask", mask)  # (1, L) bool

    def forward(self, image_tokens: torch.Tensor, state: torch.Tensor):
        from edgevla.policies.smolvla.model import pad_last_dim

        state = pad_last_dim(state, self.policy.config.max_state_dim)  # (1, max_state_dim)
        return self.policy.prefill(image_tokens, self.lang_tokens, self.lang_mask, state)


class SmolVLAExpertStep(nn.Module):
    def __init__(self, policy: nn.Module):
        super().__init__()
        self.policy = policy

    def forward(self, x_t, t, prefix_keys, prefix_values, prefix_mask) -> torch.Tensor:
        return self.policy.denoise_step(x_t, t, prefix_keys, prefix_values, prefix_mask)


def smolvla_stages(policy: nn.Module, task: str, layout: str = "split") -> list[Stage]:
    """The three stages of a SmolVLAPolicy (eval mode)."""
    if layout != "split":
        raise ValueError(
            "SmolVLA exports as stages only (--layout split): the Euler loop runs in the runtime"
        )
    policy = policy.eval()
    cfg = policy.config
    k = len(cfg.image_keys)
    h, w = cfg.image_hw
    ds = cfg.input_features["observation.state"].shape[0]
    vision, prefill, step = (
        SmolVLAVision(policy),
        SmolVLAPrefill(policy, task),
        SmolVLAExpertStep(policy),
    )
    images, state = torch.zeros(k, 3, h, w), torch.zeros(1, ds)
    x_t = torch.zeros(1, cfg.chunk_size, cfg.max_action_dim)
    t = torch.ones(1)
    with torch.no_grad():
        tokens = vision(images)
        keys, values, mask = prefill(tokens, state)
        velocity = step(x_t, t, keys, values, mask)
    spec = lambda name, x: TensorSpec(name, tuple(x.shape), str(x.dtype).removeprefix("torch."))  # noqa: E731
    kv = (spec("prefix_keys", keys), spec("prefix_values", values), spec("prefix_mask", mask))
    return [
        Stage("vision", vision, (images,), (spec("images", images),), (spec("image_tokens", tokens),)),
        Stage("prefill", prefill, (tokens, state), (spec("image_tokens", tokens), spec("state", state)), kv),
        Stage("expert_step", step, (x_t, t, keys, values, mask), (spec("x_t", x_t), spec("t", t), *kv),
              (spec("velocity", velocity),)),
    ]  # fmt: skip


def stages_of(
    policy: nn.Module, policy_type: str, layout: str = "split", task: str = ""
) -> list[Stage]:
    """The stages of any exportable policy."""
    if policy_type == "act":
        return act_stages(policy, layout)
    if policy_type == "smolvla":
        return smolvla_stages(policy, task, layout)
    raise ValueError(f"export of {policy_type!r} policies is not built")
