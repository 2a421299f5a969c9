"""LLaMA-style language model (SmolLM2 shape), used as SmolVLA's prefill: stage 2.

A decoder layer is RMSNorm -> grouped-query attention with RoPE -> residual -> RMSNorm -> SwiGLU
MLP -> residual. SmolVLA keeps only the VLM's first num_vlm_layers layers and never decodes text:
it runs the layers over the prefix (image tokens, task tokens, state token) to produce each
layer's keys and values, which the action expert then attends to. The LM head is not built.

DecoderLayer exposes its halves (qkv / query / finish) rather than a single forward, because the
same layer runs inside three compositions: the prefill, the cached expert step and the joint
training pass in which prefix and action tokens share one attention.
Parameter names follow Hugging Face's LlamaDecoderLayer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn

from edgevla.policies.common.attention import attend
from edgevla.policies.common.rope import apply_rope
from edgevla.policies.smolvla.config import SmolVLAConfig

KV = tuple[Tensor, Tensor]


class RMSNorm(nn.Module):
    """x / rms(x) * weight, computed in float32 (LLaMA's normalisation; no mean, no bias)."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * xf.to(x.dtype)


class SwiGLU(nn.Module):
    """down(silu(gate(x)) * up(x)), no biases (LlamaMLP)."""

    def __init__(self, hidden: int, intermediate: int):
        super().__init__()
        self.gate_proj = nn.Linear(hidden, intermediate, bias=False)
        self.up_proj = nn.Linear(hidden, intermediate, bias=False)
        self.down_proj = nn.Linear(intermediate, hidden, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class AttentionProjections(nn.Module):
    """q/k/v/o projections of one layer. kv_in_features differs from hidden in the expert's
    cross-attention layers, whose k_proj/v_proj read the VLM's keys/values instead of the
    expert's own hidden states."""

    def __init__(self, hidden: int, num_heads: int, num_kv_heads: int, head_dim: int, kv_in: int):
        super().__init__()
        self.num_heads, self.num_kv_heads, self.head_dim = num_heads, num_kv_heads, head_dim
        self.q_proj = nn.Linear(hidden, num_heads * head_dim, bias=False)
        self.k_proj = nn.Linear(kv_in, num_kv_heads * head_dim, bias=False)
        self.v_proj = nn.Linear(kv_in, num_kv_heads * head_dim, bias=False)
        self.o_proj = nn.Linear(num_heads * head_dim, hidden, bias=False)


class DecoderLayer(nn.Module):
    def __init__(
        self, config: SmolVLAConfig, hidden: int, intermediate: int, kv_in: int | None = None
    ):
        super().__init__()
        self.rope_max_wavelength = config.rope_max_wavelength
        self.input_layernorm = RMSNorm(hidden, config.rms_norm_eps)
        self.self_attn = AttentionProjections(
            hidden,
            config.text_num_heads,
            config.text_num_kv_heads,
            config.text_head_dim,
            kv_in if kv_in is not None else hidden,
        )
        self.post_attention_layernorm = RMSNorm(hidden, config.rms_norm_eps)
        self.mlp = SwiGLU(hidden, intermediate)

    def _heads(self, y: Tensor, n_heads: int) -> Tensor:
        b, t, _ = y.shape
        return y.view(b, t, n_heads, self.self_attn.head_dim).transpose(1, 2)  # (B, h, T, Dh)

    def query(self, x: Tensor, positions: Tensor) -> Tensor:
        """Rotated queries (B, H, T, Dh) from hidden states x (B, T, D)."""
        h = self.input_layernorm(x)
        q = self._heads(self.self_attn.q_proj(h), self.self_attn.num_heads)
        return apply_rope(q, positions, self.rope_max_wavelength)

    def qkv(self, x: Tensor, positions: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Rotated queries (B, H, T, Dh), rotated keys and values (B, Hkv, T, Dh)."""
        h = self.input_layernorm(x)
        attn = self.self_attn
        q = self._heads(attn.q_proj(h), attn.num_heads)
        k = self._heads(attn.k_proj(h), attn.num_kv_heads)
        v = self._heads(attn.v_proj(h), attn.num_kv_heads)
        w = self.rope_max_wavelength
        return apply_rope(q, positions, w), apply_rope(k, positions, w), v

    def project_kv(self, k: Tensor, v: Tensor) -> KV:
        """Map another model's keys/values (B, Hkv, S, Dh) through this layer's k_proj/v_proj.

        Heads are flattened head-major before the linear map, as SmolVLA does, so its trained
        cross-attention weights apply unchanged. No RoPE is added: the keys are already rotated.
        """
        b, h_kv, s, dh = k.shape
        attn = self.self_attn

        def flat(y: Tensor) -> Tensor:
            return y.transpose(1, 2).reshape(b, s, h_kv * dh)  # (B, S, Hkv*Dh)

        k2 = self._heads(attn.k_proj(flat(k)), attn.num_kv_heads)  # (B, Hkv, S, Dh)
        v2 = self._heads(attn.v_proj(flat(v)), attn.num_kv_heads)  # (B, Hkv, S, Dh)
        return k2, v2

    def finish(self, x: Tensor, attn_out: Tensor) -> Tensor:
        """Residual update of x (B, T, D) from the attention output (B, H, T, Dh), then the MLP."""
        b, _, t, _ = attn_out.shape
        merged = attn_out.transpose(1, 2).reshape(b, t, -1)  # (B, T, H*Dh)
        x = x + self.self_attn.o_proj(merged)
        return x + self.mlp(self.post_attention_layernorm(x))


class TextModel(nn.Module):
    """Token embeddings and the first num_vlm_layers decoder layers of the VLM's LM."""

    def __init__(self, config: SmolVLAConfig):
        super().__init__()
        d = config.text_hidden_size
        self.embed_tokens = nn.Embedding(config.vocab_size, d)
        self.layers = nn.ModuleList(
            DecoderLayer(config, d, config.text_intermediate_size)
            for _ in range(config.num_vlm_layers)
        )
        # Unused by SmolVLA (only keys/values leave the LM); kept so checkpoints map one to one.
        self.norm = RMSNorm(d, config.rms_norm_eps)

    def prefix_kv(self, x: Tensor, positions: Tensor, mask: Tensor) -> list[KV]:
        """Keys and values (B, Hkv, P, Dh) of every layer for the prefix x (B, P, D).

        mask (B, P, P) is the prefix attention mask. The last layer's attention output and MLP
        are skipped: nothing downstream reads them, only its keys and values.
        """
        kv: list[KV] = []
        for i, layer in enumerate(self.layers):
            q, k, v = layer.qkv(x, positions)
            kv.append((k, v))
            if i < len(self.layers) - 1:
                x = layer.finish(x, attend(q, k, v, mask))
        return kv
