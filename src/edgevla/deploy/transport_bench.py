"""What the network costs a remote policy: loopback round trip minus in-process inference.

For each image size (three cameras) and image codec (raw pixels, JPEG), a PolicyServer on
127.0.0.1 serves a runner and a RemoteRunner (the robot client) asks it for chunks; the same
runner is also called in process on the same observations, calls interleaved so background
load hits both alike. Per remote call

    overhead = client wall time of RemoteRunner.predict_chunk - the server's own predict_chunk
               time for that call (server_inference_s)

which is the transport: client framing (and JPEG encode), the websocket both ways on
loopback, server decoding (and JPEG decode, shape checks) and the reply. No clocks are
compared across processes; both figures come from one process each.

Transport only, on purpose: the served runner (`ShapeCheckRunner`) checks each observation
against the policy's contract (cameras, (H, W, 3) uint8, the state width) like a real policy
and returns a fixed (chunk_size, 6) chunk, so 480x640 images can be measured without a policy
trained at that size (the shipped ACT takes 96x128; resizing on the server would add its own
cost). Its in-process time is microseconds, so the overhead is the whole round trip; a real
policy adds its inference time on top (the README's remote row: `edgevla-runtime run --remote`).
Server and client share one process (the server's threads); the observations are rendered
by the simulator (JPEG sizes depend on content: rendered scenes, not noise).
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from edgevla_runtime.features import (
    ACTION_DIM,
    CAMERA_NAMES,
    MAX_IMAGE_HW,
    MIN_IMAGE_HW,
)
from edgevla_runtime.observation import check_observation

from edgevla.errors import BadInput
from edgevla.progress import ProgressEvent, ProgressFn, no_progress

CODECS = ("raw", "jpeg")
GOAL_OVERHEAD_P50_S = 0.003  # the goal: <= 3 ms p50 at 96x128, raw


def parse_size(text: str) -> tuple[int, int]:
    """'96x128' -> (96, 128) (height x width), within the simulator's supported sizes."""
    h, sep, w = str(text).lower().partition("x")
    if not sep or not h.isdigit() or not w.isdigit():
        raise BadInput(f"{text!r}: give HEIGHTxWIDTH, e.g. 96x128", field="--sizes")
    (h_min, w_min), (h_max, w_max) = MIN_IMAGE_HW, MAX_IMAGE_HW
    if not (h_min <= int(h) <= h_max and w_min <= int(w) <= w_max):
        raise BadInput(
            f"{text}: height must be in [{h_min}, {h_max}], width in [{w_min}, {w_max}]",
            field="--sizes",
        )
    return int(h), int(w)


@dataclass(frozen=True)
class TransportBenchConfig:
    sizes: tuple[str, ...] = ("96x128", "480x640")
    """image sizes HEIGHTxWIDTH, three cameras each"""
    codecs: tuple[str, ...] = CODECS
    """how the client sends images: raw, jpeg"""
    calls: int = 200
    """timed calls per case (remote and in-process each)"""
    warmup: int = 10
    jpeg_quality: int = 90
    chunk_size: int = 100
    """actions per reply chunk (the shipped ACT's)"""
    observations: int = 4
    """distinct rendered observations, cycled"""

    def __post_init__(self) -> None:
        for size in self.sizes:
            parse_size(size)
        if not self.sizes:
            raise BadInput("give at least one size", field="--sizes")
        bad = [c for c in self.codecs if c not in CODECS]
        if bad or not self.codecs:
            raise BadInput(f"{bad or '(none)'}: choose from {list(CODECS)}", field="--codecs")
        if self.calls < 1 or self.warmup < 0 or self.observations < 1 or self.chunk_size < 1:
            raise BadInput("--calls, --observations, --chunk-size must be >= 1, --warmup >= 0")
        if not 1 <= self.jpeg_quality <= 95:
            raise BadInput(f"must be in [1, 95], got {self.jpeg_quality}", field="--jpeg-quality")


class ShapeCheckRunner:
    """A PolicyRunner that only checks the observation against its contract and returns a fixed
    float32 (chunk_size, action_dim) chunk: the server side of a transport measurement."""

    camera_names = CAMERA_NAMES
    action_dim = ACTION_DIM

    def __init__(self, image_hw: tuple[int, int], chunk_size: int = 100) -> None:
        self.image_hw = image_hw
        self.chunk_size = chunk_size
        self._chunk = np.zeros((chunk_size, ACTION_DIM), dtype=np.float32)

    def reset(self, seed: int | None = None) -> None:
        pass

    def predict_chunk(self, observation: dict[str, np.ndarray]) -> np.ndarray:
        check_observation(observation, self.action_dim, self.camera_names, self.image_hw,
                          "the shape-checking runner")  # fmt: skip
        return self._chunk.copy()


@dataclass
class TransportRow:
    size: str
    codec: str
    request_kb: float  # one infer message as sent, mean over the observations
    in_process_p50_s: float
    in_process_p99_s: float
    remote_p50_s: float
    remote_p99_s: float
    overhead_p50_s: float  # per call: remote wall time - the server's predict_chunk time
    overhead_p99_s: float


@dataclass
class TransportBenchResult:
    rows: list[TransportRow]
    calls: int
    jpeg_quality: int
    chunk_size: int
    machine: str
    goal_overhead_p50_s: float = GOAL_OVERHEAD_P50_S
    meets_goal: bool | None = None  # 96x128 raw overhead p50 within the goal; None if not run
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def rendered_observations(image_hw: tuple[int, int], n: int) -> list[dict[str, np.ndarray]]:
    """n observations of the simulated scene at image_hw, three cameras, seeded starts."""
    from edgevla.sim.env import TeaBagMugEnv
    from edgevla.sim.scene import SceneConfig

    env = TeaBagMugEnv(SceneConfig(image_height=image_hw[0], image_width=image_hw[1]))
    try:
        out = []
        for seed in range(n):
            obs, _ = env.reset(seed=seed)
            out.append({k: np.array(v) for k, v in obs.items() if k.startswith("observation.")})
        return out
    finally:
        env.close()


def _p(x: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(x, dtype=np.float64), q))


def bench_case(
    runner: ShapeCheckRunner,
    observations: list[dict[str, np.ndarray]],
    codec: str,
    config: TransportBenchConfig,
    size: str,
) -> TransportRow:
    """One (size, codec) case: a server on a free loopback port, a client, interleaved calls."""
    from edgevla_runtime import wire
    from edgevla_runtime.remote import RemoteRunner

    from edgevla.deploy.server import PolicyServer

    server = PolicyServer.for_runner(runner, port=0)
    port = server.start()
    client = RemoteRunner(f"127.0.0.1:{port}", image_codec=codec,
                          jpeg_quality=config.jpeg_quality)  # fmt: skip
    try:
        request_bytes = [
            len(wire.encode({"type": "infer", "observation": client.frame(o)}))
            for o in observations
        ]
        local, remote, overhead = [], [], []
        for i in range(config.warmup + config.calls):
            obs = observations[i % len(observations)]
            t0 = time.perf_counter()
            runner.predict_chunk(obs)
            t1 = time.perf_counter()
            client.predict_chunk(obs)
            t2 = time.perf_counter()
            if i >= config.warmup:
                local.append(t1 - t0)
                remote.append(t2 - t1)
                overhead.append((t2 - t1) - client.server_inference_s[-1])
    finally:
        client.close()
        server.stop()
    return TransportRow(
        size=size, codec=codec, request_kb=float(np.mean(request_bytes)) / 1024,
        in_process_p50_s=_p(local, 50), in_process_p99_s=_p(local, 99),
        remote_p50_s=_p(remote, 50), remote_p99_s=_p(remote, 99),
        overhead_p50_s=_p(overhead, 50), overhead_p99_s=_p(overhead, 99),
    )  # fmt: skip


def bench_transport(
    config: TransportBenchConfig, progress: ProgressFn = no_progress
) -> TransportBenchResult:
    """Loopback transport overhead for every size x codec; see the module docstring."""
    rows: list[TransportRow] = []
    total = len(config.sizes) * len(config.codecs)
    for size in config.sizes:
        hw = parse_size(size)
        observations = rendered_observations(hw, config.observations)
        runner = ShapeCheckRunner(hw, config.chunk_size)
        for codec in config.codecs:
            rows.append(bench_case(runner, observations, codec, config, f"{hw[0]}x{hw[1]}"))
            progress(ProgressEvent("transport", len(rows), total, f"{size} {codec}"))
    goal = [r for r in rows if r.size == "96x128" and r.codec == "raw"]
    machine = f"{platform.machine()} {os.cpu_count()} cores"
    return TransportBenchResult(
        rows=rows, calls=config.calls, jpeg_quality=config.jpeg_quality,
        chunk_size=config.chunk_size, machine=machine,
        meets_goal=goal[0].overhead_p50_s <= GOAL_OVERHEAD_P50_S if goal else None,
        notes=["transport only: the server runs a shape-checking runner that returns a fixed "
               "chunk; server and client share one process on 127.0.0.1"],
    )  # fmt: skip
