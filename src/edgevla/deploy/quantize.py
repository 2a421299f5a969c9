"""Precision plans: which stage runs at which precision, applied to a bundle with ONNX Runtime's
quantisation tools, and the action error each plan costs, measured against the fp32 bundle.

A plan is data: {stage name or "*": precision}. Precisions:
    fp32          the exported graph as it is
    int8-dynamic  weights int8 per channel, activations quantised at run time (MatMul, Gemm,
                  Conv ...); no calibration needed
    int8-static   QDQ: weights int8 per channel, activations uint8 with ranges calibrated on
                  stage inputs from rendered observations (`calibration`: minmax | entropy |
                  percentile; how each is set up: `deploy/calibration.py`); each
                  convolution's weights symmetric or asymmetric, whichever kernel ORT runs
                  faster here (`conv_weights`, `deploy/conv_weights.py`). The
                  full-size SmolVLA vision stage calibrates in ~8 GB since its attention
                  exports as one node (it exceeded 24 GB before, 2026-12-02)
    int4-weights  MatMul weights 4-bit in blocks of 32 (ONNX Runtime's MatMulNBits), activations
                  fp32: a quarter of the memory traffic for the transformer layers, no
                  calibration; Conv layers stay fp32
Named plans (`PLANS`): fp32, int8-all (dynamic everywhere), int8-static-all, int4-all (4-bit
MatMul weights everywhere, the expert included), selective (the vision stage int8 static,
SmolVLA's prefill int8 dynamic, the rest, the action expert or ACT's transformer, fp32: the
paper's choice of where precision is cheap), selective-dynamic, int8-mixed (vision int8
static, every other stage int8 dynamic), int8-static-linear (every stage int8 static but the
attention's matmuls of two activations and its softmax, `attention_fp32`). A named plan may name stages
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
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from edgevla_runtime.bundle import MANIFEST, BundleRunner, Manifest, StageSpec, sha256_of

from edgevla.deploy.calibration import (
    check_calibration,
    ort_prints_to_stderr,
    static_calibration_args,
)
from edgevla.deploy.conv_weights import CONV_WEIGHTS, choose_conv_weights, conv_weightings
from edgevla.deploy.graph_prep import prepared_for_static, quantize_before_space_to_depth
from edgevla.deploy.stage_files import StageFiles
from edgevla.errors import BadInput
from edgevla.jsonio import write_json_atomic
from edgevla.progress import ProgressEvent, ProgressFn, no_progress

PRECISIONS = ("fp32", "int8-dynamic", "int8-static", "int4-weights")
NO_INT8_KERNEL = ("LayerNormalization",)
"""operators ORT runs in float whatever their inputs: int8 static leaves them out of the
quantisation, else their weights (a LayerNorm's scale and bias) are stored int8 and dequantised
at every call (shipped ACT transformer: 15 of its 28 DequantizeLinear, 0.91 -> 0.87 ms; the
max action error 0.056 -> 0.053 rad)"""
INT4_BLOCK_SIZE = 32
ATTENTION_FP32 = {"precision": "int8-static", "attention_fp32": True}
PLANS: dict[str, dict[str, str | dict[str, Any]]] = {
    "fp32": {"*": "fp32"},
    "int8-all": {"*": "int8-dynamic"},
    "int8-static-all": {"*": "int8-static"},
    "int4-all": {"*": "int4-weights"},
    "selective": {"vision": "int8-static", "prefill": "int8-dynamic", "*": "fp32"},
    # the same split without calibration, for stages too large to calibrate statically
    "selective-dynamic": {"vision": "int8-dynamic", "prefill": "int8-dynamic", "*": "fp32"},
    # convolutions static (dynamic ConvInteger is slow on x86), the transformer layers dynamic:
    # paper-size ACT 0.234 s vs int8-static-all 0.285 s (int8-static-linear: 0.230 s)
    "int8-mixed": {"vision": "int8-static", "*": "int8-dynamic"},
    # every convolution and linear layer int8 static, the attention's activation-by-activation
    # matmuls and softmax fp32: ORT's int8 kernels for those (QLinearMatMul over heads,
    # QLinearSoftmax) are slower than fp32 here. Shipped ACT transformer 0.98 -> 0.87 ms, paper-size
    # ACT 0.17 -> 0.12 s (docs/experiments.md, 2026-12-03)
    "int8-static-linear": {"*": ATTENTION_FP32},
}


@dataclass(frozen=True)
class StagePlan:
    """How one stage is quantised. Patterns follow ORT's own recipes (get_qdq_config's
    nodes_to_exclude / op_types_to_quantize), held as data:
        precision   one of PRECISIONS
        keep_fp32   node-name patterns (fnmatch, e.g. "/backbone/layer4/*") left in fp32: the
                    layers `edgevla sensitivity` finds most sensitive
        op_types    quantise only these operator types (e.g. [MatMul]); empty: ORT's default
        attention_fp32  leave in fp32 every MatMul of two activations (attention scores and
                    their weighted sum) and every Softmax, whatever their names
        conv_weights    int8 static convolutions: fastest (each conv's weights symmetric or
                    asymmetric, whichever kernel ORT runs faster on this CPU, timed at
                    quantisation: `deploy/conv_weights.py`) | symmetric (ORT's default) |
                    asymmetric
    """

    precision: str
    keep_fp32: tuple[str, ...] = ()
    op_types: tuple[str, ...] = ()
    attention_fp32: bool = False
    conv_weights: str = "fastest"

    def to_dict(self) -> dict[str, Any]:
        return {"precision": self.precision, "keep_fp32": list(self.keep_fp32),
                "op_types": list(self.op_types), "attention_fp32": self.attention_fp32,
                "conv_weights": self.conv_weights}  # fmt: skip


_PLAN_EXAMPLE = (
    "e.g. {vision: {precision: int8-static, keep_fp32: ['/layer4/*']}, transformer: "
    "int8-dynamic, '*': fp32}"
)


def _stage_plan(value: Any, where: str) -> StagePlan:
    """A plan entry: a precision string, or a mapping {precision, keep_fp32, op_types,
    attention_fp32, conv_weights}."""
    if isinstance(value, StagePlan):
        return value
    if isinstance(value, str):
        value = {"precision": value}
    if not isinstance(value, dict) or not isinstance(value.get("precision"), str):
        raise BadInput(f"{where}: a stage maps to a precision or to a mapping with 'precision'; "
                       + _PLAN_EXAMPLE, field="--plan")  # fmt: skip
    unknown = set(value) - {"precision", "keep_fp32", "op_types", "attention_fp32", "conv_weights"}
    if unknown:
        raise BadInput(f"{where}: unknown keys {sorted(unknown)}; allowed precision, keep_fp32, "
                       "op_types, attention_fp32, conv_weights", field="--plan")  # fmt: skip
    attention_fp32 = value.get("attention_fp32", False)
    if not isinstance(attention_fp32, bool):
        raise BadInput(f"{where}: attention_fp32 must be true or false", field="--plan")
    conv_weights = value.get("conv_weights", "fastest")
    if conv_weights not in CONV_WEIGHTS:
        raise BadInput(f"{where}: conv_weights must be one of {CONV_WEIGHTS}, got "
                       f"{conv_weights!r}", field="--plan")  # fmt: skip
    lists = {}
    for key in ("keep_fp32", "op_types"):
        items = value.get(key) or []
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise BadInput(f"{where}: {key} must be a list of strings", field="--plan")
        lists[key] = tuple(items)
    if value["precision"] not in PRECISIONS:
        raise BadInput(f"{where}: unknown precision {value['precision']!r}; one of {PRECISIONS}",
                       field="--plan")  # fmt: skip
    return StagePlan(
        value["precision"], lists["keep_fp32"], lists["op_types"], attention_fp32, conv_weights
    )


def read_plan_file(path: Path) -> dict[str, StagePlan]:
    """A plan file: a YAML (or JSON) mapping {stage or "*": precision or StagePlan fields}.
    safe_load only: a plan is data, never code."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise BadInput(f"cannot read the plan file ({e})", path=path, field="--plan") from e
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise BadInput("a plan file maps stage names (or '*') to precisions, " + _PLAN_EXAMPLE,
                       path=path, field="--plan")  # fmt: skip
    return {k: _stage_plan(v, f"{path}: {k}") for k, v in data.items()}


def write_plan_file(plan: dict[str, StagePlan], path: Path) -> Path:
    """The inverse of read_plan_file (a plan `auto` chose, kept as a file to reuse)."""
    import yaml

    data = {}
    for stage, sp in plan.items():
        full = {k: v for k, v in sp.to_dict().items() if v}
        data[stage] = full if len(full) > 1 else sp.precision
    Path(path).write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return Path(path)


def _is_plan_file(plan: str) -> bool:
    return plan.endswith((".yaml", ".yml", ".json"))


def int8_saturates() -> bool:
    """Whether this CPU's int8 kernels can saturate: ONNX Runtime multiplies uint8 activations
    by int8 weights with VPMADDUBSW on x86-64 without VNNI, whose int16 sums clip; weights in 7
    bits (reduce_range) avoid it. Arm and VNNI CPUs compute exactly. (Measured here, AVX2 only,
    shipped ACT: int8-all max action error 0.43 rad at 8 bits, 0.05 at 7 bits.)"""
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").split()
    except OSError:
        return True  # unknown x86: the safe side
    return not {"avx512_vnni", "avx_vnni", "amx_int8"} & set(flags)


def resolve_reduce_range(setting: str) -> bool:
    return int8_saturates() if setting == "auto" else setting == "on"


def require_fp32(manifest: Manifest, bundle: Path) -> None:
    """Quantising a quantised stage compounds two errors and ORT's tools refuse or mangle
    QDQ/MatMulNBits graphs: plans start from the fp32 export."""
    done = {s.name: s.precision for s in manifest.stages if s.precision != "fp32"}
    if done:
        stage, precision = next(iter(done.items()))
        raise BadInput(
            f"stage {stage!r} is already {precision}; quantise from the fp32 bundle that "
            "`edgevla export` wrote (its path is in this bundle's manifest, parity.source_bundle)",
            path=bundle,
        )


def resolve_plan(plan: str | dict[str, Any], stages: list[str]) -> dict[str, StagePlan]:
    """{stage: StagePlan} for every stage of a bundle, from a plan name, file or mapping."""
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
    return {s: _stage_plan(plan.get(s, plan.get("*", "fp32")), s) for s in stages}


def excluded_nodes(
    model_path: Path, stage: str, plan: StagePlan, also: list[str] | tuple[str, ...] = ()
) -> list[str]:
    """Names of the nodes `plan` leaves in fp32 (its keep_fp32 patterns, its attention with
    attention_fp32), `also`, and for int8 static the NO_INT8_KERNEL operators, in that order,
    each once; the graph is read once. A pattern matching nothing is a typo."""
    import fnmatch

    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    names = [n.name for n in graph.node]
    out: list[str] = []
    for pattern in plan.keep_fp32:
        hits = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
        if not hits:
            raise BadInput(f"stage {stage!r}: keep_fp32 pattern {pattern!r} matches no node; "
                           "`edgevla sensitivity` lists the node names", field="--plan")  # fmt: skip
        out += [h for h in hits if h not in out]
    more = [*(_attention_nodes(graph) if plan.attention_fp32 else ()), *also]
    if plan.precision == "int8-static":
        more += [n.name for n in graph.node if n.name and n.op_type in NO_INT8_KERNEL]
    return out + [n for n in dict.fromkeys(more) if n not in out]


def attention_nodes(model_path: Path) -> list[str]:
    """Names of the Softmax nodes and of the MatMuls neither of whose inputs is a weight (an
    initializer or a Constant's output): attention's scores and weighted sums."""
    import onnx

    return _attention_nodes(onnx.load(str(model_path), load_external_data=False).graph)


def _attention_nodes(graph) -> list[str]:
    weights = {i.name for i in graph.initializer}
    weights |= {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    return [n.name for n in graph.node if n.name and (n.op_type == "Softmax"
            or (n.op_type == "MatMul" and not weights & set(n.input)))]  # fmt: skip


@dataclass(frozen=True)
class QuantizeConfig:
    bundle: Path
    """an fp32 bundle from `edgevla export`"""
    out: Path
    plan: str = "selective"
    """fp32 | int8-all | int8-static-all | int8-static-linear | int8-mixed | int4-all | selective |
    selective-dynamic | auto | a .yaml file"""
    budget: float | None = None
    """with --plan auto: the largest action error (rad) allowed against fp32"""
    calibration: str = "minmax"
    """activation range calibration for int8-static: minmax | entropy | percentile"""
    calibration_observations: int = 16
    eval_observations: int = 8
    """held-out observations (other seeds) for the action error"""
    dataset: Path | None = None
    """calibrate on frames of this recorded dataset's train split and measure the error on its
    val split (default: observations rendered by the simulator)"""
    int4_block_size: int = INT4_BLOCK_SIZE
    """int4-weights: weights per scale (a power of two >= 16; smaller is more accurate)"""
    reduce_range: str = "auto"
    """int8 weights in 7 bits: on | off | auto (on where this CPU saturates int8 products:
    x86-64 without VNNI; Arm boards and VNNI CPUs do not)"""
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
        check_calibration(self.calibration)
        if self.calibration_observations < 1 or self.eval_observations < 1:
            raise BadInput("calibration and eval observations must be >= 1")
        if self.int4_block_size < 16 or self.int4_block_size & (self.int4_block_size - 1):
            raise BadInput(f"must be a power of two >= 16, got {self.int4_block_size}",
                           field="--int4-block-size")  # fmt: skip
        if self.dataset is not None and not Path(self.dataset).is_dir():
            raise BadInput("dataset folder not found", path=self.dataset, field="--dataset")
        if self.reduce_range not in ("auto", "on", "off"):
            raise BadInput(f"must be auto, on or off, got {self.reduce_range!r}",
                           field="--reduce-range")  # fmt: skip
        require_fp32(Manifest.read(self.bundle), self.bundle)  # readable, fp32, before any work
        if Path(self.out).exists() and not self.overwrite:
            raise BadInput("already exists; pass --overwrite to replace it", path=self.out)

    def stage_settings(self, reduce_range: bool) -> StageSettings:
        return StageSettings(self.calibration, self.calibration_observations, self.dataset,
                             self.int4_block_size, reduce_range)  # fmt: skip


@dataclass
class QuantizeResult:
    bundle: str
    plan: dict[str, str]
    calibration: str
    action_error_max: float
    action_error_mean: float
    eval_observations: int
    sizes_bytes: dict[str, int] = field(default_factory=dict)
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    """stages with layers kept in fp32 or operator types restricted (plan files)"""
    reduce_range: bool = False
    """int8 weights were quantised in 7 bits (see int8_saturates)"""
    seconds: float = 0.0
    candidates: list[dict[str, Any]] = field(default_factory=list)
    """--plan auto: every combination measured (plan, error max/mean, p50 latency)"""
    stages_reused: list[str] = field(default_factory=list)
    """stages taken from graphs quantised earlier in the same command (auto's search) instead
    of quantised again"""
    confirmation: dict[str, Any] | None = None
    """--confirm-episodes: the closed-loop check of auto's choice (edgevla.eval.confirm_plan)"""
    conv_weights: dict[str, dict[str, int]] = field(default_factory=dict)
    """int8 static stages with convolutions: how many have symmetric / asymmetric weights"""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def quantize_bundle(
    config: QuantizeConfig,
    progress: ProgressFn = no_progress,
    stage_files: StageFiles | None = None,
) -> QuantizeResult:
    """Write config.out: config.bundle's stages at config.plan's precisions, with the action
    error against fp32 in its manifest. stage_files: graphs quantised earlier in the same
    command (auto's search), reused where their key matches; without one, the graphs live in
    a temporary folder for this call."""
    if stage_files is None:
        with tempfile.TemporaryDirectory(prefix="edgevla-stages.") as tmp:
            return quantize_bundle(config, progress, StageFiles(tmp))
    from edgevla.deploy.export import bundle_being_written
    from edgevla.deploy.observations import observations, source_of

    t0 = time.perf_counter()
    source = Path(config.bundle)
    fp32 = BundleRunner(source)
    reduce_range = resolve_reduce_range(config.reduce_range)
    eval_obs = observations(fp32, config.eval_observations, 2000, config.dataset, "val")
    build = StageBuilder(fp32, config.stage_settings(reduce_range), stage_files)
    candidates: list[dict[str, Any]] = []
    names = [s.name for s in fp32.manifest.stages]
    if config.plan == "auto":
        chosen, candidates = auto_plan(fp32, build, eval_obs, config, progress)
        plan = resolve_plan(chosen, names)
    else:
        plan = resolve_plan(config.plan, names)
    out = Path(config.out)
    weightings: dict[str, dict[str, int]] = {}
    with bundle_being_written(out, "quantizing") as work:
        specs = []
        for i, stage in enumerate(fp32.manifest.stages):
            sp = plan[stage.name]
            progress(ProgressEvent("quantize", i, len(plan), f"{stage.name}: {sp.precision}"))
            dst = work / stage.file
            shutil.copyfile(build(stage, sp), dst)
            specs.append(StageSpec(stage.name, stage.file, stage.inputs, stage.outputs,
                                   sp.precision, sha256_of(dst)))  # fmt: skip
            counts = conv_weightings(dst) if sp.precision == "int8-static" else {}
            if any(counts.values()):
                weightings[stage.name] = counts
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
            "observations_from": source_of(config.dataset),
            "plan": {name: sp.to_dict() for name, sp in plan.items()},
            "reduce_range": reduce_range,
            "conv_weights": weightings,
        }
        manifest = Manifest(**{**manifest.__dict__, "parity": parity})
        write_json_atomic(work / MANIFEST, manifest.to_dict())
    return QuantizeResult(
        bundle=str(out),
        plan={name: sp.precision for name, sp in plan.items()},
        overrides={
            n: sp.to_dict()
            for n, sp in plan.items()
            if sp != StagePlan(sp.precision)  # anything but the precision's defaults
        },
        reduce_range=reduce_range,
        calibration=config.calibration,
        action_error_max=err_max,
        action_error_mean=err_mean,
        eval_observations=len(eval_obs),
        sizes_bytes={s.name: (out / s.file).stat().st_size for s in specs},
        seconds=time.perf_counter() - t0,
        candidates=candidates,
        stages_reused=build.reused_for(names, plan),
        conv_weights=weightings,
    )


@dataclass(frozen=True)
class StageSettings:
    """Everything besides the source graph and its plan entry that shapes a quantised stage
    (so, with those two, the key under which StageFiles keeps it)."""

    calibration: str = "minmax"
    calibration_observations: int = 16
    """observations of the train split (or rendered) whose stage inputs calibrate int8-static"""
    dataset: Path | None = None
    int4_block_size: int = INT4_BLOCK_SIZE
    reduce_range: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"calibration": self.calibration, "observations": self.calibration_observations,
                "dataset": str(Path(self.dataset).resolve()) if self.dataset else None,
                "int4_block_size": self.int4_block_size, "reduce_range": self.reduce_range}  # fmt: skip


class StageBuilder:
    """One bundle's stages at any plan entry, each quantised once: every graph is kept in
    `stage_files` and found again by its key, and calibration feeds are computed on first need
    (a bundle whose stages were all quantised before needs none). Used by `edgevla quantize`
    (auto's search, the bundle it writes, a confirmation's candidates) and by
    `edgevla sensitivity`."""

    def __init__(self, fp32: BundleRunner, settings: StageSettings,
                 stage_files: StageFiles) -> None:  # fmt: skip
        self.fp32, self.settings, self.files = fp32, settings, stage_files
        self._feeds: dict[str, list[dict[str, np.ndarray]]] | None = None
        self.found: set[str] = set()  # keys found in stage_files, quantised by someone before

    def key(self, stage: StageSpec, plan: StagePlan) -> str:
        return StageFiles.key(stage.sha256 or str(Path(self.fp32.folder).resolve() / stage.file),
                              plan.to_dict(), self.settings.to_dict())  # fmt: skip

    def feeds(self) -> dict[str, list[dict[str, np.ndarray]]]:
        from edgevla.deploy.observations import observations

        if self._feeds is None:
            c = self.settings
            obs = observations(self.fp32, c.calibration_observations, 1000, c.dataset, "train")
            self._feeds = calibration_feeds(self.fp32, obs)
        return self._feeds

    def __call__(self, stage: StageSpec, plan: StagePlan | str) -> Path:
        """The path of `stage` quantised by `plan` (read it, do not move it)."""
        plan = _stage_plan(plan, stage.name)
        if plan.precision == "fp32":  # the exported graph as it is
            return Path(self.fp32.folder) / stage.file
        key = self.key(stage, plan)
        found = self.files.lookup(key, stage.file)
        if found is not None:
            self.found.add(key)
            return found
        quantize_stage(Path(self.fp32.folder) / stage.file, self.files.partial(key, stage.file),
                       plan, self.feeds()[stage.name], self.settings.calibration,
                       self.settings.int4_block_size, stage=stage.name,
                       reduce_range=self.settings.reduce_range)  # fmt: skip
        return self.files.store(key, stage.file)

    def reused_for(self, names: list[str], plan: dict[str, StagePlan]) -> list[str]:
        """Stages of `plan` whose graph was found in stage_files rather than quantised here."""
        stages = {s.name: s for s in self.fp32.manifest.stages}
        return [n for n in names if plan[n].precision != "fp32"
                and self.key(stages[n], plan[n]) in self.found]  # fmt: skip


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
    fp32: BundleRunner,
    build: StageBuilder,
    observations,
    config: QuantizeConfig,
    progress: ProgressFn,
):
    """The fastest combination of stage precisions whose action error stays within the budget.

    Each stage is quantised once per precision (by `build`, which keeps the graphs for the
    bundle written next and for a confirmation's candidates); every combination is assembled
    from those files, timed (median of 5 calls after a warm-up) and compared with fp32.
    Returns (plan, candidates sorted by latency)."""
    import itertools

    stages = fp32.manifest.stages
    candidates = []
    built = {}
    for i, (precision, stage) in enumerate(itertools.product(PRECISIONS, stages)):
        progress(ProgressEvent("auto plan: quantise", i, len(PRECISIONS) * len(stages),
                               f"{stage.name}: {precision}"))  # fmt: skip
        built[stage.name, precision] = build(stage, precision)
    # int4 applies to MatMul weights: a stage without one (ACT's convolution trunk) comes out
    # as its fp32 graph, a candidate that only repeats fp32's
    options = [[p for p in PRECISIONS
                if p != "int4-weights" or _has_op(built[s.name, p], "MatMulNBits")]
               for s in stages]  # fmt: skip
    combos = list(itertools.product(*options))
    with tempfile.TemporaryDirectory(prefix="auto_plan.") as tmp:
        for i, combo in enumerate(combos):
            plan = {s.name: p for s, p in zip(stages, combo, strict=True)}
            progress(ProgressEvent("auto plan", i, len(combos), " ".join(combo)))
            files = {s.name: (built[s.name, p], p) for s, p in zip(stages, combo, strict=True)}
            runner = variant_runner(fp32, files, Path(tmp) / f"combo{i}")
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


def _has_op(graph: Path, op_type: str) -> bool:
    import onnx

    model = onnx.load(str(graph), load_external_data=False)
    return any(n.op_type == op_type for n in model.graph.node)


def variant_runner(
    fp32: BundleRunner, files: dict[str, tuple[Path, str]], folder: Path
) -> BundleRunner:
    """A runner of fp32's bundle with some stages swapped: files maps a stage name to (graph,
    precision). The variant is a folder of links to the graphs and a manifest (no copies; its
    checksums are not recorded, so it is not verified): for measuring, not for shipping."""
    folder.mkdir(parents=True)
    specs = []
    for stage in fp32.manifest.stages:
        graph, precision = files.get(stage.name, (Path(fp32.folder) / stage.file, stage.precision))
        (folder / stage.file).symlink_to(Path(graph).resolve())
        specs.append(StageSpec(stage.name, stage.file, stage.inputs, stage.outputs, precision))
    write_json_atomic(folder / MANIFEST,
                      Manifest(**{**fp32.manifest.__dict__, "stages": tuple(specs)}).to_dict())  # fmt: skip
    return BundleRunner(folder, verify=False)


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


def quantize_stage(
    src: Path,
    dst: Path,
    plan: StagePlan | str,
    feeds: list[dict[str, np.ndarray]],
    calibration: str,
    int4_block_size: int = INT4_BLOCK_SIZE,
    stage: str = "",
    reduce_range: bool = False,
) -> None:
    """Write `src` at `plan`'s precision to `dst` (fp32: a copy), leaving the nodes its
    keep_fp32 patterns match in fp32."""
    plan = _stage_plan(plan, stage or Path(src).stem)
    if plan.precision == "fp32":
        shutil.copyfile(src, dst)
        return
    import logging

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # ORT's quantiser logs advice through the root logger
    try:
        with tempfile.TemporaryDirectory(prefix="edgevla-quantize.") as workdir:
            layout_nodes: list[str] = []  # a rewrite's own nodes, kept float
            if plan.precision == "int8-static":  # keep_fp32 names resolve on the prepared graph
                src, layout_nodes = prepared_for_static(src, Path(workdir))
            exclude = excluded_nodes(src, stage or Path(src).stem, plan, layout_nodes)
            _quantize(src, dst, plan, exclude, feeds, calibration, int4_block_size,
                      reduce_range, Path(workdir))  # fmt: skip
            if plan.precision == "int8-static":  # ORT's graph, loaded once for both passes
                import onnx

                model = onnx.load(str(dst))
                # the fold's SpaceToDepth: quantise its input, not its output
                moved = quantize_before_space_to_depth(model.graph) if layout_nodes else 0
                weights = choose_conv_weights(model, src, feeds[0], plan.conv_weights,
                                              reduce_range)  # fmt: skip
                if moved or weights["asymmetric"]:
                    onnx.save(model, str(dst))
    finally:
        root.setLevel(level)


def _quantize(
    src: Path,
    dst: Path,
    plan: StagePlan,
    exclude: list[str],
    feeds,
    calibration: str,
    int4_block_size: int,
    reduce_range: bool,
    workdir: Path,
) -> None:
    import logging

    from onnxruntime.quantization import (
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    precision, op_types = plan.precision, list(plan.op_types) or None

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if precision == "int4-weights":
            import onnx
            from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

            # its own logger, at INFO with a handler: a line for every node of the graph
            logging.getLogger(MatMulNBitsQuantizer.__module__).setLevel(logging.ERROR)

            quantizer = MatMulNBitsQuantizer(onnx.load(str(src)), bits=4, block_size=int4_block_size,
                                             is_symmetric=True, nodes_to_exclude=exclude,
                                             op_types_to_quantize=tuple(op_types) if op_types else None)  # fmt: skip
            quantizer.process()
            quantizer.model.save_model_to_file(str(dst))
            return
        if precision == "int8-dynamic":
            quantize_dynamic(src, dst, weight_type=QuantType.QInt8, per_channel=True,
                             nodes_to_exclude=exclude, op_types_to_quantize=op_types,
                             reduce_range=reduce_range)  # fmt: skip
            return
        with ort_prints_to_stderr():
            quantize_static(
                src,
                dst,
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=exclude,
                op_types_to_quantize=op_types,
                reduce_range=reduce_range,
                **static_calibration_args(src, feeds, calibration, op_types, workdir),
            )
