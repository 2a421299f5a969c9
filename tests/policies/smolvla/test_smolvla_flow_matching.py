"""Flow-matching pieces against velocity fields whose answers are known in closed form."""

from __future__ import annotations

import math

import pytest
import torch

from edgevla.policies.common.flow_matching import (
    euler_sample,
    flow_matching_loss,
    noisy_actions_and_target,
    sample_beta_time,
    sinusoidal_time_embedding,
)


def test_beta_time_matches_beta_1p5_1():
    g = torch.Generator().manual_seed(0)
    t = sample_beta_time(200_000, generator=g)
    assert t.min() >= 0.001 and t.max() <= 1.0
    # Beta(1.5, 1): mean 0.6 and CDF x**1.5, before the 0.999 * x + 0.001 map.
    x = (t - 0.001) / 0.999
    assert x.mean().item() == pytest.approx(0.6, abs=3e-3)
    for q in (0.2, 0.5, 0.8):
        assert (x <= q).float().mean().item() == pytest.approx(q**1.5, abs=3e-3)
    again = sample_beta_time(200_000, generator=torch.Generator().manual_seed(0))
    assert torch.equal(t, again)


def test_path_endpoints_and_velocity():
    g = torch.Generator().manual_seed(1)
    actions, noise = torch.randn(2, 4, 3, generator=g), torch.randn(2, 4, 3, generator=g)
    x1, u = noisy_actions_and_target(actions, noise, torch.ones(2))
    x0, _ = noisy_actions_and_target(actions, noise, torch.zeros(2))
    assert torch.allclose(x1, noise) and torch.allclose(x0, actions)
    assert torch.allclose(u, noise - actions)
    # u is dx_t/dt along the path
    a = noisy_actions_and_target(actions, noise, torch.full((2,), 0.3))[0]
    b = noisy_actions_and_target(actions, noise, torch.full((2,), 0.4))[0]
    assert torch.allclose((b - a) / 0.1, u, atol=1e-4)


@pytest.mark.parametrize("num_steps", [1, 10])
def test_euler_is_exact_for_a_straight_flow(num_steps):
    """Target = one fixed chunk a. The optimal velocity is (x - a) / t: paths are straight lines,
    so Euler lands on a exactly with any number of steps, including one."""
    g = torch.Generator().manual_seed(2)
    target = torch.randn(1, 5, 3, generator=g)
    noise = torch.randn(4, 5, 3, generator=g)

    def velocity(x, t):
        return (x - target) / t[:, None, None]

    out = euler_sample(velocity, noise, num_steps)
    assert torch.allclose(out, target.expand_as(out), atol=1e-5)


def test_euler_converges_for_a_gaussian_target():
    """Target N(mu, s^2) in 1-D: the marginal flow has x_t = m_t + sigma_t * z with
    m_t = (1-t) mu and sigma_t^2 = t^2 + (1-t)^2 s^2, so noise z maps to mu + s z. Its paths
    are curved (s != 1): one Euler step is off (by 0.6 here), and the error falls ~10x per 10x
    more steps (Euler is first order)."""
    mu, s = 0.7, 0.3

    def velocity(x, t):
        t = t[:, None]
        var = t**2 + (1 - t) ** 2 * s**2
        return -mu + (t - (1 - t) * s**2) / var * (x - (1 - t) * mu)

    z = torch.linspace(-2, 2, 9, dtype=torch.float64)[:, None]
    exact = mu + s * z
    errors = [(euler_sample(velocity, z, n) - exact).abs().max().item() for n in (1, 10, 100)]
    assert errors[0] > 0.5
    for coarse, fine in zip(errors, errors[1:], strict=False):
        assert 5 < coarse / fine < 20
    assert errors[2] < 0.02


def test_loss_ignores_padded_steps():
    g = torch.Generator().manual_seed(3)
    v, u = torch.randn(2, 4, 3, generator=g), torch.randn(2, 4, 3, generator=g)
    is_pad = torch.tensor([[False, False, True, True], [False, False, False, False]])
    loss = flow_matching_loss(v, u, is_pad)
    # LeRobot's convention: padded entries count as zeros in the mean over all B*T*D entries
    expected = torch.cat([(v - u)[0, :2], (v - u)[1]]).pow(2).sum() / v.numel()
    assert torch.allclose(loss, expected)
    v2 = v.clone()
    v2[0, 2:] += 100.0
    assert torch.allclose(flow_matching_loss(v2, u, is_pad), loss)
    assert torch.allclose(flow_matching_loss(v, u), (v - u).pow(2).mean())


def test_time_embedding():
    emb = sinusoidal_time_embedding(torch.tensor([0.0, 0.5, 1.0]), 8, 4e-3, 4.0)
    assert emb.shape == (3, 8)
    assert torch.allclose(emb[0], torch.tensor([0.0] * 4 + [1.0] * 4))
    # slowest component: period 4.0, so sin(2*pi*t/4)
    assert emb[1, 3].item() == pytest.approx(math.sin(2 * math.pi * 0.5 / 4.0), abs=1e-6)
    with pytest.raises(ValueError, match="even"):
        sinusoidal_time_embedding(torch.zeros(2), 7, 4e-3, 4.0)
