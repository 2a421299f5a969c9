"""The per-layer error table: which layers of a quantised stage add the most noise, and keeping
them in fp32 pays."""

from __future__ import annotations

import math
import shutil

from edgevla_runtime.bundle import BundleRunner

from edgevla.deploy.layers import QUANTISABLE, layer_errors
from edgevla.deploy.observations import sim_observations
from edgevla.deploy.quantize import StagePlan, action_error, calibration_feeds, quantize_stage


def test_an_unquantised_graph_adds_no_noise(bundle) -> None:
    runner = BundleRunner(bundle)
    feeds = calibration_feeds(runner, sim_observations(runner, 1, seed=5))["vision"]
    rows = layer_errors(bundle / "vision.onnx", bundle / "vision.onnx", feeds)
    assert rows and all(math.isinf(r.sqnr_db) and r.noise_added == 0 for r in rows)


def test_keeping_the_noisiest_layers_fp32_lowers_the_error(bundle, tmp_path) -> None:
    fp32 = BundleRunner(bundle)
    held_out = sim_observations(fp32, 4, seed=2000)
    feeds = calibration_feeds(fp32, held_out)["vision"]

    def variant(name: str, plan: StagePlan):
        folder = tmp_path / name
        shutil.copytree(bundle, folder)
        quantize_stage(bundle / "vision.onnx", folder / "vision.onnx", plan, [], "minmax")
        return folder

    quantised = variant("all", StagePlan("int8-dynamic"))
    rows = layer_errors(bundle / "vision.onnx", quantised / "vision.onnx", feeds)
    assert {r.op_type for r in rows} <= set(QUANTISABLE) and len(rows) > 3
    assert [r.noise_added for r in rows] == sorted((r.noise_added for r in rows), reverse=True)
    assert all(0 < r.sqnr_db < math.inf for r in rows)
    kept = variant("kept", StagePlan("int8-dynamic", keep_fp32=tuple(r.node for r in rows[:3])))
    _, err_all = action_error(fp32, BundleRunner(quantised, verify=False), held_out)
    _, err_kept = action_error(fp32, BundleRunner(kept, verify=False), held_out)
    assert err_kept < err_all
