"""How an episode of the tea-bag task ended, from the simulator's privileged state.

A success rate says how often; an engineer also needs to know why the rest failed, because
each failure points somewhere else: a grasp that never lifts the bag is a perception or
approach problem (more data near the bag, a better trunk), a bag dropped on the way is a grip
problem, a bag still held at the time limit is a policy that lost its place in the task.
`OutcomeTracker` watches an env after every step and classifies the episode as one of OUTCOMES.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgevla.sim.scene import BAG_HALF_SIZE, MUG_POS

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


class OutcomeTracker:
    """Call reset() with env.reset and update(env) after every env.step; then outcome().

    env is a TeaBagMugEnv (privileged_state, pads_touch_bag, bag_in_mug, is_success)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._max_lift = 0.0
        self._last: dict[str, Any] = {}

    def update(self, env) -> None:
        bag = env.privileged_state()["bag_pos"]
        lift = float(bag[2] - BAG_HALF_SIZE[2])
        self._max_lift = max(self._max_lift, lift)
        self._last = {
            "bag_pos": bag,
            "lift": lift,
            "held": env.pads_touch_bag(),
            "in_mug": env.bag_in_mug(),
            "success": env.is_success(),
        }

    def outcome(self) -> dict[str, Any]:
        """{"outcome": one of OUTCOMES, "bag_max_lift_m", "bag_to_mug_m" (final, horizontal)}."""
        last = self._last
        if not last:
            return {"outcome": "never_lifted", "bag_max_lift_m": 0.0, "bag_to_mug_m": None}
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
        return {"outcome": kind, "bag_max_lift_m": self._max_lift, "bag_to_mug_m": to_mug}
