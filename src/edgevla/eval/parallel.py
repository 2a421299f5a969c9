"""Run evaluation episodes in worker processes (one per core), each with its own env and
policy runner built once, so a 30-episode evaluation uses both cores of the board-class CPU.

Workers receive a picklable `RunnerSpec` (how to build the runner) rather than the runner
itself: models and renderers do not cross process boundaries. A "remote" spec makes each worker
open its own session with a policy server (`edgevla serve`), so `--workers N` is N robots
sharing one server. Results come back as `EpisodeOutcome` dataclasses; `to_dict()` is the flat
row results.json holds.

Episodes run on the virtual clock (deterministic, simulated latency) or, with clock="realtime",
on the wall clock: the worker's thread ticks at the policy's fps while inference runs in a
thread beside it (RealTimeClock, as `edgevla-runtime run` drives an arm), so the episode also
measures tick jitter and deadline misses. The same loop (`run_episode`) and the same success
check run either way.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from edgevla_runtime.control.config import ControlConfig
from edgevla_runtime.control.metrics import EpisodeResult

from edgevla.eval.protocol import EvalEpisode

CLOCKS = ("virtual", "realtime")
REMOTE_TIMEOUT_S = 30.0  # a remote call slower than this is lost (the loop's inference timeout)


@dataclass(frozen=True)
class RunnerSpec:
    """What to run: a training checkpoint (PyTorch), an exported bundle (ONNX Runtime), or a
    policy server at `address` ("HOST:PORT"; each process that builds it opens its own
    session)."""

    kind: str  # "checkpoint" | "bundle" | "remote"
    path: Path | None
    threads: int = 1
    noise_scale: float = 1.0  # a sampling policy's initial noise (TorchPolicyRunner)
    address: str | None = None  # remote: the server's HOST:PORT
    token: str | None = None  # remote: the server's shared token (off loopback)

    def build(self):
        if self.kind == "remote":
            from edgevla_runtime.remote import RemoteRunner

            return RemoteRunner(self.address, token=self.token, timeout_s=REMOTE_TIMEOUT_S)
        from edgevla.policies.runner import load_runner

        return load_runner(self.path, self.threads, self.noise_scale)

    @classmethod
    def of(cls, folder: Path, threads: int = 1, noise_scale: float = 1.0) -> RunnerSpec:
        """A bundle (it has manifest.json) or a checkpoint folder."""
        kind = "bundle" if is_bundle(folder) else "checkpoint"
        return cls(kind, Path(folder), threads, noise_scale)

    @classmethod
    def remote(cls, address: str, token: str | None = None) -> RunnerSpec:
        """The policy `edgevla serve` answers with at HOST:PORT."""
        return cls("remote", None, address=address, token=token)


def is_bundle(folder: Path) -> bool:
    from edgevla_runtime.bundle import MANIFEST

    return (Path(folder) / MANIFEST).is_file()


@dataclass(frozen=True)
class EnvSpec:
    """The evaluation scene (perturbations included) and episode time limit."""

    scene: Any  # SceneConfig
    episode_time_s: float


@dataclass
class EpisodeOutcome:
    """One evaluation episode: which rollout it was, what the control loop measured, and how
    the scene ended (edgevla.sim.outcome.OutcomeTracker)."""

    set: str  # "test" | "val"
    position: int  # plan index of the start position
    cluster: int
    repeat: int
    seed: int
    key: str  # EvalEpisode.key
    control: EpisodeResult  # with its per-tick traces
    outcome: str  # one of edgevla.sim.outcome.OUTCOMES
    bag_max_lift_m: float = 0.0
    bag_to_mug_m: float | None = None
    grasps: list[dict[str, float]] = field(default_factory=list)
    worker: int | None = None  # the process that ran it: with a remote policy, one robot
    # A remote policy's calls, in order: the server's own inference time and the round trip
    # the robot measured (the difference is network + framing); empty for a local policy.
    server_inference_s: list[float] = field(default_factory=list)
    round_trip_s: list[float] = field(default_factory=list)

    @property
    def success(self) -> bool:
        return self.control.success

    def to_dict(self) -> dict[str, Any]:
        """The flat row of results.json: the loop's metrics (traces included), the outcome,
        then the rollout's identity."""
        out = self.control.to_dict(traces=True)
        out.update(outcome=self.outcome, bag_max_lift_m=self.bag_max_lift_m,
                   bag_to_mug_m=self.bag_to_mug_m, grasps=self.grasps, worker=self.worker,
                   server_inference_s=self.server_inference_s,
                   round_trip_s=self.round_trip_s)  # fmt: skip
        out.update(set=self.set, position=self.position, cluster=self.cluster,
                   repeat=self.repeat, seed=self.seed, key=self.key)  # fmt: skip
        return out

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> EpisodeOutcome:
        """Inverse of to_dict (a row read back from results.json or the progress file)."""
        nan = float("nan")
        names = EpisodeResult.__dataclass_fields__
        control = {k: row[k] for k in names if k in row}
        for k in ("latency_p50_s", "latency_p95_s", "latency_max_s"):  # to_dict wrote NaN as null
            if control.get(k) is None:
                control[k] = nan
        return cls(
            set=row["set"], position=int(row["position"]), cluster=int(row["cluster"]),
            repeat=int(row["repeat"]), seed=int(row["seed"]), key=row["key"],
            control=EpisodeResult(**control), outcome=row["outcome"],
            bag_max_lift_m=row.get("bag_max_lift_m", 0.0), bag_to_mug_m=row.get("bag_to_mug_m"),
            grasps=list(row.get("grasps") or []), worker=row.get("worker"),
            server_inference_s=list(row.get("server_inference_s") or []),
            round_trip_s=list(row.get("round_trip_s") or []),
        )  # fmt: skip


_worker: dict[str, Any] = {}


def _init_worker(runner_spec: RunnerSpec, env_spec: EnvSpec) -> None:
    from edgevla.sim.env import TeaBagMugEnv

    _worker["runner"] = runner_spec.build()
    _worker["env"] = TeaBagMugEnv(env_spec.scene, max_episode_s=env_spec.episode_time_s)


def _init_pool_worker(runner_spec: RunnerSpec, env_spec: EnvSpec) -> None:
    """A worker process leaves Ctrl-C to the parent, which stops the pool (and says so once)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _init_worker(runner_spec, env_spec)


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """End the worker processes now: an interrupted evaluation should stop at once (their
    running episodes are lost; the finished ones were already handed to on_done).
    ProcessPoolExecutor has no public way to do this before Python 3.14 (terminate_workers)."""
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        if proc.is_alive():
            proc.terminate()


def _check_compatible(runner, env, control: ControlConfig | None = None) -> None:
    scene = env.scene
    if control is not None and control.fps != scene.fps:
        raise ValueError(
            f"the control loop runs at {control.fps} fps but the environment steps at "
            f"{scene.fps} fps; build both from one rate (edgevla.eval.run.policy_rate)"
        )
    missing = [c for c in runner.camera_names if c not in scene.cameras]
    if missing:
        raise ValueError(f"the policy needs cameras {missing} that the environment does not render")
    if tuple(runner.image_hw) != (scene.image_height, scene.image_width):
        raise ValueError(
            f"the policy expects {runner.image_hw[0]}x{runner.image_hw[1]} images, the environment renders "
            f"{scene.image_height}x{scene.image_width}; evaluate at the policy's image size"
        )
    if runner.action_dim != env.action_space.shape[0]:
        raise ValueError(
            f"the policy outputs {runner.action_dim} actions, the arm takes {env.action_space.shape[0]}"
        )


class _Observed:
    """The env as the control loop sees it, with an OutcomeTracker watching every step."""

    def __init__(self, env) -> None:
        from edgevla.sim.outcome import OutcomeTracker

        self.env = env
        self.tracker = OutcomeTracker()

    def reset(self, *, seed=None, options=None):
        self.tracker.reset()
        return self.env.reset(seed=seed, options=options)

    def step(self, action):
        out = self.env.step(action)
        self.tracker.update(self.env)
        return out


def make_clock(clock: str, control: ControlConfig):
    """The loop's clock: None (run_episode's VirtualClock from control.latency) or a
    RealTimeClock whose inference timeout is control.inference_timeout_s."""
    if clock not in CLOCKS:
        raise ValueError(f"unknown clock {clock!r}; choose one of {list(CLOCKS)}")
    if clock == "virtual":
        return None
    from edgevla_runtime.control.clocks import RealTimeClock

    return RealTimeClock(timeout_s=control.inference_timeout_s, placement=control.cpu_placement)


def _run_one(
    episode: EvalEpisode, control: ControlConfig, clock: str = "virtual"
) -> EpisodeOutcome:
    from edgevla_runtime.control.loop import run_episode

    env, runner = _worker["env"], _worker["runner"]
    _check_compatible(runner, env, control)
    cfg = replace(control, latency_seed=episode.seed)
    observed = _Observed(env)
    # A RemoteRunner's timings so far (a reply without a chunk adds a round trip only).
    rt0, sv0 = (len(getattr(runner, k, ())) for k in ("round_trip_s", "server_inference_s"))
    result = run_episode(
        observed,
        runner,
        cfg,
        make_clock(clock, cfg),
        seed=episode.seed,
        reset_options={"start_state": episode.start_state()},
    )
    # The calls of this episode (a call still running when a real-time episode ended may add
    # its pair after this; it is not this episode's).
    round_trip = list(getattr(runner, "round_trip_s", ())[rt0:])
    server = list(getattr(runner, "server_inference_s", ())[sv0:])
    seen = observed.tracker.outcome()
    # Both read env.is_success() after the last step, so they agree unless the loop ended the
    # episode another way (an inference error fails it): the loop's verdict stands.
    outcome = seen["outcome"]
    if result.success:
        outcome = "success"
    elif outcome == "success":
        outcome = "in_mug_not_released"
    return EpisodeOutcome(
        set=episode.set, position=episode.planned.index, cluster=episode.planned.cluster,
        repeat=episode.repeat, seed=episode.seed, key=episode.key, control=result,
        outcome=outcome, bag_max_lift_m=seen["bag_max_lift_m"], bag_to_mug_m=seen["bag_to_mug_m"],
        grasps=list(seen["grasps"]), worker=os.getpid(), server_inference_s=server,
        round_trip_s=round_trip,
    )  # fmt: skip


def run_parallel(
    episodes: list[EvalEpisode],
    runner_spec: RunnerSpec,
    env_spec: EnvSpec,
    control: ControlConfig,
    workers: int | None = None,
    on_done: Callable[[EpisodeOutcome], None] | None = None,
    clock: str = "virtual",
) -> list[EpisodeOutcome]:
    """Results in the order of `episodes`. workers=1 runs in this process (no pickling) on
    the virtual clock; real-time episodes always run in worker processes, so nothing of the
    caller's (a progress bar's refresh thread, a policy server's threads) shares their
    interpreter lock and shows up as tick jitter.
    clock: "virtual" (simulated time) or "realtime" (wall clock, inference in a thread).

    on_done sees each episode as it finishes (in finishing order). An exception from it or a
    Ctrl-C cancels the episodes not yet started and is raised: finished ones were seen."""
    if not episodes:
        return []
    workers = workers or min(len(episodes), os.cpu_count() or 1)
    results: dict[str, EpisodeOutcome] = {}
    if workers <= 1 and clock == "virtual":
        _init_worker(runner_spec, env_spec)
        try:
            for ep in episodes:
                r = _run_one(ep, control, clock)
                results[ep.key] = r
                if on_done:
                    on_done(r)
        finally:
            if runner_spec.kind == "remote":  # end this process's session with the server
                _worker["runner"].close()
    else:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")  # fork after torch/EGL initialisation is not safe
        pool = ProcessPoolExecutor(
            min(workers, len(episodes)), mp_context=ctx, initializer=_init_pool_worker,
            initargs=(runner_spec, env_spec),
        )  # fmt: skip
        try:
            futures = {pool.submit(_run_one, ep, control, clock): ep for ep in episodes}
            for fut in as_completed(futures):
                r = fut.result()
                results[r.key] = r
                if on_done:
                    on_done(r)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            _stop_workers(pool)
            raise
        pool.shutdown(wait=True)
    return [results[ep.key] for ep in episodes]


def iter_sets(results: list[EpisodeOutcome]) -> Iterator[tuple[str, list[EpisodeOutcome]]]:
    for name in ("test", "val"):
        yield name, [r for r in results if r.set == name]
    yield "global", results
