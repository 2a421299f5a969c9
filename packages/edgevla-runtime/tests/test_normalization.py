"""The image lookup table the bundle runner normalises frames with equals the arithmetic."""

from __future__ import annotations

import numpy as np
import pytest
from edgevla_runtime.bundle import FeatureNorm, Normalization

KEY = "observation.images.top"


def _arithmetic(norm: Normalization, img: np.ndarray) -> np.ndarray:
    return norm.normalize(KEY, img.transpose(2, 0, 1).astype(np.float32) / 255.0)


@pytest.mark.parametrize("feature", [
    FeatureNorm("MEAN_STD", {"mean": np.array([0.4, 0.5, 0.3], np.float32).reshape(3, 1, 1),
                             "std": np.array([0.2, 0.25, 0.1], np.float32).reshape(3, 1, 1)}),
    FeatureNorm("MIN_MAX", {"min": np.zeros((3, 1, 1), np.float32),
                            "max": np.array([0.9, 1.0, 0.8], np.float32).reshape(3, 1, 1)}),
    FeatureNorm("IDENTITY"),
])  # fmt: skip
def test_lookup_equals_the_arithmetic_bit_for_bit(feature) -> None:
    norm = Normalization({KEY: feature}, eps=1e-8)
    img = np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    img[0, :3] = [[0, 0, 0], [255, 255, 255], [128, 1, 254]]  # the ends of the range
    table = norm.image_table(KEY)
    assert table.shape == (3, 256) and table.dtype == np.float32
    looked_up = np.stack([table[c][img[:, :, c]] for c in range(3)])
    np.testing.assert_array_equal(looked_up, _arithmetic(norm, img))


def test_statistics_not_per_channel_have_no_table() -> None:
    """A (3,) mean would broadcast over the image width: no table, the runner does the maths."""
    norm = Normalization({KEY: FeatureNorm("MEAN_STD", {"mean": np.full(3, 0.5, np.float32),
                                                         "std": np.full(3, 0.2, np.float32)})},
                         eps=1e-8)  # fmt: skip
    assert norm.image_table(KEY) is None
