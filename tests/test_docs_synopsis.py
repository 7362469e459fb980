"""The command synopses in docs/ledger.md name every option the command's parser takes: a reader who learns the
command from the docs must not miss an option (``report --pool`` / ``--compare`` were missing once)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from aicost.cli import build_parser

DOCS = Path(__file__).resolve().parent.parent / "docs" / "ledger.md"


def _synopsis(command: str) -> str:
    """The code span that starts a line with ``aicost COMMAND [``, up to its closing backtick (it may wrap)."""
    match = re.search(rf"^`aicost {command} [^`]*\[[^`]*`", DOCS.read_text(encoding="utf-8"), re.MULTILINE)
    assert match, f"docs/ledger.md has no synopsis of aicost {command}"
    return match.group(0)


def _options(command: str) -> list[tuple[str, ...]]:
    """Each option of the command's parser, as all its spellings (``-o`` / ``--output``), but ``--help``."""
    parser = build_parser(command)
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    return [tuple(a.option_strings) for a in sub._actions if a.option_strings and "--help" not in a.option_strings]


@pytest.mark.parametrize("command", ["report", "export"])
def test_synopsis_names_every_option(command):
    named = set(re.findall(r"(?<![\w-])--?[a-z][a-z-]*", _synopsis(command)))
    missing = [spellings for spellings in _options(command) if not named.intersection(spellings)]
    assert not missing, missing


# ------------------------------------------------------------------------------------------ every command, every page
ROOT = DOCS.parent.parent
# The page that documents each command (README points there for each).
PAGES = {"prices": "pricing.md", "report": "ledger.md", "export": "ledger.md", "sum-pairs": "ledger.md",
         "reconcile": "reconcile.md", "forecast": "reports.md", "anomalies": "reports.md", "dashboard": "reports.md",
         "alerts": "reports.md"}
WRITTEN = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_every_command_has_its_page():
    from aicost.cli import SUBCOMMANDS

    assert set(PAGES) == set(SUBCOMMANDS)


@pytest.mark.parametrize("command", sorted(PAGES))
def test_the_commands_page_names_every_option(command):
    """An option --help lists but the command's page never names is one a reader of the docs cannot find
    (``reconcile --admin-key-env`` was in no page)."""
    text = (ROOT / "docs" / PAGES[command]).read_text(encoding="utf-8")
    missing = [spellings for spellings in _options(command)
               if not any(re.search(rf"(?<![\w-]){re.escape(s)}(?![\w-])", text) for s in spellings)]
    assert not missing, f"docs/{PAGES[command]} never names {missing}"


def _written_invocations():
    """Every ``aicost COMMAND ...`` in the README and docs/, up to the end of its code span or line (a code block's
    command continues on an indented line), without a shell comment: (file, line, command, the options in it)."""
    from aicost.cli import SUBCOMMANDS

    for path in WRITTEN:
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(r"aicost ([a-z][a-z-]+)((?:[^\n`#]|\n(?=[ \t]))*)", text):
            if match.group(1) in SUBCOMMANDS:
                options = re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)", match.group(2))
                yield path.name, text.count("\n", 0, match.start()) + 1, match.group(1), options


def test_every_option_written_after_a_command_is_one_it_takes():
    """``aicost report --pool``, ``aicost alerts --webhook-file``...: an option the docs show with a command that
    its parser does not take would end the reader's command with a usage error."""
    known = {command: {s for spellings in _options(command) for s in spellings} | {"-h", "--help"}
             for command in PAGES}
    wrong = [(name, line, command, option) for name, line, command, options in _written_invocations()
             for option in options if option not in known[command]]
    assert not wrong, wrong
    assert sum(1 for _ in _written_invocations()) > 50  # the pattern still finds the docs' commands
