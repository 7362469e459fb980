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
