"""`edgevla demo` (what `make demo` runs): the whole pipeline as far as it is built, on the
built-in defaults, writing everything under --out.

Stages today: simulate (an expert episode and the camera snapshot).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgevla.console import console, emit_json
from edgevla.sim import snapshot


@dataclass
class DemoArgs:
    """Run every built stage of the pipeline on small defaults."""

    out: Path = Path("outputs/demo")
    seed: int = 0
    json: bool = False


def run(args: DemoArgs) -> dict:
    result: dict = {}
    console.rule("[bold]1. simulate: expert episode and camera snapshot")
    snap = snapshot.run(snapshot.SnapshotArgs(out=args.out / "sim", seed=args.seed, episode=True, json=False))
    result["sim"] = snap
    if args.json:
        emit_json(result)
    else:
        console.print(f"expert episode success: {snap['success']} ({snap['episode_steps']} steps)")
    return result
