"""A PyTorch policy behind the control loop's `PolicyRunner` interface.

numpy observation (one time step) -> tensors (batch of 1) -> normalise -> predict_action_chunk
-> un-normalise -> numpy chunk (chunk_size, action_dim). The exported ONNX bundle implements the
same interface on the board, so the control loop cannot tell them apart.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from edgevla_runtime.features import ACTION_KEY, STATE_KEY, TASK, camera_of, image_key
from edgevla_runtime.observation import check_observation

from edgevla.policies.checkpoint import Checkpoint
from edgevla.policies.common.normalize import Normalizer


class TorchPolicyRunner:
    """Runs a policy checkpoint on one observation at a time.

    A flow-matching policy (SmolVLA) starts each chunk from Gaussian noise. The runner draws it
    from its own generator, seeded by reset(seed) at every episode, so an evaluation gives the
    same figures whichever worker process runs an episode and in whatever order. noise_scale
    multiplies that noise (1.0 = SmolVLA's sampler; below 1 the samples move toward the
    conditional mean, trading diversity for precision); a deterministic policy (ACT) has none.
    """

    def __init__(
        self,
        policy: torch.nn.Module,
        normalizer: Normalizer,
        task: str = TASK,
        noise_scale: float = 1.0,
    ):
        self.policy = policy.eval()
        self.normalizer = normalizer
        self.task = task
        self._samples = hasattr(policy, "sample_actions")
        if not (noise_scale >= 0 and np.isfinite(noise_scale)):
            raise ValueError(f"noise_scale {noise_scale} must be a finite number >= 0")
        if noise_scale != 1.0 and not self._samples:
            raise ValueError(
                f"noise_scale={noise_scale} applies to a policy that samples its chunk (SmolVLA); "
                f"{type(policy).__name__} predicts deterministically: leave it at 1"
            )
        self.noise_scale = float(noise_scale)
        self._noise = torch.Generator().manual_seed(0)
        cfg = policy.config
        self._camera_names = tuple(camera_of(k) for k in cfg.image_features)
        self._image_hw = cfg.camera_hw
        self._chunk_size = int(cfg.chunk_size)
        self._action_dim = int(cfg.output_features[ACTION_KEY].shape[0])
        self._state_dim = int(cfg.input_features[STATE_KEY].shape[0])

    @classmethod
    def from_checkpoint(
        cls,
        folder: str | Path | Checkpoint,
        expected_type: str | None = None,
        noise_scale: float = 1.0,
    ) -> TorchPolicyRunner:
        """Run a checkpoint folder (ours or LeRobot's, statistics from its processor files)."""
        if not isinstance(folder, Checkpoint):
            folder = Checkpoint.open(folder, expected_type)
        elif expected_type is not None and folder.policy_type != expected_type:
            raise ValueError(
                f"{folder.folder} holds a {folder.policy_type!r} checkpoint, but a "
                f"{expected_type!r} policy was asked for"
            )
        ckpt = folder
        normalizer = ckpt.normalizer()  # explains a folder without statistics before loading
        return cls(ckpt.load_policy(), normalizer, noise_scale=noise_scale)

    def reset(self, seed: int | None = None) -> None:
        """Start an episode: reseed the sampling noise (the control loop calls this)."""
        self._noise.manual_seed(0 if seed is None else int(seed))

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
        if self._samples:
            cfg = self.policy.config
            noise = torch.randn((1, cfg.chunk_size, cfg.max_action_dim), generator=self._noise)
            chunk = self.policy.predict_action_chunk(batch, noise=noise * self.noise_scale)
        else:
            chunk = self.policy.predict_action_chunk(batch)  # (1, C, A) normalised
        chunk = self.normalizer.unnormalize({ACTION_KEY: chunk})[ACTION_KEY]
        return chunk[0].numpy().astype(np.float32)


def load_runner(folder: str | Path, threads: int = 1, noise_scale: float = 1.0):
    """A PolicyRunner for a folder: an exported bundle (it has manifest.json) runs in ONNX
    Runtime, a checkpoint folder in PyTorch (with `threads` intra-op threads either way)."""
    from edgevla_runtime.bundle import MANIFEST, BundleRunner

    if (Path(folder) / MANIFEST).is_file():
        return BundleRunner(folder, threads=threads, noise_scale=noise_scale)
    torch.set_num_threads(threads)
    return TorchPolicyRunner.from_checkpoint(folder, noise_scale=noise_scale)
