"""The policy server on loopback: same chunks as local inference, sessions, faults survived."""

from __future__ import annotations

import socket

import numpy as np
import pytest
from edgevla_runtime import wire
from edgevla_runtime.control import ControlConfig
from edgevla_runtime.remote import RemoteError, RemoteRunner
from edgevla_runtime.robot import check_fit, drive, latency_budget
from edgevla_runtime.testing import ScriptedRunner

from edgevla.deploy.observations import sim_observations
from edgevla.deploy.server import PolicyServer, ServeConfig
from edgevla.errors import BadInput


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(bundle):
    srv = PolicyServer(ServeConfig(policy=bundle, port=free_port()))
    port = srv.start()
    yield srv, port
    srv.stop()


def test_remote_chunks_equal_local_ones_and_timing_splits(server, bundle) -> None:
    from edgevla_runtime.bundle import BundleRunner

    srv, port = server
    remote = RemoteRunner(f"127.0.0.1:{port}")
    local = BundleRunner(bundle)
    assert remote.chunk_size == local.chunk_size and remote.camera_names == local.camera_names
    obs = sim_observations(local, 1)[0]
    assert np.array_equal(remote.predict_chunk(obs), local.predict_chunk(obs))
    t = remote.timing()
    assert t["round_trip_p50_s"] >= t["server_inference_p50_s"] > 0
    remote.close()


def raw_client(port: int):
    from websockets.sync.client import connect

    return connect(f"ws://127.0.0.1:{port}", max_size=wire.MAX_MESSAGE_BYTES).__enter__()


def ask(ws, message) -> dict:
    ws.send(message if isinstance(message, bytes) else wire.encode(message))
    return wire.decode(ws.recv(timeout=10))


def test_bad_messages_get_an_error_and_other_clients_are_served(server, bundle) -> None:
    srv, port = server
    good = RemoteRunner(f"127.0.0.1:{port}")
    obs = sim_observations(good, 1)[0]
    bad = raw_client(port)
    assert ask(bad, {"type": "infer", "observation": obs})["message"] == "send hello first"
    assert ask(bad, {"type": "hello"})["type"] == "welcome"
    cases = [
        b"garbage",
        wire.encode({"type": "infer", "observation": {**obs, "observation.state": np.zeros(3, np.float32)}}),
        wire.encode({"type": "infer", "observation": {**obs, "observation.images.top": obs["observation.images.top"].astype(np.float32)}}),
        wire.encode({"type": "infer", "observation": {"observation.state": obs["observation.state"]}}),
        wire.encode({"type": "reset", "seed": "x"}),
        wire.encode({"type": "fly"}),
    ]  # fmt: skip
    for message in cases:
        reply = ask(bad, message)
        assert reply["type"] == "error" and "Traceback" not in reply["message"]
    bad.send("a text frame")
    assert "text frames" in wire.decode(bad.recv(timeout=10))["message"]
    assert good.predict_chunk(obs).shape == (good.chunk_size, good.action_dim)  # unaffected
    bad.close()
    good.close()
    assert srv.stats.errors >= len(cases)


def test_oversized_message_is_refused_and_the_server_lives(server) -> None:
    srv, port = server
    ws = raw_client(port)
    ws.send(b"\x00" * (wire.MAX_MESSAGE_BYTES + 10))
    from websockets.exceptions import ConnectionClosed

    with pytest.raises(ConnectionClosed):  # the server closes a connection that sends too much
        ws.recv(timeout=10)
    RemoteRunner(f"127.0.0.1:{port}").close()  # still serving


def test_token_is_required_off_loopback_and_checked(bundle) -> None:
    with pytest.raises(BadInput, match="--token"):
        ServeConfig(policy=bundle, host="0.0.0.0")
    srv = PolicyServer(ServeConfig(policy=bundle, port=free_port(), token="s3cret"))
    port = srv.start()
    try:
        with pytest.raises(RemoteError, match="wrong or missing token"):
            RemoteRunner(f"127.0.0.1:{port}", token="guess")
        RemoteRunner(f"127.0.0.1:{port}", token="s3cret").close()
    finally:
        srv.stop()


class Arm:
    """A fake arm whose state is its last command (the runtime's robot tests use the same)."""

    observation_features: dict = {}
    action_features: dict = {}

    def __init__(self, obs) -> None:
        self.obs = {k: np.array(v) for k, v in obs.items()}
        self.sent: list[np.ndarray] = []

    def connect(self) -> None: ...

    def disconnect(self) -> None: ...

    def get_observation(self):
        return {k: v.copy() for k, v in self.obs.items()}

    def send_action(self, action) -> None:
        self.sent.append(np.asarray(action, np.float32).copy())
        self.obs["observation.state"] = self.sent[-1].copy()


def test_server_killed_mid_episode_client_holds_then_reconnects(bundle) -> None:
    import threading

    port = free_port()
    srv = PolicyServer(ServeConfig(policy=bundle, port=port))
    srv.start()
    remote = RemoteRunner(f"127.0.0.1:{port}", timeout_s=1.0, backoff_s=0.1, max_backoff_s=0.2)
    arm = Arm(sim_observations(remote, 1)[0])
    replacement: list[PolicyServer] = []

    def kill_and_restart() -> None:
        srv.stop()  # killed mid-episode
        threading.Event().wait(1.0)
        again = PolicyServer(ServeConfig(policy=bundle, port=port))
        again.start()
        replacement.append(again)

    threading.Timer(1.0, kill_and_restart).start()
    config = ControlConfig(mode="async", chunk_size_threshold=0.9, fps=30, max_steps=150,
                           inference_timeout_s=2.0, on_fault="hold")  # fmt: skip
    result = drive(arm, remote, config)
    try:
        assert result.faults >= 1  # the outage was noticed and held through
        assert remote.reconnects >= 1  # and the session came back
        assert result.inference_count >= 2
        assert all(np.isfinite(a).all() for a in arm.sent)
    finally:
        remote.close()
        for s in replacement:
            s.stop()


def test_disconnect_frees_the_session(server) -> None:
    import time

    srv, port = server
    remote = RemoteRunner(f"127.0.0.1:{port}")
    assert srv.stats.sessions_open == 1
    remote.close()
    for _ in range(50):
        if srv.stats.sessions_open == 0:
            break
        time.sleep(0.05)
    assert srv.stats.sessions_open == 0


def test_jpeg_images_are_decoded_by_the_server_and_give_the_local_chunk(server, bundle) -> None:
    """The server runs the policy on exactly the pixels the client's JPEG decodes to."""
    from edgevla_runtime.bundle import BundleRunner

    srv, port = server
    remote = RemoteRunner(f"127.0.0.1:{port}", image_codec="jpeg", jpeg_quality=80)
    local = BundleRunner(bundle)
    obs = sim_observations(local, 1)[0]
    framed = remote.frame(obs)
    assert len(wire.encode(framed)) < len(wire.encode(obs)) / 4
    decoded = wire.decode(wire.encode({"type": "infer", "observation": framed}))["observation"]
    assert np.array_equal(remote.predict_chunk(obs), local.predict_chunk(decoded))
    remote.close()


def test_bad_jpeg_gets_a_one_line_error_and_the_server_keeps_serving(server) -> None:
    srv, port = server
    good = RemoteRunner(f"127.0.0.1:{port}", image_codec="jpeg")
    obs = sim_observations(good, 1)[0]
    top = good.frame(obs)["observation.images.top"]
    ws = raw_client(port)
    assert ask(ws, {"type": "hello"})["type"] == "welcome"
    h, w, _ = top["shape"]
    lies = [({**top, "shape": [h, w + 1, 3]}, "declared RGB"),  # the declared shape is not the JPEG's
            ({**top, "data": top["data"][: len(top["data"]) // 2]}, "could not be decoded"),
            ({**top, "shape": [60_000, 60_000, 3]}, "exceeds")]  # fmt: skip
    for image, says in lies:
        reply = ask(ws, {"type": "infer", "observation": {**obs, "observation.images.top": image}})
        assert reply["type"] == "error" and says in reply["message"]
        assert len(reply["message"].splitlines()) == 1 and "Traceback" not in reply["message"]
    assert good.predict_chunk(obs).shape == (good.chunk_size, good.action_dim)  # unaffected
    ws.close()
    good.close()


def test_slow_server_is_a_budget_violation_with_underruns_and_the_arm_holds() -> None:
    """Server inference 0.2 s; at 50 fps, chunk 20, g=0.25 the queue covers 0.1 s: every chunk
    comes late. Not a fault (it answers): the arm holds on the starved ticks, executes each
    action at most once and never an older one."""
    srv = PolicyServer.for_runner(ScriptedRunner(20, sleep_s=0.2))
    port = srv.start()
    remote = RemoteRunner(f"127.0.0.1:{port}", timeout_s=5.0)
    arm = Arm({"observation.state": np.zeros(6, np.float32)})
    config = ControlConfig(mode="async", chunk_size_threshold=0.25, aggregate_fn_name="latest_only",
                           fps=50, max_steps=100, inference_timeout_s=5.0, on_fault="hold")  # fmt: skip
    try:
        result = drive(arm, remote, config)
    finally:
        remote.close()
        srv.stop()
    budget = latency_budget(result, config, 20)
    assert budget["fits"] is False and budget["latency_p95_s"] > budget["t_execution_s"] == 0.1
    assert result.faults == 0 and result.inference_count >= 2
    assert result.underruns >= 1 and result.underrun_ticks >= result.underruns
    trace = [float(a[0]) for a in arm.sent]  # ScriptedRunner: chunk n row i = 100 (n + 1) + i
    starved = [t for t, q in enumerate(result.queue_sizes) if q == 0]
    assert all(trace[t] == trace[t - 1] for t in starved if t > 0)  # held, no jump
    fresh = [v for t, v in enumerate(trace) if result.queue_sizes[t] > 0]
    assert fresh and all(b > a for a, b in zip(fresh, fresh[1:], strict=False))  # no replay


def test_a_late_inference_and_the_next_reset_never_cross_replies() -> None:
    """The real-time loop may leave an inference in flight when an episode ends; the next
    episode's reset on the same client must get its own reply, not the late chunk."""
    import threading
    import time

    srv = PolicyServer.for_runner(ScriptedRunner(20, sleep_s=0.3))
    port = srv.start()
    remote = RemoteRunner(f"127.0.0.1:{port}", timeout_s=5.0)
    obs = {"observation.state": np.zeros(6, np.float32)}
    chunks = []
    try:
        remote.reset(0)
        late = threading.Thread(target=lambda: chunks.append(remote.predict_chunk(obs)))
        late.start()
        time.sleep(0.05)  # the inference is on the wire
        remote.reset(1)  # before this lock existed, this could read the chunk reply
        late.join()
        assert chunks and chunks[0].shape == (20, 6)
        assert remote.predict_chunk(obs).shape == (20, 6)  # the socket is still in step
    finally:
        remote.close()
        srv.stop()


def test_robot_at_another_fps_than_the_bundle_is_refused_before_it_moves(bundle, capsys) -> None:
    """The bundle learned at 60 fps; `--fps 30` builds the simulated arm at 30: refused."""
    from edgevla_runtime.bundle import BundleRunner
    from edgevla_runtime.cli import main

    from edgevla.sim.robot import SimRobot

    assert main(["run", "--bundle", str(bundle), "--robot", "sim", "--fps", "30"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "fps: the policy learned at 60 fps but the robot runs at 30" in err[0]
    runner = BundleRunner(bundle)
    check_fit(SimRobot(fps=60), runner, ControlConfig(fps=60))  # the default: built at 60
    assert main(["run", "--bundle", str(bundle), "--image-codec", "jpeg"]) == 2
    assert "--image-codec applies to --remote" in capsys.readouterr().err
