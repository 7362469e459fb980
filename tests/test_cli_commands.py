"""The `aicost` command registers only the subcommand being run, so `aicost report` does not pay for importing
reconcile or the forecasting commands; `aicost --help` still lists every command, and each still parses."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest

from aicost import cli


def test_report_imports_neither_reconcile_nor_the_report_commands_module():
    code = ("import sys; from aicost.cli import main\n"
            "try:\n    main(['report', '--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.startswith(('aicost.reconcile', 'aicost.reports'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_help_lists_every_command():
    out = io.StringIO()
    assert cli.main([], out=out) == 2
    for name in cli.SUBCOMMANDS:
        assert name in out.getvalue()


@pytest.mark.parametrize("command", sorted(cli.SUBCOMMANDS))
def test_each_command_parses_its_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main([command, "--help"])
    assert exit_.value.code == 0
    assert f"usage: aicost {command}" in capsys.readouterr().out


def test_the_report_commands_register_through_public_functions(monkeypatch):
    """cli.SUBCOMMANDS names each report command's registrar by its public name (``add_NAME``), not a private one."""
    import argparse

    from aicost import cli
    from aicost.reports import commands

    names = {name.removeprefix("add_") for name in commands.__all__}
    assert names == {"forecast", "anomalies", "dashboard", "alerts"}
    for name in names:
        called = []
        monkeypatch.setattr(commands, f"add_{name}", called.append)  # what SUBCOMMANDS[name] calls, if public
        sub = argparse.ArgumentParser(prog="aicost").add_subparsers(dest="command")
        cli.SUBCOMMANDS[name](sub)
        assert called == [sub], f"cli.SUBCOMMANDS[{name!r}] does not register through commands.add_{name}"
        monkeypatch.undo()
        assert cli.build_parser(name).parse_args([name]).command == name