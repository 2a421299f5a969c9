"""`edgevla sim bench`: environment speed (physics + every camera render) and the scripted
expert's success rate over seeded starts spread over the whole workspace.

Figures are measured, never assumed; run on an otherwise idle machine for stable numbers.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np

from edgevla.console import console, emit_json, progress, table
from edgevla.sim.env import TeaBagMugEnv
from edgevla.sim.expert import ExpertConfig, ScriptedExpert, rollout_expert
from edgevla.sim.scene import SceneConfig


@dataclass
class SimBenchArgs:
    """Measure environment steps/s with all three cameras and the expert's success rate."""

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
    json: bool = False
    """print one JSON object instead of tables"""


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
    episodes: int, seed: int = 0, scene: SceneConfig | None = None, quiet: bool = False
) -> dict[str, float]:
    """Success rate and largest commanded joint speed (rad/s) of the expert over seeded starts.

    Images are not rendered: the expert uses privileged state only, so this is the same
    trajectory as a recording, 20x faster."""
    env = TeaBagMugEnv(scene or SceneConfig(), render_images=False)
    successes = 0
    regrasps = 0
    max_speed = 0.0
    lengths = []
    with progress(quiet) as p:
        task = p.add_task("expert episodes", total=episodes, status="")
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
            p.update(task, advance=1, status=f"success {successes}/{i + 1}")
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
    episodes: int, seed: int = 0, fps: int = 30, quiet: bool = False
) -> dict[str, float]:
    """Success rate of a single grasp attempt (no re-grasp) when the expert aims off by each of
    GRASP_AIM_ERRORS: how much error a policy imitating the expert can afford at the grasp."""
    env = TeaBagMugEnv(SceneConfig(fps=fps), render_images=False)
    rates: dict[str, float] = {}
    with progress(quiet) as p:
        task = p.add_task("grasp tolerance", total=episodes * len(GRASP_AIM_ERRORS), status="")
        for name, error in GRASP_AIM_ERRORS:
            config = replace(ExpertConfig(), max_regrasps=0, grasp_aim_error=error)
            successes = 0
            for i in range(episodes):
                info = {"success": False}
                for _, _, info in rollout_expert(env, seed=seed + i, expert=ScriptedExpert(config)):
                    pass
                successes += bool(info["success"])
                p.update(task, advance=1, status=name)
            rates[name] = successes / episodes
    return rates


def run(args: SimBenchArgs) -> dict:
    scene = SceneConfig(image_height=args.height, image_width=args.width)
    result: dict = {
        "resolution": f"{args.height}x{args.width}",
        "cameras": list(scene.cameras),
        "fps": scene.fps,
        "physics_substeps": scene.n_substeps,
        "steps_per_s": measure_steps_per_s(scene, args.steps, args.seed),
    }
    if not args.skip_640:
        big = SceneConfig(image_height=480, image_width=640)
        result["steps_per_s_640x480"] = measure_steps_per_s(
            big, max(60, args.steps // 4), args.seed
        )
    result.update(expert_success(args.episodes, args.seed, quiet=args.json))
    if args.tolerance_episodes > 0:
        result["grasp_tolerance"] = grasp_tolerance(
            args.tolerance_episodes, args.seed, scene.fps, quiet=args.json
        )
    result["target_steps_per_s"] = 150
    result["target_expert_success_rate"] = 0.98
    if args.json:
        emit_json(result)
    else:
        rows = [
            (
                f"env steps/s, 3 cameras at {result['resolution']}",
                f"{result['steps_per_s']:.0f}",
                ">= 150",
            ),
        ]
        if "steps_per_s_640x480" in result:
            rows.append(
                ("env steps/s, 3 cameras at 480x640", f"{result['steps_per_s_640x480']:.0f}", "")
            )
        rows += [
            (
                f"expert success ({args.episodes} seeded starts)",
                f"{result['expert_success_rate']:.3f}",
                ">= 0.98",
            ),
            (
                "largest commanded joint speed (rad/s)",
                f"{result['expert_max_joint_speed_rad_s']:.2f}",
                f"<= {result['expert_joint_speed_bound_rad_s']}",
            ),
            ("expert re-grasps", str(result["expert_regrasps"]), ""),
            ("mean episode length (s)", f"{result['expert_mean_episode_s']:.1f}", ""),
        ]
        console.print(table("edgevla sim bench", ["figure", "measured", "target"], rows))
        if "grasp_tolerance" in result:
            console.print(
                table(
                    f"grasp tolerance: one attempt, expert aiming off ({args.tolerance_episodes} starts each)",
                    ["aim error", "success"],
                    [(k, f"{v:.2f}") for k, v in result["grasp_tolerance"].items()],
                )
            )
    return result
