"""`edgevla bench sim`: environment steps/s (physics + three renders) and the expert's success."""

from __future__ import annotations

from dataclasses import dataclass

from edgevla.commands import config_from, present
from edgevla.console import console, table
from edgevla.sim.bench import SimBenchConfig, SimBenchResult, sim_bench


@dataclass(frozen=True)
class Args(SimBenchConfig):
    """Measure environment steps/s with all three cameras and the expert's success rate."""

    json: bool = False
    """print one JSON object instead of tables"""

    def __post_init__(self) -> None:
        """Checked when run() builds the SimBenchConfig, so a bad value is one line (exit 2)."""


def rows(result: SimBenchResult, config: SimBenchConfig) -> list[tuple[str, str, str]]:
    out = [
        (f"env steps/s, 3 cameras at {result.resolution}", f"{result.steps_per_s:.0f}",
         f">= {result.target_steps_per_s}"),
    ]  # fmt: skip
    if result.steps_per_s_640x480 is not None:
        out.append(("env steps/s, 3 cameras at 480x640", f"{result.steps_per_s_640x480:.0f}", ""))
    e = result.expert
    out += [
        (f"expert success ({config.episodes} seeded starts)", f"{e['expert_success_rate']:.3f}",
         f">= {result.target_expert_success_rate}"),
        ("largest commanded joint speed (rad/s)", f"{e['expert_max_joint_speed_rad_s']:.2f}",
         f"<= {e['expert_joint_speed_bound_rad_s']}"),
        ("expert re-grasps", str(e["expert_regrasps"]), ""),
        ("mean episode length (s)", f"{e['expert_mean_episode_s']:.1f}", ""),
    ]  # fmt: skip
    return out


def run(args: Args) -> int:
    config = config_from(args, SimBenchConfig)
    present(args, lambda report: sim_bench(config, progress=report), lambda r: show(r, config))
    return 0


def show(result: SimBenchResult, config: SimBenchConfig) -> None:
    console.print(
        table("edgevla bench sim", ["figure", "measured", "target"], rows(result, config))
    )
    if result.grasp_tolerance:
        title = f"grasp tolerance: one attempt, expert aiming off ({config.tolerance_episodes} starts each)"
        console.print(
            table(
                title,
                ["aim error", "success"],
                [(k, f"{v:.2f}") for k, v in result.grasp_tolerance.items()],
            )
        )
