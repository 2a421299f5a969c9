"""Precision plans: which stage runs at which precision, applied to a bundle with ONNX Runtime's
quantisation tools, and the action error each plan costs, measured against the fp32 bundle.

A plan is data: {stage name or "*": precision}. Precisions:
    fp32          the exported graph as it is
    int8-dynamic  weights int8 per channel, activations quantised at run time (MatMul, Gemm,
                  Conv ...); no calibration needed
    int8-static   QDQ: weights int8 per channel, activations uint8 with ranges calibrated on
                  stage inputs from rendered observations (`calibration`: minmax | entropy |
                  percentile)
Named plans (`PLANS`): fp32, int8-all (dynamic everywhere), int8-static-all, selective (the
vision stage low, everything after it fp32: the paper's choice of where precision is cheap).

The quantised bundle keeps the manifest's layout; each stage records its precision and new
sha256, and `parity` records the action error against the fp32 bundle (max and mean abs, in
action units) on observations that were not used for calibration.
"""

from __future__ import annotations

import shutil
import time
import uuid
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from edgevla_runtime.bundle import MANIFEST, BundleRunner, Manifest, StageSpec, sha256_of

from edgevla.errors import BadInput
from edgevla.jsonio import write_json_atomic
from edgevla.progress import ProgressEvent, ProgressFn, no_progress

PRECISIONS = ("fp32", "int8-dynamic", "int8-static")
CALIBRATIONS = ("minmax", "entropy", "percentile")
PLANS: dict[str, dict[str, str]] = {
    "fp32": {"*": "fp32"},
    "int8-all": {"*": "int8-dynamic"},
    "int8-static-all": {"*": "int8-static"},
    "selective": {"vision": "int8-static", "*": "fp32"},
}


def resolve_plan(plan: str | dict[str, str], stages: list[str]) -> dict[str, str]:
    """{stage: precision} for every stage of a bundle, from a plan name or a mapping."""
    if isinstance(plan, str):
        if plan not in PLANS:
            raise BadInput(f"unknown plan {plan!r}; one of {sorted(PLANS)}", field="--plan")
        plan = PLANS[plan]
    unknown = set(plan) - set(stages) - {"*"}
    if unknown:
        raise BadInput(
            f"names stages {sorted(unknown)} the bundle does not have ({stages})", field="--plan"
        )
    out = {s: plan.get(s, plan.get("*", "fp32")) for s in stages}
    bad = {s: p for s, p in out.items() if p not in PRECISIONS}
    if bad:
        raise BadInput(f"unknown precision {bad}; one of {PRECISIONS}", field="--plan")
    return out


@dataclass(frozen=True)
class QuantizeConfig:
    bundle: Path
    """an fp32 bundle from `edgevla export`"""
    out: Path
    plan: str = "selective"
    """fp32 | int8-all | int8-static-all | selective"""
    calibration: str = "minmax"
    """activation range calibration for int8-static: minmax | entropy | percentile"""
    calibration_observations: int = 16
    eval_observations: int = 8
    """held-out observations (other seeds) for the action error"""
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.plan not in PLANS:
            raise BadInput(f"unknown plan {self.plan!r}; one of {sorted(PLANS)}", field="--plan")
        if self.calibration not in CALIBRATIONS:
            raise BadInput(
                f"must be one of {CALIBRATIONS}, got {self.calibration!r}", field="--calibration"
            )
        if self.calibration_observations < 1 or self.eval_observations < 1:
            raise BadInput("calibration and eval observations must be >= 1")
        Manifest.read(self.bundle)  # a bundle, readable, before any work
        if Path(self.out).exists() and not self.overwrite:
            raise BadInput("already exists; pass --overwrite to replace it", path=self.out)


@dataclass
class QuantizeResult:
    bundle: str
    plan: dict[str, str]
    calibration: str
    action_error_max: float
    action_error_mean: float
    eval_observations: int
    sizes_bytes: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def quantize_bundle(config: QuantizeConfig, progress: ProgressFn = no_progress) -> QuantizeResult:
    from edgevla.deploy.export import sim_observations

    t0 = time.perf_counter()
    source = Path(config.bundle)
    fp32 = BundleRunner(source)
    plan = resolve_plan(config.plan, [s.name for s in fp32.manifest.stages])
    calib_obs = sim_observations(fp32, config.calibration_observations, seed=1000)
    eval_obs = sim_observations(fp32, config.eval_observations, seed=2000)
    feeds = calibration_feeds(fp32, calib_obs)
    out = Path(config.out)
    work = out.parent / f".{out.name}.{uuid.uuid4().hex[:8]}.quantizing"
    work.mkdir(parents=True)
    try:
        specs = []
        for i, stage in enumerate(fp32.manifest.stages):
            progress(ProgressEvent("quantize", i, len(plan), f"{stage.name}: {plan[stage.name]}"))
            src, dst = source / stage.file, work / stage.file
            quantize_stage(src, dst, plan[stage.name], feeds[stage.name], config.calibration)
            specs.append(StageSpec(stage.name, stage.file, stage.inputs, stage.outputs,
                                   plan[stage.name], sha256_of(dst)))  # fmt: skip
        manifest = Manifest(**{**fp32.manifest.__dict__, "stages": tuple(specs)})
        write_json_atomic(work / MANIFEST, manifest.to_dict())
        progress(ProgressEvent("quantize", len(plan), len(plan), "action error"))
        quant = BundleRunner(work)
        diffs = [np.abs(quant.predict_chunk(o) - fp32.predict_chunk(o)) for o in eval_obs]
        err_max = float(max(d.max() for d in diffs))
        err_mean = float(np.mean([d.mean() for d in diffs]))
        parity = {
            "reference": "fp32 bundle",
            "source_bundle": str(source.resolve()),
            "max_abs_action_diff": err_max,
            "mean_abs_action_diff": err_mean,
            "observations": len(eval_obs),
            "calibration": config.calibration,
        }
        manifest = Manifest(**{**manifest.__dict__, "parity": parity})
        write_json_atomic(work / MANIFEST, manifest.to_dict())
        if out.exists():
            shutil.rmtree(out)
        work.rename(out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return QuantizeResult(
        bundle=str(out),
        plan=plan,
        calibration=config.calibration,
        action_error_max=err_max,
        action_error_mean=err_mean,
        eval_observations=len(eval_obs),
        sizes_bytes={s.name: (out / s.file).stat().st_size for s in specs},
        seconds=time.perf_counter() - t0,
    )


def calibration_feeds(
    runner: BundleRunner, observations: list[dict[str, np.ndarray]], seed: int = 1
) -> dict[str, list[dict[str, np.ndarray]]]:
    """Each stage's named inputs as the bundle meets them on `observations`. A flow-matching
    expert is fed at every Euler step of a sample from N(0, I) noise (its inputs change along
    the loop: x_t and t), so its activation ranges cover the whole trajectory."""
    feeds: dict[str, list[dict[str, np.ndarray]]] = {s.name: [] for s in runner.manifest.stages}
    spec = runner.manifest.sampler
    rng = np.random.default_rng(seed)
    for obs in observations:
        tensors = runner.inputs(obs)
        for stage, session in runner.sessions:
            if spec and stage.name == spec["stage"]:
                continue
            feeds[stage.name].append({t.name: tensors[t.name] for t in stage.inputs})
            runner.run_stage(stage, session, tensors)
        if spec:
            stage, session = next((s, x) for s, x in runner.sessions if s.name == spec["stage"])
            x, n = rng.standard_normal(spec["noise_shape"], dtype=np.float32), spec["num_steps"]
            for k in range(n):
                tensors["x_t"], tensors["t"] = x, np.full((1,), 1.0 - k / n, dtype=np.float32)
                feeds[stage.name].append({t.name: tensors[t.name] for t in stage.inputs})
                runner.run_stage(stage, session, tensors)
                x = x - np.float32(1.0 / n) * tensors["velocity"]
    return feeds


class _Feeds:
    """ONNX Runtime's CalibrationDataReader over a list of input dicts."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]):
        self._it = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)


def quantize_stage(
    src: Path, dst: Path, precision: str, feeds: list[dict[str, np.ndarray]], calibration: str
) -> None:
    """Write `src` at `precision` to `dst` (fp32: a copy)."""
    if precision == "fp32":
        shutil.copyfile(src, dst)
        return
    import logging

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # ORT's quantiser logs advice through the root logger
    try:
        _quantize(src, dst, precision, feeds, calibration)
    finally:
        root.setLevel(level)


def _quantize(src: Path, dst: Path, precision: str, feeds, calibration: str) -> None:
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if precision == "int8-dynamic":
            quantize_dynamic(src, dst, weight_type=QuantType.QInt8, per_channel=True)
            return
        method = {
            "minmax": CalibrationMethod.MinMax,
            "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile,
        }[calibration]
        quantize_static(
            src,
            dst,
            _Feeds(feeds),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=method,
        )
