"""A ledger lost after it was opened, on a real PostgreSQL server (tests/cache_helpers.py): a server stopped, or the
connection terminated between two statements or while rows stream. Every read raises LedgerUnavailable (never
psycopg's error), and every command that reads the ledger says so on one line naming the ledger without its password,
exit status 2, no traceback, no output file left behind (docs/ledger.md, "Reports")."""

from __future__ import annotations

import io
import os
import signal
import socket
import time
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from aicost.cli import main
from aicost.ledger import LedgerUnavailable, open_store
from aicost.ledger.store import PostgresStore
from ledger_helpers import failed_on_one_line, fresh_pg_database
from reports_helpers import write_ledger

psycopg = pytest.importorskip("psycopg")

PASSWORD = "hunter2secret"
PERIOD = ["--since", "2026-11-02", "--until", "2026-11-30"]


def _with_password(url: str) -> str:
    """``url`` with a password in it: the test server trusts loopback, so it is never checked, only never shown."""
    return url.replace("postgresql://postgres@", f"postgresql://postgres:{PASSWORD}@", 1)


def _write_pool_interval(url: str) -> None:
    """One closed hour of pool "chat" on 2026-11-10, for `aicost report --pool chat`."""
    from aicost.pools.ledger import write_interval
    from aicost.pools.meter import Allocation, ClosedInterval

    start, end = datetime(2026, 11, 10, tzinfo=timezone.utc), datetime(2026, 11, 10, 1, tzinfo=timezone.utc)
    allocations = (Allocation("00000000000000aa", "search", "m", 100, 10, Decimal(140), None, Decimal(2)),)
    with open_store(url) as store:
        write_interval(store, ClosedInterval("chat", "ml", "tokens", start, end, Decimal(5), Decimal(3), Decimal(2),
                                             Decimal("0.6"), Decimal(1), Decimal(4), "declared", allocations,
                                             utilisation_from="declared capacity"))


@pytest.fixture
def ledger(pg_server: str) -> str:
    """A PostgreSQL ledger of four weeks of calls and a pool's hour, its URL with a password."""
    url = _with_password(fresh_pg_database(pg_server))
    write_ledger(url)
    _write_pool_interval(url)
    return url


def _lose(server_url: str, database: str) -> None:
    """The database gone, as for a server stopped: every session on it terminated, and no new one accepted."""
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f"ALTER DATABASE {database} ALLOW_CONNECTIONS false")
        admin.execute("SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity "
                      "WHERE datname = %s AND pid <> pg_backend_pid()", [database])


@pytest.fixture
def lost_once_opened(monkeypatch: pytest.MonkeyPatch, pg_server: str):
    """Every PostgreSQL ledger opened from now on is lost right after it is opened: the command's first statement
    finds its connection terminated, and a new connection (a stream's, a reconnection) is refused."""
    opened = PostgresStore._migrate

    def migrate_then_lose(store: PostgresStore) -> None:
        opened(store)
        _lose(pg_server, store._dsn.rsplit("/", 1)[1])

    monkeypatch.setattr(PostgresStore, "_migrate", migrate_then_lose)


def _assert_one_line_naming_the_ledger(command: str, code: int, out: io.StringIO, err: io.StringIO) -> None:
    message = err.getvalue()
    assert code == 2, message
    assert out.getvalue() == ""
    assert message.count("\n") == 1 and message.endswith("\n"), message
    named = f"aicost {command}: cannot reach the ledger postgresql://postgres:***@127.0.0.1:"
    assert message.startswith(named), message
    assert PASSWORD not in message


COMMANDS = {
    "report": ["report", *PERIOD],
    "report --format json": ["report", *PERIOD, "--format", "json", "--by", "team,day"],
    "report --pool": ["report", *PERIOD, "--pool", "chat"],
    "export": ["export", *PERIOD],
    "forecast": ["forecast", "--as-of", "2026-11-20"],
    "anomalies": ["anomalies", *PERIOD],
    "dashboard": ["dashboard", *PERIOD],
    "alerts": ["alerts", "--at", "2026-11-20"],
    "sum-pairs": ["sum-pairs"],
}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_says_on_one_line_that_the_ledger_was_lost_between_statements(
        name, ledger, lost_once_opened, tmp_path, monkeypatch):
    """The connection terminated after the ledger was opened was psycopg's OperationalError, a traceback from every
    command (exit status 1); `aicost export` too, which only caught aicost's own errors."""
    if name in ("forecast", "anomalies", "dashboard", "alerts"):
        pytest.importorskip("statsmodels")
        pytest.importorskip("plotly")
    monkeypatch.chdir(tmp_path)  # export's default output, dashboard's spend.html, alerts' state
    argv = COMMANDS[name]
    out, err = io.StringIO(), io.StringIO()
    code = main([argv[0], "--ledger", ledger, *argv[1:]], out=out, err=err)
    _assert_one_line_naming_the_ledger(argv[0], code, out, err)
    assert sorted(os.listdir(tmp_path)) in ([], [".aicost-alerts.db"])  # no export, no spend.html, nothing partial


def test_reconcile_says_so_when_the_ledger_is_lost_after_the_bill_was_fetched(ledger, lost_once_opened, monkeypatch):
    """`aicost reconcile` reads the ledger's rows through a connection of their own, after fetching the bill: refused
    there, it was psycopg's OperationalError, a traceback."""
    from tests.admin_api_server import ADMIN_KEY, FakeAdminAPI

    monkeypatch.setenv("OPENAI_ADMIN_KEY", ADMIN_KEY)
    with FakeAdminAPI("openai", [], datetime(2026, 12, 4, 12, tzinfo=timezone.utc)) as fake:
        out, err = io.StringIO(), io.StringIO()
        code = main(["reconcile", "--vendor", "openai", "--period", "2026-11", "--ledger", ledger, "--base-url",
                     fake.url], out=out, err=err)
        assert fake.requests  # the bill was fetched: the ledger was lost after
    _assert_one_line_naming_the_ledger("reconcile", code, out, err)


def test_an_export_lost_while_its_rows_stream_leaves_no_file(ledger, pg_server, tmp_path, monkeypatch):
    """The connection terminated while the export's rows streamed (its first rows already written to the file) was
    psycopg's OperationalError, a traceback. It is one line, exit status 2, and neither the output nor a part of it
    is left."""
    from aicost.ledger import focus

    made = focus.focus_rows
    lost = []

    def lose_at_the_first_row(row, **kwargs):
        if not lost:
            _lose(pg_server, ledger.rsplit("/", 1)[1])
            lost.append(row)
        return made(row, **kwargs)

    monkeypatch.setattr(focus, "focus_rows", lose_at_the_first_row)
    out, err = io.StringIO(), io.StringIO()
    code = main(["export", "--ledger", ledger, *PERIOD, "--output", str(tmp_path / "focus.csv")], out=out, err=err)
    assert lost
    _assert_one_line_naming_the_ledger("export", code, out, err)
    assert os.listdir(tmp_path) == []


def _stop_server(url: str) -> None:
    """Stop the PostgreSQL server of ``url`` (fast shutdown, as an operator's restart) and wait until it is gone."""
    with psycopg.connect(url, autocommit=True) as conn:
        directory = conn.execute("SHOW data_directory").fetchone()[0]
    with open(os.path.join(directory, "postmaster.pid")) as f:
        pid = int(f.readline())
    os.kill(pid, signal.SIGINT)
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # (the postmaster is this process's child: a zombie until its fixture reaps it)
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return
        time.sleep(0.05)
    raise AssertionError("the PostgreSQL server did not stop")


def test_reads_of_a_store_whose_server_stopped_raise_ledger_unavailable():
    """The Python API: a server stopped under an open store made every read raise psycopg's OperationalError (and a
    report's snapshot a second one, from its COMMIT). build_report, totals and rows() raise LedgerUnavailable, which
    names the ledger without its password and says what failed."""
    from cache_helpers import postgres_server

    from aicost.ledger import totals
    from aicost.ledger.report import build_report

    with postgres_server() as server:
        url = _with_password(fresh_pg_database(server))
        write_ledger(url)
        store = open_store(url, create=False)
        _stop_server(server)
        start, end = datetime(2026, 11, 2, tzinfo=timezone.utc), datetime(2026, 11, 30, tzinfo=timezone.utc)
        reads = {"build_report": lambda: build_report(store, start, end),
                 "totals": lambda: totals(store, start, end),
                 "rows": lambda: list(store.rows(start, end))}
        for name, read in reads.items():
            with pytest.raises(LedgerUnavailable) as lost:
                read()
            message = str(lost.value)
            assert message.startswith("ledger postgresql://postgres:***@127.0.0.1:"), (name, message)
            assert PASSWORD not in message and "\n" not in message, (name, message)
        store.close()


def _drop(server_url: str, database: str) -> None:
    """The database dropped under its sessions (``DROP DATABASE ... WITH (FORCE)``: each one terminated)."""
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE {database} WITH (FORCE)")


def test_reads_of_a_store_whose_database_was_dropped_raise_ledger_unavailable_each_time(ledger, pg_server):
    """A database dropped under an open store: the first read finds its connection terminated (LedgerUnavailable);
    the next reconnected, and the check made at open raised ConfigurationError ("cannot use the PostgreSQL ledger
    ...: database ... does not exist"), a configuration error from a ledger that had been used. Every read is
    LedgerUnavailable, naming the ledger without its password and what failed, on one line."""
    from aicost.ledger.report import build_report

    store = open_store(ledger, create=False)
    _drop(pg_server, ledger.rsplit("/", 1)[1])
    start, end = datetime(2026, 11, 2, tzinfo=timezone.utc), datetime(2026, 11, 30, tzinfo=timezone.utc)
    messages = []
    for read in (lambda: build_report(store, start, end), lambda: build_report(store, start, end),
                 lambda: store.time_range()):
        with pytest.raises(LedgerUnavailable) as lost:
            read()
        messages.append(str(lost.value))
    store.close()
    for message in messages:
        assert message.startswith("ledger postgresql://postgres:***@127.0.0.1:"), message
        assert PASSWORD not in message and "\n" not in message, message
    assert "does not exist" in messages[1], messages


@pytest.mark.parametrize("name", ["report", "report --pool", "export", "sum-pairs"])
def test_a_database_dropped_while_a_command_opens_it_is_one_line(name, ledger, pg_server, tmp_path, monkeypatch):
    """Dropped between the command's connection and its schema check: the check's statement was psycopg's
    AdminShutdown, a traceback. It is the ledger lost: one line naming it without its password, exit status 2, no
    output file."""
    connect = PostgresStore._connect

    def connect_then_drop(store: PostgresStore):
        first = store._conn is None
        conn = connect(store)
        if first:
            _drop(pg_server, store._dsn.rsplit("/", 1)[1])
        return conn

    monkeypatch.setattr(PostgresStore, "_connect", connect_then_drop)
    monkeypatch.chdir(tmp_path)
    argv = COMMANDS[name]
    message = failed_on_one_line(argv, ledger)
    assert message.startswith(f"aicost {argv[0]}: --ledger: cannot reach the ledger postgresql://postgres:***@127.0.0.1:"), message
    assert PASSWORD not in message
    assert os.listdir(tmp_path) == []


def test_a_writer_whose_database_was_dropped_spills_and_logs_it_once_as_missing(pg_server, spill_dir, caplog):
    """The database dropped under a running writer: its first write finds the connection terminated (an outage), and
    each reopen then found the database missing, which open_store raises as a configuration error: logged as "a batch
    could not be written" with a traceback and counted as a write error, not an outage. It is the ledger lost, as
    for a store's reconnection: counted, logged once (a warning, no traceback) saying the database does not exist
    (after the warning for the connection lost), rows spilled, and replayed once the database is back."""
    import logging

    from aicost._log import forget
    from aicost.ledger import CALL, LedgerRow, totals
    from aicost.ledger.writer import LedgerWriter

    for key in ("ledger:down:unreachable", "ledger:down:missing", "ledger:write"):
        forget(key)
    url = fresh_pg_database(pg_server)
    now = datetime.now(timezone.utc)
    rows = [LedgerRow(span_id=f"{i:016x}", kind=CALL, time=now, cost=Decimal("0.001")) for i in range(30)]
    writer = LedgerWriter(_with_password(url))
    writer.add(rows[:10])
    assert writer.flush() and writer.stats()["written"] == 10
    _drop(pg_server, url.rsplit("/", 1)[1])
    with caplog.at_level(logging.WARNING, logger="aicost"):
        for part in (rows[10:20], rows[20:]):  # the terminated connection, then a reopen (twice: logged once)
            writer.add(part)
            writer.flush()
            writer.flush()
    stats = writer.stats()
    assert stats["spilled"] == 20 and stats["outages"] >= 3 and "write_errors" not in stats, stats
    logged = [r for r in caplog.records if r.name.startswith("aicost")]
    assert [r.levelno for r in logged] == [logging.WARNING] * 2, [r.getMessage() for r in logged]
    lost, missing = (r.getMessage() for r in logged)
    assert lost.startswith("aicost ledger: cannot reach the ledger postgresql://postgres:***@127.0.0.1:"), lost
    assert missing.startswith("aicost ledger: the ledger postgresql://postgres:***@127.0.0.1:"), missing
    assert "is missing, its database does not exist: " in missing and "configur" not in missing, missing
    assert not any(r.exc_info for r in logged) and PASSWORD not in lost + missing
    with psycopg.connect(pg_server, autocommit=True) as admin:  # the database back (empty: the writer migrates it)
        admin.execute(f"CREATE DATABASE {url.rsplit('/', 1)[1]}")
    assert writer.flush() and writer.stats()["replayed"] == 20
    writer.close()
    with open_store(url, create=False) as store:
        assert totals(store, now.replace(hour=0, minute=0), now.replace(hour=23, minute=59)).calls == 20
