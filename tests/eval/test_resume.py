"""Ctrl-C during `eval` / `select` keeps the finished episodes, and a rerun continues from them."""

import json
from dataclasses import replace

import pytest

from edgevla.eval.resume import PROGRESS_FILE, EpisodeLog
from edgevla.eval.run import EvalConfig, evaluate


def _episodes(results_file):
    """results.json's episodes as text (NaN-safe comparison)."""
    return json.dumps(json.loads(results_file.read_text())["episodes"], sort_keys=True)


def _stop_after(task: str, n: int):
    """A progress callback that presses Ctrl-C once `n` episodes of `task` have finished."""

    def report(event):
        if event.task == task and event.status.startswith("success") and event.done >= n:
            raise KeyboardInterrupt

    return report


@pytest.mark.slow
def test_an_interrupted_eval_continues_and_equals_an_uninterrupted_one(
    tiny_recording, tiny_checkpoint, tmp_path
):
    plan_path, _ = tiny_recording
    whole = EvalConfig(checkpoint=tiny_checkpoint, plan=plan_path, out=tmp_path / "whole",
                       modes=("sync", "async"), workers=1, episode_time_s=1.0, latency="0.1")  # fmt: skip
    uninterrupted = evaluate(whole)
    n = len(uninterrupted.modes["sync"].episodes)
    assert n >= 2

    config = replace(whole, out=tmp_path / "part")
    with pytest.raises(KeyboardInterrupt):  # sync finished, then one async episode
        evaluate(config, progress=_stop_after("eval async", 1))
    progress_file = tmp_path / "part" / PROGRESS_FILE
    assert len(progress_file.read_text().splitlines()) == n + 1
    assert not (tmp_path / "part" / "results.json").exists()

    events = []
    resumed = evaluate(config, progress=events.append)
    assert resumed.modes["sync"].resumed == n and resumed.modes["async"].resumed == 1
    ran = [e for e in events if e.status.startswith("success")]  # one per episode run again
    assert [e.task for e in ran] == ["eval async"] * (n - 1)
    assert _episodes(resumed.results_file) == _episodes(uninterrupted.results_file)
    for mode in ("sync", "async"):
        a, b = uninterrupted.modes[mode].summary, resumed.modes[mode].summary
        for key in ("success_test", "success_val", "success_global", "idle_fraction",
                    "underruns", "outcomes", "first_grasp", "control"):  # fmt: skip
            assert a[key] == b[key], key
    assert len(progress_file.read_text().splitlines()) == 2 * n

    # a finished evaluation reruns from the file alone; a changed setting reuses nothing
    again = evaluate(config)
    assert again.modes["async"].resumed == n
    changed = evaluate(replace(config, modes=("async",), chunk_size_threshold=0.8))
    assert changed.modes["async"].resumed == 0
    fresh = evaluate(replace(config, modes=("sync",), resume=False))
    assert fresh.modes["sync"].resumed == 0
    assert _episodes(fresh.results_file) == json.dumps(
        {"sync": json.loads(_episodes(uninterrupted.results_file))["sync"]}, sort_keys=True
    )


@pytest.mark.slow
def test_a_retrained_checkpoint_does_not_reuse_episodes(tiny_recording, tiny_checkpoint, tmp_path):
    import shutil

    plan_path, _ = tiny_recording
    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, ckpt)
    config = EvalConfig(checkpoint=ckpt, plan=plan_path, out=tmp_path / "out", workers=1,
                        episode_time_s=0.5, latency="0.1", sets=("val",))  # fmt: skip
    assert evaluate(config).modes["async"].resumed == 0
    assert evaluate(config).modes["async"].resumed > 0
    weights = ckpt / "model.safetensors"
    weights.write_bytes(weights.read_bytes())  # same bytes: still the same checkpoint
    assert evaluate(config).modes["async"].resumed > 0
    info = json.loads((ckpt / "train_info.json").read_text())
    (ckpt / "train_info.json").write_text(json.dumps({**info, "step": 99}))
    assert evaluate(config).modes["async"].resumed == 0


def test_a_torn_last_line_is_skipped_and_the_next_append_starts_a_new_line(tmp_path):
    from edgevla_runtime.control.metrics import EpisodeResult

    from edgevla.eval.parallel import EpisodeOutcome

    loop = EpisodeResult(success=True, completion_time_s=1.0, duration_s=2.0, ticks=60, fps=30,
                         idle_ticks=3, idle_fraction=0.05, startup_ticks=3,
                         idle_fraction_running=0.0, underruns=0, underrun_ticks=0,
                         inference_count=0, latency_p50_s=float("nan"),
                         latency_p95_s=float("nan"), latency_max_s=float("nan"),
                         effective_control_hz=28.5, boundary_accel_max=1.0, max_accel=2.0,
                         trigger_sizes=[float("nan"), 5.0])  # fmt: skip

    def outcome(key):
        return EpisodeOutcome(set="test", position=1, cluster=0, repeat=0, seed=7, key=key,
                              control=loop, outcome="success",
                              grasps=[{"radial_m": 0.0, "tangential_m": 0.0}])  # fmt: skip

    log = EpisodeLog(tmp_path / PROGRESS_FILE, run="abc")
    log.append(outcome("test-001-r0"))
    with open(log.path, "a") as f:
        f.write('{"run": "abc", "key": "test-002-r0", "episode": {"succ')  # killed mid-write
    assert list(log.load()) == [("test-001-r0", 7)]
    log.append(outcome("test-003-r0"))
    assert list(log.load()) == [("test-001-r0", 7), ("test-003-r0", 7)]
    assert EpisodeLog(log.path, run="other").load() == {}
    back = log.load()[("test-001-r0", 7)]
    assert back.to_dict().keys() == outcome("x").to_dict().keys()
    assert back.success and back.grasps == [{"radial_m": 0.0, "tangential_m": 0.0}]


@pytest.mark.slow
def test_ctrl_c_keeps_finished_episodes_and_the_rerun_continues(
    tiny_recording, tiny_checkpoint, tmp_path
):
    """A terminal's Ctrl-C (SIGINT to the whole process group, workers included) during
    `edgevla eval` with two workers: exit 130 with one line, the finished episodes on disk,
    and the same evaluation run again only runs the others."""
    import os
    import signal
    import subprocess
    import sys
    import time

    plan_path, _ = tiny_recording
    out = tmp_path / "out"
    flags = dict(checkpoint=tiny_checkpoint, plan=plan_path, out=out, episodes=4,
                 episode_time_s=1.0, latency="0.1")  # fmt: skip
    argv = [sys.executable, "-m", "edgevla.cli", "eval"]
    for k, v in flags.items():
        argv += [f"--{k.replace('_', '-')}", str(v)]
    proc = subprocess.Popen([*argv, "--workers", "2"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)  # fmt: skip
    progress_file = out / PROGRESS_FILE
    deadline = time.monotonic() + 400
    try:
        while not (progress_file.exists() and progress_file.read_bytes().count(b"\n") >= 1):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no episode finished in time"
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    err = err.decode()
    assert proc.returncode == 130, err
    assert "interrupted; finished work is kept" in err and "Traceback" not in err, err
    kept = len(progress_file.read_text().splitlines())
    rerun = evaluate(EvalConfig(**flags, workers=1))
    total = len(rerun.modes["async"].episodes)
    assert 1 <= kept < total
    assert rerun.modes["async"].resumed == kept
    assert len(progress_file.read_text().splitlines()) == total


@pytest.mark.slow
def test_an_interrupted_select_continues_where_it_stopped(tiny_recording, tmp_path):
    from edgevla.eval.select import SelectConfig, select
    from edgevla.train.config import TrainConfig
    from edgevla.train.loop import train

    plan_path, ds = tiny_recording
    run = tmp_path / "run"
    train(TrainConfig(policy="act", preset="tiny", dataset=(ds,), out=run, steps=4, batch_size=2,
                      save_freq=2, threads=1, val_batches=1))  # fmt: skip
    config = SelectConfig(run=run, plan=plan_path, latency="0.05", workers=1, episode_time_s=0.5)
    state = {"second": False}

    def ctrl_c_in_the_second_checkpoint(event):
        if event.task == "select" and event.done == 1:
            state["second"] = True
        elif state["second"] and event.status.startswith("success"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        select(config, progress=ctrl_c_in_the_second_checkpoint)
    first = run / "checkpoints" / "step-000002" / "eval" / PROGRESS_FILE
    second = run / "checkpoints" / "step-000004" / "eval" / PROGRESS_FILE
    n = len(first.read_text().splitlines())
    assert n >= 2 and len(second.read_text().splitlines()) == 1
    assert not (run / "selection.json").exists()

    events = []
    result = select(config, progress=events.append)
    ran = [e for e in events if e.task == "eval async" and e.status.startswith("success")]
    assert len(ran) == n - 1  # only the second checkpoint's missing episodes ran
    assert [r.step for r in sorted(result.ranked, key=lambda r: r.step)] == [2, 4]
    assert json.loads((run / "selection.json").read_text())["chosen"]["step"] == result.chosen.step
