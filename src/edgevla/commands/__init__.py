"""The command floor: one module per verb of `edgevla`, each with an `Args` dataclass (parsed
by tyro), a `run(args) -> int` that calls domain functions, prints tables or one JSON object
(`--json`) and returns the exit status. Domain code never prints; errors are raised as
`edgevla.errors` types and turned into one line by `edgevla.cli`.
"""

from dataclasses import fields
from typing import Any, TypeVar

C = TypeVar("C")


def config_from(args: Any, config_type: type[C]) -> C:
    """The domain config from a command's Args (which subclasses it and adds --json): built
    here, so its validation raises one BadInput line before any work."""
    return config_type(**{f.name: getattr(args, f.name) for f in fields(config_type)})
