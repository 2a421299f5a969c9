"""`edgevla serve`: answer observation -> action chunk for robots on the network (websocket,
msgpack with explicit numpy framing, never pickle)."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from edgevla.commands import config_from
from edgevla.console import emit_json, err_console
from edgevla.deploy.server import PolicyServer, ServeConfig, is_loopback


@dataclass(frozen=True)
class Args(ServeConfig):
    """Serve one policy (a checkpoint folder or a bundle) until Ctrl-C."""

    json: bool = False
    """print one JSON object (address, then stats at the end)"""

    def __post_init__(self) -> None:
        """Checked when run() builds the ServeConfig, so a bad value is one line (exit 2)."""


def run(args: Args) -> int:
    config = config_from(args, ServeConfig)
    server = PolicyServer(config)
    port = server.start()
    where = f"ws://{config.host}:{port}"
    exposure = "loopback only" if is_loopback(config.host) else "NETWORK (token required)"
    err_console.print(f"serving {config.policy} at {where} ({exposure}); Ctrl-C stops")
    try:
        threading.Event().wait()
    finally:
        server.stop()
        s = server.stats
        if args.json:
            emit_json({"address": where, "sessions": s.sessions_total, "inferences": s.inferences,
                       "errors": s.errors})  # fmt: skip
        else:
            err_console.print(
                f"served {s.inferences} inferences to {s.sessions_total} sessions; {s.errors} refused"
            )
    return 0
