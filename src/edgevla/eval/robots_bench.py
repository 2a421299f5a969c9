"""Several simulated robots sharing one policy server (`edgevla bench robots`).

One `PolicyServer` on 127.0.0.1 loads the policy (a bundle or a checkpoint); the protocol's
positions (Test + Val, `episodes_per_position` rollouts each) are then evaluated through it,
first by one robot, then by N robots at once: `evaluate` with `remote=` and `workers=N`, so each
robot is a worker process with its own simulator and its own client session, and the episodes
are shared out among them as they finish. Per robot count the result holds

    inference latency p50 / p99   as the robots measured it: each call's round trip (framing,
                                  network, waiting for the server's lock, inference)
    server time p50 / p99         the server's own predict_chunk time, from each reply
    network p50                   round trip - server time, per call
    per robot                     each worker's episodes, success and latency p50 / p99
    success Test / Val / Global   judged as in every evaluation (the env's success check)

On the virtual clock (default) latency is measured and then simulated, so a slower shared
server shows in success as staler chunks; with clock="realtime" the robots tick on the wall
clock and the tick jitter and deadline misses are measured too.

Where the server runs (`server`): "process" (default) puts it in a child process, "thread" in
a thread of this process. With more than one robot the robots are worker processes either way,
and so is every real-time robot (run_parallel); the difference is the 1-robot row on the
virtual clock, whose robot runs in this process (`workers=1` needs no pool) and would share
the interpreter lock with the server's threads (its framing and env stepping against the
server's decoding and replies). The child process is the default so that the 1-robot row pays
nothing the N-robot rows do not. Measured with both (2-core machine loaded by a training job,
so indicative only; 1 robot, threshold 1, 3 episodes x 5 s, two runs each): the robot's
inference latency p50 47 / 39 ms with the server in a thread, 40 / 39 ms in a process, p99
95 / 89 vs 92 / 82 ms, no difference beyond the load's noise; `--server thread` repeats the
comparison on an idle machine.
"""

from __future__ import annotations

import contextlib
import os
import platform
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from edgevla.dataset.plan import Plan
from edgevla.errors import BadInput
from edgevla.eval.parallel import CLOCKS, EpisodeOutcome
from edgevla.eval.protocol import SETS
from edgevla.eval.run import EvalConfig, check_checkpoint_folder, evaluate, parse_threshold
from edgevla.jsonio import write_json_atomic
from edgevla.progress import ProgressEvent, ProgressFn

SERVER_PLACES = ("process", "thread")
SERVER_START_TIMEOUT_S = 300.0  # loading a checkpoint in a fresh process (torch import) is slow


@dataclass(frozen=True)
class RobotsBenchConfig:
    bundle: Path | None = None
    """a bundle to serve (or --checkpoint)"""
    checkpoint: Path | None = None
    """a checkpoint folder to serve (PyTorch)"""
    plan: Path = Path("outputs/plan.json")
    out: Path = Path("outputs/bench_robots")
    robots: tuple[int, ...] = (1, 4)
    """robot counts to compare, each a run of the whole protocol"""
    episodes_per_position: int = 1
    """rollouts per Test/Val position"""
    clock: Literal["virtual", "realtime"] = "virtual"
    """virtual: measured latency, simulated; realtime: robots tick on the wall clock"""
    threshold: str = "0.2"
    """async chunk_size_threshold in [0, 1] or "auto" (the paper used 0.2)"""
    sets: tuple[Literal["test", "val"], ...] = SETS
    episode_time_s: float = 20.0
    fps: int | None = None
    """control rate (default: the policy's)"""
    threads: int = 1
    """the server's inference threads"""
    server: Literal["process", "thread"] = "process"
    """where the server runs: a child process, or a thread of this process"""

    def __post_init__(self) -> None:
        if (self.bundle is None) == (self.checkpoint is None):
            raise BadInput("give the policy to serve: --bundle B or --checkpoint C (one of them)",
                           field="--bundle/--checkpoint")  # fmt: skip
        if not self.robots or any(n < 1 for n in self.robots):
            raise BadInput(f"robot counts must be >= 1, got {list(self.robots)}", field="--robots")
        if len(set(self.robots)) != len(self.robots):
            raise BadInput(f"a robot count is listed twice: {list(self.robots)}", field="--robots")
        if self.episodes_per_position < 1:
            raise BadInput(f"must be >= 1, got {self.episodes_per_position}",
                           field="--episodes-per-position")  # fmt: skip
        if self.clock not in CLOCKS:
            raise BadInput(f"choose from {list(CLOCKS)}, got {self.clock!r}", field="--clock")
        if self.server not in SERVER_PLACES:
            raise BadInput(f"choose from {list(SERVER_PLACES)}, got {self.server!r}",
                           field="--server")  # fmt: skip
        if self.threads < 1:
            raise BadInput(f"must be >= 1, got {self.threads}", field="--threads")
        parse_threshold(self.threshold)
        self.eval_config("127.0.0.1:1", 1)  # the shared flags, checked as eval checks them

    @property
    def policy(self) -> Path:
        return Path(self.bundle if self.bundle is not None else self.checkpoint)

    def eval_config(self, address: str, robots: int) -> EvalConfig:
        """The protocol through the server at `address`, `robots` worker processes at once."""
        return EvalConfig(
            remote=address, plan=self.plan, out=self.out / f"robots-{robots}",
            chunk_size_threshold=self.threshold, episodes=self.episodes_per_position,
            sets=tuple(self.sets), workers=robots, episode_time_s=self.episode_time_s,
            fps=self.fps, clock=self.clock, label=f"{robots} robot(s)", resume=False,
        )  # fmt: skip


@dataclass
class RobotRow:
    """One robot count: the protocol's success and the latency the robots saw."""

    robots: int
    robots_active: int  # worker processes that ran at least one episode
    episodes: int
    success_test: float | None
    success_val: float | None
    success_global: float | None
    latency_p50_s: float | None  # as the robots measured it: each call's round trip
    latency_p99_s: float | None
    server_p50_s: float | None  # the server's own inference time
    server_p99_s: float | None
    network_p50_s: float | None  # round trip - server time, per call
    network_p99_s: float | None
    inferences: int  # calls answered by the server
    wall_s: float
    per_robot: list[dict[str, Any]]
    tick_jitter_p99_s: float | None = None  # real time: the worst episode's p99
    deadline_misses: int | None = None
    results_file: str = ""


@dataclass
class RobotsBenchResult:
    policy: str
    clock: str
    server: str
    fps: int
    threshold: str
    rows: list[RobotRow]
    results_file: Path
    machine: str
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["results_file"] = str(self.results_file)
        return d


def _p(xs: list[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(xs, dtype=np.float64), q)) if xs else None


def per_robot(episodes: list[EpisodeOutcome]) -> list[dict[str, Any]]:
    """Each worker process's share: robots numbered in the order their first episode comes in
    the protocol; latency over that robot's calls (their round trips)."""
    by: dict[int | None, list[EpisodeOutcome]] = {}
    for e in episodes:
        by.setdefault(e.worker, []).append(e)
    rows = []
    for i, eps in enumerate(by.values()):
        lat = [x for e in eps for x in e.round_trip_s]
        rows.append({
            "robot": i, "episodes": len(eps),
            "success": float(np.mean([e.success for e in eps])),
            "latency_p50_s": _p(lat, 50), "latency_p99_s": _p(lat, 99), "inferences": len(lat),
        })  # fmt: skip
    return rows


def _serve_child(policy: str, threads: int, conn) -> None:
    """The child process's server: sends ("port", N) or ("error", text), then serves until the
    parent says stop (or goes away)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's; it stops us
    from edgevla.deploy.server import PolicyServer, ServeConfig

    try:
        server = PolicyServer(ServeConfig(policy=Path(policy), port=0, threads=threads))
        port = server.start()
    except Exception as e:  # a bad policy: the parent reports it as one line
        conn.send(("error", f"{type(e).__name__}: {e}"))
        return
    conn.send(("port", port))
    with contextlib.suppress(EOFError, OSError):
        conn.recv()
    server.stop()


@contextlib.contextmanager
def served(policy: Path, threads: int, where: str) -> Iterator[str]:
    """A PolicyServer for `policy` on a free loopback port, in a child process or a thread of
    this one; yields its "127.0.0.1:PORT" and stops it afterwards."""
    from edgevla.deploy.server import PolicyServer, ServeConfig

    if where == "thread":
        server = PolicyServer(ServeConfig(policy=policy, port=0, threads=threads))
        port = server.start()
        try:
            yield f"127.0.0.1:{port}"
        finally:
            server.stop()
        return
    import multiprocessing as mp

    ctx = mp.get_context("spawn")  # as the eval workers: no fork after torch/EGL set-up
    mine, theirs = ctx.Pipe()
    proc = ctx.Process(target=_serve_child, args=(str(policy), threads, theirs),
                       name="edgevla-bench-server", daemon=True)  # fmt: skip
    proc.start()
    try:
        if not mine.poll(SERVER_START_TIMEOUT_S):
            raise RuntimeError(
                f"the policy server did not start within {SERVER_START_TIMEOUT_S:g} s"
            )
        kind, value = mine.recv()
        if kind == "error":
            raise BadInput(f"the policy server could not load it ({value})", path=policy)
        yield f"127.0.0.1:{value}"
    finally:
        with contextlib.suppress(OSError):
            mine.send("stop")
        proc.join(10.0)
        if proc.is_alive():
            proc.terminate()
            proc.join(5.0)


def bench_robots(
    config: RobotsBenchConfig, progress: ProgressFn | None = None
) -> RobotsBenchResult:
    """Serve the policy once, run the protocol with each robot count; writes
    <out>/bench_robots.json (and each count's results.json under <out>/robots-N)."""
    flag = "--bundle" if config.bundle is not None else "--checkpoint"
    check_checkpoint_folder(config.policy, flag)
    Plan.load(config.plan)  # a bad plan fails now, not after the server has started
    rows: list[RobotRow] = []
    warnings: list[str] = []
    fps = 0
    with served(config.policy, config.threads, config.server) as address:
        for i, n in enumerate(config.robots):
            if progress:
                progress(ProgressEvent("bench robots", i, len(config.robots), f"{n} robot(s)"))
            res = evaluate(config.eval_config(address, n), progress=progress)
            warnings += res.warnings
            fps = res.fps
            mode = next(iter(res.modes.values()))
            s, eps = mode.summary, mode.episodes
            rows.append(RobotRow(
                robots=n, robots_active=len({e.worker for e in eps}), episodes=len(eps),
                success_test=s["success_test"], success_val=s["success_val"],
                success_global=s["success_global"], latency_p50_s=s.get("round_trip_p50_s"),
                latency_p99_s=s.get("round_trip_p99_s"),
                server_p50_s=s.get("server_inference_p50_s"),
                server_p99_s=s.get("server_inference_p99_s"), network_p50_s=s.get("network_p50_s"),
                network_p99_s=s.get("network_p99_s"), inferences=s.get("remote_calls", 0),
                wall_s=s["wall_s"], per_robot=per_robot(eps),
                tick_jitter_p99_s=s.get("tick_jitter_p99_s"),
                deadline_misses=s.get("deadline_misses"), results_file=str(res.results_file),
            ))  # fmt: skip
    if progress:
        progress(ProgressEvent("bench robots", len(config.robots), len(config.robots), "done"))
    cores = os.cpu_count() or 1
    if max(config.robots) + 1 > cores:
        warnings.append(
            f"{max(config.robots)} robot processes and the server share {cores} core(s): the "
            "latency they see includes waiting for a core as well as for the server"
        )
    result = RobotsBenchResult(
        policy=str(config.policy), clock=config.clock, server=config.server, fps=fps,
        threshold=config.threshold, rows=rows, results_file=config.out / "bench_robots.json",
        machine=f"{platform.machine()} {cores} cores", warnings=list(dict.fromkeys(warnings)),
    )  # fmt: skip
    write_json_atomic(result.results_file, result.to_dict(), indent=1)
    return result
