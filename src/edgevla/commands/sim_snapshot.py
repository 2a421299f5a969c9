"""`edgevla sim snapshot`: PNGs of the camera views (and an expert rollout strip)."""

from __future__ import annotations

from dataclasses import dataclass

from edgevla.commands import config_from
from edgevla.console import console, emit_json
from edgevla.sim.snapshot import SnapshotConfig, snapshot


@dataclass(frozen=True)
class Args(SnapshotConfig):
    """Write PNGs of the camera views (and an expert rollout strip with --episode)."""

    json: bool = False
    """print one JSON object instead of tables (for scripts and CI)"""

    def __post_init__(self) -> None:
        """Checked when run() builds the SnapshotConfig, so a bad value is one line (exit 2)."""


def run(args: Args) -> int:
    config = config_from(args, SnapshotConfig)
    result = snapshot(config)
    if args.json:
        emit_json(result.to_dict())
    else:
        for path in result.files:
            console.print(f"wrote {path}")
    return 0
