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

@pytest.mark.parametrize("command", ["forecast", "anomalies", "dashboard", "alerts"])
def test_report_commands_without_the_reports_extra_say_what_to_install(command, tmp_path, monkeypatch):
    """statsmodels, pandas and plotly come with the `reports` extra only (not with the README's
    `aicost-otel[openai,anthropic,offline,otlp]`). Without them each of these commands died with an ImportError
    traceback (exit status 1); now it says what to install, before it reads the ledger, exit
    status 2, as `aicost export` does of pyarrow."""
    from datetime import datetime, timezone

    from aicost.ledger import open_store
    from aicost.ledger.synthetic import Profile, fill

    url = f"sqlite:///{tmp_path / 'l.db'}"
    with open_store(url) as store:
        fill(store, Profile(days=2, teams=2, customers=2, calls=40, seed=3,
                            start=datetime(2026, 11, 20, tzinfo=timezone.utc)))
    for name in ("pandas", "statsmodels", "plotly"):
        monkeypatch.setitem(sys.modules, name, None)  # `import NAME` raises ImportError, as when not installed
    extra = {"dashboard": ["--out", str(tmp_path / "spend.html")], "alerts": ["--state", str(tmp_path / "a.db")]}
    out, err = io.StringIO(), io.StringIO()
    code = cli.main([command, "--ledger", url, *extra.get(command, [])], out=out, err=err)
    assert code == 2 and out.getvalue() == ""
    assert err.getvalue().startswith(f"aicost {command}: needs ") and "aicost-otel[reports]" in err.getvalue()
    assert not (tmp_path / "spend.html").exists()


def test_report_compare_without_pool_is_refused(tmp_path):
    """`--compare PROVIDER/MODEL` is the pool report's what-if (docs/self-hosted.md). Without `--pool` it was
    ignored: the usual report came out, exit status 0, and the comparison asked for was silently missing."""
    from aicost.ledger import open_store

    url = f"sqlite:///{tmp_path / 'l.db'}"
    open_store(url).close()
    out, err = io.StringIO(), io.StringIO()
    assert cli.main(["report", "--ledger", url, "--compare", "openai/gpt-4o-mini"], out=out, err=err) == 2
    assert out.getvalue() == "" and err.getvalue().startswith("aicost report: --compare needs --pool")


def _pool_ledger(tmp_path) -> str:
    """A ledger with one closed hour of pool "chat" (2026-12-01 00:00-01:00 UTC): $2 to search, $1 to support."""
    from datetime import datetime, timezone
    from decimal import Decimal

    from aicost.ledger import open_store
    from aicost.pools.ledger import write_interval
    from aicost.pools.meter import Allocation, ClosedInterval

    start, end = datetime(2026, 12, 1, tzinfo=timezone.utc), datetime(2026, 12, 1, 1, tzinfo=timezone.utc)
    allocations = tuple(Allocation(f"{n:016x}", team, "m", 100, 10, Decimal(140), None, Decimal(final))
                        for n, (team, final) in enumerate((("search", "2"), ("support", "1"))))
    url = f"sqlite:///{tmp_path / 'l.db'}"
    with open_store(url) as store:
        write_interval(store, ClosedInterval("chat", "ml", "tokens", start, end, Decimal(5), Decimal(3), Decimal(2),
                                             Decimal("0.6"), Decimal(1), Decimal(4), "declared", allocations,
                                             utilisation_from="declared capacity"))
    return url


@pytest.mark.parametrize("extra", [["--where", "team=search"], ["--by", "feature"]])
def test_pool_report_refuses_where_and_by(tmp_path, extra):
    """`aicost report --pool NAME` shows the pool's whole cost, split by team (docs/self-hosted.md). `--where` and
    `--by` were ignored: `--where team=search` printed every team's figures under a command that read as filtered,
    exit status 0. They are refused now; without them the report is as before."""
    url = _pool_ledger(tmp_path)
    period = ["--since", "2026-12-01", "--until", "2026-12-02"]
    out, err = io.StringIO(), io.StringIO()
    assert cli.main(["report", "--ledger", url, "--pool", "chat", *period, *extra], out=out, err=err) == 2
    assert out.getvalue() == "" and "--where and --by do not apply" in err.getvalue()
    out = io.StringIO()
    assert cli.main(["report", "--ledger", url, "--pool", "chat", *period], out=out, err=err) == 0
    assert "search" in out.getvalue() and "support" in out.getvalue()


@pytest.mark.parametrize("movers", ["0", "5", "3"])
def test_pool_report_refuses_movers(tmp_path, movers):
    """`--movers N` shows top movers against the previous period; the pool report compares no periods (its
    `--compare` is a hosted model's what-if), and it printed the pool's figures without them, exit status 0, for
    any N, the default's value too. It is refused, naming the option; `aicost report` keeps its movers."""
    url = _pool_ledger(tmp_path)
    period = ["--since", "2026-12-01", "--until", "2026-12-02"]
    out, err = io.StringIO(), io.StringIO()
    assert cli.main(["report", "--ledger", url, "--pool", "chat", *period, "--movers", movers], out=out, err=err) == 2
    assert out.getvalue() == ""
    assert err.getvalue() == "aicost report --pool: compares no periods; --movers does not apply\n"
    out, err = io.StringIO(), io.StringIO()
    assert cli.main(["report", "--ledger", url, *period, "--movers", movers], out=out, err=err) == 0, err.getvalue()


@pytest.mark.parametrize("fmt", ["table", "json"])
def test_pool_report_over_a_period_without_intervals_says_so(tmp_path, fmt):
    """A period without a pool's closed intervals (or a pool the ledger has never seen) exited with status 1, as if
    it were an error, and wrote nothing to stdout. `aicost report` over a period without rows says so, exit status
    0, its JSON a document that says it is empty: `--pool` does the same, and names the pools the ledger has."""
    import json

    url = _pool_ledger(tmp_path)
    for pool, since, until in (("chat", "2026-11-01", "2026-11-02"), ("chta", "2026-12-01", "2026-12-02")):
        period = ["--since", since, "--until", until, "--format", fmt]
        out, err = io.StringIO(), io.StringIO()
        assert cli.main(["report", "--ledger", url, "--pool", pool, *period], out=out, err=err) == 0, err.getvalue()
        label = f"{since} 00:00 to {until} 00:00 UTC"
        if fmt == "json":
            assert json.loads(out.getvalue()) == {"pool": pool, "period": label, "intervals": 0, "empty": True}
            assert err.getvalue().startswith(f"aicost report --pool: no closed intervals of pool {pool!r} between ")
        else:
            assert out.getvalue() == (f"Pool {pool}, {label}: no closed intervals in this period, so no figures "
                                      "(pools in this ledger: chat).\n")
            assert err.getvalue() == ""
    out, err = io.StringIO(), io.StringIO()  # `aicost report` over a period without rows: the same status
    assert cli.main(["report", "--ledger", url, "--since", "2026-11-01", "--until", "2026-11-02", "--format", fmt],
                    out=out, err=err) == 0
    assert "No spend recorded" in out.getvalue() if fmt == "table" else json.loads(out.getvalue())["empty"] is True
    out, err = io.StringIO(), io.StringIO()  # the figures of a period with intervals say they are not empty
    assert cli.main(["report", "--ledger", url, "--pool", "chat", "--since", "2026-12-01", "--until", "2026-12-02",
                     "--format", "json"], out=out, err=err) == 0
    assert json.loads(out.getvalue())["empty"] is False


@pytest.mark.parametrize("compare, refusal", [
    ("gpt-4o-mini", "aicost report --compare: give PROVIDER/MODEL"),
    ("openai/no-such-model", "aicost report --compare: what-if model: the catalog has no price for openai/no-such-model"),
])
def test_pool_report_refuses_a_compare_it_cannot_price_before_reading(tmp_path, compare, refusal):
    """`--compare` takes PROVIDER/MODEL of a catalog model. Without a model, or with one the catalog cannot price,
    it was refused only once the pool had figures: over a period without them the argument went unread, exit
    status 0. It is refused first, exit status 2, whatever the ledger holds; a catalog model still compares."""
    url = _pool_ledger(tmp_path)
    for since, until in (("2026-12-01", "2026-12-02"), ("2026-11-01", "2026-11-02")):
        period = ["--since", since, "--until", until]
        out, err = io.StringIO(), io.StringIO()
        assert cli.main(["report", "--ledger", url, "--pool", "chat", *period, "--compare", compare],
                        out=out, err=err) == 2
        assert out.getvalue() == "" and err.getvalue().startswith(refusal), err.getvalue()
        out, err = io.StringIO(), io.StringIO()
        assert cli.main(["report", "--ledger", url, "--pool", "chat", *period, "--compare", "openai/gpt-4o-mini"],
                        out=out, err=err) == 0, err.getvalue()


@pytest.mark.parametrize("movers", ["-1", "-5", "two"])
def test_report_refuses_movers_that_are_not_a_count(tmp_path, movers, capsys):
    """`--movers -1` was accepted: the movers list was cut with ``[:-1]``, every group but one shown as a top
    mover (32,000 for a month by team and user). A count below 0, or not a whole number, is refused by the
    parser, naming the option; `build_report` refuses it too, for Python callers."""
    from aicost.ledger import open_store
    from aicost.ledger.report import build_report

    url = _pool_ledger(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        cli.main(["report", "--ledger", url, "--movers", movers])
    assert exit_.value.code == 2
    assert f"argument --movers: must be a whole number >= 0, got {movers!r}" in capsys.readouterr().err
    if movers.startswith("-"):
        with open_store(url, create=False) as store, pytest.raises(ValueError, match="movers is how many"):
            build_report(store, "2026-12-01", "2026-12-02", movers=int(movers))


def test_report_refuses_movers_with_csv(tmp_path):
    """The CSV is the groups alone, without top movers: `--format csv --movers 3` printed the groups, exit status
    0, the movers asked for silently missing. It is refused, naming both options; `--movers 0` (none) is
    accepted with CSV, and `--movers 3` with a table or JSON."""
    url = _pool_ledger(tmp_path)
    period = ["--since", "2026-12-01", "--until", "2026-12-02"]
    out, err = io.StringIO(), io.StringIO()
    assert cli.main(["report", "--ledger", url, *period, "--format", "csv", "--movers", "3"], out=out, err=err) == 2
    assert out.getvalue() == ""
    assert err.getvalue() == "aicost report: --format csv has no top movers; use --format table or json for --movers\n"
    for fmt, movers in (("csv", "0"), ("table", "3"), ("json", "3")):
        out, err = io.StringIO(), io.StringIO()
        assert cli.main(["report", "--ledger", url, *period, "--format", fmt, "--movers", movers],
                        out=out, err=err) == 0, err.getvalue()


def _groups_ledger(tmp_path, teams):
    from datetime import datetime, timezone
    from decimal import Decimal

    from aicost.ledger import CALL, LedgerRow, open_store

    url = f"sqlite:///{tmp_path / 'groups.db'}"
    with open_store(url) as store:  # team-000 the dearest, team-001 next...: a cost each, the order known
        store.write([LedgerRow(kind=CALL, time=datetime(2026, 12, 1, 1, tzinfo=timezone.utc), span_id=f"{n:016x}",
                               provider="openai", team=f"team-{n:03}", cost=Decimal(teams - n), price_known=True)
                     for n in range(teams)])
    return url


def test_report_table_shows_the_largest_groups_and_sums_the_others(tmp_path):
    """A table of 32,000 groups (a month by team and user) is read by nobody, and formatting it took 0.3 s of a
    one-second report: the table shows the largest ``--top`` groups (default 50, as the library's TABLE_ROWS) and
    one line summing the others; `--top 0` shows them all, and CSV and JSON carry every group."""
    from aicost.ledger.report import TABLE_ROWS

    assert cli._TABLE_ROWS == TABLE_ROWS  # --help's default is the library's
    url = _groups_ledger(tmp_path, 60)
    period = ["--since", "2026-12-01", "--until", "2026-12-02", "--movers", "0"]
    for top, shown in ((None, 50), ("7", 7), ("0", 60), ("60", 60), ("70", 60)):
        out, err = io.StringIO(), io.StringIO()
        assert cli.main(["report", "--ledger", url, *period, *(("--top", top) if top else ())], out=out,
                        err=err) == 0, err.getvalue()
        lines = out.getvalue().splitlines()
        rows = lines[lines.index(next(x for x in lines if x.startswith("by team"))) + 2:]
        assert [r.split()[0] for r in rows[:shown]] == [f"team-{n:03}" for n in range(shown)]
        if shown < 60:
            others = 60 - shown  # the costs 1 to `others`, one call each
            assert f"by team (the {shown} largest of 60 groups, then the others summed)" in lines
            assert rows[shown].split()[:6] == [f"({others}", "others)", str(others * (others + 1) // 2),
                                               f"{others * (others + 1) / 2 * 100 / 1830:.1f}%", str(others), "0"]
            assert len(rows) == shown + 1
        else:
            assert "by team" in lines and len(rows) == 60
    for fmt in ("csv", "json"):
        out, err = io.StringIO(), io.StringIO()
        assert cli.main(["report", "--ledger", url, *period, "--format", fmt, "--top", "5"], out=out, err=err) == 2
        assert err.getvalue() == f"aicost report: --top limits the table; --format {fmt} carries every group\n"
        assert cli.main(["report", "--ledger", url, *period, "--format", fmt], out=out, err=err) == 0
        assert out.getvalue().count("team-") == 60


def test_pool_report_refuses_top(tmp_path):
    """The pool report's table is the pool's teams, every one: `--top` is refused, naming it."""
    url = _pool_ledger(tmp_path)
    out, err = io.StringIO(), io.StringIO()
    assert cli.main(["report", "--ledger", url, "--pool", "chat", "--since", "2026-12-01", "--until", "2026-12-02",
                     "--top", "1"], out=out, err=err) == 2
    assert out.getvalue() == "" and err.getvalue() == "aicost report --pool: shows every team of the pool; --top does not apply\n"


@pytest.mark.parametrize("rows", [-1, True, 2.0, "5"])
def test_render_table_refuses_rows_that_are_not_a_count(tmp_path, rows):
    from datetime import date

    from aicost.ledger import open_store
    from aicost.ledger.report import build_report, render_table

    with open_store(_groups_ledger(tmp_path, 3), create=False) as store:
        report = build_report(store, date(2026, 12, 1), date(2026, 12, 2))
    with pytest.raises(ValueError, match="rows is how many groups to show"):
        render_table(report, rows)


@pytest.mark.parametrize("command", ["report", "export", "forecast", "anomalies", "dashboard", "alerts", "sum-pairs",
                                     "reconcile"])
def test_every_ledger_command_says_when_a_postgresql_ledger_cannot_be_reached(command, tmp_path, monkeypatch):
    """A PostgreSQL ledger whose server is down (nothing listens on its port) was a LedgerUnavailable traceback
    from every command that reads the ledger. Each now says which ledger it cannot reach, never its password, and
    exits with status 2, as for a ledger it cannot open."""
    from servers import free_port

    monkeypatch.chdir(tmp_path)  # alerts' --state, dashboard's --out, export's default output
    monkeypatch.setenv("OPENAI_ADMIN_KEY", "sk-admin-test")  # reconcile checks the key before the ledger
    url = f"postgresql://aicost:hunter2secret@127.0.0.1:{free_port()}/ledger"
    extra = {"reconcile": ["--vendor", "openai"], "dashboard": ["--out", str(tmp_path / "spend.html")]}
    out, err = io.StringIO(), io.StringIO()
    assert cli.main([command, "--ledger", url, *extra.get(command, [])], out=out, err=err) == 2
    message = err.getvalue()
    assert message.startswith(f"aicost {command}: ") and "cannot reach the ledger postgresql://aicost:" in message
    assert "127.0.0.1" in message and "hunter2secret" not in message + out.getvalue()
