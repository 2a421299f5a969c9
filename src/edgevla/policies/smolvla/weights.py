"""Partial weight loading from a local safetensors file, with a report of what happened.

Used to start from pretrained parts (a LeRobot SmolVLA checkpoint for the base preset, or an
earlier edgevla run of a different size): every tensor whose name (after renaming) and shape
match ours is copied; the rest is listed, never silently dropped. Nothing is downloaded.

LeRobot nests SmolVLA as model.vlm_with_expert.vlm.model.{vision_model, connector, text_model},
model.vlm_with_expert.lm_expert and model.{state_proj, action_*}; our module tree mirrors the
leaves (Hugging Face Idefics3 / LLaMA names), so a prefix rename is all it takes. Tokens differ
(we use bytes, SmolVLM2 uses BPE), so a LeRobot checkpoint's task embeddings do not carry over in
meaning even where the shapes match; text layers beyond num_vlm_layers come back as unexpected.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn

LEROBOT_PREFIX_MAP: dict[str, str] = {
    "model.vlm_with_expert.vlm.model.vision_model.": "vision.",
    "model.vlm_with_expert.vlm.model.connector.": "connector.",
    "model.vlm_with_expert.vlm.model.text_model.": "text_model.",
    "model.vlm_with_expert.lm_expert.": "lm_expert.",
    "model.": "",
}


@dataclass
class WeightLoadReport:
    loaded: list[str] = field(default_factory=list)
    shape_mismatch: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # ours, absent from the file
    unexpected: list[str] = field(default_factory=list)  # in the file (renamed), not ours

    def summary(self) -> str:
        lines = [
            f"loaded {len(self.loaded)}, shape mismatch {len(self.shape_mismatch)}, "
            f"missing {len(self.missing)}, unexpected {len(self.unexpected)}"
        ]
        lines += [f"  shape {n}: file {fs} vs model {ms}" for n, fs, ms in self.shape_mismatch]
        if self.unexpected:  # a few names say which part of the file does not belong
            more = len(self.unexpected) - 5
            lines.append(
                "  unexpected: "
                + ", ".join(self.unexpected[:5])
                + (f" (+{more} more)" if more > 0 else "")
            )
        return "\n".join(lines)


def rename(name: str, prefix_map: Mapping[str, str]) -> str:
    """Apply the first prefix rule that matches (rules are tried in insertion order)."""
    for old, new in prefix_map.items():
        if name.startswith(old):
            return new + name[len(old) :]
    return name


def load_matching_weights(
    model: nn.Module, path: str | Path, key_map: str | Mapping[str, str] | None = None
) -> WeightLoadReport:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no safetensors file at {path}")
    if key_map == "lerobot":
        prefix_map: Mapping[str, str] = LEROBOT_PREFIX_MAP
    elif isinstance(key_map, str):
        raise ValueError(
            f"unknown key_map {key_map!r}; use 'lerobot' or a {{old_prefix: new}} dict"
        )
    else:
        prefix_map = key_map or {}
    ours = model.state_dict()
    report = WeightLoadReport()
    seen: set[str] = set()
    with safe_open(str(path), framework="pt") as f, torch.no_grad():
        for file_name in f.keys():  # noqa: SIM118 (safe_open has no __iter__)
            name = rename(file_name, prefix_map)
            if name not in ours:
                report.unexpected.append(name)
                continue
            seen.add(name)
            tensor = f.get_tensor(file_name)
            target = ours[name]
            if tuple(tensor.shape) != tuple(target.shape):
                report.shape_mismatch.append((name, tuple(tensor.shape), tuple(target.shape)))
                continue
            target.copy_(tensor.to(dtype=target.dtype))
            report.loaded.append(name)
    report.missing = [n for n in ours if n not in seen]
    return report
