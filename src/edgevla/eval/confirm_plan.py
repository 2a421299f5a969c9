"""Closed-loop confirmation of `edgevla quantize --plan auto` (`--confirm-episodes N`).

`--plan auto` picks the fastest plan whose action error on held-out observations stays within
the budget. An action error says little about success on positions a policy only just makes:
on 2026-12-03 a SmolVLA auto plan within its 0.05 rad budget lost 8 points of Global
(docs/experiments.md). So the fp32 bundle and auto's choice both run the evaluation protocol;
while a candidate loses more than `tolerance` of the fp32 bundle's Global success, the next
fastest candidate within the budget is built and tried, up to `max_candidates`. The accepted
bundle ends up at quantize's --out; when none holds, --out keeps auto's first choice and the
command says so (exit 1).

This sits in eval, above deploy: deploy builds and measures bundles, eval runs them closed loop.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from edgevla_runtime.control.clocks import parse_latency_spec

from edgevla.deploy.quantize import (
    QuantizeConfig,
    QuantizeResult,
    StagePlan,
    quantize_bundle,
    write_plan_file,
)
from edgevla.deploy.stage_files import StageFiles
from edgevla.errors import BadInput
from edgevla.eval.protocol import SETS
from edgevla.eval.run import EvalConfig, evaluate
from edgevla.progress import ProgressFn, no_progress

SUCCESS_KEYS = ("success_test", "success_val", "success_global")


@dataclass(frozen=True)
class ConfirmConfig:
    episodes: int = 1
    """rollouts per position for each bundle evaluated"""
    tolerance: float = 0.02
    """the most Global success a candidate may lose against the fp32 bundle (0.02: 2 points)"""
    plan: Path = Path("outputs/plan.json")
    """the recording plan whose Test/Val positions are evaluated"""
    chunk_size_threshold: float | str = 0.2
    latency: str = "measured"
    """virtual inference latency of both evaluations: "measured" (each bundle's own, timed on
    this machine, so a busy machine can push a chunk a tick later and flip a position), or a
    fixed figure such as "0.004" (deterministic; the same for both bundles)"""
    noise_scale: float = 1.0
    """flow-matching policies: scale of the initial noise (0: the mean path)"""
    max_candidates: int = 3
    """candidates within the budget tried at most, fastest first"""
    workers: int = 2
    episode_time_s: float = 20.0
    sets: tuple[str, ...] = SETS

    def __post_init__(self) -> None:
        if self.episodes < 1 or self.max_candidates < 1:
            raise BadInput("--confirm-episodes and the candidates tried must be >= 1")
        if not 0.0 <= self.tolerance <= 1.0:
            raise BadInput(f"must be in [0, 1] (Global success lost), got {self.tolerance}",
                           field="--confirm-tolerance")  # fmt: skip
        if not (math.isfinite(self.episode_time_s) and self.episode_time_s > 0):
            raise BadInput(f"must be > 0 seconds, got {self.episode_time_s}",
                           field="--confirm-episode-time-s")  # fmt: skip
        if not Path(self.plan).is_file():
            raise BadInput("plan not found; make one with `edgevla plan --out outputs/plan.json`",
                           path=self.plan, field="--confirm-plan")  # fmt: skip
        try:
            parse_latency_spec(self.latency)
        except ValueError as e:
            raise BadInput(str(e), field="--confirm-latency") from None


@dataclass
class Confirmation:
    reference: dict[str, float | None]
    """the fp32 bundle's success_test / success_val / success_global (None: set not evaluated)"""
    tried: list[dict[str, Any]] = field(default_factory=list)
    """per candidate, fastest first: plan, its successes, global_loss, accepted"""
    accepted: dict[str, str] | None = None
    """the plan now at --out; None: no candidate held Global within the tolerance"""
    tolerance: float = 0.02
    episodes: int = 1
    rollouts: int | None = None
    """rollouts behind each Global figure: one more failure costs 1 / rollouts of it"""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def confirm_auto_plan(
    quantize: QuantizeConfig,
    result: QuantizeResult,
    config: ConfirmConfig,
    progress: ProgressFn = no_progress,
    stage_files: StageFiles | None = None,
) -> tuple[QuantizeResult, Confirmation]:
    """Evaluate the fp32 bundle and auto's candidates (fastest first, within the budget) until
    one loses at most `config.tolerance` Global success. Returns the QuantizeResult of the
    bundle now at --out and the record of what was tried. Candidates other than auto's first
    choice are built in `<out>.confirm/` and moved to --out when accepted; given the
    stage_files auto quantised into, they are assembled from those graphs, not quantised again."""
    out = Path(quantize.out)
    work = out.parent / f"{out.name}.confirm"
    work.mkdir(parents=True, exist_ok=True)
    common = dict(plan=config.plan, modes=("async",), latency=config.latency,
                  chunk_size_threshold=config.chunk_size_threshold, episodes=config.episodes,
                  workers=config.workers, noise_scale=config.noise_scale,
                  episode_time_s=config.episode_time_s, sets=config.sets, resume=False)  # fmt: skip

    def success(bundle: Path, name: str) -> tuple[dict[str, float | None], int]:
        """(its successes, the rollouts behind them)"""
        ev = evaluate(EvalConfig(checkpoint=bundle, out=work / f"eval_{name}", **common), progress)
        summary = ev.modes["async"].summary  # a set not evaluated (config.sets) reads None
        rates = {k: None if summary[k] is None else float(summary[k]) for k in SUCCESS_KEYS}
        return rates, len(ev.modes["async"].episodes)

    reference, rollouts = success(Path(quantize.bundle), "fp32")
    confirmation = Confirmation(reference, tolerance=config.tolerance, episodes=config.episodes,
                                rollouts=rollouts)  # fmt: skip
    fits = [c for c in result.candidates if c["within_budget"]][: config.max_candidates]
    for i, candidate in enumerate(fits):
        chosen = candidate["plan"] == result.plan
        built, bundle = result, out
        if not chosen:
            bundle = work / f"candidate{i}"
            plan = {stage: StagePlan(p) for stage, p in candidate["plan"].items()}
            plan_file = write_plan_file(plan, work / f"candidate{i}.yaml")
            built = quantize_bundle(replace(quantize, plan=str(plan_file), budget=None,
                                            out=bundle, overwrite=True), progress, stage_files)  # fmt: skip
        got, _ = success(bundle, f"candidate{i}")
        loss = confirmation.reference["success_global"] - got["success_global"]
        accepted = loss <= config.tolerance + 1e-9
        confirmation.tried.append({"plan": candidate["plan"], **got, "global_loss": loss,
                                   "accepted": accepted})  # fmt: skip
        if accepted:
            confirmation.accepted = dict(candidate["plan"])
            if not chosen:  # swap by renames: a kill between them leaves both bundles on disk
                aside = work / "replaced"
                if aside.exists():
                    shutil.rmtree(aside)
                out.rename(aside)
                bundle.rename(out)
                shutil.rmtree(aside)
                built = replace(built, bundle=str(out), candidates=result.candidates)
            return built, confirmation
    return result, confirmation
