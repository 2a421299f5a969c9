"""The command floor: one module per verb of `edgevla`, each with an `Args` dataclass (parsed
by tyro), a `run(args) -> int` that calls domain functions, prints tables or one JSON object
(`--json`) and returns the exit status. Domain code never prints; errors are raised as
`edgevla.errors` types and turned into one line by `edgevla.cli`.
"""

from collections.abc import Callable, Iterable
from dataclasses import fields
from typing import Any, TypeVar

C = TypeVar("C")
R = TypeVar("R")


def config_from(args: Any, config_type: type[C]) -> C:
    """The domain config from a command's Args (which subclasses it and adds --json): built
    here, so its validation raises one BadInput line before any work."""
    return config_type(**{f.name: getattr(args, f.name) for f in fields(config_type)})


def present(args: Any, compute: Callable[[Any], R], show: Callable[[R], None],
            notes: Iterable[str] | Callable[[R], Iterable[str]] = (), label: str = "warning") -> R:  # fmt: skip
    """The shape every command shares: run `compute(progress)` under a progress bar (silent with
    --json), print its notes once each on stderr, then one JSON object (`result.to_dict()`) or
    `show(result)` for people. Returns the result, for the exit status."""
    from edgevla.console import emit_json, err_console, progress_bar

    with progress_bar(quiet=args.json) as report:
        result = compute(report)
    for message in dict.fromkeys(notes(result) if callable(notes) else notes):
        err_console.print(f"[yellow]{label}:[/] {message}")
    if args.json:
        emit_json(result.to_dict())
    else:
        show(result)
    return result
