"""`edgevla pretrain`: pre-train a policy's vision encoder on labelled simulation frames.

Why: no ImageNet (or SigLIP) weights can be downloaded here, and a vision encoder trained from
scratch inside the policy learns slowly: ACT's trunk has frozen batch norm, which is the identity
from scratch, SmolVLA's ViT starts from noise, and 8-sample batches give a weak signal about
where the tea bag is. The simulator knows where everything is, so we render scenes like
the dataset's and teach the trunk to see them first:

    scene   = one of the dataset's own arm poses (train split), the bag on the table anywhere in
              the workspace outside the held-out cluster (70%), held at the tool (15%) or in the
              mug (15%), any yaw; posed and rendered by edgevla.sim.scenes
    labels  = LABEL_NAMES: bag position and yaw (as sin/cos of 2*yaw: the bag is symmetric under
              a half turn), tool position, bag relative to the tool, joint angles
    model   = the policy's vision encoder on every camera, each feature location reduced to 32
              values, flattened over cameras, MLP -> standardised labels (MSE)

The policy's config is built exactly as `edgevla train` builds it (same --policy, --preset,
--overrides), and the images are normalised and augmented as its training does, so the
features are the ones the policy will see. What comes out:
    ACT      backbone.safetensors: the ResNet trunk trained with ordinary nn.BatchNorm2d, in
             torchvision's layout; its batch statistics become ACT's frozen ones when
             `edgevla train --overrides pretrained_backbone_weights=RUN/backbone.safetensors`
             loads it.
    SmolVLA  vision.safetensors: the ViT and pixel-shuffle connector under the policy's own
             parameter names (vision.*, connector.*); `edgevla train --policy smolvla
             --overrides load_vlm_weights=true vlm_model_name=RUN/vision.safetensors`.
Rendering counts in the time budget (--max-minutes), so a pre-training of 10 minutes plus ACT
with --max-minutes 50 is a 60-minute training.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from edgevla_runtime.features import MOTOR_NAMES, image_key
from safetensors.torch import save_file
from torch import Tensor, nn

from edgevla.dataset.lerobot.reader import LeRobotDatasetReader
from edgevla.errors import BadInput
from edgevla.jsonio import write_json_atomic
from edgevla.policies.common.contract import VisionPart
from edgevla.policies.common.normalize import Normalizer, load_stats
from edgevla.policies.common.schedules import warmup_cosine
from edgevla.progress import ProgressEvent, ProgressFn, no_progress
from edgevla.sim.scene import SceneConfig
from edgevla.sim.scenes import LABEL_NAMES, SceneSource, render_scenes
from edgevla.train.batches import augment
from edgevla.train.config import TrainConfig
from edgevla.train.plots import plot_pretraining
from edgevla.train.recipes import policy_config

INFO_FILE = "pretrain_info.json"
LOG_FILE = "log.jsonl"


@dataclass(frozen=True)
class PretrainConfig:
    """What to render and how long to train the trunk."""

    dataset: Path = Path("datasets/teabag")
    """arm poses, cameras, image size, rate, held-out cluster and image statistics come from it"""
    out: Path = Path("runs/backbone")
    policy: Literal["act", "smolvla"] = "act"
    preset: Literal["edge", "default", "tiny"] = "edge"
    """the policy and preset (as `edgevla train`) whose vision encoder is pre-trained"""
    overrides: tuple[str, ...] = ()
    """policy config overrides, KEY=VALUE, as `edgevla train --overrides`"""
    scenes: int = 20_000
    val_scenes: int = 500
    batch_size: int = 32
    """scenes per step (x cameras images)"""
    epochs: int = 3
    lr: float = 1e-3
    weight_decay: float = 1e-4
    max_minutes: float | None = 10.0
    """stop once rendering + training reach this; the cosine schedule is fitted to it"""
    log_freq: int = 25
    val_freq: int = 200
    """validation (loss and errors in cm / degrees on the val scenes) every N steps"""
    seed: int = 0
    threads: int | None = None
    """torch intra-op threads (default: all cores)"""

    def __post_init__(self) -> None:
        if self.batch_size < 2:
            raise BadInput(f"batch_size={self.batch_size} must be >= 2", field="--batch-size")
        if self.scenes < 2 * self.batch_size:
            raise BadInput(
                f"scenes={self.scenes} must be >= 2 * batch_size ({2 * self.batch_size})",
                field="--scenes",
            )
        if self.val_scenes < 1:
            raise BadInput(f"val_scenes={self.val_scenes} must be >= 1", field="--val-scenes")
        for flag in ("log_freq", "val_freq", "epochs"):
            if getattr(self, flag) < 1:
                raise BadInput(
                    f"{flag}={getattr(self, flag)} must be >= 1",
                    field="--" + flag.replace("_", "-"),
                )
        if self.lr <= 0:
            raise BadInput(f"lr={self.lr} must be > 0", field="--lr")
        if self.max_minutes is not None and not 0 < self.max_minutes < math.inf:
            raise BadInput(
                f"max_minutes={self.max_minutes} must be a positive number", field="--max-minutes"
            )
        if self.threads is not None and self.threads < 1:
            raise BadInput(f"threads={self.threads} must be >= 1 (or omitted)", field="--threads")
        for o in self.overrides:
            if "=" not in o:
                raise BadInput(
                    f"override {o!r} must look like KEY=VALUE, e.g. chunk_size=50",
                    field="--overrides",
                )


@dataclass
class PretrainResult:
    """What a pre-training did; `use_with` is the `edgevla train` line that loads the weights."""

    out: str
    weights: str
    policy: str
    preset: str
    dataset: str
    scenes: int
    val_scenes: int
    steps: int
    epochs_seen: float
    render_s: float
    wall_s: float
    final_val_loss: float
    bag_xy_error_cm: float
    tcp_error_cm: float
    bag_rel_error_cm: float
    joint_error_deg: float
    use_with: str
    figure: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def scene_source(root: Path) -> SceneSource:
    """The scene sampler's input read from a dataset: arm poses of its train split, bag starts
    of its held-out split, the held-out cluster's radius, its cameras, image size and rate."""
    reader = LeRobotDatasetReader(root)
    episodes = reader.episodes
    train = [e for e in episodes if e.get("split", "train") == "train"]
    if not train:
        raise BadInput("has no train-split episodes to take arm poses from", path=root)
    poses = np.concatenate([reader.frames(e["episode_index"]).state for e in train])
    val = [e for e in episodes if e.get("split") == "val"]
    if any(e.get("start_pose") is None for e in val):
        raise BadInput(
            "held-out episodes lack start_pose, so the held-out cluster cannot be kept out of "
            "the pre-training scenes; record the dataset with edgevla record",
            path=root,
        )
    held_out = [e["start_pose"][:2] for e in val]
    calibration = reader.calibration or {}
    radius = float(calibration.get("plan_config", {}).get("cluster_size_m", 0.1))
    h, w = reader.image_hw
    scene = SceneConfig(
        image_height=h, image_width=w, fps=int(reader.info["fps"]), cameras=tuple(reader.cameras)
    )
    return SceneSource(
        poses.astype(np.float64), np.asarray(held_out, float).reshape(-1, 2), radius, scene
    )


class TrunkProbe(nn.Module):
    """The vision encoder under training plus a small head reading all cameras' features."""

    def __init__(self, part: VisionPart, n_cameras: int, image_hw: tuple[int, int], n_labels: int):
        super().__init__()
        self.encoder = part.encoder.requires_grad_(True)  # presets may freeze it for fine-tuning
        self.reduce = part.reduce
        self.eval()  # the shape probe must not touch batch-norm statistics
        with torch.no_grad():
            n_features = self._features(torch.zeros(2, 3, *image_hw)).shape[1]
        self.train()
        self.head = nn.Sequential(
            nn.Linear(n_cameras * n_features, 256), nn.ReLU(), nn.Linear(256, n_labels)
        )

    def _features(self, images: Tensor) -> Tensor:  # (N, 3, H, W) -> (N, F)
        # A (N, C, h, w) map goes through a 1x1 conv, (N, T, D) tokens through a linear layer.
        return self.reduce(self.encoder(images)).flatten(1)

    def forward(self, images: Tensor) -> Tensor:
        """images (B, K, 3, H, W), normalised -> standardised labels (B, L)."""
        b, k = images.shape[:2]
        return self.head(self._features(images.flatten(0, 1)).unflatten(0, (b, k)).flatten(1))


def _batch_images(
    images_u8: Tensor, cams: tuple[str, ...], normalizer: Normalizer, gen: torch.Generator | None
) -> Tensor:
    """uint8 (B, K, 3, H, W) -> normalised float (B, K, 3, H, W), augmented when gen is given."""
    batch = {image_key(c): images_u8[:, k].float().div_(255.0) for k, c in enumerate(cams)}
    if gen is not None:
        augment(batch, gen)
    batch = normalizer.normalize(batch)
    return torch.stack([batch[image_key(c)] for c in cams], dim=1)


def _errors(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """Mean errors in physical units over scenes: cm for positions, degrees for joints."""
    col = {n: i for i, n in enumerate(LABEL_NAMES)}

    def dist_cm(names: tuple[str, ...]) -> float:
        idx = [col[n] for n in names]
        return float(np.linalg.norm(pred[:, idx] - true[:, idx], axis=1).mean() * 100)

    joints = [col[f"{m}_rad"] for m in MOTOR_NAMES]
    return {
        "bag_xy_error_cm": dist_cm(("bag_x", "bag_y")),
        "tcp_error_cm": dist_cm(("tcp_x", "tcp_y", "tcp_z")),
        "bag_rel_error_cm": dist_cm(("bag_rel_x", "bag_rel_y", "bag_rel_z")),
        "joint_error_deg": float(np.degrees(np.abs(pred[:, joints] - true[:, joints]).mean())),
    }


@dataclass
class _Scenes:
    """Rendered scenes: the first n train the probe, the rest validate it."""

    cams: tuple[str, ...]
    image_hw: tuple[int, int]
    images: Tensor  # (n + val, K, 3, H, W) uint8
    labels: np.ndarray  # (n + val, L) in physical units
    targets: Tensor  # (n + val, L) standardised with the train scenes' mean and std
    label_mean: np.ndarray
    label_std: np.ndarray
    n: int


def render(cfg: PretrainConfig, report: ProgressFn) -> _Scenes:
    source = scene_source(cfg.dataset)
    images, labels = render_scenes(source, cfg.scenes + cfg.val_scenes, cfg.seed, report)
    n = cfg.scenes
    label_mean = labels[:n].mean(axis=0)
    label_std = labels[:n].std(axis=0) + 1e-6
    return _Scenes(
        cams=tuple(source.scene.cameras),
        image_hw=(source.scene.image_height, source.scene.image_width),
        images=torch.from_numpy(images),
        labels=labels,
        targets=torch.from_numpy((labels - label_mean) / label_std),
        label_mean=label_mean,
        label_std=label_std,
        n=n,
    )


class _Validator:
    """Loss and physical errors of the probe on the validation scenes."""

    def __init__(self, model: TrunkProbe, scenes: _Scenes, normalizer: Normalizer):
        self.model, self.scenes, self.normalizer = model, scenes, normalizer

    def __call__(self) -> tuple[float, dict[str, float], np.ndarray]:
        s, model = self.scenes, self.model
        total = len(s.labels)
        model.eval()
        preds = []
        with torch.no_grad():
            for lo in range(s.n, total, 64):
                hi = min(lo + 64, total)
                preds.append(model(_batch_images(s.images[lo:hi], s.cams, self.normalizer, None)))
        model.train()
        pred = torch.cat(preds)
        loss = float(nn.functional.mse_loss(pred, s.targets[s.n :]))
        pred_units = pred.numpy() * s.label_std + s.label_mean
        return loss, _errors(pred_units, s.labels[s.n :]), pred_units


def fit_probe(
    cfg: PretrainConfig,
    model: TrunkProbe,
    scenes: _Scenes,
    normalizer: Normalizer,
    validate: _Validator,
    t0: float,
    report: ProgressFn,
) -> tuple[int, list[dict[str, Any]]]:
    """AdamW on seeded epoch permutations, warm-up + cosine fitted to the time left after 20
    steps; returns (steps done, log records)."""
    budget_s = cfg.max_minutes * 60 if cfg.max_minutes is not None else math.inf
    n = scenes.n
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = n // cfg.batch_size
    planned = cfg.epochs * steps_per_epoch
    warmup = min(50, planned // 10)
    step, t_train = 0, time.perf_counter()
    log: list[dict[str, Any]] = []
    model.train()
    report(ProgressEvent("pretrain trunk", 0, planned))
    while step < planned:
        epoch, offset = divmod(step, steps_per_epoch)
        perm = np.random.default_rng([cfg.seed, epoch]).permutation(n)
        idx = torch.from_numpy(perm[offset * cfg.batch_size : (offset + 1) * cfg.batch_size])
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        x = _batch_images(scenes.images[idx], scenes.cams, normalizer, gen)
        lr = cfg.lr * warmup_cosine(step, warmup, planned)
        for g in opt.param_groups:
            g["lr"] = lr
        loss = nn.functional.mse_loss(model(x), scenes.targets[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_value = loss.item()
        step += 1
        elapsed = time.perf_counter() - t0
        if step == 20 and budget_s < math.inf:
            # Fit the schedule to the time left: a cosine that ends when the budget does.
            per_step = (time.perf_counter() - t_train) / step
            fits = step + int((budget_s - elapsed) / per_step * 0.97)
            planned = max(step + 1, min(planned, fits))
        if step % cfg.log_freq == 0 or step == planned:
            log.append({"step": step, "loss": loss_value, "lr": lr, "wall_s": elapsed})
        if step % cfg.val_freq == 0 or step == planned:
            val_loss, errors, _ = validate()
            log.append({"step": step, "val_loss": val_loss, **errors})
        report(ProgressEvent("pretrain trunk", step, planned, f"loss {loss_value:.4f}"))
        if elapsed >= budget_s:
            break
    return step, log


def pretrain(cfg: PretrainConfig, progress: ProgressFn | None = None) -> PretrainResult:
    """Render scenes, train the policy's vision part with a probe head on their labels, write
    its weights (and log, info, figure) to cfg.out."""
    if not Path(cfg.dataset).is_dir():
        raise BadInput("dataset folder not found", path=cfg.dataset, field="--dataset")
    report = progress or no_progress
    t0 = time.perf_counter()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    train_cfg = TrainConfig(
        policy=cfg.policy, preset=cfg.preset, dataset=(cfg.dataset,), overrides=cfg.overrides
    )
    policy_cfg = policy_config(train_cfg, LeRobotDatasetReader(cfg.dataset))
    scenes = render(cfg, report)
    render_s = time.perf_counter() - t0
    stats = load_stats(Path(cfg.dataset) / "meta" / "stats.json")
    modes = policy_cfg.normalization_modes()
    normalizer = Normalizer(stats, {image_key(c): modes[image_key(c)] for c in scenes.cams})

    torch.manual_seed(cfg.seed)
    part = policy_cfg.vision_part()
    model = TrunkProbe(part, len(scenes.cams), scenes.image_hw, len(LABEL_NAMES))
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / LOG_FILE).write_text("")
    validate = _Validator(model, scenes, normalizer)
    step, log = fit_probe(cfg, model, scenes, normalizer, validate, t0, report)
    val_loss, errors, pred = validate()
    if not log or log[-1].get("val_loss") != val_loss:
        log.append({"step": step, "val_loss": val_loss, **errors})
    with (out / LOG_FILE).open("a") as f:
        for row in log:
            f.write(json.dumps(row) + "\n")

    weights_path = out / part.file_name
    weights = {k: v.contiguous() for k, v in model.encoder.state_dict().items()}
    save_file(weights, str(weights_path))
    result = PretrainResult(
        out=str(out),
        weights=str(weights_path),
        policy=cfg.policy,
        preset=cfg.preset,
        dataset=str(cfg.dataset),
        scenes=cfg.scenes,
        val_scenes=cfg.val_scenes,
        steps=step,
        epochs_seen=round(step * cfg.batch_size / scenes.n, 2),
        render_s=round(render_s, 1),
        wall_s=round(time.perf_counter() - t0, 1),
        final_val_loss=log[-1]["val_loss"],
        **{k: round(v, 3) for k, v in errors.items()},
        use_with=f"edgevla train --policy {cfg.policy} --preset {cfg.preset} "
        + part.use_with.format(path=weights_path),
    )
    info = {
        **{k: v for k, v in result.to_dict().items() if k != "figure"},
        "config": asdict(cfg),
        "labels": list(LABEL_NAMES),
        "label_mean": scenes.label_mean.tolist(),
        "label_std": scenes.label_std.tolist(),
    }
    write_json_atomic(out / INFO_FILE, info, indent=1)
    result.figure = str(plot_pretraining(out, log, pred, scenes.labels[scenes.n :]))
    return result
