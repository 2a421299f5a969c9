"""The checks that look at the pictures: camera consistency, lighting and contrast.

Every reference is built from the dataset itself, robustly, so a few bad episodes cannot hide
in it: per camera, the per-pixel median of the episodes' first frames (the arm starts at rest,
or near the mug for recovery starts) is the reference view, and a pixel is "static scene" when
most first frames agree with it there (the table, the mug, the base, the arm at rest; not the
bag, which starts somewhere else every time). Lighting is judged on those static pixels, so a
bag or an arm in an unusual place does not read as a light change; camera consistency is judged
on the static pixels that carry structure (see imaging.py for the score).

The wrist camera moves with the arm, so its static scene is the gripper itself: the pixels that
stay edges in every sampled frame of an episode while the arm travels (claws, palm), in most
episodes. The table and mug behind them slide through the view and drop out.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from edgevla_runtime.features import MOTOR_NAMES

from edgevla.dataset.audit.config import AuditConfig
from edgevla.dataset.audit.data import AuditData
from edgevla.dataset.audit.findings import Finding, episode_list
from edgevla.dataset.audit.imaging import align, blur, gradient_magnitude, luma

CONSISTENCY, LIGHTING, CONTRAST = "camera consistency", "lighting", "contrast"
MIN_REFERENCE_EPISODES = 3  # a median of fewer is not a reference
MIN_STRUCTURE_PX = 30  # fewer static-structure pixels cannot pin a camera motion
MIN_CHANGED_PX = 6  # fewer changed pixels than this: nothing visibly moved
GRIPPER = "gripper"  # the joint whose opening places the claws in the wrist camera's image


def _by_episode(eps: list[int], values) -> dict[int, float]:
    return {e: float(v) for e, v in zip(eps, values, strict=True)}


def _mad_sigma(x: np.ndarray) -> float:
    """Robust standard deviation (1.4826 x median absolute deviation)."""
    return float(1.4826 * np.median(np.abs(x - np.median(x))))


def _outliers(x: np.ndarray, rel_floor: float, z: float) -> np.ndarray:
    """Boolean mask of values further from the median than max(z robust sigmas, rel_floor x
    median). The floor matters in simulation, where clean episodes can be identical (MAD 0)."""
    med = float(np.median(x))
    tol = max(z * _mad_sigma(x), rel_floor * abs(med))
    return np.abs(x - med) > tol


def _static_reference(
    l0: np.ndarray, cfg: AuditConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(gains (E,), reference (H, W), static mask (H, W)) from first-frame lumas (E, H, W).

    Each episode is first scaled to the dataset's brightness (gain estimated on the static
    pixels, refined once), so a dimmer episode still agrees in shape and the lighting check,
    not this mask, reports it."""
    n = len(l0)
    gains = np.median(l0.reshape(n, -1), axis=1) / max(float(np.median(l0)), 1.0)
    for _ in range(2):
        norm = l0 / np.maximum(gains, 1e-3)[:, None, None]
        ref = np.median(norm, axis=0)
        static = (np.abs(norm - ref) < cfg.agree_tol).mean(axis=0) >= cfg.static_agreement
        if not static.any():
            break
        gains = np.median(l0[:, static], axis=1) / max(float(np.median(ref[static])), 1.0)
    return gains, ref, static


def _body_mask(samples: list[np.ndarray], cfg: AuditConfig) -> np.ndarray:
    """Wrist camera: pixels that are edges in every sampled frame of an episode, in at least
    body_persistence of the episodes."""
    persistent = [(gradient_magnitude(blur(luma(s))) >= cfg.edge_min).all(axis=0) for s in samples]
    return np.mean(persistent, axis=0) >= cfg.body_persistence


def _blur_rgb(frames: np.ndarray) -> np.ndarray:
    """(E, H, W, 3) uint8 -> blurred float32 (codec noise would otherwise count as change)."""
    return np.moveaxis(blur(np.moveaxis(frames.astype(np.float32), -1, 1)), 1, -1)


def _contrast(diff: np.ndarray, cfg: AuditConfig) -> float:
    """Median RGB distance over the pixels that changed (0 when almost none did)."""
    changed = diff[diff > cfg.change_tol]
    return float(np.median(changed)) if changed.size >= MIN_CHANGED_PX else 0.0


def check_views(data: AuditData, cfg: AuditConfig) -> tuple[list[Finding], dict[str, Any]]:
    """Findings of the three image checks, and {camera: {metric: {episode: value}}} for the
    JSON report and the figures."""
    if data.reader is None:
        skipped = "skipped: the dataset could not be opened (see integrity)"
        return [
            Finding(CONSISTENCY, "all cameras", "warn", skipped),
            Finding(LIGHTING, "all cameras", "warn", skipped),
        ], {}
    findings: list[Finding] = []
    metrics: dict[str, dict[str, dict[int, float]]] = {}
    for cam in data.cameras:
        samples = data.sample_frames(cam, cfg.sample_fractions)
        eps = sorted(samples)
        if len(eps) < MIN_REFERENCE_EPISODES:
            findings.append(
                Finding(
                    CONSISTENCY, f"camera {cam}", "warn",
                    f"only {len(eps)} decodable episodes: need {MIN_REFERENCE_EPISODES} for a "
                    "reference view; not judged",
                )
            )  # fmt: skip
            continue
        first = np.stack([samples[e][0] for e in eps])  # (E, H, W, 3) uint8
        l0 = blur(luma(first))  # (E, H, W)
        gains, ref, static = _static_reference(l0, cfg)
        norm = l0 / np.maximum(gains, 1e-3)[:, None, None]
        m = metrics.setdefault(cam, {})
        if cam in cfg.wrist_cameras and len(cfg.sample_fractions) >= 3:
            # Not judged for lighting: its view and its body's shading follow the arm's pose.
            findings.append(_wrist_consistency(data, cam, eps, samples, norm, cfg, m))
        else:
            if static.sum() >= MIN_STRUCTURE_PX:
                _measure_lighting(eps, l0, static, m)
            structure = static & (gradient_magnitude(ref) >= cfg.edge_min)
            findings.append(_consistency(cam, eps, norm, ref, structure, "static scene", cfg, m))
        if cam in cfg.contrast_cameras:
            _measure_contrast(eps, first, samples, cfg, m)
            findings += _contrast_findings(cam, m, cfg)
    findings += _lighting_findings(metrics, cfg)
    return findings, metrics


def _measure_lighting(
    eps: list[int], l0: np.ndarray, static: np.ndarray, m: dict[str, dict[int, float]]
) -> None:
    """Brightness (mean grey level) of the static scene in each first frame, raw (not gain
    corrected), and the 1-D earth mover's distance of its histogram to the reference's."""
    values = l0[:, static]  # (E, P)
    bright = values.mean(axis=1)
    ref_sorted = np.sort(np.median(l0, axis=0)[static])
    drift = np.abs(np.sort(values, axis=1) - ref_sorted).mean(axis=1)
    m["brightness"] = _by_episode(eps, bright)
    m["brightness_rel"] = _by_episode(eps, bright / max(float(np.median(bright)), 1e-6) - 1)
    m["histogram_drift"] = _by_episode(eps, drift)


def _measure_contrast(
    eps: list[int],
    first: np.ndarray,
    samples: dict[int, np.ndarray],
    cfg: AuditConfig,
    m: dict[str, dict[int, float]],
) -> None:
    """Object contrast: first frame vs the reference view, where the object is the main thing
    that differs (it starts somewhere else in most episodes). Arm contrast: mid-episode vs
    first frame of the same episode, where the arm is what moved."""
    mid = int(np.argmin(np.abs(np.asarray(cfg.sample_fractions) - 0.5)))
    f = _blur_rgb(first)
    later = _blur_rgb(np.stack([samples[e][mid] for e in eps]))
    ref_rgb = np.median(f, axis=0)
    obj = [_contrast(np.linalg.norm(x - ref_rgb, axis=-1), cfg) for x in f]
    arm = [_contrast(np.linalg.norm(b - a, axis=-1), cfg) for a, b in zip(f, later, strict=True)]
    m["object_contrast"] = _by_episode(eps, obj)
    m["arm_contrast"] = _by_episode(eps, arm)


def _wrist_consistency(
    data: AuditData,
    cam: str,
    eps: list[int],
    samples: dict[int, np.ndarray],
    norm: np.ndarray,
    cfg: AuditConfig,
    m: dict[str, dict[int, float]],
) -> Finding:
    """The wrist camera, judged on the gripper body in the episodes that start with the
    gripper opened like most do: the claws' place in the image follows the opening (a recovery
    start with the gripper half open would read as a zoom)."""
    assert data.reader is not None
    keep = np.ones(len(eps), dtype=bool)
    if GRIPPER in MOTOR_NAMES and data.reader.frames(eps[0]).state.shape[1] == len(MOTOR_NAMES):
        j = MOTOR_NAMES.index(GRIPPER)
        opening = np.array([data.reader.frames(e).state[0, j] for e in eps])
        keep = np.abs(opening - np.median(opening)) <= cfg.gripper_tol
    idx = np.flatnonzero(keep)
    if len(idx) < MIN_REFERENCE_EPISODES:
        return Finding(
            CONSISTENCY, f"camera {cam}", "warn",
            f"only {len(idx)} episodes start with the usual gripper opening: no reference for "
            "the gripper body; not judged",
        )  # fmt: skip
    kept = [eps[i] for i in idx]
    structure = _body_mask([samples[e] for e in kept], cfg)
    ref = np.median(norm[idx], axis=0)
    note = (
        f"; {len(eps) - len(idx)} starting with another gripper opening not compared"
        if len(idx) < len(eps)
        else ""
    )
    found = _consistency(cam, kept, norm[idx], ref, structure, "gripper body", cfg, m)
    return Finding(
        found.check, found.item, found.status, found.detail + note, found.episodes, found.value
    )


def _consistency(
    cam: str,
    eps: list[int],
    frames: np.ndarray,
    ref: np.ndarray,
    structure: np.ndarray,
    what: str,
    cfg: AuditConfig,
    m: dict[str, dict[int, float]],
) -> Finding:
    """Score every episode's camera motion against the reference over `structure`."""
    n_px = int(structure.sum())
    if n_px < MIN_STRUCTURE_PX:
        return Finding(
            CONSISTENCY, f"camera {cam}", "warn",
            f"only {n_px} pixels of {what} with structure: too little to tell whether the camera "
            "moved; not judged",
        )  # fmt: skip
    fits = [align(x, ref, structure, cfg.max_shift_px, cfg.min_shift_px) for x in frames]
    m["consistency"] = _by_episode(eps, [a.score for a in fits])
    m["shift_px"] = _by_episode(eps, [a.shift_px for a in fits])
    moved = [(e, a) for e, a in zip(eps, fits, strict=True) if a.score >= cfg.consistency_threshold]
    if not moved:
        top = max(a.score for a in fits)
        return Finding(
            CONSISTENCY, f"camera {cam}", "pass",
            f"{len(eps)} episodes agree on the {what} ({n_px} px; highest score {top:.2f} < "
            f"{cfg.consistency_threshold})", value={"max_score": top},
        )  # fmt: skip
    worst = ", ".join(
        f"episode {e}: {a.shift_px:.1f} px (score {a.score:.2f}; shift {a.dx:+.1f},{a.dy:+.1f} px, "
        f"roll {a.roll_deg:+.1f} deg, zoom {a.zoom:.3f})"
        for e, a in sorted(moved, key=lambda p: -p[1].score)[:3]
    )
    return Finding(
        CONSISTENCY, f"camera {cam}", "fail",
        f"the {what} moved in episodes {episode_list([e for e, _ in moved])}: {worst}. A mount "
        "that slipped; fix it and re-record these episodes (a policy trained across two camera "
        "poses loses accuracy at the one it is evaluated in)",
        episodes=tuple(e for e, _ in moved),
        value={str(e): {"score": a.score, "shift_px": a.shift_px} for e, a in moved},
    )  # fmt: skip


def _lighting_findings(
    metrics: dict[str, dict[str, dict[int, float]]], cfg: AuditConfig
) -> list[Finding]:
    """One brightness line (fail) and one histogram line (warn) over all judged cameras; an
    episode is named with the camera where it deviates most."""
    cams = [c for c, m in metrics.items() if "brightness" in m]
    if not cams:
        return [
            Finding(
                LIGHTING,
                "brightness",
                "warn",
                "no camera shows enough static scene to judge lighting",
            )
        ]
    light: dict[int, tuple[str, float]] = {}
    drift: dict[int, tuple[str, float]] = {}
    for cam in cams:
        eps = list(metrics[cam]["brightness"])
        bright = np.array(list(metrics[cam]["brightness"].values()))
        rel = np.array(list(metrics[cam]["brightness_rel"].values()))
        for i in np.flatnonzero(_outliers(bright, cfg.brightness_rel_tol, cfg.robust_z)):
            if abs(rel[i]) > abs(light.get(eps[i], ("", 0.0))[1]):
                light[eps[i]] = (cam, float(rel[i]))
        d = np.array(list(metrics[cam]["histogram_drift"].values()))
        tol = max(cfg.histogram_drift_tol, float(np.median(d)) + cfg.robust_z * _mad_sigma(d))
        for i in np.flatnonzero(d > tol):
            if d[i] > drift.get(eps[i], ("", 0.0))[1]:
                drift[eps[i]] = (cam, float(d[i]))
    out = []
    if light:
        eps = sorted(light)
        worst = ", ".join(f"episode {e}: {light[e][1]:+.0%} ({light[e][0]})" for e in eps[:4])
        out.append(
            Finding(
                LIGHTING, "brightness", "fail",
                f"the static scene's brightness left the dataset median by more than "
                f"{cfg.brightness_rel_tol:.0%} in episodes {episode_list(eps)} ({worst}): lighting "
                "changed (daylight, a lamp); fix the light and re-record them",
                episodes=tuple(eps), value={str(e): v[1] for e, v in light.items()},
            )
        )  # fmt: skip
    else:
        out.append(
            Finding(
                LIGHTING, "brightness", "pass",
                f"every episode within {cfg.brightness_rel_tol:.0%} of the median ({', '.join(cams)})",
            )
        )  # fmt: skip
    if drift:
        eps = sorted(drift)
        worst = ", ".join(f"episode {e}: {drift[e][1]:.1f} ({drift[e][0]})" for e in eps[:4])
        out.append(
            Finding(
                LIGHTING, "histogram drift", "warn",
                f"the static scene's grey-level histogram moved by more than "
                f"{cfg.histogram_drift_tol:g} levels (earth mover's distance) in episodes "
                f"{episode_list(eps)} ({worst})",
                episodes=tuple(eps), value={str(e): v[1] for e, v in drift.items()},
            )
        )  # fmt: skip
    else:
        out.append(Finding(LIGHTING, "histogram drift", "pass", "histograms match the reference"))
    return out


def _contrast_findings(cam: str, m: dict[str, dict[int, float]], cfg: AuditConfig) -> list[Finding]:
    out = []
    for key, what, limit, example in (
        ("object_contrast", "object vs background", cfg.min_object_contrast, "an orange bag on an orange table"),
        ("arm_contrast", "arm vs background", cfg.min_arm_contrast, "a white arm on a white table"),
    ):  # fmt: skip
        values = np.asarray(list(m[key].values()))
        med = float(np.median(values))
        if med < limit:
            low = [e for e, v in m[key].items() if v < limit]
            out.append(
                Finding(
                    CONTRAST, f"{what} ({cam})", "warn",
                    f"median colour distance {med:.0f} < {limit:g} (low in {len(low)} of "
                    f"{len(values)} episodes): the policy can barely tell them apart, like "
                    f"{example}; change the background or the colours",
                    episodes=tuple(low), value=med,
                )
            )  # fmt: skip
        else:
            out.append(
                Finding(
                    CONTRAST, f"{what} ({cam})", "pass",
                    f"median colour distance {med:.0f} >= {limit:g} (lowest {values.min():.0f})",
                    value=med,
                )
            )  # fmt: skip
    return out
