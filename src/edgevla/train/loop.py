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

A checkpoint is published whole or not at all (train/run_folder.py), so a kill at any point
leaves the last complete one to --resume from. Ctrl-C finishes the step under way, saves a
checkpoint at it and raises TrainingInterrupted (a KeyboardInterrupt: exit status 130).
"""

from __future__ import annotations

import random
import signal
import threading
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from edgevla_runtime.features import ACTION_KEY, STATE_KEY

from edgevla.dataset.frame_cache import FrameCache
from edgevla.dataset.lerobot.reader import LeRobotDatasetReader
from edgevla.dataset.torch_dataset import ActionChunkDataset
from edgevla.errors import BadInput
from edgevla.jsonio import write_json_atomic
from edgevla.policies.checkpoint import (
    TRAIN_INFO_FILE,
    LeRobotCompatibilityWarning,
    warn_lerobot_incompatibilities,
)
from edgevla.policies.common.normalize import Normalizer
from edgevla.policies.factory import policy_class
from edgevla.progress import ProgressEvent, ProgressFn, no_progress
from edgevla.train import run_folder
from edgevla.train.batches import augment, batch_indices, collate
from edgevla.train.config import TrainConfig
from edgevla.train.ema import WeightAverage
from edgevla.train.plots import plot_curves
from edgevla.train.recipes import load_pretrained_parts, make_optimizer, policy_config
from edgevla.train.run_folder import STATE_FILE, pause_point, read_log

__all__ = [
    "TrainResult", "TrainingError", "TrainingInterrupted", "train", "train_step",
    "save_training_state", "batch_indices", "collate", "augment",
]  # fmt: skip


class TrainingError(RuntimeError):
    """Bad data or a diverged run; the message says what and where."""


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


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training: the step under way was finished and saved as `checkpoint`
    (None when no step had been done)."""

    def __init__(self, step: int, checkpoint: Path | None) -> None:
        saved = f"saved {checkpoint}; continue with --resume" if checkpoint else "nothing to save"
        super().__init__(f"stopped at step {step}; {saved}")
        self.step = step
        self.checkpoint = checkpoint


@dataclass
class TrainResult:
    """What a training session did. `notes`: things a person should know (a half-written
    checkpoint that was removed, a torn log line that was dropped)."""

    out: str
    policy: str
    preset: str
    parameters: int
    steps: int
    resumed_from: int
    wall_s: float
    total_train_wall_s: float
    stopped_by_time_budget: bool
    steps_per_s: float
    final_loss: float | None
    final_val_loss: float | None
    checkpoints: list[str]
    train_samples: int
    val_samples: int
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def save_training_state(
    out: Path,
    step: int,
    policy,
    stats,
    optimizer,
    scheduler,
    extra: dict[str, Any],
    train_info: dict[str, Any] | None = None,
) -> Path:
    """Publish the checkpoint of `step`: the policy folder (what eval runs), train_info.json
    (dataset fps, datasets, seed...: evaluation and deployment run the policy at the rate it
    learned) and training_state.pt (step, optimizer, scheduler, RNG states, `extra`).
    Written aside and renamed (run_folder.write_checkpoint): a kill never leaves half a one."""
    with run_folder.write_checkpoint(out, step) as tmp:
        policy.save_pretrained(tmp, stats)
        pause_point("model")
        if train_info is not None:
            write_json_atomic(tmp / TRAIN_INFO_FILE, {**train_info, "step": step}, indent=1)
        with open(tmp / STATE_FILE, "wb") as f:
            pause_point("state_open")
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
                f,
            )
        pause_point("state")
    return run_folder.checkpoint_dir(out, step)


def _wall_time_so_far(out: Path, state: dict[str, Any], step: int) -> float:
    """Training wall time (s) up to the checkpoint at `step`: from its training state, or for a
    checkpoint older than that field, the last wall_s logged at or before `step`."""
    if "train_wall_s" in state:
        return float(state["train_wall_s"])
    logged = [r["wall_s"] for r in read_log(out) if "wall_s" in r and r.get("step", 0) <= step]
    return float(logged[-1]) if logged else 0.0


def _check_features(policy_cfg, dataset: ActionChunkDataset) -> None:
    have = {STATE_KEY, ACTION_KEY, *dataset.image_keys}
    need = set(policy_cfg.input_features) | set(policy_cfg.output_features)
    missing = sorted(need - have)
    if missing:
        raise TrainingError(
            f"the dataset lacks features the policy needs: {missing} (it has {sorted(have)})"
        )


# --- the steps of `train` ---


@dataclass
class _Data:
    fps: int
    policy_cfg: Any
    train: ActionChunkDataset
    val: ActionChunkDataset | None


@dataclass
class _Model:
    policy: torch.nn.Module
    normalizer: Normalizer
    optimizer: Any
    scheduler: Any
    stats: Any
    ema: WeightAverage | None = None

    @property
    def saved(self) -> torch.nn.Module:
        """What a checkpoint holds and evaluation runs: the average when there is one."""
        return self.ema.model if self.ema is not None else self.policy


def check_inputs(cfg: TrainConfig) -> None:
    """Refuse what can be refused before anything loads (the messages name the flag)."""
    for path in cfg.dataset:
        if not Path(path).is_dir():
            raise BadInput(
                "dataset folder not found; record one with `edgevla record`", path=path,
                field="--dataset",
            )  # fmt: skip
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise BadInput("is a file; --out must be a run folder", path=out, field="--out")


def load_data(cfg: TrainConfig) -> _Data:
    """Readers, the policy config they imply, and the train / held-out (val) sample sets."""
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
    return _Data(rates[0], pcfg, train_ds, val_ds)


def build_model(cfg: TrainConfig, data: _Data) -> _Model:
    """Seed every RNG, then the policy, its normaliser, optimizer and schedule."""
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed % 2**32)
    random.seed(cfg.seed)
    stats = data.train.stats
    policy = policy_class(cfg.policy)(data.policy_cfg)
    normalizer = Normalizer(stats, data.policy_cfg.normalization_modes())
    optimizer, scheduler = make_optimizer(policy, data.policy_cfg, cfg)
    return _Model(policy, normalizer, optimizer, scheduler, stats)


def start_fresh(cfg: TrainConfig, data: _Data, model: _Model, lock: run_folder.RunLock) -> None:
    """Pre-trained parts (or a whole checkpoint) in, the average started, the run folder made
    with an empty log."""
    load_pretrained_parts(model.policy, data.policy_cfg)
    if cfg.pretrained_path is not None:
        warm_start(model.policy, cfg)
    if cfg.ema_decay is not None:
        model.ema = WeightAverage(model.policy, cfg.ema_decay)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    lock.acquire()
    run_folder.log_path(out).write_text("")
    write_json_atomic(out / run_folder.CONFIG_FILE, asdict(cfg), indent=1)


def warm_start(policy: torch.nn.Module, cfg: TrainConfig) -> None:
    """Every weight from cfg.pretrained_path, refusing another policy type or any name or shape
    that does not match the network this run built (the message lists them)."""
    from edgevla.policies.checkpoint import Checkpoint, load_weights_strict

    Checkpoint.open(cfg.pretrained_path, expected_type=cfg.policy)
    load_weights_strict(policy, cfg.pretrained_path)


def resume_from(
    cfg: TrainConfig, folder: Path, model: _Model, notes: list[str]
) -> tuple[int, float]:
    """Load the checkpoint's weights, optimizer, schedule and RNG states; cut the log back to
    its step. Returns (its step, training wall time up to it)."""
    try:
        state = torch.load(folder / STATE_FILE, weights_only=False)
    except Exception as e:  # an unreadable pickle raises any of several types
        raise TrainingError(
            f"{folder / STATE_FILE} cannot be read ({type(e).__name__}: {e}); move the folder "
            "away to resume from the checkpoint before it"
        ) from e
    _check_same_network(cfg, folder, model)
    loaded = policy_class(cfg.policy).from_pretrained(folder)
    # With an EMA the checkpoint's model is the average; the raw weights are in the state.
    model.policy.load_state_dict(state.get("raw_model") or loaded.state_dict())
    if cfg.ema_decay is not None:
        model.ema = WeightAverage(
            model.policy, cfg.ema_decay, updates=int(state.get("ema_updates", 0))
        )
        if "raw_model" in state:
            model.ema.model.load_state_dict(loaded.state_dict())
    model.optimizer.load_state_dict(state["optimizer"])
    model.scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    np.random.set_state(state["numpy_rng"])
    random.setstate(state["python_rng"])
    start = int(state["step"])
    out = Path(cfg.out)
    wall_before = _wall_time_so_far(out, state, start)
    run_folder.truncate_log(out, start, notes.append)
    return start, wall_before


def _check_same_network(cfg: TrainConfig, folder: Path, model: _Model) -> None:
    """A resume builds the network from this call's --policy/--preset/--overrides: refuse, naming
    the fields, when its parameters are not the checkpoint's (rather than PyTorch's screen of
    missing and unexpected keys). Fields that change no parameter (a path, the lr) may differ."""
    from safetensors import safe_open

    from edgevla.policies.checkpoint import WEIGHTS_FILE, Checkpoint

    checkpoint = Checkpoint.open(folder, expected_type=cfg.policy)  # a damaged file: one line
    try:
        with safe_open(str(folder / WEIGHTS_FILE), "pt") as f:
            saved = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
    except Exception as e:  # safetensors' own error type derives from Exception only
        raise BadInput(f"cannot be read ({e}); move {folder.name} away to resume from the "
                       "checkpoint before it", path=folder / WEIGHTS_FILE) from None  # fmt: skip
    asked = {k: tuple(v.shape) for k, v in model.policy.state_dict().items()}
    if saved == asked:
        return
    was = checkpoint.config.to_json_dict()
    now = model.policy.config.to_json_dict()
    differ = [f"{k} {was.get(k)!r} -> {now.get(k)!r}" for k in sorted(was.keys() | now.keys())
              if was.get(k) != now.get(k)]  # fmt: skip
    first = run_folder.read_config(Path(cfg.out))
    how = ("" if first is None else f" (it began as --preset {first.get('preset')} --overrides "
           f"{' '.join(first.get('overrides') or []) or '(none)'})")  # fmt: skip
    raise BadInput(
        f"{folder.name} is not the network --preset {cfg.preset} builds: "
        f"{'; '.join(differ) or 'the same config, other parameters'}; resume with the run's own "
        f"--preset and --overrides{how}",
        path=cfg.out,
    )


def check_time_left(cfg: TrainConfig, start: int, wall_before: float) -> None:
    if cfg.max_minutes is None or not start or start >= cfg.steps:
        return
    if wall_before >= cfg.max_minutes * 60:
        raise TrainingError(
            f"{cfg.out} has already trained {wall_before / 60:.1f} min (step {start}), the whole "
            f"--max-minutes {cfg.max_minutes:g}; raise --max-minutes to continue"
        )


def one_step(cfg: TrainConfig, data: _Data, model: _Model, step: int) -> dict[str, float]:
    """Batch `step` (deterministic in seed and step), augmented, one optimizer step, the EMA."""
    idx = batch_indices(cfg.seed, step, cfg.batch_size, len(data.train))
    batch = collate([data.train[int(i)] for i in idx])
    check_finite(batch, f"step {step}, samples {idx.tolist()}")
    if cfg.augment:
        augment(batch, torch.Generator().manual_seed(cfg.seed * 1_000_003 + step))
    metrics = train_step(
        model.policy, model.normalizer, model.optimizer, model.scheduler, batch, cfg.grad_clip_norm
    )
    if model.ema is not None:
        model.ema.update(model.policy)
    return metrics


def save(cfg: TrainConfig, data: _Data, model: _Model, step: int, wall_s: float, val_loss) -> Path:
    extra: dict[str, Any] = {"val_loss": val_loss, "train_wall_s": wall_s}
    if model.ema is not None:
        extra |= {"raw_model": model.policy.state_dict(), "ema_updates": model.ema.updates}
    info = {
        "policy": cfg.policy,
        "preset": cfg.preset,
        "fps": data.fps,
        "datasets": [str(p) for p in cfg.dataset],
        "seed": cfg.seed,
        "batch_size": cfg.batch_size,
        "ema_decay": cfg.ema_decay,
        "train_wall_s": wall_s,
    }
    return save_training_state(
        Path(cfg.out), step, model.saved, model.stats, model.optimizer, model.scheduler, extra, info
    )


class _CtrlC:
    """While inside: the first Ctrl-C only sets `requested` (the loop finishes its step, saves
    and stops); a second one interrupts at once. Outside the main thread it does nothing."""

    def __init__(self) -> None:
        self.requested = False
        self._installed = False
        self._previous: Any = None

    def _handle(self, signum, frame) -> None:
        self.requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def __enter__(self) -> _CtrlC:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.getsignal(signal.SIGINT)
            if self._previous is not signal.SIG_IGN:  # started with Ctrl-C ignored: keep it so
                signal.signal(signal.SIGINT, self._handle)
                self._installed = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            previous = self._previous
            signal.signal(signal.SIGINT, previous if previous is not None else signal.SIG_DFL)


def train(cfg: TrainConfig, progress: ProgressFn | None = None) -> TrainResult:
    """Train (or with cfg.resume, continue) a policy; checkpoints land in cfg.out/checkpoints/.

    Raises TrainingInterrupted (a KeyboardInterrupt) after saving, when Ctrl-C stops it."""
    check_inputs(cfg)
    report = progress or no_progress
    notes: list[str] = []
    out = Path(cfg.out)
    lock = run_folder.RunLock(out)
    try:
        if out.is_dir():
            lock.acquire()
            run_folder.remove_partial(out, notes.append)
        existing = run_folder.list_checkpoints(out, notes.append, clean=False)
        if existing and not cfg.resume:
            raise FileExistsError(
                f"{out} already has checkpoints ({existing[-1][1].name}); pass --resume to "
                "continue, or another --out"
            )
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        data = load_data(cfg)
        model = build_model(cfg, data)
        if cfg.resume and existing:
            start, wall_before = resume_from(cfg, existing[-1][1], model, notes)
        else:
            start, wall_before = 0, 0.0
            start_fresh(cfg, data, model, lock)
        check_time_left(cfg, start, wall_before)
        if start >= cfg.steps:
            notes.append(f"{out} is already at step {start} (>= --steps {cfg.steps}): nothing "
                         "to train; raise --steps to continue")  # fmt: skip
        # a checkpoint LeRobot cannot load is said once, before training, not at every save
        # (Python's once-filters forget whenever a library touches the filters, as torch does)
        warn_lerobot_incompatibilities(model.policy.config, stacklevel=3)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=LeRobotCompatibilityWarning)
            result = _steps(cfg, data, model, start, wall_before, report)
    finally:
        lock.release()
    result.notes = notes + result.notes
    return result


def _steps(
    cfg: TrainConfig, data: _Data, model: _Model, start: int, wall_before: float, report
) -> TrainResult:
    """Steps start..cfg.steps with logging, checkpoints, the time budget and Ctrl-C."""
    out = Path(cfg.out)
    task = f"train {cfg.policy}"
    budget_s = cfg.max_minutes * 60 if cfg.max_minutes is not None else None
    t_start = time.perf_counter()
    last_metrics: dict[str, float] = {}
    val_loss = None
    done, saved_at, stopped_early = start, None, False
    model.policy.train()
    report(ProgressEvent(task, start, cfg.steps))
    with _CtrlC() as ctrl_c:
        for step in range(start, cfg.steps):
            if ctrl_c.requested:
                break
            metrics = one_step(cfg, data, model, step)
            done = step + 1
            elapsed = time.perf_counter() - t_start
            rate = (done - start) / elapsed
            out_of_time = budget_s is not None and wall_before + elapsed >= budget_s
            last_step = done == cfg.steps or out_of_time
            if done % cfg.log_freq == 0 or last_step:
                run_folder.append_log(
                    out,
                    {"step": done, **metrics, "steps_per_s": rate, "wall_s": wall_before + elapsed},
                )
            last_metrics = metrics
            status = f"loss {metrics['loss']:.4f} | {rate:.2f} it/s"
            report(ProgressEvent(task, done, cfg.steps, status))
            if done % cfg.save_freq == 0 or last_step:
                if data.val is not None:
                    val_loss = validation_loss(
                        model.saved, model.normalizer, data.val, cfg.val_batches, cfg.batch_size
                    )
                    run_folder.append_log(out, {"step": done, "val_loss": val_loss})
                elapsed = time.perf_counter() - t_start  # validation counts as training time
                save(cfg, data, model, done, wall_before + elapsed, val_loss)
                saved_at = done
                plot_curves(out)
            if out_of_time:
                stopped_early = done < cfg.steps
                break
        if ctrl_c.requested:
            # No validation here: it would draw from torch's RNG (SmolVLA's noise) and the
            # resumed run would no longer match an uninterrupted one.
            wall = wall_before + time.perf_counter() - t_start
            if saved_at == done or (done == start and start > 0):
                path = run_folder.checkpoint_dir(out, done)  # saved already
            elif done > 0:
                path = save(cfg, data, model, done, wall, None)
            else:
                path = None
            raise TrainingInterrupted(done, path)
    wall = time.perf_counter() - t_start
    return TrainResult(
        out=str(out),
        policy=cfg.policy,
        preset=cfg.preset,
        parameters=sum(p.numel() for p in model.policy.parameters()),
        steps=done,
        resumed_from=start,
        wall_s=wall,
        total_train_wall_s=wall_before + wall,
        stopped_by_time_budget=stopped_early,
        steps_per_s=(done - start) / wall if wall > 0 else 0.0,
        final_loss=last_metrics.get("loss"),
        final_val_loss=val_loss,
        checkpoints=[p.name for _, p in run_folder.list_checkpoints(out, clean=False)],
        train_samples=len(data.train),
        val_samples=len(data.val) if data.val is not None else 0,
    )
