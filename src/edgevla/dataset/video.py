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

PyAV's FFmpeg build here has libsvtav1 as its only AV1 encoder (libdav1d only decodes; libaom-av1
and librav1e are absent); `default_av1_encoder` falls back to the others where they exist.

Frame times: the stream time base is chosen by the mp4 muxer (1/15360 at 30 fps, as in LeRobot's
files), frame i of a file has pts i * (time_base^-1 / fps), and an episode inside a concatenated
file is addressed by [from_timestamp, to_timestamp) in seconds, as LeRobot's episodes table does.
"""

from __future__ import annotations

import functools
import os
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
    """A video file could not be written, read, or does not hold what the metadata says."""


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


def encode_video(
    frames: np.ndarray, path: str | Path, fps: int, settings: VideoSettings | None = None
) -> None:
    """Encode frames (T, H, W, 3) uint8 RGB into an mp4 at `path` (overwritten).

    The caller owns atomicity (the writer encodes into a staging directory it publishes later).
    """
    settings = settings or VideoSettings()
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    if len(frames) == 0:
        raise ValueError("cannot encode an empty episode (0 frames)")
    _, height, width, _ = frames.shape
    if height % 2 or width % 2:
        raise ValueError(f"yuv420p needs even height and width, got {height}x{width}")
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream(
            settings.encoder, rate=fps, options=settings.encoder_options()
        )
        stream.width, stream.height, stream.pix_fmt = width, height, settings.pix_fmt
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


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
