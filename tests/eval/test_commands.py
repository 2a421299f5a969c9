"""The command floor of eval, eval open-loop, select and bench async: arguments are checked
before any work, errors are one line with exit 2, and the printing lives in the commands."""

import json

import pytest

from edgevla.cli import main
from edgevla.policies.checkpoint import Checkpoint
from edgevla.sim.env import TeaBagMugEnv


@pytest.mark.parametrize(
    ("argv", "names"),
    [
        (["bench", "async", "--thresholds", "0.2", "1.5"], ["--thresholds", "1.5"]),
        (["bench", "async", "--latencies", "0"], ["--latencies"]),
        (["eval", "--threshold", "2"], ["--threshold", "2"]),
        (["eval", "--latency", "soon"], ["--latency"]),
        (["eval", "--episodes", "0"], ["--episodes"]),
        (["eval", "--camera-moved", "nose"], ["--camera-moved", "nose"]),
        (["eval", "--start-jitter-m", "0.2"], ["--start-jitter-m", "0.2"]),
        (["eval", "--start-jitter-deg", "-1"], ["--start-jitter-deg"]),
        (["select", "--every", "0"], ["--every"]),
        (["select", "--start-jitter-m", "0.1"], ["--start-jitter-m", "0.1"]),
        (["bench", "async", "--start-jitter-deg", "100"], ["--start-jitter-deg", "100"]),
        (["select", "--aggregate", "median"], ["--aggregate", "median"]),
        (["eval", "open-loop", "--episodes-per-split", "0"], ["--episodes-per-split"]),
    ],
)
def test_bad_arguments_are_refused_at_once(argv, names, tiny_recording, tiny_checkpoint,
                                           tmp_path, capsys, monkeypatch):  # fmt: skip
    """Refused before the checkpoint is loaded or an episode runs (bench async used to refuse
    --thresholds 1.5 after 22 s of evaluation): exit 2, one line naming the flag."""
    plan_path, _ = tiny_recording

    def work_started(*args, **kwargs):
        raise AssertionError("work started before the arguments were checked")

    monkeypatch.setattr(Checkpoint, "open", work_started)  # every command loads through it
    monkeypatch.setattr(TeaBagMugEnv, "__init__", work_started)  # every episode builds one
    where = (
        ["--run", str(tmp_path)] if argv[0] == "select" else ["--checkpoint", str(tiny_checkpoint)]
    )
    if argv[0] != "eval" or argv[1] != "open-loop":
        where += ["--plan", str(plan_path)]
    if argv[0] != "select":
        where += ["--out", str(tmp_path / "out")]
    assert main([*argv, *where]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert all(n in err for n in names), err
    assert not (tmp_path / "out").exists()


def test_a_missing_checkpoint_is_one_line(tiny_recording, tmp_path, capsys):
    plan_path, _ = tiny_recording
    assert main(["eval", "--checkpoint", str(tmp_path / "nope"), "--plan", str(plan_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nope" in err and "checkpoint folder not found" in err


@pytest.mark.slow
def test_eval_prints_the_table_and_json(tiny_recording, tiny_checkpoint, tmp_path, capsys):
    plan_path, _ = tiny_recording
    argv = ["eval", "--checkpoint", str(tiny_checkpoint), "--plan", str(plan_path), "--out",
            str(tmp_path), "--workers", "1", "--episode-time-s", "0.5", "--latency", "0.1",
            "--sets", "val"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "Acc. Val" in out and "async failures" in out and "first grasp" in out
    assert main([*argv, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["table"][0]["mode"] == "async" and result["results_file"].endswith("results.json")
    saved = json.loads((tmp_path / "results.json").read_text())
    # the keys results.json always had, plus "format" (PyTorch FP32 or ONNX <precisions>)
    assert set(saved) == {"checkpoint", "format", "plan", "fps", "noise_scale", "perturbation", "modes",
                          "positions_seen_in_training", "episodes"}  # fmt: skip


@pytest.mark.slow
def test_bench_async_compares_the_schedules(tiny_recording, tiny_checkpoint, tmp_path, capsys):
    plan_path, _ = tiny_recording
    argv = ["bench", "async", "--checkpoint", str(tiny_checkpoint), "--plan", str(plan_path),
            "--out", str(tmp_path), "--latencies", "0.1", "--thresholds", "0.5", "--workers", "1",
            "--episode-time-s", "0.5", "--start-jitter-m", "0.01"]  # fmt: skip
    assert main([*argv, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [r["config"] for r in result["rows"]] == [
        "zero-latency", "sync@0.1s", "async-g0.5@0.1s", "async-auto@0.1s"]  # fmt: skip
    saved = json.loads((tmp_path / "sync@0.1s" / "results.json").read_text())
    assert saved["perturbation"]["start_jitter_m"] == 0.01  # the jittered starts were run
    assert set(result["budgets"]["0.1"]) == {"0.5"}
    assert json.loads((tmp_path / "async_bench.json").read_text()) == result
    assert main(argv) == 0  # every configuration kept: a rerun only prints
    out = capsys.readouterr().out
    assert "edgevla bench async" in out and "async-auto@0.1s" in out


def test_start_jitter_runs_new_episodes_and_is_recorded(tiny_recording, tiny_checkpoint, tmp_path,
                                                        capsys):  # fmt: skip
    """A jittered evaluation runs and says so in results.json."""
    plan_path, _ = tiny_recording
    argv = ["eval", "--checkpoint", str(tiny_checkpoint), "--plan", str(plan_path), "--out",
            str(tmp_path), "--workers", "1", "--episode-time-s", "0.5", "--latency", "0.1",
            "--sets", "val", "--json"]  # fmt: skip
    assert main(argv) == 0
    capsys.readouterr()
    assert main([*argv, "--start-jitter-m", "0.01", "--start-jitter-deg", "10"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["perturbation"]["start_jitter_m"] == 0.01
    assert result["perturbation"]["start_jitter_deg"] == 10
    assert result["modes"]["async"]["n_val"] == 2
