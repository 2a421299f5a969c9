"""Latency of a policy per inference, in PyTorch and as bundles, stage by stage.

Each runner sees the same rendered observations; after warm-up calls, every call is timed with
time.perf_counter around predict_chunk (what delays the arm), and a bundle's stages are timed
one by one on the same inputs. Threads are set per runner (torch.set_num_threads for PyTorch,
intra-op threads for ONNX Runtime), so rows compare like with like.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgevla.errors import BadInput
from edgevla.progress import ProgressEvent, ProgressFn, no_progress


@dataclass(frozen=True)
class LatencyBenchConfig:
    checkpoint: Path | None = None
    """a PyTorch checkpoint to time (the reference row)"""
    bundles: tuple[Path, ...] = ()
    """bundles to time (fp32 and quantised)"""
    threads: int = 1
    calls: int = 20
    warmup: int = 3

    def __post_init__(self) -> None:
        if self.checkpoint is None and not self.bundles:
            raise BadInput("give --checkpoint and/or --bundles to time")
        if self.calls < 1 or self.warmup < 0 or self.threads < 1:
            raise BadInput("--calls and --threads must be >= 1, --warmup >= 0")
        for b in self.bundles:
            if not (Path(b) / "manifest.json").is_file():
                raise BadInput(
                    "is not a bundle (no manifest.json); make one with `edgevla export`", path=b
                )


@dataclass
class LatencyRow:
    name: str
    format: str
    precision: str
    threads: int
    p50_s: float
    p95_s: float
    stages_p50_s: dict[str, float] = field(default_factory=dict)


@dataclass
class LatencyBenchResult:
    rows: list[LatencyRow]
    calls: int
    machine: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _time(fn, calls: int, warmup: int) -> np.ndarray:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return np.asarray(times)


def bench_latency(
    config: LatencyBenchConfig, progress: ProgressFn = no_progress
) -> LatencyBenchResult:
    import platform

    from edgevla_runtime.bundle import BundleRunner

    from edgevla.deploy.export import sim_observations

    rows: list[LatencyRow] = []
    total = (config.checkpoint is not None) + len(config.bundles)
    reference = None
    if config.checkpoint is not None:
        import torch

        from edgevla.policies.runner import TorchPolicyRunner

        torch.set_num_threads(config.threads)
        reference = TorchPolicyRunner.from_checkpoint(config.checkpoint)
        obs = sim_observations(reference, 1)[0]
        t = _time(lambda: reference.predict_chunk(obs), config.calls, config.warmup)
        rows.append(LatencyRow(Path(config.checkpoint).name, "PyTorch", "fp32", config.threads,
                               float(np.median(t)), float(np.percentile(t, 95))))  # fmt: skip
        progress(ProgressEvent("latency", 1, total, "PyTorch"))
    for i, folder in enumerate(config.bundles):
        runner = BundleRunner(folder, threads=config.threads)
        obs = sim_observations(runner, 1)[0]
        t = _time(lambda r=runner, o=obs: r.predict_chunk(o), config.calls, config.warmup)
        stages = stage_latencies(runner, obs, config.calls, config.warmup)
        precision = "+".join(sorted({s.precision for s in runner.manifest.stages}))
        rows.append(LatencyRow(Path(folder).name, "ONNX Runtime", precision, config.threads,
                               float(np.median(t)), float(np.percentile(t, 95)), stages))  # fmt: skip
        progress(
            ProgressEvent("latency", (config.checkpoint is not None) + i + 1, total, str(folder))
        )
    machine = f"{platform.machine()} {platform.processor() or ''} {__import__('os').cpu_count()} cores".strip()
    return LatencyBenchResult(rows, config.calls, machine)


def stage_latencies(runner, observation, calls: int, warmup: int = 1) -> dict[str, float]:
    """Median seconds of each stage on the inputs it meets for `observation`, in order. A
    sampler stage (a flow-matching expert) is timed at t = 1 on zero noise: one Euler step."""
    tensors = runner.inputs(observation)
    sampler = runner.manifest.sampler or {}
    out = {}
    for stage, session in runner.sessions:
        if stage.name == sampler.get("stage"):
            tensors["x_t"] = np.zeros(sampler["noise_shape"], dtype=np.float32)
            tensors["t"] = np.ones((1,), dtype=np.float32)
        feed = {s.name: tensors[s.name] for s in stage.inputs}
        names = [s.name for s in stage.outputs]
        t = _time(lambda s=session, n=names, f=feed: s.run(n, f), calls, warmup)
        tensors.update(zip(names, session.run(names, feed), strict=True))
        out[stage.name] = float(np.median(t))
    return out
