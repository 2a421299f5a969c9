"""Export of the shipped ACT to a bundle: stages, manifest, parity with PyTorch, refusals.

Real parts only: the shipped checkpoint, torch.onnx, ONNX Runtime, the simulator's frames.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from edgevla_runtime.bundle import MANIFEST, BundleError, BundleRunner, Manifest, sha256_of
from edgevla_runtime.control import ControlConfig, run_episode

from edgevla.cli import main
from edgevla.deploy.export import ExportConfig, ParityError, export_bundle
from edgevla.deploy.observations import sim_observations

from .conftest import ASSET


def test_bundle_holds_stages_manifest_and_checksums(bundle: Path) -> None:
    m = Manifest.read(bundle)
    assert [s.name for s in m.stages] == ["vision", "transformer"]
    assert sorted(p.name for p in bundle.iterdir()) == sorted(
        [MANIFEST, "vision.onnx", "transformer.onnx"]
    )
    for stage in m.stages:
        assert stage.sha256 == sha256_of(bundle / stage.file)
        assert stage.precision == "fp32"
    assert m.camera_names == ("top", "gripper", "left") and m.image_hw == (96, 128)
    assert m.chunk_size == 100 and m.action_dim == 6 and m.fps == 60
    assert m.parity["max_abs_action_diff"] <= 1e-4
    assert set(m.normalization) >= {"observation.state", "action", "observation.images.top"}


def test_bundle_matches_pytorch_on_fresh_observations(bundle: Path, torch_runner) -> None:
    runner = BundleRunner(bundle)
    for obs in sim_observations(torch_runner, 3, seed=100):
        diff = np.abs(runner.predict_chunk(obs) - torch_runner.predict_chunk(obs))
        assert diff.max() <= 1e-4


def test_stage_sessions_stop_spinning_after_each_run(bundle: Path, torch_runner) -> None:
    """Each stage has its own thread pool; threads left spinning after a run compete with the
    next stage's (and the control loop's) for the cores, so every session stops them, and the
    chunk is the same at any thread count."""
    obs = sim_observations(torch_runner, 1, seed=3)[0]
    one, two = BundleRunner(bundle, threads=1), BundleRunner(bundle, threads=2)
    for _, session in two.sessions:
        options = session.get_session_options()
        assert options.intra_op_num_threads == 2
        assert options.get_session_config_entry("session.force_spinning_stop") == "1"
    np.testing.assert_allclose(two.predict_chunk(obs), one.predict_chunk(obs), atol=1e-5)


def test_bundle_drives_the_control_loop(bundle: Path) -> None:
    from edgevla.sim.env import TeaBagMugEnv

    env = TeaBagMugEnv()
    cfg = ControlConfig(
        mode="async", chunk_size_threshold=0.5, latency="0.05", fps=30, max_steps=12
    )
    result = run_episode(env, BundleRunner(bundle), cfg, seed=0)
    env.close()
    assert result.inference_count >= 1 and len(result.queue_sizes) == 12


def test_single_graph_layout_has_parity_too(tmp_path: Path) -> None:
    result = export_bundle(
        ExportConfig(
            checkpoint=ASSET, out=tmp_path / "single", layout="single", parity_observations=1
        )
    )
    assert [s["name"] for s in result.stages] == ["policy"] and result.parity_max_abs <= 1e-4


def test_failed_parity_leaves_nothing_behind(tmp_path: Path, capsys) -> None:
    out = tmp_path / "b"
    with pytest.raises(ParityError, match="tolerance"):
        export_bundle(
            ExportConfig(checkpoint=ASSET, out=out, tolerance=1e-12, parity_observations=1)
        )
    assert list(tmp_path.iterdir()) == []
    code = main(["export", "--checkpoint", str(ASSET), "--out", str(out), "--tolerance", "1e-12",
                 "--parity-observations", "1"])  # fmt: skip
    assert code == 1 and list(tmp_path.iterdir()) == []
    assert "nothing was written" in capsys.readouterr().err.lower()


def test_existing_bundle_is_refused_before_work(bundle: Path, capsys) -> None:
    assert main(["export", "--checkpoint", str(ASSET), "--out", str(bundle)]) == 2
    err = capsys.readouterr().err.strip()
    assert "already exists; pass --overwrite" in err and len(err.splitlines()) == 1


def copy_of(bundle: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(bundle, tmp_path / "copy"))


def test_truncated_stage_file_is_refused_naming_it(bundle: Path, tmp_path: Path) -> None:
    b = copy_of(bundle, tmp_path)
    data = (b / "vision.onnx").read_bytes()
    (b / "vision.onnx").write_bytes(data[: len(data) // 2])
    with pytest.raises(BundleError, match=r"vision\.onnx: sha256 differs"):
        BundleRunner(b)
    with pytest.raises(BundleError, match=r"vision\.onnx: ONNX Runtime cannot load it"):
        BundleRunner(b, verify=False)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m.pop("stages"), "field 'stages' is missing"),
        (lambda m: m.update(format_version=99), "format_version 99"),
        (lambda m: m.update(chunk_size="100"), "field 'chunk_size' has the wrong type"),
        (lambda m: m["normalization"]["features"]["action"].update(std=[float("nan")] * 6), "std missing or not finite"),
    ],
)  # fmt: skip
def test_malformed_manifest_is_refused_naming_the_field(bundle, tmp_path, edit, message) -> None:
    b = copy_of(bundle, tmp_path)
    raw = json.loads((b / MANIFEST).read_text())
    edit(raw)
    (b / MANIFEST).write_text(json.dumps(raw))
    with pytest.raises(BundleError, match=message):
        BundleRunner(b)


def test_folder_without_manifest_is_not_a_bundle(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="is not a bundle"):
        BundleRunner(tmp_path)


def test_a_lerobot_written_act_checkpoint_exports_with_parity(tmp_path: Path) -> None:
    """The LeRobot 0.6.1 fixture (its processor files hold the statistics) exports too."""
    lerobot = (
        Path(__file__).resolve().parents[3] / "shared" / "reference" / "lerobot-act-checkpoint"
    )
    if not lerobot.is_dir():
        pytest.skip("../shared/reference is not beside this checkout")
    result = export_bundle(
        ExportConfig(checkpoint=lerobot, out=tmp_path / "b", parity_observations=2)
    )
    assert result.parity_max_abs <= 1e-4 and [s["name"] for s in result.stages] == [
        "vision",
        "transformer",
    ]
