"""Export of the SmolVLA-architecture policy as three stages, the Euler loop in the runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from edgevla_runtime.bundle import BundleRunner, Manifest

from edgevla.deploy.export import ExportConfig, export_bundle
from edgevla.deploy.observations import sim_observations


@pytest.fixture(scope="module")
def smolvla_checkpoint(tmp_path_factory) -> Path:
    """A tiny SmolVLA with random weights and made-up statistics (parity needs no training)."""
    from edgevla.policies.smolvla.config import smolvla_tiny_preset
    from edgevla.policies.smolvla.model import SmolVLAPolicy

    torch.manual_seed(0)
    cfg = smolvla_tiny_preset()
    rng = np.random.default_rng(0)
    stats = {
        key: {
            "mean": rng.normal(size=6).astype(np.float32),
            "std": (0.5 + rng.random(6)).astype(np.float32),
        }
        for key in ("observation.state", "action")
    }
    for key in cfg.image_keys:
        stats[key] = {
            "mean": np.full((3, 1, 1), 0.5, np.float32),
            "std": np.full((3, 1, 1), 0.2, np.float32),
        }
    folder = tmp_path_factory.mktemp("smolvla") / "ckpt"
    SmolVLAPolicy(cfg).save_pretrained(folder, stats)
    return folder


@pytest.fixture(scope="module")
def smolvla_bundle(smolvla_checkpoint, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("b") / "smolvla"
    export_bundle(ExportConfig(checkpoint=smolvla_checkpoint, out=out, parity_observations=2))
    return out


def test_three_stages_and_a_sampler(smolvla_bundle: Path) -> None:
    m = Manifest.read(smolvla_bundle)
    assert [s.name for s in m.stages] == ["vision", "prefill", "expert_step"]
    assert m.sampler["stage"] == "expert_step" and m.sampler["num_steps"] == 10
    assert m.task == "Put the tea bag in the mug."
    assert m.parity["max_abs_action_diff"] <= 1e-4


def test_same_noise_gives_the_same_chunk_as_pytorch(smolvla_checkpoint, smolvla_bundle) -> None:
    """With SmolVLA's own sampler (noise N(0, I)), fed the same noise, the bundle's numpy Euler
    loop over the exported expert reproduces PyTorch's sample_actions."""
    from edgevla.policies.runner import TorchPolicyRunner

    torch_runner = TorchPolicyRunner.from_checkpoint(smolvla_checkpoint)
    bundle = BundleRunner(smolvla_bundle)
    cfg = torch_runner.policy.config
    for seed, obs in enumerate(sim_observations(torch_runner, 2, seed=50)):
        torch_runner.reset(seed)
        expected = torch_runner.predict_chunk(obs)
        noise = torch.randn(
            (1, cfg.chunk_size, cfg.max_action_dim), generator=torch.Generator().manual_seed(seed)
        )
        got = bundle.predict_chunk(obs, noise=noise.numpy())
        assert np.abs(got - expected).max() <= 1e-4


def test_bundle_noise_is_reseeded_per_episode(smolvla_bundle: Path) -> None:
    bundle = BundleRunner(smolvla_bundle)
    obs = sim_observations(bundle, 1)[0]
    bundle.reset(3)
    a = bundle.predict_chunk(obs)
    bundle.reset(3)
    assert np.array_equal(a, bundle.predict_chunk(obs))
    bundle.reset(4)
    assert not np.array_equal(a, bundle.predict_chunk(obs))
    mean = BundleRunner(smolvla_bundle, noise_scale=0.0)
    mean.reset(1)
    b = mean.predict_chunk(obs)
    mean.reset(2)
    assert np.array_equal(b, mean.predict_chunk(obs))


def test_sensitivity_measures_each_stage_and_the_expert_step_by_step(
    smolvla_bundle, tmp_path
) -> None:
    import json

    from edgevla.deploy.sensitivity import SensitivityConfig, sensitivity

    result = sensitivity(
        SensitivityConfig(bundle=smolvla_bundle, out=tmp_path, calibration_observations=2,
                          eval_observations=1, calls=1)
    )  # fmt: skip
    pairs = {(r.stage, r.precision) for r in result.rows}
    for stage in ("vision", "prefill", "expert_step"):
        assert {(stage, "fp32"), (stage, "int8-dynamic"), (stage, "int8-static")} <= pairs
    for r in result.rows:
        assert r.stage_latency_s > 0
        assert (r.action_error_max == 0) == (r.precision == "fp32")
    assert set(result.expert_steps) == {"int8-dynamic", "int8-static"}
    assert all(len(v) == 10 and v[-1] > 0 for v in result.expert_steps.values())
    assert Path(result.figure).read_bytes()[:4] == b"\x89PNG"
    saved = json.loads(Path(result.results_file).read_text())
    assert saved["expert_steps"] == result.expert_steps
    # the worst stage opened layer by layer, and its noisiest layers form a valid plan entry
    assert result.layers and saved["layers"][0]["node"] == result.layers[0].node
    assert all(r.noise_added > 0 for r in result.layers)  # only layers that add noise are listed
    from edgevla.deploy.quantize import resolve_plan

    entry = result.keep_fp32_plan()
    stage = result.layers_of["stage"]
    assert resolve_plan(entry, [s.name for s in BundleRunner(smolvla_bundle).manifest.stages])[
        stage
    ].keep_fp32 == tuple(r.node for r in result.layers[:3])


def test_auto_plan_picks_the_fastest_within_budget(smolvla_bundle, tmp_path, monkeypatch) -> None:
    from dataclasses import replace

    # convolution weights chosen by timing could differ between two builds: symmetric here
    monkeypatch.setattr("edgevla.deploy.conv_weights.MARGIN", 0.0)

    from edgevla.deploy.quantize import (
        PRECISIONS,
        QuantizeConfig,
        StagePlan,
        quantize_bundle,
        write_plan_file,
    )
    from edgevla.deploy.stage_files import StageFiles

    files = StageFiles(tmp_path / "stages")
    config = QuantizeConfig(bundle=smolvla_bundle, out=tmp_path / "auto", plan="auto", budget=0.01,
                            calibration_observations=2, eval_observations=2)  # fmt: skip
    result = quantize_bundle(config, stage_files=files)
    assert len(result.candidates) == len(PRECISIONS) ** 3  # every precision for every stage
    fits = [c for c in result.candidates if c["within_budget"]]
    assert fits and result.plan == fits[0]["plan"]
    assert fits[0]["p50_s"] == min(c["p50_s"] for c in fits)
    assert result.action_error_max <= 0.01 + 1e-6  # re-measured on the written bundle
    # the bundle took auto's graphs; so does another plan built beside it (a confirmation's
    # candidate), and a graph found again has the bytes a fresh quantisation gives
    quantised = [s for s, p in result.plan.items() if p != "fp32"]
    assert result.stages_reused == quantised
    other = next(c["plan"] for c in result.candidates if c["plan"] != result.plan
                 and set(c["plan"].values()) >= {"int8-static", "int4-weights"})  # fmt: skip
    plan_file = write_plan_file({k: StagePlan(v) for k, v in other.items()}, tmp_path / "o.yaml")
    again = replace(config, plan=str(plan_file), budget=None, out=tmp_path / "reused")
    reused = quantize_bundle(again, stage_files=files)
    assert reused.stages_reused == [s for s, p in other.items() if p != "fp32"]
    fresh = quantize_bundle(replace(again, out=tmp_path / "fresh"))
    assert fresh.stages_reused == []
    hashes = [
        {s.name: s.sha256 for s in Manifest.read(tmp_path / b).stages} for b in ("reused", "fresh")
    ]
    assert hashes[0] == hashes[1]


def test_plan_file_is_data(smolvla_bundle, tmp_path, capsys) -> None:
    from edgevla.cli import main

    plan = tmp_path / "plan.yaml"
    plan.write_text("vision: int8-static\n'*': fp32\n")
    out = tmp_path / "q"
    assert main(["quantize", "--bundle", str(smolvla_bundle), "--out", str(out), "--plan", str(plan),
                 "--calibration-observations", "1", "--eval-observations", "1", "--json"]) == 0  # fmt: skip
    assert {s.name: s.precision for s in Manifest.read(out).stages} == {
        "vision": "int8-static", "prefill": "fp32", "expert_step": "fp32"}  # fmt: skip
    capsys.readouterr()
    plan.write_text("!!python/object/apply:os.system ['echo pwned']\n")
    assert (
        main(
            [
                "quantize",
                "--bundle",
                str(smolvla_bundle),
                "--out",
                str(tmp_path / "x"),
                "--plan",
                str(plan),
            ]
        )
        == 2
    )
    assert "cannot read the plan file" in capsys.readouterr().err


def test_bench_latency_times_each_stage_of_a_sampling_bundle(smolvla_bundle) -> None:
    from edgevla.deploy.bench import LatencyBenchConfig, bench_latency

    config = LatencyBenchConfig(bundles=(smolvla_bundle,), threads=1, calls=2, warmup=1)
    (row,) = bench_latency(config).rows
    assert set(row.stages_p50_s) == {"vision", "prefill", "expert_step"}
    # a call runs the expert once per Euler step: the floor and FLOPs of a call count them all
    assert row.stage_runs == {"vision": 1, "prefill": 1, "expert_step": 10}
    f = row.stages_flops
    assert row.flops == pytest.approx(f["vision"] + f["prefill"] + 10 * f["expert_step"])
    assert row.unresolved_nodes == 0 and min(f.values()) > 0
    # one call runs the expert num_steps (10) times: more than one expert step alone
    assert row.p50_s > row.stages_p50_s["expert_step"]
