"""`edgevla eval open-loop`: how far a policy's chunks are from the recorded actions, on frames
it was trained on and on held-out ones, with no simulator in the loop.

Why: a closed-loop failure has two usual causes, and they want different fixes. A policy that
has not learned its own training data (under-fitting: more steps, a better trunk, a lower
learning rate at the end) predicts chunks far from the demonstrations even on training
episodes. A policy that reproduces its training episodes but fails in the loop drifts into
states the demonstrations never showed (distribution shift: more positions, recovery episodes,
noise injection while recording). Open-loop error on the train split against the val split,
and against closed-loop success, tells the two apart in a minute.

What it measures, on each chosen episode (recovery episodes skipped: their first grasp is not
the demonstration's intent): the chunk predicted from the recorded observation at a few
anchor frames (the episode start and fixed times before the first grasp), against the recorded
actions the chunk covers:
- mean absolute error per joint over the chunk (degrees),
- the error per horizon step (where along the chunk the error grows),
- the signed joint error at the grasp frame (a pan bias is the one-sided miss seen closed-loop).

Read the split comparison with care: the train split of a DART-style recording holds
perturbed states and the held-out cluster may be an easier region, so val can come out lower
than train (it did for every checkpoint measured so far). The pan error at the grasp is the
figure that tracked closed-loop success (shipped ACT, Global 0.94: 1.9 deg mean abs on
training episodes from 0.67 s before; SmolVLA at 0.20: 4.9 deg).

The grasp frame is where the recorded gripper command closes past the bag's width after having
opened, the same thresholds OutcomeTracker uses on the simulated pads.

It runs any runner with predict_chunk(observation) -> (chunk_size, action_dim), so a deployed
bundle can be compared with its checkpoint the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from edgevla_runtime.features import MOTOR_NAMES, STATE_KEY, image_key

from edgevla.errors import BadInput
from edgevla.eval.parallel import RunnerSpec
from edgevla.eval.run import check_noise_scale
from edgevla.figures import pyplot
from edgevla.jsonio import write_json_atomic
from edgevla.progress import ProgressEvent, ProgressFn
from edgevla.sim.outcome import CLOSING_GAP_M, OPEN_GAP_M
from edgevla.sim.scene import gripper_gap

GRIPPER = -1  # the last action dimension is the gripper, the others are arm joints


class ChunkRunner(Protocol):
    camera_names: tuple[str, ...]

    def predict_chunk(self, observation: dict[str, np.ndarray]) -> np.ndarray: ...


@dataclass(frozen=True)
class OpenLoopConfig:
    """What `open_loop` runs; validated on construction (messages name the CLI flags)."""

    checkpoint: Path
    dataset: Path | None = None  # None: the first dataset the checkpoint was trained on
    splits: tuple[str, ...] = ("train", "val")
    episodes_per_split: int = 12  # spread evenly over the split (recovery episodes skipped)
    before_grasp_s: tuple[float, ...] = (1.5, 0.67)  # anchors before the first grasp (and t=0)
    seed: int = 0  # seeds a sampling policy's noise (SmolVLA), per episode
    noise_scale: float = 1.0  # flow-matching policies: scale of the initial noise
    threads: int = 1
    out: Path | None = (
        None  # where open_loop.json and open_loop.png go (default: <checkpoint>/eval)
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "checkpoint", Path(self.checkpoint))
        if self.episodes_per_split < 1:
            raise BadInput(f"must be >= 1, got {self.episodes_per_split}",
                           field="--episodes-per-split")  # fmt: skip
        if any(not (s > 0 and math.isfinite(s)) for s in self.before_grasp_s):
            raise BadInput(f"must be positive seconds, got {self.before_grasp_s}",
                           field="--before-grasp-s")  # fmt: skip
        bad = [s for s in self.splits if s not in ("train", "val")]
        if bad or not self.splits:
            raise BadInput(f"choose from ['train', 'val'], got {list(self.splits)}",
                           field="--splits")  # fmt: skip
        if self.threads < 1:
            raise BadInput(f"must be >= 1, got {self.threads}", field="--threads")
        check_noise_scale(self.noise_scale)

    @property
    def out_dir(self) -> Path:
        return Path(self.out) if self.out is not None else self.checkpoint / "eval"


@dataclass
class OpenLoopResult:
    checkpoint: Path
    dataset: Path
    fps: float
    before_grasp_s: tuple[float, ...]
    noise_scale: float
    splits: dict[str, dict[str, Any]]  # split -> summarise_split(...)
    verdict: str
    plot: Path
    results_file: Path
    episodes: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # per split

    def to_dict(self) -> dict[str, Any]:
        """What --json prints (open_loop.json adds the per-episode records)."""
        return {"checkpoint": str(self.checkpoint), "dataset": str(self.dataset), "fps": self.fps,
                "before_grasp_s": list(self.before_grasp_s), "noise_scale": self.noise_scale,
                "splits": self.splits, "verdict": self.verdict, "plot": str(self.plot),
                "results_file": str(self.results_file)}  # fmt: skip


def grasp_onset(actions: np.ndarray) -> int | None:
    """First frame where the gripper command closes the pads below CLOSING_GAP_M after having
    opened them past OPEN_GAP_M; None when the episode never grasps. actions: (T, A) radians."""
    gaps = np.array([gripper_gap(float(q)) for q in actions[:, GRIPPER]])
    opened = np.flatnonzero(gaps > OPEN_GAP_M)
    if not len(opened):
        return None
    closing = np.flatnonzero(gaps[opened[0] :] < CLOSING_GAP_M)
    return int(opened[0] + closing[0]) if len(closing) else None


def anchor_frames(onset: int | None, fps: float, before_grasp_s: tuple[float, ...]) -> list[int]:
    """The episode start, then `onset - s * fps` for each s (clipped at 0, duplicates dropped)."""
    frames = [0]
    if onset is not None:
        frames += [max(0, onset - round(s * fps)) for s in before_grasp_s]
    return sorted(set(frames))


def chunk_error(chunk: np.ndarray, recorded: np.ndarray, t: int) -> np.ndarray:
    """Signed error (H, A) of a chunk predicted at frame t against recorded[t : t + H]; H is
    the chunk length, shorter where the episode ends first."""
    if chunk.ndim != 2 or chunk.shape[1] != recorded.shape[1]:
        raise ValueError(
            f"chunk of shape {chunk.shape} does not match the recorded actions "
            f"(T, {recorded.shape[1]})"
        )
    if not np.isfinite(chunk).all():
        raise ValueError(f"the policy predicted a non-finite chunk at frame {t}")
    h = min(len(chunk), len(recorded) - t)
    return chunk[:h] - recorded[t : t + h]


def pick_episodes(episodes: list[dict[str, Any]], split: str, n: int) -> list[int]:
    """Up to n non-recovery episodes of a split, spread evenly over it (deterministic)."""
    idx = [e["episode_index"] for e in episodes
           if e.get("split", "train") == split and not e.get("is_recovery", False)]  # fmt: skip
    if n <= 0 or len(idx) <= n:
        return idx
    return [idx[round(i * (len(idx) - 1) / (n - 1))] for i in range(n)] if n > 1 else idx[:1]


def episode_open_loop(
    runner: ChunkRunner, frames, videos: dict[str, np.ndarray], fps: float,
    before_grasp_s: tuple[float, ...],
) -> dict[str, Any]:  # fmt: skip
    """Open-loop errors of one recorded episode (EpisodeFrames + decoded videos)."""
    actions = np.asarray(frames.action, dtype=np.float32)
    onset = grasp_onset(actions)
    anchors = []
    for t in anchor_frames(onset, fps, before_grasp_s):
        obs = {STATE_KEY: np.asarray(frames.state[t], dtype=np.float32)}
        for cam in runner.camera_names:
            obs[image_key(cam)] = videos[image_key(cam)][t]
        err = chunk_error(np.asarray(runner.predict_chunk(obs)), actions, t)
        at_grasp = None
        if onset is not None and 0 <= onset - t < len(err):
            at_grasp = np.degrees(err[onset - t]).tolist()
        anchors.append({
            "frame": t,
            "s_before_grasp": None if onset is None else (onset - t) / fps,
            "abs_err_deg": np.degrees(np.abs(err)).tolist(),  # (H, A)
            "err_at_grasp_deg": at_grasp,  # (A,) signed, or None
        })  # fmt: skip
    return {"grasp_frame": onset, "anchors": anchors}


def summarise_split(records: list[dict[str, Any]], before_grasp_s: tuple[float, ...],
                    fps: float) -> dict[str, Any]:  # fmt: skip
    """Per-joint mean abs error over the chunk, error by horizon step, signed error at grasp."""
    errs = [np.asarray(a["abs_err_deg"]) for r in records for a in r["anchors"]]
    if not errs:
        return {"episodes": 0}
    horizon = max(len(e) for e in errs)
    padded = np.full((len(errs), horizon, errs[0].shape[1]), np.nan)
    for i, e in enumerate(errs):
        padded[i, : len(e)] = e
    per_joint = np.nanmean(padded, axis=(0, 1))
    by_step = np.nanmean(padded[:, :, :GRIPPER], axis=(0, 2))
    grasp: dict[str, Any] = {}
    for s in before_grasp_s:
        hits = [a["err_at_grasp_deg"] for r in records for a in r["anchors"]
                if a["err_at_grasp_deg"] is not None and a["s_before_grasp"] is not None
                and abs(a["s_before_grasp"] - s) < 1.0 / fps]  # fmt: skip
        if hits:
            h = np.asarray(hits)
            grasp[f"{s:g}"] = {
                "n": len(hits),
                "mean_deg": _per_joint(h.mean(0)),
                "mean_abs_deg": _per_joint(np.abs(h).mean(0)),
            }
    return {
        "episodes": len(records),
        "chunks": len(errs),
        "mean_abs_deg": _per_joint(per_joint),
        "arm_mean_abs_deg": round(float(per_joint[:GRIPPER].mean()), 2),
        "arm_abs_deg_by_step": by_step.round(3).tolist(),
        "at_grasp": grasp,
        "no_grasp_episodes": sum(r["grasp_frame"] is None for r in records),
    }


def _per_joint(values: np.ndarray) -> dict[str, float]:
    """{motor name: value} rounded to 0.01 (joint_<i> names for a robot with other motors)."""
    names = (
        MOTOR_NAMES
        if len(values) == len(MOTOR_NAMES)
        else [f"joint_{i}" for i in range(len(values))]
    )
    return dict(zip(names, np.round(values, 2).tolist(), strict=True))


def verdict(summary: dict[str, dict[str, Any]]) -> str:
    """One sentence a person can act on, from the train and val arm errors."""
    tr = summary.get("train", {}).get("arm_mean_abs_deg")
    va = summary.get("val", {}).get("arm_mean_abs_deg")
    if tr is None or va is None:
        return "need both splits to compare"
    if va > 1.5 * tr:
        return (f"held-out error {va:.1f} deg is {va / tr:.1f}x the training error {tr:.1f} deg: "
                "the policy fits its demonstrations but generalises poorly (more positions "
                "or clusters, augmentation)")  # fmt: skip
    return (f"held-out error {va:.1f} deg is close to the training error {tr:.1f} deg: if "
            "closed-loop success is low, look at the training fit (more steps, a better trunk) "
            "or at compounding error in the loop (recovery data, action noise)")  # fmt: skip


def plot_open_loop(summary: dict[str, dict[str, Any]], fps: float, path: Path, title: str) -> Path:
    from edgevla.eval.report import _save

    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    width = 0.8 / max(1, len(summary))
    names: list[str] = []
    for i, (split, s) in enumerate(summary.items()):
        if not s.get("episodes"):
            continue
        steps = np.arange(len(s["arm_abs_deg_by_step"])) / fps
        ax1.plot(steps, s["arm_abs_deg_by_step"], label=f"{split} ({s['episodes']} episodes)")
        names = list(s["mean_abs_deg"])
        x = np.arange(len(names)) + (i - (len(summary) - 1) / 2) * width
        ax2.bar(x, list(s["mean_abs_deg"].values()), width, label=split)
    ax1.set_xlabel("time into the chunk (s)")
    ax1.set_ylabel("arm joints, mean |error| (deg)")
    ax1.set_title("where along the chunk the error grows", fontsize=9)
    ax1.legend(fontsize=8)
    ax2.set_xticks(np.arange(len(names)), names, rotation=30, fontsize=8)
    ax2.set_ylabel("mean |error| over the chunk (deg)")
    ax2.set_title("per joint", fontsize=9)
    ax2.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def open_loop(config: OpenLoopConfig, runner: ChunkRunner | None = None,
              progress: ProgressFn | None = None) -> OpenLoopResult:  # fmt: skip
    """Run the check; the result is also written to <out>/open_loop.json."""
    from edgevla.dataset.lerobot.reader import LeRobotDatasetReader
    from edgevla.policies.checkpoint import Checkpoint

    dataset = config.dataset
    if dataset is None:
        trained_on = Checkpoint.open(config.checkpoint).train_info.datasets
        if not trained_on:
            raise BadInput("does not name its training dataset (train_info.json); pass --dataset",
                           path=config.checkpoint)  # fmt: skip
        dataset = Path(trained_on[0])
    reader = LeRobotDatasetReader(dataset)
    if runner is None:
        runner = RunnerSpec("checkpoint", config.checkpoint, config.threads,
                            config.noise_scale).build()  # fmt: skip
    missing = [c for c in runner.camera_names if image_key(c) not in reader.video_keys]
    if missing:
        raise ValueError(
            f"{dataset} has no camera(s) {missing} that the policy reads "
            f"(it has {[k.split('.')[-1] for k in reader.video_keys]}): use a dataset recorded "
            "with the policy's cameras"
        )
    episodes = reader.episodes
    chosen = {s: pick_episodes(episodes, s, config.episodes_per_split) for s in config.splits}
    if not any(chosen.values()):
        raise ValueError(f"{dataset} has no non-recovery episodes in splits {config.splits}")
    records: dict[str, list[dict[str, Any]]] = {s: [] for s in config.splits}
    total, done = sum(len(v) for v in chosen.values()), 0
    for split, idx in chosen.items():
        for i in idx:
            videos = {image_key(c): reader.video(i, c) for c in runner.camera_names}
            if callable(getattr(runner, "reset", None)):
                runner.reset(config.seed * 1_000_003 + i)  # a sampling policy's noise
            rec = episode_open_loop(runner, reader.frames(i), videos, reader.fps,
                                    config.before_grasp_s)  # fmt: skip
            rec.update(episode=i, cluster=episodes[i].get("cluster_id"))
            records[split].append(rec)
            done += 1
            if progress:
                progress(ProgressEvent("open loop", done, total, f"{split} episode {i}"))
    summary = {s: summarise_split(r, config.before_grasp_s, reader.fps) for s, r in records.items()}
    out = config.out_dir
    plot = plot_open_loop(summary, reader.fps, out / "open_loop.png",
                          f"open loop: {config.checkpoint} on {dataset}")  # fmt: skip
    per_episode = {s: [{k: v for k, v in r.items() if k != "anchors"} | {
        "err_at_grasp_deg": [a["err_at_grasp_deg"] for a in r["anchors"]]} for r in recs]
        for s, recs in records.items()}  # fmt: skip
    result = OpenLoopResult(
        checkpoint=config.checkpoint, dataset=Path(dataset), fps=reader.fps,
        before_grasp_s=tuple(config.before_grasp_s), noise_scale=config.noise_scale,
        splits=summary, verdict=verdict(summary), plot=plot,
        results_file=out / "open_loop.json", episodes=per_episode,
    )  # fmt: skip
    write_json_atomic(result.results_file, result.to_dict() | {"episodes": per_episode}, indent=1)
    return result
