"""Recording through a plan: roundtrip, resume after kill -9, calibration check."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from edgevla_runtime.features import ACTION_KEY, CAMERA_NAMES, STATE_KEY

from edgevla.cli import main
from edgevla.dataset.lerobot.reader import LeRobotDatasetReader
from edgevla.dataset.plan import PlanConfig, make_plan
from edgevla.dataset.record import EPISODE_COLUMNS, CalibrationMismatch, RecordConfig, record
from edgevla.errors import BadInput
from edgevla.sim.env import TeaBagMugEnv

SMALL = PlanConfig(
    n_clusters=3,
    positions_per_cluster=2,
    recovery_per_cluster=1,
    val_clusters=(2,),
    test_per_cluster=1,
)


@pytest.fixture(scope="module")
def small_plan(tmp_path_factory):
    path = tmp_path_factory.mktemp("plan") / "plan.json"
    make_plan(SMALL).save(path)
    return path


@pytest.fixture(scope="module")
def recorded(small_plan, tmp_path_factory):
    out = tmp_path_factory.mktemp("ds") / "teabag"
    result = record(RecordConfig(plan=small_plan, out=out))
    return out, result


def test_records_every_planned_episode(recorded):
    out, result = recorded
    assert result.complete and result.to_dict()["episodes_given_up"] == []
    reader = LeRobotDatasetReader(out)
    plan_eps = make_plan(SMALL).episodes
    assert reader.num_episodes == len(plan_eps) == 8  # 2 train clusters x (2 + 1 recovery) + 2 val
    eps = reader.episodes
    assert {e["split"] for e in eps} == {"train", "val"}
    assert sum(e["is_recovery"] for e in eps) == 2
    for e, planned in zip(eps, plan_eps, strict=True):
        assert e["cluster_id"] == planned.cluster
        assert e["start_pose"][:2] == pytest.approx(list(planned.bag_xy))
    assert set(reader.extra_episode_columns) >= set(EPISODE_COLUMNS)


def test_recorded_frames_match_a_fresh_rollout(recorded):
    """Same start and seed -> the same trajectory; video within codec tolerance."""
    out, _ = recorded
    reader = LeRobotDatasetReader(out)
    ep = reader.episodes[0]
    planned = make_plan(SMALL).episodes[0]
    from edgevla.dataset.record import record_episode

    env = TeaBagMugEnv()
    frames, ok = record_episode(env, planned, int(ep["seed"]))
    assert ok
    f = reader.frames(0)
    np.testing.assert_allclose(f.state, frames[STATE_KEY])
    np.testing.assert_allclose(f.action, frames[ACTION_KEY])
    for cam in CAMERA_NAMES:
        video = reader.video(0, cam).astype(float)
        assert video.shape == frames[f"observation.images.{cam}"].shape
        assert np.abs(video - frames[f"observation.images.{cam}"]).mean() < 6.0


def test_only_policy_visible_features(recorded):
    out, _ = recorded
    info = json.loads((out / "meta" / "info.json").read_text())
    robot = {k for k in info["features"] if k.startswith("observation") or k == ACTION_KEY}
    assert robot == {STATE_KEY, ACTION_KEY} | {f"observation.images.{c}" for c in CAMERA_NAMES}


def test_existing_dataset_is_not_overwritten(recorded, small_plan):
    out, _ = recorded
    with pytest.raises(FileExistsError, match="--overwrite.*--resume"):
        record(RecordConfig(plan=small_plan, out=out))


def test_resume_with_other_scene_is_refused(recorded, small_plan):
    out, _ = recorded
    with pytest.raises(CalibrationMismatch) as refused:
        record(RecordConfig(plan=small_plan, out=out, resume=True, height=64, width=64))
    said = str(refused.value)  # one line, each field by its flag
    assert "--height (scene.image_height): recorded 96, now 64; --width" in said
    assert "\n" not in said


@pytest.mark.slow
def test_kill_9_then_resume_finishes_the_plan(small_plan, tmp_path):
    out = tmp_path / "killed"
    cmd = [
        sys.executable,
        "-m",
        "edgevla.cli",
        "record",
        "--plan",
        str(small_plan),
        "--out",
        str(out),
        "--json",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    staged = out / ".edgevla_staging" / "episodes"
    deadline = time.time() + 120
    while time.time() < deadline and (not staged.is_dir() or len(list(staged.iterdir())) < 2):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(list(staged.iterdir()))
    assert 2 <= done_before < 8, "the kill should land mid-recording"
    assert main(["record", "--plan", str(small_plan), "--out", str(out), "--resume", "--json"]) == 0
    reader = LeRobotDatasetReader(out)
    assert reader.num_episodes == 8
    assert [e["episode_index"] for e in reader.episodes] == list(range(8))
    for e in range(8):
        assert len(reader.video(e, "top")) == len(reader.frames(e))


def test_saved_calibration_compares_equal_after_a_json_roundtrip(tmp_path):
    """The calibration saved with a dataset comes back from JSON (lists, not tuples): a resume
    with the same plan must find no difference, also for a dataset recorded before
    `recovery_starts` existed, resumed with its own (older) plan file."""
    import json as _json

    from edgevla.dataset.plan import Plan, make_plan
    from edgevla.dataset.record import _as_recorded_today, _calibration, _diff
    from edgevla.sim.expert import ActionNoise
    from edgevla.sim.scene import SceneConfig

    plan, quiet, noisy = make_plan(), ActionNoise(), ActionNoise(std_rad=0.04)
    saved = _json.loads(_json.dumps(_calibration(SceneConfig(), plan, noisy)))
    assert _diff(_as_recorded_today(saved), _calibration(SceneConfig(), plan, noisy)) == []
    assert _diff(_as_recorded_today(saved), _calibration(SceneConfig(), plan, quiet)) == [
        "--action-noise-rad (expert_noise.std_rad): recorded 0.04, now 0.0"
    ]
    path = tmp_path / "old_plan.json"
    plan.save(path)
    raw = _json.loads(path.read_text())
    del raw["config"]["recovery_starts"]
    path.write_text(_json.dumps(raw))
    old_saved = _calibration(SceneConfig(), plan, quiet)
    del old_saved["plan_config"]["recovery_starts"]
    del old_saved["expert_noise"]  # recorded before the expert could be disturbed
    now = _calibration(SceneConfig(), Plan.load(path), quiet)
    assert _diff(_as_recorded_today(old_saved), now) == []


def test_noisy_recording_keeps_clean_labels_and_leaves_the_path():
    """With action noise the arm is pushed off the expert's path (states differ from a clean
    rollout of the same start) but the recorded actions stay the expert's own smooth targets,
    and the expert still succeeds."""
    from edgevla.dataset.record import record_episode
    from edgevla.sim.expert import ActionNoise

    planned = make_plan(SMALL).episodes[0]
    env = TeaBagMugEnv()
    clean, ok_clean = record_episode(env, planned, 5)
    noisy, ok_noisy = record_episode(env, planned, 5, ActionNoise(std_rad=0.04))
    assert ok_clean and ok_noisy
    n = min(len(clean[STATE_KEY]), len(noisy[STATE_KEY]))
    drift = np.abs(noisy[STATE_KEY][:n, :5] - clean[STATE_KEY][:n, :5]).max(axis=1)
    assert np.median(drift) > 0.01  # the noise moved the arm (std 0.04 rad per joint)
    speed = np.abs(np.diff(noisy[ACTION_KEY][:, :5], axis=0)).max() * env.scene.fps
    assert speed <= 3.0 + 1e-3  # labels are the expert's rate-limited targets, not noisy ones
    first = noisy[ACTION_KEY][: n // 3]
    np.testing.assert_allclose(first, clean[ACTION_KEY][: n // 3], atol=1e-6)  # plan is open loop


@pytest.mark.parametrize("flag", ["--limit", "--max-attempts"])
def test_zero_episodes_or_attempts_are_refused_before_anything_is_created(
    flag, small_plan, tmp_path, capsys
):
    out = tmp_path / "ds"
    argv = ["record", "--plan", str(small_plan), "--out", str(out), flag, "0", "--json"]
    assert main(argv) == 2  # refused while parsing, as one line
    err = capsys.readouterr().err.strip()
    assert flag in err and len(err.splitlines()) == 1, err
    assert not out.exists()
    with pytest.raises(BadInput, match=flag):
        RecordConfig(plan=small_plan, out=out, **{flag[2:].replace("-", "_"): 0})


def test_empty_plan_is_refused_before_anything_is_created(small_plan, tmp_path):
    raw = json.loads(small_plan.read_text())
    raw["episodes"] = []
    empty = tmp_path / "empty_plan.json"
    empty.write_text(json.dumps(raw))
    out = tmp_path / "ds"
    with pytest.raises(BadInput, match="no episodes to record"):
        record(RecordConfig(plan=empty, out=out))
    assert not out.exists()
    assert main(["record", "--plan", str(empty), "--out", str(out)]) == 2


def test_resume_of_nothing_names_the_flag(small_plan, tmp_path):
    with pytest.raises(BadInput, match="no dataset to resume.*without --resume"):
        record(RecordConfig(plan=small_plan, out=tmp_path / "nothing", resume=True))
