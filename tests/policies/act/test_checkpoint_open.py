"""Checkpoint.open: one typed read of a folder, LeRobot's processor files both ways, and a
BadInput naming the file and field for every malformed input."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from edgevla_runtime.features import ACTION_KEY
from safetensors.numpy import load_file as load_numpy
from safetensors.numpy import save_file as save_numpy
from safetensors.torch import load_file

from edgevla.errors import BadInput
from edgevla.policies.act.config import (
    ACTConfig,
    act_default_preset,
    act_edge_preset,
    default_features,
)
from edgevla.policies.act.model import ACTPolicy
from edgevla.policies.checkpoint import (
    NORMALIZER_STATE_FILE,
    POSTPROCESSOR_FILE,
    PREPROCESSOR_FILE,
    STATS_FILE,
    UNNORMALIZER_STATE_FILE,
    Checkpoint,
    LeRobotCompatibilityWarning,
    write_lerobot_processors,
)
from edgevla.policies.runner import TorchPolicyRunner

ACT_EDGE = Path(__file__).resolve().parents[3] / "assets" / "act_edge"
ACT_EDGE_GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "act_edge_golden.safetensors"


def _stats(state_dim: int = 3, action_dim: int = 4) -> dict[str, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    image = {"mean": rng.random((3, 1, 1)), "std": rng.random((3, 1, 1)) + 0.1}
    return {
        "observation.state": {"mean": rng.random(state_dim), "std": rng.random(state_dim) + 0.1},
        "observation.images.top": image,
        "observation.images.gripper": image,
        "action": {"mean": rng.random(action_dim), "std": rng.random(action_dim) + 0.1},
        "timestamp": {"mean": np.zeros(1), "count": np.array([10])},  # dataset extras are kept
    }


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    """A small edgevla ACT checkpoint (half-width trunk) with stats and train_info."""
    inputs, outputs = default_features(("top", "gripper"), (32, 40), state_dim=3, action_dim=4)
    config = ACTConfig(
        input_features=inputs, output_features=outputs, chunk_size=8, n_action_steps=8,
        vision_backbone="resnet18-w32", dim_model=32, n_heads=4, dim_feedforward=64,
        n_encoder_layers=1, n_vae_encoder_layers=1, latent_dim=8,
    )  # fmt: skip
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("ckpt") / "ckpt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LeRobotCompatibilityWarning)
        ACTPolicy(config).save_pretrained(folder, _stats())
    info = {"policy": "act", "preset": "tiny", "fps": 30, "datasets": ["d1"], "step": 5}
    (folder / "train_info.json").write_text(json.dumps(info))
    return folder


@pytest.fixture
def copy(saved, tmp_path) -> Path:
    folder = tmp_path / "ckpt"
    shutil.copytree(saved, folder)
    return folder


# -------------------------------------------------------------------- the typed object
def test_open_reads_everything_once(saved):
    ckpt = Checkpoint.open(saved)
    assert ckpt.policy_type == "act" and ckpt.config.chunk_size == 8
    assert ckpt.stats_file == saved / STATS_FILE
    assert ckpt.stats["observation.state"]["std"].dtype == np.float32
    assert ckpt.fps == 30.0 and ckpt.train_info.datasets == ("d1",)
    assert ckpt.train_info.step == 5 and ckpt.train_info.get("preset") == "tiny"
    policy = ckpt.load_policy()
    assert isinstance(policy, ACTPolicy) and not policy.training
    runner = TorchPolicyRunner.from_checkpoint(ckpt)
    assert runner.camera_names == ("top", "gripper") and runner.image_hw == (32, 40)
    assert runner.action_dim == 4 and runner.chunk_size == 8


def test_act_edge_asset_loads_and_gives_the_same_actions():
    """The shipped checkpoint, against actions recorded with the code before Checkpoint.open."""
    if not ACT_EDGE.is_dir():
        pytest.skip("assets/act_edge not present")
    ckpt = Checkpoint.open(ACT_EDGE)
    assert ckpt.policy_type == "act" and ckpt.fps == 60.0
    assert ckpt.config.lerobot_incompatibilities()  # resnet18-w32: edgevla only
    runner = TorchPolicyRunner.from_checkpoint(ckpt)
    golden = load_numpy(str(ACT_EDGE_GOLDEN))
    expected = golden.pop("output.chunk")
    chunk = runner.predict_chunk(golden)
    assert chunk.shape == expected.shape == (100, 6)
    np.testing.assert_allclose(chunk, expected, rtol=0, atol=1e-5)


# -------------------------------------------------------------------- LeRobot -> edgevla
def test_lerobot_checkpoint_runs_end_to_end_with_its_processor_stats(act_checkpoint):
    """golden_e2e: raw inputs -> LeRobot preprocessor -> policy -> postprocessor (LeRobot 0.6.1)."""
    ckpt = Checkpoint.open(act_checkpoint)
    assert ckpt.stats_file == act_checkpoint / NORMALIZER_STATE_FILE
    policy, normalizer = ckpt.load_policy(), ckpt.normalizer()
    golden = load_file(str(act_checkpoint / "golden_e2e.safetensors"))
    inputs = {k.removeprefix("input."): v for k, v in golden.items() if k.startswith("input.")}
    chunk = policy.predict_action_chunk(normalizer.normalize(inputs))
    actions = normalizer.unnormalize({ACTION_KEY: chunk})[ACTION_KEY]
    expected = golden["output.action_chunk"]
    assert actions.shape == expected.shape == (2, 20, 6)
    assert (actions - expected).abs().max().item() < 1e-4


def test_edgevla_eval_runner_accepts_a_lerobot_checkpoint(act_checkpoint):
    runner = TorchPolicyRunner.from_checkpoint(act_checkpoint)
    obs = {"observation.state": np.zeros(6, np.float32)}
    for cam in runner.camera_names:
        obs[f"observation.images.{cam}"] = np.full((96, 128, 3), 128, np.uint8)
    assert runner.predict_chunk(obs).shape == (20, 6)


# -------------------------------------------------------------------- edgevla -> LeRobot
def test_our_processor_files_are_the_ones_lerobot_writes(act_checkpoint, tmp_path):
    ckpt = Checkpoint.open(act_checkpoint)
    write_lerobot_processors(tmp_path, ckpt.config, ckpt.stats)
    for name in (PREPROCESSOR_FILE, POSTPROCESSOR_FILE):
        ours = json.loads((tmp_path / name).read_text())
        assert ours == json.loads((act_checkpoint / name).read_text()), name
    for name in (NORMALIZER_STATE_FILE, UNNORMALIZER_STATE_FILE):
        ours, theirs = load_numpy(str(tmp_path / name)), load_numpy(str(act_checkpoint / name))
        assert ours.keys() == theirs.keys(), name
        for key in theirs:
            assert ours[key].dtype == np.float32
            np.testing.assert_array_equal(ours[key], theirs[key], err_msg=key)


def test_saved_checkpoint_carries_processor_files_with_our_stats(saved, tmp_path):
    folder = tmp_path / "lerobot_view"
    shutil.copytree(saved, folder)
    (folder / STATS_FILE).unlink()  # what a LeRobot user reads: the processor files only
    ckpt = Checkpoint.open(folder)
    assert ckpt.stats_file == folder / NORMALIZER_STATE_FILE
    theirs = load_numpy(str(folder / UNNORMALIZER_STATE_FILE))
    assert "timestamp.mean" not in theirs  # only the config's features cross over
    expected = _stats()
    for feature in ckpt.config.all_features:
        for stat, value in expected[feature].items():
            np.testing.assert_array_equal(ckpt.stats[feature][stat], value.astype(np.float32))
            np.testing.assert_array_equal(theirs[f"{feature}.{stat}"], value.astype(np.float32))
    pre = json.loads((folder / PREPROCESSOR_FILE).read_text())
    normalizer = pre["steps"][3]
    assert normalizer["registry_name"] == "normalizer_processor"
    assert list(normalizer["config"]["features"]) == list(ckpt.config.all_features)


def test_only_a_trunk_lerobot_cannot_build_warns(tiny_config, tmp_path):
    stats = _stats()
    with pytest.warns(LeRobotCompatibilityWarning, match="resnet18-w32"):
        ACTPolicy(tiny_config(vision_backbone="resnet18-w32")).save_pretrained(
            tmp_path / "edge", stats
        )
    with warnings.catch_warnings():
        warnings.simplefilter("error", LeRobotCompatibilityWarning)
        ACTPolicy(tiny_config()).save_pretrained(tmp_path / "default", stats)
    assert act_default_preset().lerobot_incompatibilities() == []
    assert act_edge_preset().lerobot_incompatibilities()


# -------------------------------------------------------------------- malformed inputs
def _write(name: str, content: bytes | str):
    def change(folder: Path) -> None:
        path = folder / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)

    return change


def _truncate(name: str):
    def change(folder: Path) -> None:
        path = folder / name
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])

    return change


def _remove(name: str):
    return lambda folder: (folder / name).unlink()


def _edit_json(name: str, **changes):
    def change(folder: Path) -> None:
        obj = json.loads((folder / name).read_text())
        obj.update(changes)
        (folder / name).write_text(json.dumps(obj))

    return change


def _edit_stats(key: str, value: np.ndarray | None):
    def change(folder: Path) -> None:
        flat = load_numpy(str(folder / STATS_FILE))
        if value is None:
            flat.pop(key)
        else:
            flat[key] = value
        save_numpy(flat, str(folder / STATS_FILE))

    return change


MALFORMED = {
    "config missing": (_remove("config.json"), "config.json", "not found"),
    "config empty": (_write("config.json", ""), "config.json", "empty"),
    "config truncated": (_truncate("config.json"), "config.json", "not valid JSON"),
    "config garbage": (_write("config.json", b"\x89PNG\x00\xff"), "config.json", "UTF-8"),
    "config a list": (_write("config.json", "[1, 2]"), "config.json", "an object"),
    "config no type": (_edit_json("config.json", type=None), "config.json (type)", "None"),
    "config bad field": (_edit_json("config.json", dim_model="wide"), "config.json", "act config"),
    "config bad features": (
        _edit_json("config.json", input_features={"observation.state": [6]}),
        "config.json",
        "act config",
    ),
    "weights missing": (_remove("model.safetensors"), "model.safetensors", "not found"),
    "weights truncated": (_truncate("model.safetensors"), "model.safetensors", "safetensors"),
    "weights garbage": (_write("model.safetensors", b"garbage"), "model.safetensors", "safetens"),
    "stats empty": (_write(STATS_FILE, b""), STATS_FILE, "safetensors"),
    "stats truncated": (_truncate(STATS_FILE), STATS_FILE, "safetensors"),
    "stats lack a feature": (
        _edit_stats("action.std", None),
        f"{STATS_FILE} (action.std)",
        "lack 'std'",
    ),
    "stats wrong shape": (
        _edit_stats("observation.state.mean", np.zeros(7, np.float32)),
        f"{STATS_FILE} (observation.state.mean)",
        r"shape \(7,\)",
    ),
    "stats image shape": (
        _edit_stats("observation.images.top.std", np.ones((1, 1, 3), np.float32)),
        f"{STATS_FILE} (observation.images.top.std)",
        "expected",
    ),
    "stats not finite": (
        _edit_stats("action.std", np.full(4, np.nan, np.float32)),
        f"{STATS_FILE} (action.std)",
        "NaN",
    ),
    "train_info garbage": (_write("train_info.json", "{fps: 30"), "train_info.json", "JSON"),
    "train_info a list": (_write("train_info.json", "[30]"), "train_info.json", "an object"),
    "train_info fps text": (
        _edit_json("train_info.json", fps="30"),
        "train_info.json (fps)",
        "positive number",
    ),
    "train_info datasets": (
        _edit_json("train_info.json", datasets="d1"),
        "train_info.json (datasets)",
        "list",
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_input_is_named(copy, case):
    change, where, what = MALFORMED[case]
    change(copy)
    with pytest.raises(BadInput, match=what) as err:
        Checkpoint.open(copy)
    assert str(err.value).startswith(str(copy / where)), str(err.value)


def test_stats_missing_feature_named(copy):
    flat = {k: v for k, v in load_numpy(str(copy / STATS_FILE)).items() if "images.top" not in k}
    save_numpy(flat, str(copy / STATS_FILE))
    with pytest.raises(BadInput, match="no statistics for 'observation.images.top'") as err:
        Checkpoint.open(copy)
    assert err.value.field == "observation.images.top"


MALFORMED_PROCESSORS = {
    "steps not a list": (
        _edit_json(PREPROCESSOR_FILE, steps={"a": 1}),
        f"{PREPROCESSOR_FILE} (steps)",
        "list",
    ),
    "no normalizer": (
        _edit_json(PREPROCESSOR_FILE, steps=[]),
        f"{PREPROCESSOR_FILE} (steps)",
        "no",
    ),
    "state file gone": (_remove(NORMALIZER_STATE_FILE), NORMALIZER_STATE_FILE, "not found"),
    "state file garbage": (_write(NORMALIZER_STATE_FILE, b"{}"), NORMALIZER_STATE_FILE, "safet"),
    "post garbage": (_write(POSTPROCESSOR_FILE, "nope"), POSTPROCESSOR_FILE, "JSON"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED_PROCESSORS))
def test_malformed_lerobot_processor_files_are_named(copy, case):
    (copy / STATS_FILE).unlink()
    change, where, what = MALFORMED_PROCESSORS[case]
    change(copy)
    with pytest.raises(BadInput, match=what) as err:
        Checkpoint.open(copy)
    assert str(err.value).startswith(str(copy / where)), str(err.value)


def test_processor_norm_map_disagreeing_with_config_is_refused(copy):
    (copy / STATS_FILE).unlink()
    pre = json.loads((copy / PREPROCESSOR_FILE).read_text())
    pre["steps"][3]["config"]["norm_map"]["STATE"] = "MIN_MAX"
    (copy / PREPROCESSOR_FILE).write_text(json.dumps(pre))
    with pytest.raises(BadInput, match="MIN_MAX") as err:
        Checkpoint.open(copy)
    assert err.value.field == "norm_map"


def test_no_stats_is_explained_when_needed(copy):
    for name in (STATS_FILE, PREPROCESSOR_FILE, POSTPROCESSOR_FILE):
        (copy / name).unlink()
    ckpt = Checkpoint.open(copy)
    assert ckpt.stats is None and ckpt.stats_file is None
    with pytest.raises(BadInput, match="no normalisation statistics"):
        TorchPolicyRunner.from_checkpoint(copy)


def test_other_type_and_missing_folder(copy, tmp_path):
    with pytest.raises(BadInput, match="'smolvla' policy was requested"):
        Checkpoint.open(copy, expected_type="smolvla")
    with pytest.raises(BadInput, match="no such folder"):
        Checkpoint.open(tmp_path / "nowhere")


def test_a_training_run_folder_points_to_its_checkpoints(tmp_path: Path) -> None:
    """`eval --checkpoint runs/act` right after `train --out runs/act`: say which folder to give."""
    run = tmp_path / "run"
    (run / "checkpoints" / "step-000010").mkdir(parents=True)
    with pytest.raises(BadInput, match="is a training run, not a checkpoint") as refused:
        Checkpoint.open(run)
    assert f"{run / 'best'} (after `edgevla select --run {run}`)" in str(refused.value)
    assert f"{run / 'checkpoints'}/step-*" in str(refused.value)
    (run / "best").mkdir()
    with pytest.raises(BadInput, match="give .*best or one of"):
        Checkpoint.open(run)
