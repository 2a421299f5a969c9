"""Time one ACT training step (forward + backward) on CPU: default config vs the edge preset.

    edgevla bench train-step [--threads 1] [--batch 8] [--full-res]

Wall-clock numbers are for README tables and docstrings; never gate tests on them.
"""

from __future__ import annotations

import time

import torch
from edgevla_runtime.features import ACTION_KEY

from edgevla.policies.act.config import ACTConfig, act_edge_preset, default_features
from edgevla.policies.act.model import ACTION_IS_PAD_KEY, ACTPolicy


def synthetic_batch(config: ACTConfig, batch_size: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random normalised inputs and targets with every key `config` asks for."""
    g = torch.Generator().manual_seed(seed)
    batch = {
        k: torch.randn(batch_size, *f.shape, generator=g) for k, f in config.input_features.items()
    }
    action_dim = config.action_feature.shape[0]
    batch[ACTION_KEY] = torch.randn(batch_size, config.chunk_size, action_dim, generator=g)
    batch[ACTION_IS_PAD_KEY] = torch.zeros(batch_size, config.chunk_size, dtype=torch.bool)
    return batch


def time_train_step(
    config: ACTConfig, batch_size: int = 8, repeats: int = 3, warmup: int = 1
) -> tuple[float, float]:
    """Median seconds of (forward + backward, whole step with AdamW) for ACTPolicy in train mode."""
    torch.manual_seed(0)
    policy = ACTPolicy(config).train()
    optimizer = torch.optim.AdamW(
        policy.get_optim_params(),
        lr=config.optimizer_lr,
        weight_decay=config.optimizer_weight_decay,
    )
    batch = synthetic_batch(config, batch_size)
    fwd_bwd, step = [], []
    for i in range(warmup + repeats):
        optimizer.zero_grad(set_to_none=True)
        start = time.perf_counter()
        loss, _ = policy(batch)
        loss.backward()
        middle = time.perf_counter()
        optimizer.step()
        if i >= warmup:
            fwd_bwd.append(middle - start)
            step.append(time.perf_counter() - start)
    return sorted(fwd_bwd)[len(fwd_bwd) // 2], sorted(step)[len(step) // 2]


def train_step_rows(batch_size: int = 8, full_res: bool = False) -> list[dict[str, float | str]]:
    """The LeRobot default ACT (96x128, and 480x640 with full_res) and the edge preset: params
    and median seconds of forward+backward and of a whole AdamW step (threads as set by caller)."""
    small_in, small_out = default_features(image_hw=(96, 128))
    configs = [("default, 96x128", ACTConfig(input_features=small_in, output_features=small_out))]
    if full_res:
        full_in, full_out = default_features(image_hw=(480, 640))
        configs.insert(
            0, ("default, 480x640", ACTConfig(input_features=full_in, output_features=full_out))
        )
    configs.append(("edge preset, 96x128", act_edge_preset(image_hw=(96, 128))))
    rows = []
    for name, cfg in configs:
        n_params = sum(p.numel() for p in ACTPolicy(cfg).parameters()) / 1e6
        fwd_bwd, step = time_train_step(cfg, batch_size, repeats=1 if "480" in name else 3)
        rows.append({"config": name, "params_m": n_params, "fwd_bwd_s": fwd_bwd, "step_s": step})
    return rows
