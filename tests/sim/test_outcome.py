"""Episode outcomes from the simulator's state: each failure kind is recognised on a real env."""

import numpy as np
import pytest

from edgevla.sim.env import StartState, TeaBagMugEnv
from edgevla.sim.expert import rollout_expert
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
