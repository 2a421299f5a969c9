"""Checkpoint -> bundle: each stage to ONNX, a manifest, and a parity check against PyTorch.

The bundle is written into a hidden folder beside `out` and renamed into place only once every
file is written and the parity check passed, so a failed or killed export leaves no
half-written bundle that a board could pick up.

Parity: the same observations go through the PyTorch policy (TorchPolicyRunner) and through the
bundle (edgevla_runtime.bundle.BundleRunner, numpy pre/post-processing included); the largest
absolute difference of the action chunks, in action units (radians), must stay within
`tolerance` (1e-4 by default) or the export fails and names the figure.
"""

from __future__ import annotations

import shutil
import time
import uuid
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from edgevla_runtime.bundle import (
    MANIFEST,
    BundleRunner,
    FeatureNorm,
    Manifest,
    StageSpec,
    sha256_of,
)
from edgevla_runtime.features import STATE_KEY, TASK

from edgevla.deploy.observations import observations as observations_for
from edgevla.deploy.observations import source_of
from edgevla.errors import EXIT_NO, BadInput, EdgevlaError
from edgevla.jsonio import write_json_atomic
from edgevla.progress import ProgressEvent, ProgressFn, no_progress

DEFAULT_TOLERANCE = 1e-4
OPSET = 17


class ParityError(EdgevlaError):
    """The exported graphs do not reproduce the PyTorch policy within the tolerance."""

    exit_code = EXIT_NO


@dataclass(frozen=True)
class ExportConfig:
    """What to export and how to check it."""

    checkpoint: Path
    """a policy checkpoint folder (edgevla or LeRobot layout)"""
    out: Path
    """the bundle folder to create"""
    layout: str = "split"
    """split: one graph per stage (vision, transformer); single: one graph"""
    parity_observations: int = 8
    """observations for the parity check"""
    dataset: Path | None = None
    """draw the parity observations from this recorded dataset (default: render them)"""
    tolerance: float = DEFAULT_TOLERANCE
    """largest allowed |bundle - PyTorch| action difference (action units)"""
    overwrite: bool = False
    threads: int = 1

    def __post_init__(self) -> None:
        from edgevla.deploy.stages import LAYOUTS

        if self.layout not in LAYOUTS:
            raise BadInput(f"must be one of {LAYOUTS}, got {self.layout!r}", field="--layout")
        if self.parity_observations < 1:
            raise BadInput(
                f"must be >= 1, got {self.parity_observations}", field="--parity-observations"
            )
        if not (self.tolerance > 0):
            raise BadInput(f"must be > 0, got {self.tolerance}", field="--tolerance")
        if Path(self.out).exists() and not self.overwrite:
            raise BadInput("already exists; pass --overwrite to replace it", path=self.out)
        if self.dataset is not None and not Path(self.dataset).is_dir():
            raise BadInput("dataset folder not found", path=self.dataset, field="--dataset")


@dataclass
class ExportResult:
    bundle: str
    policy_type: str
    layout: str
    stages: list[dict[str, Any]]
    parity_max_abs: float
    parity_observations: int
    tolerance: float
    seconds: float
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def export_bundle(config: ExportConfig, progress: ProgressFn = no_progress) -> ExportResult:
    """Export `config.checkpoint` to a bundle at `config.out` (see the module docstring)."""
    from edgevla.deploy.stages import stages_of
    from edgevla.policies.checkpoint import Checkpoint
    from edgevla.policies.runner import TorchPolicyRunner

    t0 = time.perf_counter()
    ckpt = Checkpoint.open(config.checkpoint)
    stats = ckpt.require_stats()
    policy = ckpt.load_policy()
    torch_runner = TorchPolicyRunner(policy, ckpt.normalizer())
    task = TASK
    stages = stages_of(policy, ckpt.policy_type, config.layout, task)
    sampler = None
    if hasattr(policy, "sample_actions"):  # flow matching: the runtime integrates the expert
        cfg = policy.config
        sampler = {"stage": "expert_step", "num_steps": int(cfg.num_steps),
                   "noise_shape": [1, int(cfg.chunk_size), int(cfg.max_action_dim)]}  # fmt: skip
        # Parity on the deterministic path (zero noise): every stage and every Euler step.
        torch_runner = TorchPolicyRunner(policy, ckpt.normalizer(), noise_scale=0.0)
    # Before any export work, so a dataset the model cannot see through fails at once.
    observations = observations_for(
        torch_runner, config.parity_observations, seed=0, dataset=config.dataset, split=None
    )
    out = Path(config.out)
    with bundle_being_written(out, "exporting") as work:
        specs = []
        for i, stage in enumerate(stages):
            progress(ProgressEvent("export", i, len(stages), stage.name))
            path = work / f"{stage.name}.onnx"
            _export_onnx(stage, path)
            specs.append(
                StageSpec(
                    stage.name, path.name, stage.inputs, stage.outputs, "fp32", sha256_of(path)
                )
            )
        manifest = _manifest(ckpt, torch_runner, stats, tuple(specs))
        manifest = Manifest(**{**manifest.__dict__, "task": task, "sampler": sampler})
        write_json_atomic(work / MANIFEST, manifest.to_dict())
        progress(ProgressEvent("export", len(stages), len(stages), "parity"))
        candidate = BundleRunner(work, threads=config.threads, noise_scale=0.0 if sampler else 1.0)
        worst = parity(torch_runner, candidate, observations)
        if not worst <= config.tolerance:
            raise ParityError(
                f"exported graphs differ from PyTorch by up to {worst:.3g} (action units) on "
                f"{len(observations)} observations; tolerance {config.tolerance:g}. Nothing was "
                "written. Try --layout single, or report the model"
            )
        parity_info = {
            "max_abs_action_diff": worst,
            "observations": len(observations),
            "source": source_of(config.dataset),
            "tolerance": config.tolerance,
        }
        manifest = Manifest(**{**manifest.__dict__, "parity": parity_info})
        write_json_atomic(work / MANIFEST, manifest.to_dict())
    notes = []
    if ckpt.train_info.fps is None:
        notes.append("the checkpoint does not say what fps it learned at; the bundle has fps null")
    return ExportResult(
        bundle=str(out),
        policy_type=ckpt.policy_type,
        layout=config.layout,
        stages=[s.to_dict() for s in specs],
        parity_max_abs=worst,
        parity_observations=len(observations),
        tolerance=config.tolerance,
        seconds=time.perf_counter() - t0,
        warnings=notes,
    )


@contextmanager
def bundle_being_written(out: Path, verb: str):
    """Yield a hidden folder beside `out` to write a bundle into; on success it replaces `out`
    by a rename, on any error (or Ctrl-C) it is removed: a board never sees half a bundle."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = out.parent / f".{out.name}.{uuid.uuid4().hex[:8]}.{verb}"
    work.mkdir()
    try:
        yield work
        if out.exists():
            shutil.rmtree(out)
        work.rename(out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def _export_onnx(stage, path: Path) -> None:
    """One stage to ONNX with the TorchScript exporter (fixed shapes: one observation)."""
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's deprecation and tracer notes
        torch.onnx.export(
            stage.module.eval(),
            stage.example,
            str(path),
            input_names=[t.name for t in stage.inputs],
            output_names=[t.name for t in stage.outputs],
            opset_version=OPSET,
            dynamo=False,
            do_constant_folding=True,
        )
    _finish(path, [t.name for t in stage.outputs])


def _finish(path: Path, names: list[str]) -> None:
    """The exported graph, loaded once: its outputs named, ORT's fused operators put where the
    exporter's form hides them (`deploy/fusions.py`); written back only if either changed."""
    import onnx

    from edgevla.deploy.fusions import fuse_exported

    model = onnx.load(str(path))
    renamed = _name_outputs(model, names)
    if any(fuse_exported(model).values()) or renamed:
        onnx.save(model, str(path))


def _name_outputs(model, names: list[str]) -> bool:
    """Give every graph output its stage name, in place; whether any was renamed. The exporter
    loses a name when an output is a constant after folding (SmolVLA's prefix mask, fixed once
    the task is baked in): such an output is routed through an Identity node carrying the
    right name."""
    import onnx

    outputs = model.graph.output
    if [o.name for o in outputs] == names:
        return False
    for out, name in zip(outputs, names, strict=True):
        if out.name != name:
            model.graph.node.append(onnx.helper.make_node("Identity", [out.name], [name]))
            out.name = name
    return True


def _manifest(ckpt, runner, stats, specs: tuple[StageSpec, ...]) -> Manifest:
    from edgevla.policies.common.normalize import EPS

    modes = ckpt.config.normalization_modes()
    norms = {}
    for name, mode in modes.items():
        needed = {"MEAN_STD": ("mean", "std"), "MIN_MAX": ("min", "max")}.get(mode.value, ())
        norms[name] = FeatureNorm(
            mode.value, {s: np.asarray(stats[name][s], dtype=np.float32) for s in needed}
        )
    return Manifest(
        policy_type=ckpt.policy_type,
        camera_names=runner.camera_names,
        image_hw=runner.image_hw,
        state_dim=int(ckpt.config.input_features[STATE_KEY].shape[0]),
        action_dim=runner.action_dim,
        chunk_size=runner.chunk_size,
        fps=ckpt.train_info.fps,
        stages=specs,
        normalization=norms,
        eps=EPS,
        checkpoint=str(Path(ckpt.folder).resolve()),
    )


def parity(reference, candidate, observations: list[dict[str, np.ndarray]]) -> float:
    """Largest |candidate - reference| over the action chunks of `observations`."""
    worst = 0.0
    for obs in observations:
        a = reference.predict_chunk(obs)
        b = candidate.predict_chunk(obs)
        worst = max(worst, float(np.max(np.abs(a - b))))
    return worst
