"""`edgevla-runtime`: the board-side command. No torch, no rich: argparse and plain text.

    edgevla-runtime run --bundle B --robot sim [--seconds 20] [--threshold auto] [--json]
    edgevla-runtime run --remote HOST:PORT [--image-codec jpeg] --robot sim ...

Drives the robot in real time with the bundle, or with the policy server at HOST:PORT (see
robot.drive), and prints, at the end: tick jitter p50/p99, deadline misses, idle fraction,
inference latency p50/p99, underruns, whether the latency fitted the schedule's budget, faults
held. Robots are found by name in the entry point group `edgevla_runtime.robots` (edgevla
registers "sim", the simulated arm); a driver package registers its own the same way. A robot
factory that takes `fps=` (the simulator) is built at the control rate; a robot with a fixed
`fps` that differs from the policy's is refused before it moves (robot.check_fit).

Exit status: 0 done, 2 bad input (one line on stderr), 130 Ctrl-C (the arm holds, then
disconnects).
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points

from edgevla_runtime.control.aggregation import AGGREGATE_FN_NAMES
from edgevla_runtime.control.config import ControlConfig
from edgevla_runtime.control.loop import chunk_length

ROBOT_GROUP = "edgevla_runtime.robots"


def robots() -> dict[str, object]:
    """Robot factories registered by installed packages, by name."""
    return {ep.name: ep for ep in entry_points(group=ROBOT_GROUP)}


def load_robot(name: str, seed: int, fps: float | None = None):
    """The registered robot `name`, built at `fps` when its factory takes an fps."""
    found = robots()
    if name not in found:
        known = ", ".join(sorted(found)) or "none installed"
        raise ValueError(
            f"--robot {name!r} is not registered (known: {known}); install its driver package"
        )
    factory = found[name].load()
    kwargs: dict[str, object] = {"seed": seed}
    if fps is not None and "fps" in inspect.signature(factory).parameters:
        kwargs["fps"] = fps
    return factory(**kwargs)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgevla-runtime", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="drive a robot in real time with an exported bundle")
    where = run.add_mutually_exclusive_group(required=True)
    where.add_argument("--bundle", help="a bundle folder from `edgevla export`, run here")
    where.add_argument("--remote", help="HOST:PORT of `edgevla serve`, run there")
    run.add_argument("--token", default=None, help="the server's shared token (off loopback)")
    run.add_argument("--robot", default="sim", help="a registered robot name (default: sim)")
    run.add_argument("--seconds", type=float, default=20.0, help="how long to run")
    run.add_argument(
        "--fps", type=float, default=None,
        help="control rate (default: the policy's); a robot that runs at another rate than "
        "the policy learned at is refused",
    )  # fmt: skip
    run.add_argument(
        "--image-codec", default="raw", choices=("raw", "jpeg"),
        help="with --remote: send camera images raw or as JPEG (needs edgevla-runtime[jpeg])",
    )  # fmt: skip
    run.add_argument("--jpeg-quality", type=int, default=90, help="JPEG quality, 1-95")
    run.add_argument(
        "--threshold", default="auto", help="async chunk_size_threshold in [0, 1], or auto"
    )
    run.add_argument("--aggregate", default="weighted_average", choices=AGGREGATE_FN_NAMES)
    run.add_argument(
        "--threads",
        type=int,
        default=1,
        help="ONNX Runtime intra-op threads (0: its default, one per core)",
    )
    run.add_argument(
        "--timeout", type=float, default=2.0, help="an inference slower than this is a fault (s)"
    )
    run.add_argument(
        "--pin-cpus", default="off",
        help="pin the control thread and inference: off, auto (control on the first CPU, "
        "inference on the others; use with --threads 1) or C:I[,I...], e.g. 0:1 (Linux)",
    )  # fmt: skip
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--json", action="store_true", help="print one JSON object")
    return p


def summary(result) -> dict[str, object]:
    keys = ("ticks", "duration_s", "success", "idle_fraction", "underruns", "inference_count",
            "latency_p50_s", "latency_p95_s", "latency_max_s", "tick_jitter_p50_s",
            "tick_jitter_p99_s", "deadline_misses", "faults", "fault_ticks", "fault_messages")  # fmt: skip
    d = result.to_dict()
    return {k: d.get(k) for k in keys}


def _ms(x) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{1000 * x:.1f} ms"


def _budget(b: dict[str, object]) -> str:
    if b["fits"] is None:
        return "-"
    verdict = "fits" if b["fits"] else "does NOT fit: the arm holds between chunks"
    return f"{_ms(b['latency_p95_s'])} vs {_ms(b['t_execution_s'])}, {verdict}"


def check_numbers(args: argparse.Namespace) -> None:
    """Flags that must be positive, refused by their own name before anything loads."""
    for flag, value in (("--seconds", args.seconds), ("--timeout", args.timeout),
                        ("--fps", args.fps)):  # fmt: skip
        if value is not None and not value > 0:
            raise ValueError(f"{flag} must be > 0, got {value:g}")
    if args.threads < 0:
        raise ValueError(f"--threads must be >= 0 (0: ONNX Runtime's default), got {args.threads}")
    if not 1 <= args.jpeg_quality <= 95:
        raise ValueError(f"--jpeg-quality must be in 1-95, got {args.jpeg_quality}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        check_numbers(args)
    except ValueError as exc:
        print(f"edgevla-runtime run: error: {exc}", file=sys.stderr)
        return 2
    try:
        from edgevla_runtime.robot import Interrupted, drive, latency_budget, policy_fps

        if args.remote:
            from edgevla_runtime.remote import RemoteRunner

            runner = RemoteRunner(args.remote, token=args.token, timeout_s=args.timeout,
                                  image_codec=args.image_codec, jpeg_quality=args.jpeg_quality)  # fmt: skip
        else:
            if args.image_codec != "raw":
                raise ValueError("--image-codec applies to --remote (a bundle runs here)")
            from edgevla_runtime.bundle import BundleRunner

            runner = BundleRunner(args.bundle, threads=args.threads)
        fps = args.fps or policy_fps(runner)
        robot = load_robot(args.robot, args.seed, fps)
        fps = fps or getattr(robot, "fps", None) or 30.0
        threshold = args.threshold if args.threshold == "auto" else float(args.threshold)
        config = ControlConfig(
            mode="async", chunk_size_threshold=threshold, aggregate_fn_name=args.aggregate,
            fps=fps, max_steps=max(1, round(args.seconds * fps)), episode_time_s=args.seconds,
            inference_timeout_s=args.timeout, on_fault="hold", pin_cpus=args.pin_cpus,
        )  # fmt: skip
        result = drive(robot, runner, config, seed=args.seed)
    except Interrupted as stop:
        print(f"edgevla-runtime run: {stop}; disconnected", file=sys.stderr)
        return 130
    except (ValueError, KeyError, OSError) as exc:  # a bad bundle, a policy that does not fit
        # the robot (refused before it moves), a server that cannot be reached
        print(f"edgevla-runtime run: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    s = summary(result)
    s["budget"] = latency_budget(result, config, chunk_length(config, runner))
    if args.remote:
        s.update(runner.timing())
        s["reconnects"] = runner.reconnects
    if args.json:
        print(json.dumps(s))
        return 0
    rows = [
        ("ticks at fps", f"{s['ticks']} at {fps:g} fps ({s['duration_s']:.1f} s)"),
        ("tick jitter p50 / p99", f"{_ms(s['tick_jitter_p50_s'])} / {_ms(s['tick_jitter_p99_s'])}"),
        ("deadline misses (> 1 period late)", str(s["deadline_misses"])),
        ("idle fraction", f"{s['idle_fraction']:.1%}"),
        ("inference latency p50 / p95 / max", " / ".join(_ms(s[k]) for k in ("latency_p50_s", "latency_p95_s", "latency_max_s"))),
        ("inferences, underruns", f"{s['inference_count']}, {s['underruns']}"),
        ("latency budget (p95 vs T_execution)", _budget(s["budget"])),
        ("faults held (ticks)", f"{s['faults']} ({s['fault_ticks']})"),
        ("task success (robot's report)", str(s["success"])),
    ]  # fmt: skip
    if args.remote:
        rows.append(("round trip = inference + network, p50", f"{_ms(s['round_trip_p50_s'])} = "
                     f"{_ms(s['server_inference_p50_s'])} + {_ms(s['network_p50_s'])}"))  # fmt: skip
    width = max(len(k) for k, _ in rows)
    print(f"edgevla-runtime run: {args.bundle or args.remote} on {args.robot}")
    for k, v in rows:
        print(f"  {k:<{width}}  {v}")
    for message in s["fault_messages"] or []:
        print(f"  fault: {message}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
