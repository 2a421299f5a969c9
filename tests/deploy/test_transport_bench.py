"""`edgevla bench transport`: loopback overhead per image size and codec, as a table or JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgevla.cli import main
from edgevla.deploy.transport_bench import (
    ShapeCheckRunner,
    TransportBenchConfig,
    bench_transport,
    parse_size,
)
from edgevla.errors import BadInput


def test_bench_measures_both_codecs_and_jpeg_sends_less() -> None:
    config = TransportBenchConfig(sizes=("96x128",), calls=4, warmup=1, observations=2)
    result = bench_transport(config)
    rows = {r.codec: r for r in result.rows}
    assert set(rows) == {"raw", "jpeg"} and all(r.size == "96x128" for r in result.rows)
    assert rows["jpeg"].request_kb < rows["raw"].request_kb / 4
    assert rows["raw"].request_kb > 3 * 96 * 128 * 3 / 1024  # three raw frames and the framing
    for r in result.rows:
        assert 0 < r.overhead_p50_s <= r.overhead_p99_s <= r.remote_p99_s
        assert r.in_process_p50_s <= r.in_process_p99_s
    assert result.meets_goal is not None  # 96x128 raw was measured


def test_command_prints_one_json_object(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["bench", "transport", "--sizes", "96x128", "--codecs", "raw", "--calls", "2",
            "--warmup", "0", "--observations", "1", "--json"]  # fmt: skip
    assert main(argv) == 0
    data = json.loads(capsys.readouterr().out)
    assert [(r["size"], r["codec"]) for r in data["rows"]] == [("96x128", "raw")]
    assert "transport only" in data["notes"][0]


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [({"sizes": ("96by128",)}, "HEIGHTxWIDTH"), ({"sizes": ("32x32",)}, "height must be"),
     ({"codecs": ("png",)}, "choose from"), ({"calls": 0}, ">= 1"), ({"jpeg_quality": 100}, "1, 95")],
)  # fmt: skip
def test_bad_settings_are_refused(kwargs, says) -> None:
    with pytest.raises(BadInput, match=says):
        TransportBenchConfig(**kwargs)


def test_shape_check_runner_refuses_an_observation_of_another_size() -> None:
    runner = ShapeCheckRunner(parse_size("96x128"), chunk_size=5)
    obs = {"observation.state": np.zeros(6, np.float32)}
    obs |= {
        f"observation.images.{c}": np.zeros((96, 128, 3), np.uint8) for c in runner.camera_names
    }
    assert runner.predict_chunk(obs).shape == (5, 6)
    obs["observation.images.top"] = np.zeros((48, 64, 3), np.uint8)
    with pytest.raises(ValueError, match="observation.images.top"):
        runner.predict_chunk(obs)
