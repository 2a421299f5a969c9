"""Training configuration (field names follow LeRobot's TrainPipelineConfig where they match)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from edgevla.errors import BadInput


@dataclass(frozen=True)
class TrainConfig:
    """How to train. `steps`, `batch_size`, `save_freq`, `log_freq`, `seed` as in LeRobot."""

    policy: Literal["act", "smolvla"] = "act"
    preset: Literal["edge", "default", "tiny"] = "edge"
    """edge: sized for a 2-core CPU; default: LeRobot's defaults; tiny: for tests and smoke runs"""
    dataset: tuple[Path, ...] = (Path("datasets/teabag"),)
    out: Path = Path("runs/act")
    steps: int = 20_000
    batch_size: int = 8
    save_freq: int = 2_000
    """checkpoint (and validation loss) every N steps; the paper used 20k"""
    log_freq: int = 50
    seed: int = 1000
    lr: float | None = None
    """override the policy's optimizer_lr (and backbone lr for ACT)"""
    grad_clip_norm: float = 10.0
    ema_decay: float | None = None
    """keep an exponential moving average of the weights (e.g. 0.999, about the last 1000
    steps) and save it as each checkpoint's model; off in LeRobot's recipes"""
    augment: bool = True
    """random shifts (+-4 px) and brightness/contrast jitter on camera images"""
    val_batches: int = 20
    """validation batches per checkpoint (batch_size each, fixed order)"""
    threads: int | None = None
    """torch intra-op threads (default: all cores)"""
    resume: bool = False
    pretrained_path: Path | None = None
    """start from this checkpoint's weights (fine-tuning, LeRobot's --policy.path): a fresh
    optimizer, schedule and step count; the network must match --policy/--preset/--overrides"""
    frame_cache: Path | None = None
    """keep decoded video frames in this directory between runs (a later run skips decoding;
    ~5 GB for 48k frames of three 96x128 cameras), e.g. ~/.cache/edgevla/frames"""
    max_minutes: float | None = None
    """stop, with a checkpoint, once training wall time (summed over resumes) reaches this"""
    overrides: tuple[str, ...] = field(default_factory=tuple)
    """policy config overrides, KEY=VALUE (JSON values), e.g. chunk_size=50"""

    def __post_init__(self) -> None:
        for flag in ("steps", "batch_size", "save_freq", "log_freq"):
            if getattr(self, flag) < 1:
                raise BadInput(
                    f"{flag}={getattr(self, flag)}: steps, batch_size, save_freq and log_freq "
                    "must be >= 1",
                    field=_flag(flag),
                )
        if not self.dataset:
            raise BadInput("give at least one dataset folder", field="--dataset")
        if self.pretrained_path is not None and not Path(self.pretrained_path).is_dir():
            raise BadInput("checkpoint folder not found", path=self.pretrained_path,
                           field="--pretrained-path")  # fmt: skip
        if self.grad_clip_norm <= 0:
            raise BadInput(
                f"grad_clip_norm={self.grad_clip_norm} must be > 0", field="--grad-clip-norm"
            )
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise BadInput(
                f"ema_decay={self.ema_decay} must be in (0, 1), e.g. 0.999", field="--ema-decay"
            )
        if self.max_minutes is not None and not (0 <= self.max_minutes < float("inf")):
            raise BadInput(
                f"max_minutes={self.max_minutes} must be a finite number >= 0 (or omitted)",
                field="--max-minutes",
            )
        if self.threads is not None and self.threads < 1:
            raise BadInput(f"threads={self.threads} must be >= 1 (or omitted)", field="--threads")
        if self.val_batches < 1:
            raise BadInput(f"val_batches={self.val_batches} must be >= 1", field="--val-batches")
        if self.lr is not None and not self.lr > 0:
            raise BadInput(f"lr={self.lr} must be > 0 (or omitted)", field="--lr")
        for o in self.overrides:
            if "=" not in o:
                raise BadInput(
                    f"override {o!r} must look like KEY=VALUE, e.g. chunk_size=50",
                    field="--overrides",
                )


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")
