"""Policy checkpoint folders in LeRobot's layout, loaded strictly. Shared by every policy type.

    <folder>/config.json                        LeRobot PreTrainedConfig JSON, "type" first
    <folder>/model.safetensors                  state dict, LeRobot's exact parameter names
    <folder>/normalization_stats.safetensors    optional: dataset statistics used to normalise
    <folder>/train_info.json                    optional: how it was trained (dataset fps, step...)

The stats file uses the tensor layout of LeRobot's normalizer processor state
(policy_preprocessor_step_*_normalizer_processor.safetensors): flat keys "<feature>.<stat>",
e.g. "observation.state.mean", "observation.images.top.std" (3, 1, 1), float32. We chose
safetensors over JSON so statistics keep their dtype and shape and load without parsing, and
the tensors can be copied into a LeRobot processor file as they are. A folder without the file
(e.g. one LeRobot wrote, whose stats sit in its processor files) loads with stats = None.

Loading is strict on purpose: a silently missing or reshaped tensor yields a policy that runs but
does something else, the worst failure on a robot.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from edgevla.policies.common.normalize import Stats

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
STATS_FILE = "normalization_stats.safetensors"
TRAIN_INFO_FILE = "train_info.json"
_MAX_LISTED = 12


def save_checkpoint(
    folder: str | Path,
    state_dict: Mapping[str, Tensor],
    config_json: Mapping[str, Any],
    stats: Stats | None = None,
) -> Path:
    """Write the folder (created if needed) and return its path."""
    if "type" not in config_json:
        raise ValueError("config_json lacks 'type' (the policy type LeRobot dispatches on)")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CONFIG_FILE).write_text(json.dumps(dict(config_json), indent=4))
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    save_file(tensors, str(folder / WEIGHTS_FILE), metadata={"format": "pt"})
    if stats is not None:
        save_stats(folder / STATS_FILE, stats)
    return folder


def read_train_info(folder: str | Path) -> dict[str, Any]:
    """train_info.json of a checkpoint folder, or {} when absent (a folder LeRobot wrote).

    Its "fps" is the control rate of the dataset the policy learned from: a chunk of actions is
    a trajectory at that rate, so running it at another rate plays it faster or slower."""
    path = Path(folder) / TRAIN_INFO_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); delete it or restore it") from e


def read_config(folder: str | Path, expected_type: str) -> dict[str, Any]:
    """config.json of `folder` as a dict, after checking it describes an `expected_type` policy."""
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found; a policy checkpoint folder holds {CONFIG_FILE} and {WEIGHTS_FILE}"
        )
    try:
        obj = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e})") from e
    found = obj.get("type")
    if found != expected_type:
        raise ValueError(
            f"{path} describes a {found!r} policy, but a {expected_type!r} policy was requested; "
            f"load this folder with the {found!r} policy class"
        )
    return obj


def _listed(keys: list[str]) -> str:
    more = f" ... (+{len(keys) - _MAX_LISTED} more)" if len(keys) > _MAX_LISTED else ""
    return ", ".join(keys[:_MAX_LISTED]) + more


def load_weights_strict(module: nn.Module, folder: str | Path) -> None:
    """Copy <folder>/model.safetensors into `module`, refusing any name or shape mismatch."""
    path = Path(folder) / WEIGHTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; was the checkpoint saved completely?")
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
        lines = [f"{path} does not match the {type(module).__name__} built from {CONFIG_FILE}:"]
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
        raise ValueError("\n".join(lines))
    module.load_state_dict(load_file(str(path)), strict=True)


def save_stats(path: str | Path, stats: Stats) -> Path:
    """Write stats as flat "<feature>.<stat>" float32 tensors (LeRobot normalizer layout)."""
    flat = {}
    for feature, per_stat in stats.items():
        for stat, value in per_stat.items():
            flat[f"{feature}.{stat}"] = torch.as_tensor(
                np.asarray(value, dtype=np.float32)
            ).contiguous()
    save_file(flat, str(path), metadata={"format": "pt", "content": "normalization_stats"})
    return Path(path)


def load_checkpoint_stats(folder: str | Path) -> Stats | None:
    """The folder's normalisation statistics, or None when it has no stats file."""
    path = Path(folder) / STATS_FILE
    if not path.is_file():
        return None
    stats: Stats = {}
    for key, tensor in load_file(str(path)).items():
        feature, _, stat = key.rpartition(".")
        if not feature:
            raise ValueError(f"{path}: key {key!r} is not '<feature>.<stat>'")
        stats.setdefault(feature, {})[stat] = tensor.numpy()
    return stats
