"""The cached inference path (prefill once + denoise_step) equals the joint training pass,
and sample_actions is Euler integration of denoise_step."""

from __future__ import annotations

import pytest
import torch

from edgevla.policies.common.flow_matching import euler_sample
from edgevla.policies.smolvla.model import SmolVLAPolicy


@pytest.mark.parametrize(
    "overrides",
    [
        {},  # 4 layers: self, cross, self, cross
        {"self_attn_every_n_layers": 1},  # all self-attention
        {"self_attn_every_n_layers": 0},  # all cross-attention
        {"num_expert_layers": 2},  # expert reads VLM layers 0 and 2
        {"prefix_length": 60},  # prefix padded past its natural length
    ],
    ids=["interleaved", "all-self", "all-cross", "shallow-expert", "padded-prefix"],
)
def test_cache_path_equals_joint_path(tiny_config, make_batch, overrides):
    torch.manual_seed(0)
    cfg = tiny_config(**overrides)
    model = SmolVLAPolicy(cfg)
    images, tokens, lang_mask, state = model.prepare_inputs(make_batch(cfg))
    image_tokens = model.embed_images(images)
    keys, values, prefix_mask = model.prefill(image_tokens, tokens, lang_mask, state)
    for t in (torch.tensor([1.0, 0.5, 0.05]), torch.rand(3)):
        x_t = torch.randn(3, cfg.chunk_size, cfg.max_action_dim)
        cached = model.denoise_step(x_t, t, keys, values, prefix_mask)
        joint = model.velocity_joint(image_tokens, tokens, lang_mask, state, x_t, t)
        assert cached.abs().mean() > 0.1  # outputs are not trivially small
        torch.testing.assert_close(cached, joint, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("num_steps", [1, 10])
def test_sample_actions_integrates_denoise_step(tiny_config, make_batch, num_steps):
    cfg = tiny_config(num_steps=num_steps)
    model = SmolVLAPolicy(cfg)
    batch = make_batch(cfg)
    noise = torch.randn(3, cfg.chunk_size, cfg.max_action_dim)
    with torch.no_grad():
        out = model.sample_actions(batch, noise=noise)
        images, tokens, lang_mask, state = model.prepare_inputs(batch)
        kv = model.prefill(model.embed_images(images), tokens, lang_mask, state)
        if num_steps == 1:  # one step from t = 1 with dt = -1
            expected = noise - model.denoise_step(noise, torch.ones(3), *kv)
        else:
            expected = euler_sample(lambda x, t: model.denoise_step(x, t, *kv), noise, num_steps)
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-6)
    assert torch.isfinite(out).all()
    # the override argument reaches the sampler
    with torch.no_grad():
        other = model.sample_actions(batch, noise=noise, num_steps=num_steps + 1)
    assert not torch.allclose(other, out)
