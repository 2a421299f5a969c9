"""Environment speed (physics + every camera render) and the scripted expert's success rate
over seeded starts spread over the whole workspace (`edgevla bench sim`).

Figures are measured, never assumed; run on an otherwise idle machine for stable numbers.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from edgevla.errors import BadInput
from edgevla.progress import ProgressEvent, ProgressFn, no_progress
from edgevla.sim.env import TeaBagMugEnv
from edgevla.sim.expert import ExpertConfig, ScriptedExpert, rollout_expert
from edgevla.sim.scene import SceneConfig

TARGET_STEPS_PER_S = 150
TARGET_EXPERT_SUCCESS = 0.98


@dataclass(frozen=True)
class SimBenchConfig:
    """What to measure: env steps/s with all three cameras, the expert's success rate."""

    steps: int = 600
    """environment steps timed at each resolution"""
    episodes: int = 300
    """seeded expert episodes (every 5th a recovery start)"""
    seed: int = 0
    height: int = 96
    width: int = 128
    skip_640: bool = False
    """skip the 640x480 speed figure"""
    tolerance_episodes: int = 40
    """seeded episodes per grasp aim error in the tolerance table (0 skips it)"""

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise BadInput(f"must be >= 1, got {self.steps}", field="--steps")
        if self.episodes < 1:
            raise BadInput(f"must be >= 1, got {self.episodes}", field="--episodes")
        if self.tolerance_episodes < 0:
            raise BadInput(
                f"must be >= 0, got {self.tolerance_episodes}", field="--tolerance-episodes"
            )
        # SceneConfig checks the image size against the supported range.
        SceneConfig(image_height=self.height, image_width=self.width)


@dataclass
class SimBenchResult:
    """Measured figures; `to_dict()` is the --json object."""

    resolution: str
    cameras: list[str]
    fps: int
    physics_substeps: int
    steps_per_s: float
    expert: dict[str, float]
    steps_per_s_640x480: float | None = None
    grasp_tolerance: dict[str, float] = field(default_factory=dict)
    target_steps_per_s: int = TARGET_STEPS_PER_S
    target_expert_success_rate: float = TARGET_EXPERT_SUCCESS

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(d.pop("expert"))  # flat keys, as results files have always had
        if self.steps_per_s_640x480 is None:
            d.pop("steps_per_s_640x480")
        if not self.grasp_tolerance:
            d.pop("grasp_tolerance")
        return d


def measure_steps_per_s(scene: SceneConfig, steps: int, seed: int = 0) -> float:
    """Steps/s of env.step (physics sub-steps + one render per camera), driven by the expert
    so the arm moves and the scene changes as in recording."""
    env = TeaBagMugEnv(scene)
    expert = ScriptedExpert()
    env.reset(seed=seed)
    expert.reset(env)
    for _ in range(10):  # warm-up: renderer creation, caches
        env.step(expert.act(env))
    elapsed = 0.0
    done = 0
    episode_seed = seed
    while done < steps:
        action = expert.act(env)
        t0 = time.perf_counter()
        _, _, terminated, truncated, _ = env.step(action)
        elapsed += time.perf_counter() - t0
        done += 1
        if terminated or truncated or expert.done:
            episode_seed += 1
            env.reset(seed=episode_seed)
            expert.reset(env)
    env.close()
    return done / elapsed


def expert_success(
    episodes: int,
    seed: int = 0,
    scene: SceneConfig | None = None,
    progress: ProgressFn = no_progress,
) -> dict[str, float]:
    """Success rate and largest commanded joint speed (rad/s) of the expert over seeded starts.

    Images are not rendered: the expert uses privileged state only, so this is the same
    trajectory as a recording, 20x faster."""
    env = TeaBagMugEnv(scene or SceneConfig(), render_images=False)
    successes = 0
    regrasps = 0
    max_speed = 0.0
    lengths = []
    for i in range(episodes):
        expert = ScriptedExpert()
        actions = []
        info = {"success": False}
        for _, action, info in rollout_expert(
            env, seed=seed + i, options={"recovery": i % 5 == 4}, expert=expert
        ):
            actions.append(action)
        a = np.asarray(actions)
        if len(a) > 1:
            max_speed = max(
                max_speed, float(np.abs(np.diff(a[:, :5], axis=0)).max() * env.scene.fps)
            )
        successes += bool(info["success"])
        regrasps += expert.state.regrasps
        lengths.append(len(a))
        progress(ProgressEvent("expert episodes", i + 1, episodes, f"success {successes}/{i + 1}"))
    return {
        "expert_success_rate": successes / episodes,
        "expert_episodes": episodes,
        "expert_regrasps": regrasps,
        "expert_max_joint_speed_rad_s": max_speed,
        "expert_joint_speed_bound_rad_s": ScriptedExpert().config.max_joint_speed,
        "expert_mean_episode_s": float(np.mean(lengths)) / env.scene.fps,
    }


# (name, (radial, tangential, height) aim error in m): the errors a learned policy makes.
GRASP_AIM_ERRORS: tuple[tuple[str, tuple[float, float, float]], ...] = (
    ("on target", (0.0, 0.0, 0.0)),
    ("1 cm high", (0.0, 0.0, 0.01)),
    ("5 mm low", (0.0, 0.0, -0.005)),
    ("1 cm sideways", (0.0, 0.01, 0.0)),
    ("1.5 cm sideways", (0.0, 0.015, 0.0)),
    ("1.5 cm too far", (0.015, 0.0, 0.0)),
    ("1.5 cm too near", (-0.015, 0.0, 0.0)),
    ("1 cm high and 1 cm sideways", (0.0, 0.01, 0.01)),
)


def grasp_tolerance(
    episodes: int, seed: int = 0, fps: int = 30, progress: ProgressFn = no_progress
) -> dict[str, float]:
    """Success rate of a single grasp attempt (no re-grasp) when the expert aims off by each of
    GRASP_AIM_ERRORS: how much error a policy imitating the expert can afford at the grasp."""
    env = TeaBagMugEnv(SceneConfig(fps=fps), render_images=False)
    rates: dict[str, float] = {}
    total = episodes * len(GRASP_AIM_ERRORS)
    done = 0
    for name, error in GRASP_AIM_ERRORS:
        config = replace(ExpertConfig(), max_regrasps=0, grasp_aim_error=error)
        successes = 0
        for i in range(episodes):
            info = {"success": False}
            for _, _, info in rollout_expert(env, seed=seed + i, expert=ScriptedExpert(config)):
                pass
            successes += bool(info["success"])
            done += 1
            progress(ProgressEvent("grasp tolerance", done, total, name))
        rates[name] = successes / episodes
    return rates


def sim_bench(config: SimBenchConfig, progress: ProgressFn = no_progress) -> SimBenchResult:
    """Measure every figure `config` asks for (see SimBenchResult)."""
    scene = SceneConfig(image_height=config.height, image_width=config.width)
    result = SimBenchResult(
        resolution=f"{config.height}x{config.width}",
        cameras=list(scene.cameras),
        fps=scene.fps,
        physics_substeps=scene.n_substeps,
        steps_per_s=measure_steps_per_s(scene, config.steps, config.seed),
        expert={},
    )
    if not config.skip_640:
        big = SceneConfig(image_height=480, image_width=640)
        result.steps_per_s_640x480 = measure_steps_per_s(
            big, max(60, config.steps // 4), config.seed
        )
    result.expert = expert_success(config.episodes, config.seed, progress=progress)
    if config.tolerance_episodes > 0:
        result.grasp_tolerance = grasp_tolerance(
            config.tolerance_episodes, config.seed, scene.fps, progress=progress
        )
    return result
