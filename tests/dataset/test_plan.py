import json
import math

import numpy as np
import pytest

from edgevla.cli import main
from edgevla.dataset.plan import Plan, PlanConfig, PlanError, make_plan, tile_workspace
from edgevla.sim.scene import Workspace


@pytest.fixture(scope="module")
def plan():
    return make_plan()


def test_default_counts_follow_the_paper(plan):
    s = plan.summary()
    assert s["clusters"] == 11
    assert s["train_episodes"] == 120  # 10 clusters x (10 positions + 2 recovery)
    assert s["val_episodes"] == 10
    assert s["recovery_episodes"] == 20
    assert 0.15 <= s["recovery_share"] <= 0.20
    assert (s["eval_test"], s["eval_val"], s["eval_global"]) == (20, 10, 30)


def test_validation_cluster_is_held_out(plan):
    val = {e.cluster for e in plan.episodes if e.split == "val"}
    train = {e.cluster for e in plan.episodes if e.split == "train"}
    assert val == {6} and 6 not in train
    assert {e.cluster for e in plan.val} == {6}
    assert {e.cluster for e in plan.test} == train
    assert all(sum(e.cluster == c for e in plan.test) == 2 for c in train)


def test_both_orientations_in_every_cluster(plan):
    for c in plan.clusters:
        kinds = {e.orientation for e in plan.episodes if e.cluster == c.id}
        assert kinds == {"horizontal", "vertical"}


def test_positions_lie_inside_their_cluster_and_workspace(plan):
    by_id = {c.id: c for c in plan.clusters}
    for e in plan.episodes + plan.test:
        c = by_id[e.cluster]
        rel = np.asarray(e.bag_xy) - np.asarray(c.center_xy)
        radial = np.array([math.cos(c.theta), math.sin(c.theta)])
        tangential = np.array([-radial[1], radial[0]])
        assert abs(rel @ radial) <= c.size / 2 and abs(rel @ tangential) <= c.size / 2
        assert plan.workspace.contains(np.asarray(e.bag_xy))


def test_clusters_do_not_overlap(plan):
    # Squares facing the base in rings: no centre closer than one side length to another's.
    centres = np.array([c.center_xy for c in plan.clusters])
    d = np.linalg.norm(centres[:, None] - centres[None], axis=-1) + np.eye(len(centres))
    assert d.min() >= 0.1 - 1e-9


def test_plan_is_deterministic_and_seeded(plan):
    assert make_plan().to_dict() == plan.to_dict()
    other = make_plan(PlanConfig(seed=1))
    assert other.episodes[0].bag_xy != plan.episodes[0].bag_xy


def test_recovery_share_is_a_parameter():
    p = make_plan(PlanConfig(recovery_per_cluster=1))
    assert p.summary()["recovery_share"] == pytest.approx(1 / 11)


def test_recovery_starts_take_turns_above_the_mug_and_beside_the_bag(plan):
    """Half the recovery starts put the arm above the mug, half low beside the bag with the
    gripper closed on nothing (after a missed grasp); the expert recovers from every kind."""
    from edgevla.sim.env import TeaBagMugEnv
    from edgevla.sim.expert import ScriptedExpert, rollout_expert
    from edgevla.sim.scene import MUG_POS

    assert plan.summary()["recovery_starts"] == {"mug": 10, "missed_grasp": 10}
    rec = [e for e in plan.episodes if e.kind == "recovery"]
    combos = {(e.recovery_start, e.orientation) for e in rec}
    assert len(combos) == 4, combos  # each start kind with both bag orientations
    for e in rec:
        tcp = np.asarray(e.arm_tcp)
        if e.recovery_start == "mug":
            assert np.linalg.norm(tcp[:2] - MUG_POS) < 0.03 and tcp[2] > 0.1
        else:
            assert 0.02 <= np.linalg.norm(tcp[:2] - e.bag_xy) <= 0.04 and tcp[2] < 0.1
            assert e.gripper <= 0.4
    env = TeaBagMugEnv(render_images=False)
    missed = [e for e in rec if e.recovery_start == "missed_grasp"]
    farthest = max(missed, key=lambda e: math.hypot(*e.arm_tcp[:2]))  # needs a tilted gripper
    for e in (missed[0], farthest):
        info = {}
        for _, _, info in rollout_expert(env, seed=e.seed, options={"start_state": e.start_state()},
                                         expert=ScriptedExpert()):  # fmt: skip
            pass
        assert info["success"], e


def test_plans_from_before_missed_grasp_starts_still_load(plan, tmp_path):
    path = tmp_path / "old.json"
    plan.save(path)
    raw = json.loads(path.read_text())
    del raw["config"]["recovery_starts"]
    for e in raw["episodes"]:
        e.pop("recovery_start")
    path.write_text(json.dumps(raw))
    old = Plan.load(path)
    assert old.config.recovery_starts == ("mug",)
    n_recovery = sum(e.kind == "recovery" for e in plan.episodes)
    assert old.summary()["recovery_starts"] == {"mug": n_recovery}  # all started above the mug


def test_roundtrip_through_file(plan, tmp_path):
    path = plan.save(tmp_path / "plan.json")
    again = Plan.load(path)
    assert again.to_dict() == plan.to_dict()
    assert again.episodes[5].start_state() == plan.episodes[5].start_state()


def test_too_many_clusters_refused():
    fit = len(tile_workspace(Workspace(), 0.10))
    with pytest.raises(PlanError, match=f"n_clusters={fit + 1}.*at most {fit}"):
        make_plan(PlanConfig(n_clusters=fit + 1))


@pytest.mark.parametrize("kwargs, match", [
    ({"val_clusters": (12,)}, "val_clusters"),
    ({"positions_per_cluster": 0}, "positions_per_cluster"),
    ({"n_clusters": 1}, "n_clusters"),
    ({"recovery_starts": ("table",)}, "recovery_starts"),
    ({"recovery_starts": ()}, "recovery_starts"),
])  # fmt: skip
def test_bad_config_refused(kwargs, match):
    with pytest.raises(PlanError, match=match):
        PlanConfig(**kwargs)


def test_bad_plan_files_refused(tmp_path):
    with pytest.raises(PlanError, match="not found"):
        Plan.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{ not json")
    with pytest.raises(PlanError, match="not valid JSON"):
        Plan.load(bad)
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"edgevla_plan_version": 99}))
    with pytest.raises(PlanError, match="version"):
        Plan.load(old)


def test_plan_command_writes_plan_and_figure(tmp_path, capsys):
    out, fig = tmp_path / "plan.json", tmp_path / "plan.png"
    assert main(["plan", "--out", str(out), "--figure", str(fig), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["train_episodes"] == 120
    assert Plan.load(out).summary()["clusters"] == 11
    assert fig.read_bytes()[:4] == b"\x89PNG"


def test_summary_counts_orientations_as_the_audit_does() -> None:
    """Position episodes only: one recovery per cluster (k = 0, always horizontal) used to tip
    the plan's table to 21 / 11 where the audit of its recording said 11 / 11."""
    plan = make_plan(PlanConfig(positions_per_cluster=2, recovery_per_cluster=1))
    positions = [e for e in plan.episodes if e.kind == "position"]
    assert plan.summary()["orientations"] == {"horizontal": len(positions) // 2,
                                              "vertical": len(positions) // 2}  # fmt: skip
