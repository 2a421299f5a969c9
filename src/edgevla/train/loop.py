"""`edgevla train`: one training loop for every policy.

    for step in steps:
        batch  = samples at batch_indices(seed, step)      # deterministic in (seed, step)
        batch  = augment(batch, generator(seed, step))     # deterministic in (seed, step)
        loss   = policy(normaliser(batch))                 # dropout uses torch's global RNG
        AdamW step, gradient clipping, lr schedule
        every save_freq: checkpoint + validation loss on the held-out split + curves PNG

A checkpoint holds the policy in LeRobot's layout (config.json, model.safetensors,
normalization_stats.safetensors) and training_state.pt (step, optimizer, scheduler and RNG
states). With --ema-decay the saved model is the moving average of the weights (what select
and eval should run) and training_state.pt also holds the raw weights. Since batches and
augmentation are functions of (seed, step), `--resume` continues bit-for-bit: the same losses
as a run that was never interrupted.

The model step (`train_step`) takes the policy, optimizer and batch and touches no global
state besides torch's RNG, so DDP or Accelerate can wrap it: give each rank its own slice of
batch_indices and wrap the policy in DistributedDataParallel (see the README).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
import tyro
from edgevla_runtime.features import ACTION_KEY, IMAGE_KEY_PREFIX, STATE_KEY

from edgevla.console import console, emit_json, progress, table
from edgevla.dataset.frame_cache import FrameCache
from edgevla.dataset.reader import LeRobotDatasetReader
from edgevla.dataset.torch_dataset import ActionChunkDataset
from edgevla.policies.checkpoint import TRAIN_INFO_FILE
from edgevla.policies.common.normalize import Normalizer
from edgevla.policies.factory import policy_class
from edgevla.train.config import TrainConfig
from edgevla.train.ema import WeightAverage
from edgevla.train.recipes import load_pretrained_parts, make_optimizer, policy_config

CHECKPOINTS = "checkpoints"
STATE_FILE = "training_state.pt"
LOG_FILE = "log.jsonl"


class TrainingError(RuntimeError):
    """Bad data or a diverged run; the message says what and where."""


def batch_indices(seed: int, step: int, batch_size: int, n: int) -> np.ndarray:
    """Sample indices of batch `step`: epochs are seeded permutations, concatenated."""
    start = step * batch_size
    out = []
    while len(out) < batch_size:
        epoch, offset = divmod(start + len(out), n)
        perm = np.random.default_rng([seed, epoch]).permutation(n)
        take = min(batch_size - len(out), n - offset)
        out.extend(perm[offset : offset + take])
    return np.asarray(out)


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack tensors; other values (the task strings a VLA tokenizes) become lists."""
    return {
        k: torch.stack([s[k] for s in samples])
        if isinstance(v, torch.Tensor)
        else [s[k] for s in samples]
        for k, v in samples[0].items()
    }


def augment(batch: dict[str, torch.Tensor], generator: torch.Generator, max_shift: int = 4) -> None:
    """In place: per-image random shift (replicate padding) and brightness/contrast jitter."""
    for key in [k for k in batch if k.startswith(IMAGE_KEY_PREFIX)]:
        x = batch[key]  # (B, 3, H, W) in [0, 1]
        b, _, h, w = x.shape
        padded = torch.nn.functional.pad(x, (max_shift,) * 4, mode="replicate")
        dx = torch.randint(0, 2 * max_shift + 1, (b,), generator=generator)
        dy = torch.randint(0, 2 * max_shift + 1, (b,), generator=generator)
        shifted = torch.stack(
            [padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(b)]
        )
        brightness = 1 + (torch.rand(b, 1, 1, 1, generator=generator) - 0.5) * 0.3
        contrast = 1 + (torch.rand(b, 1, 1, 1, generator=generator) - 0.5) * 0.3
        mean = shifted.mean(dim=(1, 2, 3), keepdim=True)
        batch[key] = ((shifted - mean) * contrast + mean * brightness).clamp_(0, 1)


def check_finite(batch: dict[str, torch.Tensor], where: str) -> None:
    for k, v in batch.items():
        if isinstance(v, torch.Tensor) and v.is_floating_point() and not torch.isfinite(v).all():
            raise TrainingError(
                f"{where}: {k!r} contains NaN or inf; audit the dataset (edgevla audit)"
            )


def train_step(
    policy, normalizer: Normalizer, optimizer, scheduler, batch, grad_clip_norm: float
) -> dict[str, float]:
    """One optimisation step; returns the loss terms, grad norm and learning rate."""
    policy.train()
    loss, info = policy(normalizer.normalize(batch))
    if not torch.isfinite(loss):
        raise TrainingError(f"loss became {loss.item()} (terms {info}); lower the learning rate")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), grad_clip_norm)
    optimizer.step()
    scheduler.step()
    return {
        "loss": loss.item(),
        **info,
        "grad_norm": float(grad_norm),
        "lr": scheduler.get_last_lr()[0],
    }


@torch.no_grad()
def validation_loss(
    policy, normalizer, dataset: ActionChunkDataset, batches: int, batch_size: int
) -> float:
    """Mean loss over a fixed set of held-out samples, eval mode (ACT: L1 with z = 0)."""
    policy.eval()
    n = min(len(dataset), batches * batch_size)
    order = np.random.default_rng(0).permutation(len(dataset))[:n]
    total, count = 0.0, 0
    for i in range(0, n, batch_size):
        batch = collate([dataset[int(j)] for j in order[i : i + batch_size]])
        loss, _ = policy(normalizer.normalize(batch))
        total += loss.item() * len(batch[STATE_KEY])
        count += len(batch[STATE_KEY])
    policy.train()
    return total / max(1, count)


def checkpoint_dir(out: Path, step: int) -> Path:
    return out / CHECKPOINTS / f"step-{step:06d}"


def list_checkpoints(out: Path) -> list[Path]:
    root = Path(out) / CHECKPOINTS
    if not root.is_dir():
        return []
    return sorted(
        p for p in root.iterdir() if p.name.startswith("step-") and (p / STATE_FILE).is_file()
    )


def save_checkpoint(
    out: Path,
    step: int,
    policy,
    stats,
    optimizer,
    scheduler,
    extra: dict[str, Any],
    train_info: dict[str, Any] | None = None,
) -> Path:
    """Write the checkpoint to a temporary folder and rename it: a kill never leaves half a one.

    train_info (dataset fps, datasets, seed...) goes to train_info.json beside the weights, so
    evaluation and deployment run the policy at the rate it learned."""
    final = checkpoint_dir(out, step)
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    policy.save_pretrained(tmp, stats)
    if train_info is not None:
        (tmp / TRAIN_INFO_FILE).write_text(json.dumps({**train_info, "step": step}, indent=1))
    torch.save(
        {
            "step": step,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "numpy_rng": np.random.get_state(),
            "python_rng": random.getstate(),
            **extra,
        },
        tmp / STATE_FILE,
    )
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    return final


def _wall_time_so_far(out: Path, state: dict[str, Any], step: int) -> float:
    """Training wall time (s) up to the checkpoint at `step`: from its training state, or for a
    checkpoint older than that field, the last wall_s logged at or before `step`."""
    if "train_wall_s" in state:
        return float(state["train_wall_s"])
    logged = [r["wall_s"] for r in read_log(out) if "wall_s" in r and r.get("step", 0) <= step]
    return float(logged[-1]) if logged else 0.0


def _append_log(out: Path, record: dict[str, Any]) -> None:
    with open(out / LOG_FILE, "a") as f:
        f.write(json.dumps(record) + "\n")


def read_log(out: Path) -> list[dict[str, Any]]:
    path = Path(out) / LOG_FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _truncate_log(out: Path, step: int) -> None:
    kept = [r for r in read_log(out) if r.get("step", 0) <= step]
    (out / LOG_FILE).write_text("".join(json.dumps(r) + "\n" for r in kept))


def plot_curves(out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    log = read_log(out)
    train = [r for r in log if "loss" in r]
    val = [r for r in log if "val_loss" in r]
    fig, ax = plt.subplots(figsize=(7, 4))
    if train:
        ax.plot([r["step"] for r in train], [r["loss"] for r in train], label="train loss", lw=1)
        if "l1_loss" in train[0]:
            ax.plot(
                [r["step"] for r in train], [r["l1_loss"] for r in train], label="train L1", lw=1
            )
    if val:
        ax.plot(
            [r["step"] for r in val],
            [r["val_loss"] for r in val],
            "o-",
            label="validation loss (held-out cluster)",
        )
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(f"training curves: {out}")
    fig.tight_layout()
    path = out / "curves.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _check_features(policy_cfg, dataset: ActionChunkDataset) -> None:
    have = {STATE_KEY, ACTION_KEY, *dataset.image_keys}
    need = set(policy_cfg.input_features) | set(policy_cfg.output_features)
    missing = sorted(need - have)
    if missing:
        raise TrainingError(
            f"the dataset lacks features the policy needs: {missing} (it has {sorted(have)})"
        )


def train(cfg: TrainConfig, quiet: bool = False) -> dict[str, Any]:
    """Train (or resume) and return a summary. Checkpoints land in cfg.out/checkpoints/."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    existing = list_checkpoints(out)
    if existing and not cfg.resume:
        raise FileExistsError(
            f"{out} already has checkpoints ({existing[-1].name}); pass --resume to continue, or another --out"
        )
    readers = [LeRobotDatasetReader(p) for p in cfg.dataset]
    rates = sorted({r.fps for r in readers})
    if len(rates) > 1:
        raise TrainingError(
            f"the datasets were recorded at different rates {rates} fps: an action chunk would "
            "mean different speeds; train on datasets of one rate (re-record with --fps)"
        )
    pcfg = policy_config(cfg, readers[0])
    cache = FrameCache(cfg.frame_cache) if cfg.frame_cache is not None else None
    train_ds = ActionChunkDataset(
        readers, chunk_size=pcfg.chunk_size, split="train", frame_cache=cache
    )
    has_val = any(ep.get("split") == "val" for r in readers for ep in r.episodes)
    val_ds = (
        ActionChunkDataset(readers, chunk_size=pcfg.chunk_size, split="val", frame_cache=cache)
        if has_val
        else None
    )
    _check_features(pcfg, train_ds)
    stats = train_ds.stats

    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed % 2**32)
    random.seed(cfg.seed)
    policy = policy_class(cfg.policy)(pcfg)
    normalizer = Normalizer(stats, pcfg.normalization_modes())
    optimizer, scheduler = make_optimizer(policy, pcfg, cfg)
    start = 0
    wall_before = 0.0  # training wall time of earlier sessions of this run (resumes)
    ema = None
    if cfg.resume and existing:
        last = existing[-1]
        state = torch.load(last / STATE_FILE, weights_only=False)
        loaded = policy_class(cfg.policy).from_pretrained(last)
        # With an EMA the checkpoint's model is the average; the raw weights are in the state.
        policy.load_state_dict(state.get("raw_model") or loaded.state_dict())
        if cfg.ema_decay is not None:
            ema = WeightAverage(policy, cfg.ema_decay, updates=int(state.get("ema_updates", 0)))
            if "raw_model" in state:
                ema.model.load_state_dict(loaded.state_dict())
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        np.random.set_state(state["numpy_rng"])
        random.setstate(state["python_rng"])
        start = int(state["step"])
        wall_before = _wall_time_so_far(out, state, start)
        _truncate_log(out, start)
    else:
        load_pretrained_parts(policy, pcfg)
        if cfg.ema_decay is not None:
            ema = WeightAverage(policy, cfg.ema_decay)
        out.mkdir(parents=True, exist_ok=True)
        (out / LOG_FILE).write_text("")
        (out / "train_config.json").write_text(
            json.dumps(
                {k: str(v) if isinstance(v, Path) else v for k, v in cfg.__dict__.items()},
                indent=1,
                default=str,
            )
        )
    policy.train()
    n_params = sum(p.numel() for p in policy.parameters())
    t_start = time.perf_counter()
    last_metrics: dict[str, float] = {}
    val_loss = None
    budget_s = cfg.max_minutes * 60 if cfg.max_minutes is not None else None
    stopped_early = False
    done = start
    if budget_s is not None and start and start < cfg.steps and wall_before >= budget_s:
        raise TrainingError(
            f"{out} has already trained {wall_before / 60:.1f} min (step {start}), the whole "
            f"--max-minutes {cfg.max_minutes:g}; raise --max-minutes to continue"
        )
    with progress(quiet) as bar:
        task = bar.add_task(f"train {cfg.policy}", total=cfg.steps, completed=start, status="")
        for step in range(start, cfg.steps):
            idx = batch_indices(cfg.seed, step, cfg.batch_size, len(train_ds))
            batch = collate([train_ds[int(i)] for i in idx])
            check_finite(batch, f"step {step}, samples {idx.tolist()}")
            if cfg.augment:
                augment(batch, torch.Generator().manual_seed(cfg.seed * 1_000_003 + step))
            metrics = train_step(
                policy, normalizer, optimizer, scheduler, batch, cfg.grad_clip_norm
            )
            if ema is not None:
                ema.update(policy)
            done = step + 1
            elapsed = time.perf_counter() - t_start
            rate = (done - start) / elapsed
            out_of_time = budget_s is not None and wall_before + elapsed >= budget_s
            last_step = done == cfg.steps or out_of_time
            if done % cfg.log_freq == 0 or last_step:
                _append_log(
                    out,
                    {"step": done, **metrics, "steps_per_s": rate, "wall_s": wall_before + elapsed},
                )
            last_metrics = metrics
            bar.update(task, advance=1, status=f"loss {metrics['loss']:.4f} | {rate:.2f} it/s")
            if done % cfg.save_freq == 0 or last_step:
                saved = ema.model if ema is not None else policy  # what evaluation will run
                if val_ds is not None:
                    val_loss = validation_loss(
                        saved, normalizer, val_ds, cfg.val_batches, cfg.batch_size
                    )
                    _append_log(out, {"step": done, "val_loss": val_loss})
                elapsed = time.perf_counter() - t_start  # validation counts as training time
                extra = {"val_loss": val_loss, "train_wall_s": wall_before + elapsed}
                if ema is not None:
                    extra |= {"raw_model": policy.state_dict(), "ema_updates": ema.updates}
                save_checkpoint(
                    out,
                    done,
                    saved,
                    stats,
                    optimizer,
                    scheduler,
                    extra,
                    {
                        "policy": cfg.policy,
                        "preset": cfg.preset,
                        "fps": rates[0],
                        "datasets": [str(p) for p in cfg.dataset],
                        "seed": cfg.seed,
                        "batch_size": cfg.batch_size,
                        "ema_decay": cfg.ema_decay,
                        "train_wall_s": wall_before + elapsed,
                    },
                )
                plot_curves(out)
            if out_of_time:
                stopped_early = done < cfg.steps
                break
    wall = time.perf_counter() - t_start
    return {
        "out": str(out),
        "policy": cfg.policy,
        "preset": cfg.preset,
        "parameters": n_params,
        "steps": done,
        "resumed_from": start,
        "wall_s": wall,
        "total_train_wall_s": wall_before + wall,
        "stopped_by_time_budget": stopped_early,
        "steps_per_s": (done - start) / wall if wall > 0 else 0.0,
        "final_loss": last_metrics.get("loss"),
        "final_val_loss": val_loss,
        "checkpoints": [p.name for p in list_checkpoints(out)],
        "train_samples": len(train_ds),
        "val_samples": len(val_ds) if val_ds is not None else 0,
    }


@dataclass
class TrainArgs:
    """Train a policy on recorded datasets; checkpoints, validation loss, curves; --resume."""

    config: Annotated[TrainConfig, tyro.conf.OmitArgPrefixes]
    json: bool = False


def run_train(args: TrainArgs) -> dict[str, Any]:
    result = train(args.config, quiet=args.json)
    if args.json:
        emit_json(result)
    else:
        console.print(table("edgevla train", ["", "value"], [(k, v) for k, v in result.items()]))
    return result
