"""What every policy config says about its inputs and outputs, in LeRobot's vocabulary.

`FeatureType`, `PolicyFeature` and `NormalizationMode` carry LeRobot's names and values
(lerobot.configs.types), so a config.json's "input_features" / "output_features" /
"normalization_mapping" cross over as they are. `FeatureViews` derives the views LeRobot's
PreTrainedConfig offers (image_features, robot_state_feature, action_feature, ...) from a
config's `input_features` / `output_features`, and `normalization_modes()` from its
`normalization_mapping`; ACTConfig and SmolVLAConfig both mix it in, so runners, trainers and
exporters read one surface.

`VisionPart` is what a policy hands `edgevla pretrain`: its vision encoder, a per-location
reduction to a few channels, the file the pre-trained weights are written to and the override
that loads them into a policy (each policy's config builds it with `vision_part()`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from edgevla_runtime.features import ACTION_KEY
from torch import nn


class FeatureType(StrEnum):
    """Same names as LeRobot's FeatureType (the "type" of an input/output feature)."""

    STATE = "STATE"
    VISUAL = "VISUAL"
    ENV = "ENV"
    ACTION = "ACTION"
    REWARD = "REWARD"
    LANGUAGE = "LANGUAGE"


class NormalizationMode(StrEnum):
    """Same names as LeRobot's NormalizationMode."""

    MEAN_STD = "MEAN_STD"
    MIN_MAX = "MIN_MAX"
    IDENTITY = "IDENTITY"


@dataclass(frozen=True)
class PolicyFeature:
    """One input or output of a policy: its type and per-sample shape (no batch/time dims).

    Images are (3, H, W); state and action are (D,).
    """

    type: FeatureType
    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "type", FeatureType(self.type))
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type.value, "shape": list(self.shape)}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> PolicyFeature:
        return cls(type=FeatureType(obj["type"]), shape=tuple(obj["shape"]))


class FeatureViews:
    """Views over `input_features` / `output_features` (dict[str, PolicyFeature]) and
    `normalization_mapping` (feature type name -> NormalizationMode), as LeRobot's
    PreTrainedConfig exposes them. Mixed into each policy config."""

    input_features: dict[str, PolicyFeature]
    output_features: dict[str, PolicyFeature]
    normalization_mapping: dict[str, NormalizationMode]

    @property
    def all_features(self) -> dict[str, PolicyFeature]:
        return {**self.input_features, **self.output_features}

    @property
    def image_features(self) -> dict[str, PolicyFeature]:
        """Camera features in input order."""
        return {k: f for k, f in self.input_features.items() if f.type is FeatureType.VISUAL}

    @property
    def robot_state_feature(self) -> PolicyFeature | None:
        return next((f for f in self.input_features.values() if f.type is FeatureType.STATE), None)

    @property
    def robot_state_key(self) -> str | None:
        return next(
            (k for k, f in self.input_features.items() if f.type is FeatureType.STATE), None
        )

    @property
    def action_feature(self) -> PolicyFeature:
        return self.output_features[ACTION_KEY]

    @property
    def camera_hw(self) -> tuple[int, int]:
        """(H, W) shared by the cameras."""
        shape = next(iter(self.image_features.values())).shape
        return int(shape[-2]), int(shape[-1])

    def normalization_modes(self) -> dict[str, NormalizationMode]:
        """Per-feature modes for `Normalizer(stats, config.normalization_modes())`.

        A feature type missing from normalization_mapping passes through (IDENTITY), as in LeRobot.
        """
        mapping = self.normalization_mapping
        return {
            k: NormalizationMode(mapping.get(f.type.value, NormalizationMode.IDENTITY))
            for k, f in self.all_features.items()
        }


@dataclass
class VisionPart:
    """The encoder being pre-trained, how its features are reduced per location, and where its
    weights go: encoder (N, 3, H, W) -> features (N, C, h, w) or (N, T, D).

    use_with: the `edgevla train` overrides that load the file, with "{path}" for its path.
    """

    encoder: nn.Module
    reduce: nn.Module
    file_name: str
    use_with: str
