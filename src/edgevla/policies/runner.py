"""A PyTorch policy behind the control loop's `PolicyRunner` interface.

numpy observation (one time step) -> tensors (batch of 1) -> normalise -> predict_action_chunk
-> un-normalise -> numpy chunk (chunk_size, action_dim). The exported ONNX bundle implements the
same interface on the board, so the control loop cannot tell them apart.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from edgevla.features import ACTION_KEY, STATE_KEY, TASK, camera_of, image_key
from edgevla.observation import check_observation
from edgevla.policies.checkpoint import load_checkpoint_stats
from edgevla.policies.common.normalize import Normalizer
from edgevla.policies.factory import load_policy


class TorchPolicyRunner:
    """Runs a policy checkpoint on one observation at a time."""

    def __init__(self, policy: torch.nn.Module, normalizer: Normalizer, task: str = TASK):
        self.policy = policy.eval()
        self.normalizer = normalizer
        self.task = task
        cfg = policy.config
        keys = [k for k in cfg.input_features if k.startswith("observation.images.")]
        self._camera_names = tuple(camera_of(k) for k in keys)
        shape = _shape(cfg.input_features[keys[0]])
        self._image_hw = (int(shape[-2]), int(shape[-1]))
        self._chunk_size = int(cfg.chunk_size)
        self._action_dim = int(_shape(cfg.output_features[ACTION_KEY])[0])
        self._state_dim = int(_shape(cfg.input_features[STATE_KEY])[0])

    @classmethod
    def from_checkpoint(
        cls, folder: str | Path, expected_type: str | None = None
    ) -> TorchPolicyRunner:
        policy = load_policy(folder, expected_type)
        stats = load_checkpoint_stats(folder)
        if stats is None:
            raise FileNotFoundError(
                f"{folder} has no normalisation statistics (normalization_stats.safetensors); "
                "a checkpoint written by `edgevla train` has them"
            )
        return cls(policy, Normalizer(stats, policy.config.normalization_modes()))

    @property
    def chunk_size(self) -> int:
        return self._chunk_size

    @property
    def action_dim(self) -> int:
        return self._action_dim

    @property
    def camera_names(self) -> tuple[str, ...]:
        return self._camera_names

    @property
    def image_hw(self) -> tuple[int, int]:
        return self._image_hw

    def _batch(self, observation: dict[str, np.ndarray]) -> dict:
        check_observation(
            observation, self._state_dim, self._camera_names, self._image_hw, "this checkpoint"
        )
        state = np.array(observation[STATE_KEY], dtype=np.float32)  # a copy: may be read-only
        batch: dict = {STATE_KEY: torch.from_numpy(state)[None]}  # (1, D)
        for cam in self._camera_names:
            key = image_key(cam)
            img = np.asarray(observation[key])
            batch[key] = (
                torch.from_numpy(img).permute(2, 0, 1)[None].float().div_(255.0)
            )  # (1, 3, H, W)
        batch["task"] = [self.task]
        return batch

    @torch.no_grad()
    def predict_chunk(self, observation: dict[str, np.ndarray]) -> np.ndarray:
        batch = self.normalizer.normalize(self._batch(observation))
        chunk = self.policy.predict_action_chunk(batch)  # (1, C, A) normalised
        chunk = self.normalizer.unnormalize({ACTION_KEY: chunk})[ACTION_KEY]
        return chunk[0].numpy().astype(np.float32)


def _shape(feature) -> tuple[int, ...]:
    return tuple(feature.shape if hasattr(feature, "shape") else feature)
