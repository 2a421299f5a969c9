"""Policy checkpoint folders in LeRobot's layout, opened once into a typed `Checkpoint`.

    <folder>/config.json                        LeRobot PreTrainedConfig JSON, "type" first
    <folder>/model.safetensors                  state dict, LeRobot's exact parameter names
    <folder>/normalization_stats.safetensors    edgevla's statistics file (optional)
    <folder>/policy_preprocessor.json           LeRobot's processor pipelines (optional), with
    <folder>/policy_postprocessor.json          their normalizer state files beside them
    <folder>/train_info.json                    optional: how it was trained (dataset fps, step...)

Statistics are read from normalization_stats.safetensors when present, else from LeRobot's
processor files (a folder `lerobot-train` wrote), else they are None. Our stats file uses the
tensor layout of LeRobot's normalizer state (flat "<feature>.<stat>" float32 tensors, see
edgevla.dataset.stats), so the same tensors are written into the processor state files and a
LeRobot user loads an edgevla checkpoint with `make_pre_post_processors(cfg,
pretrained_path=folder)` or `lerobot-train --policy.path=folder` and no migration step.

The processor files follow what LeRobot 0.6.1 wrote into the reference fixture
(shared/reference/lerobot-act-checkpoint: `make_pre_post_processors(cfg, dataset_stats=...)`
then `save_pretrained`, described in its GOLDEN.md):
    policy_preprocessor.json   {"name": "policy_preprocessor", "steps": [
        rename_observations_processor {rename_map: {}}, to_batch_processor {},
        device_processor {device: "cpu", float_dtype: null},
        normalizer_processor {eps: 1e-8, features: inputs + outputs, norm_map} + state_file
        "policy_preprocessor_step_3_normalizer_processor.safetensors"]}
    policy_postprocessor.json  {"name": "policy_postprocessor", "steps": [
        unnormalizer_processor {eps, features: outputs, norm_map} + state_file
        "policy_postprocessor_step_0_unnormalizer_processor.safetensors", device_processor]}
Both state files hold the statistics of every feature ("observation.state.mean", ...). These
are ACT's steps; LeRobot's SmolVLA adds tokenizer steps, but LeRobot cannot build our SmolVLA
config anyway (see each config's lerobot_incompatibilities(), warned about at save time).

Loading is strict on purpose: a silently missing or reshaped tensor yields a policy that runs but
does something else, the worst failure on a robot. Every malformed input raises
edgevla.errors.BadInput naming the file and the field.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from edgevla.dataset.stats import Stats, read_stats_safetensors, write_stats_safetensors
from edgevla.errors import BadInput
from edgevla.jsonio import read_json
from edgevla.policies.common.contract import FeatureType, NormalizationMode

if TYPE_CHECKING:
    from edgevla.policies.common.normalize import Normalizer

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
STATS_FILE = "normalization_stats.safetensors"
TRAIN_INFO_FILE = "train_info.json"
PREPROCESSOR_FILE = "policy_preprocessor.json"
POSTPROCESSOR_FILE = "policy_postprocessor.json"
NORMALIZER_STATE_FILE = "policy_preprocessor_step_3_normalizer_processor.safetensors"
UNNORMALIZER_STATE_FILE = "policy_postprocessor_step_0_unnormalizer_processor.safetensors"
NORMALIZER_STEP = "normalizer_processor"
UNNORMALIZER_STEP = "unnormalizer_processor"
LEROBOT_EPS = 1e-8
_MAX_LISTED = 12


class LeRobotCompatibilityWarning(UserWarning):
    """A checkpoint was saved that LeRobot cannot load (edgevla can)."""


@dataclass(frozen=True)
class TrainInfo:
    """train_info.json: how the checkpoint was trained ({} / None for a folder LeRobot wrote).

    fps is the control rate of the dataset the policy learned from: a chunk of actions is a
    trajectory at that rate, so running it at another rate plays it faster or slower.
    """

    fps: float | None = None
    datasets: tuple[str, ...] = ()
    step: int | None = None
    policy: str | None = None
    preset: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    def get(self, key: str, default: Any = None) -> Any:
        """The raw train_info.json value (for fields not typed here)."""
        return self.raw.get(key, default)

    @classmethod
    def from_json_dict(cls, obj: Mapping[str, Any], path: Path | None = None) -> TrainInfo:
        def bad(name: str, expected: str) -> BadInput:
            return BadInput(
                f"should be {expected}, found {obj[name]!r}; fix or delete the file",
                path=path,
                field=name,
            )

        fps = obj.get("fps")
        if fps is not None and (
            isinstance(fps, bool) or not isinstance(fps, int | float) or not fps > 0
        ):
            raise bad("fps", "a positive number (frames per second)")
        datasets = obj.get("datasets") or []
        if not isinstance(datasets, list) or not all(isinstance(d, str) for d in datasets):
            raise bad("datasets", "a list of dataset paths")
        step = obj.get("step")
        if step is not None and (isinstance(step, bool) or not isinstance(step, int) or step < 0):
            raise bad("step", "a step count (integer >= 0)")
        for name in ("policy", "preset"):
            if obj.get(name) is not None and not isinstance(obj[name], str):
                raise bad(name, "a string")
        return cls(
            fps=fps,
            datasets=tuple(datasets),
            step=step,
            policy=obj.get("policy"),
            preset=obj.get("preset"),
            raw=dict(obj),
        )


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint folder read once: policy type, config, statistics and train_info.

    `Checkpoint.open(folder)` validates everything but the weights' values (their names and
    shapes are checked by load_policy()). stats is None when the folder has none (then
    normalizer() explains); stats_file says where they came from.
    """

    folder: Path
    policy_type: str
    config: Any
    stats: Stats | None
    stats_file: Path | None
    train_info: TrainInfo

    @classmethod
    def open(cls, folder: str | Path, expected_type: str | None = None) -> Checkpoint:
        """Read and validate `folder`; `expected_type` refuses other policy types."""
        from edgevla.policies.factory import POLICY_TYPES, config_class

        folder = Path(folder)
        if not folder.is_dir():
            raise BadInput(
                f"is not a policy checkpoint folder (no such folder; it holds {CONFIG_FILE} "
                f"and {WEIGHTS_FILE})",
                path=folder,
            )
        config_path = folder / CONFIG_FILE
        if not config_path.exists() and (folder / "checkpoints").is_dir():  # `edgevla train --out`
            select = (
                "" if (folder / "best").exists() else f" (after `edgevla select --run {folder}`)"
            )
            raise BadInput(
                f"is a training run, not a checkpoint: give {folder / 'best'}{select} or one of "
                f"{folder / 'checkpoints'}/step-*",
                path=folder,
            )
        obj = read_json(
            config_path,
            "checkpoint config",
            fix=f"a policy checkpoint folder holds {CONFIG_FILE} and {WEIGHTS_FILE}",
        )
        policy_type = obj.get("type")
        if expected_type is not None and policy_type != expected_type:
            raise BadInput(
                f"holds a {policy_type!r} checkpoint: it describes a {policy_type!r} policy, but "
                f"a {expected_type!r} policy was requested; load this folder with the "
                f"{policy_type!r} policy class",
                path=config_path,
                field="type",
            )
        if policy_type not in POLICY_TYPES:
            raise BadInput(
                f"policy type {policy_type!r} is not one of {sorted(POLICY_TYPES)}",
                path=config_path,
                field="type",
            )
        try:
            config = config_class(policy_type).from_json_dict(obj)
        except BadInput:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise BadInput(f"is not a valid {policy_type} config ({e})", path=config_path) from e
        _check_weights_file(folder / WEIGHTS_FILE)
        stats, stats_file = _read_stats(folder, config)
        if stats is not None:
            _check_stats(stats, config, stats_file)
        info_path = folder / TRAIN_INFO_FILE
        info = TrainInfo()
        if info_path.exists():
            info = TrainInfo.from_json_dict(read_json(info_path, "train_info"), info_path)
        return cls(folder, policy_type, config, stats, stats_file, info)

    @property
    def fps(self) -> float | None:
        """Control rate of the training data (train_info.json), None when unknown."""
        return self.train_info.fps

    def require_stats(self) -> Stats:
        if self.stats is None:
            raise BadInput(
                f"has no normalisation statistics ({STATS_FILE}, or LeRobot's "
                f"{PREPROCESSOR_FILE} with its normalizer state); a checkpoint written by "
                "`edgevla train` or `lerobot-train` has them",
                path=self.folder,
            )
        return self.stats

    def normalizer(self) -> Normalizer:
        """The Normalizer for this policy's inputs and outputs."""
        from edgevla.policies.common.normalize import Normalizer

        return Normalizer(self.require_stats(), self.config.normalization_modes())

    def load_policy(self, device: str = "cpu") -> nn.Module:
        """The policy built from config.json with model.safetensors loaded strictly, eval mode."""
        from edgevla.policies.factory import policy_class

        policy = policy_class(self.policy_type)(self.config)
        load_weights_strict(policy, self.folder)
        return policy.to(device).eval()


def _check_weights_file(path: Path) -> None:
    if not path.is_file():
        raise BadInput("not found; was the checkpoint saved completely?", path=path)
    try:
        with safe_open(str(path), framework="pt") as f:
            f.keys()
    except (SafetensorError, OSError, ValueError) as e:
        raise BadInput(
            f"is not a readable safetensors file ({e}); was the checkpoint saved completely?",
            path=path,
        ) from e


def _read_stats(folder: Path, config: Any) -> tuple[Stats | None, Path | None]:
    ours = folder / STATS_FILE
    if ours.exists():
        return read_stats_safetensors(ours), ours
    pre = folder / PREPROCESSOR_FILE
    if not pre.exists():
        return None, None
    stats, state_file = _processor_stats(pre, NORMALIZER_STEP, config)
    post = folder / POSTPROCESSOR_FILE
    if post.exists():
        post_stats, _ = _processor_stats(post, UNNORMALIZER_STEP, config)
        for feature in config.output_features:
            if feature in post_stats:
                stats[feature] = post_stats[feature]
    return stats, state_file


def _processor_stats(path: Path, step_name: str, config: Any) -> tuple[Stats, Path]:
    """The statistics of a LeRobot processor pipeline file's (un)normalizer step."""
    obj = read_json(path, "LeRobot processor config")
    steps = obj.get("steps")
    if not isinstance(steps, list) or not all(isinstance(s, dict) for s in steps):
        raise BadInput("should hold a list of step objects", path=path, field="steps")
    found = [s for s in steps if s.get("registry_name") == step_name]
    if not found:
        raise BadInput(f"has no {step_name!r} step, so no statistics", path=path, field="steps")
    step = found[0]
    state = step.get("state_file")
    if not isinstance(state, str) or not state or Path(state).name != state:
        raise BadInput(
            f"the {step_name} step should name its state file (a file name beside it), "
            f"found {state!r}",
            path=path,
            field="state_file",
        )
    cfg = step.get("config") or {}
    norm_map = cfg.get("norm_map") if isinstance(cfg, dict) else None
    if isinstance(norm_map, dict):
        for key, feat in config.all_features.items():
            theirs = norm_map.get(feat.type.value, NormalizationMode.IDENTITY.value)
            ours = config.normalization_modes()[key]
            if theirs != ours.value:
                raise BadInput(
                    f"normalises {key} ({feat.type.value}) as {theirs} but config.json says "
                    f"{ours.value}; keep both from the same save",
                    path=path,
                    field="norm_map",
                )
    return read_stats_safetensors(path.parent / state, f"{step_name} state"), path.parent / state


def _check_stats(stats: Stats, config: Any, path: Path | None) -> None:
    """Every feature the config normalises has finite statistics of its shape."""
    modes = config.normalization_modes()
    for key, feat in config.all_features.items():
        mode = modes[key]
        if key not in stats:
            if mode is NormalizationMode.IDENTITY:
                continue
            raise BadInput(
                f"no statistics for {key!r}, which config.json normalises ({mode.value}); "
                f"have: {sorted(stats)}",
                path=path,
                field=key,
            )
        needed = {NormalizationMode.MEAN_STD: ("mean", "std"), NormalizationMode.MIN_MAX: (
            "min", "max")}.get(mode, ())  # fmt: skip
        for stat in needed:
            if stat not in stats[key]:
                raise BadInput(
                    f"statistics of {key!r} lack {stat!r}, needed by {mode.value}",
                    path=path,
                    field=f"{key}.{stat}",
                )
        for stat, value in stats[key].items():
            if stat == "count":
                continue
            if not _fits(value.shape, feat.shape, feat.type):
                want = (feat.shape[0], 1, 1) if feat.type is FeatureType.VISUAL else feat.shape
                raise BadInput(
                    f"has shape {tuple(value.shape)} but config.json's {key} is {feat.shape} "
                    f"(expected {want}); the statistics belong to another dataset or robot",
                    path=path,
                    field=f"{key}.{stat}",
                )
            if stat in needed and not np.isfinite(value).all():
                raise BadInput("contains NaN or inf", path=path, field=f"{key}.{stat}")


def _fits(stat_shape: tuple[int, ...], feature_shape: tuple[int, ...], ftype: FeatureType) -> bool:
    if ftype is FeatureType.VISUAL:  # per channel (C, 1, 1), or per pixel (C, H, W)
        return stat_shape in ((feature_shape[0], 1, 1), tuple(feature_shape))
    return tuple(stat_shape) == tuple(feature_shape)


# ---------------------------------------------------------------------------------- writing
def save_checkpoint(
    folder: str | Path, state_dict: Mapping[str, Tensor], config: Any, stats: Stats | None = None
) -> Path:
    """Write the folder (created if needed) and return its path.

    config: the policy config (to_json_dict(), features, normalization_mapping). With stats,
    writes our stats file and LeRobot's processor files. Warns (LeRobotCompatibilityWarning)
    when LeRobot could not load the result.
    """
    config_json = config.to_json_dict()
    if "type" not in config_json:
        raise ValueError("config_json lacks 'type' (the policy type LeRobot dispatches on)")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CONFIG_FILE).write_text(json.dumps(dict(config_json), indent=4))
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    save_file(tensors, str(folder / WEIGHTS_FILE), metadata={"format": "pt"})
    if stats is not None:
        write_stats_safetensors(folder / STATS_FILE, stats)
        write_lerobot_processors(folder, config, stats)
    warn_lerobot_incompatibilities(config, stacklevel=4)
    return folder


def warn_lerobot_incompatibilities(config: Any, stacklevel: int = 2) -> None:
    """A LeRobotCompatibilityWarning per reason LeRobot could not load a checkpoint of `config`.
    No folder in the message: the same text at every save (training says it once up front and
    silences its saves)."""
    for reason in config.lerobot_incompatibilities():
        warnings.warn(reason, LeRobotCompatibilityWarning, stacklevel=stacklevel)


def lerobot_processor_configs(config: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(policy_preprocessor.json, policy_postprocessor.json) content for `config`."""
    norm_map = {k: NormalizationMode(v).value for k, v in config.normalization_mapping.items()}
    device = {"registry_name": "device_processor", "config": {"device": "cpu", "float_dtype": None}}

    def normalizer(name: str, features: Mapping[str, Any], state_file: str) -> dict[str, Any]:
        feats = {k: f.to_json() for k, f in features.items()}
        return {
            "registry_name": name,
            "config": {"eps": LEROBOT_EPS, "features": feats, "norm_map": norm_map},
            "state_file": state_file,
        }

    pre = {
        "name": "policy_preprocessor",
        "steps": [
            {"registry_name": "rename_observations_processor", "config": {"rename_map": {}}},
            {"registry_name": "to_batch_processor", "config": {}},
            device,
            normalizer(NORMALIZER_STEP, config.all_features, NORMALIZER_STATE_FILE),
        ],
    }
    post = {
        "name": "policy_postprocessor",
        "steps": [
            normalizer(UNNORMALIZER_STEP, config.output_features, UNNORMALIZER_STATE_FILE),
            device,
        ],
    }
    return pre, post


def write_lerobot_processors(folder: str | Path, config: Any, stats: Stats) -> list[Path]:
    """LeRobot's processor files with `stats` (the config's features only); returns the paths."""
    folder = Path(folder)
    pre, post = lerobot_processor_configs(config)
    kept = {k: v for k, v in stats.items() if k in config.all_features}
    paths = [folder / PREPROCESSOR_FILE, folder / POSTPROCESSOR_FILE]
    paths[0].write_text(json.dumps(pre, indent=2))
    paths[1].write_text(json.dumps(post, indent=2))
    for name in (NORMALIZER_STATE_FILE, UNNORMALIZER_STATE_FILE):
        paths.append(write_stats_safetensors(folder / name, kept))
    return paths


# ---------------------------------------------------------------------------------- weights
def _listed(keys: list[str]) -> str:
    more = f" ... (+{len(keys) - _MAX_LISTED} more)" if len(keys) > _MAX_LISTED else ""
    return ", ".join(keys[:_MAX_LISTED]) + more


def load_weights_strict(module: nn.Module, folder: str | Path) -> None:
    """Copy <folder>/model.safetensors into `module`, refusing any name or shape mismatch."""
    path = Path(folder) / WEIGHTS_FILE
    _check_weights_file(path)
    with safe_open(str(path), framework="pt") as f:
        file_shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
    model_shapes = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    missing = sorted(set(model_shapes) - set(file_shapes))
    unexpected = sorted(set(file_shapes) - set(model_shapes))
    reshaped = [
        f"{k}: file {file_shapes[k]} vs model {model_shapes[k]}"
        for k in sorted(set(file_shapes) & set(model_shapes))
        if file_shapes[k] != model_shapes[k]
    ]
    if missing or unexpected or reshaped:
        lines = [f"does not match the {type(module).__name__} built from {CONFIG_FILE}:"]
        if missing:
            lines.append(f"  missing from file ({len(missing)}): {_listed(missing)}")
        if unexpected:
            lines.append(f"  unexpected in file ({len(unexpected)}): {_listed(unexpected)}")
        if reshaped:
            lines.append(f"  shape mismatch ({len(reshaped)}): {_listed(reshaped)}")
        lines.append(
            f"The weights were saved with a different config (or policy); keep {CONFIG_FILE} "
            f"and {WEIGHTS_FILE} from the same save."
        )
        raise BadInput("\n".join(lines), path=path)
    try:
        module.load_state_dict(load_file(str(path)), strict=True)
    except (SafetensorError, OSError) as e:
        raise BadInput(f"cannot be read ({e}); was it saved completely?", path=path) from e


# ------------------------------------------------------------------ older entry points (kept)
__all__ = [
    "CONFIG_FILE",
    "POSTPROCESSOR_FILE",
    "PREPROCESSOR_FILE",
    "STATS_FILE",
    "TRAIN_INFO_FILE",
    "WEIGHTS_FILE",
    "Checkpoint",
    "LeRobotCompatibilityWarning",
    "TrainInfo",
    "lerobot_processor_configs",
    "load_weights_strict",
    "save_checkpoint",
    "write_lerobot_processors",
]
