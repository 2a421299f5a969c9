"""Precision plans: which stage runs at which precision, applied to a bundle with ONNX Runtime's
quantisation tools, and the action error each plan costs, measured against the fp32 bundle.

A plan is data: {stage name or "*": precision}. Precisions:
    fp32          the exported graph as it is
    int8-dynamic  weights int8 per channel, activations quantised at run time (MatMul, Gemm,
                  Conv ...); no calibration needed
    int8-static   QDQ: weights int8 per channel, activations uint8 with ranges calibrated on
                  stage inputs from rendered observations (`calibration`: minmax | entropy |
                  percentile). ORT's calibrator holds every intermediate tensor: on the
                  full-size SmolVLA vision stage it exceeded this machine's 24 GB (killed)
    int4-weights  MatMul weights 4-bit in blocks of 32 (ONNX Runtime's MatMulNBits), activations
                  fp32: a quarter of the memory traffic for the transformer layers, no
                  calibration; Conv layers stay fp32
Named plans (`PLANS`): fp32, int8-all (dynamic everywhere), int8-static-all, selective (the
vision stage int8 static, SmolVLA's prefill int8 dynamic, the rest, the action expert or ACT's
transformer, fp32: the paper's choice of where precision is cheap). A named plan may name stages
a bundle lacks (ACT has no prefill); a plan file must name only stages the bundle has.
A plan can also be a YAML or JSON file holding the mapping, or "auto" with a budget: every
combination of stage precisions is built and measured (action error against fp32 on held-out
observations, latency per call), and the fastest one whose largest action error stays within
the budget is written; the candidates table is kept in the result.

The quantised bundle keeps the manifest's layout; each stage records its precision and new
sha256, and `parity` records the action error against the fp32 bundle (max and mean abs, in
action units) on observations that were not used for calibration.
"""

from __future__ import annotations

import shutil
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from edgevla_runtime.bundle import MANIFEST, BundleRunner, Manifest, StageSpec, sha256_of

from edgevla.errors import BadInput
from edgevla.jsonio import write_json_atomic
from edgevla.progress import ProgressEvent, ProgressFn, no_progress

PRECISIONS = ("fp32", "int8-dynamic", "int8-static", "int4-weights")
INT4_BLOCK_SIZE = 32
CALIBRATIONS = ("minmax", "entropy", "percentile")
PLANS: dict[str, dict[str, str]] = {
    "fp32": {"*": "fp32"},
    "int8-all": {"*": "int8-dynamic"},
    "int8-static-all": {"*": "int8-static"},
    "selective": {"vision": "int8-static", "prefill": "int8-dynamic", "*": "fp32"},
    # the same split without calibration, for stages too large to calibrate statically
    "selective-dynamic": {"vision": "int8-dynamic", "prefill": "int8-dynamic", "*": "fp32"},
}


def read_plan_file(path: Path) -> dict[str, str]:
    """A plan file: a YAML (or JSON) mapping {stage or "*": precision}. safe_load only: a plan
    is data, never code."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise BadInput(f"cannot read the plan file ({e})", path=path, field="--plan") from e
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise BadInput("a plan file maps stage names (or '*') to precisions, e.g. {vision: int8-static, '*': fp32}",
                       path=path, field="--plan")  # fmt: skip
    return data


def _is_plan_file(plan: str) -> bool:
    return plan.endswith((".yaml", ".yml", ".json"))


def resolve_plan(plan: str | dict[str, str], stages: list[str]) -> dict[str, str]:
    """{stage: precision} for every stage of a bundle, from a plan name, file or mapping."""
    if isinstance(plan, str):
        if _is_plan_file(plan):
            plan = read_plan_file(Path(plan))
        elif plan not in PLANS:
            raise BadInput(
                f"unknown plan {plan!r}; one of {sorted(PLANS)}, auto, or a .yaml file",
                field="--plan",
            )
        else:
            plan = {k: v for k, v in PLANS[plan].items() if k in stages or k == "*"}
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
    """fp32 | int8-all | int8-static-all | selective | selective-dynamic | auto | a .yaml file"""
    budget: float | None = None
    """with --plan auto: the largest action error (rad) allowed against fp32"""
    calibration: str = "minmax"
    """activation range calibration for int8-static: minmax | entropy | percentile"""
    calibration_observations: int = 16
    eval_observations: int = 8
    """held-out observations (other seeds) for the action error"""
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.plan == "auto":
            if self.budget is None or not self.budget > 0:
                raise BadInput(
                    "--plan auto needs --budget E (largest action error, rad, > 0)",
                    field="--budget",
                )
        elif _is_plan_file(self.plan):
            read_plan_file(Path(self.plan))
        elif self.plan not in PLANS:
            raise BadInput(
                f"unknown plan {self.plan!r}; one of {sorted(PLANS)}, auto, or a .yaml file",
                field="--plan",
            )
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
    candidates: list[dict[str, Any]] = field(default_factory=list)
    """--plan auto: every combination measured (plan, error max/mean, p50 latency)"""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def quantize_bundle(config: QuantizeConfig, progress: ProgressFn = no_progress) -> QuantizeResult:
    from edgevla.deploy.export import bundle_being_written, sim_observations

    t0 = time.perf_counter()
    source = Path(config.bundle)
    fp32 = BundleRunner(source)
    calib_obs = sim_observations(fp32, config.calibration_observations, seed=1000)
    eval_obs = sim_observations(fp32, config.eval_observations, seed=2000)
    feeds = calibration_feeds(fp32, calib_obs)
    candidates: list[dict[str, Any]] = []
    if config.plan == "auto":
        plan, candidates = auto_plan(fp32, feeds, eval_obs, config, progress)
    else:
        plan = resolve_plan(config.plan, [s.name for s in fp32.manifest.stages])
    out = Path(config.out)
    with bundle_being_written(out, "quantizing") as work:
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
        err_max, err_mean = action_error(fp32, BundleRunner(work), eval_obs)
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
    return QuantizeResult(
        bundle=str(out),
        plan=plan,
        calibration=config.calibration,
        action_error_max=err_max,
        action_error_mean=err_mean,
        eval_observations=len(eval_obs),
        sizes_bytes={s.name: (out / s.file).stat().st_size for s in specs},
        seconds=time.perf_counter() - t0,
        candidates=candidates,
    )


def action_error(
    reference: BundleRunner, candidate: BundleRunner, observations
) -> tuple[float, float]:
    """(max, mean) |candidate - reference| over the chunks of `observations`; a sampling
    policy gets the same noise in both (seeded per observation)."""
    spec = reference.manifest.sampler
    diffs = []
    for i, obs in enumerate(observations):
        noise = None
        if spec:
            noise = np.random.default_rng(10_000 + i).standard_normal(
                spec["noise_shape"], dtype=np.float32
            )
        diffs.append(
            np.abs(
                candidate.predict_chunk(obs, noise=noise)
                - reference.predict_chunk(obs, noise=noise)
            )
        )
    return float(max(d.max() for d in diffs)), float(np.mean([d.mean() for d in diffs]))


def auto_plan(
    fp32: BundleRunner, feeds, observations, config: QuantizeConfig, progress: ProgressFn
):
    """The fastest combination of stage precisions whose action error stays within the budget.

    Each stage is quantised once per precision; every combination is assembled from those
    files, timed (median of 5 calls after a warm-up) and compared with fp32. Returns
    (plan, candidates sorted by latency)."""
    import itertools
    import tempfile

    stages = fp32.manifest.stages
    source = Path(fp32.folder)
    combos = list(itertools.product(PRECISIONS, repeat=len(stages)))
    candidates = []
    with tempfile.TemporaryDirectory(prefix="auto_plan.") as tmp:
        for precision in PRECISIONS:
            for stage in stages:
                dst = Path(tmp) / precision / stage.file
                dst.parent.mkdir(exist_ok=True)
                quantize_stage(
                    source / stage.file, dst, precision, feeds[stage.name], config.calibration
                )
        for i, combo in enumerate(combos):
            plan = {s.name: p for s, p in zip(stages, combo, strict=True)}
            progress(ProgressEvent("auto plan", i, len(combos), " ".join(combo)))
            variant = Path(tmp) / f"combo{i}"
            variant.mkdir()
            specs = []
            for stage, precision in zip(stages, combo, strict=True):
                (variant / stage.file).symlink_to(Path(tmp) / precision / stage.file)
                specs.append(
                    StageSpec(stage.name, stage.file, stage.inputs, stage.outputs, precision)
                )
            write_json_atomic(
                variant / MANIFEST,
                Manifest(**{**fp32.manifest.__dict__, "stages": tuple(specs)}).to_dict(),
            )
            runner = BundleRunner(variant, verify=False)
            err_max, err_mean = action_error(fp32, runner, observations)
            runner.predict_chunk(observations[0])  # warm-up
            times = []
            for _ in range(5):
                t0 = time.perf_counter()
                runner.predict_chunk(observations[0])
                times.append(time.perf_counter() - t0)
            candidates.append({"plan": plan, "action_error_max": err_max, "action_error_mean": err_mean,
                               "p50_s": float(np.median(times)), "within_budget": err_max <= config.budget})  # fmt: skip
    progress(ProgressEvent("auto plan", len(combos), len(combos), "chosen"))
    candidates.sort(key=lambda c: c["p50_s"])
    # fp32 everywhere has no error, so at least one candidate always fits the budget.
    fits = [c for c in candidates if c["within_budget"]]
    return fits[0]["plan"], candidates


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
        if precision == "int4-weights":
            import onnx
            from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

            quantizer = MatMulNBitsQuantizer(onnx.load(str(src)), bits=4, block_size=INT4_BLOCK_SIZE,
                                             is_symmetric=True)  # fmt: skip
            quantizer.process()
            quantizer.model.save_model_to_file(str(dst))
            return
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
