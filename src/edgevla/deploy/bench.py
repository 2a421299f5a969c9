"""Latency of a policy per inference, in PyTorch and as bundles, stage by stage, against the floor.

One row per (runner, thread count): a PyTorch checkpoint (eager, the reference) and each bundle
(ONNX Runtime), at every count in `threads` (torch.set_num_threads for PyTorch, intra-op threads
for ONNX Runtime), so rows compare like with like. Every runner sees the same rendered
observation; after `warmup` calls, `calls` calls of predict_chunk (what delays the arm) are
timed with time.perf_counter and reported as p50 / p90 / p99. A bundle's stages are then timed
one by one on the inputs they meet (a sampler stage: one Euler step).

Memory: each row runs in a fresh process (multiprocessing "spawn"), so one runner's arenas,
caches and thread pools never inflate another's. In that process the libraries are imported
first, then the peak-RSS mark is reset (/proc/self/clear_refs) and the runner is loaded and run:
    rss_mb          = VmHWM at the end - VmRSS before loading: what the runner itself held at
                      its peak (weights, pre-packed kernels, activations, thread stacks)
    rss_process_mb  = VmHWM: the whole process at its peak (interpreter and libraries too)
Without /proc (not Linux) both come from getrusage's peak, and rss_mb is its growth during the
row (0 if the imports peaked higher). MB here is 2**20 bytes; disk_mb is the bundle folder
(every file) or the checkpoint's weights file.

The floor (edgevla.deploy.floor): each stage's FLOPs counted from its graph over this CPU's
GEMM peak measured at the row's thread count; "x floor" = measured p50 / floor. The PyTorch row
gets the FLOPs of a bundle in the same run exported from the same checkpoint (at the fp32 peak).
p99 of fewer than ~100 calls is close to the slowest call.

PyTorch's memory (`pytorch_malloc`). PyTorch asks the C library for every tensor and frees it
after use. glibc maps each buffer above 32 MB fresh from the kernel and unmaps it on free, so
a model with large activations pays, on every call, the kernel zero-filling those pages again;
ONNX Runtime keeps its activations in an arena. Measured on the full-size SmolVLA, 2 threads,
7 calls: 1.66 M minor page faults and 2.1-5.8 s of kernel time per call, calls of 4.5-8.5 s.
With freed memory kept in the process (mallopt M_MMAP_MAX = 0, M_TRIM_THRESHOLD = 2**31 - 1,
the same as MALLOC_MMAP_MAX_=0 in the environment): no faults, 3.5 s every call. On the shipped
ACT (small activations) both are 14 ms. So the PyTorch checkpoint is timed both ways, as two
rows: "system" (what a user gets by default, the issue's baseline and `vs_pytorch`) and "kept"
(`vs_pytorch_kept`, the stricter baseline). "kept" needs glibc; elsewhere it is left out.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgevla.deploy.floor import floor_s, graph_flops, measured_peak
from edgevla.errors import BadInput
from edgevla.progress import ProgressEvent, ProgressFn, no_progress

MIB = 2**20
PERCENTILES = (50, 90, 99)
MALLOC_MODES = ("system", "kept")
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's mallopt parameter numbers (malloc.h)


@dataclass(frozen=True)
class LatencyBenchConfig:
    checkpoint: Path | None = None
    """a PyTorch checkpoint to time (the reference rows)"""
    bundles: tuple[Path, ...] = ()
    """bundles to time (fp32 and quantised)"""
    threads: tuple[int, ...] = (1, 2)
    """thread counts: one row per runner at each (a single int is taken as one count)"""
    calls: int = 50
    warmup: int = 3
    rounds: int = 1
    """time every row this many times, interleaved (each round runs every row once, in order)
    and pool the calls: on a shared machine a slow spell then lands on every row, not on one.
    Measured here, 5 single-round runs of the same ACT rows: the int8 bundle's speed-up over
    PyTorch anywhere in 5.4-6.4x"""
    plot: Path | None = None
    """write a PNG bar chart of per-stage p50 per row, with the floor, here"""
    pytorch_malloc: tuple[str, ...] = MALLOC_MODES
    """how the PyTorch rows get memory: system (the C library's default) and/or kept (freed
    memory stays in the process; glibc only): see the module docstring"""

    def __post_init__(self) -> None:
        if isinstance(self.threads, int):
            object.__setattr__(self, "threads", (self.threads,))
        if self.checkpoint is None and not self.bundles:
            raise BadInput("give --checkpoint and/or --bundles to time")
        if (self.calls < 1 or self.rounds < 1 or self.warmup < 0 or not self.threads
                or min(self.threads) < 1):  # fmt: skip
            raise BadInput("--calls, --rounds and --threads must be >= 1, --warmup >= 0")
        if isinstance(self.pytorch_malloc, str):
            object.__setattr__(self, "pytorch_malloc", (self.pytorch_malloc,))
        bad = [m for m in self.pytorch_malloc if m not in MALLOC_MODES]
        if bad or not self.pytorch_malloc:
            raise BadInput(f"must be {' and/or '.join(MALLOC_MODES)}, got {list(self.pytorch_malloc)}",
                           field="--pytorch-malloc")  # fmt: skip
        if self.plot is not None and Path(self.plot).suffix.lower() != ".png":
            raise BadInput(f"must end in .png, got {self.plot}", field="--plot")
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
    p90_s: float
    p99_s: float
    rss_mb: float
    """peak resident memory the runner added to a fresh process (see the module docstring)"""
    rss_process_mb: float
    disk_mb: float
    stages_p50_s: dict[str, float] = field(default_factory=dict)
    stages_p90_s: dict[str, float] = field(default_factory=dict)
    stages_p99_s: dict[str, float] = field(default_factory=dict)
    stage_runs: dict[str, int] = field(default_factory=dict)
    """times each stage runs per call (the sampler stage: num_steps)"""
    flops: float | None = None
    """per call, counted from the graphs (None: no graph to count)"""
    floor_s: float | None = None
    x_floor: float | None = None
    """p50 / floor"""
    stages_flops: dict[str, float] = field(default_factory=dict)
    stages_floor_s: dict[str, float] = field(default_factory=dict)
    stages_x_floor: dict[str, float] = field(default_factory=dict)
    unresolved_nodes: int = 0
    """GEMM/conv nodes whose shapes stayed unknown: left out of flops (the floor is then lower)"""
    vs_pytorch: float | None = None
    """PyTorch's p50 at the same thread count / this p50 (None without --checkpoint)"""
    malloc: str | None = None
    """PyTorch rows: system | kept (see the module docstring); None for bundles"""
    vs_pytorch_kept: float | None = None
    """as vs_pytorch, against PyTorch with freed memory kept (None where it was not timed)"""


@dataclass
class LatencyBenchResult:
    rows: list[LatencyRow]
    calls: int
    warmup: int
    machine: str
    rounds: int = 1
    peaks: list[dict[str, float]] = field(default_factory=list)
    """measured GEMM peak per thread count: {threads, size, fp32_gflops, int8_gops}"""
    figure: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Target:
    """One runner to time, and what is known of it before it runs."""

    kind: str  # "pytorch" | "bundle"
    folder: Path
    format: str
    precision: str
    image_hw: tuple[int, int]
    disk_mb: float
    stage_flops: dict[str, dict[str, Any]] = field(default_factory=dict)
    stage_runs: dict[str, int] = field(default_factory=dict)
    call_flops: dict[str, float] | None = None
    source: str = ""
    """the checkpoint a bundle was exported from (its manifest's)"""
    malloc: str | None = None
    """PyTorch: system | kept"""


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
    import multiprocessing as mp
    import os
    import platform
    from concurrent.futures import ProcessPoolExecutor
    from types import SimpleNamespace

    from edgevla.deploy.observations import sim_observations

    targets = [_bundle_target(Path(b)) for b in config.bundles]
    if config.checkpoint is not None:
        modes = [m for m in config.pytorch_malloc if m == "system" or can_keep_freed_memory()]
        if not modes:
            raise BadInput("--pytorch-malloc kept needs glibc (Linux); use system")
        targets[:0] = [_checkpoint_target(Path(config.checkpoint), targets, m) for m in modes]
    observations = {
        hw: sim_observations(SimpleNamespace(image_hw=hw), 1)[0]
        for hw in dict.fromkeys(t.image_hw for t in targets)
    }
    peaks = {n: measured_peak(n) for n in config.threads}
    keys = [(threads, i) for threads in config.threads for i in range(len(targets))]
    pooled: dict[tuple[int, int], dict] = {}
    total, done = len(keys) * config.rounds, 0
    # a fresh process per row (max_tasks_per_child=1): memory and warm caches are the row's own
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn"), max_tasks_per_child=1) as pool:
        for _ in range(config.rounds):
            for threads, i in keys:
                target = targets[i]
                progress(ProgressEvent("latency", done, total, f"{target.folder.name} x{threads}"))
                job = (target.kind, str(target.folder), threads, observations[target.image_hw],
                       config.calls, config.warmup, target.malloc)  # fmt: skip
                _pool_into(pooled.setdefault((threads, i), {}), pool.submit(_measure, *job).result())  # fmt: skip
                done += 1
    progress(ProgressEvent("latency", total, total, "done"))
    rows = [_row(targets[i], threads, pooled[threads, i], peaks[threads]) for threads, i in keys]
    for row in rows:
        for attr, malloc in (("vs_pytorch", "system"), ("vs_pytorch_kept", "kept")):
            ref = next((r for r in rows if r.malloc == malloc and r.threads == row.threads), None)
            setattr(row, attr, None if ref is None else ref.p50_s / row.p50_s)
    machine = f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} cores"
    result = LatencyBenchResult(rows, config.calls, config.warmup, " ".join(machine.split()),
                                config.rounds, [peaks[n] for n in config.threads])  # fmt: skip
    if config.plot is not None:
        result.figure = str(plot_latency(result, Path(config.plot)))
    return result


def _pool_into(pooled: dict, measured: dict) -> None:
    """Add one round's measurement of a row to the ones before: calls appended, memory the
    largest seen."""
    if not pooled:
        pooled.update(measured)
        return
    pooled["times"] = pooled["times"] + measured["times"]
    for name, times in measured["stages"].items():
        pooled["stages"][name] = pooled["stages"].get(name, []) + times
    for key in ("rss_mb", "rss_process_mb"):
        pooled[key] = max(pooled[key], measured[key])


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _bundle_target(folder: Path) -> _Target:
    from edgevla_runtime.bundle import Manifest

    m = Manifest.read(folder)
    sampler = m.sampler or {}
    target = _Target("bundle", folder, "ONNX Runtime",
                     "+".join(sorted({s.precision for s in m.stages})), m.image_hw,
                     _folder_bytes(folder) / MIB, source=m.checkpoint)  # fmt: skip
    call = {"fp32_flops": 0.0, "int8_flops": 0.0}
    for stage in m.stages:
        flops = graph_flops(folder / stage.file, {t.name: t.shape for t in stage.inputs})
        runs = int(sampler["num_steps"]) if stage.name == sampler.get("stage") else 1
        target.stage_flops[stage.name], target.stage_runs[stage.name] = flops, runs
        for key in call:
            call[key] += runs * flops[key]
    target.call_flops = call
    return target


def _checkpoint_target(folder: Path, bundles: list[_Target], malloc: str = "system") -> _Target:
    """PyTorch eager: its FLOPs are those of a bundle exported from it, if one is timed too."""
    from edgevla.policies.checkpoint import WEIGHTS_FILE, Checkpoint

    ckpt = Checkpoint.open(folder)
    ckpt.require_stats()
    target = _Target("pytorch", folder, "PyTorch", "fp32", tuple(ckpt.config.camera_hw),
                     (folder / WEIGHTS_FILE).stat().st_size / MIB, malloc=malloc)  # fmt: skip
    for b in bundles:
        if b.source and Path(b.source).resolve() == folder.resolve() and b.call_flops is not None:
            target.call_flops = {"fp32_flops": sum(b.call_flops.values()), "int8_flops": 0.0}
            break
    return target


def _row(target: _Target, threads: int, measured: dict, peak: dict) -> LatencyRow:
    p50, p90, p99 = (float(x) for x in np.percentile(measured["times"], PERCENTILES))
    stages = {name: np.percentile(t, PERCENTILES) for name, t in measured["stages"].items()}
    name = target.folder.name + (" (malloc kept)" if target.malloc == "kept" else "")
    row = LatencyRow(name, target.format, target.precision, threads, p50, p90, p99,
                     measured["rss_mb"], measured["rss_process_mb"], target.disk_mb,
                     {k: float(v[0]) for k, v in stages.items()},
                     {k: float(v[1]) for k, v in stages.items()},
                     {k: float(v[2]) for k, v in stages.items()}, dict(target.stage_runs),
                     malloc=target.malloc)  # fmt: skip
    if target.call_flops is not None:
        row.flops = sum(target.call_flops.values())
        row.floor_s = floor_s(target.call_flops, peak)
        row.x_floor = p50 / row.floor_s if row.floor_s > 0 else None
    for name, flops in target.stage_flops.items():
        row.unresolved_nodes += len(flops["unresolved"])
        row.stages_flops[name] = float(flops["flops"])
        row.stages_floor_s[name] = floor_s(flops, peak)
        if row.stages_floor_s[name] > 0 and name in row.stages_p50_s:
            row.stages_x_floor[name] = row.stages_p50_s[name] / row.stages_floor_s[name]
    return row


def _memory_kib(key: str) -> int | None:
    """A VmRSS / VmHWM line of /proc/self/status in KiB (None where there is no /proc)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _peak_kib() -> int:
    """Peak RSS of this process in KiB: VmHWM, or getrusage where there is no /proc."""
    hwm = _memory_kib("VmHWM")
    if hwm is not None:
        return hwm
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # bytes on macOS, KiB elsewhere


def can_keep_freed_memory() -> bool:
    """Whether this process's C library is glibc, whose mallopt keep_freed_memory sets."""
    import platform

    return platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


def keep_freed_memory() -> None:
    """From here on, glibc keeps what is freed in the process for the next allocation instead
    of unmapping it (no buffer is mmap'ed, the heap top is never trimmed below 2 GiB), as an
    arena does. Call before the large allocations; glibc only."""
    import ctypes

    libc = ctypes.CDLL("libc.so.6")
    if not (libc.mallopt(M_MMAP_MAX, 0) and libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1)):
        raise RuntimeError("glibc's mallopt refused M_MMAP_MAX / M_TRIM_THRESHOLD")


def _measure(kind: str, folder: str, threads: int, observation: dict, calls: int, warmup: int,
             malloc: str | None = None) -> dict:  # fmt: skip
    """One row, in a fresh process: import, mark memory, load the runner, time it."""
    import gc

    if malloc == "kept":
        keep_freed_memory()

    if kind == "pytorch":
        import torch

        from edgevla.policies.checkpoint import Checkpoint
        from edgevla.policies.factory import policy_class
        from edgevla.policies.runner import TorchPolicyRunner

        torch.set_num_threads(threads)
        ckpt = Checkpoint.open(folder)
        policy_class(ckpt.policy_type)  # the model's modules imported before the baseline
    else:
        import onnxruntime  # noqa: F401  (imported before the baseline)
        from edgevla_runtime.bundle import BundleRunner
    gc.collect()
    before = _memory_kib("VmRSS")
    try:  # restart VmHWM here, so the imports' own peak is not counted
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
    except OSError:
        pass
    if before is None:
        before = _peak_kib()
    if kind == "pytorch":
        runner = TorchPolicyRunner.from_checkpoint(ckpt)
    else:
        runner = BundleRunner(folder, threads=threads)
    times = _time(lambda: runner.predict_chunk(observation), calls, warmup)
    stages = {} if kind == "pytorch" else stage_times(runner, observation, calls, warmup)
    peak = _peak_kib()
    return {
        "times": times.tolist(),
        "stages": {k: v.tolist() for k, v in stages.items()},
        "rss_mb": max(0, peak - before) / 1024,
        "rss_process_mb": peak / 1024,
    }


def stage_times(runner, observation, calls: int, warmup: int = 1) -> dict[str, np.ndarray]:
    """Seconds of each call of each stage on the inputs it meets for `observation`, in order. A
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
        out[stage.name] = _time(lambda s=session, n=names, f=feed: s.run(n, f), calls, warmup)
        tensors.update(zip(names, session.run(names, feed), strict=True))
    return out


def stage_latencies(runner, observation, calls: int, warmup: int = 1) -> dict[str, float]:
    """Median seconds of each stage (stage_times), in order."""
    return {k: float(np.median(v)) for k, v in stage_times(runner, observation, calls, warmup).items()}  # fmt: skip


def plot_latency(result: LatencyBenchResult, path: Path) -> Path:
    """Horizontal stacked bars, one per row: each stage's p50 times its runs per call, then the
    rest of the measured call p50 (pre/post-processing, Euler updates; all of a PyTorch call)
    in grey. A black tick marks the floor of the call, a diamond the end-to-end p50 (stages are
    timed apart from the calls, so their sum can pass it)."""
    from edgevla.figures import pyplot, save_png

    plt = pyplot()
    rows = result.rows
    fig, ax = plt.subplots(figsize=(10, 1.4 + 0.45 * len(rows)))
    names = list(dict.fromkeys(name for r in rows for name in r.stages_p50_s))
    colors = {name: plt.cm.tab10(i % 10) for i, name in enumerate(names)}
    for y, r in enumerate(rows):
        left = 0.0
        for name, p50 in r.stages_p50_s.items():
            width = 1000 * p50 * r.stage_runs.get(name, 1)
            ax.barh(y, width, left=left, color=colors[name], label=name)
            left += width
        p50_ms = 1000 * r.p50_s
        ax.barh(y, max(0.0, p50_ms - left), left=left, color="0.75", label="rest of the call")
        ax.scatter([p50_ms], [y], marker="D", s=14, color="black", zorder=3, label="call p50")
        ax.text(max(p50_ms, left), y, f"  {p50_ms:.1f} ms", va="center", fontsize=7)
        if r.floor_s is not None:
            ax.plot([1000 * r.floor_s] * 2, [y - 0.4, y + 0.4], color="black", lw=2, label="floor")
    ax.set_yticks(range(len(rows)),
                  [f"{r.name} ({r.format}, {r.precision}), {r.threads} thr" for r in rows], fontsize=7)  # fmt: skip
    ax.invert_yaxis()
    ax.set_xlabel("p50 per call (ms): stages stacked")
    ax.set_xlim(0, 1.15 * ax.get_xlim()[1])  # room for the labels
    ax.set_title(f"edgevla bench latency ({result.calls} calls; floor = graph FLOPs / measured "
                 "GEMM peak)", fontsize=9)  # fmt: skip
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    ax.legend(
        unique.values(), unique.keys(), fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1)
    )
    fig.tight_layout()
    return save_png(fig, path)
