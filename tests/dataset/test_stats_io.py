"""Stats files: meta/stats.json and the flat safetensors layout (LeRobot's normalizer state)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import load_file

from edgevla.dataset.stats import (
    load_stats,
    read_stats_safetensors,
    stats_from_json,
    stats_to_json,
    write_stats_safetensors,
)
from edgevla.errors import BadInput

STATS = {
    "observation.state": {"mean": np.arange(3.0), "std": np.ones(3), "count": np.array([7])},
    "observation.images.top": {"mean": np.full((3, 1, 1), 0.5), "std": np.full((3, 1, 1), 0.2)},
}


def test_safetensors_round_trip_is_float32_and_flat(tmp_path):
    path = write_stats_safetensors(tmp_path / "s.safetensors", STATS)
    assert sorted(load_file(str(path))) == [
        "observation.images.top.mean",
        "observation.images.top.std",
        "observation.state.count",
        "observation.state.mean",
        "observation.state.std",
    ]
    back = read_stats_safetensors(path)
    for feature, per_stat in STATS.items():
        for stat, value in per_stat.items():
            assert back[feature][stat].dtype == np.float32
            np.testing.assert_array_equal(back[feature][stat], value.astype(np.float32))


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "not found"), (b"", "safetensors"), (b"\x08\x00\x00\x00\x00\x00\x00\x00{}", "safe")],
)
def test_bad_safetensors_named(tmp_path, content, message):
    path = tmp_path / "s.safetensors"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(BadInput, match=message) as err:
        read_stats_safetensors(path)
    assert err.value.path == path


def test_truncated_safetensors_named(tmp_path):
    path = write_stats_safetensors(tmp_path / "s.safetensors", STATS)
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(BadInput, match="written completely") as err:
        read_stats_safetensors(path)
    assert err.value.path == path


def test_json_round_trip_and_errors(tmp_path):
    path = tmp_path / "stats.json"
    path.write_text(json.dumps(stats_to_json(STATS)))
    loaded = load_stats(path)
    assert loaded["observation.state"]["mean"].dtype == np.float32
    assert loaded["observation.images.top"]["std"].shape == (3, 1, 1)
    assert stats_from_json(stats_to_json(STATS)).keys() == STATS.keys()
    path.write_text("[]")
    with pytest.raises(BadInput, match="an object"):
        load_stats(path)
    path.write_text(json.dumps({"observation.state": [1, 2]}))
    with pytest.raises(BadInput, match="observation.state") as err:
        load_stats(path)
    assert err.value.path == path and err.value.field == "observation.state"
    with pytest.raises(BadInput, match="not found"):
        load_stats(tmp_path / "none.json")
