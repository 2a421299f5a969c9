"""A policy on another computer, behind the PolicyRunner interface (the robot client).

The board streams observations to `edgevla serve` over a websocket (wire.py framing, never
pickle) and gets action chunks back; the control loop cannot tell it from a local runner. Each
reply carries the server's own inference time, so the latency the loop measures around
predict_chunk splits into inference (server_inference_s) and network + (de)serialisation
(the rest), with no synchronised clocks.

Images go as raw pixels (image_codec="raw", the default) or as JPEG (image_codec="jpeg", at
jpeg_quality): three rendered 480x640 frames take 42 KB instead of 2.7 MB at quality 90, at
the cost of an encode here and a decode on the server (on loopback raw is faster; JPEG is for
a network that cannot carry 80 MB/s at 30 fps; `edgevla bench transport` measures both).
JPEG needs Pillow (`pip install edgevla-runtime[jpeg]`); a raw client never imports it. The
round trip is timed from before the encode, so the network share of the split includes
(de)serialisation, JPEG included.

Faults: a dropped connection, a timeout or an error reply raise from predict_chunk, which the
loop handles as an inference fault (on_fault="hold": the arm holds, the queue is dropped). The
next call reconnects, at most once per backoff interval (doubling up to max_backoff_s), so a
server that is down is not hammered and one that returns is picked up.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

import numpy as np

from edgevla_runtime import wire
from edgevla_runtime.features import IMAGE_KEY_PREFIX


class RemoteError(ConnectionError):
    """The server could not be reached or answered with an error."""


IMAGE_CODECS = ("raw", "jpeg")


class RemoteRunner:
    """address "HOST:PORT"; token: the server's shared token (needed off loopback);
    image_codec: "raw" or "jpeg" (at jpeg_quality, 1-95)."""

    def __init__(
        self,
        address: str,
        token: str | None = None,
        timeout_s: float = 5.0,
        backoff_s: float = 0.2,
        max_backoff_s: float = 5.0,
        image_codec: str = "raw",
        jpeg_quality: int = 90,
    ):
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"--remote must be HOST:PORT, got {address!r}")
        if image_codec not in IMAGE_CODECS:
            raise ValueError(f"--image-codec must be one of {IMAGE_CODECS}, got {image_codec!r}")
        if not 1 <= jpeg_quality <= 95:
            raise ValueError(f"--jpeg-quality must be in [1, 95], got {jpeg_quality}")
        if image_codec == "jpeg":
            wire.require_jpeg()  # one line naming the extra, before any connection
        self.image_codec = image_codec
        self.jpeg_quality = jpeg_quality
        self.url = f"ws://{host}:{port}"
        self.token = token
        self.timeout_s = timeout_s
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._ws = None
        # One request in flight at a time: a late inference the real-time loop left behind at an
        # episode's end must not interleave with the next episode's reset on the same socket.
        self._lock = threading.Lock()
        self._stack: contextlib.ExitStack | None = None
        self._next_try = 0.0
        self._delay = backoff_s
        self._seed: int | None = None
        self.policy: dict[str, Any] = {}
        self.server_inference_s: list[float] = []
        self.round_trip_s: list[float] = []
        self.reconnects = 0
        self._connect()

    # ---- connection
    def _connect(self) -> None:
        from websockets.sync.client import connect

        stack = contextlib.ExitStack()  # the connection is a context manager; closed in close()
        try:
            ws = stack.enter_context(
                connect(self.url, open_timeout=self.timeout_s, max_size=wire.MAX_MESSAGE_BYTES)
            )
        except (OSError, TimeoutError) as e:
            raise RemoteError(f"cannot reach the policy server at {self.url} ({e}); is `edgevla "
                              "serve --policy B --port P` running there?") from None  # fmt: skip
        except Exception as e:  # websockets' handshake errors
            raise RemoteError(f"policy server at {self.url} refused the connection ({e})") from None
        self._ws, self._stack = ws, stack
        reply = self._call({"type": "hello", "token": self.token})
        if reply.get("type") != "welcome":
            self.close()
            raise RemoteError(f"policy server refused the session: {reply.get('message', reply)}")
        self.policy = reply["policy"]
        self._delay = self.backoff_s
        if self._seed is not None:
            self._call({"type": "reset", "seed": self._seed})

    def _ensure(self) -> None:
        if self._ws is not None:
            return
        now = time.monotonic()
        if now < self._next_try:
            raise RemoteError(
                f"policy server at {self.url} is down; retrying in {self._next_try - now:.1f} s"
            )
        try:
            self._connect()
            self.reconnects += 1
        except RemoteError:
            self._next_try = time.monotonic() + self._delay
            self._delay = min(2 * self._delay, self.max_backoff_s)
            raise

    def _call(self, message: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            return self._exchange(message)

    def _exchange(self, message: dict[str, Any]) -> dict[str, Any]:
        try:
            self._ws.send(wire.encode(message))
            reply = wire.decode(self._ws.recv(timeout=self.timeout_s))
        except TimeoutError:
            self.close()
            raise RemoteError(
                f"policy server at {self.url} did not answer within {self.timeout_s:g} s"
            ) from None
        except (OSError, wire.WireError, Exception) as e:
            if isinstance(e, RemoteError):
                raise
            self.close()
            raise RemoteError(f"connection to {self.url} lost ({type(e).__name__})") from None
        if reply.get("type") == "error":
            raise RemoteError(f"policy server: {reply.get('message')}")
        return reply

    def close(self) -> None:
        if self._stack is not None:
            with contextlib.suppress(Exception):  # already gone
                self._stack.close()
        self._ws, self._stack = None, None

    # ---- PolicyRunner
    @property
    def chunk_size(self) -> int:
        return int(self.policy["chunk_size"])

    @property
    def action_dim(self) -> int:
        return int(self.policy["action_dim"])

    @property
    def camera_names(self) -> tuple[str, ...]:
        return tuple(self.policy["camera_names"])

    @property
    def image_hw(self) -> tuple[int, int]:
        h, w = self.policy["image_hw"]
        return int(h), int(w)

    @property
    def fps(self) -> float | None:
        return self.policy.get("fps")

    def reset(self, seed: int | None = None) -> None:
        self._seed = seed
        self._ensure()
        self._call({"type": "reset", "seed": seed})

    def frame(self, observation: dict[str, np.ndarray]) -> dict[str, Any]:
        """The observation as sent: images as JPEG maps when image_codec is "jpeg"."""
        if self.image_codec == "raw":
            return dict(observation)
        return {
            k: wire.jpeg_image(v, self.jpeg_quality) if k.startswith(IMAGE_KEY_PREFIX) else v
            for k, v in observation.items()
        }

    def predict_chunk(self, observation: dict[str, np.ndarray]) -> np.ndarray:
        self._ensure()
        t0 = time.perf_counter()
        reply = self._call({"type": "infer", "observation": self.frame(observation)})
        self.round_trip_s.append(time.perf_counter() - t0)
        if reply.get("type") != "chunk" or not isinstance(reply.get("chunk"), np.ndarray):
            raise RemoteError("policy server sent no chunk")
        self.server_inference_s.append(float(reply.get("server_inference_s", 0.0)))
        return reply["chunk"].astype(np.float32)

    def timing(self) -> dict[str, float | None]:
        """Median round trip, server inference and their difference (network + framing)."""
        if not self.round_trip_s:
            return {"round_trip_p50_s": None, "server_inference_p50_s": None, "network_p50_s": None}
        rt, inf = np.median(self.round_trip_s), np.median(self.server_inference_s)
        net = np.median(np.subtract(self.round_trip_s, self.server_inference_s))
        return {
            "round_trip_p50_s": float(rt),
            "server_inference_p50_s": float(inf),
            "network_p50_s": float(net),
        }
