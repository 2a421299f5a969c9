"""An exported policy on the board: a bundle folder read, checked and run with ONNX Runtime.

A bundle is a directory written by `edgevla export`:

    manifest.json      format version, stages (file, inputs/outputs with shapes and dtypes,
                       precision, sha256), cameras, image size, normalisation statistics,
                       chunk size, the fps the policy learned at, parity figures, its checkpoint
    <stage>.onnx       one graph per stage (e.g. vision.onnx + transformer.onnx, or policy.onnx)

Everything a board needs to run the policy is in the folder: preprocessing (uint8 HWC images ->
normalised float CHW) and unnormalisation are numpy here, the graphs run in ONNX Runtime's CPU
execution provider (Arm and x86 alike). No torch.

How the stages connect is data, not code: the runner keeps a dict of named tensors, starting
with the observation's
    "state"   float32 (1, state_dim)         normalised
    "images"  float32 (K, 3, H, W)           normalised, cameras in manifest order
and runs the stages in order; each reads its inputs by name and adds its outputs. The last
stage's "actions" (1, chunk_size, action_dim), normalised, is the chunk.

A flow-matching policy (SmolVLA) names a `sampler` instead: its stage (the action expert) maps
(x_t, t, ...) -> velocity and the runner integrates it here, in numpy, from noise at t = 1 to
t = 0 in num_steps Euler steps (x += -1/num_steps * velocity), then keeps the first action_dim
columns. The noise comes from the runner's own generator, reseeded by reset(seed), scaled by
noise_scale (1 = the policy's sampler, 0 = the conditional mean path).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgevla_runtime.features import STATE_KEY, image_key
from edgevla_runtime.observation import check_observation

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
ACTIONS = "actions"
NORMALIZATION_MODES = ("MEAN_STD", "MIN_MAX", "IDENTITY")
VELOCITY = "velocity"


class BundleError(ValueError):
    """A bundle folder that cannot be run as it is; the message names the file and the field."""


@dataclass(frozen=True)
class TensorSpec:
    """One named input or output of a stage: shape (ints; -1 for a free axis) and dtype."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


@dataclass(frozen=True)
class StageSpec:
    """One ONNX graph of the bundle and what it consumes and produces."""

    name: str
    file: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    precision: str = "fp32"
    sha256: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "file": self.file,
            "precision": self.precision,
            "sha256": self.sha256,
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
        }


@dataclass(frozen=True)
class FeatureNorm:
    """How one feature is normalised: (x - mean) / (std + eps), or min/max to [-1, 1]."""

    mode: str
    stats: dict[str, np.ndarray] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, **{k: np.asarray(v).tolist() for k, v in self.stats.items()}}


@dataclass(frozen=True)
class Manifest:
    """manifest.json, typed. `Manifest.read(folder)` validates every field it uses."""

    policy_type: str
    camera_names: tuple[str, ...]
    image_hw: tuple[int, int]
    state_dim: int
    action_dim: int
    chunk_size: int
    fps: float | None
    stages: tuple[StageSpec, ...]
    normalization: dict[str, FeatureNorm]
    eps: float = 1e-8
    checkpoint: str = ""
    parity: dict[str, Any] = field(default_factory=dict)
    task: str = ""
    sampler: dict[str, Any] | None = None
    """{"stage": name, "num_steps": N, "noise_shape": [1, C, A_max]} for flow matching"""
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "policy_type": self.policy_type,
            "checkpoint": self.checkpoint,
            "task": self.task,
            "sampler": self.sampler,
            "camera_names": list(self.camera_names),
            "image_hw": list(self.image_hw),
            "state_dim": self.state_dim,
            "action_dim": self.action_dim,
            "chunk_size": self.chunk_size,
            "fps": self.fps,
            "normalization": {
                "eps": self.eps,
                "features": {k: v.to_dict() for k, v in self.normalization.items()},
            },
            "stages": [s.to_dict() for s in self.stages],
            "parity": self.parity,
        }

    @classmethod
    def read(cls, folder: str | Path) -> Manifest:
        path = Path(folder) / MANIFEST
        if not path.is_file():
            raise BundleError(
                f"{folder} is not a bundle: {MANIFEST} is missing (write one with `edgevla export`)"
            )
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise BundleError(f"{path}: not valid JSON ({e}); re-export the bundle") from e
        if not isinstance(raw, dict):
            raise BundleError(f"{path}: should hold a JSON object, found {type(raw).__name__}")
        return cls.from_dict(raw, path)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], path: Path | str = MANIFEST) -> Manifest:
        def get(key: str, kind: type | tuple[type, ...]) -> Any:
            if key not in raw:
                raise BundleError(f"{path}: field {key!r} is missing; re-export the bundle")
            value = raw[key]
            if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
                raise BundleError(f"{path}: field {key!r} has the wrong type ({value!r})")
            return value

        version = get("format_version", int)
        if version != FORMAT_VERSION:
            raise BundleError(
                f"{path}: format_version {version}; this runtime reads {FORMAT_VERSION} "
                "(re-export with a matching edgevla, or upgrade edgevla-runtime)"
            )
        norm = get("normalization", dict)
        features = norm.get("features")
        if not isinstance(features, dict):
            raise BundleError(f"{path}: field 'normalization.features' is missing")
        normalization = {}
        for name, spec in features.items():
            if not isinstance(spec, dict) or spec.get("mode") not in NORMALIZATION_MODES:
                raise BundleError(
                    f"{path}: normalization of {name!r} needs a mode in {NORMALIZATION_MODES}"
                )
            needed = {"MEAN_STD": ("mean", "std"), "MIN_MAX": ("min", "max")}.get(spec["mode"], ())
            stats = {}
            for stat in needed:
                value = np.asarray(spec.get(stat, np.nan), dtype=np.float32)
                if value.size == 0 or not np.all(np.isfinite(value)):
                    raise BundleError(
                        f"{path}: normalization of {name!r}: {stat} missing or not finite"
                    )
                stats[stat] = value
            normalization[name] = FeatureNorm(spec["mode"], stats)
        stages = []
        for i, s in enumerate(get("stages", list)):
            try:
                stages.append(
                    StageSpec(
                        name=str(s["name"]),
                        file=str(s["file"]),
                        precision=str(s.get("precision", "fp32")),
                        sha256=str(s.get("sha256", "")),
                        inputs=tuple(TensorSpec(t["name"], tuple(t["shape"]), t["dtype"]) for t in s["inputs"]),
                        outputs=tuple(TensorSpec(t["name"], tuple(t["shape"]), t["dtype"]) for t in s["outputs"]),
                    )
                )  # fmt: skip
            except (KeyError, TypeError) as e:
                raise BundleError(f"{path}: stage {i} is malformed (missing {e})") from e
        if not stages:
            raise BundleError(f"{path}: no stages")
        sampler = raw.get("sampler")
        if sampler is not None:
            names = {s.name: s for s in stages}
            ok = (
                isinstance(sampler, dict)
                and sampler.get("stage") in names
                and VELOCITY in {t.name for t in names[sampler["stage"]].outputs}
                and isinstance(sampler.get("num_steps"), int)
                and sampler["num_steps"] >= 1
                and isinstance(sampler.get("noise_shape"), list)
            )
            if not ok:
                raise BundleError(
                    f"{path}: field 'sampler' needs a stage that outputs {VELOCITY!r}, "
                    "num_steps >= 1 and noise_shape"
                )
        elif ACTIONS not in {t.name for t in stages[-1].outputs}:
            raise BundleError(f"{path}: the last stage must output {ACTIONS!r}")
        hw = get("image_hw", list)
        fps = raw.get("fps")
        return cls(
            policy_type=get("policy_type", str),
            camera_names=tuple(get("camera_names", list)),
            image_hw=(int(hw[0]), int(hw[1])),
            state_dim=get("state_dim", int),
            action_dim=get("action_dim", int),
            chunk_size=get("chunk_size", int),
            fps=float(fps) if isinstance(fps, int | float) and math.isfinite(fps) else None,
            stages=tuple(stages),
            normalization=normalization,
            eps=float(norm.get("eps", 1e-8)),
            checkpoint=str(raw.get("checkpoint", "")),
            parity=dict(raw.get("parity") or {}),
            task=str(raw.get("task") or ""),
            sampler=sampler,
            format_version=version,
        )


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Normalization:
    """numpy twin of the training normaliser (LeRobot's formulas, same eps)."""

    def __init__(self, features: dict[str, FeatureNorm], eps: float):
        self.features = features
        self.eps = np.float32(eps)
        self._tables: dict[str, np.ndarray | None] = {}

    def image_table(self, name: str) -> np.ndarray | None:
        """(3, 256) float32: the normalised value of each uint8 level of each channel, computed
        by `normalize` itself, so a lookup equals the arithmetic bit for bit; None unless the
        statistics are per channel. On three 96x128 frames the lookup takes 0.13 ms where
        converting, scaling and normalising the frames took 0.43-0.73 ms."""
        if name not in self._tables:
            levels = (np.arange(256, dtype=np.float32) / 255.0).reshape(1, 1, 256)
            try:
                table = np.asarray(self.normalize(name, levels), dtype=np.float32)
            except ValueError:  # statistics that do not broadcast per channel
                table = np.zeros(0, dtype=np.float32)
            ok = table.ndim == 3 and table.shape[1:] == (1, 256) and table.shape[0] in (1, 3)
            self._tables[name] = (
                np.ascontiguousarray(np.broadcast_to(table, (3, 1, 256))[:, 0]) if ok else None
            )
        return self._tables[name]

    def normalize(self, name: str, x: np.ndarray) -> np.ndarray:
        norm = self.features.get(name)
        if norm is None or norm.mode == "IDENTITY":
            return x
        if norm.mode == "MEAN_STD":
            return (x - norm.stats["mean"]) / (norm.stats["std"] + self.eps)
        lo, hi = norm.stats["min"], norm.stats["max"]
        return (x - lo) / (hi - lo + self.eps) * np.float32(2.0) - np.float32(1.0)

    def unnormalize(self, name: str, x: np.ndarray) -> np.ndarray:
        norm = self.features.get(name)
        if norm is None or norm.mode == "IDENTITY":
            return x
        if norm.mode == "MEAN_STD":
            return x * (norm.stats["std"] + self.eps) + norm.stats["mean"]
        lo, hi = norm.stats["min"], norm.stats["max"]
        return (x + np.float32(1.0)) / np.float32(2.0) * (hi - lo + self.eps) + lo


class BundleRunner:
    """A bundle behind the PolicyRunner interface: observation -> action chunk, ONNX Runtime.

    threads: intra-op threads per session (1 on a board sharing its cores with the control
    loop; more on a workstation). verify: check each stage file's sha256 against the manifest
    (a truncated copy or a file from another export is refused before it runs).
    """

    def __init__(
        self, folder: str | Path, threads: int = 1, verify: bool = True, noise_scale: float = 1.0
    ):
        import onnxruntime as ort

        self.folder = Path(folder)
        self.manifest = Manifest.read(self.folder)
        m = self.manifest
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        # Each stage has its own session and thread pool. By default a pool's threads spin on
        # after its run, and then compete with the next stage's threads (and with the control
        # loop) for the cores: at 2 threads the paper-size ACT took 167-173 ms a chunk against
        # 137 ms with the spinning stopped at the end of every run (shipped ACT 2.8 vs 2.2 ms;
        # each stage alone unchanged). One thread has no pool: nothing changes there.
        options.add_session_config_entry("session.force_spinning_stop", "1")
        self.sessions = []
        for stage in m.stages:
            path = self.folder / stage.file
            if not path.is_file():
                raise BundleError(f"{path}: stage {stage.name!r} file is missing; re-export")
            if verify and stage.sha256 and sha256_of(path) != stage.sha256:
                raise BundleError(
                    f"{path}: sha256 differs from {MANIFEST} (a truncated or replaced file); "
                    "copy the bundle again or re-export it"
                )
            try:
                session = ort.InferenceSession(
                    str(path), sess_options=options, providers=["CPUExecutionProvider"]
                )
            except Exception as e:  # onnxruntime raises its own types for a corrupt graph
                raise BundleError(f"{path}: ONNX Runtime cannot load it ({e})") from e
            self.sessions.append((stage, session))
        self.norm = Normalization(m.normalization, m.eps)
        if not (noise_scale >= 0 and math.isfinite(noise_scale)):
            raise ValueError(f"noise_scale must be a finite number >= 0, got {noise_scale}")
        if noise_scale != 1.0 and m.sampler is None:
            raise ValueError(
                f"noise_scale applies to a sampling policy; this {m.policy_type} bundle has none"
            )
        self.noise_scale = float(noise_scale)
        self._rng = np.random.default_rng(0)

    @property
    def chunk_size(self) -> int:
        return self.manifest.chunk_size

    @property
    def action_dim(self) -> int:
        return self.manifest.action_dim

    @property
    def camera_names(self) -> tuple[str, ...]:
        return self.manifest.camera_names

    @property
    def image_hw(self) -> tuple[int, int]:
        return self.manifest.image_hw

    def reset(self, seed: int | None = None) -> None:
        """Start an episode: reseed the sampling noise (deterministic bundles have none)."""
        self._rng = np.random.default_rng(0 if seed is None else int(seed))

    def inputs(self, observation: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Observation -> the named, normalised tensors the first stage reads."""
        m = self.manifest
        check_observation(observation, m.state_dim, m.camera_names, m.image_hw, "this bundle")
        state = np.asarray(observation[STATE_KEY], dtype=np.float32)[None]  # (1, Ds)
        images = np.empty((len(m.camera_names), 3, *m.image_hw), dtype=np.float32)  # (K, 3, H, W)
        for k, cam in enumerate(m.camera_names):
            key = image_key(cam)
            img = np.asarray(observation[key])  # (H, W, 3)
            table = self.norm.image_table(key)
            if table is not None and img.dtype == np.uint8:
                for c in range(3):
                    np.take(table[c], img[:, :, c], out=images[k, c])
            else:
                images[k] = self.norm.normalize(
                    key, img.transpose(2, 0, 1).astype(np.float32) / 255.0
                )
        return {"state": self.norm.normalize(STATE_KEY, state).astype(np.float32), "images": images}

    def run_stage(self, stage: StageSpec, session, tensors: dict[str, np.ndarray]) -> None:
        """Run one stage on the named tensors it reads; add its outputs to `tensors`."""
        feed = {t.name: tensors[t.name] for t in stage.inputs}
        names = [t.name for t in stage.outputs]
        tensors.update(zip(names, session.run(names, feed), strict=True))

    def run_stages(self, tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run every stage but the sampler's, in order; returns `tensors`, extended."""
        sampler_stage = (self.manifest.sampler or {}).get("stage")
        for stage, session in self.sessions:
            if stage.name != sampler_stage:
                self.run_stage(stage, session, tensors)
        return tensors

    def sample(self, tensors: dict[str, np.ndarray], noise: np.ndarray | None = None) -> np.ndarray:
        """Euler integration of the sampler stage's velocity from t = 1 (noise) to t = 0.
        Returns x at t = 0, (1, C, A_max); `tensors` holds the earlier stages' outputs."""
        spec = self.manifest.sampler or {}
        stage, session = next((s, x) for s, x in self.sessions if s.name == spec["stage"])
        if noise is None:
            noise = self._rng.standard_normal(spec["noise_shape"], dtype=np.float32)
            noise *= np.float32(self.noise_scale)
        n = int(spec["num_steps"])
        x = noise.astype(np.float32)
        for k in range(n):  # t_k = 1 - k/n, computed (not accumulated), as in training
            tensors["x_t"], tensors["t"] = x, np.full((1,), 1.0 - k / n, dtype=np.float32)
            self.run_stage(stage, session, tensors)
            x = x + np.float32(-1.0 / n) * tensors[VELOCITY]
        return x

    def predict_chunk(
        self, observation: dict[str, np.ndarray], noise: np.ndarray | None = None
    ) -> np.ndarray:
        """The unnormalised chunk (C, A). noise: the sampler's start (1, C, A_max), drawn from
        the runner's generator when None (parity checks pass the PyTorch policy's noise)."""
        tensors = self.run_stages(self.inputs(observation))
        if self.manifest.sampler is None:
            actions = tensors[ACTIONS][0]  # (C, A) normalised
        else:
            actions = self.sample(tensors, noise)[0, :, : self.manifest.action_dim]
        chunk = self.norm.unnormalize("action", actions.astype(np.float32))
        return np.asarray(chunk, dtype=np.float32)  # (C, A)
