"""SmolVLAConfig: LeRobot's SmolVLA fields plus the sizes LeRobot reads from the VLM's config.

Field names follow LeRobot's SmolVLAConfig where the concept is the same, so a config.json crosses
over with little renaming. LeRobot takes the network sizes from the Hugging Face SmolVLM2 config;
we have no transformers dependency and want CPU-sized variants, so the sizes are fields here
(vision_*, text_*, vocab_size, pixel_shuffle_factor). The defaults are the real SmolVLA
(SmolVLM2-500M truncated to 16 text layers); smolvla_cpu_preset() shrinks it to train on a CPU.

Derived sizes (expert width, image tokens, prefix length, which expert layers self-attend) are
properties, so the model, the exporter and the tests all read one definition. The surface shared
with the other policies (policies/common/contract.py): input_features / output_features
(feature key -> PolicyFeature, derived from image_keys / image_hw / state_dim / action_dim, so
config.json files written before keep loading), normalization_mapping / normalization_modes(),
action_delta_indices, to_json_dict() with "type" first; and what differs per policy: presets
(`preset(name, ...)`), the optimizer recipe, starting weights and the pre-training vision part.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from edgevla_runtime.features import (
    ACTION_DIM,
    ACTION_KEY,
    CAMERA_NAMES,
    DEFAULT_IMAGE_HW,
    STATE_DIM,
    STATE_KEY,
    image_key,
)

from edgevla.jsonio import read_json
from edgevla.policies.common.contract import (
    FeatureType,
    FeatureViews,
    NormalizationMode,
    PolicyFeature,
    VisionPart,
)
from edgevla.policies.smolvla.tokenizer import ByteTokenizer

if TYPE_CHECKING:
    import torch

POLICY_TYPE = "smolvla"
VISION_FILE = "vision.safetensors"  # `edgevla pretrain`'s vision encoder, our parameter names


def expert_intermediate_size(hidden: int, ffn_multiplier: int = 4, multiple_of: int = 256) -> int:
    """SmolVLA's rule for the expert MLP width: LLaMA's 2/3 * 4 * hidden rounded up to 256."""
    size = int(ffn_multiplier * int(2 * hidden / 3))
    return multiple_of * ((size + multiple_of - 1) // multiple_of)


@dataclass(frozen=True)
class SmolVLAConfig(FeatureViews):
    # Input / output structure.
    n_obs_steps: int = 1
    chunk_size: int = 50
    n_action_steps: int = 50
    state_dim: int = STATE_DIM  # real (unpadded) sizes; LeRobot reads them from its features
    action_dim: int = ACTION_DIM
    max_state_dim: int = 32  # shorter state / action vectors are zero padded to these
    max_action_dim: int = 32
    image_keys: tuple[str, ...] = tuple(image_key(c) for c in CAMERA_NAMES)
    image_hw: tuple[int, int] = DEFAULT_IMAGE_HW  # camera frames as recorded (H, W); any size works
    # (width, height), LeRobot's argument order: images are resized keeping their aspect ratio,
    # then padded on the left and top. It is also the size the vision encoder is built for.
    resize_imgs_with_padding: tuple[int, int] = (512, 512)

    # Tokenizer: byte-level, padded to tokenizer_max_length (static shapes for export).
    tokenizer_max_length: int = 48

    # Decoding.
    num_steps: int = 10

    # Starting weights (LeRobot's names). LeRobot downloads the VLM named by vlm_model_name when
    # load_vlm_weights is true; edgevla never downloads: there it must be a local safetensors
    # file whose tensors carry our parameter names (e.g. `edgevla pretrain --policy smolvla`'s
    # vision.safetensors), loaded by `edgevla train` before the first step.
    vlm_model_name: str = "HuggingFaceTB/SmolVLM2-500M-Video-Instruct"
    load_vlm_weights: bool = False

    # Fine-tuning settings.
    freeze_vision_encoder: bool = True
    train_expert_only: bool = True
    train_state_proj: bool = True

    # Training presets.
    optimizer_lr: float = 1e-4
    optimizer_betas: tuple[float, float] = (0.9, 0.95)
    optimizer_eps: float = 1e-8
    optimizer_weight_decay: float = 1e-10
    optimizer_grad_clip_norm: float = 10.0
    scheduler_warmup_steps: int = 1_000
    scheduler_decay_steps: int = 30_000
    scheduler_decay_lr: float = 2.5e-6

    # Architecture switches (LeRobot names).
    attention_mode: str = "cross_attn"
    prefix_length: int = -1  # pad the prefix to this many tokens; -1 keeps its natural length
    num_expert_layers: int = -1  # <= 0: as many as num_vlm_layers
    num_vlm_layers: int = 16  # keep the VLM's first num_vlm_layers text layers
    self_attn_every_n_layers: int = 2  # see expert_layer_is_self_attn
    expert_width_multiplier: float = 0.75
    min_period: float = 4e-3  # time embedding periods
    max_period: float = 4.0

    # Vision encoder (SigLIP-style ViT) and pixel-shuffle connector (HF's "scale_factor").
    vision_hidden_size: int = 768
    vision_intermediate_size: int = 3072
    vision_num_layers: int = 12
    vision_num_heads: int = 12
    vision_patch_size: int = 16
    vision_layer_norm_eps: float = 1e-6
    vision_hidden_act: str = "gelu_pytorch_tanh"  # SigLIP's; "gelu" (exact) is ~5x faster on CPU
    pixel_shuffle_factor: int = 4

    # Language model (LLaMA-style, SmolLM2 sizes).
    text_hidden_size: int = 960
    text_intermediate_size: int = 2560
    text_num_heads: int = 15
    text_num_kv_heads: int = 5
    text_head_dim: int = 64
    vocab_size: int = 49_280
    rms_norm_eps: float = 1e-5
    rope_max_wavelength: float = 10_000.0  # SmolVLA's apply_rope default

    init_std: float = 0.02

    def __post_init__(self) -> None:
        def fail(msg: str) -> NoReturn:
            raise ValueError(f"SmolVLAConfig: {msg}")

        if self.n_action_steps > self.chunk_size:
            fail(
                f"n_action_steps ({self.n_action_steps}) > chunk_size ({self.chunk_size}); a chunk "
                "is the most actions one inference can give, lower n_action_steps"
            )
        if self.chunk_size < 1 or self.n_action_steps < 1 or self.num_steps < 1:
            fail("chunk_size, n_action_steps and num_steps must all be >= 1")
        if self.n_obs_steps != 1:
            fail(f"n_obs_steps={self.n_obs_steps}: SmolVLA conditions on one observation, set 1")
        if not 0 < self.state_dim <= self.max_state_dim:
            fail(f"state_dim {self.state_dim} must be in 1..max_state_dim ({self.max_state_dim})")
        if not 0 < self.action_dim <= self.max_action_dim:
            fail(
                f"action_dim {self.action_dim} must be in 1..max_action_dim ({self.max_action_dim})"
            )
        if not self.image_keys:
            fail("image_keys is empty; SmolVLA needs at least one camera")
        if len(self.image_hw) != 2 or min(self.image_hw) < 1:
            fail(f"image_hw must be (height, width) of the camera frames, got {self.image_hw}")
        if len(self.resize_imgs_with_padding) != 2:
            fail(
                f"resize_imgs_with_padding must be (width, height), got {self.resize_imgs_with_padding}"
            )
        step = self.vision_patch_size * self.pixel_shuffle_factor
        width, height = self.resize_imgs_with_padding
        if width % step or height % step:
            fail(
                f"image size (width={width}, height={height}) must be divisible by vision_patch_size"
                f" * pixel_shuffle_factor = {step}; e.g. use ({width // step * step or step}, "
                f"{height // step * step or step})"
            )
        if self.vision_hidden_act not in ("gelu_pytorch_tanh", "gelu"):
            fail(f"vision_hidden_act {self.vision_hidden_act!r}: use 'gelu_pytorch_tanh' or 'gelu'")
        if self.attention_mode != "cross_attn":
            fail(f"attention_mode {self.attention_mode!r} is not implemented; use 'cross_attn'")
        if self.vision_hidden_size % self.vision_num_heads:
            fail(
                f"vision_hidden_size {self.vision_hidden_size} not divisible by {self.vision_num_heads} heads"
            )
        if self.text_num_heads % self.text_num_kv_heads:
            fail(
                f"text_num_heads ({self.text_num_heads}) must be a multiple of text_num_kv_heads "
                f"({self.text_num_kv_heads}) for grouped-query attention"
            )
        if self.text_head_dim % 2:
            fail(f"text_head_dim {self.text_head_dim} must be even for RoPE")
        if self.expert_hidden_size < 2 or self.expert_hidden_size % 2:
            fail(
                f"expert width int({self.text_hidden_size} * {self.expert_width_multiplier}) = "
                f"{self.expert_hidden_size} must be even (it is the time embedding size)"
            )
        if self.num_vlm_layers < 1:
            fail(f"num_vlm_layers must be >= 1, got {self.num_vlm_layers}")
        if self.num_expert_layers > 0 and self.num_vlm_layers % self.num_expert_layers:
            fail(
                f"num_vlm_layers ({self.num_vlm_layers}) must be a multiple of num_expert_layers "
                f"({self.num_expert_layers}); use -1 for one expert layer per VLM layer"
            )
        if self.vocab_size < ByteTokenizer.vocab_size:
            fail(
                f"vocab_size {self.vocab_size} < {ByteTokenizer.vocab_size} needed by the byte tokenizer"
            )
        if self.tokenizer_max_length < 2:
            fail(f"tokenizer_max_length must be >= 2, got {self.tokenizer_max_length}")
        if self.prefix_length != -1 and self.prefix_length < self.natural_prefix_length:
            fail(
                f"prefix_length {self.prefix_length} is shorter than the prefix "
                f"({self.natural_prefix_length} tokens); use -1 or a value >= it"
            )
        if self.min_period <= 0 or self.max_period <= self.min_period:
            fail(f"need 0 < min_period < max_period, got {self.min_period}, {self.max_period}")
        if self.optimizer_lr <= 0 or len(self.optimizer_betas) != 2:
            fail("optimizer_lr must be > 0 and optimizer_betas a pair")

    # ---- derived sizes ----
    @property
    def expert_hidden_size(self) -> int:
        return int(self.text_hidden_size * self.expert_width_multiplier)

    @property
    def expert_intermediate_size(self) -> int:
        return expert_intermediate_size(self.expert_hidden_size)

    @property
    def expert_num_layers(self) -> int:
        return self.num_expert_layers if self.num_expert_layers > 0 else self.num_vlm_layers

    @property
    def expert_vlm_layer_index(self) -> tuple[int, ...]:
        """VLM layer whose keys/values each expert layer reads (every m-th when the expert is shallower)."""
        m = self.num_vlm_layers // self.expert_num_layers
        return tuple(j * m for j in range(self.expert_num_layers))

    @property
    def expert_layer_is_self_attn(self) -> tuple[bool, ...]:
        """LeRobot's pattern: VLM layer i is a self-attention layer when i % n == 0 (n > 0).

        With n = 2 that is layers 0, 2, 4, ...: the action tokens attend to [prefix K/V as the VLM
        made them; their own K/V] (causal among actions). The other layers are pure cross-attention:
        the action tokens attend only to the prefix K/V, passed through that expert layer's own
        k_proj/v_proj. n <= 0 makes every layer cross-attention.
        """
        n = self.self_attn_every_n_layers
        return tuple(n > 0 and i % n == 0 for i in self.expert_vlm_layer_index)

    @property
    def image_size_hw(self) -> tuple[int, int]:
        width, height = self.resize_imgs_with_padding
        return height, width

    @property
    def patch_grid(self) -> tuple[int, int]:
        height, width = self.image_size_hw
        return height // self.vision_patch_size, width // self.vision_patch_size

    @property
    def tokens_per_image(self) -> int:
        gh, gw = self.patch_grid
        return (gh // self.pixel_shuffle_factor) * (gw // self.pixel_shuffle_factor)

    @property
    def num_image_tokens(self) -> int:
        return self.tokens_per_image * len(self.image_keys)

    @property
    def natural_prefix_length(self) -> int:
        return self.num_image_tokens + self.tokenizer_max_length + 1  # + one state token

    @property
    def resolved_prefix_length(self) -> int:
        return max(self.prefix_length, self.natural_prefix_length)

    # ---- the surface shared with the other policies ----
    @property
    def input_features(self) -> dict[str, PolicyFeature]:
        """Feature key -> what the policy reads from a (normalised) batch: cameras, then state."""
        images = {
            k: PolicyFeature(FeatureType.VISUAL, (3, *self.image_hw)) for k in self.image_keys
        }
        return {**images, STATE_KEY: PolicyFeature(FeatureType.STATE, (self.state_dim,))}

    @property
    def output_features(self) -> dict[str, PolicyFeature]:
        return {ACTION_KEY: PolicyFeature(FeatureType.ACTION, (self.action_dim,))}

    @property
    def normalization_mapping(self) -> dict[str, NormalizationMode]:
        """LeRobot's SmolVLA mapping: images as they are (in [0, 1]), state and action MEAN_STD."""
        return {
            "VISUAL": NormalizationMode.IDENTITY,
            "STATE": NormalizationMode.MEAN_STD,
            "ACTION": NormalizationMode.MEAN_STD,
        }

    @property
    def action_delta_indices(self) -> list[int]:
        """Frame offsets of the action targets a training sample needs (0..chunk_size-1)."""
        return list(range(self.chunk_size))

    # ---- what differs per policy: recipe, starting weights, pre-training, LeRobot reach ----
    def with_lr(self, lr: float) -> SmolVLAConfig:
        return dataclasses.replace(self, optimizer_lr=lr)

    def make_optimizer(
        self, param_groups: list[dict], total_steps: int
    ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
        """LeRobot's SmolVLA recipe: AdamW with betas (0.9, 0.95), linear warm-up then cosine
        decay to scheduler_decay_lr; warm-up is capped at a tenth of a short run and the decay
        stretched to the run when it is longer than scheduler_decay_steps."""
        import torch

        from edgevla.policies.common.schedules import warmup_cosine

        opt = torch.optim.AdamW(
            param_groups,
            lr=self.optimizer_lr,
            betas=tuple(self.optimizer_betas),
            eps=self.optimizer_eps,
            weight_decay=self.optimizer_weight_decay,
        )
        warmup = min(self.scheduler_warmup_steps, max(1, total_steps // 10))
        decay = max(self.scheduler_decay_steps, total_steps)
        floor = self.scheduler_decay_lr / self.optimizer_lr
        return opt, torch.optim.lr_scheduler.LambdaLR(
            opt, lambda step: warmup_cosine(step, warmup, decay, floor)
        )

    def load_pretrained_parts(self, policy: torch.nn.Module) -> str | None:
        """With load_vlm_weights, load vlm_model_name, a local safetensors file under our
        parameter names (`edgevla pretrain --policy smolvla`'s vision.safetensors) in which every
        tensor must fit. Returns the file loaded, or None."""
        if not self.load_vlm_weights:
            return None
        from edgevla.errors import BadInput

        path = Path(self.vlm_model_name)
        if not path.is_file():
            raise BadInput(
                f"load_vlm_weights is set but vlm_model_name={str(path)!r} is not a file; edgevla "
                "never downloads weights: give a local safetensors file with our parameter names, "
                "e.g. runs/vision/vision.safetensors from `edgevla pretrain --policy smolvla`",
                field="vlm_model_name",
            )
        report = policy.load_weights(path)
        if report.shape_mismatch or report.unexpected or not report.loaded:
            raise BadInput(f"does not fit this SmolVLA config: {report.summary()}", path=path)
        return str(path)

    def vision_part(self) -> VisionPart:
        """The vision encoder + connector `edgevla pretrain` trains, read through a Linear."""
        from torch import nn

        from edgevla.policies.smolvla.model import SmolVLAPolicy
        from edgevla.policies.smolvla.vision import VisionTokens

        full = SmolVLAPolicy(self)
        return VisionPart(
            VisionTokens(full.vision, full.connector),
            nn.Linear(self.text_hidden_size, 32),
            VISION_FILE,
            "--overrides load_vlm_weights=true vlm_model_name={path}",
        )

    def lerobot_incompatibilities(self) -> list[str]:
        """Why LeRobot's SmolVLAPolicy could not build this config ([] when it can)."""
        return [
            "edgevla's SmolVLA config.json names the network sizes itself (vision_*, text_*, "
            "image_keys, ...) where LeRobot reads them from the SmolVLM2 model on the Hub, so "
            "LeRobot cannot load this checkpoint (edgevla can)"
        ]

    # ---- serialisation ----
    def to_json_dict(self) -> dict[str, Any]:
        """config.json content: "type" first (what the policy factory dispatches on)."""
        return {"type": POLICY_TYPE, **dataclasses.asdict(self)}

    @classmethod
    def from_json_dict(cls, data: dict[str, Any]) -> SmolVLAConfig:
        data = dict(data)
        policy_type = data.pop("type", POLICY_TYPE)
        if policy_type != POLICY_TYPE:
            raise ValueError(f"config describes a {policy_type!r} policy, not {POLICY_TYPE!r}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"unknown SmolVLAConfig fields {unknown}; known fields: {sorted(known)}"
            )
        # JSON has no tuples; restore them for the tuple-typed fields.
        fixed = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**fixed)

    def to_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_json_dict(), indent=4))
        return path

    @classmethod
    def from_json(cls, path: str | Path) -> SmolVLAConfig:
        return cls.from_json_dict(read_json(path, "SmolVLA config"))


def _robot_fields(
    cameras: Iterable[str], image_hw: tuple[int, int], state_dim: int, action_dim: int
) -> dict[str, Any]:
    return {
        "image_keys": tuple(image_key(c) for c in cameras),
        "image_hw": tuple(image_hw),
        "state_dim": state_dim,
        "action_dim": action_dim,
    }


def smolvla_base_preset(
    cameras: Iterable[str] = CAMERA_NAMES,
    image_hw: tuple[int, int] = DEFAULT_IMAGE_HW,
    state_dim: int = STATE_DIM,
    action_dim: int = ACTION_DIM,
    **overrides: Any,
) -> SmolVLAConfig:
    """The real SmolVLA sizes: SigLIP-B/16 at 512x512 (64 tokens per image after a 4x pixel
    shuffle), SmolLM2 width 960 with 15 heads / 5 KV heads cut to 16 layers, a 0.75x expert.
    ~403 M parameters (no LM head), ~100 M of them trainable with the default freezing."""
    return SmolVLAConfig(**_robot_fields(cameras, image_hw, state_dim, action_dim), **overrides)


def smolvla_cpu_preset(
    cameras: Iterable[str] = CAMERA_NAMES,
    image_hw: tuple[int, int] = DEFAULT_IMAGE_HW,
    state_dim: int = STATE_DIM,
    action_dim: int = ACTION_DIM,
    **overrides: Any,
) -> SmolVLAConfig:
    """Same architecture at a size that trains from scratch on a CPU (~7.2 M parameters).

    Frames are resized with padding to 96x128 (the simulator's size: a no-op there). 16-pixel
    patches give a 6x8 grid, and a 2x pixel shuffle folds it to 3x4 = 12 tokens per camera (the
    size of ACT's ResNet-18 feature map at this resolution); 8-pixel patches (48 tokens per
    camera) cost ~3x more per training step. Exact GELU instead of SigLIP's tanh form (5x faster
    on CPU). LM width 256 (4 heads of 64, 2 KV heads), 4 layers; expert width 192. Nothing is
    pretrained at this size, so nothing is frozen.
    """
    values: dict[str, Any] = {
        "resize_imgs_with_padding": (128, 96),
        "vision_hidden_size": 192,
        "vision_intermediate_size": 768,
        "vision_num_layers": 4,
        "vision_num_heads": 3,
        "vision_patch_size": 16,
        "vision_hidden_act": "gelu",
        "pixel_shuffle_factor": 2,
        "text_hidden_size": 256,
        "text_intermediate_size": 768,
        "text_num_heads": 4,
        "text_num_kv_heads": 2,
        "text_head_dim": 64,
        "vocab_size": ByteTokenizer.vocab_size,
        "num_vlm_layers": 4,
        "freeze_vision_encoder": False,
        "train_expert_only": False,
    }
    values.update(overrides)
    return SmolVLAConfig(**_robot_fields(cameras, image_hw, state_dim, action_dim), **values)


def smolvla_tiny_preset(
    cameras: Iterable[str] = CAMERA_NAMES,
    image_hw: tuple[int, int] = DEFAULT_IMAGE_HW,
    state_dim: int = STATE_DIM,
    action_dim: int = ACTION_DIM,
    **overrides: Any,
) -> SmolVLAConfig:
    """A ~0.2 M-parameter SmolVLA for smoke tests of training, export and control loops: one
    vision layer, two LM/expert layers (one self-attention, one cross-attention), chunk 10."""
    values: dict[str, Any] = {
        "chunk_size": 10,
        "n_action_steps": 10,
        "vision_hidden_size": 32,
        "vision_intermediate_size": 64,
        "vision_num_layers": 1,
        "vision_num_heads": 2,
        "text_hidden_size": 64,
        "text_intermediate_size": 128,
        "text_num_heads": 4,
        "text_num_kv_heads": 2,
        "text_head_dim": 16,
        "num_vlm_layers": 2,
        **overrides,
    }
    return smolvla_cpu_preset(cameras, image_hw, state_dim, action_dim, **values)


PRESETS = {
    "default": smolvla_base_preset,
    "edge": smolvla_cpu_preset,
    "tiny": smolvla_tiny_preset,
}
