"""Integrity (is every frame there, in time, finite and physically possible?) and "no
cheating" (does the dataset hold only what the policy will see at run time?)."""

from __future__ import annotations

import numpy as np
from edgevla_runtime.features import ACTION_KEY, IMAGE_KEY_PREFIX, MOTOR_NAMES, STATE_KEY, image_key

from edgevla.dataset.audit.config import AuditConfig
from edgevla.dataset.audit.data import AuditData, video_files
from edgevla.dataset.audit.findings import Finding, episode_list
from edgevla.dataset.lerobot import layout
from edgevla.dataset.video import VideoError, probe_video
from edgevla.sim.scene import JOINT_LIMITS

INTEGRITY = "integrity"
NO_CHEATING = "no cheating"


def check_integrity(data: AuditData, cfg: AuditConfig) -> list[Finding]:
    out = [
        Finding(INTEGRITY, "dataset opens", "fail", msg + " (the other checks ran on what could be read)")
        for msg in data.load_errors
    ]  # fmt: skip
    if data.reader is None:
        return out or [Finding(INTEGRITY, "dataset opens", "fail", "the dataset could not be read")]
    out.append(_video_frames(data))
    out += _per_frame(data, cfg)
    out.append(_lengths(data, cfg))
    return out


def decode_findings(data: AuditData) -> list[Finding]:
    """Episodes whose frame count was right but whose frames did not decode (run after the
    image checks, which are what decode them)."""
    if not data.decode_errors:
        return []
    eps = sorted({e for _, e in data.decode_errors})
    first = next(iter(data.decode_errors.values()))
    return [
        Finding(
            INTEGRITY, "frames decode", "fail",
            f"episodes {episode_list(eps)} have undecodable frames (first: {first}); re-encode "
            "or re-record them", episodes=tuple(eps),
        )
    ]  # fmt: skip


def check_video_metadata(data: AuditData) -> list[Finding]:
    """Does meta/info.json describe the videos that are stored: size, rate and codec of every
    mp4 (frame counts are the "video frames = rows" line)? A training loader trusts info.json:
    a mismatch resizes, retimes or fails to decode every frame."""
    keys = layout.video_keys(data.info.get("features", {}))
    if not keys:
        return []
    wrong: list[str] = []
    checked = 0
    for key in keys:
        feature = data.info["features"][key]
        shape = list(feature.get("shape") or [])
        block = feature.get("info") or {}
        fps = block.get("video.fps", data.fps)
        for path in video_files(data, key):
            if not path.is_file():
                continue  # missing: the "video frames = rows" line says so
            try:
                probe = probe_video(path)
            except VideoError:
                continue  # unreadable: likewise
            checked += 1
            rel = path.relative_to(data.root)
            if shape[:2] != [probe.height, probe.width]:
                wrong.append(
                    f"{rel} is {probe.height}x{probe.width}, info.json says "
                    f"{'x'.join(map(str, shape[:2])) or 'nothing'}"
                )
            for what, said in (("fps", data.fps), ("video.fps", fps)):
                if probe.fps and said and abs(float(probe.fps) - float(said)) > 1e-3:
                    wrong.append(
                        f"{rel} runs at {float(probe.fps):g} fps, info.json {what} says {said}"
                    )
            codec = block.get("video.codec")
            if codec and probe.codec and codec != probe.codec:
                wrong.append(f"{rel} is {probe.codec}, info.json says {codec}")
    if wrong:
        return [
            Finding(
                INTEGRITY, "video metadata", "fail",
                "; ".join(dict.fromkeys(wrong)) + ". meta/info.json does not describe the "
                "stored videos: loaders would mis-size or mis-time every frame; restore the "
                "dataset from a copy or re-record it",
                value=list(dict.fromkeys(wrong)),
            )
        ]  # fmt: skip
    if not checked:
        return []
    return [
        Finding(
            INTEGRITY, "video metadata", "pass",
            f"{checked} video files match info.json (size, fps, codec)",
        )
    ]  # fmt: skip


def _video_frames(data: AuditData) -> Finding:
    lengths = np.array([row["length"] for row in data.episodes], dtype=np.int64)
    bad: dict[str, list[int]] = {}
    for camera, counts in data.video_frames.items():
        wrong = np.flatnonzero(counts != lengths)
        if len(wrong):
            bad[camera] = wrong.tolist()
    if not bad and not data.video_problems:
        return Finding(
            INTEGRITY, "video frames = rows", "pass",
            f"{len(data.video_frames)} cameras x {len(lengths)} episodes: every video holds one "
            "frame per data row",
        )  # fmt: skip
    parts = [
        f"{cam}: episodes {episode_list(eps)} (e.g. episode {eps[0]}: "
        f"{data.video_frames[cam][eps[0]]} frames for {lengths[eps[0]]} rows)"
        for cam, eps in bad.items()
    ]
    eps = sorted({e for v in bad.values() for e in v})
    return Finding(
        INTEGRITY, "video frames = rows", "fail",
        "; ".join(data.video_problems + parts) + ". A truncated or missing video: restore it "
        "from a copy or re-record those episodes",
        episodes=tuple(eps), value={c: v for c, v in bad.items()},
    )  # fmt: skip


def _per_frame(data: AuditData, cfg: AuditConfig) -> list[Finding]:
    assert data.reader is not None
    fps = data.fps
    time_bad, nan_bad, state_bad, action_bad = [], [], [], []
    worst_state: dict[str, float] = {}
    lo, hi = JOINT_LIMITS[:, 0] - cfg.joint_limit_tol, JOINT_LIMITS[:, 1] + cfg.joint_limit_tol
    for e in range(len(data.episodes)):
        f = data.reader.frames(e)
        n = len(f)
        if not np.array_equal(f.frame_index, np.arange(n)) or (
            np.abs(f.timestamp.astype(np.float64) - np.arange(n) / fps).max(initial=0.0)
            > cfg.timestamp_tol_s
        ):
            time_bad.append(e)
        finite = np.isfinite(f.state).all() and np.isfinite(f.action).all()
        if not finite:
            nan_bad.append(e)
            continue
        if f.state.shape[1] == len(MOTOR_NAMES):
            out_s = (f.state < lo) | (f.state > hi)
            if out_s.any():
                state_bad.append(e)
                for j in np.flatnonzero(out_s.any(0)):
                    worst_state[MOTOR_NAMES[j]] = float(
                        np.abs(f.state[:, j] - np.clip(f.state[:, j], lo[j], hi[j])).max()
                    )
            if ((f.action < lo) | (f.action > hi)).any():
                action_bad.append(e)
    out = []
    if time_bad:
        out.append(
            Finding(
                INTEGRITY, "timestamps", "fail",
                f"episodes {episode_list(time_bad)}: frame_index is not 0..T-1 or timestamps "
                f"leave frame_index / {fps} by more than {cfg.timestamp_tol_s} s (dropped or "
                "duplicated frames); LeRobot will refuse or misalign them",
                episodes=tuple(time_bad),
            )
        )  # fmt: skip
    else:
        out.append(
            Finding(INTEGRITY, "timestamps", "pass", f"continuous at {fps} fps in every episode")
        )
    if nan_bad:
        out.append(
            Finding(
                INTEGRITY, "finite values", "fail",
                f"episodes {episode_list(nan_bad)} have NaN or inf in {STATE_KEY} or "
                f"{ACTION_KEY}: normalisation statistics and training would be poisoned; drop "
                "or re-record them",
                episodes=tuple(nan_bad),
            )
        )  # fmt: skip
    else:
        out.append(Finding(INTEGRITY, "finite values", "pass", "no NaN or inf in state or action"))
    if state_bad:
        joints = ", ".join(f"{j} by {v:.2f} rad" for j, v in worst_state.items())
        out.append(
            Finding(
                INTEGRITY, "joint limits", "fail",
                f"episodes {episode_list(state_bad)} record joints beyond their limits "
                f"(+{cfg.joint_limit_tol} rad): {joints}; check the calibration",
                episodes=tuple(state_bad), value=worst_state,
            )
        )  # fmt: skip
    elif action_bad:
        out.append(
            Finding(
                INTEGRITY, "joint limits", "warn",
                f"episodes {episode_list(action_bad)} command targets beyond the joint limits "
                "(the servos clip them; the policy learns unreachable targets)",
                episodes=tuple(action_bad),
            )
        )  # fmt: skip
    else:
        out.append(
            Finding(INTEGRITY, "joint limits", "pass", "state and action within the joint limits")
        )
    return out


def _lengths(data: AuditData, cfg: AuditConfig) -> Finding:
    lengths = np.array([row["length"] for row in data.episodes], dtype=np.float64)
    med = float(np.median(lengths))
    r = cfg.length_ratio_max
    odd = np.flatnonzero((lengths < med / r) | (lengths > med * r)).tolist()
    text = f"median {med:.0f} frames ({med / max(data.fps, 1):.1f} s), range {lengths.min():.0f}..{lengths.max():.0f}"
    if odd:
        return Finding(
            INTEGRITY, "episode lengths", "warn",
            f"episodes {episode_list(odd)} are under median/{r:g} or over median*{r:g} ({text}): "
            "aborted or stalled demonstrations? Watch them before training",
            episodes=tuple(odd), value={int(e): int(lengths[e]) for e in odd},
        )  # fmt: skip
    return Finding(INTEGRITY, "episode lengths", "pass", text)


def check_no_cheating(data: AuditData, cfg: AuditConfig) -> list[Finding]:
    """Only policy-visible inputs may be recorded: a privileged column (object pose, an extra
    camera the robot will not have) lets a policy learn from what it cannot see at run time."""
    allowed = {STATE_KEY, ACTION_KEY, *layout.DEFAULT_FEATURES}
    allowed |= {image_key(c) for c in cfg.allowed_cameras}
    features = list(data.info.get("features", {}))
    extra = [k for k in features if k not in allowed]
    extra += [c for c in data.data_columns if c not in allowed and c not in extra]
    if extra:
        cams = [k for k in extra if k.startswith(IMAGE_KEY_PREFIX)]
        hint = f" (cameras allowed: {list(cfg.allowed_cameras)})" if cams else ""
        return [
            Finding(
                NO_CHEATING, "policy inputs", "fail",
                f"{extra} are not inputs the policy has at run time{hint}; record only "
                f"{STATE_KEY}, {ACTION_KEY} and the camera streams (plan bookkeeping belongs in "
                "per-episode columns)",
                value=extra,
            )
        ]  # fmt: skip
    cams = [k for k in features if k.startswith(IMAGE_KEY_PREFIX)]
    if not features:
        return [
            Finding(
                NO_CHEATING, "policy inputs", "warn",
                "meta/info.json could not be read: only the frame data's columns were judged "
                f"(none beyond {STATE_KEY}, {ACTION_KEY} and LeRobot's defaults)",
            )
        ]  # fmt: skip
    return [
        Finding(
            NO_CHEATING, "policy inputs", "pass",
            f"{STATE_KEY}, {ACTION_KEY}, {len(cams)} cameras and LeRobot's default columns only",
        )
    ]  # fmt: skip
