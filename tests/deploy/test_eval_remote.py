"""The protocol through a policy server (`edgevla eval --remote`) and on the wall clock
(`--clock realtime`): the same loop, the same success check, with the remote split and the
tick timing kept per episode. No timing thresholds: only what the figures are and how they
relate by construction."""

from __future__ import annotations

import json
import os
import socket

import pytest

from edgevla.cli import main
from edgevla.dataset.plan import PlanConfig, make_plan
from edgevla.deploy.server import PolicyServer, ServeConfig
from edgevla.errors import BadInput
from edgevla.eval.run import EvalConfig, evaluate


@pytest.fixture(scope="module")
def tiny_plan(tmp_path_factory):
    """1 Test position (cluster 1) and 2 Val positions (cluster 2); nothing recorded."""
    plan = make_plan(PlanConfig(n_clusters=2, positions_per_cluster=2, recovery_per_cluster=0,
                                val_clusters=(2,), test_per_cluster=1))  # fmt: skip
    return plan.save(tmp_path_factory.mktemp("plan") / "plan.json")


@pytest.fixture
def server(bundle):
    srv = PolicyServer(ServeConfig(policy=bundle, port=0))
    port = srv.start()
    yield srv, f"127.0.0.1:{port}"
    srv.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_remote_eval_acts_as_the_local_bundle(server, bundle, tiny_plan, tmp_path) -> None:
    """ACT is deterministic and the server runs the same ONNX graphs: at a fixed virtual latency
    the episodes through the server execute the same actions (accelerations of the executed
    command sequence, queue and request traces) and end the same way as the bundle run here."""
    srv, address = server
    common = dict(plan=tiny_plan, workers=1, episode_time_s=1.0, latency="0.05", sets=("val",))
    local = evaluate(EvalConfig(checkpoint=bundle, out=tmp_path / "local", **common))
    remote = evaluate(EvalConfig(remote=address, out=tmp_path / "remote", **common))
    a, b = local.modes["async"].episodes, remote.modes["async"].episodes
    assert [e.key for e in a] == [e.key for e in b] and len(a) == 2
    for x, y in zip(a, b, strict=True):
        assert (x.success, x.outcome, x.bag_max_lift_m) == (y.success, y.outcome, y.bag_max_lift_m)
        assert x.control.max_accel == y.control.max_accel > 0  # the arm moved, identically
        assert x.control.boundary_accel_max == y.control.boundary_accel_max
        assert x.control.queue_sizes == y.control.queue_sizes
        assert x.control.request_ticks == y.control.request_ticks
        # the remote split per call: the robot's round trip contains the server's time
        assert not x.server_inference_s and len(y.server_inference_s) == y.control.inference_count
        assert all(t >= s > 0 for t, s in zip(y.round_trip_s, y.server_inference_s, strict=True))
    s = remote.modes["async"].summary
    assert s["round_trip_p50_s"] >= s["server_inference_p50_s"] > 0
    assert s["remote_calls"] == srv.stats.inferences == sum(e.control.inference_count for e in b)
    local_summary = local.modes["async"].summary  # a local policy on the virtual clock
    assert (
        "server_inference_p50_s" not in local_summary and "tick_jitter_p99_s" not in local_summary
    )
    assert a[0].control.tick_jitter_p50_s is None and "jitter_p99" not in local.table()[0]
    assert remote.format == "remote" and remote.checkpoint == f"ws://{address}"
    assert remote.table()[0]["server_p50"].endswith("ms")
    saved = json.loads((tmp_path / "remote" / "results.json").read_text())
    assert saved["episodes"]["async"][0]["server_inference_s"] == b[0].server_inference_s


@pytest.mark.slow
def test_two_remote_robots_each_open_their_own_session(server, tiny_plan, tmp_path) -> None:
    """--workers 2: two worker processes, each a robot with its own client session (the probe
    that checked the server first is the third session); every call was answered."""
    srv, address = server
    result = evaluate(EvalConfig(remote=address, plan=tiny_plan, out=tmp_path, workers=2,
                                 episode_time_s=0.3, latency="0.05"))  # fmt: skip
    episodes = result.modes["async"].episodes
    assert len(episodes) == 3
    assert srv.stats.sessions_total == 1 + 2
    assert all(e.worker not in (None, os.getpid()) for e in episodes)  # ran in the workers
    assert srv.stats.inferences == sum(len(e.server_inference_s) for e in episodes) > 0
    assert srv.stats.errors == 0


@pytest.mark.slow
def test_realtime_clock_reports_tick_timing(bundle, tiny_plan, tmp_path) -> None:
    """--clock realtime: wall-clock ticks at the bundle's 60 fps, inference in a thread; each
    episode carries its tick jitter and deadline misses, the summary and table aggregate them,
    and success is the env's check as on the virtual clock. Even with one worker the episode
    runs in a process of its own (nothing of this process shares its interpreter lock), here
    with its control thread and inference pinned apart (`--pin-cpus auto`)."""
    config = EvalConfig(checkpoint=bundle, plan=tiny_plan, out=tmp_path, workers=1,
                        episode_time_s=0.3, sets=("test",), clock="realtime", pin_cpus="auto")  # fmt: skip
    result = evaluate(config)
    (episode,) = result.modes["async"].episodes
    assert episode.worker not in (None, os.getpid())
    c = episode.control
    assert c.ticks == 18 and c.fps == 60  # 0.3 s at the bundle's rate
    assert 0 <= c.tick_jitter_p50_s <= c.tick_jitter_p99_s and 0 <= c.deadline_misses <= c.ticks
    assert c.inference_count >= 1 and c.success is False  # 0.3 s is too short for the task
    s = result.modes["async"].summary
    assert s["clock"] == "realtime" and s["latency_p99_s"] >= s["latency_p50_s"] > 0
    assert s["tick_jitter_p99_s"] == c.tick_jitter_p99_s
    assert s["deadline_misses"] == c.deadline_misses
    row = result.table()[0]
    assert {"latency_p99", "jitter_p50", "jitter_p99", "deadline_misses"} <= set(row)


def test_bad_remote_and_clock_flags(bundle, tiny_plan) -> None:
    with pytest.raises(BadInput, match="--checkpoint/--remote"):
        EvalConfig(plan=tiny_plan)
    with pytest.raises(BadInput, match="not both"):
        EvalConfig(checkpoint=bundle, remote="127.0.0.1:8765")
    with pytest.raises(BadInput, match="HOST:PORT"):
        EvalConfig(remote="localhost")
    with pytest.raises(BadInput, match="--token"):
        EvalConfig(checkpoint=bundle, token="s3cret")
    with pytest.raises(BadInput, match="--latency"):
        EvalConfig(checkpoint=bundle, clock="realtime", latency="0.1")
    with pytest.raises(BadInput, match="--clock"):
        EvalConfig(checkpoint=bundle, clock="wall")
    with pytest.raises(BadInput, match="--clock realtime"):
        EvalConfig(checkpoint=bundle, pin_cpus="auto")
    with pytest.raises(BadInput, match="--workers 1"):
        EvalConfig(checkpoint=bundle, clock="realtime", pin_cpus="auto", workers=2)
    with pytest.raises(BadInput, match="--pin-cpus"):
        EvalConfig(checkpoint=bundle, clock="realtime", pin_cpus="zero", workers=1)


def test_unreachable_server_is_one_line(tiny_plan, tmp_path, capsys) -> None:
    argv = ["eval", "--remote", f"127.0.0.1:{free_port()}", "--plan", str(tiny_plan), "--out",
            str(tmp_path / "out")]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--remote" in err and "edgevla serve" in err, err
    assert not (tmp_path / "out").exists()


def test_pin_cpus_flag_reaches_the_config(bundle, tiny_plan, capsys) -> None:
    """`edgevla eval --pin-cpus` is a flag of the command (refused here before any episode,
    because pinning needs the wall clock)."""
    argv = ["eval", "--checkpoint", str(bundle), "--plan", str(tiny_plan), "--pin-cpus", "auto"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--clock realtime" in err, err
