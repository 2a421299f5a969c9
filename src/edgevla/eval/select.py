"""Choose a run's checkpoint by closed-loop success, not by loss (`edgevla select`).

The paper's rule: pick the final checkpoint by success rate on the training-cluster (Test) and
held-out (Val) positions. Every checkpoint of the run is evaluated with the same protocol and
control settings; ranking is by Global success, then Val success, then the later step (more
training at equal success generalised no worse in the paper). The choice is written to
<run>/selection.json and <run>/best (a symlink to the chosen checkpoint), with a PNG that puts
success and validation loss side by side.

Each checkpoint's episodes are kept in <checkpoint>/eval/episodes.jsonl as they finish, so an
interrupted selection continues where it stopped. Only complete checkpoint folders count
(edgevla.train.run_folder.list_checkpoints: half-written saves are never listed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgevla.dataset.plan import Plan
from edgevla.errors import BadInput
from edgevla.eval.run import (
    EvalConfig,
    check_control_flags,
    check_noise_scale,
    check_start_jitter,
    evaluate,
    parse_threshold,
    policy_rate,
    threshold_text,
)
from edgevla.figures import pyplot, save_png
from edgevla.jsonio import write_json_atomic
from edgevla.progress import ProgressEvent, ProgressFn
from edgevla.train.run_folder import (
    SELECTION_FIGURE,
    SELECTION_FILE,
    list_checkpoints,
    read_log,
    set_best,
)


@dataclass(frozen=True)
class SelectConfig:
    """What `select` runs; validated on construction (messages name the CLI flags)."""

    run: Path
    plan: Path = Path("outputs/plan.json")
    chunk_size_threshold: float | str = 0.5
    aggregate_fn_name: str = "weighted_average"
    latency: str = "measured"
    fps: int | None = None  # None: the rate of the run's training data
    episodes: int = 1
    episode_time_s: float = 20.0
    workers: int = 2
    every: int = 1  # evaluate every N-th checkpoint (the last one always)
    from_step: int = 0  # skip checkpoints before this step
    noise_scale: float = 1.0
    start_jitter_m: float = 0.0  # each rollout's bag start moved up to this far (seeded)
    start_jitter_deg: float = 0.0  # ... and turned up to this much
    resume: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "run", Path(self.run))
        object.__setattr__(self, "plan", Path(self.plan))
        object.__setattr__(self, "chunk_size_threshold", parse_threshold(self.chunk_size_threshold))
        check_control_flags(self.aggregate_fn_name, self.latency, self.episode_time_s,
                            self.episodes, self.workers, self.fps)  # fmt: skip
        if self.every < 1:
            raise BadInput(f"must be >= 1 (1 evaluates every checkpoint), got {self.every}",
                           field="--every")  # fmt: skip
        if self.from_step < 0:
            raise BadInput(f"must be a step >= 0, got {self.from_step}", field="--from-step")
        check_noise_scale(self.noise_scale)
        check_start_jitter(self.start_jitter_m, self.start_jitter_deg)


@dataclass
class CheckpointScore:
    """One checkpoint's closed-loop success (a row of selection.json)."""

    checkpoint: Path
    step: int
    test: float | None
    val: float | None
    global_: float
    val_loss: float | None
    outcomes: dict[str, int]

    def rank_key(self) -> tuple:
        return (self.global_, self.val if self.val is not None else -1, self.step)

    def to_dict(self) -> dict[str, Any]:
        return {"checkpoint": str(self.checkpoint), "step": self.step, "test": self.test,
                "val": self.val, "global": self.global_, "val_loss": self.val_loss,
                "outcomes": self.outcomes}  # fmt: skip


@dataclass
class SelectResult:
    run: Path
    fps: int
    threshold: str
    noise_scale: float
    chosen: CheckpointScore
    lowest_val_loss: CheckpointScore | None
    ranked: list[CheckpointScore]  # best first
    figure: Path
    best_link: Path
    notes: list[str] = field(default_factory=list)  # warnings and skipped folders

    def to_dict(self) -> dict[str, Any]:
        """selection.json (and --json)."""
        return {
            "run": str(self.run), "fps": self.fps, "threshold": self.threshold,
            "noise_scale": self.noise_scale, "chosen": self.chosen.to_dict(),
            "lowest_val_loss": None if self.lowest_val_loss is None else self.lowest_val_loss.to_dict(),
            "ranked": [r.to_dict() for r in self.ranked], "figure": str(self.figure),
            "best_link": str(self.best_link),
        }  # fmt: skip


def plot_selection(rows: list[CheckpointScore], path: Path, chosen: int) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    steps = [r.step for r in rows]
    ax.plot(steps, [r.global_ for r in rows], "o-", label="Global success")
    ax.plot(steps, [r.test for r in rows], "s--", label="Test success", alpha=0.7)
    ax.plot(steps, [r.val for r in rows], "^--", label="Val success (held out)", alpha=0.7)
    ax.axvline(chosen, color="g", ls=":", label=f"chosen: step {chosen}")
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlabel("step")
    ax.set_ylabel("success rate")
    vl = [(r.step, r.val_loss) for r in rows if r.val_loss is not None]
    if vl:
        ax2 = ax.twinx()
        ax2.plot(*zip(*vl, strict=True), "k.-", alpha=0.4, label="validation loss")
        ax2.set_ylabel("validation loss")
        ax2.legend(loc="lower right")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title("checkpoint selection: closed-loop success vs validation loss")
    fig.tight_layout()
    return save_png(fig, path, dpi=100)


def select(config: SelectConfig, progress: ProgressFn | None = None) -> SelectResult:
    """Evaluate the run's checkpoints, rank them, link the best; writes selection.json/.png."""
    Plan.load(config.plan)  # a bad plan fails now, not after listing and loading checkpoints
    notes: list[str] = []
    checkpoints = list_checkpoints(config.run, note=notes.append, clean=False)
    if not checkpoints:
        raise BadInput(f"no complete checkpoints (run `edgevla train --out {config.run}` first)",
                       path=config.run)  # fmt: skip
    late = [(s, c) for s, c in checkpoints if s >= config.from_step]
    if not late:
        raise BadInput(f"no checkpoint at or after step {config.from_step} (last: "
                       f"{checkpoints[-1][1].name}); lower --from-step", path=config.run)  # fmt: skip
    picked = late[:: config.every]
    if checkpoints[-1] not in picked:
        picked.append(checkpoints[-1])
    val_loss = {
        r["step"]: r["val_loss"] for r in read_log(config.run, notes.append) if "val_loss" in r
    }
    # One control rate for the whole run, so every checkpoint is judged under the same settings.
    fps = policy_rate(checkpoints[-1][1], config.fps, notes.append)
    rows: list[CheckpointScore] = []
    for i, (step, ckpt) in enumerate(picked):
        if progress:
            progress(ProgressEvent("select", i, len(picked), ckpt.name))
        res = evaluate(
            EvalConfig(checkpoint=ckpt, plan=config.plan, chunk_size_threshold=config.chunk_size_threshold,
                       aggregate_fn_name=config.aggregate_fn_name, latency=config.latency,
                       episodes=config.episodes, workers=config.workers, fps=fps,
                       episode_time_s=config.episode_time_s, noise_scale=config.noise_scale,
                       start_jitter_m=config.start_jitter_m,
                       start_jitter_deg=config.start_jitter_deg, label=ckpt.name,
                       resume=config.resume),
            progress=progress,
        )  # fmt: skip
        notes += res.warnings
        s = res.modes["async"].summary
        rows.append(CheckpointScore(ckpt, step, s["success_test"], s["success_val"],
                                    s["success_global"], val_loss.get(step), s["outcomes"]))  # fmt: skip
    if progress:
        progress(ProgressEvent("select", len(picked), len(picked), "done"))
    best = max(rows, key=CheckpointScore.rank_key)
    lowest_loss = min((r for r in rows if r.val_loss is not None), key=lambda r: r.val_loss,
                      default=None)  # fmt: skip
    link = set_best(config.run, best.checkpoint)
    figure = plot_selection(rows, config.run / SELECTION_FIGURE, best.step)
    result = SelectResult(
        run=config.run, fps=fps, threshold=threshold_text(config.chunk_size_threshold),
        noise_scale=config.noise_scale, chosen=best, lowest_val_loss=lowest_loss,
        ranked=sorted(rows, key=CheckpointScore.rank_key, reverse=True), figure=figure,
        best_link=link, notes=notes,
    )  # fmt: skip
    write_json_atomic(config.run / SELECTION_FILE, result.to_dict(), indent=1)
    return result
