"""Quantised stage graphs kept for the rest of one command, so no stage is quantised twice.

`edgevla quantize --plan auto` quantises every stage at every precision to time and compare the
combinations; the bundle it then writes, and each candidate a closed-loop confirmation builds
(`--confirm-episodes`), need some of exactly those graphs again. Quantising them anew costs a
calibration per stage (shipped ACT: ~20 s per bundle; full-size SmolVLA: minutes) and gives
the same bytes. A StageFiles folder holds each graph under a key made of everything that shapes
it: the source stage file's sha256, the stage's plan entry, and the quantisation settings
(calibration method and observations, dataset, int4 block size, reduce_range). A different
setting is a different key, so a lookup never returns a graph made another way.

The folder belongs to the caller (a temporary folder per command); nothing here deletes it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


class StageFiles:
    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def key(source_sha256: str, plan: dict[str, Any], settings: dict[str, Any]) -> str:
        """A short digest of what makes a quantised graph: its source, plan entry, settings."""
        text = json.dumps({"source": source_sha256, "plan": plan, "settings": settings},
                          sort_keys=True, default=str)  # fmt: skip
        return hashlib.sha256(text.encode()).hexdigest()[:20]

    def path(self, key: str, file: str) -> Path:
        """Where the graph for `key` lives (or will); `file` is the stage's file name."""
        return self.folder / key / file

    def lookup(self, key: str, file: str) -> Path | None:
        """The stored graph for `key`, or None if it was never stored."""
        path = self.path(key, file)
        return path if path.is_file() else None

    def partial(self, key: str, file: str) -> Path:
        """Where to write the graph for `key` before `store` makes it visible to `lookup`."""
        path = self.path(key, file)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path.with_name(f"partial.{file}")

    def store(self, key: str, file: str) -> Path:
        """Make the graph written at `partial(key, file)` the one for `key`, by a rename: a
        killed process never leaves a half graph under a key. Returns its path."""
        dst = self.path(key, file)
        self.partial(key, file).replace(dst)
        return dst
