"""`edgevla-runtime run`: numbers and an unreachable server are refused in one line, exit 2,
naming the flag, before a bundle loads or a robot connects."""

from __future__ import annotations

import socket

import pytest
from edgevla_runtime.cli import main


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--seconds", "-3"], "--seconds must be > 0, got -3"),
        (["--timeout", "0"], "--timeout must be > 0"),
        (["--fps", "-30"], "--fps must be > 0"),
        (["--threads", "-1"], "--threads must be >= 0 (0: ONNX Runtime's default)"),
        (["--jpeg-quality", "0"], "--jpeg-quality must be in 1-95"),
    ],
)
def test_bad_numbers_are_one_line_naming_the_flag(flags, says, tmp_path, capsys) -> None:
    # the bundle folder does not exist: the flag is refused first, nothing is opened
    assert main(["run", "--bundle", str(tmp_path / "none"), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"edgevla-runtime run: error: {says}" or (
        says in err and len(err.splitlines()) == 1
    )


def test_no_server_says_how_to_start_one(capsys) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(["run", "--remote", f"127.0.0.1:{port}", "--seconds", "1", "--timeout", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot reach the policy server" in err
    assert "edgevla serve" in err
