"""Camera streams to mp4 and back, with PyAV.

Encoding follows LeRobot's defaults so our datasets decode wherever theirs do: AV1 through
SVT-AV1 (libsvtav1), yuv420p, a key frame every 2 frames (cheap random access when a loader
seeks to one frame), crf 30, preset 12. H.264 (libx264) is an option for players and boards
without an AV1 decoder.

Measured on this project's 2-core CPU at 96x128 with textured, moving frames
(benchmarks/bench_loader.py): libsvtav1 with LeRobot's settings encodes ~2,400 frames/s
(~320 B/frame, mean abs error ~3.4/255); three cameras cost ~1.3 ms per recorded step, ~4% of
the CPU at real-time 30 fps and ~20% on top of a 150 steps/s simulation. That is fast enough, so
we keep LeRobot's settings (a LeRobot loader seeks frame by frame and relies on g=2). Faster
options, all measured: g=30 (~3,200 frames/s, half the size; fine for our loader, which decodes
whole episodes), libx264 ultrafast crf 23 (~5,900 frames/s, ~500 B/frame). Lower presets cost
speed for ~10% size (preset 8: ~1,300 frames/s). SVT-AV1 4.1 maps preset 12 to 11.

Encoding cannot block forever: every camera video is encoded by a worker process (numpy + PyAV
only, started once per process and reused) under a deadline that scales with the frames; a late
worker is killed and the encoding retried (EncodeLimits, EncodeResult.retries). SVT-AV1 4.1.0
stalls for good about once in 4,000-9,000 encoder instances here (see "encoding" below). The
worker path costs ~0.3 s once per process and ~0.2 s per 270 MB of frames; its files are
byte-identical to in-process encoding.

PyAV's FFmpeg build here has libsvtav1 as its only AV1 encoder (libdav1d only decodes; libaom-av1
and librav1e are absent); `default_av1_encoder` falls back to the others where they exist.

Frame times: the stream time base is chosen by the mp4 muxer (1/15360 at 30 fps, as in LeRobot's
files), frame i of a file has pts i * (time_base^-1 / fps), and an episode inside a concatenated
file is addressed by [from_timestamp, to_timestamp) in seconds, as LeRobot's episodes table does.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import logging
import mmap
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

# SVT-AV1 prints a banner and its configuration to stderr for every encoder it opens (three per
# episode); level 1 keeps errors only. Must be set before the first encoder is created.
os.environ.setdefault("SVT_LOG", "1")

import av  # noqa: E402  (after SVT_LOG on purpose)

AV1_ENCODERS: tuple[str, ...] = ("libsvtav1", "libaom-av1", "librav1e")


class VideoError(RuntimeError):
    """A video file could not be written, read, or does not hold what the metadata says.

    exit_code: the command floor prints any error carrying one as one line with that status
    (1: the run happened and could not finish). Not an edgevla.errors class on purpose: this
    module also runs as the encoder worker, which imports numpy and PyAV only."""

    exit_code = 1


@functools.cache
def available_encoders() -> frozenset[str]:
    """Video encoders present in PyAV's FFmpeg build (looked up once per process)."""
    out = set()
    for name in av.codecs_available:
        try:
            codec = av.Codec(name, "w")
        except Exception:  # decoders-only names raise
            continue
        if codec.type == "video":
            out.add(name)
    return frozenset(out)


def default_av1_encoder() -> str:
    """First AV1 encoder PyAV has, in LeRobot's order of preference."""
    have = available_encoders()
    for name in AV1_ENCODERS:
        if name in have:
            return name
    raise VideoError(
        f"PyAV's FFmpeg has no AV1 encoder (looked for {AV1_ENCODERS}); "
        "use VideoSettings.h264() or install a PyAV wheel built with SVT-AV1"
    )


@dataclass(frozen=True)
class VideoSettings:
    """How camera streams are encoded. Field names follow LeRobot's info block ("video.g", ...).

    encoder: FFmpeg encoder name (LeRobot's `vcodec`), e.g. "libsvtav1" or "libx264".
    g: key frame interval in frames; 2 keeps random access cheap for training loaders.
    crf: constant rate factor (quality); preset: speed preset (an int for SVT-AV1, a name for x264).
    extra_options: further encoder options, stored as LeRobot's "video.extra_options".
    """

    encoder: str = "libsvtav1"
    pix_fmt: str = "yuv420p"
    g: int = 2
    crf: int = 30
    preset: int | str | None = 12
    fast_decode: int = 0
    extra_options: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.encoder not in available_encoders():
            raise ValueError(
                f"video encoder {self.encoder!r} is not in PyAV's FFmpeg build; available AV1/H.264 "
                f"encoders: {sorted(e for e in available_encoders() if 'av1' in e or '264' in e)}"
            )
        if self.g < 1:
            raise ValueError(f"g (key frame interval) must be >= 1, got {self.g}")
        if self.pix_fmt != "yuv420p":
            raise ValueError(f"only yuv420p is supported (LeRobot's default), got {self.pix_fmt!r}")
        if self.encoder == "libx264" and self.extra_options.get("bf", "0") != "0":
            # B-frames reorder packets; episode files are concatenated by remuxing, which needs
            # decode order == presentation order at episode boundaries.
            raise ValueError("libx264 must run without B-frames here: set extra_options bf='0'")

    @classmethod
    def av1(cls) -> VideoSettings:
        """LeRobot's default encoding (libsvtav1 or the first AV1 encoder available)."""
        encoder = default_av1_encoder()
        return cls(encoder=encoder, preset=12 if encoder == "libsvtav1" else None)

    @classmethod
    def h264(cls) -> VideoSettings:
        """H.264 for decoders without AV1; ultrafast keeps encoding ~2x faster than AV1."""
        return cls(encoder="libx264", crf=23, preset="ultrafast", extra_options={"bf": "0"})

    @property
    def codec(self) -> str:
        """Codec (not encoder) name as LeRobot stores it in "video.codec": "av1", "h264"."""
        return av.Codec(self.encoder, "w").canonical_name

    def encoder_options(self) -> dict[str, str]:
        opts = {"g": str(self.g), "crf": str(self.crf)}
        if self.preset is not None:
            opts["preset"] = str(self.preset)
        if self.fast_decode:
            if self.encoder == "libsvtav1":
                opts["svtav1-params"] = f"fast-decode={self.fast_decode}"
            else:
                opts["tune"] = "fastdecode"
        opts.update({k: str(v) for k, v in self.extra_options.items()})
        return opts

    def info_block(self, height: int, width: int, fps: int) -> dict[str, Any]:
        """The "info" dict of a video feature in meta/info.json, keys in LeRobot's order."""
        return {
            "video.height": height,
            "video.width": width,
            "video.codec": self.codec,
            "video.pix_fmt": self.pix_fmt,
            "video.fps": fps,
            "video.channels": 3,
            "has_audio": False,
            "video.g": self.g,
            "video.crf": self.crf,
            "video.preset": self.preset,
            "video.fast_decode": self.fast_decode,
            "video.video_backend": "pyav",
            "video.extra_options": dict(self.extra_options),
            "is_depth_map": False,
        }

    @classmethod
    def from_info_block(cls, info: Mapping[str, Any]) -> VideoSettings:
        """Inverse of info_block, used when a writer resumes a dataset it did not create."""
        codec = info.get("video.codec")
        if codec == "av1":
            encoder = default_av1_encoder()
        elif codec == "h264":
            encoder = "libx264"
        else:
            raise ValueError(
                f"cannot resume a dataset whose videos are {codec!r} (need av1 or h264)"
            )
        return cls(
            encoder=encoder,
            pix_fmt=info.get("video.pix_fmt", "yuv420p"),
            g=int(info.get("video.g") or 2),
            crf=int(info.get("video.crf") or 30),
            preset=info.get("video.preset"),
            fast_decode=int(info.get("video.fast_decode") or 0),
            extra_options=dict(info.get("video.extra_options") or {}),
        )


# ------------------------------------------------------------------------------------ encoding
#
# Why encoding runs in a worker process, with a deadline (issue #15): SVT-AV1 can stall for good.
# FFmpeg's libsvtav1 wrapper sends each frame and polls svt_av1_enc_get_packet without blocking,
# but once the end of stream is sent (our final `stream.encode()`) it calls get_packet with
# pic_send_done=1, which waits on the encoder's output semaphore with no timeout. Reproduced
# here (SVT-AV1 4.1.0, PyAV 18.1, 2 cores loaded ~10x over): 1 stall in ~8,700 encoders of 8-120
# frames at 96x128; gdb showed the stack (main thread: stream.encode(None) ->
# avcodec_receive_packet -> svt_av1_enc_get_packet -> sem_wait) and all ~40 SVT-AV1 threads idle
# in sem_wait, i.e. a frame lost inside the library's pipeline at end of stream (a lost wake-up;
# SVT-AV1 3.1.x has open reports of the same "stuck, CPU idle" hang). It is a race, not a bad
# input: the same frames encode fine before and after. Our drain loop is not the cause: each
# encode() call drains packets until EAGAIN, as the API asks, and no encoder option is known to
# avoid it. A C call stuck in a thread cannot be abandoned, so each camera is encoded in a small
# worker process that is killed when it misses its deadline; the encoding is then retried.

_WORKER_FLAG = "--edgevla-encode-worker"
_MAX_JOB = 1 << 16  # bytes of a job's JSON header
_MAX_REPLY = 1 << 16
log = logging.getLogger(__name__)

# Tests only: {"attempts": [1, ...], "mode": "hang" | "exit", "after_frames": n, "pid_file": p}
# makes the worker of those attempts hang (signals blocked) or exit after n frames. Set from
# code, never from the environment, so a recording cannot trigger it.
_FAULT_INJECTION_FOR_TESTS: dict[str, Any] | None = None


class VideoEncodeTimeout(VideoError):
    """Encoding one video did not finish in time (or its worker died) on every attempt."""

    def __init__(self, message: str, path: Path, attempts: int) -> None:
        super().__init__(message)
        self.path, self.attempts = path, attempts


@dataclass(frozen=True)
class EncodeLimits:
    """How long one camera's encoding may take before it is abandoned, and how often it is retried.

    An attempt may take max(min_timeout_s, frames x megapixels x timeout_s_per_megapixel_frame):
    30 s up to ~2,400 frames at 96x128 (which encode in ~1 s), 0.3 s a frame at 480x640 (noise
    frames, the worst case, took 16 ms a frame here with the 2 cores loaded 6x over).
    A late attempt's worker is killed, its partial file deleted, and
    the encoding retried `retries` times before VideoEncodeTimeout. startup_timeout_s bounds a
    worker's start (Python + numpy + PyAV imports). isolate=False encodes in this process with
    no bound (benchmarks, platforms without fork/exec pipes).
    """

    min_timeout_s: float = 30.0
    timeout_s_per_megapixel_frame: float = 1.0
    retries: int = 2
    startup_timeout_s: float = 60.0
    isolate: bool = True

    def __post_init__(self) -> None:
        if not self.min_timeout_s > 0:
            raise ValueError(f"min_timeout_s must be > 0 seconds, got {self.min_timeout_s}")
        if not self.timeout_s_per_megapixel_frame >= 0:
            raise ValueError(
                "timeout_s_per_megapixel_frame must be >= 0, "
                f"got {self.timeout_s_per_megapixel_frame}"
            )
        if not isinstance(self.retries, int) or self.retries < 0:
            raise ValueError(f"retries must be an int >= 0, got {self.retries!r}")
        if not self.startup_timeout_s > 0:
            raise ValueError(f"startup_timeout_s must be > 0, got {self.startup_timeout_s}")

    def timeout_s(self, frames: int, height: int, width: int) -> float:
        """Seconds one attempt at encoding (frames, height, width) may take."""
        scaled = frames * height * width / 1e6 * self.timeout_s_per_megapixel_frame
        return max(self.min_timeout_s, scaled)


@dataclass(frozen=True)
class EncodeResult:
    """What encode_video did: attempts == 1 unless the encoder had to be killed and retried."""

    path: Path
    frames: int
    attempts: int
    seconds: float  # wall time of all attempts

    @property
    def retries(self) -> int:
        return self.attempts - 1


_retries_total = 0


def encoding_retries() -> int:
    """Encodings retried in this process so far (each killed or crashed attempt counts once);
    a caller that cannot see EncodeResult reads it before and after its work."""
    return _retries_total


def encode_video(
    frames: np.ndarray,
    path: str | Path,
    fps: int,
    settings: VideoSettings | None = None,
    limits: EncodeLimits | None = None,
    what: str | None = None,
) -> EncodeResult:
    """Encode frames (T, H, W, 3) uint8 RGB into an mp4 at `path` (overwritten).

    Runs in a worker process with a deadline (see EncodeLimits); `path` appears only once the
    file is complete (the worker writes a hidden sibling that is renamed), and an interrupt
    (Ctrl-C) kills the worker and leaves no file behind. `what` names the video in messages
    ("episode 17, camera top"); it defaults to the file's parent directory and name. The caller
    owns durability (the writer encodes into a staging directory it publishes later).
    Raises VideoEncodeTimeout when every attempt is late or its worker dies, VideoError when
    the encoder reports an error (not retried: it would fail again).
    """
    settings = settings or VideoSettings()
    limits = limits or EncodeLimits()
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    if len(frames) == 0:
        raise ValueError("cannot encode an empty episode (0 frames)")
    n, height, width, _ = frames.shape
    if height % 2 or width % 2:
        raise ValueError(f"yuv420p needs even height and width, got {height}x{width}")
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"cannot write {path}: no directory {path.parent}")
    job = {
        "encoder": settings.encoder,
        "options": settings.encoder_options(),
        "pix_fmt": settings.pix_fmt,
        "fps": int(fps),
        "shape": [int(x) for x in frames.shape],
    }
    t0 = time.monotonic()
    if not limits.isolate:
        _encode_frames(frames, path, job)
        return EncodeResult(path, n, 1, time.monotonic() - t0)

    global _retries_total
    what = what or f"{path.parent.name}/{path.name}"
    described = f"{what} ({n} frames, {width}x{height}, {settings.encoder})"
    timeout = limits.timeout_s(n, height, width)
    total = limits.retries + 1
    frames_fd = _frames_file(memoryview(np.ascontiguousarray(frames)).cast("B"))
    try:
        failures: list[str] = []
        for attempt in range(1, total + 1):
            if attempt > 1:
                _retries_total += 1
            tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.partial")
            worker: _Worker | None = None
            done = False
            try:
                worker = _take_worker(limits.startup_timeout_s)
                deadline = time.monotonic() + timeout
                worker.send({**job, "path": str(tmp), **_fault_for(attempt)}, frames_fd, deadline)
                reply = worker.receive(deadline)
                if not reply.get("ok"):
                    raise VideoError(f"cannot encode {described}: {reply.get('error')}")
                os.replace(tmp, path)
                done = True
                _return_worker(worker)
                return EncodeResult(path, n, attempt, time.monotonic() - t0)
            except _WorkerFailed as e:
                if e.stage == "start":
                    reason = f"the encoder worker did not start in {limits.startup_timeout_s:g} s"
                elif e.stage == "late":
                    reason = f"no result after {timeout:.3g} s (encoder stuck, {e})"
                else:
                    reason = str(e)
                failures.append(f"attempt {attempt}: {reason}")
                if attempt < total:
                    log.warning(
                        "video encoding of %s: %s; killed it, retrying (attempt %d of %d)",
                        described, reason, attempt + 1, total,
                    )  # fmt: skip
            finally:
                if not done:
                    if worker is not None:
                        worker.kill()
                    tmp.unlink(missing_ok=True)
        raise VideoEncodeTimeout(
            f"video encoding of {described} failed {total} times ({'; '.join(failures)}). The "
            "encoder is stuck (a rare SVT-AV1 stall) or the machine is badly overloaded. Nothing of "
            "this episode was kept: run the same command with --resume to record it again; if it "
            "keeps happening, record with --codec h264 or allow more time (EncodeLimits).",
            path,
            total,
        )
    finally:
        os.close(frames_fd)


def _fault_for(attempt: int) -> dict[str, Any]:
    fault = _FAULT_INJECTION_FOR_TESTS
    if not fault or attempt not in fault.get("attempts", ()):
        return {}
    return {"fault": {k: v for k, v in fault.items() if k != "attempts"}}


def _encode_frames(frames: np.ndarray, path: str | Path, job: Mapping[str, Any]) -> None:
    """The encoding itself (in the worker, or in-process with isolate=False)."""
    fault = job.get("fault")
    _, height, width, _ = frames.shape
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream(job["encoder"], rate=job["fps"], options=job["options"])
        stream.width, stream.height, stream.pix_fmt = width, height, job["pix_fmt"]
        for i, frame in enumerate(frames):
            if fault and i == fault.get("after_frames", 0):
                _injected_fault(fault)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _injected_fault(fault: Mapping[str, Any]) -> None:
    if fault.get("pid_file"):
        Path(fault["pid_file"]).write_text(str(os.getpid()))
    if fault.get("mode") == "exit":
        os._exit(70)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    while True:  # like a thread stuck in C: deaf to everything but SIGKILL
        time.sleep(3600)


# ------------------------------------------------------------------------- the worker processes


class _WorkerFailed(Exception):
    """An attempt failed for want of a working worker; stage: "start", "late" or "died"."""

    def __init__(self, message: str, stage: str = "died") -> None:
        super().__init__(message)
        self.stage = stage


class _Worker:
    """One encoding process. Jobs and replies are JSON messages on a Unix socket pair (one
    message per packet); a job's frames travel as a file descriptor (an in-memory file the
    worker maps), so a long 480x640 episode costs one memory copy, not a trip through a pipe."""

    def __init__(self, startup_timeout_s: float) -> None:
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.proc = subprocess.Popen(
                # -P: do not put this file's directory (sibling modules) on sys.path
                [sys.executable, "-P", os.path.abspath(__file__), _WORKER_FLAG,
                 str(theirs.fileno()), str(os.getpid())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
        except BaseException:
            self.sock.close()
            raise
        finally:
            theirs.close()
        self.sock.setblocking(False)
        try:
            self.receive(time.monotonic() + startup_timeout_s, starting=True)
        except BaseException:
            self.kill()
            raise

    def alive(self) -> bool:
        return self.proc.poll() is None

    def send(self, header: Mapping[str, Any], frames_fd: int, deadline: float) -> None:
        body = json.dumps(dict(header)).encode()
        while True:
            self._wait(deadline, write=True)
            try:
                socket.send_fds(self.sock, [body], [frames_fd])
                return
            except BlockingIOError:
                continue
            except OSError as e:  # EPIPE, ECONNRESET: the worker is gone
                raise _WorkerFailed(f"{self._exit_reason()} ({e.strerror})") from None

    def receive(self, deadline: float, starting: bool = False) -> dict[str, Any]:
        while True:
            self._wait(deadline, write=False, starting=starting)
            try:
                data = self.sock.recv(_MAX_REPLY)
            except BlockingIOError:
                continue
            except OSError as e:
                raise _WorkerFailed(f"{self._exit_reason()} ({e.strerror})") from None
            if not data:
                raise _WorkerFailed(self._exit_reason())
            return json.loads(data)

    def _wait(self, deadline: float, write: bool, starting: bool = False) -> None:
        remaining = deadline - time.monotonic()
        if remaining > 0:
            # select returns early for a signal; a KeyboardInterrupt propagates from here
            ready = select.select([] if write else [self.sock], [self.sock] if write else [], [],
                                  remaining)  # fmt: skip
            if ready[0] or ready[1]:
                return
        raise _WorkerFailed(f"worker pid {self.proc.pid}", "start" if starting else "late")

    def _exit_reason(self) -> str:
        try:
            code = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return f"encoder worker pid {self.proc.pid} closed its socket"
        return f"encoder worker exited with status {code}"

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.sock.close()

    def close(self) -> None:
        """Ask an idle worker to exit (it reads EOF), then make sure it did."""
        self.sock.close()
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.kill()


def _frames_file(data: memoryview) -> int:
    """An unnamed in-memory file (a temporary file where memfd is missing) holding `data`."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("edgevla-frames", os.MFD_CLOEXEC)
    else:  # pragma: no cover - not Linux
        with tempfile.TemporaryFile() as f:
            fd = os.dup(f.fileno())
    try:
        off = 0
        while off < len(data):
            off += os.write(fd, data[off:])
    except BaseException:
        os.close(fd)
        raise
    return fd


_idle_workers: list[_Worker] = []
_pool_lock = threading.Lock()


def _take_worker(startup_timeout_s: float) -> _Worker:
    with _pool_lock:
        while _idle_workers:
            worker = _idle_workers.pop()
            if worker.alive():
                return worker
            worker.kill()
    try:
        return _Worker(startup_timeout_s)
    except OSError as e:
        raise _WorkerFailed(f"cannot start an encoder worker: {e}") from e


def _return_worker(worker: _Worker) -> None:
    with _pool_lock:
        _idle_workers.append(worker)


def shutdown_encoder_workers() -> None:
    """Stop the idle encoder workers (done at exit; a later encode starts a new one)."""
    with _pool_lock:
        workers = list(_idle_workers)
        _idle_workers.clear()
    for worker in workers:
        worker.close()


def _forget_inherited_workers() -> None:
    """In a forked child the parent's workers are not ours to use or stop: drop our copies of
    their pipes (so they still see EOF when the parent lets them go) and start afresh."""
    global _idle_workers, _pool_lock
    for worker in _idle_workers:
        worker.sock.close()
    _idle_workers, _pool_lock = [], threading.Lock()


atexit.register(shutdown_encoder_workers)
os.register_at_fork(after_in_child=_forget_inherited_workers)


def _worker_main(sock_fd: int, parent_pid: int) -> None:
    """Loop of the encoding process: take a job, encode, reply; exit when the parent is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the group: the parent decides
    with contextlib.suppress(Exception):  # Linux: die with the parent even if stuck in C
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent_pid:
        return
    with socket.socket(fileno=sock_fd) as sock:
        sock.send(json.dumps({"ready": os.getpid()}).encode())
        while True:
            body, fds, _, _ = socket.recv_fds(sock, _MAX_JOB, 1)
            if not body or len(fds) != 1:
                return  # the parent closed its end (or broke the protocol)
            job = json.loads(body)
            shape = [int(x) for x in job["shape"]]
            with os.fdopen(fds[0], "rb") as f, mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as mm:
                frames = np.frombuffer(mm, dtype=np.uint8, count=int(np.prod(shape)))
                try:
                    _encode_frames(frames.reshape(shape), job["path"], job)
                    reply: dict[str, Any] = {"ok": True}
                except Exception as e:
                    reply = {"ok": False, "error": f"{type(e).__name__}: {e}"[:4000]}
                del frames  # the map can close only once no array looks into it
            sock.send(json.dumps(reply).encode())


@dataclass(frozen=True)
class VideoProbe:
    """What an mp4 says about itself, read without decoding."""

    codec: str
    pix_fmt: str
    width: int
    height: int
    frames: int  # from the header (0 if the container does not say)
    fps: Fraction
    time_base: Fraction
    duration_s: float
    packets: int | None  # counted by demuxing (None unless asked): catches truncated payloads


def probe_video(path: str | Path, count_packets: bool = False) -> VideoProbe:
    """Header facts of the first video stream; VideoError naming the file if it is unreadable.

    count_packets demuxes the whole file (no decoding, ~150k packets/s): a file cut short keeps
    its header (LeRobot writes the index first) but loses packets.
    """
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoError(f"{path} has no video stream")
            s = container.streams.video[0]
            cc = s.codec_context
            duration = float(s.duration * s.time_base) if s.duration else 0.0
            packets = None
            if count_packets:
                packets = sum(1 for p in container.demux(s) if p.dts is not None)
            return VideoProbe(
                codec=cc.codec.canonical_name,
                pix_fmt=cc.pix_fmt or "",
                width=cc.width,
                height=cc.height,
                frames=s.frames,
                fps=Fraction(s.average_rate) if s.average_rate else Fraction(0),
                time_base=Fraction(s.time_base),
                duration_s=duration,
                packets=packets,
            )
    except (av.FFmpegError, OSError) as e:
        raise VideoError(f"cannot read video {path}: {e}") from e


def decode_video(
    path: str | Path,
    from_timestamp: float = 0.0,
    to_timestamp: float | None = None,
    fps: int | None = None,
) -> np.ndarray:
    """Decode the frames whose time lies in [from_timestamp, to_timestamp) as (T, H, W, 3) uint8.

    Frames are matched by rounding time * fps to a frame number, so float round-off in the
    episodes table cannot add or drop a frame. Seeks to the key frame before from_timestamp, so
    decoding one episode of a concatenated file costs that episode (plus at most g - 1 frames).
    """
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            rate = Fraction(fps) if fps else Fraction(stream.average_rate)
            first = round(from_timestamp * rate)
            last = None if to_timestamp is None else round(to_timestamp * rate)  # exclusive
            if first > 0:
                container.seek(int(first / rate / stream.time_base), stream=stream, backward=True)
            out: list[np.ndarray] = []
            for frame in container.decode(stream):
                n = round(frame.pts * stream.time_base * rate)
                if n < first:
                    continue
                if last is not None and n >= last:
                    break
                out.append(frame.to_ndarray(format="rgb24"))
    except (av.FFmpegError, OSError) as e:
        raise VideoError(f"cannot decode video {path}: {e}") from e
    if not out:
        return np.zeros((0, 0, 0, 3), dtype=np.uint8)
    return np.stack(out)


def concat_videos(inputs: Sequence[str | Path], output: str | Path) -> list[int]:
    """Join episode mp4s into one file by remuxing packets (no re-encoding, so it is fast and
    lossless). Returns the number of frames taken from each input.

    All inputs must come from the same encoder settings (identical codec parameters); each
    input's timestamps are shifted by the frames before it, so frame k of the output has pts
    k * frame_duration and episode e starts at sum(frames before e) / fps seconds.
    """
    if not inputs:
        raise ValueError("concat_videos needs at least one input")
    counts: list[int] = []
    try:
        # faststart: the index goes before the payload, as in LeRobot's files (streamable).
        with av.open(str(output), "w", format="mp4", options={"movflags": "+faststart"}) as out:
            out_stream = None
            offset = 0  # in the input time base
            last_dts: int | None = None
            extradata = None
            for path in inputs:
                with av.open(str(path)) as src:
                    s = src.streams.video[0]
                    if out_stream is None:
                        out_stream = out.add_stream_from_template(s, opaque=True)
                        extradata, time_base = s.codec_context.extradata, s.time_base
                    elif s.codec_context.extradata != extradata or s.time_base != time_base:
                        raise VideoError(
                            f"{path} was encoded with other settings than {inputs[0]}; "
                            "episodes of one file must share codec parameters"
                        )
                    step = int(round(1 / (Fraction(s.average_rate) * s.time_base)))
                    n = 0
                    for packet in src.demux(s):
                        if packet.dts is None:  # flush marker
                            continue
                        packet.pts += offset
                        packet.dts += offset
                        if last_dts is not None and packet.dts <= last_dts:
                            raise VideoError(f"non-monotonic timestamps joining {path}")
                        last_dts = packet.dts
                        packet.stream = out_stream
                        out.mux(packet)
                        n += 1
                    if s.frames and s.frames != n:
                        raise VideoError(
                            f"{path}: header says {s.frames} frames, found {n} packets"
                        )
                    counts.append(n)
                    offset += n * step
    except av.FFmpegError as e:
        raise VideoError(f"cannot join videos into {output}: {e}") from e
    return counts


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == _WORKER_FLAG:
    _worker_main(int(sys.argv[2]), int(sys.argv[3]))
