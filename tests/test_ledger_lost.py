"""A ledger lost after it was opened, on a real PostgreSQL server (tests/cache_helpers.py): a server stopped. Every
read raises LedgerUnavailable (never psycopg's error), naming the ledger without its password (docs/ledger.md)."""

from __future__ import annotations

import os
import signal
import socket
import time
from datetime import datetime, timezone

import pytest

from aicost.ledger import LedgerUnavailable, open_store
from ledger_helpers import fresh_pg_database
from reports_helpers import write_ledger

psycopg = pytest.importorskip("psycopg")

PASSWORD = "hunter2secret"


def _with_password(url: str) -> str:
    """``url`` with a password in it: the test server trusts loopback, so it is never checked, only never shown."""
    return url.replace("postgresql://postgres@", f"postgresql://postgres:{PASSWORD}@", 1)


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
