"""Action Chunking Transformer (Zhao et al. 2023) with LeRobot's module tree and parameter names.

The network sees normalised tensors (normalisation lives in policies.common.normalize) and
predicts a chunk of chunk_size actions in one pass:

    training only:  VAE encoder([cls, state, a_0 .. a_{S-1}]) -> cls -> (mu, log sigma^2) -> z
    inference:      z = 0
    encoder tokens: [proj(z), proj(state), (proj(env_state)), cam_1 pixels .., cam_K pixels ..]
                    + pos: learned 1-D for the first tokens, 2-D sine for the ResNet layer4 pixels
    decoder:        chunk_size zero queries + learned query embeddings, cross-attending to the
                    encoder output -> action_head -> (B, chunk_size, action_dim)

Transformers here are sequence-first (S, B, D) like LeRobot's, so nn.MultiheadAttention keeps
its default layout and parameter names (in_proj_weight, out_proj.weight, ...).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from itertools import chain
from pathlib import Path

import torch
import torch.nn.functional as F  # noqa: N812
from edgevla_runtime.features import ACTION_KEY
from torch import Tensor, nn

from edgevla.policies import checkpoint
from edgevla.policies.act.config import POLICY_TYPE, ACTConfig
from edgevla.policies.act.resnet import ResNet
from edgevla.policies.common.attention import module_attention
from edgevla.policies.common.normalize import Stats

ACTION_IS_PAD_KEY = "action_is_pad"
_ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu}


def sinusoidal_1d(num_positions: int, dim: int) -> Tensor:
    """(N, D) fixed sine/cosine table of "Attention is all you need" (sin on even channels).

    Computed in float64 and rounded once, as LeRobot does, so the buffer matches its values.
    """
    pos = torch.arange(num_positions, dtype=torch.float64)[:, None]  # (N, 1)
    exponent = 2 * (torch.arange(dim, dtype=torch.float64) // 2) / dim  # (D,)
    angles = pos / torch.pow(10000.0, exponent)  # (N, D)
    table = torch.empty_like(angles)
    table[:, 0::2] = angles[:, 0::2].sin()
    table[:, 1::2] = angles[:, 1::2].cos()
    return table.float()


def sinusoidal_2d(height: int, width: int, dim: int, device: torch.device | None = None) -> Tensor:
    """(dim, H, W) sine embedding of a feature-map grid: first half encodes y, second half x.

    Positions run 1..H (1..W) scaled to (0, 2pi]; each half interleaves sin/cos pairs with
    geometric frequencies (DETR's PositionEmbeddingSine, as used by ACT).
    """
    half = dim // 2
    inv_freq = 10000.0 ** (2 * (torch.arange(half, dtype=torch.float32, device=device) // 2) / half)

    def axis(n: int) -> Tensor:  # (n, half)
        steps = torch.arange(1, n + 1, dtype=torch.float32, device=device)
        steps = steps / (steps[-1:] + 1e-6) * (2 * math.pi)
        angles = steps[:, None] / inv_freq  # (n, half)
        return torch.stack((angles[:, 0::2].sin(), angles[:, 1::2].cos()), dim=-1).flatten(1)

    pos_y = axis(height)[:, None, :].expand(height, width, half)  # (H, W, half)
    pos_x = axis(width)[None, :, :].expand(height, width, half)  # (H, W, half)
    return torch.cat((pos_y, pos_x), dim=-1).permute(2, 0, 1)  # (dim, H, W)


def _with_pos(x: Tensor, pos: Tensor | None) -> Tensor:
    return x if pos is None else x + pos


class ACTEncoderLayer(nn.Module):
    """Self-attention + feed-forward; post-norm by default (pre_norm=False), as DETR/ACT."""

    def __init__(self, config: ACTConfig):
        super().__init__()
        d, p = config.dim_model, config.dropout
        self.self_attn = nn.MultiheadAttention(d, config.n_heads, dropout=p)
        self.linear1 = nn.Linear(d, config.dim_feedforward)
        self.dropout = nn.Dropout(p)
        self.linear2 = nn.Linear(config.dim_feedforward, d)
        self.norm1 = nn.LayerNorm(d)
        self.norm2 = nn.LayerNorm(d)
        self.dropout1 = nn.Dropout(p)
        self.dropout2 = nn.Dropout(p)
        self.activation = _ACTIVATIONS[config.feedforward_activation]
        self.pre_norm = config.pre_norm

    def forward(
        self, x: Tensor, pos: Tensor | None = None, key_padding_mask: Tensor | None = None
    ) -> Tensor:
        # x: (S, B, D); pos: (S, 1 or B, D) added to queries and keys only; mask: (B, S) True = pad
        h = self.norm1(x) if self.pre_norm else x
        qk = _with_pos(h, pos)
        h = module_attention(self.self_attn, qk, qk, h, key_padding_mask=key_padding_mask)
        x = x + self.dropout1(h)
        if not self.pre_norm:
            x = self.norm1(x)
        h = self.norm2(x) if self.pre_norm else x
        h = self.linear2(self.dropout(self.activation(self.linear1(h))))
        x = x + self.dropout2(h)
        return x if self.pre_norm else self.norm2(x)


class ACTEncoder(nn.Module):
    """A stack of encoder layers; pre-norm stacks end with a LayerNorm (none in post-norm)."""

    def __init__(self, config: ACTConfig, num_layers: int):
        super().__init__()
        self.layers = nn.ModuleList([ACTEncoderLayer(config) for _ in range(num_layers)])
        self.norm = nn.LayerNorm(config.dim_model) if config.pre_norm else nn.Identity()

    def forward(
        self, x: Tensor, pos: Tensor | None = None, key_padding_mask: Tensor | None = None
    ) -> Tensor:
        for layer in self.layers:
            x = layer(x, pos=pos, key_padding_mask=key_padding_mask)
        return self.norm(x)  # (S, B, D)


class ACTDecoderLayer(nn.Module):
    """Self-attention over the action queries, cross-attention to the encoder, feed-forward."""

    def __init__(self, config: ACTConfig):
        super().__init__()
        d, p = config.dim_model, config.dropout
        self.self_attn = nn.MultiheadAttention(d, config.n_heads, dropout=p)
        self.multihead_attn = nn.MultiheadAttention(d, config.n_heads, dropout=p)
        self.linear1 = nn.Linear(d, config.dim_feedforward)
        self.dropout = nn.Dropout(p)
        self.linear2 = nn.Linear(config.dim_feedforward, d)
        self.norm1 = nn.LayerNorm(d)
        self.norm2 = nn.LayerNorm(d)
        self.norm3 = nn.LayerNorm(d)
        self.dropout1 = nn.Dropout(p)
        self.dropout2 = nn.Dropout(p)
        self.dropout3 = nn.Dropout(p)
        self.activation = _ACTIVATIONS[config.feedforward_activation]
        self.pre_norm = config.pre_norm

    def forward(
        self,
        x: Tensor,
        memory: Tensor,
        query_pos: Tensor | None = None,
        memory_pos: Tensor | None = None,
    ) -> Tensor:
        # x: (S, B, D) queries; memory: (N, B, D) encoder output; positions broadcast over B.
        h = self.norm1(x) if self.pre_norm else x
        qk = _with_pos(h, query_pos)
        # stays the module's own export: in the first layer its queries are the zero decoder
        # input plus learned positions, constants the exporter folds away (a fused node it cannot)
        x = x + self.dropout1(self.self_attn(qk, qk, value=h, need_weights=False)[0])
        if not self.pre_norm:
            x = self.norm1(x)
        h = self.norm2(x) if self.pre_norm else x
        h = module_attention(
            self.multihead_attn, _with_pos(h, query_pos), _with_pos(memory, memory_pos), memory
        )
        x = x + self.dropout2(h)
        if not self.pre_norm:
            x = self.norm2(x)
        h = self.norm3(x) if self.pre_norm else x
        x = x + self.dropout3(self.linear2(self.dropout(self.activation(self.linear1(h)))))
        return x if self.pre_norm else self.norm3(x)


class ACTDecoder(nn.Module):
    """A stack of decoder layers, always followed by a LayerNorm (as LeRobot and DETR)."""

    def __init__(self, config: ACTConfig):
        super().__init__()
        self.layers = nn.ModuleList(
            [ACTDecoderLayer(config) for _ in range(config.n_decoder_layers)]
        )
        self.norm = nn.LayerNorm(config.dim_model)

    def forward(
        self,
        x: Tensor,
        memory: Tensor,
        query_pos: Tensor | None = None,
        memory_pos: Tensor | None = None,
    ) -> Tensor:
        for layer in self.layers:
            x = layer(x, memory, query_pos=query_pos, memory_pos=memory_pos)
        return self.norm(x)  # (S, B, D)


class ACT(nn.Module):
    """The network. Attribute names and registration order are LeRobot's (state-dict parity)."""

    def __init__(self, config: ACTConfig):
        super().__init__()
        self.config = config
        d = config.dim_model
        state, env = config.robot_state_feature, config.env_state_feature
        action_dim = config.action_feature.shape[0]

        if config.use_vae:
            self.vae_encoder = ACTEncoder(config, config.n_vae_encoder_layers)
            self.vae_encoder_cls_embed = nn.Embedding(1, d)
            if state is not None:
                self.vae_encoder_robot_state_input_proj = nn.Linear(state.shape[0], d)
            self.vae_encoder_action_input_proj = nn.Linear(action_dim, d)
            self.vae_encoder_latent_output_proj = nn.Linear(d, 2 * config.latent_dim)
            n_vae_tokens = 1 + (state is not None) + config.chunk_size  # [cls, state, actions]
            self.register_buffer("vae_encoder_pos_enc", sinusoidal_1d(n_vae_tokens, d)[None])

        if config.image_features:
            self.backbone = ResNet(config.vision_backbone)
        self.encoder = ACTEncoder(config, config.n_encoder_layers)
        self.decoder = ACTDecoder(config)

        if state is not None:
            self.encoder_robot_state_input_proj = nn.Linear(state.shape[0], d)
        if env is not None:
            self.encoder_env_state_input_proj = nn.Linear(env.shape[0], d)
        self.encoder_latent_input_proj = nn.Linear(config.latent_dim, d)
        if config.image_features:
            self.encoder_img_feat_input_proj = nn.Conv2d(
                self.backbone.out_channels, d, kernel_size=1
            )
        n_1d_tokens = 1 + (state is not None) + (env is not None)  # latent, state, env
        self.encoder_1d_feature_pos_embed = nn.Embedding(n_1d_tokens, d)
        # DETR-style object queries, one per predicted step.
        self.decoder_pos_embed = nn.Embedding(config.chunk_size, d)
        self.action_head = nn.Linear(d, action_dim)

        # Xavier for the transformer matrices, as the original ACT code.
        for p in chain(self.encoder.parameters(), self.decoder.parameters()):
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def _latent(
        self, batch: Mapping[str, Tensor], batch_size: int
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """z from the VAE encoder in training (reparameterised), zeros otherwise -> (z, mu, log_sigma_x2)."""
        cfg = self.config
        if not (cfg.use_vae and self.training):
            z = self.encoder_latent_input_proj.weight.new_zeros(batch_size, cfg.latent_dim)
            return z, None, None
        if ACTION_KEY not in batch:
            raise KeyError(
                f"training with use_vae=True needs the target chunk batch[{ACTION_KEY!r}] "
                f"(B, {cfg.chunk_size}, A); call .eval() for inference"
            )
        actions = batch[ACTION_KEY]  # (B, S, A)
        tokens = [self.vae_encoder_cls_embed.weight.expand(batch_size, 1, -1)]  # (B, 1, D)
        if cfg.robot_state_key is not None:
            tokens.append(
                self.vae_encoder_robot_state_input_proj(batch[cfg.robot_state_key])[:, None]
            )
        tokens.append(self.vae_encoder_action_input_proj(actions))  # (B, S, D)
        x = torch.cat(tokens, dim=1).transpose(0, 1)  # (1 + 1 + S, B, D)
        n_prefix = x.shape[0] - actions.shape[1]
        is_pad = batch.get(ACTION_IS_PAD_KEY)
        if is_pad is None:
            is_pad = torch.zeros(actions.shape[:2], dtype=torch.bool, device=actions.device)
        prefix_pad = torch.zeros(batch_size, n_prefix, dtype=torch.bool, device=actions.device)
        key_padding_mask = torch.cat([prefix_pad, is_pad.bool()], dim=1)  # (B, 1 + 1 + S)
        pos = self.vae_encoder_pos_enc.transpose(0, 1)  # (1 + 1 + S, 1, D)
        cls_out = self.vae_encoder(x, pos=pos, key_padding_mask=key_padding_mask)[0]  # (B, D)
        params = self.vae_encoder_latent_output_proj(cls_out)  # (B, 2L)
        mu, log_sigma_x2 = params[:, : cfg.latent_dim], params[:, cfg.latent_dim :]
        z = mu + (0.5 * log_sigma_x2).exp() * torch.randn_like(mu)
        return z, mu, log_sigma_x2

    def image_features(self, images: Tensor) -> Tensor:
        """Normalised images (N, 3, H, W), any mix of cameras and batch -> (N, D, h, w).

        The trunk's weights are shared by every camera, so this is the vision stage an export
        runs once per camera (or on all cameras as one batch)."""
        return self.encoder_img_feat_input_proj(self.backbone(images))

    def _camera_tokens(self, feats: Tensor) -> tuple[Tensor, Tensor]:
        """Per-camera features (K, B, D, h, w) -> tokens (K*h*w, B, D), pos (K*h*w, 1, D)."""
        k, b, _, h, w = feats.shape
        pos = sinusoidal_2d(h, w, self.config.dim_model, feats.device).to(feats.dtype)  # (D, h, w)
        # camera-major token order, as LeRobot's
        tokens = feats.flatten(3).permute(0, 3, 1, 2).flatten(0, 1)  # (K*h*w, B, D)
        pos = pos.flatten(1).transpose(0, 1)[:, None].repeat(k, 1, 1)  # (K*h*w, 1, D)
        return tokens, pos

    def forward(
        self, batch: Mapping[str, Tensor]
    ) -> tuple[Tensor, tuple[Tensor | None, Tensor | None]]:
        """Normalised batch -> (actions (B, S, A), (mu, log_sigma_x2) each (B, L) or None).

        batch: "observation.state" (B, Ds); each "observation.images.<cam>" (B, 3, H, W);
        optionally "observation.environment_state" (B, De); in training with the VAE also
        "action" (B, S, A) and "action_is_pad" (B, S) bool (True = past the episode end).
        """
        cfg = self.config
        needed = [*cfg.image_features, *(k for k in (cfg.robot_state_key, cfg.env_state_key) if k)]
        missing = [k for k in needed if k not in batch]
        if missing:
            raise KeyError(f"ACT input batch lacks {missing}; it has {sorted(batch)}")
        batch_size = batch[needed[0]].shape[0]

        z, mu, log_sigma_x2 = self._latent(batch, batch_size)
        feats = None
        if cfg.image_features:
            images = torch.stack([batch[k] for k in cfg.image_features])  # (K, B, 3, H, W)
            feats = self.image_features(images.flatten(0, 1))  # (K*B, D, h, w)
            feats = feats.unflatten(0, images.shape[:2])  # (K, B, D, h, w)
        state = batch[cfg.robot_state_key] if cfg.robot_state_key is not None else None
        env_state = batch[cfg.env_state_key] if cfg.env_state_key is not None else None
        return self.decode(z, state, env_state, feats), (mu, log_sigma_x2)

    def decode(
        self, z: Tensor, state: Tensor | None, env_state: Tensor | None, feats: Tensor | None
    ) -> Tensor:
        """Latent z (B, L), normalised state (B, Ds) / env state (B, De) or None, camera
        features (K, B, D, h, w) or None -> normalised actions (B, S, A).

        The transformer stage of an export: encoder over [latent, state, env, camera tokens],
        DETR-style decoder with one query per chunk step, linear action head."""
        cfg = self.config
        tokens = [self.encoder_latent_input_proj(z)]  # [(B, D)]
        if state is not None:
            tokens.append(self.encoder_robot_state_input_proj(state))
        if env_state is not None:
            tokens.append(self.encoder_env_state_input_proj(env_state))
        tokens_1d = torch.stack(tokens)  # (n_1d, B, D)
        pos_1d = self.encoder_1d_feature_pos_embed.weight[:, None]  # (n_1d, 1, D)
        if feats is not None:
            cam_tokens, cam_pos = self._camera_tokens(feats)
            enc_in = torch.cat([tokens_1d, cam_tokens])  # (N, B, D)
            enc_pos = torch.cat([pos_1d, cam_pos])  # (N, 1, D)
        else:
            enc_in, enc_pos = tokens_1d, pos_1d

        memory = self.encoder(enc_in, pos=enc_pos)  # (N, B, D)
        queries = memory.new_zeros(cfg.chunk_size, z.shape[0], cfg.dim_model)  # (S, B, D)
        out = self.decoder(
            queries, memory, query_pos=self.decoder_pos_embed.weight[:, None], memory_pos=enc_pos
        )  # (S, B, D)
        return self.action_head(out.transpose(0, 1))  # (B, S, A)


def kl_to_standard_normal(mu: Tensor, log_sigma_x2: Tensor) -> Tensor:
    """KL(N(mu, sigma^2) || N(0, 1)) summed over latent dims, averaged over the batch."""
    return (-0.5 * (1 + log_sigma_x2 - mu.pow(2) - log_sigma_x2.exp())).sum(-1).mean()


class ACTPolicy(nn.Module):
    """Training loss and chunk prediction around `ACT`; parameters live under `model.`.

    Inputs are already normalised (edgevla.policies.common.normalize.Normalizer with
    `config.normalization_modes()`), outputs are normalised actions: un-normalise them with the
    same Normalizer. Per-step action selection and temporal ensembling belong to the control loop.
    """

    name = POLICY_TYPE

    def __init__(self, config: ACTConfig):
        super().__init__()
        self.config = config
        self.model = ACT(config)

    def forward(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        """Loss = masked L1 + kl_weight * KL; returns (loss, {"l1_loss", "kld_loss"} as floats).

        As in LeRobot, the L1 mean runs over all B*S*A entries with padded steps zeroed (not
        re-normalised by the unpadded count), so loss values compare across the two codebases.
        "kld_loss" is absent when use_vae=False.
        """
        target = batch[ACTION_KEY]  # (B, S, A)
        expected = (self.config.chunk_size, self.config.action_feature.shape[0])
        if tuple(target.shape[1:]) != expected:
            raise ValueError(
                f"batch[{ACTION_KEY!r}] has shape {tuple(target.shape)}, expected (B, *{expected}); "
                "load chunk_size future actions per sample (config.action_delta_indices)"
            )
        actions_hat, (mu, log_sigma_x2) = self.model(batch)
        is_pad = batch.get(ACTION_IS_PAD_KEY)
        l1 = F.l1_loss(actions_hat, target, reduction="none")  # (B, S, A)
        if is_pad is not None:
            l1 = l1 * ~is_pad.bool()[..., None]
        l1_loss = l1.mean()
        info = {"l1_loss": l1_loss.item()}
        if mu is None or log_sigma_x2 is None:
            return l1_loss, info
        kld = kl_to_standard_normal(mu, log_sigma_x2)
        info["kld_loss"] = kld.item()
        return l1_loss + self.config.kl_weight * kld, info

    @torch.no_grad()
    def predict_action_chunk(self, batch: Mapping[str, Tensor]) -> Tensor:
        """(B, chunk_size, action_dim) normalised actions, computed in eval mode (z = 0, no dropout).

        The module's train/eval mode is restored afterwards, so validation inside a training loop
        does not leave the policy in eval mode.
        """
        was_training = self.training
        self.eval()
        try:
            return self.model(batch)[0]
        finally:
            self.train(was_training)

    def get_optim_params(self) -> list[dict]:
        """AdamW parameter groups: the backbone gets config.optimizer_lr_backbone (as LeRobot)."""
        named = [(n, p) for n, p in self.named_parameters() if p.requires_grad]
        return [
            {"params": [p for n, p in named if not n.startswith("model.backbone")]},
            {
                "params": [p for n, p in named if n.startswith("model.backbone")],
                "lr": self.config.optimizer_lr_backbone,
            },
        ]

    def save_pretrained(self, folder: str | Path, stats: Stats | None = None) -> Path:
        """Write config.json + model.safetensors (+ normalisation stats) in LeRobot's layout."""
        return checkpoint.save_checkpoint(folder, self.state_dict(), self.config, stats)

    @classmethod
    def from_pretrained(cls, folder: str | Path, device: str | torch.device = "cpu") -> ACTPolicy:
        """Load a folder written by save_pretrained or by LeRobot, strictly (every tensor present,
        every shape equal); returns it in eval mode. Statistics and train_info come with
        `checkpoint.Checkpoint.open(folder)`."""
        return checkpoint.Checkpoint.open(folder, POLICY_TYPE).load_policy(device)
