"""`edgevla serve`: one policy answering observation -> action chunk for robots on the network.

A websocket server (websockets' threaded sync server: one thread per client) speaking
edgevla_runtime.wire (msgpack, explicit numpy framing, never pickle). Each client has its own
session (its episode seed and chunk count); inference is serialised on one runner. A sampling
policy's noise for chunk k of an episode comes from (episode seed, k), so a client's episode is
reproducible whatever the other clients do.

Safety: loopback by default; any other bind address requires a shared token, compared in
constant time, checked in the first message of every session. Messages over the size limit,
malformed, of the wrong shape or dtype, or out of order get a short error reply (never a
traceback) and the server keeps serving everyone else; a client that disconnects frees its
session. Camera images come raw or as JPEG with their shape; wire.decode decodes a JPEG within
the message's size limit and refuses one whose decoded shape is not the declared one.

`PolicyServer(config)` loads config.policy; `PolicyServer.for_runner(runner)` serves a runner
already in memory (tests inject slow or failing runners; `edgevla bench transport` serves a
runner that only checks shapes, to time the transport alone).
"""

from __future__ import annotations

import hmac
import ipaddress
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from edgevla_runtime import wire
from edgevla_runtime.observation import check_observation
from edgevla_runtime.runner import PolicyRunner

from edgevla.errors import BadInput


@dataclass(frozen=True)
class ServeConfig:
    policy: Path
    """a checkpoint folder or a bundle"""
    host: str = "127.0.0.1"
    port: int = 8765
    token: str | None = None
    """shared secret; required when host is not loopback"""
    threads: int = 1
    noise_scale: float = 1.0

    def __post_init__(self) -> None:
        if not Path(self.policy).is_dir():
            raise BadInput(
                "not found (a checkpoint folder or a bundle)", path=self.policy, field="--policy"
            )
        if not 0 <= self.port < 65536:
            raise BadInput(f"must be in [0, 65535], got {self.port}", field="--port")
        if not is_loopback(self.host) and not self.token:
            raise BadInput(
                f"serving on {self.host} exposes the policy to the network: pass --token SECRET "
                "(clients send it), or bind to 127.0.0.1", field="--token")  # fmt: skip


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class Session:
    seed: int | None = None
    chunk_index: int = 0
    authenticated: bool = False


@dataclass
class ServerStats:
    sessions_open: int = 0
    sessions_total: int = 0
    inferences: int = 0
    errors: int = 0
    error_messages: list[str] = field(default_factory=list)


class PolicyServer:
    """Loads the policy once; `start()` (a background thread, returns the port) + `stop()`."""

    def __init__(self, config: ServeConfig):
        from edgevla.policies.runner import load_runner

        runner = load_runner(config.policy, config.threads, config.noise_scale)
        self._setup(runner, config.host, config.port, config.token, _fps_of(runner, config.policy))
        self.config: ServeConfig | None = config

    @classmethod
    def for_runner(
        cls, runner: PolicyRunner, host: str = "127.0.0.1", port: int = 0,
        token: str | None = None,
    ) -> PolicyServer:  # fmt: skip
        """Serve a runner already in memory; its `fps` attribute, if any, is the policy's fps.
        Off loopback a token is required, as for ServeConfig."""
        if not is_loopback(host) and not token:
            raise BadInput(f"serving on {host} needs a token", field="--token")
        server = cls.__new__(cls)
        server._setup(runner, host, port, token, getattr(runner, "fps", None))
        server.config = None
        return server

    def _setup(
        self, runner: PolicyRunner, host: str, port: int, token: str | None, fps: float | None
    ) -> None:
        self.runner = runner
        self.host, self.port, self.token = host, port, token
        self.lock = threading.Lock()
        self.stats = ServerStats()
        self._server = None
        self._thread: threading.Thread | None = None
        r = runner
        self.policy_info = {
            "chunk_size": r.chunk_size, "action_dim": r.action_dim,
            "camera_names": list(r.camera_names), "image_hw": list(r.image_hw),
            "state_dim": r.action_dim, "fps": fps,
        }  # fmt: skip

    # ---- one message
    def handle(self, session: Session, data: bytes) -> bytes:
        try:
            message = wire.decode(data)
            kind = message["type"]
            if kind == "health":
                return wire.encode({"type": "ok", "sessions": self.stats.sessions_open})
            if kind == "hello":
                if self.token is not None:
                    given = message.get("token")
                    if not isinstance(given, str) or not hmac.compare_digest(
                        given.encode(), self.token.encode()
                    ):
                        return self._refuse("wrong or missing token")
                session.authenticated = True
                return wire.encode({"type": "welcome", "policy": self.policy_info})
            if not session.authenticated:
                return self._refuse("send hello first")
            if kind == "reset":
                seed = message.get("seed")
                if seed is not None and not isinstance(seed, int):
                    return self._refuse("reset seed must be an int or null")
                session.seed, session.chunk_index = seed, 0
                return wire.encode({"type": "ok"})
            if kind == "infer":
                return self._infer(session, message.get("observation"))
            return self._refuse(f"unknown message type {str(kind)[:32]!r}")
        except wire.WireError as e:
            return self._refuse(str(e))
        except (ValueError, KeyError, TypeError) as e:
            return self._refuse(f"bad request: {e}")

    def _refuse(self, message: str) -> bytes:
        self.stats.errors += 1
        if len(self.stats.error_messages) < 20:
            self.stats.error_messages.append(message[:200])
        return wire.error(message)

    def _infer(self, session: Session, observation: Any) -> bytes:
        if not isinstance(observation, dict):
            return self._refuse("infer needs an observation map")
        r = self.runner
        check_observation(
            observation, r.action_dim, r.camera_names, r.image_hw, "the served policy"
        )
        for key, value in observation.items():
            if key.startswith("observation.images.") and getattr(value, "dtype", None) != np.uint8:
                return self._refuse(f"{key[:64]} must be a uint8 array")
        with self.lock:
            base = 0 if session.seed is None else session.seed
            r.reset(base * 1_000_003 + session.chunk_index)  # this session's noise, chunk k
            t0 = time.perf_counter()
            try:
                chunk = r.predict_chunk(observation)
            except Exception as e:  # the policy failed on this input: tell the client, keep serving
                return self._refuse(f"inference failed ({type(e).__name__}: {str(e)[:120]})")
            elapsed = time.perf_counter() - t0
            self.stats.inferences += 1
        session.chunk_index += 1
        return wire.encode({"type": "chunk", "chunk": np.asarray(chunk, np.float32),
                            "server_inference_s": elapsed})  # fmt: skip

    # ---- websocket plumbing
    def _connection(self, ws) -> None:
        session = Session()
        self.stats.sessions_open += 1
        self.stats.sessions_total += 1
        try:
            for data in ws:
                if isinstance(data, str):
                    ws.send(self._refuse("text frames are not accepted; send binary msgpack"))
                    continue
                ws.send(self.handle(session, data))
        except Exception:  # the client went away mid-message: its session ends here
            pass
        finally:
            self.stats.sessions_open -= 1

    def start(self) -> int:
        """Serve in a background thread; returns the bound port (useful with port 0)."""
        from websockets.sync.server import serve

        self._server = serve(self._connection, self.host, self.port,
                             max_size=wire.MAX_MESSAGE_BYTES, compression=None)  # fmt: skip
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="edgevla-serve", daemon=True
        )
        self._thread.start()
        return self._server.socket.getsockname()[1]

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
        if self._thread is not None:
            self._thread.join(5.0)


def _fps_of(runner, folder: Path) -> float | None:
    manifest = getattr(runner, "manifest", None)
    if manifest is not None:
        return manifest.fps
    from edgevla.policies.checkpoint import Checkpoint

    return Checkpoint.open(Path(folder)).fps
