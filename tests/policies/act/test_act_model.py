"""ACT network: LeRobot parameter parity, golden outputs, loss masking, learning."""

from __future__ import annotations

import pytest
import torch
from edgevla_runtime.features import ACTION_KEY, STATE_KEY
from safetensors.torch import load_file

from edgevla.policies.act.config import ACTConfig, FeatureType, PolicyFeature, default_features
from edgevla.policies.act.model import ACTION_IS_PAD_KEY, ACTPolicy, sinusoidal_1d


def _batch(config: ACTConfig, batch_size: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    batch = {
        k: torch.randn(batch_size, *f.shape, generator=g) for k, f in config.input_features.items()
    }
    batch[ACTION_KEY] = torch.randn(
        batch_size, config.chunk_size, config.action_feature.shape[0], generator=g
    )
    batch[ACTION_IS_PAD_KEY] = torch.zeros(batch_size, config.chunk_size, dtype=torch.bool)
    return batch


def test_parameters_match_lerobot_default(default_params_tsv):
    """Default ACT, 6-D state/action, three 480x640 cameras: LeRobot 0.6.1's 234 tensors, in order."""
    rows = [line.split("\t") for line in default_params_tsv.read_text().splitlines() if line]
    expected = [(name, tuple(int(s) for s in shape.split("x"))) for name, shape in rows]
    inputs, outputs = default_features(image_hw=(480, 640))
    with torch.device("meta"):  # shapes only: no memory, no init cost
        policy = ACTPolicy(ACTConfig(input_features=inputs, output_features=outputs))
    got = [(name, tuple(t.shape)) for name, t in policy.state_dict().items()]
    assert got == expected
    assert len(got) == 234
    assert sum(t.numel() for t in policy.state_dict().values()) == 51_668_614


def test_reproduces_lerobot_golden_output(act_checkpoint):
    policy = ACTPolicy.from_pretrained(act_checkpoint)
    golden = load_file(str(act_checkpoint / "golden_io.safetensors"))
    inputs = {k.removeprefix("input."): v for k, v in golden.items() if k.startswith("input.")}
    chunk = policy.predict_action_chunk(inputs)
    expected = golden["output.action_chunk"]
    assert chunk.shape == expected.shape == (2, 20, 6)
    assert (chunk - expected).abs().max().item() < 1e-5


def test_vae_position_table_matches_lerobot_buffer(act_checkpoint):
    saved = load_file(str(act_checkpoint / "model.safetensors"))["model.vae_encoder_pos_enc"]
    torch.testing.assert_close(sinusoidal_1d(22, 128)[None], saved, rtol=0, atol=1e-6)


def test_shapes_follow_features(tiny_config):
    cfg = tiny_config()  # state 3, action 4, two 32x40 cameras, chunk 8
    policy = ACTPolicy(cfg)
    assert policy.model.action_head.out_features == 4
    assert policy.model.encoder_robot_state_input_proj.in_features == 3
    policy.train()
    chunk = policy.predict_action_chunk(_batch(cfg, 3))
    assert chunk.shape == (3, 8, 4)
    assert policy.training  # predict_action_chunk restores the previous mode


def test_environment_state_only(tiny_config):
    inputs = {"observation.environment_state": PolicyFeature(FeatureType.ENV, (5,))}
    cfg = tiny_config(input_features=inputs)
    policy = ACTPolicy(cfg)
    assert not hasattr(policy.model, "backbone")
    loss, info = policy(_batch(cfg, 2))
    assert loss.isfinite() and set(info) == {"l1_loss", "kld_loss"}


def test_missing_input_is_named(tiny_config):
    cfg = tiny_config()
    batch = _batch(cfg, 2)
    del batch[STATE_KEY]
    with pytest.raises(KeyError, match=STATE_KEY):
        ACTPolicy(cfg).predict_action_chunk(batch)


def test_padded_steps_do_not_contribute(tiny_config):
    cfg = tiny_config()
    policy = ACTPolicy(cfg).train()  # VAE on: the padded actions must not leak through it either
    batch = _batch(cfg, 2)
    batch[ACTION_IS_PAD_KEY][0, 5:] = True
    batch[ACTION_IS_PAD_KEY][1, 2:] = True
    changed = dict(batch)
    changed[ACTION_KEY] = batch[ACTION_KEY].clone()
    changed[ACTION_KEY][batch[ACTION_IS_PAD_KEY]] = 1e3  # garbage past the episode end

    torch.manual_seed(1)
    loss, info = policy(batch)
    torch.manual_seed(1)
    loss_changed, info_changed = policy(changed)
    torch.testing.assert_close(loss_changed, loss, rtol=1e-6, atol=1e-6)
    assert info_changed["kld_loss"] == pytest.approx(info["kld_loss"], rel=1e-6)

    # And an unpadded step does count.
    changed[ACTION_KEY][0, 0] += 1.0
    torch.manual_seed(1)
    assert policy(changed)[0].item() != pytest.approx(loss.item(), rel=1e-6)


def test_padding_zeroes_gradient_of_padded_predictions(tiny_config):
    cfg = tiny_config(use_vae=False)
    policy = ACTPolicy(cfg).train()
    batch = _batch(cfg, 2)
    batch[ACTION_IS_PAD_KEY][:, 6:] = True
    actions_hat, _ = policy.model(batch)
    actions_hat.retain_grad()
    diff = (actions_hat - batch[ACTION_KEY]).abs() * ~batch[ACTION_IS_PAD_KEY][..., None]
    diff.mean().backward()
    # Sanity of the masking formula used by ACTPolicy.forward: padded rows receive no gradient.
    assert actions_hat.grad[:, 6:].abs().max() == 0
    loss, info = policy(batch)
    assert "kld_loss" not in info and loss.item() == pytest.approx(info["l1_loss"])


def test_overfits_fixed_samples(tiny_config):
    """Four fixed samples: the eval-mode L1 error falls >= 5x in 200 AdamW steps (seen: ~14x).

    The ResNet is frozen to keep this under ~10 s on one thread (its backward and AdamW state are
    most of the cost); test_backbone_receives_gradients covers the image path's gradients.
    """
    torch.manual_seed(0)
    inputs, outputs = default_features(("top",), image_hw=(32, 32), state_dim=3, action_dim=4)
    cfg = tiny_config(input_features=inputs, output_features=outputs)
    policy = ACTPolicy(cfg)
    policy.model.backbone.requires_grad_(False)
    batch = _batch(cfg, 4, seed=3)
    optimizer = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=1e-3)

    def eval_l1() -> float:
        return (policy.predict_action_chunk(batch) - batch[ACTION_KEY]).abs().mean().item()

    before = eval_l1()
    for _ in range(200):
        loss, info = policy(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = eval_l1()
    assert after < before / 5, f"eval L1 went {before:.3f} -> {after:.3f}"
    assert info["l1_loss"] < before / 5


def test_backbone_receives_gradients(tiny_config):
    policy = ACTPolicy(tiny_config()).train()
    loss, _ = policy(_batch(tiny_config(), 2))
    loss.backward()
    assert policy.model.backbone.conv1.weight.grad.abs().sum() > 0
    assert policy.model.encoder_img_feat_input_proj.weight.grad.abs().sum() > 0
