"""The wire format refuses anything that is not a well-formed message: a fuzz of the decoder."""

from __future__ import annotations

import contextlib

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
        st.sampled_from(["type", "__nd__", "dtype", "shape", "data", "x"]), _values, max_size=5
    )
)
def test_mutated_messages_decode_or_are_refused(fields) -> None:
    """Maps that look like messages and arrays, with wrong types anywhere."""
    data = msgpack.packb({"type": "infer", "observation": fields, **fields}, use_bin_type=True)
    try:
        message = wire.decode(data)
    except wire.WireError:
        return
    assert isinstance(message, dict) and isinstance(message["type"], str)
