"""Reading and writing the JSON files a user hands us (plans, configs, train_info, results).

One reader that explains every failure with the file's name and what to do: missing, empty,
not UTF-8, not JSON, or the wrong JSON type. One writer that never leaves half a file behind
(write aside, fsync, rename), so a killed process leaves the old file or the new one.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from edgevla.errors import BadInput


def read_json(path: str | Path, what: str, expect: type = dict, fix: str = "") -> Any:
    """Parse `path` as JSON of type `expect` (dict or list), or raise BadInput naming the file.

    what: what the file is, for the message ("plan", "checkpoint config").
    fix: what to do about a bad file (appended to the message), e.g. "re-run `edgevla plan`".
    """
    path = Path(path)
    hint = f"; {fix}" if fix else ""
    if not path.exists():
        raise BadInput(f"{what} not found{hint}", path=path)
    if not path.is_file():
        raise BadInput(f"{what} should be a file, found a folder{hint}", path=path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise BadInput(f"{what} is not UTF-8 text ({e.reason}){hint}", path=path) from e
    except OSError as e:
        raise BadInput(f"cannot read {what} ({e.strerror}){hint}", path=path) from e
    if not text.strip():
        raise BadInput(f"{what} is empty (a truncated write?){hint}", path=path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise BadInput(
            f"{what} is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg}){hint}",
            path=path,
        ) from e
    if expect is not None and not isinstance(data, expect):
        raise BadInput(
            f"{what} should hold {_json_type(expect)} (JSON), found {_json_type(type(data))}{hint}",
            path=path,
        )
    return data


def write_json_atomic(path: str | Path, data: Any, indent: int | None = 2) -> Path:
    """Write `data` as JSON to `path` so that readers see the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes 0600; results are meant to be read by others too
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=indent, default=str)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _json_type(t: type) -> str:
    return {dict: "an object", list: "an array", str: "a string", int: "a number",
            float: "a number", bool: "a boolean", type(None): "null"}.get(t, t.__name__)  # fmt: skip
