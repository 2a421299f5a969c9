"""The wire format refuses anything that is not a well-formed message: a fuzz of the decoder."""

from __future__ import annotations

import contextlib
import subprocess
import sys

import msgpack
import numpy as np
import pytest
from edgevla_runtime import wire
from hypothesis import given, settings
from hypothesis import strategies as st


def test_round_trip_keeps_arrays_exactly() -> None:
    obs = {"observation.state": np.arange(6, dtype=np.float32),
           "observation.images.top": np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)}  # fmt: skip
    back = wire.decode(wire.encode({"type": "infer", "observation": obs}))
    for k, v in obs.items():
        assert back["observation"][k].dtype == v.dtype and np.array_equal(back["observation"][k], v)


@pytest.mark.parametrize(
    ("message", "says"),
    [
        (b"\xc1", "not a msgpack"),
        (msgpack.packb([1, 2]), "must be a map"),
        (msgpack.packb({"x": 1}), "string 'type'"),
        (msgpack.packb({"type": "infer", "a": {"__nd__": 1, "dtype": "|O", "shape": [1], "data": b"x"}}), "not allowed"),
        (msgpack.packb({"type": "infer", "a": {"__nd__": 1, "dtype": "<f4", "shape": [2], "data": b"1234"}}), "needs 8 bytes"),
        (msgpack.packb({"type": "infer", "a": {"__nd__": 1, "dtype": "<f4", "shape": [-1], "data": b""}}), "non-negative"),
        (msgpack.packb({"type": "infer", "a": {"__nd__": 1, "dtype": "<f4", "shape": [1], "data": b"1234", "x": 1}}), "exactly"),
        (msgpack.packb({"type": "x", "v": float("nan")}), "non-finite"),
        (msgpack.packb({"type": "x", "v": {"a": {"b": {"c": {"d": {"e": 1}}}}}}), "nested"),
    ],
)  # fmt: skip
def test_malformed_messages_are_refused_with_a_reason(message, says) -> None:
    with pytest.raises(wire.WireError, match=says):
        wire.decode(message)


def test_oversized_message_is_refused_before_parsing() -> None:
    with pytest.raises(wire.WireError, match="exceeds"):
        wire.decode(b"\x80" * 100, max_bytes=50)


def test_object_arrays_cannot_be_sent() -> None:
    with pytest.raises(wire.WireError, match="cannot be sent"):
        wire.encode({"type": "x", "a": np.array([object()])})


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=512))
def test_random_bytes_never_crash_the_decoder(data: bytes) -> None:
    with contextlib.suppress(wire.WireError):  # refusing is fine; any other exception fails
        wire.decode(data)


_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=8)
    | st.binary(max_size=16),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=2000, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["type", "__nd__", "__jpeg__", "dtype", "shape", "data", "x"]),
        _values,
        max_size=5,
    )
)
def test_mutated_messages_decode_or_are_refused(fields) -> None:
    """Maps that look like messages, arrays and JPEG images, with wrong types anywhere (without
    Pillow a JPEG is refused too; test_wire_jpeg.py fuzzes real JPEG streams)."""
    data = msgpack.packb({"type": "infer", "observation": fields, **fields}, use_bin_type=True)
    try:
        message = wire.decode(data)
    except wire.WireError:
        return
    assert isinstance(message, dict) and isinstance(message["type"], str)


def test_raw_client_never_needs_pillow_and_jpeg_without_it_says_how_to_install() -> None:
    """In an interpreter where PIL cannot be imported: raw messages round-trip; asking for JPEG
    is one line naming the extra, from the API and from the command line (exit 2)."""
    script = """
import sys
sys.modules["PIL"] = None  # `import PIL` now raises ImportError
import numpy as np
from edgevla_runtime import wire
from edgevla_runtime.remote import RemoteRunner
from edgevla_runtime.cli import main
obs = {"observation.images.top": np.zeros((4, 4, 3), np.uint8)}
assert wire.decode(wire.encode({"type": "infer", "observation": obs}))["observation"]
try:
    RemoteRunner("127.0.0.1:9", image_codec="jpeg")
except wire.JpegUnavailable as e:
    print(e)
assert main(["run", "--remote", "127.0.0.1:9", "--image-codec", "jpeg"]) == 2
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "pip install edgevla-runtime[jpeg]" in done.stdout
    err = done.stderr.strip().splitlines()
    assert len(err) == 1 and "pip install edgevla-runtime[jpeg]" in err[0], done.stderr
