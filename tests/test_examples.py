"""The README's first command runs examples/quickstart.py: it must keep working and keep its numbers right."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_quickstart_prints_exact_per_call_costs():
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "quickstart.py")], capture_output=True,
                            text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    rows = [line for line in lines[1:] if "/" in line.split(" ")[0]]  # lines[0] is the header
    assert len(rows) == 8, result.stdout
    # gpt-5 at the priority tier: 8 input x $2.50 + 82 output x $20.00 per million tokens.
    gpt5 = next(line for line in rows if "gpt-5-2025-08-07" in line)
    assert Decimal(gpt5.split()[-1]) == Decimal("0.00166")
    # The per-call costs add up exactly to the total the collector reports.
    total = sum(Decimal(line.split()[-1]) for line in rows)
    summary = next(line for line in lines if line.startswith("all calls"))
    assert Decimal(summary.split()[2]) == total


# ---------------------------------------------------------------------------------- the README, as a new user reads it
README = ROOT / "README.md"


def _readme_blocks() -> list[tuple[str, list[str]]]:
    """The README's fenced blocks: (language, lines)."""
    blocks, lines, language = [], None, ""
    for line in README.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            if lines is None:
                lines, language = [], line[3:].strip()
            else:
                blocks.append((language, lines))
                lines = None
        elif lines is not None:
            lines.append(line)
    return blocks


def _block(first: str) -> list[str]:
    found = [lines for _, lines in _readme_blocks() if lines and lines[0].startswith(first)]
    assert found, f"README.md has no block starting {first!r}"
    return found[0]


def _aicost(*argv: str, cwd: Path) -> str:
    """``aicost ARGV`` in ``cwd``, reading the ledger there (not one $AICOST_LEDGER names)."""
    env = {name: value for name, value in os.environ.items() if name != "AICOST_LEDGER"}
    result = subprocess.run([sys.executable, "-m", "aicost.cli", *argv], capture_output=True, text=True,
                            timeout=300, cwd=cwd, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_the_readme_shows_what_the_quickstart_and_then_report_export_and_dashboard_print(tmp_path):
    """The README's first command runs the quickstart, then shows `aicost report --by team`, `aicost export` and
    `aicost dashboard` on the ledger it wrote, each with what it prints: every line as the README has it (a line
    the README cuts with " ..." as far as it goes; the report's period, the last 7 days through today, and the
    page's size excepted)."""
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "quickstart.py")], capture_output=True,
                            text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert [line.rstrip() for line in result.stdout.splitlines()] == _block("team/feature")

    commands = _block("aicost report --by team")
    argvs = [line.split("#")[0].split()[1:] for line in commands]
    assert [argv[0] for argv in argvs] == ["report", "export", "dashboard"]
    printed = []
    for argv in argvs:
        hours = {datetime.now(timezone.utc).hour}
        lines = [line.rstrip() for line in _aicost(*argv, cwd=tmp_path).splitlines()]
        hours.add(datetime.now(timezone.utc).hour)
        if argv[0] == "report" and 23 in hours:
            lines = _without_movers_at_23(lines)
        printed += lines
    shown = _block("aicost report: ")
    assert len(printed) == len(shown), (printed, shown)
    for got, want in zip(printed, shown):
        if want.startswith("aicost report: "):
            assert re.fullmatch(r"aicost report: \d{4}-\d\d-\d\d 00:00 to \d{4}-\d\d-\d\d 00:00 UTC \(7d\)", got), got
        elif want.startswith("wrote spend.html ("):
            assert re.sub(r"\(\d+\.\d MB", "(N MB", got) == re.sub(r"\(\d+\.\d MB", "(N MB", want)
        elif want.endswith(" ..."):
            assert got.startswith(want[:-len(" ...")]), (got, want)
        else:
            assert got == want
    assert (tmp_path / "llm-spend.csv").is_file() and (tmp_path / "spend.html").is_file()


def _without_movers_at_23(lines: list[str]) -> list[str]:
    """The report's lines without its top movers, which it shows from 23:00 UTC, when today counts as elapsed
    (aicost.ledger.report.Period.compared) and the ledger written a minute ago is all new against the week before,
    as the README says; at any other hour there are none to compare (today's rows are not compared yet)."""
    start = next((i for i, line in enumerate(lines) if line.startswith("Top movers against ")), None)
    if start is None:
        return lines
    movers = lines[start + 2:]  # after the heading and the columns' header
    assert lines[start - 1] == "" and movers and all(line.endswith(" new") for line in movers), lines
    return lines[:start - 1]


def test_the_readmes_two_commands_are_what_ci_runs():
    """The README's set-up and test commands are .ci/run's: the same install, every .ci/setup-*.sh step, and the
    same pytest command (the README said `pytest -q`, CI ran `pytest -q -p no:cacheprovider`)."""
    setup, test = _block("python3 -m venv .venv")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert 'pip install -c constraints.txt -e ".[test]"' in setup
    assert 'run_pass pinned .venv -c constraints.txt' in ci and 'pip install -q "$@" -e ".[test]"' in ci
    steps = sorted(path.name for path in (ROOT / ".ci").glob("setup-*.sh"))
    assert steps and all(f"bash .ci/{step}" in setup for step in steps), (steps, setup)
    (ci_pytest,) = re.findall(r"^\s*(python -m pytest\b.*)$", ci, re.MULTILINE)
    assert test == f". .venv/bin/activate && {ci_pytest}"
