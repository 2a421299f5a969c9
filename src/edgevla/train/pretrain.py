"""`edgevla pretrain`: pre-train a policy's vision encoder on labelled simulation frames.

Why: no ImageNet (or SigLIP) weights can be downloaded here, and a vision encoder trained from
scratch inside the policy learns slowly: ACT's trunk has frozen batch norm, which is the identity
from scratch, SmolVLA's ViT starts from noise, and 8-sample batches give a weak signal about
where the tea bag is. The simulator knows where everything is, so we render scenes like
the dataset's and teach the trunk to see them first:

    scene   = one of the dataset's own arm poses (train split), the bag on the table anywhere in
              the workspace outside the held-out cluster (70%), held at the tool (15%) or in the
              mug (15%), any yaw; posed with MuJoCo, not simulated (about 3 ms for 3 cameras)
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
from typing import Annotated, Any, Literal

import numpy as np
import torch
import tyro
from edgevla_runtime.features import MOTOR_NAMES, image_key
from torch import Tensor, nn

from edgevla.console import console, emit_json, progress, table
from edgevla.dataset.reader import LeRobotDatasetReader
from edgevla.policies.common.normalize import Normalizer, load_stats
from edgevla.sim.kinematics import forward_tcp
from edgevla.sim.scene import BAG_HALF_SIZE, MUG_HEIGHT, MUG_INNER_RADIUS, MUG_POS, SceneConfig

LABEL_NAMES = (
    "bag_x", "bag_y", "bag_z", "bag_sin2yaw", "bag_cos2yaw",
    "tcp_x", "tcp_y", "tcp_z", "bag_rel_x", "bag_rel_y", "bag_rel_z",
    *(f"{m}_rad" for m in MOTOR_NAMES),
)  # fmt: skip
BACKBONE_FILE = "backbone.safetensors"  # ACT: torchvision layout
VISION_FILE = "vision.safetensors"  # SmolVLA: the policy's own parameter names
INFO_FILE = "pretrain_info.json"
LOG_FILE = "log.jsonl"
BAG_KINDS = ("table", "held", "mug")
BAG_KIND_P = (0.70, 0.15, 0.15)


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
        if self.scenes < 2 * self.batch_size or self.val_scenes < 1 or self.batch_size < 2:
            raise ValueError(
                f"need scenes >= 2 * batch_size and val_scenes >= 1, batch_size >= 2; got "
                f"scenes={self.scenes}, val_scenes={self.val_scenes}, batch_size={self.batch_size}"
            )
        if self.log_freq < 1 or self.val_freq < 1:
            raise ValueError("log_freq and val_freq must be >= 1")
        if self.epochs < 1 or self.lr <= 0:
            raise ValueError(f"epochs ({self.epochs}) must be >= 1 and lr ({self.lr}) > 0")
        if self.max_minutes is not None and not 0 < self.max_minutes < math.inf:
            raise ValueError(f"max_minutes={self.max_minutes} must be a positive number")


@dataclass(frozen=True)
class SceneSource:
    """What a dataset tells the scene sampler: arm poses (N, 6) from its train split, the bag
    starts of its held-out split (M, 2), how far from them a bag may not go, and its cameras."""

    arm_poses: np.ndarray
    held_out_xy: np.ndarray
    held_out_radius: float
    scene: SceneConfig

    @classmethod
    def from_dataset(cls, root: Path) -> SceneSource:
        reader = LeRobotDatasetReader(root)
        episodes = reader.episodes
        train = [e for e in episodes if e.get("split", "train") == "train"]
        if not train:
            raise ValueError(f"{root} has no train-split episodes to take arm poses from")
        poses = np.concatenate([reader.frames(e["episode_index"]).state for e in train])
        val = [e for e in episodes if e.get("split") == "val"]
        if any(e.get("start_pose") is None for e in val):
            raise ValueError(
                f"{root}: held-out episodes lack start_pose, so the held-out cluster cannot be "
                "kept out of the pre-training scenes; record the dataset with edgevla record"
            )
        held_out = [e["start_pose"][:2] for e in val]
        calibration = reader.calibration or {}
        radius = float(calibration.get("plan_config", {}).get("cluster_size_m", 0.1))
        h, w = reader.image_hw
        scene = SceneConfig(
            image_height=h,
            image_width=w,
            fps=int(reader.info["fps"]),
            cameras=tuple(reader.cameras),
        )
        return cls(
            poses.astype(np.float64), np.asarray(held_out, float).reshape(-1, 2), radius, scene
        )


def sample_scene(
    rng: np.random.Generator, source: SceneSource
) -> tuple[np.ndarray, np.ndarray, float]:
    """(q_arm (6,), bag_pos (3,), bag_yaw) of one random scene (module docstring)."""
    q = source.arm_poses[rng.integers(len(source.arm_poses))].copy()
    yaw = float(rng.uniform(0.0, math.pi))
    kind = BAG_KINDS[rng.choice(len(BAG_KINDS), p=BAG_KIND_P)]
    if kind == "held":
        bag = forward_tcp(q) + rng.normal(0.0, 0.005, 3)
    elif kind == "mug":
        r = MUG_INNER_RADIUS * 0.5 * math.sqrt(rng.uniform())
        a = rng.uniform(0.0, 2 * math.pi)
        z = rng.uniform(BAG_HALF_SIZE[2] + 0.005, MUG_HEIGHT * 0.6)
        bag = np.array([MUG_POS[0] + r * math.cos(a), MUG_POS[1] + r * math.sin(a), z])
    else:
        while True:
            xy = source.scene.workspace.sample(rng)
            far = np.hypot(*(source.held_out_xy - xy).T) >= source.held_out_radius
            if far.all():
                break
        bag = np.array([xy[0], xy[1], BAG_HALF_SIZE[2] + 0.0005])
    return q, bag, yaw


def render_scenes(
    source: SceneSource, n: int, seed: int, quiet: bool = False
) -> tuple[Tensor, np.ndarray]:
    """n scenes -> images uint8 (n, K, 3, H, W) in the source's camera order, labels (n, L)."""
    from edgevla.sim.env import TeaBagMugEnv

    rng = np.random.default_rng(seed)
    env = TeaBagMugEnv(source.scene)
    cams = source.scene.cameras
    h, w = source.scene.image_height, source.scene.image_width
    images = torch.empty((n, len(cams), 3, h, w), dtype=torch.uint8)
    labels = np.empty((n, len(LABEL_NAMES)), dtype=np.float32)
    try:
        with progress(quiet) as bar:
            task = bar.add_task("render scenes", total=n, status="")
            for i in range(n):
                q, bag, yaw = sample_scene(rng, source)
                obs = env.pose_scene(q, bag, yaw)
                for k, cam in enumerate(cams):
                    images[i, k] = torch.from_numpy(obs[image_key(cam)]).permute(2, 0, 1)
                truth = env.privileged_state()
                tcp, bag_pos = truth["tcp_pos"], truth["bag_pos"]
                labels[i] = np.concatenate(
                    [bag_pos, [math.sin(2 * yaw), math.cos(2 * yaw)], tcp, bag_pos - tcp,
                     truth["joint_pos"]]
                )  # fmt: skip
                bar.update(task, advance=1)
    finally:
        env.close()
    return images, labels


class _VisionTokens(nn.Module):
    """SmolVLA's stage 1 for one image batch, under the policy's attribute names."""

    def __init__(self, vision: nn.Module, connector: nn.Module):
        super().__init__()
        self.vision = vision
        self.connector = connector

    def forward(self, images: Tensor) -> Tensor:  # (N, 3, H, W) in [0, 1] -> (N, T, D)
        return self.connector(self.vision(images))


@dataclass
class VisionPart:
    """The encoder being pre-trained, how its features are reduced per location, and where its
    weights go: encoder (N, 3, H, W) -> features (N, C, h, w) or (N, T, D)."""

    encoder: nn.Module
    reduce: nn.Module
    file_name: str
    use_with: str


def vision_part(policy: str, policy_cfg) -> VisionPart:
    if policy == "act":
        from edgevla.policies.act.resnet import ResNet, with_trainable_batch_norm

        trunk = with_trainable_batch_norm(ResNet(policy_cfg.vision_backbone))
        return VisionPart(
            trunk,
            nn.Conv2d(trunk.out_channels, 32, kernel_size=1),
            BACKBONE_FILE,
            "--overrides pretrained_backbone_weights={path}",
        )
    from edgevla.policies.smolvla.model import SmolVLAPolicy

    full = SmolVLAPolicy(policy_cfg)
    tokens = _VisionTokens(full.vision, full.connector)
    return VisionPart(
        tokens,
        nn.Linear(policy_cfg.text_hidden_size, 32),
        VISION_FILE,
        "--overrides load_vlm_weights=true vlm_model_name={path}",
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
    from edgevla.train.loop import augment

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


def pretrain(cfg: PretrainConfig, quiet: bool = False) -> dict[str, Any]:
    t0 = time.perf_counter()
    budget_s = cfg.max_minutes * 60 if cfg.max_minutes is not None else math.inf
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    from edgevla.train.config import TrainConfig
    from edgevla.train.recipes import policy_config, warmup_cosine

    source = SceneSource.from_dataset(cfg.dataset)
    cams = tuple(source.scene.cameras)
    train_cfg = TrainConfig(
        policy=cfg.policy, preset=cfg.preset, dataset=(cfg.dataset,), overrides=cfg.overrides
    )
    policy_cfg = policy_config(train_cfg, LeRobotDatasetReader(cfg.dataset))
    stats = load_stats(Path(cfg.dataset) / "meta" / "stats.json")
    modes = policy_cfg.normalization_modes()
    normalizer = Normalizer(stats, {image_key(c): modes[image_key(c)] for c in cams})
    images, labels = render_scenes(source, cfg.scenes + cfg.val_scenes, cfg.seed, quiet)
    render_s = time.perf_counter() - t0
    n = cfg.scenes
    label_mean = labels[:n].mean(axis=0)
    label_std = labels[:n].std(axis=0) + 1e-6
    targets = torch.from_numpy((labels - label_mean) / label_std)

    torch.manual_seed(cfg.seed)
    hw = (source.scene.image_height, source.scene.image_width)
    part = vision_part(cfg.policy, policy_cfg)
    model = TrunkProbe(part, len(cams), hw, len(LABEL_NAMES))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = n // cfg.batch_size
    planned = cfg.epochs * steps_per_epoch
    warmup = min(50, planned // 10)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / LOG_FILE).write_text("")

    def validate() -> tuple[float, dict[str, float], np.ndarray]:
        model.eval()
        preds = []
        with torch.no_grad():
            for lo in range(n, n + cfg.val_scenes, 64):
                hi = min(lo + 64, n + cfg.val_scenes)
                preds.append(model(_batch_images(images[lo:hi], cams, normalizer, None)))
        model.train()
        pred = torch.cat(preds)
        loss = float(nn.functional.mse_loss(pred, targets[n:]))
        pred_units = pred.numpy() * label_std + label_mean
        return loss, _errors(pred_units, labels[n:]), pred_units

    step, t_train = 0, time.perf_counter()
    log: list[dict[str, Any]] = []
    model.train()
    with progress(quiet) as bar:
        task = bar.add_task("pretrain trunk", total=planned, status="")
        while step < planned:
            epoch, offset = divmod(step, steps_per_epoch)
            perm = np.random.default_rng([cfg.seed, epoch]).permutation(n)
            idx = torch.from_numpy(perm[offset * cfg.batch_size : (offset + 1) * cfg.batch_size])
            gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
            x = _batch_images(images[idx], cams, normalizer, gen)
            lr = cfg.lr * warmup_cosine(step, warmup, planned)
            for g in opt.param_groups:
                g["lr"] = lr
            loss = nn.functional.mse_loss(model(x), targets[idx])
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
                bar.update(task, total=planned)
            if step % cfg.log_freq == 0 or step == planned:
                log.append({"step": step, "loss": loss_value, "lr": lr, "wall_s": elapsed})
            if step % cfg.val_freq == 0 or step == planned:
                val_loss, errors, _ = validate()
                log.append({"step": step, "val_loss": val_loss, **errors})
            bar.update(task, advance=1, status=f"loss {loss_value:.4f}")
            if elapsed >= budget_s:
                break
    val_loss, errors, pred = validate()
    if not log or log[-1].get("val_loss") != val_loss:
        log.append({"step": step, "val_loss": val_loss, **errors})
    with (out / LOG_FILE).open("a") as f:
        for row in log:
            f.write(json.dumps(row) + "\n")

    from safetensors.torch import save_file

    weights_path = out / part.file_name
    weights = {k: v.contiguous() for k, v in model.encoder.state_dict().items()}
    save_file(weights, str(weights_path))
    wall = time.perf_counter() - t0
    result = {
        "out": str(out),
        "weights": str(weights_path),
        "policy": cfg.policy,
        "preset": cfg.preset,
        "dataset": str(cfg.dataset),
        "scenes": cfg.scenes,
        "val_scenes": cfg.val_scenes,
        "steps": step,
        "epochs_seen": round(step * cfg.batch_size / n, 2),
        "render_s": round(render_s, 1),
        "wall_s": round(wall, 1),
        "final_val_loss": log[-1]["val_loss"],
        **{k: round(v, 3) for k, v in errors.items()},
        "use_with": f"edgevla train --policy {cfg.policy} --preset {cfg.preset} "
        + part.use_with.format(path=weights_path),
    }
    info = {
        **result,
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()},
        "labels": list(LABEL_NAMES),
        "label_mean": label_mean.tolist(),
        "label_std": label_std.tolist(),
    }
    (out / INFO_FILE).write_text(json.dumps(info, indent=1))
    result["figure"] = str(plot_pretraining(out, log, pred, labels[n:]))
    return result


def plot_pretraining(
    out: Path, log: list[dict[str, Any]], pred: np.ndarray, true: np.ndarray
) -> Path:
    """pretrain.png: loss curves, and predicted vs true bag positions of the validation scenes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
    train = [r for r in log if "loss" in r]
    val = [r for r in log if "val_loss" in r]
    ax1.plot([r["step"] for r in train], [r["loss"] for r in train], lw=1, label="train")
    ax1.plot([r["step"] for r in val], [r["val_loss"] for r in val], "o-", label="validation")
    ax1.set_yscale("log")
    ax1.set_xlabel("step")
    ax1.set_ylabel("MSE (standardised labels)")
    ax1.grid(alpha=0.3)
    ax1.legend()
    ax1.set_title("trunk pre-training")
    for (tx, ty), (px, py) in zip(true[:, :2], pred[:, :2], strict=True):
        ax2.plot([ty, py], [tx, px], color="tab:red", lw=0.6)
    ax2.scatter(true[:, 1], true[:, 0], s=6, color="k", label="true bag position")
    ax2.scatter(pred[:, 1], pred[:, 0], s=6, color="tab:red", label="predicted")
    ax2.set_aspect("equal")
    ax2.invert_xaxis()
    ax2.set_xlabel("y (m, arm's left)")
    ax2.set_ylabel("x (m, ahead)")
    ax2.legend(loc="lower left", fontsize=8)
    err = np.linalg.norm(pred[:, :2] - true[:, :2], axis=1).mean() * 100
    ax2.set_title(f"validation scenes: bag xy error {err:.1f} cm (mean)")
    fig.tight_layout()
    path = out / "pretrain.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


@dataclass
class PretrainArgs:
    """Pre-train a policy's vision encoder on labelled simulation frames (nothing downloads here)."""

    config: Annotated[PretrainConfig, tyro.conf.OmitArgPrefixes]
    json: bool = False


def run_pretrain(args: PretrainArgs) -> dict[str, Any]:
    result = pretrain(args.config, quiet=args.json)
    if args.json:
        emit_json(result)
    else:
        console.print(table("edgevla pretrain", ["", "value"], list(result.items())))
    return result
