"""The command floor: every verb resolves to a module with Args and run, answers --help, and
turns bad input into one line on stderr with exit 2 (traceback only with --debug)."""

from __future__ import annotations

import dataclasses

import pytest

from edgevla.cli import ALIASES, COMMANDS, load, main, resolve


@pytest.mark.parametrize("words", sorted(COMMANDS), ids=" ".join)
def test_every_verb_resolves_and_answers_help(words, capsys) -> None:
    module = load(words)
    assert dataclasses.is_dataclass(module.Args), f"{module.__name__}.Args is not a dataclass"
    assert callable(module.run)
    with pytest.raises(SystemExit) as exit_:
        main([*words, "--help"])
    assert exit_.value.code == 0
    assert "--json" in capsys.readouterr().out or words == ("demo",)


def test_aliases_point_at_commands() -> None:
    for old, new in ALIASES.items():
        assert new in COMMANDS
        assert resolve([*old, "--x"]) == (new, ["--x"])


def test_usage_and_unknown_command(capsys) -> None:
    assert main([]) == 0
    assert "commands:" in capsys.readouterr().out
    assert main(["fly"]) == 2
    assert "unknown command 'fly'" in capsys.readouterr().err


def test_bad_value_is_one_line_exit_2_before_any_work(capsys) -> None:
    assert main(["bench", "sim", "--steps", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "edgevla bench sim: error: --steps: must be >= 1, got 0"


def test_debug_shows_the_traceback() -> None:
    with pytest.raises(ValueError, match="--steps"):
        main(["--debug", "bench", "sim", "--steps", "0"])


def test_interrupt_exits_130(monkeypatch, capsys) -> None:
    module = load(("schedule",))

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(module, "run", interrupted)
    assert main(["schedule", "--latency", "0.1"]) == 130
    assert "interrupted" in capsys.readouterr().err


def test_internal_error_is_one_line_exit_3(monkeypatch, capsys) -> None:
    module = load(("schedule",))

    def buggy(args):
        return {}["missing"]

    monkeypatch.setattr(module, "run", buggy)
    assert main(["schedule", "--latency", "0.1"]) == 3
    err = capsys.readouterr().err.strip()
    assert "internal error: KeyError" in err and "--debug" in err and "\n" not in err


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["plan", "--positions-per-cluster", "-1"], "positions_per_cluster must be >= 1"),
        (["schedule", "--latency", "abc"], "--latency: could not convert string to float: 'abc'"),
        (["schedule"], "--latency"),  # required, missing
        (["schedule", "--latency", "1", "--bogus"], "--bogus"),
        (["eval", "--modes", "foo"], "invalid choice 'foo' for argument '--modes'"),
    ],
)
def test_arguments_refused_while_parsing_are_one_line(argv, says, capsys) -> None:
    """tyro's framed error box (5-12 lines) becomes the one line every other error is."""
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"edgevla {argv[0]}: error: ") and says in err, err
    assert err.endswith(f"(edgevla {argv[0]} --help for the arguments)")
    assert not any(c in err for c in "╭│╰") and captured.out == ""


def test_tyro_box_on_a_terminal_or_in_ascii_is_one_clean_line() -> None:
    """On a terminal tyro colours its box (even with stderr redirected), and where stdout is
    not UTF-8 it draws the rules with '-': neither may leak into the one line."""
    from edgevla.cli import _tyro_message

    coloured = ("\x1b[31m╭─ Value error ─────╮\x1b[0m\n│ \x1b[1;31mError parsing --latency:\x1b[0m "
                "could not convert string to float: 'abc' │\n│ ───── │\n│ Argument helptext: │\n"
                "│     --latency FLOAT │\n╰───────╯")  # fmt: skip
    assert _tyro_message(coloured) == (
        "Error parsing --latency: could not convert string to float: 'abc'"
    )
    ascii_box = (
        " Value error      \n ------------------ \n  Error parsing config: "
        "positions_per_cluster must be >= 1  \n  ------------------\n"
    )  # tyro's, latin-1
    assert _tyro_message(ascii_box) == "positions_per_cluster must be >= 1"
