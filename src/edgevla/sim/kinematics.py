"""Closed-form inverse kinematics of the SO-101-class arm in `scene.py`.

The arm is a pan joint followed by three parallel pitch joints (shoulder_lift, elbow_flex,
wrist_flex) and a roll about the gripper axis, with no lateral offsets: the tool point always
lies in the vertical plane set by the pan angle. So a grasp pose reduces to a 2-link planar
problem, solved exactly (no iteration, no local minima, smooth in the target), which is what a
scripted "teleoperator" needs to produce jerk-free joint targets.

Angles in the arm plane are measured from vertical (up) toward the radial direction:
    upper arm   a1 = shoulder_lift
    forearm     a2 = shoulder_lift + pi/2 + elbow_flex
    gripper     a3 = a2 + pi/2 + wrist_flex          (a3 = pi: pointing straight down)
A gripper "tilt" phi tips the approach outward from vertical: a3 = pi - phi.
`tests/sim/test_kinematics.py` checks these against MuJoCo's forward kinematics.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from edgevla.sim.scene import (
    FOREARM,
    JOINT_LIMITS,
    SHOULDER_HEIGHT,
    SHOULDER_OFFSET_X,
    UPPER_ARM,
    WRIST_TO_TCP,
)


class UnreachableError(ValueError):
    """The requested tool pose is outside the arm's reach or joint limits."""


@dataclass(frozen=True)
class GraspPose:
    """Tool-centre-point position (m, world), approach tilt phi (rad, outward from vertical)
    and the world yaw of the pads' closing axis (rad, modulo pi)."""

    position: np.ndarray
    tilt: float = 0.0
    closing_yaw: float | None = None  # None: keep the roll at 0


def wrap_half_pi(angle: float) -> float:
    """Wrap to (-pi/2, pi/2]: the pads are symmetric, so a closing axis is defined modulo pi."""
    a = (angle + math.pi / 2) % math.pi - math.pi / 2
    return a if a != -math.pi / 2 else math.pi / 2


def solve_ik(pose: GraspPose, check_limits: bool = True) -> np.ndarray:
    """Joint angles (5,) = [pan, lift, elbow, wrist_flex, wrist_roll] placing the tool at `pose`.

    Chooses the elbow-up branch. Raises UnreachableError when the pose cannot be reached.
    """
    x, y, z = (float(v) for v in pose.position)
    pan = math.atan2(y, x)
    rho = math.hypot(x, y) - SHOULDER_OFFSET_X  # radial distance from the shoulder-lift axis
    h = z - SHOULDER_HEIGHT
    phi = pose.tilt
    # Wrist-flex axis = TCP minus the gripper vector (direction angle a3 = pi - phi).
    a3 = math.pi - phi
    w_rho = rho - WRIST_TO_TCP * math.sin(a3)
    w_z = h - WRIST_TO_TCP * math.cos(a3)
    d2 = w_rho**2 + w_z**2
    cos_delta = (d2 - UPPER_ARM**2 - FOREARM**2) / (2 * UPPER_ARM * FOREARM)
    if not -1.0 <= cos_delta <= 1.0:
        raise UnreachableError(
            f"tool position {np.round(pose.position, 3).tolist()} with tilt {math.degrees(phi):.0f} deg "
            f"is out of reach (wrist distance {math.sqrt(d2):.3f} m)"
        )
    delta = math.acos(cos_delta)  # a2 - a1, forearm bent forward/down relative to upper arm
    a1 = math.atan2(w_rho, w_z) - math.atan2(
        FOREARM * math.sin(delta), UPPER_ARM + FOREARM * math.cos(delta)
    )
    a2 = a1 + delta
    lift = a1
    elbow = delta - math.pi / 2
    wrist = a3 - a2 - math.pi / 2
    # At roll 0 the closing axis is horizontal, perpendicular to the arm plane (yaw pan+pi/2);
    # the roll axis points up the wrist, so positive roll turns the axis clockwise.
    roll = 0.0 if pose.closing_yaw is None else wrap_half_pi(pan + math.pi / 2 - pose.closing_yaw)
    q = np.array([pan, lift, elbow, wrist, roll])
    if check_limits:
        lo, hi = JOINT_LIMITS[:5, 0], JOINT_LIMITS[:5, 1]
        bad = (q < lo - 1e-9) | (q > hi + 1e-9)
        if bad.any():
            names = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll"]
            which = ", ".join(f"{names[i]}={q[i]:.2f}" for i in np.flatnonzero(bad))
            raise UnreachableError(
                f"tool position {np.round(pose.position, 3).tolist()} needs {which} outside the joint limits"
            )
    return q


def reachable_tilts(
    position: np.ndarray, tilts: Iterable[float]
) -> Iterator[tuple[int, np.ndarray]]:
    """(i, joints (5,)) for each tilts[i], in order, at which the tool reaches `position`
    (roll 0); unreachable tilts are skipped. Far out the gripper must tilt outward to reach,
    so callers search increasing tilts and take the first pose that suits them."""
    for i, tilt in enumerate(tilts):
        try:
            yield i, solve_ik(GraspPose(position, tilt, None))
        except UnreachableError:
            continue


def forward_tcp(q: np.ndarray) -> np.ndarray:
    """TCP position (3,) for joint angles [pan, lift, elbow, wrist_flex, ...] (closed form)."""
    pan, lift, elbow, wrist = (float(v) for v in q[:4])
    a1 = lift
    a2 = a1 + math.pi / 2 + elbow
    a3 = a2 + math.pi / 2 + wrist
    rho = (
        SHOULDER_OFFSET_X
        + UPPER_ARM * math.sin(a1)
        + FOREARM * math.sin(a2)
        + WRIST_TO_TCP * math.sin(a3)
    )
    z = (
        SHOULDER_HEIGHT
        + UPPER_ARM * math.cos(a1)
        + FOREARM * math.cos(a2)
        + WRIST_TO_TCP * math.cos(a3)
    )
    return np.array([rho * math.cos(pan), rho * math.sin(pan), z])
