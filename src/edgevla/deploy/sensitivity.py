"""Where the quantisation error comes from: each stage alone at each precision, against fp32.

For every stage s and precision p, a copy of the fp32 bundle with only s at p runs the same
held-out observations as the fp32 bundle; the table gives the action error (max and mean abs,
action units) and s's own median latency. For a flow-matching bundle, the expert's error is
also followed step by step: from the same noise and the same (fp32) prefix, the quantised and
the fp32 Euler trajectories are compared after every denoising step. Last, the stage and
precision with the largest error is opened layer by layer (deploy/layers.py): the layers that
add the most quantisation noise, which a plan can keep in fp32 (keep_fp32). A curve that grows with
the steps is the accumulation the NXP/Hugging Face write-up warns about (and the reason to keep
the expert in higher precision); a flat one says the expert tolerates it.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from edgevla_runtime.bundle import BundleRunner, Manifest

from edgevla.deploy.calibration import check_calibration
from edgevla.deploy.graph_prep import prepared_for_static
from edgevla.deploy.layers import LayerError, layer_errors
from edgevla.deploy.stage_files import StageFiles
from edgevla.errors import BadInput
from edgevla.progress import ProgressEvent, ProgressFn, no_progress


@dataclass(frozen=True)
class SensitivityConfig:
    bundle: Path
    """an fp32 bundle from `edgevla export`"""
    out: Path | None = None
    """where sensitivity.json and the PNG go (default: <bundle>/../<name>_sensitivity)"""
    precisions: tuple[str, ...] = ("int8-dynamic", "int8-static")
    calibration: str = "minmax"
    calibration_observations: int = 8
    eval_observations: int = 4
    calls: int = 5
    """timed calls per stage for its latency"""
    reduce_range: str = "auto"
    """int8 weights in 7 bits: on | off | auto (see `edgevla quantize --help`)"""
    top_layers: int = 10
    """layers listed for the stage with the largest error"""
    layer_feeds: int = 4
    """held-out stage inputs the per-layer errors are measured on"""
    dataset: Path | None = None
    """calibrate on this recorded dataset's train split, measure on its val split (default:
    observations rendered by the simulator)"""

    def __post_init__(self) -> None:
        from edgevla.deploy.quantize import PRECISIONS, require_fp32

        bad = [p for p in self.precisions if p not in PRECISIONS or p == "fp32"]
        if bad or not self.precisions:
            raise BadInput(
                f"must be among {PRECISIONS[1:]}, got {bad or 'none'}", field="--precisions"
            )
        check_calibration(self.calibration)
        if min(self.calibration_observations, self.eval_observations, self.calls,
               self.top_layers, self.layer_feeds) < 1:  # fmt: skip
            raise BadInput("observation and call counts must be >= 1")
        if self.dataset is not None and not Path(self.dataset).is_dir():
            raise BadInput("dataset folder not found", path=self.dataset, field="--dataset")
        require_fp32(Manifest.read(self.bundle), self.bundle)


@dataclass
class SensitivityRow:
    stage: str
    precision: str
    action_error_max: float
    action_error_mean: float
    stage_latency_s: float


@dataclass
class SensitivityResult:
    bundle: str
    rows: list[SensitivityRow]
    expert_steps: dict[str, list[float]] = field(default_factory=dict)
    """precision -> mean abs error of x after each Euler step (flow matching only)"""
    layers_of: dict[str, str] = field(default_factory=dict)
    """the stage and precision with the largest mean action error, whose layers are listed"""
    layers: list[LayerError] = field(default_factory=list)
    """its layers adding the most quantisation noise, largest first (see deploy/layers.py)"""
    figure: str | None = None
    results_file: str = ""

    def keep_fp32_plan(self, n: int = 3) -> dict[str, Any]:
        """A plan entry keeping the n noisiest layers of the worst stage in fp32."""
        if not self.layers_of:
            return {}
        keep = [layer.node for layer in self.layers[:n]]
        return {
            self.layers_of["stage"]: {"precision": self.layers_of["precision"], "keep_fp32": keep}
        }

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sensitivity(config: SensitivityConfig, progress: ProgressFn = no_progress) -> SensitivityResult:
    from edgevla.deploy.bench import stage_latencies
    from edgevla.deploy.observations import observations
    from edgevla.deploy.quantize import (
        StageBuilder,
        StageSettings,
        calibration_feeds,
        resolve_reduce_range,
        variant_runner,
    )
    from edgevla.jsonio import write_json_atomic

    source = Path(config.bundle)
    fp32 = BundleRunner(source)
    manifest = fp32.manifest
    settings = StageSettings(config.calibration, config.calibration_observations, config.dataset,
                             reduce_range=resolve_reduce_range(config.reduce_range))  # fmt: skip
    held_out = observations(fp32, config.eval_observations, 2000, config.dataset, "val")
    rng = np.random.default_rng(0)
    noises = None
    if manifest.sampler:
        shape = manifest.sampler["noise_shape"]
        noises = [rng.standard_normal(shape, dtype=np.float32) for _ in held_out]
    reference = [fp32.predict_chunk(o, noise=None if noises is None else noises[i]) for i, o in enumerate(held_out)]  # fmt: skip
    rows, curves = [], {}
    total = len(manifest.stages) * len(config.precisions)
    done = 0
    with tempfile.TemporaryDirectory(prefix="sensitivity.") as tmp:
        build = StageBuilder(fp32, settings, StageFiles(Path(tmp) / "stages"))
        for stage in manifest.stages:
            for precision in config.precisions:
                progress(ProgressEvent("sensitivity", done, total, f"{stage.name} {precision}"))
                runner = variant_runner(fp32, {stage.name: (build(stage, precision), precision)},
                                        Path(tmp) / f"{stage.name}-{precision}")  # fmt: skip
                diffs = [
                    np.abs(runner.predict_chunk(o, noise=None if noises is None else noises[i]) - reference[i])
                    for i, o in enumerate(held_out)
                ]  # fmt: skip
                rows.append(SensitivityRow(stage.name, precision, float(max(d.max() for d in diffs)),
                                           float(np.mean([d.mean() for d in diffs])),
                                           stage_latencies(runner, held_out[0], config.calls)[stage.name]))  # fmt: skip
                if manifest.sampler and stage.name == manifest.sampler["stage"]:
                    curves[precision] = _step_errors(fp32, runner, held_out, noises)
                done += 1
        worst = max(rows, key=lambda r: r.action_error_mean)
        progress(ProgressEvent("sensitivity", total, total, f"layers of {worst.stage} {worst.precision}"))  # fmt: skip
        stage = next(s for s in manifest.stages if s.name == worst.stage)
        held_feeds = calibration_feeds(fp32, held_out)[stage.name][: config.layer_feeds]
        graph = source / stage.file  # int8 static quantises the prepared graph: compare to it
        if worst.precision == "int8-static":
            graph, _ = prepared_for_static(graph, Path(tmp))
        # only layers that add noise: a negative figure (the quantised layer happens to cancel
        # some of its input's error) names nothing worth keeping in fp32
        added = [r for r in layer_errors(graph, build(stage, worst.precision), held_feeds)
                 if r.noise_added > 0]  # fmt: skip
        layers = added[: config.top_layers]
    fp32_latency = stage_latencies(fp32, held_out[0], config.calls)
    fp32_rows = [SensitivityRow(s.name, "fp32", 0.0, 0.0, fp32_latency[s.name])
                 for s in manifest.stages]  # fmt: skip
    out = Path(config.out) if config.out else source.parent / f"{source.name}_sensitivity"
    out.mkdir(parents=True, exist_ok=True)
    result = SensitivityResult(str(source), fp32_rows + rows, curves,
                               layers_of={"stage": worst.stage, "precision": worst.precision},
                               layers=layers)  # fmt: skip
    result.figure = str(plot_sensitivity(result, out / "sensitivity.png"))
    result.results_file = str(out / "sensitivity.json")
    write_json_atomic(out / "sensitivity.json", result.to_dict())
    return result


def _session(runner: BundleRunner, name: str):
    return next(sess for s, sess in runner.sessions if s.name == name)


def _step_errors(fp32: BundleRunner, quant: BundleRunner, observations, noises) -> list[float]:
    """Mean abs difference of x after each Euler step, same noise and same fp32 prefix."""
    spec = fp32.manifest.sampler
    n = spec["num_steps"]
    errors = np.zeros(n)
    for obs, noise in zip(observations, noises, strict=True):
        prefix = fp32.run_stages(fp32.inputs(obs))
        xa, xb = noise.copy(), noise.copy()
        stage = next(s for s, _ in fp32.sessions if s.name == spec["stage"])
        for k in range(n):
            t = np.full((1,), 1.0 - k / n, dtype=np.float32)
            ta, tb = dict(prefix, x_t=xa, t=t), dict(prefix, x_t=xb, t=t)
            fp32.run_stage(stage, _session(fp32, stage.name), ta)
            quant.run_stage(stage, _session(quant, stage.name), tb)
            xa = xa - np.float32(1.0 / n) * ta["velocity"]
            xb = xb - np.float32(1.0 / n) * tb["velocity"]
            errors[k] += float(np.abs(xa - xb)[..., : fp32.manifest.action_dim].mean())
    return (errors / len(observations)).tolist()


def plot_sensitivity(result: SensitivityResult, path: Path) -> Path:
    """Bars: action error of each stage quantised alone; curve: the expert's error by step."""
    from edgevla.figures import pyplot, save_png

    plt = pyplot()
    n = 2 if result.expert_steps else 1
    fig, axes = plt.subplots(1, n, figsize=(6.5 * n, 4), squeeze=False)
    ax = axes[0][0]
    quant = [r for r in result.rows if r.precision != "fp32"]
    labels = [f"{r.stage}\n{r.precision}" for r in quant]
    ax.bar(range(len(quant)), [r.action_error_mean for r in quant], color="tab:blue", label="mean")
    ax.scatter(
        range(len(quant)),
        [r.action_error_max for r in quant],
        color="tab:red",
        zorder=3,
        label="max",
    )
    ax.set_xticks(range(len(quant)), labels, fontsize=7)
    ax.set_ylabel("action error vs fp32 (rad)")
    ax.set_title("one stage quantised, the rest fp32")
    ax.legend(fontsize=8)
    if result.expert_steps:
        ax = axes[0][1]
        for precision, errors in result.expert_steps.items():
            ax.plot(range(1, len(errors) + 1), errors, marker="o", label=precision)
        ax.set_xlabel("Euler step (t: 1 -> 0)")
        ax.set_ylabel("mean |x_quant - x_fp32| (normalised)")
        ax.set_title("expert quantised: error along the denoising loop")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return save_png(fig, path)
