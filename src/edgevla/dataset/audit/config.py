"""What the audit measures against: every threshold is a field here, with the reason for its
default, so a reader of a report can tell why a line passed or failed (and a user can loosen one
for a small test recording without touching code)."""

from __future__ import annotations

from dataclasses import dataclass

from edgevla_runtime.features import CAMERA_NAMES


@dataclass(frozen=True)
class AuditConfig:
    """Thresholds of `edgevla audit`. Image quantities are in 8-bit grey levels (0..255) or RGB
    distances (0..441); shifts in pixels of the recorded image."""

    # --- coverage -------------------------------------------------------------------------
    min_episodes_per_cluster: int = 10
    """the paper's rule: at least 10 episodes in every 10 x 10 cm cluster"""
    recovery_share_min: float = 0.10
    """recovery episodes / training episodes; the paper used ~20% (2 of 12 per cluster)"""
    recovery_share_max: float = 0.30
    """above this the policy sees the scene mostly from the mug side"""
    val_clusters: tuple[int, ...] | None = None
    """held-out clusters; None reads them from the plan saved with the dataset"""

    # --- camera consistency ---------------------------------------------------------------
    consistency_threshold: float = 0.12
    """net share of an episode's visible static structure that a camera motion brings back
    into register (see imaging.py); measured: clean recordings <= 0.05 (130 episodes), a top
    camera moved 2 cm sideways or turned 1-2 degrees 0.26-0.50, moved 2 cm along its axis 0.20,
    a wrist camera turned 2 degrees 0.29-0.50"""
    min_shift_px: float = 1.0
    """a motion must move the static scene by at least this much to count (sub-pixel fits
    explain codec noise, not a slipped mount)"""
    max_shift_px: int = 8
    """search range; 2 cm on the top camera is 3-6 px at 96x128 (more for the tall arm)"""
    wrist_cameras: tuple[str, ...] = ("gripper",)
    """cameras that move with the arm: compared on the gripper body only"""
    static_agreement: float = 0.7
    """a pixel is static scene when this share of first frames agrees with the median; the
    rest (the bag, the arm of recovery starts) is ignored"""
    agree_tol: float = 12.0
    """grey levels within which a first frame agrees with the median (codec noise ~3)"""
    edge_min: float = 3.0
    """grey levels per pixel (after a 5x5 blur) for a static pixel to carry structure"""
    body_persistence: float = 0.6
    """wrist cameras: share of episodes in which a pixel stays an edge in every sampled frame
    while the arm moves (the claws and palm do, the table and mug do not)"""
    gripper_tol: float = 0.1
    """wrist cameras: only episodes starting with the gripper opened like most (within this
    many radians of the median) are compared; the claws' place in the image follows the
    opening, so a recovery start with the gripper half open is not comparable"""
    sample_fractions: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    """where in each episode frames are decoded (0 = first frame, the one compared)"""

    # --- lighting -------------------------------------------------------------------------
    brightness_rel_tol: float = 0.15
    """relative brightness change of the static scene that fails; clean recordings stay
    within 2% (130 episodes), light intensity -40% drops it 38-39%"""
    robust_z: float = 6.0
    """deviations must also exceed this many robust standard deviations (1.4826 MAD)"""
    histogram_drift_tol: float = 8.0
    """grey levels of earth mover's distance between an episode's static-scene histogram and
    the reference (a warning: contrast or colour changed even if the mean did not); clean
    <= 2.5, light -40% 15-25"""

    # --- contrast -------------------------------------------------------------------------
    contrast_cameras: tuple[str, ...] = ("top",)
    """cameras whose view of arm and object is judged (the global view by default)"""
    min_object_contrast: float = 60.0
    """median RGB distance between the object and what it covers in the reference view (it
    starts somewhere else in most episodes); orange bag on the dark table ~103, on a white
    table ~97, on a table of nearly its own colour 20-35"""
    min_arm_contrast: float = 90.0
    """median RGB distance over what changed between the first frame and mid-episode (the arm
    and what it carries); white arm on the dark table ~180, on an orange table ~145, with the
    light at 60% ~135, on a white table ~59"""
    change_tol: float = 10.0
    """RGB distance (after a 5x5 blur) above which a pixel counts as changed; codec noise
    stays below ~5"""

    # --- integrity ------------------------------------------------------------------------
    timestamp_tol_s: float = 1e-4
    """LeRobot's own tolerance between a frame's timestamp and frame_index / fps"""
    joint_limit_tol: float = 0.05
    """radians a recorded joint may pass its limit (contact and servo overshoot)"""
    length_ratio_max: float = 2.0
    """episodes shorter than median / r or longer than median * r are flagged as aborted or
    stalled demonstrations (a warning)"""

    # --- no cheating ----------------------------------------------------------------------
    allowed_cameras: tuple[str, ...] = CAMERA_NAMES
    """camera streams a policy may see at run time"""

    def __post_init__(self) -> None:
        if self.min_episodes_per_cluster < 1:
            raise ValueError(
                f"min_episodes_per_cluster={self.min_episodes_per_cluster}: must be >= 1"
            )
        if not 0.0 <= self.recovery_share_min <= self.recovery_share_max <= 1.0:
            raise ValueError(
                f"recovery share band [{self.recovery_share_min}, {self.recovery_share_max}] must "
                "satisfy 0 <= min <= max <= 1 (the paper's ~0.2 sits inside the default 0.1..0.3)"
            )
        for name in ("consistency_threshold", "static_agreement", "body_persistence"):
            value = getattr(self, name)
            if not 0.0 < value <= 1.0:
                raise ValueError(f"{name}={value} must be in (0, 1]")
        if self.max_shift_px < 1 or self.min_shift_px <= 0 or self.min_shift_px > self.max_shift_px:
            raise ValueError(
                f"need 0 < min_shift_px ({self.min_shift_px}) <= max_shift_px ({self.max_shift_px})"
            )
        fr = self.sample_fractions
        if not fr or fr[0] != 0.0 or any(not 0.0 <= f <= 1.0 for f in fr):
            raise ValueError(
                f"sample_fractions={fr} must start with 0.0 (the first frame) and lie in [0, 1]"
            )
        if self.brightness_rel_tol <= 0 or self.robust_z <= 0 or self.length_ratio_max <= 1:
            raise ValueError("brightness_rel_tol and robust_z must be > 0 and length_ratio_max > 1")
