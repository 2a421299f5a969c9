"""Training behaviour: a tiny model overfits fixed samples; freezing follows the config."""

from __future__ import annotations

import torch

from edgevla.policies.smolvla.model import SmolVLAPolicy


def test_tiny_model_overfits_fixed_samples(tiny_config, make_batch):
    """4 samples with fixed noise and times make the loss a plain regression: 100 AdamW steps
    cut it by more than 50x (measured ~200-2000x over seeds; ~3 s on one thread)."""
    torch.manual_seed(0)
    cfg = tiny_config(init_std=0.02)
    model = SmolVLAPolicy(cfg)
    batch = make_batch(cfg, batch_size=4)
    noise = torch.randn(4, cfg.chunk_size, cfg.max_action_dim)
    time = torch.tensor([0.9, 0.6, 0.3, 0.1])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    first = None
    for _ in range(100):
        loss, info = model(batch, noise=noise, time=time)
        first = info["loss"] if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert info["loss"] < first / 50, (first, info["loss"])


def test_action_is_pad_masks_the_loss(tiny_config, make_batch):
    cfg = tiny_config()
    model = SmolVLAPolicy(cfg)
    batch = make_batch(cfg, batch_size=2)
    noise = torch.randn(2, cfg.chunk_size, cfg.max_action_dim)
    time = torch.tensor([0.5, 0.5])
    batch["action_is_pad"] = torch.zeros(2, cfg.chunk_size, dtype=torch.bool)
    batch["action_is_pad"][:, 5:] = True
    loss, _ = model(batch, noise=noise, time=time)
    batch["action"][:, 5:] += 50.0  # beyond the episode end: must not matter
    loss2, _ = model(batch, noise=noise, time=time)
    torch.testing.assert_close(loss, loss2)


def test_default_freezing_trains_expert_and_state_projection(tiny_config, make_batch):
    cfg = tiny_config(freeze_vision_encoder=True, train_expert_only=True)
    model = SmolVLAPolicy(cfg)
    (group,) = model.get_optim_params()
    assert {id(p) for p in group["params"]} == {
        id(p) for p in model.parameters() if p.requires_grad
    }
    assert not any(p is model.vision.post_layernorm.weight for p in group["params"])
    loss, _ = model(make_batch(cfg))
    loss.backward()
    for name, module in [("vision", model.vision), ("lm", model.text_model)]:
        assert all(p.grad is None for p in module.parameters()), name
    assert all(p.grad is None for p in model.connector.parameters())
    assert all(p.grad is not None for p in model.lm_expert.parameters())
    assert model.state_proj.weight.grad is not None


def test_full_training_reaches_vision(tiny_config, make_batch):
    cfg = tiny_config(freeze_vision_encoder=False, train_expert_only=False)
    model = SmolVLAPolicy(cfg)
    loss, _ = model(make_batch(cfg))
    loss.backward()
    assert model.vision.embeddings.patch_embedding.weight.grad.abs().sum() > 0
    assert model.text_model.embed_tokens.weight.grad.abs().sum() > 0
    # the LM's final norm and its last layer's MLP are never read
    assert model.text_model.norm.weight.grad is None
    assert not model.text_model.layers[-1].mlp.down_proj.weight.requires_grad
