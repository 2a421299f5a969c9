"""What a recorded dataset holds, and the checks that a recorder's inputs match it.

A DatasetSpec is fixed when a dataset is created and read back from meta/info.json (+ ours,
meta/edgevla.json) when a recording resumes, so the two cannot disagree. Inputs are checked
before anything is written: a wrong shape or a NaN found after an hour of recording should fail
the episode that carries it, loudly, not the training run that reads it later.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from edgevla_runtime.features import (
    ACTION_KEY,
    CAMERA_NAMES,
    DEFAULT_FPS,
    DEFAULT_IMAGE_HW,
    MAX_IMAGE_HW,
    MIN_IMAGE_HW,
    ROBOT_TYPE,
    STATE_KEY,
    TASK,
    camera_of,
    image_key,
)

from edgevla.dataset.lerobot import layout
from edgevla.dataset.lerobot.layout import DatasetFormatError
from edgevla.dataset.video import VideoSettings


@dataclass(frozen=True)
class DatasetSpec:
    """Fixed at creation. episode_columns declares extra per-episode columns and their types
    (layout.EPISODE_COLUMN_TYPES), e.g. {"cluster_id": "int64", "start_pose": "list<float64>",
    "is_recovery": "bool", "split": "string", "plan_seed": "int64"}."""

    fps: int = DEFAULT_FPS
    robot_type: str = ROBOT_TYPE
    cameras: tuple[str, ...] = CAMERA_NAMES
    image_hw: tuple[int, int] = DEFAULT_IMAGE_HW
    task: str = TASK
    video: VideoSettings = field(default_factory=VideoSettings.av1)
    episode_columns: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Accept lists from callers; store immutable, comparable values.
        object.__setattr__(self, "cameras", tuple(self.cameras))
        object.__setattr__(self, "image_hw", tuple(int(v) for v in self.image_hw))
        object.__setattr__(self, "episode_columns", dict(self.episode_columns))
        if not isinstance(self.fps, int) or self.fps <= 0:
            raise ValueError(
                f"fps must be a positive int (LeRobot stores an int), got {self.fps!r}"
            )
        if not self.cameras or len(set(self.cameras)) != len(self.cameras):
            raise ValueError(f"cameras must be non-empty and unique, got {self.cameras}")
        h, w = self.image_hw
        (hmin, wmin), (hmax, wmax) = MIN_IMAGE_HW, MAX_IMAGE_HW
        if not (hmin <= h <= hmax and wmin <= w <= wmax) or h % 2 or w % 2:
            raise ValueError(
                f"image_hw {self.image_hw} must be even and within {MIN_IMAGE_HW}..{MAX_IMAGE_HW}"
            )
        if not self.task.strip():
            raise ValueError("task must be a non-empty instruction")
        layout.validate_episode_columns(self.episode_columns)

    @property
    def features(self) -> dict[str, dict[str, Any]]:
        """meta/info.json "features" for this spec."""
        return layout.build_features(self.fps, self.cameras, self.image_hw, self.video)

    @property
    def video_keys(self) -> list[str]:
        return [image_key(c) for c in self.cameras]

    @classmethod
    def from_disk(cls, info: Mapping[str, Any], edgevla_meta: Mapping[str, Any]) -> DatasetSpec:
        """The spec a dataset was created with, from its info.json and meta/edgevla.json."""
        features = info["features"]
        vkeys = layout.video_keys(features)
        if not vkeys:
            raise DatasetFormatError("the dataset has no video features to record into")
        first = features[vkeys[0]]
        spec = cls(
            fps=int(info["fps"]),
            robot_type=info.get("robot_type") or ROBOT_TYPE,
            cameras=tuple(camera_of(k) for k in vkeys),
            image_hw=(int(first["shape"][0]), int(first["shape"][1])),
            task=edgevla_meta.get("task", TASK),
            video=VideoSettings.from_info_block(first.get("info", {})),
            episode_columns=edgevla_meta.get("episode_columns", {}),
        )
        if spec.features != features:
            raise DatasetFormatError(
                "meta/info.json features differ from what this writer records (state/action "
                "names, cameras, video settings); resume with the edgevla version that created it"
            )
        return spec

    def check_frames(self, frames: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], int]:
        """Validate one episode's arrays; returns them (float32 vectors, uint8 video) and T."""
        expected = {STATE_KEY, ACTION_KEY, *self.video_keys}
        if set(frames) != expected:
            raise ValueError(
                f"frames must have exactly the keys {sorted(expected)}; missing "
                f"{sorted(expected - set(frames))}, unexpected {sorted(set(frames) - expected)}"
            )
        out: dict[str, np.ndarray] = {}
        dim = self.features[STATE_KEY]["shape"][0]
        for key in (STATE_KEY, ACTION_KEY):
            x = np.asarray(frames[key])
            if x.ndim != 2 or x.shape[1] != dim or not np.issubdtype(x.dtype, np.number):
                raise ValueError(f"{key} must be (T, {dim}) numbers, got {x.shape} {x.dtype}")
            x = x.astype(np.float32)
            if not np.isfinite(x).all():
                raise ValueError(f"{key} contains NaN or inf; refusing to record it")
            out[key] = x
        h, w = self.image_hw
        for key in self.video_keys:
            x = np.asarray(frames[key])
            if x.dtype != np.uint8 or x.shape[1:] != (h, w, 3):
                raise ValueError(
                    f"{key} must be (T, {h}, {w}, 3) uint8 RGB, got {x.shape} {x.dtype} "
                    "(convert float images with (x * 255).round().astype(np.uint8))"
                )
            out[key] = np.ascontiguousarray(x)
        lengths = {k: len(v) for k, v in out.items()}
        if len(set(lengths.values())) != 1 or 0 in lengths.values():
            raise ValueError(f"all features need the same non-zero number of frames, got {lengths}")
        return out, next(iter(lengths.values()))

    def check_metadata(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Check extra episode column values against their declared types; JSON-able copy."""
        columns = self.episode_columns
        if set(values) != set(columns):
            raise ValueError(
                f"metadata must give exactly the declared episode columns {sorted(columns)}; "
                f"missing {sorted(set(columns) - set(values))}, "
                f"undeclared {sorted(set(values) - set(columns))}"
            )
        return {name: _coerce(name, typ, values[name]) for name, typ in columns.items()}


def _coerce(name: str, typ: str, v: Any) -> Any:
    if typ == "int64" and isinstance(v, int | np.integer) and not isinstance(v, bool | np.bool_):
        return int(v)
    number = isinstance(v, int | float | np.integer | np.floating)
    if typ == "float64" and number and not isinstance(v, bool | np.bool_):
        return float(v)
    if typ == "bool" and isinstance(v, bool | np.bool_):
        return bool(v)
    if typ == "string" and isinstance(v, str):
        return v
    if typ == "list<float64>":
        arr = np.asarray(v)
        if arr.ndim == 1 and np.issubdtype(arr.dtype, np.number):
            return arr.astype(np.float64).tolist()
    raise ValueError(f"episode column {name!r} is declared {typ}, got {v!r}")
