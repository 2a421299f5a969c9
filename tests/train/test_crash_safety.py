"""Issue #15 §2: a training run survives kill -9 at any point of a checkpoint save, and Ctrl-C.

A subprocess trains the tiny preset and pauses at a named point inside a save (a hook only
tests set); the test kills it there, then `--resume` must continue from the last complete
checkpoint and end with exactly the losses and weights of a run that was never interrupted."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from edgevla.policies.factory import load_policy
from edgevla.train import run_folder
from edgevla.train.config import TrainConfig
from edgevla.train.loop import train
from edgevla.train.run_folder import read_log

CHILD = """
import sys, time
from pathlib import Path
from edgevla.train import run_folder

point, occurrence, marker = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
seen = []

def pause(name):
    seen.append(name)
    if name == point and seen.count(name) == occurrence:
        marker.write_text(name)
        time.sleep(600)  # the test kills us here

run_folder.PAUSE_HOOK = pause
from edgevla.cli import main
sys.exit(main(sys.argv[4:]))
"""


def _cfg(dataset, out, **kw):
    base = dict(policy="act", preset="tiny", dataset=(dataset,), out=out, steps=6, batch_size=2,
                save_freq=3, log_freq=1, threads=1, val_batches=1)  # fmt: skip
    base.update(kw)
    return TrainConfig(**base)


def _cli_args(dataset, out, steps=6, save_freq=3):
    return ["train", "--json", "--policy", "act", "--preset", "tiny", "--dataset", str(dataset),
            "--out", str(out), "--steps", str(steps), "--batch-size", "2", "--save-freq",
            str(save_freq), "--log-freq", "1", "--threads", "1", "--val-batches", "1"]  # fmt: skip


def _child(tmp_path, argv, point="never", occurrence=1):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    marker = tmp_path / "paused"
    env = {**os.environ, "MUJOCO_GL": "egl", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(script), point, str(occurrence), str(marker), *argv]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, marker


def _wait_for(cond, proc, what, timeout=180.0):
    t0 = time.monotonic()
    while not cond():
        if proc.poll() is not None:
            raise AssertionError(
                f"child exited ({proc.returncode}) before {what}: {proc.stderr.read()}"
            )
        if time.monotonic() - t0 > timeout:
            proc.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _losses(run):
    return [r["loss"] for r in read_log(run) if "loss" in r]


def _weights(run):
    return load_policy(run_folder.list_checkpoints(run)[-1][1]).state_dict()


def _same_run(a, b):
    assert _losses(a) == _losses(b) and len(_losses(a)) > 0
    wa, wb = _weights(a), _weights(b)
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


@pytest.fixture(scope="module")
def uninterrupted(tiny_recording, tmp_path_factory):
    _, ds = tiny_recording
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    train(_cfg(ds, out))
    return out


# (point inside a save, which save): the 1st save is step 3, the 2nd step 6.
KILLS = [
    ("model", 1, []),  # the policy written, nothing else: no checkpoint at all yet
    ("state_open", 2, [3]),  # training_state.pt open and empty, as in the issue
    ("publish", 2, [3]),  # everything written and fsynced, not yet renamed
    ("published", 2, [3, 6]),  # renamed: step 6 is complete
]


@pytest.mark.parametrize("point,occurrence,complete", KILLS, ids=[k[0] for k in KILLS])
def test_kill_during_a_save_then_resume_matches_an_uninterrupted_run(
    tiny_recording, tmp_path, uninterrupted, point, occurrence, complete
):
    _, ds = tiny_recording
    run = tmp_path / "run"
    proc, marker = _child(tmp_path, _cli_args(ds, run), point, occurrence)
    _wait_for(marker.exists, proc, f"the pause at {point!r}")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stdout.close()
    proc.stderr.close()

    listed = run_folder.list_checkpoints(run, clean=False)
    assert [s for s, _ in listed] == complete
    partial = [p for p in run_folder.checkpoints_root(run).iterdir() if p.name.startswith(".")]
    if point == "state_open":
        assert (partial[0] / run_folder.STATE_FILE).stat().st_size == 0
    if point != "published":
        assert len(partial) == 1

    result = train(_cfg(ds, run, resume=True))
    assert result.resumed_from == (complete[-1] if complete else 0)
    if point != "published":
        assert any("did not finish" in n for n in result.notes), result.notes
    assert not [p for p in run_folder.checkpoints_root(run).iterdir() if p.name.startswith(".")]
    assert [s for s, _ in run_folder.list_checkpoints(run)] == [3, 6]
    _same_run(run, uninterrupted)


def test_a_stray_tmp_folder_does_not_block_a_fresh_start(tiny_recording, tmp_path):
    """The issue: a fresh start refused ("already has checkpoints (step-000005.tmp)")."""
    _, ds = tiny_recording
    run = tmp_path / "run"
    stray = run_folder.checkpoints_root(run) / "step-000005.tmp"
    stray.mkdir(parents=True)
    (stray / run_folder.STATE_FILE).write_bytes(b"")
    result = train(_cfg(ds, run, steps=3))
    assert not stray.exists() and any("did not finish" in n for n in result.notes)
    assert result.checkpoints == ["step-000003"]


def test_ctrl_c_saves_the_current_step_and_resumes_bit_for_bit(tiny_recording, tmp_path):
    _, ds = tiny_recording
    run = tmp_path / "run"
    # A run far longer than the test: on a loaded machine the parent may see the log late, and a
    # 500-step run could finish before Ctrl-C reaches it (seen once in CI on one core).
    proc, _ = _child(tmp_path, _cli_args(ds, run, steps=1_000_000, save_freq=1_000_000))
    _wait_for(lambda: len(read_log(run)) >= 2, proc, "two logged steps")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "continue with --resume" in err
    listed = run_folder.list_checkpoints(run, clean=False)
    assert len(listed) == 1, listed
    step, folder = listed[0]
    assert step == read_log(run)[-1]["step"] and 2 <= step < 1_000_000
    assert torch.load(folder / run_folder.STATE_FILE, weights_only=False)["step"] == step
    assert json.loads((folder / "train_info.json").read_text())["step"] == step
    assert not [p for p in run_folder.checkpoints_root(run).iterdir() if p.name.startswith(".")]

    # Resumed to step + 2, it matches a run that went there without stopping.
    resumed = train(_cfg(ds, run, steps=step + 2, save_freq=1000, resume=True))
    assert resumed.resumed_from == step
    straight = tmp_path / "straight"
    train(_cfg(ds, straight, steps=step + 2, save_freq=1000))
    _same_run(run, straight)
    assert Path(run_folder.list_checkpoints(run)[-1][1]).name == f"step-{step + 2:06d}"
