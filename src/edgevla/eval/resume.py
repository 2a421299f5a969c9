"""Finished episodes survive a Ctrl-C: each one is appended to <out>/episodes.jsonl as it
finishes, and a rerun with the same settings runs only the episodes still missing.

A line is {"run": RUN_KEY, "key": "test-003-r0", "seed": ..., "episode": results.json row}.
RUN_KEY fingerprints everything that decides an episode's result: the checkpoint's files, the
plan, the scene (rate, image size, perturbations) and the control settings (mode, threshold,
latency, ...). Lines of another run key are ignored, so a changed checkpoint or setting never
reuses stale episodes; a line cut short by a kill is skipped (that episode runs again).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from edgevla.eval.parallel import EpisodeOutcome

PROGRESS_FILE = "episodes.jsonl"
_HASHED_UP_TO = 64 << 20  # files larger than this are fingerprinted by size and mtime


def checkpoint_identity(folder: str | Path) -> str:
    """A fingerprint of a checkpoint folder's files (not its subfolders, where eval writes)."""
    h = hashlib.sha256()
    for path in sorted(p for p in Path(folder).iterdir() if p.is_file()):
        st = path.stat()
        h.update(f"{path.name}\0{st.st_size}\0".encode())
        if st.st_size <= _HASHED_UP_TO:
            h.update(path.read_bytes())
        else:
            h.update(str(st.st_mtime_ns).encode())
    return h.hexdigest()[:16]


def file_identity(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def run_key(parts: dict[str, Any]) -> str:
    """A short fingerprint of JSON-able settings."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class EpisodeLog:
    """The finished episodes of one run key in one progress file."""

    def __init__(self, path: str | Path, run: str) -> None:
        self.path = Path(path)
        self.run = run

    def load(self) -> dict[tuple[str, int], EpisodeOutcome]:
        """{(episode key, seed): outcome} of this run key; unreadable lines are skipped."""
        found: dict[tuple[str, int], EpisodeOutcome] = {}
        if not self.path.is_file():
            return found
        for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                rec = json.loads(line)
                if rec.get("run") != self.run:
                    continue
                outcome = EpisodeOutcome.from_dict(rec["episode"])
            except (ValueError, KeyError, TypeError, AttributeError):
                continue  # a line cut short by a kill, or from an older format
            found[(outcome.key, outcome.seed)] = outcome
        return found

    def append(self, outcome: EpisodeOutcome) -> None:
        """Add one finished episode, on disk before this returns."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"run": self.run, "key": outcome.key, "seed": outcome.seed,
                           "episode": outcome.to_dict()}, default=str)  # fmt: skip
        with open(self.path, "a+b") as f:
            if f.tell() > 0:  # a kill mid-write leaves a line without its newline: end it
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    f.write(b"\n")
            f.write(line.encode() + b"\n")
            f.flush()
            os.fsync(f.fileno())
