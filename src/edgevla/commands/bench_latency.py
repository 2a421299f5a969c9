"""`edgevla bench latency`: inference latency of a checkpoint in PyTorch and of bundles in ONNX
Runtime, per call and per stage, at each thread count, with memory, size on disk and the floor
(FLOPs over this CPU's measured GEMM peak). `--paper-config act|smolvla` builds the paper's
models at their real size with random weights first (edgevla.deploy.paper)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgevla.commands import config_from, present
from edgevla.console import console, table
from edgevla.deploy.bench import LatencyBenchConfig, bench_latency
from edgevla.deploy.paper import PaperBenchConfig, bench_paper
from edgevla.errors import BadInput


@dataclass(frozen=True)
class Args(LatencyBenchConfig):
    """Time predict_chunk (p50/p90/p99) for a checkpoint and bundles at 1 and 2 threads, with
    per-stage latency, peak RSS, size on disk and "x of the floor" (latency / (graph FLOPs /
    measured GEMM peak)); --plot writes a bar chart."""

    paper_config: str | None = None
    """act | smolvla: build the paper's model at its real size with random weights in --out,
    export it, quantise it with --plans, then time eager fp32 vs fp32 bundle vs the best plan
    (a rerun reuses what --out holds)"""
    out: Path | None = None
    """with --paper-config: the folder to build in (default outputs/paper_<policy>)"""
    plans: tuple[str, ...] = ()
    """with --paper-config: plans to quantise with (default: act int8-all selective-dynamic
    int8-static-all int8-mixed int8-static-linear; smolvla int8-all selective-dynamic)"""
    layouts: tuple[str, ...] = ()
    """with --paper-config: bundle layouts, each quantised with every plan: split (one graph per
    stage) and/or single (ACT as one graph); default act: split single, smolvla: split"""
    json: bool = False
    """print one JSON object instead of tables (for scripts and CI)"""

    def __post_init__(self) -> None:
        """Checked when run() builds the config, so a bad value is one line (exit 2)."""


def run(args: Args) -> int:
    if args.paper_config is not None:
        if args.checkpoint is not None or args.bundles:
            raise BadInput("--paper-config builds its own checkpoint and bundles; drop "
                           "--checkpoint / --bundles")  # fmt: skip
        out = args.out or Path("outputs") / f"paper_{args.paper_config}"
        config = PaperBenchConfig(args.paper_config, out, args.plans, args.layouts, args.threads,
                                  args.calls, args.warmup, args.plot, args.rounds,
                                  args.pytorch_malloc)  # fmt: skip
        present(args, lambda report: bench_paper(config, progress=report), show_paper,
                notes=lambda r: r.notes + _notes(r.latency))  # fmt: skip
        return 0
    if args.out is not None or args.plans or args.layouts:
        raise BadInput("--out, --plans and --layouts go with --paper-config act|smolvla")
    config = config_from(args, LatencyBenchConfig)
    present(args, lambda report: bench_latency(config, progress=report), show, notes=_notes)
    return 0


def _notes(result) -> list[str]:
    return [
        f"{r.name}: {r.unresolved_nodes} conv/GEMM nodes of unknown shape are left out of its "
        "FLOPs, so its floor is too low"
        for r in result.rows
        if r.unresolved_nodes
    ]


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{1000 * seconds:.1f}"


def _x(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.1f}x"


def _vs(row) -> str:
    """Speed-up over PyTorch, then over PyTorch with freed memory kept where that was timed."""
    out = "-" if row.vs_pytorch is None else f"{row.vs_pytorch:.2f}x"
    return out if row.vs_pytorch_kept is None else f"{out} / {row.vs_pytorch_kept:.2f}x"


def show(result) -> None:
    rows = [
        (r.name, r.format, r.precision, r.threads, _ms(r.p50_s), _ms(r.p90_s), _ms(r.p99_s),
         _vs(r), _ms(r.floor_s), _x(r.x_floor),
         f"{r.rss_mb:.0f}", f"{r.disk_mb:.1f}",
         " ".join(f"{k} {_ms(v)} ({_x(r.stages_x_floor.get(k))})" for k, v in r.stages_p50_s.items()))
        for r in result.rows
    ]  # fmt: skip
    cols = ["policy", "format", "precision", "threads", "p50 ms", "p90 ms", "p99 ms",
            "vs PyTorch (/ kept)", "floor ms", "x floor", "RSS MB", "disk MB", "stages p50 ms (x floor)"]  # fmt: skip
    title = (
        f"edgevla bench latency ({result.calls} calls x {result.rounds} round(s), {result.machine})"
    )
    console.print(table(title, cols, rows))
    peaks = ", ".join(f"{p['threads']} thread(s) fp32 {p['fp32_gflops']:.0f} GFLOP/s "
                      f"(n={p.get('fp32_size')}), int8 {p['int8_gops']:.0f} GOP/s "
                      f"(n={p.get('int8_size')})" for p in result.peaks)  # fmt: skip
    console.print(f"floor = graph FLOPs / measured GEMM peak ({peaks})")
    if any(r.malloc == "kept" for r in result.rows):
        console.print("kept: PyTorch with freed memory kept in the process (no kernel page "
                      "zero-filling per call; see edgevla.deploy.bench)")  # fmt: skip
    if result.figure:
        console.print(f"figure: {result.figure}")


def show_paper(result) -> None:
    show(result.latency)
    m = result.model
    console.print(f"{result.policy} at the paper's size: {m['parameters'] / 1e6:.0f} M parameters "
                  f"(random weights), cameras {', '.join(m['cameras'])} at "
                  f"{m['image_hw'][0]}x{m['image_hw'][1]}; in {result.folder}"
                  + (f" (built: {', '.join(result.built)})" if result.built else " (reused)"))  # fmt: skip
    rows = [
        (s.threads, f"{_ms(s.eager_p50_s)} / {_ms(s.eager_kept_p50_s)}",
         f"{_ms(s.fp32_bundle_p50_s)} ({_x(s.fp32_bundle_vs_eager)})",
         s.best_plan or "-", _ms(s.best_p50_s), f"{_x(s.best_vs_eager)} / {_x(s.best_vs_eager_kept)}",
         _x(s.best_x_floor),
         "-" if s.best_action_error_max is None else f"{s.best_action_error_max:.3g}",
         _goal(s.meets_vs_eager, f"{s.goal_plan or 'best'} >= {s.goal_vs_eager:g}x"
               + ("" if s.goal_plan is None else f" ({_x(s.plans_vs_eager.get(s.goal_plan))} / "
                                                 f"{_x(s.plans_vs_eager_kept.get(s.goal_plan))})")),
         "-" if s.goal_x_floor is None else _goal(s.meets_x_floor, f"<= {s.goal_x_floor:g}x"))
        for s in result.summary
    ]  # fmt: skip
    cols = ["threads", "eager fp32 ms (/ kept)", "fp32 bundle ms (vs eager)", "best plan",
            "best ms", "best vs eager (/ kept)", "best x floor", "best max error",
            "goal vs eager", "goal x floor"]  # fmt: skip
    console.print(table("eager fp32 vs fp32 bundle vs the best plan", cols, rows))
    for s in result.summary:
        if s.paper_vs_onnx_fp32 is not None and s.plans_vs_fp32_bundle:
            ours = ", ".join(f"{p} {_x(v)}" for p, v in s.plans_vs_fp32_bundle.items())
            console.print(f"the paper's ratio is over its ONNX FP32 export "
                          f"({_x(s.paper_vs_onnx_fp32)}); over the fp32 bundle here, "
                          f"{s.threads} thread(s): {ours}")  # fmt: skip
    errors = ", ".join(f"{p} {e['max']:.3g}" for p, e in result.action_error.items())
    if errors:
        console.print(f"max |action - fp32 bundle action| (rad): {errors}")


def _goal(met: bool | None, goal: str) -> str:
    return goal if met is None else f"{goal}: {'met' if met else 'not met'}"
