"""Run evaluation episodes in worker processes (one per core), each with its own env and
policy runner built once, so a 30-episode evaluation uses both cores of the board-class CPU.

Workers receive a picklable `RunnerSpec` (how to build the runner) rather than the runner
itself: models and renderers do not cross process boundaries.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from edgevla_runtime.control.config import ControlConfig

from edgevla.eval.protocol import EvalEpisode


@dataclass(frozen=True)
class RunnerSpec:
    """What to run: a training checkpoint (torch) today; ONNX bundles implement the same."""

    kind: str  # "checkpoint"
    path: Path
    threads: int = 1
    noise_scale: float = 1.0  # a sampling policy's initial noise (TorchPolicyRunner)

    def build(self):
        if self.kind == "checkpoint":
            import torch

            torch.set_num_threads(self.threads)
            from edgevla.policies.runner import TorchPolicyRunner

            return TorchPolicyRunner.from_checkpoint(self.path, noise_scale=self.noise_scale)
        raise ValueError(f"unknown runner kind {self.kind!r}")


@dataclass(frozen=True)
class EnvSpec:
    """The evaluation scene (perturbations included) and episode time limit."""

    scene: Any  # SceneConfig
    episode_time_s: float


_worker: dict[str, Any] = {}


def _init_worker(runner_spec: RunnerSpec, env_spec: EnvSpec) -> None:
    from edgevla.sim.env import TeaBagMugEnv

    _worker["runner"] = runner_spec.build()
    _worker["env"] = TeaBagMugEnv(env_spec.scene, max_episode_s=env_spec.episode_time_s)


def _check_compatible(runner, env, control: ControlConfig | None = None) -> None:
    scene = env.scene
    if control is not None and control.fps != scene.fps:
        raise ValueError(
            f"the control loop runs at {control.fps} fps but the environment steps at "
            f"{scene.fps} fps; build both from one rate (edgevla.eval.run.policy_rate)"
        )
    missing = [c for c in runner.camera_names if c not in scene.cameras]
    if missing:
        raise ValueError(f"the policy needs cameras {missing} that the environment does not render")
    if tuple(runner.image_hw) != (scene.image_height, scene.image_width):
        raise ValueError(
            f"the policy expects {runner.image_hw[0]}x{runner.image_hw[1]} images, the environment renders "
            f"{scene.image_height}x{scene.image_width}; evaluate at the policy's image size"
        )
    if runner.action_dim != env.action_space.shape[0]:
        raise ValueError(
            f"the policy outputs {runner.action_dim} actions, the arm takes {env.action_space.shape[0]}"
        )


class _Observed:
    """The env as the control loop sees it, with an OutcomeTracker watching every step."""

    def __init__(self, env) -> None:
        from edgevla.sim.outcome import OutcomeTracker

        self.env = env
        self.tracker = OutcomeTracker()

    def reset(self, *, seed=None, options=None):
        self.tracker.reset()
        return self.env.reset(seed=seed, options=options)

    def step(self, action):
        out = self.env.step(action)
        self.tracker.update(self.env)
        return out


def _run_one(episode: EvalEpisode, control: ControlConfig) -> dict[str, Any]:
    from edgevla_runtime.control.loop import run_episode

    env, runner = _worker["env"], _worker["runner"]
    _check_compatible(runner, env, control)
    cfg = replace(control, latency_seed=episode.seed)
    observed = _Observed(env)
    result = run_episode(
        observed,
        runner,
        cfg,
        seed=episode.seed,
        reset_options={"start_state": episode.planned.start_state()},
    )
    out = result.to_dict(traces=True)
    out.update(observed.tracker.outcome())
    # Both read env.is_success() after the last step, so they agree unless the loop ended the
    # episode another way (an inference error fails it): the loop's verdict stands.
    if out["success"]:
        out["outcome"] = "success"
    elif out["outcome"] == "success":
        out["outcome"] = "in_mug_not_released"
    out.update(
        {"set": episode.set, "position": episode.planned.index, "cluster": episode.planned.cluster,
         "repeat": episode.repeat, "seed": episode.seed, "key": episode.key}
    )  # fmt: skip
    return out


def run_parallel(
    episodes: list[EvalEpisode],
    runner_spec: RunnerSpec,
    env_spec: EnvSpec,
    control: ControlConfig,
    workers: int | None = None,
    on_done: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Results in the order of `episodes`. workers=1 runs in this process (no pickling)."""
    workers = workers or min(len(episodes), os.cpu_count() or 1)
    results: dict[str, dict[str, Any]] = {}
    if workers <= 1:
        _init_worker(runner_spec, env_spec)
        for ep in episodes:
            r = _run_one(ep, control)
            results[ep.key] = r
            if on_done:
                on_done(r)
    else:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")  # fork after torch/EGL initialisation is not safe
        with ProcessPoolExecutor(
            workers, mp_context=ctx, initializer=_init_worker, initargs=(runner_spec, env_spec)
        ) as pool:
            futures = {pool.submit(_run_one, ep, control): ep for ep in episodes}
            for fut in as_completed(futures):
                r = fut.result()
                results[r["key"]] = r
                if on_done:
                    on_done(r)
    return [results[ep.key] for ep in episodes]


def iter_sets(results: list[dict[str, Any]]) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    for name in ("test", "val"):
        yield name, [r for r in results if r["set"] == name]
    yield "global", results
