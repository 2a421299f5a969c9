"""Deterministic stand-ins for an environment and a policy, for tests of anything built on the
control loop (here, in edgevla, and in a user's own integration).

RecordingEnv: the joint state becomes the commanded target at once and every command is
recorded; info["success"] is true from step `success_after` (through `success_until`), and the
episode terminates on success when `terminate_on_success` (as the sim does after a hold).
ScriptedRunner: call n (0-based) returns a chunk whose row i is 100 * (n + 1) + i in every
joint, so each executed value names the chunk and row it came from (203 = row 3 of the second
chunk); it can fail, block or sleep on a chosen call to inject faults.
"""

from __future__ import annotations

import threading

import numpy as np

from edgevla_runtime.features import ACTION_DIM, STATE_KEY


class RecordingEnv:
    def __init__(
        self,
        success_after: int | None = None,
        start: float = 0.0,
        success_until: int | None = None,
        terminate_on_success: bool = True,
    ) -> None:
        self.success_after = success_after
        self.success_until = success_until
        self.terminate_on_success = terminate_on_success
        self.start = start
        self.commands: list[np.ndarray] = []

    def _obs(self) -> dict[str, np.ndarray]:
        return {STATE_KEY: self.state.copy()}

    def reset(self, *, seed: int | None = None, options=None):
        self.state = np.full(ACTION_DIM, self.start, dtype=np.float32)
        self.commands = []
        return self._obs(), {}

    def step(self, action: np.ndarray):
        assert action.dtype == np.float32 and action.shape == (ACTION_DIM,)
        self.commands.append(action.copy())
        self.state = action.copy()
        n = len(self.commands)
        success = self.success_after is not None and n >= self.success_after
        if self.success_until is not None and n > self.success_until:
            success = False
        terminated = success and self.terminate_on_success
        return self._obs(), float(success), terminated, False, {"success": success}

    @property
    def trace(self) -> list[float]:
        """Joint 0 of every command sent, one per tick."""
        return [float(c[0]) for c in self.commands]


class ScriptedRunner:
    camera_names: tuple[str, ...] = ()
    image_hw = (96, 128)
    action_dim = ACTION_DIM

    def __init__(
        self,
        chunk_size: int = 10,
        fail_on_call: int | None = None,
        block: threading.Event | None = None,
        block_on_call: int = 0,
        sleep_s: float = 0.0,
    ) -> None:
        self.chunk_size = chunk_size
        self.fail_on_call = fail_on_call
        self.block = block
        self.block_on_call = block_on_call
        self.sleep_s = sleep_s
        self.calls = 0
        self.seen_states: list[float] = []
        self.reset_seeds: list[int | None] = []

    def reset(self, seed: int | None = None) -> None:
        self.reset_seeds.append(seed)

    def predict_chunk(self, observation: dict[str, np.ndarray]) -> np.ndarray:
        n = self.calls
        self.calls += 1
        self.seen_states.append(float(observation[STATE_KEY][0]))
        if self.fail_on_call is not None and n == self.fail_on_call:
            raise RuntimeError("model exploded")
        if self.block is not None and n == self.block_on_call:
            self.block.wait(5.0)  # a hung runtime; the test releases it afterwards
        if self.sleep_s:
            threading.Event().wait(self.sleep_s)
        rows = 100.0 * (n + 1) + np.arange(self.chunk_size, dtype=np.float32)  # (C,)
        return np.repeat(rows[:, None], ACTION_DIM, axis=1).astype(np.float32)  # (C, D)
