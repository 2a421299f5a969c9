"""The evaluation protocol and harness, end to end on a real (tiny, barely trained) checkpoint."""

import json

import pytest

from edgevla.dataset.plan import Plan, make_plan
from edgevla.eval.protocol import eval_episodes
from edgevla.eval.run import EvalConfig, evaluate
from edgevla.train.config import TrainConfig
from edgevla.train.loop import train


def test_protocol_selects_the_papers_positions():
    plan = make_plan()
    eps = eval_episodes(plan)
    test = [e for e in eps if e.set == "test"]
    val = [e for e in eps if e.set == "val"]
    assert len(test) == 20 and len(val) == 10
    assert {e.planned.cluster for e in val} == set(plan.config.val_clusters)
    assert 6 not in {e.planned.cluster for e in test}
    train_positions = {e.bag_xy for e in plan.episodes if e.split == "train"}
    assert not any(e.planned.bag_xy in train_positions for e in test), "test positions are fresh"
    assert {e.planned.bag_xy for e in val} == {e.bag_xy for e in plan.episodes if e.split == "val"}
    three = eval_episodes(plan, repeats=3)
    assert len(three) == 90 and len({e.seed for e in three}) == 90


def test_start_jitter_moves_each_rollout_by_its_own_seeded_offset():
    import math

    from edgevla.sim.scene import Workspace

    plan, ws = make_plan(), Workspace()
    still = eval_episodes(plan, repeats=3)
    assert all(e.offset == (0.0, 0.0, 0.0) for e in still)
    assert still[0].start_state() == still[0].planned.start_state()
    moved = eval_episodes(plan, repeats=3, jitter_m=0.01, jitter_deg=10, workspace=ws)
    assert [(e.key, e.seed) for e in moved] == [(e.key, e.seed) for e in still]  # same rollouts
    assert moved == eval_episodes(plan, repeats=3, jitter_m=0.01, jitter_deg=10, workspace=ws)
    assert len({e.offset for e in moved}) == len(moved)  # every rollout its own start
    for e in moved:
        dx, dy, dyaw = e.offset
        assert math.hypot(dx, dy) <= 0.01 + 1e-12 and abs(dyaw) <= math.radians(10) + 1e-12
        start = e.start_state()
        assert ws.contains(start.bag_xy)
        assert start.bag_xy == (e.planned.bag_xy[0] + dx, e.planned.bag_xy[1] + dy)
        assert start.bag_yaw == e.planned.bag_yaw + dyaw


def test_bad_protocol_arguments():
    plan = make_plan()
    with pytest.raises(ValueError, match=">= 1"):
        eval_episodes(plan, repeats=0)
    with pytest.raises(ValueError, match="unknown evaluation set"):
        eval_episodes(plan, sets=("train",))


@pytest.mark.slow
def test_eval_runs_sync_and_async_and_writes_results(tiny_recording, tiny_checkpoint, tmp_path):
    import shutil

    plan_path, _ = tiny_recording
    # A checkpoint that learned at 15 fps runs at 15 fps unless told otherwise.
    ckpt = tmp_path / "ckpt15"
    shutil.copytree(tiny_checkpoint, ckpt)
    info = json.loads((ckpt / "train_info.json").read_text())
    (ckpt / "train_info.json").write_text(json.dumps({**info, "fps": 15}))
    config = EvalConfig(checkpoint=ckpt, plan=plan_path, out=tmp_path, modes=("sync", "async"),
                        workers=1, episode_time_s=2.0, latency="0.1")  # fmt: skip
    result = evaluate(config).to_dict()
    assert result["fps"] == 15 and result["modes"]["sync"]["control"]["fps"] == 15
    plan = Plan.load(plan_path)
    for mode in ("sync", "async"):
        s = result["modes"][mode]
        assert s["n_test"] == len(plan.test) and s["n_val"] == len(plan.val)
        assert 0.0 <= s["success_global"] <= 1.0
        assert s["latency_p50_s"] == pytest.approx(0.1)
    # With a 0.1 s virtual latency the synchronous arm idles while it waits; async barely does.
    assert result["modes"]["sync"]["idle_fraction"] > result["modes"]["async"]["idle_fraction"]
    saved = json.loads((tmp_path / "results.json").read_text())
    assert set(saved["episodes"]) == {"sync", "async"}
    assert (tmp_path / "clusters_sync.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "grasps_sync.png").read_bytes()[:4] == b"\x89PNG"
    first = s["first_grasp"]  # every episode is counted once: grasped (on/off target) or not
    n_grasped = sum(1 for r in saved["episodes"]["async"] if r["grasps"])
    assert first["n_on_target"] + first["n_off_target"] == n_grasped
    assert first["n_never_closed"] == s["n_global"] - n_grasped


def test_checkpoint_runs_at_the_rate_it_learned(tiny_recording, tiny_checkpoint, tmp_path, capsys):
    """train writes the dataset's fps into train_info.json; eval defaults to it, says so when
    asked for another rate, and falls back to 30 fps for a folder without it (LeRobot's)."""
    import shutil

    from edgevla.dataset.lerobot.reader import LeRobotDatasetReader
    from edgevla.eval.run import policy_rate
    from edgevla.policies.checkpoint import TRAIN_INFO_FILE, Checkpoint

    _, ds = tiny_recording
    info = Checkpoint.open(tiny_checkpoint).train_info.raw
    assert info["fps"] == LeRobotDatasetReader(ds).fps and info["step"] == 2
    assert policy_rate(tiny_checkpoint, None) == info["fps"]
    said: list[str] = []
    assert policy_rate(tiny_checkpoint, 2 * info["fps"], warn=said.append) == 2 * info["fps"]
    assert "2x speed" in " ".join(said)
    with pytest.raises(ValueError, match="positive"):
        policy_rate(tiny_checkpoint, 0)
    bare = tmp_path / "bare"
    shutil.copytree(tiny_checkpoint, bare)
    (bare / TRAIN_INFO_FILE).unlink()
    assert policy_rate(bare, None) == 30
    (bare / TRAIN_INFO_FILE).write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        policy_rate(bare, None)


def test_image_size_mismatch_is_refused(tiny_recording, tiny_checkpoint, tmp_path):
    from edgevla.eval.parallel import _check_compatible
    from edgevla.policies.runner import TorchPolicyRunner
    from edgevla.sim.env import TeaBagMugEnv
    from edgevla.sim.scene import SceneConfig

    runner = TorchPolicyRunner.from_checkpoint(tiny_checkpoint)
    env = TeaBagMugEnv(SceneConfig(image_height=64, image_width=64), render_images=False)
    with pytest.raises(ValueError, match="expects 96x128 images"):
        _check_compatible(runner, env)
    env = TeaBagMugEnv(SceneConfig(cameras=("top", "gripper")), render_images=False)
    with pytest.raises(ValueError, match="cameras \\['left'\\]"):
        _check_compatible(runner, env)


def test_runner_refuses_missing_camera_and_wrong_shape(tiny_checkpoint):
    import numpy as np

    from edgevla.policies.runner import TorchPolicyRunner

    runner = TorchPolicyRunner.from_checkpoint(tiny_checkpoint)
    obs = {"observation.state": np.zeros(6, np.float32)}
    obs.update(
        {f"observation.images.{c}": np.zeros((96, 128, 3), np.uint8) for c in ("top", "gripper")}
    )
    with pytest.raises(KeyError, match="needs camera 'left'"):
        runner.predict_chunk(obs)
    obs["observation.images.left"] = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(ValueError, match="\\(96, 128, 3\\)"):
        runner.predict_chunk(obs)
    obs["observation.images.left"] = np.zeros((96, 128, 3), np.uint8)
    chunk = runner.predict_chunk(obs)
    assert chunk.shape == (runner.chunk_size, 6) and chunk.dtype == np.float32


def test_select_ranks_late_checkpoints_and_links_the_best(tiny_recording, tmp_path):
    import shutil

    from edgevla.eval.select import SelectConfig, select

    plan_path, ds = tiny_recording
    run = tmp_path / "run"
    train(TrainConfig(policy="act", preset="tiny", dataset=(ds,), out=run, steps=4, batch_size=2,
                      save_freq=2, threads=1, val_batches=1))  # fmt: skip
    # what a killed save leaves, and a folder copied in part: neither is a checkpoint
    shutil.copytree(run / "checkpoints" / "step-000004", run / "checkpoints" / ".step-000006.tmp")
    (run / "checkpoints" / "step-000008").mkdir()
    args = dict(run=run, plan=plan_path, latency="0.05", workers=1, episode_time_s=1.0)
    chosen = select(SelectConfig(**args, from_step=3))
    assert any("step-000008" in n and "not a complete checkpoint" in n for n in chosen.notes)
    result = chosen.to_dict()
    assert [r["step"] for r in result["ranked"]] == [4]  # step 2 skipped
    plan = Plan.load(plan_path)
    outcomes = result["ranked"][0]["outcomes"]  # how each episode ended, summed per kind
    assert sum(outcomes.values()) == len(plan.test) + len(plan.val) and "success" not in outcomes
    assert (run / "best").resolve() == (run / "checkpoints" / "step-000004").resolve()
    assert json.loads((run / "selection.json").read_text())["chosen"]["step"] == 4
    assert (run / "selection.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="lower --from-step"):
        select(SelectConfig(**args, from_step=5))
    # jittered starts reach the evaluation (a deterministic policy repeats a planned start)
    select(SelectConfig(**args, from_step=3, start_jitter_m=0.01, start_jitter_deg=10))
    saved = json.loads((run / "checkpoints" / "step-000004" / "eval" / "results.json").read_text())
    assert saved["perturbation"]["start_jitter_m"] == 0.01
    assert saved["perturbation"]["start_jitter_deg"] == 10


def test_first_grasp_summary_reports_a_one_sided_miss():
    from edgevla.eval.report import first_grasp_summary, fmt_first_grasp

    def grasp(radial, tangential, height=0.0):
        return {
            "radial_m": radial,
            "tangential_m": tangential,
            "height_m": height,
            "bag_lift_m": 0.0,
        }

    results = [
        {"grasps": [grasp(0.005, 0.0)]},
        {"grasps": [grasp(0.01, 0.04, 0.02), grasp(0.0, 0.0)]},  # only the first one counts
        {"grasps": [grasp(-0.01, 0.06, 0.02)]},
        {"grasps": []},
    ]
    s = first_grasp_summary([r["grasps"] for r in results])
    assert (s["n_on_target"], s["n_off_target"], s["n_never_closed"]) == (1, 2, 1)
    assert s["off_tangential_m"] == pytest.approx(0.05) and s["off_radial_m"] == pytest.approx(0.0)
    assert "tangential +5.0" in fmt_first_grasp(s) and "1 never closed" in fmt_first_grasp(s)


def test_evaluation_positions_that_a_dataset_trained_on_are_flagged(tiny_recording, tmp_path):
    """A plan's own Test positions are fresh; a plan whose Test position is a training start of
    the dataset (e.g. the dataset came from a bigger plan with the same seed) is caught."""
    import dataclasses

    from edgevla.eval.protocol import positions_seen_in_training

    plan_path, ds = tiny_recording
    plan = Plan.load(plan_path)
    assert positions_seen_in_training(plan, [str(ds)]) == {"test": [], "val": []}
    trained_on = next(e for e in plan.episodes if e.split == "train")
    leaky = dataclasses.replace(
        plan, test=[dataclasses.replace(plan.test[0], bag_xy=trained_on.bag_xy), *plan.test[1:]]
    )
    assert positions_seen_in_training(leaky, [str(ds)])["test"] == [plan.test[0].index]
    # nothing to compare against: no error, nothing flagged
    assert positions_seen_in_training(leaky, [str(tmp_path / "absent")]) == {"test": [], "val": []}


def test_sampling_noise_is_seeded_per_episode(tiny_smolvla_checkpoint, tiny_checkpoint):
    """SmolVLA's chunk starts from noise: reset(seed) makes it reproducible whichever worker
    runs the episode; noise_scale=0 removes the sampling (ACT has none to scale)."""
    import numpy as np

    from edgevla.policies.runner import TorchPolicyRunner

    runner = TorchPolicyRunner.from_checkpoint(tiny_smolvla_checkpoint)
    h, w = runner.image_hw
    obs = {"observation.state": np.zeros(6, np.float32)}
    obs |= {
        f"observation.images.{c}": np.full((h, w, 3), 90, np.uint8) for c in runner.camera_names
    }
    runner.reset(5)
    first, second = runner.predict_chunk(obs), runner.predict_chunk(obs)
    assert not np.array_equal(first, second)  # a fresh sample per chunk
    other = TorchPolicyRunner.from_checkpoint(tiny_smolvla_checkpoint)
    other.reset(5)
    assert np.array_equal(other.predict_chunk(obs), first)
    other.reset(6)
    assert not np.array_equal(other.predict_chunk(obs), first)
    mean = TorchPolicyRunner.from_checkpoint(tiny_smolvla_checkpoint, noise_scale=0.0)
    mean.reset(5)
    a = mean.predict_chunk(obs)
    mean.reset(6)
    assert np.array_equal(mean.predict_chunk(obs), a)
    with pytest.raises(ValueError, match="predicts deterministically"):
        TorchPolicyRunner.from_checkpoint(tiny_checkpoint, noise_scale=0.5)
    with pytest.raises(ValueError, match=">= 0"):
        TorchPolicyRunner.from_checkpoint(tiny_smolvla_checkpoint, noise_scale=-1.0)


def test_a_bundle_is_evaluated_like_its_checkpoint(tiny_recording, tiny_checkpoint, tmp_path):
    """The same protocol on the exported bundle: same episodes, same outcomes (fp32 parity
    1e-4), the table says which format ran."""
    from edgevla.deploy.export import ExportConfig, export_bundle

    plan_path, _ = tiny_recording
    bundle = tmp_path / "bundle"
    export_bundle(ExportConfig(checkpoint=tiny_checkpoint, out=bundle, parity_observations=1))
    common = dict(plan=plan_path, workers=1, episode_time_s=2.0, latency="0.1", sets=("val",))
    torch_result = evaluate(EvalConfig(checkpoint=tiny_checkpoint, out=tmp_path / "t", **common))
    onnx_result = evaluate(EvalConfig(checkpoint=bundle, out=tmp_path / "o", **common))
    assert onnx_result.format == "ONNX fp32" and torch_result.format == "PyTorch FP32"
    assert onnx_result.table()[0]["format"] == "ONNX fp32"
    t, o = torch_result.modes["async"].episodes, onnx_result.modes["async"].episodes
    assert [e.key for e in t] == [e.key for e in o]
    assert [e.outcome for e in t] == [e.outcome for e in o]
