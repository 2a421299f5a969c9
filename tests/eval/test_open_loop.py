"""Open-loop check: chunks predicted from recorded frames against the recorded actions."""

import json
import math

import numpy as np
import pytest
from edgevla_runtime.features import CAMERA_NAMES, STATE_KEY

from edgevla.dataset.lerobot.reader import LeRobotDatasetReader
from edgevla.eval.open_loop import (
    OpenLoopConfig,
    anchor_frames,
    chunk_error,
    grasp_onset,
    open_loop,
    pick_episodes,
)
from edgevla.sim.outcome import CLOSING_GAP_M, OPEN_GAP_M
from edgevla.sim.scene import gripper_angle_for_gap


def _actions_with_grasp(n=100, open_at=20, close_at=60):
    a = np.zeros((n, 6), np.float32)
    a[:, 5] = gripper_angle_for_gap(0.03)
    a[open_at:close_at, 5] = gripper_angle_for_gap(OPEN_GAP_M + 0.01)
    a[close_at:, 5] = gripper_angle_for_gap(CLOSING_GAP_M - 0.02)
    return a


def test_grasp_onset_is_the_first_close_after_opening():
    assert grasp_onset(_actions_with_grasp()) == 60
    never_opened = np.zeros((50, 6), np.float32)
    never_opened[:, 5] = gripper_angle_for_gap(0.03)  # closed all along: no grasp
    assert grasp_onset(never_opened) is None
    stays_open = _actions_with_grasp(close_at=100)
    assert grasp_onset(stays_open) is None


def test_anchor_frames():
    assert anchor_frames(120, 60, (1.5, 0.5)) == [0, 30, 90]
    assert anchor_frames(30, 60, (1.5,)) == [0]  # clipped to the start, deduplicated
    assert anchor_frames(None, 60, (1.5,)) == [0]


def test_chunk_error_aligns_and_truncates_and_refuses_bad_chunks():
    recorded = np.arange(20, dtype=np.float32)[:, None].repeat(6, 1)
    chunk = recorded[15:20] + 1.0  # predicted at t = 15, 5 steps
    err = chunk_error(np.vstack([chunk, chunk]), recorded, 15)  # a 10-step chunk, 5 recorded left
    assert err.shape == (5, 6) and np.allclose(err, 1.0)
    with pytest.raises(ValueError, match="does not match"):
        chunk_error(np.zeros((5, 4)), recorded, 0)
    with pytest.raises(ValueError, match="non-finite"):
        chunk_error(np.full((5, 6), np.nan), recorded, 0)


def test_pick_episodes_spreads_and_skips_recovery():
    eps = [{"episode_index": i, "split": "train", "is_recovery": i % 5 == 4} for i in range(20)]
    eps += [{"episode_index": 20 + i, "split": "val", "is_recovery": False} for i in range(3)]
    picked = pick_episodes(eps, "train", 4)
    assert len(picked) == 4 and picked[0] == 0 and picked[-1] == 18
    assert not {4, 9, 14, 19} & set(picked)
    assert pick_episodes(eps, "val", 10) == [20, 21, 22]


class ReplayRunner:
    """Answers each recorded observation with the recorded actions that followed it (plus a
    fixed bias), found by the exact state and top image (every episode starts from the same
    state): what a perfect fit of the data would predict."""

    camera_names = CAMERA_NAMES

    def __init__(self, reader, chunk_size=10, bias=None):
        self.chunk_size = chunk_size
        self.bias = np.zeros(6, np.float32) if bias is None else np.asarray(bias, np.float32)
        self.after = {}
        for i in range(reader.num_episodes):
            f, top = reader.frames(i), reader.video(i, "top")
            for t in range(len(f)):
                self.after[self._key(f.state[t], top[t])] = f.action[t:]

    @staticmethod
    def _key(state, image):
        return np.asarray(state, np.float32).tobytes() + image.tobytes()

    def predict_chunk(self, observation):
        for cam in self.camera_names:
            assert observation[f"observation.images.{cam}"].dtype == np.uint8
        key = self._key(observation[STATE_KEY], observation["observation.images.top"])
        chunk = self.after[key][: self.chunk_size]
        pad = np.repeat(chunk[-1:], self.chunk_size - len(chunk), 0)
        return np.vstack([chunk, pad]) + self.bias


def test_a_perfect_fit_scores_zero_and_a_bias_shows_at_the_grasp(tiny_recording, tmp_path):
    _, ds = tiny_recording
    reader = LeRobotDatasetReader(ds)
    config = OpenLoopConfig(checkpoint=tmp_path, dataset=ds, out=tmp_path, before_grasp_s=(0.1,))
    perfect = open_loop(config, runner=ReplayRunner(reader)).to_dict()
    assert set(perfect["splits"]) == {"train", "val"}
    for s in perfect["splits"].values():
        assert s["episodes"] == 2 and s["no_grasp_episodes"] == 0
        assert s["arm_mean_abs_deg"] == 0.0 and max(s["arm_abs_deg_by_step"]) == 0.0
    bias = [math.radians(2.0), 0, 0, 0, 0, 0]
    biased = open_loop(config, runner=ReplayRunner(reader, bias=bias)).to_dict()
    train = biased["splits"]["train"]
    assert train["mean_abs_deg"]["shoulder_pan"] == pytest.approx(2.0, abs=0.01)
    assert train["mean_abs_deg"]["elbow_flex"] == 0.0
    at_grasp = train["at_grasp"]["0.1"]  # the 10-step chunk reaches the grasp from 0.1 s ahead
    assert at_grasp["n"] == 2 and at_grasp["mean_deg"]["shoulder_pan"] == pytest.approx(2.0, 0.01)
    saved = json.loads((tmp_path / "open_loop.json").read_text())
    assert saved["splits"]["train"]["mean_abs_deg"] == train["mean_abs_deg"]
    assert (tmp_path / "open_loop.png").read_bytes()[:4] == b"\x89PNG"


def test_real_checkpoint_from_the_command_line(tiny_recording, tiny_checkpoint, tmp_path, capsys):
    from edgevla.cli import main

    _, ds = tiny_recording
    assert main(["eval", "open-loop", "--checkpoint", str(tiny_checkpoint),
                 "--out", str(tmp_path), "--json"]) == 0  # fmt: skip
    result = json.loads(capsys.readouterr().out)
    assert result["dataset"] == str(ds)  # the training dataset, from train_info.json
    assert result["splits"]["train"]["episodes"] == 2
    assert np.isfinite(result["splits"]["val"]["arm_mean_abs_deg"])
    assert "held-out error" in result["verdict"]


def test_bad_input_is_refused(tiny_recording, tiny_checkpoint, tmp_path):
    import shutil

    _, ds = tiny_recording
    with pytest.raises(ValueError, match=">= 1"):
        open_loop(OpenLoopConfig(checkpoint=tiny_checkpoint, episodes_per_split=0))
    bare = tmp_path / "bare"
    shutil.copytree(tiny_checkpoint, bare)
    (bare / "train_info.json").unlink()
    with pytest.raises(ValueError, match="pass --dataset"):
        open_loop(OpenLoopConfig(checkpoint=bare))

    class TwoCameras(ReplayRunner):
        camera_names = ("top", "wrist")

    with pytest.raises(ValueError, match=r"no camera\(s\) \['wrist'\]"):
        open_loop(OpenLoopConfig(checkpoint=tmp_path, dataset=ds, out=tmp_path),
                  runner=TwoCameras(LeRobotDatasetReader(ds)))  # fmt: skip


def test_run_open_loop_prints_a_table(tiny_checkpoint, tmp_path, capsys):
    from edgevla.commands.open_loop import Args, run

    assert run(Args(checkpoint=tiny_checkpoint, out=tmp_path)) == 0
    out = capsys.readouterr().out
    assert "chunk vs recorded actions" in out and "shoulder_pan" in out and "plot:" in out
