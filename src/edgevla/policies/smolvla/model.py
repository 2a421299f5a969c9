"""SmolVLAPolicy: a SmolVLA-architecture flow-matching vision-language-action model.

Three stages, each a method with explicit tensors in and out so it can be exported on its own:

    images (B, N, 3, H, W) in [0, 1]
        │ embed_images                 vision encoder + pixel-shuffle connector
        ▼
    image_tokens (B, N*T, D) ─┐
    lang_tokens, lang_mask ───┤ prefill   LM over [images | task | state], once per chunk
    state (B, max_state_dim) ─┘
        ▼
    prefix_keys, prefix_values (L_e, B, Hkv, P, Dh), prefix_mask (B, P)
        │ denoise_step(x_t, t, ...)    action expert, num_steps times (Euler, t: 1 -> 0)
        ▼
    velocity (B, chunk_size, max_action_dim)

sample_actions composes them; forward() is the training loss, computed with the uncached joint
pass (as SmolVLA trains) which a test pins equal to prefill + denoise_step. Inputs are already
normalised (the Normalizer lives outside the model); images are taken in [0, 1] and mapped to
[-1, 1] inside the vision stage. State and actions are zero padded to max_state_dim /
max_action_dim; predict_action_chunk cuts the chunk back to the real action_dim.

Prefix attention (LeRobot's): image and task tokens attend to each other bidirectionally; the
state token is its own block, so it sees them but they do not see it. Padded task tokens are
masked everywhere. Action tokens see the valid prefix and, causally, the earlier actions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from edgevla_runtime.features import ACTION_KEY, STATE_KEY
from torch import Tensor, nn

from edgevla.policies import checkpoint
from edgevla.policies.common.flow_matching import (
    euler_sample,
    flow_matching_loss,
    noisy_actions_and_target,
    sample_beta_time,
    sinusoidal_time_embedding,
)
from edgevla.policies.common.masks import block_attention_mask
from edgevla.policies.common.normalize import Stats
from edgevla.policies.smolvla.config import POLICY_TYPE, SmolVLAConfig
from edgevla.policies.smolvla.expert import ActionExpert
from edgevla.policies.smolvla.language import RMSNorm, TextModel
from edgevla.policies.smolvla.tokenizer import ByteTokenizer
from edgevla.policies.smolvla.vision import PixelShuffleConnector, VisionTransformer
from edgevla.policies.smolvla.weights import WeightLoadReport, load_matching_weights

TASK_KEY = "task"
LANG_TOKENS_KEY = "observation.language.tokens"  # LeRobot's keys for pre-tokenized tasks
LANG_MASK_KEY = "observation.language.attention_mask"
ACTION_IS_PAD_KEY = "action_is_pad"


def pad_last_dim(x: Tensor, size: int) -> Tensor:
    """Zero pad the last dimension to `size` (SmolVLA's max_state_dim / max_action_dim)."""
    if x.shape[-1] > size:
        raise ValueError(f"last dimension {x.shape[-1]} exceeds the padded size {size}")
    return F.pad(x, (0, size - x.shape[-1]))


class SmolVLAPolicy(nn.Module):
    def __init__(self, config: SmolVLAConfig):
        super().__init__()
        self.config = config
        d, w = config.text_hidden_size, config.expert_hidden_size
        self.vision = VisionTransformer(config)
        self.connector = PixelShuffleConnector(config)
        self.text_model = TextModel(config)
        self.lm_expert = ActionExpert(config)
        self.state_proj = nn.Linear(config.max_state_dim, d)
        self.action_in_proj = nn.Linear(config.max_action_dim, w)
        self.action_out_proj = nn.Linear(w, config.max_action_dim)
        self.action_time_mlp_in = nn.Linear(2 * w, w)
        self.action_time_mlp_out = nn.Linear(w, w)
        self.tokenizer = ByteTokenizer(config.tokenizer_max_length)

        # Block-start flags of the prefix: images and task tokens form block 0, the state token
        # starts block 1; padding up to prefix_length (if any) is masked anyway.
        flags = torch.zeros(config.resolved_prefix_length, dtype=torch.long)
        flags[config.natural_prefix_length - 1] = 1
        self.register_buffer("prefix_block_start", flags, persistent=False)  # (P,)

        self.apply(self._init_weights)
        self.set_requires_grad()

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.init_std
        if isinstance(module, nn.Linear | nn.Conv2d | nn.Embedding):
            nn.init.normal_(module.weight, std=std)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, RMSNorm):
            nn.init.ones_(module.weight)

    def set_requires_grad(self) -> None:
        """Apply freeze_vision_encoder / train_expert_only / train_state_proj (LeRobot semantics).

        Parameters whose output nothing reads (the LM's final norm; the last LM layer's query,
        output projection and MLP, since only its keys and values are used) are always frozen.
        """
        cfg = self.config
        vlm = (self.vision, self.connector, self.text_model)
        for module in vlm:
            module.requires_grad_(not cfg.train_expert_only)
        if cfg.freeze_vision_encoder:
            self.vision.requires_grad_(False)
        self.state_proj.requires_grad_(cfg.train_state_proj)
        last = self.text_model.layers[-1]
        unused = (self.text_model.norm, last.self_attn.q_proj, last.self_attn.o_proj)
        for module in (*unused, last.post_attention_layernorm, last.mlp):
            module.requires_grad_(False)

    # ------------------------------------------------------------------ the three stages
    def embed_images(self, images: Tensor) -> Tensor:
        """Stage 1: images (B, N, 3, H, W) in [0, 1] -> image tokens (B, N*T, D)."""
        b, n = images.shape[:2]
        features = self.vision(images.flatten(0, 1))  # (B*N, gh*gw, Dv)
        tokens = self.connector(features)  # (B*N, T, D)
        return tokens.reshape(b, n * tokens.shape[1], tokens.shape[2])  # (B, N*T, D)

    def prefill(
        self, image_tokens: Tensor, lang_tokens: Tensor, lang_mask: Tensor, state: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Stage 2: the prefix's keys/values for every expert layer, computed once per chunk.

        image_tokens (B, N*T, D); lang_tokens (B, L) int64; lang_mask (B, L) bool;
        state (B, max_state_dim). Returns prefix_keys, prefix_values (L_e, B, Hkv, P, Dh) and
        prefix_mask (B, P) bool (False at padding).
        """
        prefix, pad = self._embed_prefix(image_tokens, lang_tokens, lang_mask, state)
        mask = block_attention_mask(pad, self.prefix_block_start)  # (B, P, P)
        positions = torch.cumsum(pad.long(), dim=1) - 1  # (B, P)
        vlm_kv = self.text_model.prefix_kv(prefix, positions, mask)
        keys, values = self.lm_expert.project_prefix_kv(vlm_kv)
        return keys, values, pad

    def denoise_step(
        self,
        x_t: Tensor,
        t: Tensor,
        prefix_keys: Tensor,
        prefix_values: Tensor,
        prefix_mask: Tensor,
    ) -> Tensor:
        """Stage 3: velocity (B, C, max_action_dim) at noisy actions x_t (B, C, A) and time t (B,)."""
        suffix = self._embed_suffix(x_t, t)  # (B, C, W)
        hidden = self.lm_expert(suffix, prefix_keys, prefix_values, prefix_mask)  # (B, C, W)
        return self.action_out_proj(hidden)

    # ------------------------------------------------------------------ embeddings
    def _embed_prefix(
        self, image_tokens: Tensor, lang_tokens: Tensor, lang_mask: Tensor, state: Tensor
    ) -> tuple[Tensor, Tensor]:
        """[image tokens | task tokens | state token] (B, P, D) and its pad mask (B, P).

        Image and token embeddings are scaled by sqrt(D) as SmolVLA does (Gemma/PaliGemma
        habit); the projected state is not.
        """
        b, d = image_tokens.shape[0], self.config.text_hidden_size
        scale = math.sqrt(d)
        lang = self.text_model.embed_tokens(lang_tokens) * scale  # (B, L, D)
        state_token = self.state_proj(state)[:, None]  # (B, 1, D)
        prefix = torch.cat([image_tokens * scale, lang, state_token], dim=1)  # (B, P0, D)
        ones = torch.ones(b, image_tokens.shape[1], dtype=torch.bool, device=lang_mask.device)
        pad = torch.cat([ones, lang_mask.bool(), ones[:, :1]], dim=1)  # (B, P0)
        extra = self.config.resolved_prefix_length - prefix.shape[1]
        if extra > 0:  # static: fixed by the config
            prefix = F.pad(prefix, (0, 0, 0, extra))  # (B, P, D)
            pad = F.pad(pad, (0, extra), value=False)  # (B, P)
        return prefix, pad

    def _embed_suffix(self, x_t: Tensor, t: Tensor) -> Tensor:
        """Fuse noisy actions (B, C, A) and time (B,) into action tokens (B, C, W) by an MLP."""
        cfg = self.config
        actions = self.action_in_proj(x_t)  # (B, C, W)
        t_emb = sinusoidal_time_embedding(t, cfg.expert_hidden_size, cfg.min_period, cfg.max_period)
        t_emb = t_emb.to(actions.dtype)[:, None].expand_as(actions)  # (B, C, W)
        fused = self.action_time_mlp_in(torch.cat([actions, t_emb], dim=-1))  # (B, C, W)
        return self.action_time_mlp_out(F.silu(fused))

    def velocity_joint(
        self,
        image_tokens: Tensor,
        lang_tokens: Tensor,
        lang_mask: Tensor,
        state: Tensor,
        x_t: Tensor,
        t: Tensor,
    ) -> Tensor:
        """The velocity without a cache: prefix and actions in one joint pass (training path)."""
        prefix, pad = self._embed_prefix(image_tokens, lang_tokens, lang_mask, state)
        suffix = self._embed_suffix(x_t, t)  # (B, C, W)
        b, c = suffix.shape[:2]
        pad_all = torch.cat([pad, pad.new_ones(b, c)], dim=1)  # (B, P+C)
        blocks = torch.cat([self.prefix_block_start, self.prefix_block_start.new_ones(c)])
        hidden = self.lm_expert.forward_joint(self.text_model, prefix, suffix, pad_all, blocks)
        return self.action_out_proj(hidden)

    # ------------------------------------------------------------------ batch handling
    def prepare_inputs(self, batch: Mapping[str, Any]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The stage inputs from a normalised batch: images (B, N, 3, H, W) in config.image_keys
        order, task tokens and mask (B, L), zero-padded state (B, max_state_dim).

        The task comes as "task" (a string or one per sample; tokenized here) or pre-tokenized as
        "observation.language.tokens" / "observation.language.attention_mask" (LeRobot's keys).
        Images or state with a time axis (n_obs_steps) use their last step.
        """
        cfg = self.config
        missing = [k for k in (*cfg.image_keys, STATE_KEY) if k not in batch]
        if missing:
            raise KeyError(f"batch lacks {missing}; SmolVLAConfig.image_keys are {cfg.image_keys}")
        frames = [batch[k][:, -1] if batch[k].ndim == 5 else batch[k] for k in cfg.image_keys]
        images = torch.stack(frames, dim=1)  # (B, N, 3, H, W)
        state = batch[STATE_KEY]
        state = state[:, -1] if state.ndim == 3 else state  # (B, state_dim)
        state = pad_last_dim(state, cfg.max_state_dim)  # (B, max_state_dim)
        if LANG_TOKENS_KEY in batch:
            tokens, mask = batch[LANG_TOKENS_KEY], batch[LANG_MASK_KEY].bool()
        elif TASK_KEY in batch:
            tasks = batch[TASK_KEY]
            tasks = [tasks] * state.shape[0] if isinstance(tasks, str) else list(tasks)
            tokens, mask = self.tokenizer(tasks, device=state.device)
        else:
            raise KeyError(f"batch needs {TASK_KEY!r} (strings) or {LANG_TOKENS_KEY!r} (token ids)")
        return images, tokens, mask, state

    def forward(
        self, batch: Mapping[str, Any], noise: Tensor | None = None, time: Tensor | None = None
    ) -> tuple[Tensor, dict[str, float]]:
        """Flow-matching loss on a batch with normalised "action" (B, chunk_size, action_dim).

        noise (B, C, max_action_dim) and time (B,) are drawn when not given. The loss is the
        velocity MSE over the real action dimensions (not the zero padding), with steps flagged
        in "action_is_pad" zeroed (LeRobot's convention; see flow_matching_loss).
        """
        cfg = self.config
        images, tokens, mask, state = self.prepare_inputs(batch)
        actions = pad_last_dim(batch[ACTION_KEY], cfg.max_action_dim)  # (B, C, A)
        if actions.shape[1] != cfg.chunk_size:
            raise ValueError(
                f"action chunk has {actions.shape[1]} steps, chunk_size is {cfg.chunk_size}"
            )
        if noise is None:
            noise = torch.randn_like(actions)
        if time is None:
            time = sample_beta_time(actions.shape[0], device=actions.device)
        x_t, target = noisy_actions_and_target(actions, noise, time)
        velocity = self.velocity_joint(self.embed_images(images), tokens, mask, state, x_t, time)
        a = cfg.action_dim
        loss = flow_matching_loss(velocity[..., :a], target[..., :a], batch.get(ACTION_IS_PAD_KEY))
        return loss, {"loss": loss.item()}

    def sample_actions(
        self, batch: Mapping[str, Any], noise: Tensor | None = None, num_steps: int | None = None
    ) -> Tensor:
        """Padded action chunk (B, chunk_size, max_action_dim): one prefill, then Euler steps."""
        cfg = self.config
        images, tokens, mask, state = self.prepare_inputs(batch)
        keys, values, prefix_mask = self.prefill(self.embed_images(images), tokens, mask, state)
        if noise is None:
            shape = (state.shape[0], cfg.chunk_size, cfg.max_action_dim)
            noise = torch.randn(shape, device=state.device, dtype=state.dtype)

        def velocity(x: Tensor, t: Tensor) -> Tensor:
            return self.denoise_step(x, t, keys, values, prefix_mask)

        return euler_sample(velocity, noise, num_steps or cfg.num_steps)

    @torch.no_grad()
    def predict_action_chunk(self, batch: Mapping[str, Any], noise: Tensor | None = None) -> Tensor:
        """Normalised action chunk (B, chunk_size, action_dim), padding dimensions removed."""
        return self.sample_actions(batch, noise)[..., : self.config.action_dim]

    # ------------------------------------------------------------------ training / persistence
    def get_optim_params(self) -> list[dict]:
        """AdamW parameter groups: one group of the trainable parameters (as LeRobot)."""
        return [{"params": [p for p in self.parameters() if p.requires_grad]}]

    def save_pretrained(self, folder: str | Path, stats: Stats | None = None) -> Path:
        """Write config.json + model.safetensors (+ normalisation stats) in LeRobot's layout."""
        return checkpoint.save_checkpoint(folder, self.state_dict(), self.config, stats)

    @classmethod
    def from_pretrained(
        cls, folder: str | Path, device: str | torch.device = "cpu"
    ) -> SmolVLAPolicy:
        """Load a folder written by save_pretrained or by LeRobot, strictly (every tensor present,
        every shape equal); returns it in eval mode. Statistics and train_info come with
        `checkpoint.Checkpoint.open(folder)`."""
        return checkpoint.Checkpoint.open(folder, POLICY_TYPE).load_policy(device)

    def load_weights(
        self, path: str | Path, key_map: str | Mapping[str, str] | None = None
    ) -> WeightLoadReport:
        """Load every tensor of a safetensors file whose (renamed) name and shape match ours.

        key_map "lerobot" renames a LeRobot SmolVLA checkpoint's names to ours; a mapping renames
        by prefix. The report lists what was loaded, skipped for shape, missing and unexpected.
        """
        return load_matching_weights(self, path, key_map)
