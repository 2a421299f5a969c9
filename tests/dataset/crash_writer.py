"""Subprocess for the crash tests: records golden-content episodes, optionally pausing at a
chosen point so the test can kill -9 it exactly there.

    python crash_writer.py ROOT --episodes 4 [--resume] [--finalize] [--pause-at POINT]

POINT: "episode" (episode 2 half encoded: one camera's mp4 written, no commit yet),
"build" (finalize building its files, before the commit marker), "commit" (commit marker
written, some files moved), "cleanup" (all files moved, staged episodes being removed).
Prints "done <e>" after each committed episode and "PAUSED" when parked at POINT.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from synthetic_dataset import golden_episode  # noqa: E402

from edgevla.dataset.lerobot import consolidate, staging  # noqa: E402
from edgevla.dataset.lerobot import writer as lerobot_v3  # noqa: E402
from edgevla.dataset.lerobot.writer import DatasetSpec, LeRobotDatasetWriter  # noqa: E402

LENGTH = 12


def park() -> None:
    print("PAUSED", flush=True)
    time.sleep(120)
    sys.exit("not killed")


def pause_after(module: object, name: str, calls: int) -> None:
    """Wrap module.name so the process parks after its `calls`-th call."""
    original = getattr(module, name)
    count = 0

    def wrapped(*args: object, **kwargs: object) -> object:
        nonlocal count
        out = original(*args, **kwargs)
        count += 1
        if count == calls:
            park()
        return out

    setattr(module, name, wrapped)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("root", type=Path)
    p.add_argument("--episodes", type=int, default=4)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--finalize", action="store_true")
    p.add_argument("--pause-at", choices=["episode", "build", "commit", "cleanup"])
    args = p.parse_args()

    spec = DatasetSpec(episode_columns={"split": "string", "plan_seed": "int64"})
    if args.resume:
        writer, done = LeRobotDatasetWriter.open_for_resume(args.root)
    else:
        writer, done = LeRobotDatasetWriter.create(args.root, spec, calibration={"seed": 7}), set()
    for e in range(args.episodes):
        if e in done:
            continue
        if args.pause_at == "episode" and e == 2:
            pause_after(staging, "encode_video", 1)
        writer.add_episode(
            golden_episode(e, LENGTH),
            episode_index=e,
            metadata={"split": "val" if e % 4 == 3 else "train", "plan_seed": 1000 + e},
        )
        print(f"done {e}", flush=True)
    if args.finalize:
        if args.pause_at == "build":
            pause_after(consolidate, "concat_videos", 1)
        elif args.pause_at == "commit":
            pause_after(lerobot_v3, "replace_durable", 3)
        elif args.pause_at == "cleanup":
            pause_after(lerobot_v3, "remove_tree", 1)
        writer.finalize()
        print("finalized", flush=True)
    writer.close()


if __name__ == "__main__":
    main()
