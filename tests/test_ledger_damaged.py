"""A SQLite ledger damaged on disk under its readers: a real file truncated (the main file, or its WAL while a writer
has it open). SQLite says so on the reads a report does ("database disk image is malformed", SQLITE_CORRUPT; "disk
I/O error", a short read of the WAL): every read raises LedgerUnavailable naming the ledger, never sqlite3's error,
and every command that reads the ledger says so on one line, exit status 2, no output file (docs/ledger.md)."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from aicost.ledger import LedgerUnavailable, open_store, totals
from aicost.ledger.report import build_report
from ledger_helpers import failed_on_one_line
from reports_helpers import build_rows, write_ledger

START, END = datetime(2026, 11, 2, tzinfo=timezone.utc), datetime(2026, 11, 30, tzinfo=timezone.utc)
PERIOD = ["--since", "2026-11-02", "--until", "2026-11-30"]


def _truncate(path: str, keep: float = 0.5) -> None:
    """The file cut to ``keep`` of its size, on disk (as a full disk, a copy cut short or a bad restore leaves it)."""
    with open(path, "r+b") as f:
        f.truncate(int(os.path.getsize(path) * keep))


@pytest.fixture
def ledger(tmp_path) -> str:
    """Four weeks of calls in a SQLite file, all in the main file (the writer closed: its WAL checkpointed)."""
    path = str(tmp_path / "ledger.db")
    write_ledger(path)
    assert not os.path.exists(path + "-wal") or os.path.getsize(path + "-wal") == 0
    return path


def _assert_unavailable(read, path: str) -> str:
    with pytest.raises(LedgerUnavailable) as lost:
        read()
    message = str(lost.value)
    assert message.startswith(f"ledger sqlite:///{path}: ") and "\n" not in message, message
    return message


def test_reads_of_a_ledger_file_truncated_under_its_reader_raise_ledger_unavailable(ledger):
    """The file truncated after the store opened it: build_report, totals and rows() raised sqlite3.DatabaseError
    ("database disk image is malformed"), which no caller (the CLI, a report) takes for a ledger it cannot read."""
    store = open_store(ledger, create=False)
    _truncate(ledger)
    for read in (lambda: build_report(store, START, END, group_by=["team", "day"]), lambda: totals(store, START, END),
                 lambda: list(store.rows(START, END))):
        assert "database disk image is malformed" in _assert_unavailable(read, ledger)
    store.close()


def test_reads_of_a_ledger_whose_wal_is_truncated_under_its_writer_raise_ledger_unavailable(tmp_path):
    """The rows still in the WAL (a writer has it open, not checkpointed), the WAL cut in half: sqlite3's
    OperationalError ("disk I/O error", a short read)."""
    path = str(tmp_path / "ledger.db")
    rows, runs = build_rows()
    with open_store(path) as writer:
        writer._conn.execute("PRAGMA wal_autocheckpoint=0")
        writer.write(rows, runs)
        _truncate(path + "-wal")
        with open_store(path, create=False) as reader:
            assert "disk I/O error" in _assert_unavailable(
                lambda: build_report(reader, START, END, group_by=["team", "day"]), path)


COMMANDS = {
    "report": ["report", *PERIOD],
    "report --format json": ["report", *PERIOD, "--format", "json", "--by", "team,day"],
    "report --pool": ["report", *PERIOD, "--pool", "chat"],
    "export": ["export", *PERIOD],
    "anomalies": ["anomalies", *PERIOD],
    "dashboard": ["dashboard", *PERIOD],
}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_says_on_one_line_that_the_ledger_file_was_damaged_under_it(name, ledger, tmp_path,
                                                                                   monkeypatch):
    """The ledger file truncated on disk once the command has opened it: its reads raised sqlite3.DatabaseError, a
    traceback from every command (exit status 1), then "cannot reach the ledger", as for a server down. One line
    naming the ledger and saying its file is damaged, exit status 2, no output file. (A file damaged before the
    command opens it is refused at open, on one line, as a file that is no ledger.)"""
    from aicost.ledger.store import SQLiteStore

    if name in ("anomalies", "dashboard"):
        pytest.importorskip("plotly")
    opened = SQLiteStore._migrate

    def migrate_then_truncate(store: SQLiteStore, setting: str) -> None:
        opened(store, setting)
        _truncate(str(store.path))

    monkeypatch.setattr(SQLiteStore, "_migrate", migrate_then_truncate)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    monkeypatch.chdir(out_dir)  # export's default output, dashboard's spend.html
    argv = COMMANDS[name]
    message = failed_on_one_line(argv, ledger)
    assert message.startswith(f"aicost {argv[0]}: cannot read the ledger sqlite:///{ledger}, its file is damaged or "
                              "unreadable: database disk image is malformed"), message
    assert os.listdir(out_dir) == []


def test_a_writer_whose_ledger_file_is_damaged_under_it_spills_and_logs_it_once(tmp_path, spill_dir, monkeypatch,
                                                                               caplog):
    """The ledger file truncated on disk once the writer has opened it: each write raised sqlite3.DatabaseError
    ("database disk image is malformed") as it was, logged as "a batch could not be written" with a traceback and
    counted as a write error. It is an outage: counted, logged once (a warning, no traceback) saying the file is
    damaged, rows spilled; the file restored, the writer opens it again and replays them."""
    import logging
    import shutil

    from aicost._log import forget
    from aicost.ledger import CALL, LedgerRow
    from aicost.ledger.store import SQLiteStore
    from aicost.ledger.writer import LedgerWriter

    path = str(tmp_path / "ledger.db")
    now = datetime.now(timezone.utc)
    rows = [LedgerRow(span_id=f"{i:016x}", kind=CALL, time=now, cost=Decimal("0.001"), team=f"t{i % 50}")
            for i in range(3000)]
    first = LedgerWriter(path)
    first.add(rows[:2000])
    assert first.flush()
    first.close()
    shutil.copy(path, tmp_path / "backup.db")
    opened = SQLiteStore._migrate

    def migrate_then_truncate(store: SQLiteStore, setting: str) -> None:
        opened(store, setting)
        _truncate(str(store.path))

    monkeypatch.setattr(SQLiteStore, "_migrate", migrate_then_truncate)
    for key in ("ledger:down:damaged", "ledger:write"):
        forget(key)
    writer = LedgerWriter(path)
    monkeypatch.setattr(SQLiteStore, "_migrate", opened)
    with caplog.at_level(logging.WARNING, logger="aicost"):
        for part in (rows[2000:2500], rows[2500:]):
            writer.add(part)
            writer.flush()
    stats = writer.stats()
    assert stats["spilled"] == 1000 and stats["outages"] >= 2 and "write_errors" not in stats, stats
    logged = [r for r in caplog.records if r.name.startswith("aicost")]
    assert [r.levelno for r in logged] == [logging.WARNING], [r.getMessage() for r in logged]
    message = logged[0].getMessage()
    assert message.startswith(f"aicost ledger: cannot read the ledger sqlite:///{path}, its file is damaged or "
                              "unreadable: database disk image is malformed; rows are spilled"), message
    assert not logged[0].exc_info
    os.replace(tmp_path / "backup.db", path)  # the file restored in its place
    assert writer.flush() and writer.stats()["replayed"] == 1000
    writer.close()
    with open_store(path, create=False) as store:
        assert totals(store, now.replace(hour=0, minute=0), now.replace(hour=23, minute=59)).calls == 3000
