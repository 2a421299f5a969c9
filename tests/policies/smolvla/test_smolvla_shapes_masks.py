"""Stage shapes, the attention pattern, and behaviour that the masks imply."""

from __future__ import annotations

import torch

from edgevla.policies.common.masks import block_attention_mask, causal_mask
from edgevla.policies.smolvla.model import SmolVLAPolicy
from edgevla.policies.smolvla.vision import pixel_shuffle, resize_with_pad


def _stages(model, batch):
    images, tokens, lang_mask, state = model.prepare_inputs(batch)
    image_tokens = model.embed_images(images)
    keys, values, prefix_mask = model.prefill(image_tokens, tokens, lang_mask, state)
    return image_tokens, tokens, lang_mask, state, keys, values, prefix_mask


def test_stage_shapes(tiny_config, make_batch):
    cfg = tiny_config()
    model = SmolVLAPolicy(cfg)
    batch = make_batch(cfg, batch_size=3)
    image_tokens, tokens, lang_mask, _, keys, values, prefix_mask = _stages(model, batch)
    b, p = 3, cfg.natural_prefix_length
    assert cfg.tokens_per_image == 4 * 8 // 4  # 16x32 px, 4 px patches, 2x shuffle
    assert image_tokens.shape == (b, 2 * cfg.tokens_per_image, cfg.text_hidden_size)
    assert tokens.shape == lang_mask.shape == (b, cfg.tokenizer_max_length)
    kv_shape = (cfg.expert_num_layers, b, cfg.text_num_kv_heads, p, cfg.text_head_dim)
    assert keys.shape == values.shape == kv_shape
    assert prefix_mask.shape == (b, p) and prefix_mask.dtype == torch.bool
    # padding lives only in the language part: "go\n" is 3 tokens
    n_img = image_tokens.shape[1]
    assert prefix_mask[2, :n_img].all() and prefix_mask[2, -1]
    assert prefix_mask[2, n_img : n_img + 3].all() and not prefix_mask[2, n_img + 3 : -1].any()
    x_t = torch.randn(b, cfg.chunk_size, cfg.max_action_dim)
    velocity = model.denoise_step(x_t, torch.rand(b), keys, values, prefix_mask)
    assert velocity.shape == (b, cfg.chunk_size, cfg.max_action_dim)
    assert model.sample_actions(batch).shape == (b, cfg.chunk_size, cfg.max_action_dim)
    assert model.predict_action_chunk(batch).shape == (b, cfg.chunk_size, cfg.action_dim)


def test_prefix_length_padding(tiny_config, make_batch):
    cfg = tiny_config(prefix_length=tiny_config().natural_prefix_length + 5)
    model = SmolVLAPolicy(cfg)
    *_, keys, _, prefix_mask = _stages(model, make_batch(cfg))
    assert keys.shape[3] == prefix_mask.shape[1] == cfg.prefix_length
    assert not prefix_mask[:, -5:].any()


def test_block_mask_rule():
    pad = torch.tensor([[True, True, True, False, True, True]])
    mask = block_attention_mask(pad, torch.tensor([0, 0, 0, 0, 1, 1]))[0]
    expected = torch.tensor(
        [
            [1, 1, 1, 0, 0, 0],  # prefix tokens see each other, not the pad, not later blocks
            [1, 1, 1, 0, 0, 0],
            [1, 1, 1, 0, 0, 0],
            [0, 0, 0, 0, 0, 0],  # the padded token sees nothing and is seen by nobody
            [1, 1, 1, 0, 1, 0],  # causal after the prefix
            [1, 1, 1, 0, 1, 1],
        ],
        dtype=torch.bool,
    )
    assert torch.equal(mask, expected)
    assert torch.equal(causal_mask(3), torch.tensor([[1, 0, 0], [1, 1, 0], [1, 1, 1]]).bool())


def test_model_prefix_pattern(tiny_config):
    """Images and task bidirectional; state sees them, they do not see the state."""
    cfg = tiny_config()
    model = SmolVLAPolicy(cfg)
    flags = model.prefix_block_start
    assert flags.shape == (cfg.natural_prefix_length,)
    assert flags.sum() == 1 and flags[-1] == 1
    pad = torch.ones(1, flags.shape[0], dtype=torch.bool)
    mask = block_attention_mask(pad, flags)[0]
    assert mask[:-1, :-1].all()
    assert mask[-1].all() and not mask[:-1, -1].any()


def test_padded_task_tokens_are_invisible(tiny_config, make_batch):
    cfg = tiny_config()
    model = SmolVLAPolicy(cfg)
    batch = make_batch(cfg)
    image_tokens, tokens, lang_mask, state, *_ = _stages(model, batch)
    x_t, t = torch.randn(3, cfg.chunk_size, cfg.max_action_dim), torch.rand(3)
    ref = model.velocity_joint(image_tokens, tokens, lang_mask, state, x_t, t)
    changed = tokens.masked_fill(~lang_mask, 77)  # other ids at the padded positions
    out = model.velocity_joint(image_tokens, changed, lang_mask, state, x_t, t)
    assert torch.allclose(out, ref, atol=1e-6)
    real = tokens.clone()
    real[0, 0] = 77  # a real token does matter
    assert not torch.allclose(
        model.velocity_joint(image_tokens, real, lang_mask, state, x_t, t), ref
    )


def test_state_token_does_not_leak_into_image_and_task_keys(tiny_config, make_batch):
    """Valid image/task keys ignore the state at every layer; the state token's own keys do not.

    (Padded task positions see everything, their attention row being empty, but nobody reads them.)
    """
    cfg = tiny_config()
    model = SmolVLAPolicy(cfg)
    image_tokens, tokens, lang_mask, state, keys, _, prefix_mask = _stages(model, make_batch(cfg))
    keys2 = model.prefill(image_tokens, tokens, lang_mask, state + 1.0)[0]
    seen = prefix_mask.clone()
    seen[:, -1] = False  # (B, P): valid image and task tokens
    diff = (keys2 - keys).abs().amax(dim=(0, 2, 4))  # (B, P) over layers, heads, head dim
    assert diff[seen].max() < 1e-6
    assert diff[:, -1].min() > 1e-3


def test_actions_are_causal(tiny_config, make_batch):
    """Changing the noisy action at step k changes the velocity at steps >= k only."""
    cfg = tiny_config()
    model = SmolVLAPolicy(cfg)
    image_tokens, tokens, lang_mask, state, keys, values, prefix_mask = _stages(
        model, make_batch(cfg)
    )
    x_t, t = torch.randn(3, cfg.chunk_size, cfg.max_action_dim), torch.rand(3)
    k = 4
    x2 = x_t.clone()
    x2[:, k] += 1.0
    for velocity in (
        lambda x: model.velocity_joint(image_tokens, tokens, lang_mask, state, x, t),
        lambda x: model.denoise_step(x, t, keys, values, prefix_mask),
    ):
        ref, out = velocity(x_t), velocity(x2)
        assert torch.allclose(out[:, :k], ref[:, :k], atol=1e-6)
        assert not torch.allclose(out[:, k:], ref[:, k:], atol=1e-3)


def test_pixel_shuffle_layout():
    """Token (I, J), channel (ii*f + jj)*D + d holds grid cell (I*f + ii, J*f + jj), feature d
    (Idefics3's layout), on a rectangular 4x6 grid."""
    gh, gw, d, f = 4, 6, 3, 2
    grid = torch.arange(gh * gw * d, dtype=torch.float32).reshape(1, gh, gw, d)
    out = pixel_shuffle(grid.reshape(1, gh * gw, d), (gh, gw), f)
    assert out.shape == (1, (gh // f) * (gw // f), f * f * d)
    for big_i in range(gh // f):
        for big_j in range(gw // f):
            for ii in range(f):
                for jj in range(f):
                    token = out[0, big_i * (gw // f) + big_j]
                    chunk = token[(ii * f + jj) * d : (ii * f + jj + 1) * d]
                    assert torch.equal(chunk, grid[0, big_i * f + ii, big_j * f + jj])


def test_resize_with_pad_keeps_aspect_and_pads_top_left():
    img = torch.ones(1, 3, 96, 128)
    out = resize_with_pad(img, width=64, height=64)
    assert out.shape == (1, 3, 64, 64)
    assert torch.all(out[:, :, :16] == 0) and torch.allclose(out[:, :, 16:], torch.ones(1))
    assert resize_with_pad(img, width=128, height=96) is img
