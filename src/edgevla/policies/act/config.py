"""ACT configuration: LeRobot's ACTConfig field names and defaults, read and written as config.json.

A checkpoint folder written by LeRobot (ACTPolicy.save_pretrained) carries a config.json with
the policy type, the input/output features and every ACTConfig field. `ACTConfig.from_json`
reads it, `to_json` writes the same layout back, so a folder crosses over in both directions.

Deviations from LeRobot, on purpose:
- `pretrained_backbone_weights` defaults to None (LeRobot: "ResNet18_Weights.IMAGENET1K_V1").
  We never download weights; a LeRobot config naming ImageNet weights still loads (the weights
  then come from model.safetensors). `edgevla train` reads a value that is a file path as a
  torchvision-layout state dict for the trunk (ImageNet weights saved elsewhere, or
  `edgevla pretrain`'s backbone.safetensors) and loads it before the first step.
- The default features are edgevla's data contract (6-D state and action, cameras top, gripper
  and left at features.DEFAULT_IMAGE_HW); LeRobot fills them from the dataset instead.
- LeRobot's base-policy keys we do not use (device, use_amp, push_to_hub, repo_id, ...) are kept
  in `extra` so that a round trip through from_json/to_json reproduces the file.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgevla_runtime.features import (
    ACTION_DIM,
    ACTION_KEY,
    CAMERA_NAMES,
    DEFAULT_IMAGE_HW,
    IMAGE_KEY_PREFIX,
    STATE_DIM,
    STATE_KEY,
    image_key,
)

from edgevla.jsonio import read_json
from edgevla.policies.act.resnet import parse_backbone
from edgevla.policies.common.contract import (
    FeatureType,
    FeatureViews,
    NormalizationMode,
    PolicyFeature,
    VisionPart,
)

if TYPE_CHECKING:
    import torch

__all__ = [
    "ACTConfig",
    "FeatureType",
    "NormalizationMode",
    "PolicyFeature",
    "act_edge_preset",
    "default_features",
]

POLICY_TYPE = "act"
ENV_STATE_KEY = "observation.environment_state"
SUPPORTED_BACKBONES = (
    "resnet18",
    "resnet34",
)  # what torchvision and LeRobot know; see resnet.parse_backbone
BACKBONE_FILE = "backbone.safetensors"  # `edgevla pretrain`'s trunk, torchvision layout
SUPPORTED_ACTIVATIONS = ("relu", "gelu")

# Keys of LeRobot's PreTrainedConfig that ACT does not use; written with these defaults unless a
# loaded config.json supplied other values (kept in ACTConfig.extra).
LEROBOT_BASE_DEFAULTS: dict[str, Any] = {
    "device": "cpu",
    "use_amp": False,
    "use_peft": False,
    "push_to_hub": False,
    "repo_id": None,
    "private": None,
    "tags": None,
    "license": None,
    "pretrained_path": None,
    "pretrained_revision": None,
}


def default_features(
    cameras: Iterable[str] = CAMERA_NAMES,
    image_hw: tuple[int, int] = DEFAULT_IMAGE_HW,
    state_dim: int = STATE_DIM,
    action_dim: int = ACTION_DIM,
) -> tuple[dict[str, PolicyFeature], dict[str, PolicyFeature]]:
    """(input_features, output_features) for a robot with `cameras` and a joint state."""
    h, w = image_hw
    inputs = {STATE_KEY: PolicyFeature(FeatureType.STATE, (state_dim,))}
    for cam in cameras:
        inputs[image_key(cam)] = PolicyFeature(FeatureType.VISUAL, (3, h, w))
    outputs = {ACTION_KEY: PolicyFeature(FeatureType.ACTION, (action_dim,))}
    return inputs, outputs


def _default_inputs() -> dict[str, PolicyFeature]:
    return default_features()[0]


def _default_outputs() -> dict[str, PolicyFeature]:
    return default_features()[1]


def _default_normalization_mapping() -> dict[str, NormalizationMode]:
    return {
        "VISUAL": NormalizationMode.MEAN_STD,
        "STATE": NormalizationMode.MEAN_STD,
        "ACTION": NormalizationMode.MEAN_STD,
    }


@dataclass(frozen=True)
class ACTConfig(FeatureViews):
    """Action Chunking Transformer settings (Zhao et al. 2023), field for field LeRobot's ACTConfig.

    Field meanings follow LeRobot: `chunk_size` actions are predicted per call, of which a
    control loop may run `n_action_steps`; `dim_model`, `n_heads`, `dim_feedforward` size every
    transformer layer; `use_vae` adds the VAE encoder (trained with `kl_weight` * KL) whose
    latent is zero at inference. Change a value with `dataclasses.replace(config, field=value)`.
    """

    # Input / output structure.
    n_obs_steps: int = 1
    input_features: dict[str, PolicyFeature] = field(default_factory=_default_inputs)
    output_features: dict[str, PolicyFeature] = field(default_factory=_default_outputs)
    chunk_size: int = 100
    n_action_steps: int = 100
    normalization_mapping: dict[str, NormalizationMode] = field(
        default_factory=_default_normalization_mapping
    )
    # Vision backbone.
    vision_backbone: str = "resnet18"
    pretrained_backbone_weights: str | None = None
    replace_final_stride_with_dilation: bool = False
    # Transformer.
    pre_norm: bool = False
    dim_model: int = 512
    n_heads: int = 8
    dim_feedforward: int = 3200
    feedforward_activation: str = "relu"
    n_encoder_layers: int = 4
    n_decoder_layers: int = 1
    # VAE.
    use_vae: bool = True
    latent_dim: int = 32
    n_vae_encoder_layers: int = 4
    # Inference (ensembling itself lives in the control loop).
    temporal_ensemble_coeff: float | None = None
    # Training.
    dropout: float = 0.1
    kl_weight: float = 10.0
    optimizer_lr: float = 1e-5
    optimizer_weight_decay: float = 1e-4
    optimizer_lr_backbone: float = 1e-5
    # LeRobot base-config keys we carry but do not use (see LEROBOT_BASE_DEFAULTS).
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Accept JSON-ish values (lists, strings) and store the typed form.
        try:
            mapping = {k: NormalizationMode(v) for k, v in self.normalization_mapping.items()}
        except ValueError as e:
            raise ValueError(
                f"normalization_mapping {self.normalization_mapping}: {e}; "
                f"use one of {[m.value for m in NormalizationMode]}"
            ) from e
        object.__setattr__(self, "normalization_mapping", mapping)
        object.__setattr__(self, "input_features", dict(self.input_features))
        object.__setattr__(self, "output_features", dict(self.output_features))
        self._validate_sizes()
        self._validate_features()

    def _validate_sizes(self) -> None:
        if self.n_obs_steps != 1:
            raise ValueError(
                f"n_obs_steps={self.n_obs_steps}: ACT uses only the current observation; set n_obs_steps=1"
            )
        for name in ("chunk_size", "n_action_steps", "dim_model", "n_heads", "dim_feedforward"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        for name in ("n_encoder_layers", "n_decoder_layers", "latent_dim", "n_vae_encoder_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.n_action_steps > self.chunk_size:
            raise ValueError(
                f"n_action_steps={self.n_action_steps} exceeds chunk_size={self.chunk_size}: a call "
                "predicts chunk_size actions; lower n_action_steps or raise chunk_size"
            )
        if self.temporal_ensemble_coeff is not None and self.n_action_steps != 1:
            raise ValueError(
                "temporal ensembling queries the policy every step: set n_action_steps=1 or "
                "temporal_ensemble_coeff=None"
            )
        try:
            parse_backbone(self.vision_backbone)
        except ValueError as e:
            raise ValueError(f"vision_backbone={self.vision_backbone!r}: {e}") from None
        if self.replace_final_stride_with_dilation:
            raise ValueError(
                f"{self.vision_backbone} uses BasicBlocks, which do not support dilation "
                "(torchvision raises too); set replace_final_stride_with_dilation=False"
            )
        if self.dim_model % self.n_heads != 0:
            raise ValueError(
                f"dim_model={self.dim_model} is not divisible by n_heads={self.n_heads}; "
                "pick dim_model as a multiple of n_heads"
            )
        if self.dim_model % 4 != 0:
            raise ValueError(
                f"dim_model={self.dim_model} must be a multiple of 4: the 2D sine embedding of the "
                "camera features splits it into x/y halves of interleaved sin/cos pairs"
            )
        if self.feedforward_activation not in SUPPORTED_ACTIVATIONS:
            raise ValueError(
                f"feedforward_activation={self.feedforward_activation!r} is not supported; "
                f"use one of {SUPPORTED_ACTIVATIONS}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.kl_weight < 0:
            raise ValueError(f"kl_weight must be >= 0, got {self.kl_weight}")

    def _validate_features(self) -> None:
        if set(self.output_features) != {ACTION_KEY}:
            raise ValueError(
                f"ACT predicts exactly one output feature {ACTION_KEY!r}; got {sorted(self.output_features)}"
            )
        if (
            self.action_feature.type is not FeatureType.ACTION
            or len(self.action_feature.shape) != 1
        ):
            raise ValueError(
                f"{ACTION_KEY!r} must be an ACTION feature of shape (D,), got {self.action_feature}"
            )
        if not self.image_features and self.env_state_feature is None:
            raise ValueError(
                f"ACT needs at least one camera ('{IMAGE_KEY_PREFIX}<cam>', type VISUAL) or "
                f"{ENV_STATE_KEY!r} among input_features; got {sorted(self.input_features)}"
            )
        shapes = {f.shape for f in self.image_features.values()}
        if len(shapes) > 1:
            raise ValueError(
                f"all cameras must share one shape, got {shapes}; resize them to a common (3, H, W)"
            )
        for key, feat in self.image_features.items():
            if len(feat.shape) != 3 or feat.shape[0] != 3:
                raise ValueError(
                    f"image feature {key!r} must have shape (3, H, W), got {feat.shape}"
                )
        for key, feat in self.input_features.items():
            if feat.type in (FeatureType.STATE, FeatureType.ENV) and len(feat.shape) != 1:
                raise ValueError(f"{key!r} must have shape (D,), got {feat.shape}")
        unknown = sorted(set(self.normalization_mapping) - {t.value for t in FeatureType})
        if unknown:
            raise ValueError(
                f"normalization_mapping keys {unknown} are not feature types; "
                f"use some of {[t.value for t in FeatureType]}"
            )

    # Feature views beyond FeatureViews' (all/image/state/action features).
    @property
    def env_state_feature(self) -> PolicyFeature | None:
        return next((f for f in self.input_features.values() if f.type is FeatureType.ENV), None)

    @property
    def env_state_key(self) -> str | None:
        return next((k for k, f in self.input_features.items() if f.type is FeatureType.ENV), None)

    @property
    def action_delta_indices(self) -> list[int]:
        """Frame offsets of the action targets a training sample needs (0..chunk_size-1)."""
        return list(range(self.chunk_size))

    # LeRobot config.json.
    def to_json_dict(self) -> dict[str, Any]:
        """The dict LeRobot writes as config.json (same keys, same order)."""
        out: dict[str, Any] = {
            "type": POLICY_TYPE,
            "n_obs_steps": self.n_obs_steps,
            "input_features": {k: f.to_json() for k, f in self.input_features.items()},
            "output_features": {k: f.to_json() for k, f in self.output_features.items()},
        }
        out.update({**LEROBOT_BASE_DEFAULTS, **self.extra})
        for f in dataclasses.fields(self):
            if f.name in out or f.name == "extra":
                continue
            value = getattr(self, f.name)
            if f.name == "normalization_mapping":
                value = {k: v.value for k, v in value.items()}
            out[f.name] = value
        return out

    def to_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_json_dict(), indent=4))
        return path

    @classmethod
    def from_json_dict(cls, obj: Mapping[str, Any]) -> ACTConfig:
        """Build from a LeRobot config.json dict; rejects other policy types.

        Unknown keys are kept in `extra` (they round-trip); keys that are not LeRobot base keys
        trigger a warning because they are most likely typos.
        """
        policy_type = obj.get("type", POLICY_TYPE)
        if policy_type != POLICY_TYPE:
            raise ValueError(
                f"config is for policy type {policy_type!r}, not {POLICY_TYPE!r}; load it with the "
                f"{policy_type} policy's loader"
            )
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        kwargs: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, value in obj.items():
            if key == "type":
                continue
            if key in ("input_features", "output_features"):
                kwargs[key] = {k: PolicyFeature.from_json(v) for k, v in value.items()}
            elif key in names:
                kwargs[key] = value
            elif key not in LEROBOT_BASE_DEFAULTS or LEROBOT_BASE_DEFAULTS[key] != value:
                extra[key] = value  # base keys at their defaults need no keeping
        unexpected = sorted(set(extra) - set(LEROBOT_BASE_DEFAULTS))
        if unexpected:
            warnings.warn(
                f"ACT config keys {unexpected} are unknown to edgevla and LeRobot's base config; "
                "they are kept but ignored (check for typos)",
                stacklevel=2,
            )
        return cls(**kwargs, extra=extra)

    @classmethod
    def from_json(cls, path: str | Path) -> ACTConfig:
        return cls.from_json_dict(
            read_json(path, "ACT config", fix="expected a LeRobot config.json")
        )

    # What differs per policy: training recipe, starting weights, pre-training, LeRobot reach.
    def with_lr(self, lr: float) -> ACTConfig:
        """The same config trained at `lr` (the backbone too)."""
        return dataclasses.replace(self, optimizer_lr=lr, optimizer_lr_backbone=lr)

    def make_optimizer(
        self, param_groups: list[dict], total_steps: int
    ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
        """LeRobot's ACT recipe: AdamW (lr / backbone lr from the config, weight decay) at a
        constant rate; `total_steps` does not matter here."""
        import torch

        opt = torch.optim.AdamW(
            param_groups, lr=self.optimizer_lr, weight_decay=self.optimizer_weight_decay
        )
        return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)

    def load_pretrained_parts(self, policy: torch.nn.Module) -> str | None:
        """Load `pretrained_backbone_weights` (a local torchvision-layout ResNet state dict:
        ImageNet weights saved elsewhere, or `edgevla pretrain`'s backbone.safetensors) into the
        policy's trunk. Returns the file loaded, or None when the field is unset."""
        name = self.pretrained_backbone_weights
        if not name:
            return None
        from edgevla.errors import BadInput
        from edgevla.policies.act.resnet import load_torchvision_weights

        if not Path(name).is_file():
            raise BadInput(
                f"pretrained_backbone_weights={name!r} is not a file; edgevla never downloads "
                "weights: give the path of a torchvision-layout ResNet state dict, e.g. "
                "runs/backbone/backbone.safetensors from `edgevla pretrain`",
                field="pretrained_backbone_weights",
            )
        load_torchvision_weights(policy.model.backbone, name)
        return str(name)

    def vision_part(self) -> VisionPart:
        """The trunk `edgevla pretrain` trains (batch norm trainable), read through a 1x1 conv."""
        from torch import nn

        from edgevla.policies.act.resnet import ResNet, with_trainable_batch_norm

        trunk = with_trainable_batch_norm(ResNet(self.vision_backbone))
        return VisionPart(
            trunk,
            nn.Conv2d(trunk.out_channels, 32, kernel_size=1),
            BACKBONE_FILE,
            "--overrides pretrained_backbone_weights={path}",
        )

    def lerobot_incompatibilities(self) -> list[str]:
        """Why LeRobot's ACTPolicy could not build this config ([] when it can)."""
        if self.vision_backbone not in SUPPORTED_BACKBONES:
            return [
                f"vision_backbone={self.vision_backbone!r} is an edgevla trunk; LeRobot's ACT "
                f"builds torchvision's {' / '.join(SUPPORTED_BACKBONES)} only, so LeRobot "
                "cannot load this checkpoint (edgevla can; train with --preset default for a "
                "LeRobot-loadable one)"
            ]
        return []


def act_edge_preset(
    cameras: Iterable[str] = CAMERA_NAMES,
    image_hw: tuple[int, int] = DEFAULT_IMAGE_HW,
    state_dim: int = STATE_DIM,
    action_dim: int = ACTION_DIM,
    chunk_size: int = 100,
    **overrides: Any,
) -> ACTConfig:
    """ACT sized for training and running on a 2-core CPU; still ACT (ResNet trunk with frozen
    batch norm, VAE, chunking, the same transformer layout).

    What shrinks and why: the transformer dominates the default's cost at small images (the VAE
    encoder alone runs over chunk_size + 2 tokens), so width goes 512 -> 256, the feed-forward
    3200 -> 1024, and encoder / VAE-encoder depth 4 -> 2. The trunk is ResNet-18 at half width
    ("resnet18-w32": stage widths 32/64/128/256, torchvision's parameter names, a quarter of the
    FLOPs) on 96x128 images: with no ImageNet weights to fine-tune here, a trunk trained from
    scratch gains nothing from the full width, and at full width it is ~75% of a training step.

    Measured with `edgevla bench train-step --full-res` (torch 2.13 CPU, 1 thread,
    train mode, batch 8, state/action 6, three cameras; median of 3 steps, 1 at 480x640):
                                         params   forward+backward   with AdamW step
        LeRobot default, 480x640 cams    51.6M        59.5 s             59.6 s
        LeRobot default,  96x128 cams    51.6M         3.07 s             3.25 s
        this preset with resnet18,       15.6M         1.24 s             1.29 s
    and the resnet18-w32 trunk takes 0.14 s instead of 0.49 s for 24 images of 96x128 (2
    threads). Training with `edgevla train --preset edge` runs at about 1.7 steps/s on 2 cores.

    Any ACTConfig field can be overridden by keyword, e.g. act_edge_preset(dim_model=128).
    """
    inputs, outputs = default_features(cameras, image_hw, state_dim, action_dim)
    values: dict[str, Any] = {
        "input_features": inputs,
        "output_features": outputs,
        "chunk_size": chunk_size,
        "n_action_steps": chunk_size,
        "vision_backbone": "resnet18-w32",
        "dim_model": 256,
        "n_heads": 8,
        "dim_feedforward": 1024,
        "n_encoder_layers": 2,
        "n_decoder_layers": 1,
        "n_vae_encoder_layers": 2,
        "latent_dim": 32,
    }
    values.update(overrides)
    return ACTConfig(**values)


def act_tiny_preset(
    cameras: Iterable[str] = CAMERA_NAMES,
    image_hw: tuple[int, int] = DEFAULT_IMAGE_HW,
    state_dim: int = STATE_DIM,
    action_dim: int = ACTION_DIM,
    **overrides: Any,
) -> ACTConfig:
    """The edge preset cut to a smoke-test size (width 64, one layer each, chunk 10)."""
    values: dict[str, Any] = {
        "dim_model": 64, "n_heads": 4, "dim_feedforward": 128, "n_encoder_layers": 1,
        "n_decoder_layers": 1, "n_vae_encoder_layers": 1, "latent_dim": 8, "chunk_size": 10,
        "n_action_steps": 10, "optimizer_lr": 3e-4, "optimizer_lr_backbone": 3e-4, **overrides,
    }  # fmt: skip
    return act_edge_preset(cameras, image_hw, state_dim, action_dim, **values)


def act_default_preset(
    cameras: Iterable[str] = CAMERA_NAMES,
    image_hw: tuple[int, int] = DEFAULT_IMAGE_HW,
    state_dim: int = STATE_DIM,
    action_dim: int = ACTION_DIM,
    **overrides: Any,
) -> ACTConfig:
    """LeRobot's ACTConfig defaults for this robot (LeRobot-loadable)."""
    inputs, outputs = default_features(cameras, image_hw, state_dim, action_dim)
    return ACTConfig(input_features=inputs, output_features=outputs, **overrides)


def _edge_for_training(*args: Any, **overrides: Any) -> ACTConfig:
    # From scratch (no ImageNet weights here): a 10x larger learning rate than LeRobot's
    # fine-tuning default, for the backbone too.
    return act_edge_preset(
        *args, **{"optimizer_lr": 1e-4, "optimizer_lr_backbone": 1e-4, **overrides}
    )


PRESETS = {"default": act_default_preset, "edge": _edge_for_training, "tiny": act_tiny_preset}
