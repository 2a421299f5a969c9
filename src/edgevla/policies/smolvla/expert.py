"""The action expert: a narrower LLaMA stack over the action tokens, conditioned on the prefix.

The expert has the VLM's head layout (heads, KV heads, head size) at expert_width_multiplier of
its width, one layer per VLM layer by default. Expert layer j reads the keys/values of VLM layer
vlm_index[j] and is of one of two kinds (LeRobot's pattern, self_attn_every_n_layers = n):

    self-attention  (VLM layer index % n == 0: layers 0, 2, 4, ... for n = 2)
        queries: action tokens; keys/values: [prefix K/V exactly as the VLM made them ;
        the action tokens' own K/V]. Actions see every valid prefix token and, causally, the
        actions up to themselves. Action positions continue after the valid prefix tokens.
    cross-attention (the other layers)
        queries: action tokens (positions 0..C-1); keys/values: only the prefix, mapped through
        this layer's own k_proj/v_proj (VLM KV width -> expert KV width).

     prefix K/V, layer 0 ─┐    prefix K/V, layer 1 ─┐
                          ▼                         ▼ (k_proj, v_proj)
    actions ──► [self-attn: prefix + causal actions] ──► [cross-attn: prefix only] ──► ...

Because the projection of the prefix in cross-attention layers does not depend on the action
tokens, it is done once per chunk in prefill (project_prefix_kv) rather than at each of the
num_steps denoising steps; the cache handed to the expert then holds, for every expert layer,
exactly the keys/values that layer attends to: (L_expert, B, Hkv, P, Dh).

forward() is the cached path used at inference; forward_joint() runs VLM and expert side by side
in one pass with a single (prefix + actions) mask, as SmolVLA trains. A test pins that they agree.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from edgevla.policies.common.attention import attend
from edgevla.policies.common.masks import block_attention_mask, causal_mask
from edgevla.policies.smolvla.config import SmolVLAConfig
from edgevla.policies.smolvla.language import KV, DecoderLayer, RMSNorm, TextModel


class ActionExpert(nn.Module):
    def __init__(self, config: SmolVLAConfig):
        super().__init__()
        width = config.expert_hidden_size
        vlm_kv_width = config.text_num_kv_heads * config.text_head_dim
        self.is_self_attn = config.expert_layer_is_self_attn
        self.vlm_index = config.expert_vlm_layer_index
        self.layers = nn.ModuleList(
            DecoderLayer(
                config,
                width,
                config.expert_intermediate_size,
                kv_in=None if self_attn else vlm_kv_width,
            )
            for self_attn in self.is_self_attn
        )
        self.norm = RMSNorm(width, config.rms_norm_eps)

    def project_prefix_kv(self, vlm_kv: list[KV]) -> tuple[Tensor, Tensor]:
        """Per expert layer, the prefix keys/values it attends to, stacked (L_e, B, Hkv, P, Dh)."""
        keys, values = [], []
        for j, layer in enumerate(self.layers):
            k, v = vlm_kv[self.vlm_index[j]]
            if not self.is_self_attn[j]:
                k, v = layer.project_kv(k, v)
            keys.append(k)
            values.append(v)
        return torch.stack(keys), torch.stack(values)

    def forward(
        self, x: Tensor, prefix_keys: Tensor, prefix_values: Tensor, prefix_mask: Tensor
    ) -> Tensor:
        """Cached path: action tokens x (B, C, W) -> normalised hidden states (B, C, W).

        prefix_keys/values: (L_e, B, Hkv, P, Dh) from project_prefix_kv; prefix_mask (B, P) bool.
        """
        b, c, _ = x.shape
        p = prefix_mask.shape[1]
        steps = torch.arange(c, device=x.device)[None].expand(b, c)  # (B, C)
        valid_prefix = prefix_mask.long().sum(-1, keepdim=True)  # (B, 1)
        pos_self = valid_prefix + steps  # (B, C) continues after the valid prefix tokens
        causal = causal_mask(c, x.device)  # (C, C)
        to_prefix = prefix_mask[:, None, :].expand(b, c, p)  # (B, C, P)
        to_all = torch.cat([to_prefix, causal[None].expand(b, c, c)], dim=-1)  # (B, C, P+C)
        for j, layer in enumerate(self.layers):
            if self.is_self_attn[j]:
                q, k, v = layer.qkv(x, pos_self)
                k = torch.cat([prefix_keys[j], k], dim=2)  # (B, Hkv, P+C, Dh)
                v = torch.cat([prefix_values[j], v], dim=2)  # (B, Hkv, P+C, Dh)
                out = attend(q, k, v, to_all)
            else:
                out = attend(layer.query(x, steps), prefix_keys[j], prefix_values[j], to_prefix)
            x = layer.finish(x, out)
        return self.norm(x)

    def forward_joint(
        self,
        text_model: TextModel,
        prefix: Tensor,
        suffix: Tensor,
        pad_mask: Tensor,
        block_start: Tensor,
    ) -> Tensor:
        """Uncached path: VLM over the prefix and expert over the actions, layer by layer.

        prefix (B, P, D), suffix (B, C, W); pad_mask (B, P+C) and block_start (P+C,) describe the
        whole sequence. In self-attention layers prefix and action queries share one attention
        over [prefix; actions] under the full mask (which keeps the prefix blind to the actions).
        Returns the expert's normalised hidden states (B, C, W).
        """
        p, c = prefix.shape[1], suffix.shape[1]
        mask = block_attention_mask(pad_mask, block_start)  # (B, P+C, P+C)
        positions = torch.cumsum(pad_mask.long(), dim=1) - 1  # (B, P+C)
        pos_prefix, pos_self = positions[:, :p], positions[:, p:]
        steps = torch.arange(c, device=suffix.device)[None].expand_as(pos_self)  # (B, C)
        expert_of = {i: j for j, i in enumerate(self.vlm_index)}
        n_vlm = len(text_model.layers)
        for i, vlm_layer in enumerate(text_model.layers):
            q, k, v = vlm_layer.qkv(prefix, pos_prefix)
            j = expert_of.get(i)
            if j is None:  # a VLM layer without an expert partner: actions pass through
                out_prefix = attend(q, k, v, mask[:, :p, :p])
            elif self.is_self_attn[j]:
                layer = self.layers[j]
                eq, ek, ev = layer.qkv(suffix, pos_self)
                out = attend(
                    torch.cat([q, eq], dim=2),  # (B, H, P+C, Dh)
                    torch.cat([k, ek], dim=2),  # (B, Hkv, P+C, Dh)
                    torch.cat([v, ev], dim=2),  # (B, Hkv, P+C, Dh)
                    mask,
                )
                out_prefix, out_suffix = out[:, :, :p], out[:, :, p:]
                suffix = layer.finish(suffix, out_suffix)
            else:
                layer = self.layers[j]
                out_prefix = attend(q, k, v, mask[:, :p, :p])
                ek, ev = layer.project_kv(k, v)
                out_suffix = attend(layer.query(suffix, steps), ek, ev, mask[:, p:, :p])
                suffix = layer.finish(suffix, out_suffix)
            if i < n_vlm - 1:  # the last VLM layer's output is never read
                prefix = vlm_layer.finish(prefix, out_prefix)
        return self.norm(suffix)
