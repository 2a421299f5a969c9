"""Time one ACT training step (forward + backward) on CPU: default config vs the edge preset.

    python -m edgevla.policies.act.bench [--threads 1] [--batch 8] [--full-res]

Wall-clock numbers are for README tables and docstrings; never gate tests on them.
"""

from __future__ import annotations

import argparse
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--full-res", action="store_true", help="also time the default at 480x640")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    small_in, small_out = default_features(image_hw=(96, 128))
    rows = [("default, 96x128", ACTConfig(input_features=small_in, output_features=small_out))]
    if args.full_res:
        full_in, full_out = default_features(image_hw=(480, 640))
        rows.insert(
            0, ("default, 480x640", ACTConfig(input_features=full_in, output_features=full_out))
        )
    rows.append(("edge preset, 96x128", act_edge_preset(image_hw=(96, 128))))
    print(f"forward+backward, batch {args.batch}, 3 cameras, {args.threads} thread(s)")
    for name, cfg in rows:
        n_params = sum(p.numel() for p in ACTPolicy(cfg).parameters()) / 1e6
        fwd_bwd, step = time_train_step(cfg, args.batch, repeats=1 if "480" in name else 3)
        print(f"  {name:22s} {n_params:5.1f}M params  fwd+bwd {fwd_bwd:7.3f} s  step {step:7.3f} s")


if __name__ == "__main__":
    main()
