"""The errors a user can fix, and how the command floor reports them.

Domain code raises these (never prints); `edgevla.cli` turns them into one line on stderr and an
exit status, with the traceback only under `--debug`:

    BadInput      exit 2  an argument, a file or a folder is wrong; the message names it and the fix
    Interrupted   exit 130  Ctrl-C; what was finished is kept (the message says where)

"Ran and the answer is no" (a budget that does not fit, an audit that fails) is not an error: a
command returns exit status 1 for it.

Plain ValueError / FileNotFoundError / FileExistsError / PermissionError raised by our own
validation are treated as bad input too (exit 2), so existing checks that already say what is
wrong stay one line.
"""

from __future__ import annotations

from pathlib import Path

EXIT_OK = 0
EXIT_NO = 1  # ran, and the answer is no
EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 3  # a bug: the message asks for --debug and a report
EXIT_INTERRUPTED = 130


class EdgevlaError(Exception):
    """Base of the errors the command floor reports as one line."""

    exit_code = EXIT_BAD_INPUT


class BadInput(EdgevlaError, ValueError):
    """Something the user gave is wrong. Say what, where (file and field or flag) and how to fix.

    Subclasses ValueError so callers that already catch ValueError keep working.
    """

    def __init__(self, message: str, path: str | Path | None = None, field: str | None = None):
        where = ""
        if path is not None:
            where = f"{path}" + (f" ({field})" if field else "") + ": "
        elif field is not None:
            where = f"{field}: "
        super().__init__(where + message)
        self.path = None if path is None else Path(path)
        self.field = field


# The built-in errors our validation raises with a message a user can act on.
USER_ERRORS: tuple[type[BaseException], ...] = (
    EdgevlaError,
    ValueError,
    FileNotFoundError,
    FileExistsError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
)


def one_line(exc: BaseException) -> str:
    """The error as one line: its message with newlines folded (a library's error names its type)."""
    text = " ".join(str(exc).split())
    if isinstance(exc, EdgevlaError):
        return text or type(exc).__name__
    if isinstance(exc, FileNotFoundError) and exc.filename and str(exc.filename) not in text:
        text = f"{text}: {exc.filename}"
    if isinstance(exc, KeyError):
        return f"missing key {text}"
    return text or type(exc).__name__
