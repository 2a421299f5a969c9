"""How an episode of the tea-bag task ended, from the simulator's privileged state.

A success rate says how often; an engineer also needs to know why the rest failed, because
each failure points somewhere else: a grasp that never lifts the bag is a perception or
approach problem (more data near the bag, a better trunk), a bag dropped on the way is a grip
problem, a bag still held at the time limit is a policy that lost its place in the task.
`OutcomeTracker` watches an env after every step and classifies the episode as one of OUTCOMES.

It also records every grasp the arm tries (the pads closing past the bag's widest side) with
where the tool was relative to the bag at that moment, so a missed grasp says by how much and
in which direction: too far / too short (radial), beside (tangential), too high (tcp height).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgevla.sim.scene import BAG_HALF_SIZE, MUG_POS, gripper_gap

# Above its resting height the bag counts as lifted: 3.5 cm, more than a bag pushed onto its
# 6 cm edge raises its centre (2.25 cm), less than the expert's lift (over 4 cm).
LIFT_M = 0.035
OUTCOMES = (
    "success",  # in the mug, released, at rest
    "never_lifted",  # the bag never left the table: the grasp missed or never happened
    "dropped",  # lifted, then left outside the mug, not held at the end
    "still_holding",  # held off the table when the episode ended
    "in_mug_not_released",  # in the mug but a pad still touches it (or it is still moving)
)
# A grasp starts when the pad gap falls below CLOSING_GAP_M (just wider than the bag's 6 cm
# side: the pads are about to touch it) after having been open wider than OPEN_GAP_M.
OPEN_GAP_M = 0.075
CLOSING_GAP_M = 0.065


class OutcomeTracker:
    """Call reset() with env.reset and update(env) after every env.step; then outcome().

    env is a TeaBagMugEnv (privileged_state, pads_touch_bag, bag_in_mug, is_success)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._max_lift = 0.0
        self._last: dict[str, Any] = {}
        self._opened = False
        self._grasps: list[dict[str, float]] = []

    def update(self, env) -> None:
        priv = env.privileged_state()
        bag = priv["bag_pos"]
        lift = float(bag[2] - BAG_HALF_SIZE[2])
        self._watch_gripper(priv, lift)
        self._max_lift = max(self._max_lift, lift)
        self._last = {
            "bag_pos": bag,
            "lift": lift,
            "held": env.pads_touch_bag(),
            "in_mug": env.bag_in_mug(),
            "success": env.is_success(),
        }

    def _watch_gripper(self, priv: dict[str, np.ndarray], lift: float) -> None:
        gap = gripper_gap(float(priv["joint_pos"][5]))
        if gap > OPEN_GAP_M:
            self._opened = True
        elif self._opened and gap < CLOSING_GAP_M:
            self._opened = False
            self._grasps.append(
                grasp_offset(priv["tcp_pos"], priv["bag_pos"]) | {"bag_lift_m": lift}
            )

    def outcome(self) -> dict[str, Any]:
        """{"outcome": one of OUTCOMES, "bag_max_lift_m", "bag_to_mug_m" (final, horizontal),
        "grasps": [grasp_offset(...) + bag_lift_m at each grasp, in order]}."""
        grasps = {"grasps": list(self._grasps)}
        last = self._last
        if not last:
            return {"outcome": "never_lifted", "bag_max_lift_m": 0.0, "bag_to_mug_m": None} | grasps
        bag = last["bag_pos"]
        to_mug = float(np.hypot(bag[0] - MUG_POS[0], bag[1] - MUG_POS[1]))
        if last["success"]:
            kind = "success"
        elif last["in_mug"]:
            kind = "in_mug_not_released"
        elif self._max_lift < LIFT_M:
            kind = "never_lifted"
        elif last["held"] and last["lift"] >= LIFT_M:
            kind = "still_holding"
        else:
            kind = "dropped"
        return {"outcome": kind, "bag_max_lift_m": self._max_lift, "bag_to_mug_m": to_mug} | grasps


def grasp_offset(tcp_pos: np.ndarray, bag_pos: np.ndarray) -> dict[str, float]:
    """Where the tool point is relative to the bag's centre, in the arm's polar frame (m).

    radial_m > 0: beyond the bag (too far from the base); tangential_m > 0: to the bag's
    left as seen from the base (counter-clockwise); height_m: tool point above the bag's centre.
    The expert closes with all three within 5 mm."""
    theta = np.arctan2(bag_pos[1], bag_pos[0])
    radial_dir = np.array([np.cos(theta), np.sin(theta)])
    d = np.asarray(tcp_pos[:2], dtype=np.float64) - np.asarray(bag_pos[:2], dtype=np.float64)
    return {
        "radial_m": float(d @ radial_dir),
        "tangential_m": float(d @ np.array([-radial_dir[1], radial_dir[0]])),
        "height_m": float(tcp_pos[2] - bag_pos[2]),
    }
