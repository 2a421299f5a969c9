"""The one interface the control loop needs from a policy: observation in, action chunk out.

PyTorch policies (on a workstation or a remote policy server) and ONNX bundles (on the board)
both implement `PolicyRunner`, so the loop, the schedules and the metrics are written once.
This module imports only the standard library and numpy: it ships in the board-side runtime.

Why the loop, not the runner, times inference: a runner can only time the part of the call it
can see (and a remote runner cannot see the network at all). The loop measures each
`predict_chunk` call with `time.perf_counter` around the whole call (see `timed_predict`), which is
the latency that actually delays the arm.
"""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable

import numpy as np

from edgevla_runtime.observation import check_observation as check_observation_for


@runtime_checkable
class PolicyRunner(Protocol):
    """A policy that turns one observation into a chunk of future actions.

    Observation keys and shapes follow `edgevla_runtime.features`:
        "observation.state"          float32 (STATE_DIM,)
        "observation.images.<cam>"   uint8   (H, W, 3) for cam in `camera_names`, (H, W) = image_hw
    The returned chunk is float32 (chunk_size, action_dim); row i is the action for the i-th
    control tick counted from the tick the observation was taken.

    A runner holds no chunk bookkeeping (queues, ensembling): that belongs to the control loop.
    reset(seed) is called by the loop at every episode start with the episode's seed, so a policy
    that samples its chunk (flow matching) is reproducible; a deterministic runner does nothing.
    """

    @property
    def chunk_size(self) -> int:
        """Number of actions one call predicts."""
        ...

    @property
    def action_dim(self) -> int:
        """Width of one action (6 for the SO-101: five joints and the gripper)."""
        ...

    @property
    def camera_names(self) -> tuple[str, ...]:
        """Cameras the policy consumes, e.g. ("top", "gripper", "left")."""
        ...

    @property
    def image_hw(self) -> tuple[int, int]:
        """(height, width) the policy expects each camera image to have."""
        ...

    def reset(self, seed: int | None = None) -> None:
        """Start a new episode: reseed any sampling noise (None: an unseeded episode)."""
        ...

    def predict_chunk(self, observation: dict[str, np.ndarray]) -> np.ndarray:
        """Return the action chunk, float32 (chunk_size, action_dim), for one observation."""
        ...


def check_chunk(chunk: object, runner: PolicyRunner) -> np.ndarray:
    """Validate a runner's output and return it as a float32 (chunk_size, action_dim) array.

    The loop calls this on every chunk so that a runner bug (a batch dimension left in, a wrong
    action width, a NaN from an overflowing quantised layer) fails at the boundary with a
    message naming the runner, rather than as a strange motion of the arm.
    """
    arr = np.asarray(chunk)
    if arr.ndim == 3 and arr.shape[0] == 1:
        hint = " It looks batched: drop the leading batch dimension (chunk[0])."
    else:
        hint = ""
    expected = (runner.chunk_size, runner.action_dim)
    if arr.shape != expected:
        raise ValueError(
            f"{type(runner).__name__}.predict_chunk returned shape {arr.shape}; expected "
            f"(chunk_size, action_dim) = {expected}.{hint}"
        )
    if not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(
            f"{type(runner).__name__}.predict_chunk returned dtype {arr.dtype}; expected a float "
            "array (float32), joint targets in radians."
        )
    out = arr.astype(np.float32, copy=False)
    if not np.all(np.isfinite(out)):
        raise ValueError(
            f"{type(runner).__name__}.predict_chunk returned non-finite actions (NaN or inf); "
            "the arm cannot execute them. Check the model's precision plan and normalisation."
        )
    return out


def timed_predict(
    runner: PolicyRunner, observation: dict[str, np.ndarray]
) -> tuple[np.ndarray, float]:
    """Run one inference and measure it; returns (chunk (chunk_size, action_dim), seconds)."""
    start = time.perf_counter()
    chunk = runner.predict_chunk(observation)
    latency_s = time.perf_counter() - start
    return check_chunk(chunk, runner), latency_s


def check_observation(observation: dict[str, np.ndarray], runner: PolicyRunner) -> None:
    """Fail early, with a fix, when an environment's observation does not suit a runner.

    Checked once per episode (on the reset observation), not every tick: the env's contract
    does not change mid-episode. Actions are joint targets, so the state has action_dim entries.
    """
    check_observation_for(
        observation,
        state_dim=runner.action_dim,
        camera_names=runner.camera_names,
        image_hw=runner.image_hw,
        who=f"the runner ({type(runner).__name__})",
    )
