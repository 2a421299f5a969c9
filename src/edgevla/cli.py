"""The `edgevla` command line: thin. It maps command words to modules of `edgevla.commands`
(each an `Args` dataclass parsed by tyro and a `run(args) -> exit status`), and is the one
place where errors become one line on stderr:

    0    done
    1    ran, and the answer is no (a budget that does not fit, an audit that fails)
    2    bad input or usage: the line says what is wrong, which file or flag, and what to do
    3    an internal error (a bug): rerun with --debug for the traceback
    130  interrupted (Ctrl-C); finished work is kept

`--debug` anywhere on the line (or EDGEVLA_DEBUG=1) shows the traceback instead.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import warnings
from collections.abc import Sequence

from edgevla.errors import (
    EXIT_BAD_INPUT,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    USER_ERRORS,
    one_line,
)

# command words -> (module in edgevla.commands, one-line help)
COMMANDS: dict[tuple[str, ...], tuple[str, str]] = {
    ("demo",): ("demo", "run the whole pipeline as far as it is built"),
    ("plan",): ("plan", "draw a recording plan: clusters, starts, recovery, held-out cluster, eval sets"),
    ("record",): ("record", "record the expert through a plan into a LeRobot v3 dataset (crash-safe)"),
    ("audit",): ("audit", "audit a dataset: coverage, camera consistency, lighting, contrast, integrity, no cheating"),
    ("pretrain",): ("pretrain", "pre-train a policy's vision part on labelled simulation frames (no ImageNet here)"),
    ("train",): ("train", "train ACT or the SmolVLA-architecture VLA; checkpoints, val loss, --resume"),
    ("select",): ("select", "choose a run's checkpoint by closed-loop success on Test/Val"),
    ("eval",): ("eval", "closed-loop success on the plan's Test/Val/Global positions, sync vs async"),
    ("eval", "open-loop"): ("open_loop", "predicted chunks vs recorded actions on train / val episodes (fit vs generalisation)"),
    ("export",): ("export", "split a checkpoint into stages, export each to ONNX (a bundle), check parity with PyTorch"),
    ("quantize",): ("quantize", "a bundle at a precision plan (int8 dynamic / static QDQ per stage), with the action error it costs"),
    ("sensitivity",): ("sensitivity", "where quantisation error comes from: each stage alone at each precision, the expert step by step"),
    ("serve",): ("serve", "answer observation -> action chunk for robots on the network (websocket + msgpack, no pickle)"),
    ("schedule",): ("schedule", "does T_inference < T_execution hold for a latency, fps, chunk, threshold"),
    ("bench", "async"): ("bench_async", "sync vs async vs auto at the paper's latencies (virtual clock)"),
    ("bench", "latency"): ("bench_latency", "inference latency: a checkpoint in PyTorch vs bundles in ONNX Runtime, per stage"),
    ("bench", "transport"): ("bench_transport", "a remote policy's network cost on loopback: 3 cameras, raw vs JPEG, p50/p99"),
    ("bench", "robots"): ("bench_robots", "N simulated robots sharing one policy server vs one alone: latency p50/p99, success"),
    ("bench", "train-step"): ("bench_train_step", "one ACT training step: LeRobot's default vs the edge preset"),
    ("bench", "sim"): ("sim_bench", "environment steps/s (physics + 3 cameras) and the expert's success rate"),
    ("sim", "snapshot"): ("sim_snapshot", "PNG of the camera views (and an expert rollout)"),
}  # fmt: skip
# Older spellings that still work (not listed in the usage).
ALIASES: dict[tuple[str, ...], tuple[str, ...]] = {("sim", "bench"): ("bench", "sim")}


def usage() -> str:
    lines = [
        "usage: edgevla [--debug] COMMAND [ARGS]  (edgevla COMMAND --help for its arguments)",
        "",
        "commands:",
    ]
    width = max(len(" ".join(k)) for k in COMMANDS)
    for words, (_, help_) in COMMANDS.items():
        lines.append(f"  {' '.join(words):<{width}}  {help_}")
    return "\n".join(lines)


def resolve(argv: Sequence[str]) -> tuple[tuple[str, ...], list[str]] | None:
    """(command words, the rest of the arguments), longest match first; None if no command."""
    for n in (2, 1):
        words = ALIASES.get(tuple(argv[:n]), tuple(argv[:n]))
        if words in COMMANDS:
            return words, list(argv[n:])
    return None


def load(words: tuple[str, ...]):
    """The command's module: it has `Args` and `run(args) -> int`."""
    return importlib.import_module(f"edgevla.commands.{COMMANDS[words][0]}")


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> str:
    """Warnings for people: 'warning: <text>' (the source line only with --debug)."""
    return f"warning: {message}\n"


BOX_CHARS = "╭╮╰╯│─━┃┏┓┗┛"


def parse_args(args_class, rest: list[str], name: str, description: str):
    """tyro's parse of `rest` into `args_class`, or None after one line on stderr.

    tyro reports a refused argument (a value of the wrong type, a check in the Args'
    __post_init__) as a framed box of 5-12 lines with the flag's help; a person and a log want
    the one line every other error is. Its box is kept aside and said as `NAME: error: <what
    tyro said> (NAME --help for the arguments)`; --help itself is printed as tyro prints it."""
    import io
    from contextlib import redirect_stderr

    import tyro

    said = io.StringIO()
    try:
        with redirect_stderr(said):
            return tyro.cli(args_class, args=rest, prog=name, description=description)
    except SystemExit as stop:
        if not stop.code:  # --help
            sys.stderr.write(said.getvalue())
            raise
        print(f"{name}: error: {_tyro_message(said.getvalue())} ({name} --help for the "
              "arguments)", file=sys.stderr)  # fmt: skip
        return None


def _tyro_message(box: str) -> str:
    """The words of tyro's error box, up to its help part, on one line."""
    box = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", box)  # colours (tyro adds them on a terminal)
    words = "".join(" " if c in BOX_CHARS else c for c in box).split()
    text = " ".join(w for w in words if w.strip("-"))  # rules drawn with '-' (non-UTF-8 out)
    for tail in ("Argument helptext:", "For full helptext", "For full help"):
        text = text.split(tail, 1)[0]
    text = text.strip()
    for title in (
        "Value error",
        "Parsing error",
        "Invalid choice",
        "Required options",
        "Unrecognized options",
    ):
        if text.startswith(title + " "):
            text = text[len(title) + 1 :]
    return text.removeprefix("Error parsing config: ").strip() or "arguments refused"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("EDGEVLA_DEBUG", "") not in ("", "0")
    argv = [a for a in argv if a != "--debug"]
    if not debug:
        warnings.formatwarning = _one_line_warning
    found = resolve(argv)
    if found is None:
        asked_for_help = not argv or argv[0] in ("-h", "--help")
        print(usage(), file=sys.stdout if asked_for_help else sys.stderr)
        if not asked_for_help:
            print(f"edgevla: unknown command {argv[0]!r}", file=sys.stderr)
        return 0 if asked_for_help else EXIT_BAD_INPUT
    words, rest = found
    name = f"edgevla {' '.join(words)}"
    try:
        module = load(words)
        args = parse_args(module.Args, rest, name, COMMANDS[words][1])
        if args is None:
            return EXIT_BAD_INPUT
        return int(module.run(args) or 0)
    except BrokenPipeError:  # `edgevla ... | head`: the reader left; nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"{name}: interrupted; finished work is kept", file=sys.stderr)
        return EXIT_INTERRUPTED
    except USER_ERRORS as exc:
        if debug:
            raise
        print(f"{name}: error: {one_line(exc)}", file=sys.stderr)
        return getattr(exc, "exit_code", EXIT_BAD_INPUT)
    except Exception as exc:
        if debug:
            raise
        code = getattr(exc, "exit_code", None)
        if isinstance(code, int):  # an error that says how it ends (a video that failed): one line
            print(f"{name}: error: {one_line(exc)}", file=sys.stderr)
            return code
        print(  # a bug: one line, and how to see more
            f"{name}: internal error: {type(exc).__name__}: {one_line(exc)} "
            "(rerun with --debug for the traceback, and please report it)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


if __name__ == "__main__":
    raise SystemExit(main())
