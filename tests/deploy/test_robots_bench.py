"""`edgevla bench robots`: one server, the protocol by 1 then N concurrent robots. Tiny settings;
no timing thresholds, only what each row holds and how its figures relate by construction."""

from __future__ import annotations

import json

import pytest

from edgevla.cli import main
from edgevla.dataset.plan import PlanConfig, make_plan
from edgevla.errors import BadInput
from edgevla.eval.robots_bench import RobotsBenchConfig, bench_robots


@pytest.fixture(scope="module")
def tiny_plan(tmp_path_factory):
    """1 Test position and 2 Val positions; nothing recorded."""
    plan = make_plan(PlanConfig(n_clusters=2, positions_per_cluster=2, recovery_per_cluster=0,
                                val_clusters=(2,), test_per_cluster=1))  # fmt: skip
    return plan.save(tmp_path_factory.mktemp("plan") / "plan.json")


def check_rows(rows: list[dict], counts: tuple[int, ...], episodes: int) -> None:
    assert [r["robots"] for r in rows] == list(counts)
    for r in rows:
        assert r["episodes"] == episodes and 1 <= r["robots_active"] <= r["robots"]
        assert len(r["per_robot"]) == r["robots_active"]
        assert sum(p["episodes"] for p in r["per_robot"]) == episodes
        assert sum(p["inferences"] for p in r["per_robot"]) == r["inferences"] > 0
        assert 0.0 <= r["success_global"] <= 1.0
        for key in ("success_test", "success_val"):  # None: the set was not run
            assert r[key] is None or 0.0 <= r[key] <= 1.0
        # every call's round trip contains the server's time, so its percentiles do too
        assert r["latency_p50_s"] >= r["server_p50_s"] > 0
        assert r["latency_p99_s"] >= r["server_p99_s"] >= r["server_p50_s"]
        assert r["network_p50_s"] is not None


@pytest.mark.slow
def test_bench_robots_one_then_two_robots(bundle, tiny_plan, tmp_path, capsys) -> None:
    """The default: the server in a child process, 1 robot then 2 robot processes sharing it;
    --json prints one object, and bench_robots.json holds the same rows."""
    argv = ["bench", "robots", "--bundle", str(bundle), "--plan", str(tiny_plan), "--out",
            str(tmp_path), "--robots", "1", "2", "--episode-time-s", "0.3", "--json"]  # fmt: skip
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["server"] == "process" and result["clock"] == "virtual" and result["fps"] == 60
    check_rows(result["rows"], (1, 2), episodes=3)
    saved = json.loads((tmp_path / "bench_robots.json").read_text())
    assert saved["rows"] == result["rows"]
    assert (tmp_path / "robots-2" / "results.json").is_file()


def test_bench_robots_with_the_server_in_this_process(bundle, tiny_plan, tmp_path) -> None:
    config = RobotsBenchConfig(bundle=bundle, plan=tiny_plan, out=tmp_path, robots=(1,),
                               sets=("test",), episode_time_s=0.3, server="thread")  # fmt: skip
    result = bench_robots(config)
    assert result.server == "thread"
    check_rows(result.to_dict()["rows"], (1,), episodes=1)


def test_bad_bench_robots_arguments(bundle, tiny_plan, tmp_path, capsys) -> None:
    with pytest.raises(BadInput, match="--bundle/--checkpoint"):
        RobotsBenchConfig(plan=tiny_plan)
    with pytest.raises(BadInput, match="--robots"):
        RobotsBenchConfig(bundle=bundle, robots=(1, 0))
    with pytest.raises(BadInput, match="--threshold"):
        RobotsBenchConfig(bundle=bundle, threshold="2")
    with pytest.raises(BadInput, match="--episode-time-s"):
        RobotsBenchConfig(bundle=bundle, episode_time_s=0)
    assert main(["bench", "robots", "--bundle", str(tmp_path / "none"), "--plan", str(tiny_plan),
                 "--out", str(tmp_path / "out")]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "none" in err, err
    assert not (tmp_path / "out").exists()
