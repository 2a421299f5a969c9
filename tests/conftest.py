import os
import signal
import warnings

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
warnings.filterwarnings("ignore", category=UserWarning, module="gymnasium")

# The Ctrl-C tests press Ctrl-C (SIGINT) at this process and at the commands it starts. A shell
# that runs the suite in the background (`make test &` without job control) starts it with
# SIGINT ignored, the commands inherit that, and a training run then never stops (seen: a
# child trained for 8 minutes). Take SIGINT back, as a terminal would hand it to us.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_recording(tmp_path_factory):
    """A real recording of a tiny plan (4 episodes: 2 train, 2 val), shared by the session.

    Returns (plan_path, dataset_path)."""
    from edgevla.dataset.plan import PlanConfig, make_plan
    from edgevla.dataset.record import RecordConfig, record

    root = tmp_path_factory.mktemp("tiny")
    plan = make_plan(
        PlanConfig(
            n_clusters=2,
            positions_per_cluster=2,
            recovery_per_cluster=0,
            val_clusters=(2,),
            test_per_cluster=1,
        )
    )
    plan_path = plan.save(root / "plan.json")
    out = root / "dataset"
    assert record(RecordConfig(plan=plan_path, out=out)).complete
    return plan_path, out
