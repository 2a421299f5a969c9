"""The policy server's wire format: msgpack maps, numpy arrays framed explicitly. Never pickle.

A message is one msgpack map with string keys. An array inside it is a map
    {"__nd__": 1, "dtype": "<u1" | "<f4" | ..., "shape": [int, ...], "data": <raw bytes>}
and is rebuilt with np.frombuffer after checking that the dtype is one of ALLOWED_DTYPES (no
object arrays: they are how pickle sneaks in), the shape is a short list of small non-negative
ints, and the byte count equals prod(shape) * itemsize. Anything else is refused with a
WireError whose message is short and safe to send back to the peer.

Messages (client -> server):  hello {token?}, health, reset {seed}, infer {observation}
Replies (server -> client):   welcome {policy}, ok {...}, chunk {chunk, server_inference_s},
                              error {message}
"""

from __future__ import annotations

import math
from typing import Any

import msgpack
import numpy as np

ALLOWED_DTYPES = ("|u1", "<u1", "<f4", "<f8", "<f2", "<i8", "<i4", "|b1")
MAX_DIMS = 6
MAX_MESSAGE_BYTES = 32 * 1024 * 1024  # three 480x640 RGB frames are 2.8 MB
MAX_DEPTH = 4
MAX_KEYS = 64


class WireError(ValueError):
    """A message that cannot be decoded or does not fit the protocol; says what, briefly."""


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
    message = _unpack(raw, 0)
    if not isinstance(message.get("type"), str):
        raise WireError("a message needs a string 'type'")
    return message


def _unpack(value: Any, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise WireError("message nested too deeply")
    if isinstance(value, dict):
        if "__nd__" in value:
            return _array(value)
        return {k: _unpack(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_unpack(v, depth + 1) for v in value]
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


def error(message: str) -> bytes:
    """An error reply: one short line (never a traceback)."""
    return encode({"type": "error", "message": " ".join(str(message).split())[:300]})
