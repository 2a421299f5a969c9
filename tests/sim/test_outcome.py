"""Episode outcomes from the simulator's state: each failure kind is recognised on a real env."""

import numpy as np
import pytest

from edgevla.sim.env import StartState, TeaBagMugEnv
from edgevla.sim.expert import ExpertConfig, ScriptedExpert, rollout_expert
from edgevla.sim.outcome import OUTCOMES, OutcomeTracker
from edgevla.sim.scene import MUG_POS


@pytest.fixture(scope="module")
def env():
    return TeaBagMugEnv(render_images=False)


def _hold(env, tracker, ticks):
    q = env.joint_positions()
    for _ in range(ticks):
        env.step(q)
        tracker.update(env)


def test_expert_episode_is_still_holding_mid_carry_then_a_success(env):
    tracker = OutcomeTracker()
    seen = []
    for _, _, info in rollout_expert(env, seed=4):
        tracker.update(env)
        if not seen and env.privileged_state()["bag_pos"][2] > 0.05:
            seen.append(tracker.outcome())  # carried high above the table
    assert seen and seen[0]["outcome"] == "still_holding"
    result = tracker.outcome()
    assert info["success"] and result["outcome"] == "success"
    assert result["bag_max_lift_m"] > 0.05 and result["bag_to_mug_m"] < 0.045


def test_untouched_bag_is_never_lifted(env):
    tracker = OutcomeTracker()
    env.reset(options={"start_state": StartState((0.25, 0.1), 0.0)})
    assert tracker.outcome()["outcome"] == "never_lifted"  # nothing stepped yet
    _hold(env, tracker, 10)
    assert tracker.outcome()["outcome"] == "never_lifted"


def test_bag_let_fall_beside_the_mug_is_dropped(env):
    tracker = OutcomeTracker()
    env.reset(options={"start_state": StartState((0.25, 0.1), 0.0)})
    env.pose_scene(env.joint_positions(), (0.2, 0.1, 0.08), 0.0)  # lifted 7 cm, not held
    tracker.update(env)
    _hold(env, tracker, 40)  # falls onto the table, 0.3 m from the mug
    result = tracker.outcome()
    assert result["outcome"] == "dropped" and result["bag_max_lift_m"] > 0.06
    assert result["bag_to_mug_m"] == pytest.approx(
        np.hypot(0.2 - MUG_POS[0], 0.1 - MUG_POS[1]), abs=0.03
    )
    assert set(OUTCOMES) >= {
        "success",
        "never_lifted",
        "dropped",
        "still_holding",
        "in_mug_not_released",
    }


def test_bag_still_falling_into_the_mug_is_in_mug_not_released_then_a_success(env):
    tracker = OutcomeTracker()
    env.reset(options={"start_state": StartState((0.25, 0.1), 0.0)})
    env.pose_scene(env.joint_positions(), (MUG_POS[0], MUG_POS[1], 0.05), 0.0)
    _hold(env, tracker, 1)  # inside the mug, still moving
    assert tracker.outcome()["outcome"] == "in_mug_not_released"
    _hold(env, tracker, 60)  # settled on the mug's floor, pads far away
    assert tracker.outcome()["outcome"] == "success"


def _grasps(env, seed, **expert_config):
    tracker = OutcomeTracker()
    expert = ScriptedExpert(ExpertConfig(**expert_config))
    for _ in rollout_expert(env, seed=seed, expert=expert):
        tracker.update(env)
    return tracker.outcome()


def test_expert_grasp_is_recorded_once_and_on_target(env):
    result = _grasps(env, seed=4)
    assert result["outcome"] == "success" and len(result["grasps"]) == 1
    g = result["grasps"][0]
    assert abs(g["radial_m"]) < 0.005 and abs(g["tangential_m"]) < 0.005
    assert abs(g["height_m"]) < 0.01 and abs(g["bag_lift_m"]) < 0.005


@pytest.mark.parametrize("aim", [(0.04, 0.0, 0.0), (-0.04, 0.0, 0.0), (0.0, 0.0, 0.04)])
def test_grasp_aimed_off_reports_the_miss_and_its_direction(env, aim):
    """The expert aims 4 cm too far / too short / too high, with no re-grasp: the grasp
    record shows that offset."""
    result = _grasps(env, seed=4, grasp_aim_error=aim, max_regrasps=0)
    g = result["grasps"][0]
    measured = (g["radial_m"], g["tangential_m"], g["height_m"])
    assert measured == pytest.approx(aim, abs=0.012)


def test_grasp_aimed_sideways_reports_the_side(env):
    """4 cm to the right, along the closing direction: a pad lands on the bag and pushes it,
    so the offset at closing is smaller than aimed but on the right side, and higher."""
    g = _grasps(env, seed=4, grasp_aim_error=(0.0, -0.04, 0.0), max_regrasps=0)["grasps"][0]
    assert g["tangential_m"] < -0.015 and abs(g["radial_m"]) < 0.01
