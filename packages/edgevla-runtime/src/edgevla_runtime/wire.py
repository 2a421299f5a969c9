"""The policy server's wire format: msgpack maps, numpy arrays framed explicitly. Never pickle.

A message is one msgpack map with string keys. An array inside it is a map
    {"__nd__": 1, "dtype": "<u1" | "<f4" | ..., "shape": [int, ...], "data": <raw bytes>}
and is rebuilt with np.frombuffer after checking that the dtype is one of ALLOWED_DTYPES (no
object arrays: they are how pickle sneaks in), the shape is a short list of small non-negative
ints, and the byte count equals prod(shape) * itemsize. A camera image may instead travel as
JPEG with its shape,
    {"__jpeg__": 1, "shape": [H, W, 3], "data": <JPEG bytes>}
decoded with Pillow (the optional extra `edgevla-runtime[jpeg]`, imported only when a JPEG is
sent or received, so a raw-only client never needs it). Decoding is bounded: the shapes a message
declares may add up to at most its size limit in decoded bytes, the JPEG may be no larger than
its raw pixels, its header must already say baseline RGB of the declared size (a progressive
JPEG can take many scans to decode, so it is refused), and the decoded array must have the
declared shape. Anything else is refused with a WireError whose message is short and safe to
send back to the peer.

Messages (client -> server):  hello {token?}, health, reset {seed}, infer {observation}
Replies (server -> client):   welcome {policy}, ok {...}, chunk {chunk, server_inference_s},
                              error {message}
"""

from __future__ import annotations

import io
import math
from typing import Any

import msgpack
import numpy as np

ALLOWED_DTYPES = ("|u1", "<u1", "<f4", "<f8", "<f2", "<i8", "<i4", "|b1")
MAX_DIMS = 6
MAX_MESSAGE_BYTES = 32 * 1024 * 1024  # three 480x640 RGB frames are 2.8 MB
MAX_DEPTH = 4
MAX_KEYS = 64
JPEG_HEADER_SLACK = 16 * 1024  # a JPEG may exceed its raw pixels by its headers, no more
JPEG_HINT = "pip install edgevla-runtime[jpeg]"


class WireError(ValueError):
    """A message that cannot be decoded or does not fit the protocol; says what, briefly."""


class JpegUnavailable(WireError):
    """JPEG images were asked for but Pillow is not installed."""


def require_jpeg():
    """Pillow's Image module, or JpegUnavailable saying how to install it."""
    try:
        from PIL import Image
    except ImportError:
        raise JpegUnavailable(
            f"JPEG images need Pillow, which is not installed: {JPEG_HINT}"
        ) from None
    return Image


def jpeg_image(image: np.ndarray, quality: int = 90) -> dict[str, Any]:
    """An RGB uint8 (H, W, 3) image as a JPEG map {"__jpeg__", "shape", "data"} for encode()."""
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise WireError(f"a JPEG image must be uint8 (H, W, 3), got {arr.dtype} {arr.shape}")
    buffer = io.BytesIO()
    require_jpeg().fromarray(np.ascontiguousarray(arr)).save(
        buffer, format="JPEG", quality=int(quality)
    )
    return {"__jpeg__": 1, "shape": list(arr.shape), "data": buffer.getvalue()}


def encode(message: dict[str, Any]) -> bytes:
    """A message (str keys; values: scalars, str, bytes, lists, dicts, numpy arrays) to bytes."""
    return msgpack.packb(message, default=_pack_array, use_bin_type=True)


def _pack_array(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        arr = np.ascontiguousarray(obj)
        dtype = arr.dtype.newbyteorder("<") if arr.dtype.byteorder == ">" else arr.dtype
        if dtype.str not in ALLOWED_DTYPES:
            raise WireError(f"dtype {arr.dtype} cannot be sent (allowed: {ALLOWED_DTYPES})")
        return {"__nd__": 1, "dtype": dtype.str, "shape": list(arr.shape),
                "data": arr.astype(dtype, copy=False).tobytes()}  # fmt: skip
    if isinstance(obj, np.generic):
        return obj.item()
    raise WireError(f"cannot send a {type(obj).__name__}")


def decode(data: bytes, max_bytes: int = MAX_MESSAGE_BYTES) -> dict[str, Any]:
    """Bytes to a message, checked; raises WireError for anything malformed."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise WireError("expected a binary message")
    if len(data) > max_bytes:
        raise WireError(f"message of {len(data)} bytes exceeds the limit of {max_bytes}")
    try:
        raw = msgpack.unpackb(
            data, raw=False, strict_map_key=True,
            max_array_len=4096, max_map_len=MAX_KEYS, max_str_len=1 << 16, max_bin_len=max_bytes,
        )  # fmt: skip
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError,
            msgpack.UnpackValueError, TypeError) as e:  # fmt: skip
        raise WireError(f"not a msgpack message ({type(e).__name__})") from None
    if not isinstance(raw, dict):
        raise WireError("a message must be a map")
    message = _unpack(raw, 0, [max_bytes])
    if not isinstance(message.get("type"), str):
        raise WireError("a message needs a string 'type'")
    return message


def _unpack(value: Any, depth: int, budget: list[int]) -> Any:
    """budget: [decoded bytes the message's JPEGs may still take]."""
    if depth > MAX_DEPTH:
        raise WireError("message nested too deeply")
    if isinstance(value, dict):
        if "__nd__" in value:
            return _array(value)
        if "__jpeg__" in value:
            return _jpeg(value, budget)
        return {k: _unpack(v, depth + 1, budget) for k, v in value.items()}
    if isinstance(value, list):
        return [_unpack(v, depth + 1, budget) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        raise WireError("non-finite number in message")
    return value


def _array(spec: dict[str, Any]) -> np.ndarray:
    dtype, shape, data = spec.get("dtype"), spec.get("shape"), spec.get("data")
    if set(spec) != {"__nd__", "dtype", "shape", "data"}:
        raise WireError("an array has exactly the fields dtype, shape, data")
    if dtype not in ALLOWED_DTYPES:
        raise WireError(f"array dtype {str(dtype)[:16]!r} not allowed (allowed: {ALLOWED_DTYPES})")
    if (
        not isinstance(shape, list)
        or len(shape) > MAX_DIMS
        or not all(
            isinstance(n, int) and not isinstance(n, bool) and 0 <= n < 1 << 24 for n in shape
        )
    ):
        raise WireError("array shape must be a list of at most 6 non-negative ints")
    if not isinstance(data, bytes):
        raise WireError("array data must be bytes")
    dt = np.dtype(dtype)
    expected = math.prod(shape) * dt.itemsize
    if expected != len(data):
        raise WireError(
            f"array of shape {shape} and dtype {dtype} needs {expected} bytes, got {len(data)}"
        )
    return np.frombuffer(data, dtype=dt).reshape(shape)


def _jpeg(spec: dict[str, Any], budget: list[int]) -> np.ndarray:
    shape, data = spec.get("shape"), spec.get("data")
    if set(spec) != {"__jpeg__", "shape", "data"}:
        raise WireError("a JPEG image has exactly the fields shape, data")
    if not (
        isinstance(shape, list)
        and len(shape) == 3
        and all(isinstance(n, int) and not isinstance(n, bool) for n in shape)
        and shape[0] >= 1
        and shape[1] >= 1
        and shape[2] == 3
    ):
        raise WireError("a JPEG image's shape must be [H, W, 3] with H, W >= 1")
    h, w, _ = shape
    raw_bytes = h * w * 3
    if raw_bytes > budget[0]:
        raise WireError(
            f"a JPEG image of shape {str(shape)[:40]} exceeds the message's limit on decoded "
            f"bytes ({budget[0]} left)"
        )
    budget[0] -= raw_bytes
    if not isinstance(data, bytes):
        raise WireError("JPEG data must be bytes")
    if len(data) > raw_bytes + JPEG_HEADER_SLACK:
        raise WireError(f"a JPEG of {len(data)} bytes is larger than its {shape} pixels")
    Image = require_jpeg()
    try:
        with Image.open(io.BytesIO(data), formats=["JPEG"]) as img:
            if img.size != (w, h) or img.mode != "RGB":
                raise WireError(
                    f"JPEG is {img.mode} {img.size[1]}x{img.size[0]}; declared RGB {h}x{w}"
                )
            if img.info.get("progressive"):
                raise WireError("progressive JPEG is not accepted; send baseline JPEG")
            img.load()  # a truncated or corrupt stream raises here
            decoded = np.asarray(img)
    except WireError:
        raise
    except Exception as e:  # Pillow raises many kinds on a corrupt stream; none reaches the peer
        raise WireError(f"JPEG image could not be decoded ({type(e).__name__})") from None
    if decoded.shape != (h, w, 3) or decoded.dtype != np.uint8:
        raise WireError(f"JPEG decoded to {decoded.dtype} {decoded.shape}; declared {shape}")
    return decoded


def error(message: str) -> bytes:
    """An error reply: one short line (never a traceback)."""
    return encode({"type": "error", "message": " ".join(str(message).split())[:300]})
