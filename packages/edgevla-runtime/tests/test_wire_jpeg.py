"""JPEG camera images on the wire: decoded within bounds, checked against the declared shape,
refused with a reason otherwise; a fuzz of the JPEG decoder path. Needs the jpeg extra."""

from __future__ import annotations

import contextlib
import io

import msgpack
import numpy as np
import pytest
from edgevla_runtime import wire
from hypothesis import given, settings
from hypothesis import strategies as st

Image = pytest.importorskip("PIL.Image")


def scene(h: int = 96, w: int = 128) -> np.ndarray:
    """A smooth image with edges (JPEG's kind of content), uint8 (h, w, 3)."""
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([x * 255 // w, y * 255 // h, ((x // 16 + y // 16) % 2) * 200], axis=-1)
    return img.astype(np.uint8)


def jpeg_bytes(img: np.ndarray, **save) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(img).save(buffer, format="JPEG", **save)
    return buffer.getvalue()


def message(shape, data) -> bytes:
    return msgpack.packb(
        {"type": "infer", "observation": {"observation.images.top":
                                          {"__jpeg__": 1, "shape": shape, "data": data}}},
        use_bin_type=True,
    )  # fmt: skip


def test_jpeg_round_trip_is_close_and_much_smaller() -> None:
    img = scene()
    framed = wire.jpeg_image(img, 90)
    sent = wire.encode({"type": "infer", "observation": {"x": framed}})
    back = wire.decode(sent)["observation"]["x"]
    assert back.dtype == np.uint8 and back.shape == img.shape
    assert np.array_equal(back, np.asarray(Image.open(io.BytesIO(framed["data"]))))
    assert np.abs(back.astype(int) - img).mean() < 8  # lossy (chroma halved), but close
    assert len(sent) < img.nbytes / 4


@pytest.mark.parametrize(
    ("shape", "data", "says"),
    [
        ([96, 127, 3], jpeg_bytes(scene()), "declared RGB 96x127"),  # the shape lies
        ([96, 128, 4], jpeg_bytes(scene()), r"\[H, W, 3\]"),
        ([96, 128], jpeg_bytes(scene()), r"\[H, W, 3\]"),
        ([0, 128, 3], b"", r"H, W >= 1"),
        ([96, True, 3], b"", r"\[H, W, 3\]"),
        ([96, 128, 3], "text", "must be bytes"),
        ([96, 128, 3], jpeg_bytes(scene(), progressive=True), "progressive"),
        ([96, 128, 3], jpeg_bytes(scene())[:400], "could not be decoded"),  # truncated
        ([96, 128, 3], b"\xff\xd8 not really a jpeg", "could not be decoded"),
        ([96, 128, 3], b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "could not be decoded"),  # not JPEG
        ([8, 8, 3], b"\xff" * (8 * 8 * 3 + wire.JPEG_HEADER_SLACK + 1), "larger than"),
        ([60_000, 60_000, 3], b"\xff\xd8", "exceeds"),  # a decompression bomb, refused unread
        ([2**62, 1, 3], b"", "exceeds"),
    ],
)  # fmt: skip
def test_bad_jpeg_images_are_refused_with_a_reason(shape, data, says) -> None:
    with pytest.raises(wire.WireError, match=says):
        wire.decode(message(shape, data))


def test_grey_jpeg_is_not_an_rgb_image() -> None:
    grey = jpeg_bytes(scene()[..., 0])
    with pytest.raises(wire.WireError, match="JPEG is L 96x128; declared RGB 96x128"):
        wire.decode(message([96, 128, 3], grey))


def test_decoded_bytes_of_all_images_share_the_message_limit() -> None:
    """Many small JPEGs declaring large images cannot add up past the limit."""
    img = jpeg_bytes(scene(64, 64))
    each = 64 * 64 * 3
    fields = {f"observation.images.c{i}": {"__jpeg__": 1, "shape": [64, 64, 3], "data": img}
              for i in range(5)}  # fmt: skip
    data = msgpack.packb({"type": "infer", "observation": fields}, use_bin_type=True)
    assert len(wire.decode(data, max_bytes=5 * each + 1000)["observation"]) == 5
    with pytest.raises(wire.WireError, match="exceeds"):
        wire.decode(data, max_bytes=4 * each + 1000)


def test_jpeg_image_refuses_what_is_not_an_rgb_uint8_image() -> None:
    with pytest.raises(wire.WireError, match="uint8"):
        wire.jpeg_image(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(wire.WireError, match=r"\(H, W, 3\)"):
        wire.jpeg_image(np.zeros((4, 4), np.uint8))


_GOOD = jpeg_bytes(scene(32, 48), quality=80)


@settings(max_examples=800, deadline=None)
@given(st.data())
def test_mutated_jpegs_decode_to_the_declared_shape_or_are_refused(data) -> None:
    """A valid JPEG truncated, with bytes overwritten or inserted, under true or false shapes."""
    blob = bytearray(_GOOD)
    for _ in range(data.draw(st.integers(0, 6))):
        op = data.draw(st.sampled_from(["set", "insert", "cut"]))
        at = data.draw(st.integers(0, len(blob)))
        if op == "set" and at < len(blob):
            blob[at] = data.draw(st.integers(0, 255))
        elif op == "insert":
            blob[at:at] = data.draw(st.binary(min_size=1, max_size=8))
        else:
            del blob[at:]
    shape = data.draw(
        st.sampled_from([[32, 48, 3], [48, 32, 3], [32, 48, 1]])
        | st.lists(st.integers(-2, 1 << 20), max_size=4)
    )
    try:
        out = wire.decode(message(shape, bytes(blob)))["observation"]["observation.images.top"]
    except wire.WireError:
        return
    assert out.dtype == np.uint8 and list(out.shape) == shape  # decoded means as declared


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=600), st.lists(st.integers(0, 1 << 12), min_size=3, max_size=3))
def test_random_bytes_as_jpeg_never_crash_the_decoder(blob: bytes, shape) -> None:
    with contextlib.suppress(wire.WireError):
        wire.decode(message(shape, b"\xff\xd8\xff" + blob))
