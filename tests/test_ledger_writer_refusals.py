"""A row the database refuses (a value it cannot hold or sum) takes no good row with it, on real SQLite and real
PostgreSQL: the good rows of its batch are written, later batches are not spilled behind it, it is dropped, counted
(``dropped_refused``) and logged once without its values; a spill file holding it replays its good rows."""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from aicost._log import forget
from aicost.ledger import CALL, LedgerRow, open_store, totals
from aicost.ledger.rollup import SUMMABLE_DECIMALS, SUMMABLE_LIMIT
from aicost.ledger.writer import LedgerWriter
from aicost.pricing.money import sum_usd

NOW = datetime.now(timezone.utc)
WINDOW = (NOW - timedelta(days=1), NOW + timedelta(days=1))
GOOD_COST = Decimal("0.25")

# What a row can hold that a ledger cannot: rows handed to the writer ready-made (LedgerWriter.add) are not checked
# before the database sees them.
BAD = {
    # first in its batch, into new rollup cells: a ledger that took it could add no later row of those cells
    "amount": dict(cost=Decimal("1e300")),  # beside $0.25, no exact sum in 60 digits (SQLite's aicost_dec_sum)
    "count": dict(input_tokens=2**63),  # past a 64-bit integer: PostgreSQL's BIGINT, SQLite's INTEGER
}
# (A text no database can hold, a NUL or a lone surrogate, is stored with U+FFFD in its place, not refused:
# test_ledger_store.py)


def _row(n: int, **values) -> LedgerRow:
    values = {"time": NOW, "provider": "openai", "request_model": "gpt-4o-mini", "team": "search",
              "input_tokens": 10, "cost": GOOD_COST, **values}
    return LedgerRow(span_id=f"{n:016x}", kind=CALL, **values)


def _bad_batch() -> tuple[list[LedgerRow], set[str]]:
    """Good rows with the bad ones among them (the first row, one in the middle, the others last); the good rows'
    ids."""
    bad = [_row(1000 + i, **values) for i, values in enumerate(BAD.values())]
    good = [_row(i) for i in range(1, 40)]
    batch = [bad[0], *good[:20], bad[1], *good[20:], *bad[2:]]
    return batch, {r.span_id for r in good}


def _stored(url: str) -> tuple[set[str], object]:
    with open_store(url, create=False) as store:
        return {r.span_id for r in store.rows(*WINDOW)}, totals(store, *WINDOW)


def test_a_refused_row_is_dropped_alone_and_blocks_no_later_batch(ledger_url, spill_dir, caplog):
    writer = LedgerWriter(ledger_url, batch_size=100)
    batch, good = _bad_batch()
    forget("ledger:refused")
    with caplog.at_level(logging.ERROR, logger="aicost"):
        writer.add(batch)
        assert writer.flush(30)
        writer.add([_row(500)])  # a later batch: written now, not spilled behind the refused rows
        assert writer.flush(30)
    stats = writer.stats()
    writer.close()
    stored, total = _stored(ledger_url)
    assert stored == good | {_row(500).span_id}
    assert total.calls == len(good) + 1 and total.cost == GOOD_COST * (len(good) + 1)  # the rollups
    assert stats["dropped_refused"] == len(BAD) and stats["written"] == len(good) + 1
    assert not {"spilled", "outages", "write_errors"} & stats.keys(), stats
    assert not list(spill_dir.glob("*.jsonl"))
    refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refused) == 1 and "dropped_refused" in refused[0] and "span id '00000000000003e8'" in refused[0]
    text = caplog.text
    assert "unreachable" not in text and "9223372036854775808" not in text and "\udc80" not in text


def _refused_alone_and_logged(ledger_url: str, caplog, item) -> str:
    """Write ``item`` (a row or run the store refuses alone) through a writer: it is dropped, counted
    ``dropped_refused`` and not a write error; the one log line that says so."""
    writer = LedgerWriter(ledger_url, batch_size=100)
    forget("ledger:refused")
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="aicost"):
        writer.add([item])
        assert writer.flush(30)
    stats = writer.stats()
    writer.close()
    assert stats["dropped_refused"] == 1 and "write_errors" not in stats, stats
    (refused,) = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    return refused


def test_a_refused_row_or_run_is_logged_by_its_bounded_id(ledger_url, spill_dir, caplog):
    """The refusal's log line named the row's span id or the run's run id as given, though the ledger holds ids to
    their bound (row.within_bounds: an over-long id is its digest): 10,000 characters of a row from elsewhere went
    into the log. It names the id the ledger would keep (row.bounded_id) now."""
    from aicost.ledger import FeatureRun
    from aicost.ledger.row import bounded_id

    long_span, long_run = "s" * 10_000, "r" * 10_000
    row = LedgerRow(span_id=long_span, kind=CALL, time=NOW, provider="openai", cost=GOOD_COST, **BAD["count"])
    for item, named in [(row, f"span id {bounded_id(long_span)!r})"),
                        (FeatureRun(run_id=long_run, feature="f", time=NOW, outcome="o" * 10_000),  # refused by
                         f"run id {bounded_id(long_run)!r})")]:  # the store's bounds, before the database
        refused = _refused_alone_and_logged(ledger_url, caplog, item)
        assert named in refused and len(refused) < 1_000, refused[:1_000]


def test_a_refused_row_or_run_whose_id_holds_control_characters_is_logged_on_one_line(ledger_url, spill_dir, caplog):
    """The refusal's log line put a row's span id (or a run's run id) as it is: an id from a span elsewhere holding a
    newline, a carriage return or a terminal escape forged log lines of its choosing after aicost's. The id is
    logged quoted (repr), its control characters escaped: one line, the id still told."""
    from aicost.ledger import FeatureRun

    forged = "abc\naicost ledger: all rows written\r\x1b[2J\u2028\x85end"
    row = LedgerRow(span_id=forged, kind=CALL, time=NOW, provider="openai", cost=GOOD_COST, **BAD["count"])
    for item, named in [(row, f"span id {forged!r})"),
                        (FeatureRun(run_id=forged, feature="f", time=NOW, outcome="o" * 10_000),
                         f"run id {forged!r})")]:
        refused = _refused_alone_and_logged(ledger_url, caplog, item)
        assert named in refused, refused
        assert refused.isprintable(), refused  # no newline, CR, escape, line or next-line separator


def test_a_refused_row_whose_span_id_is_no_text_is_logged_by_its_type(tmp_path, spill_dir, caplog):
    """A span id that is no text is left to the database (row.within_bounds): an int of 5,000 digits, which SQLite
    refuses, made the refusal's log line raise (Python writes no int of more than 4,300 digits): the row was counted
    both refused and a write error, the batch taken for failed. Its type is logged, never its value."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    writer = LedgerWriter(url, batch_size=100)
    forget("ledger:refused")
    with caplog.at_level(logging.ERROR, logger="aicost"):
        writer.add([LedgerRow(span_id=10**5000, kind=CALL, time=NOW, provider="openai", cost=GOOD_COST), _row(1)])
        assert writer.flush(30)
    stats = writer.stats()
    writer.close()
    assert stats["dropped_refused"] == 1 and stats["written"] == 1, stats
    assert not {"spilled", "write_errors", "dropped_invalid"} & stats.keys(), stats
    (refused,) = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert "span id: no text (int))" in refused and "0000000000" not in refused, refused[:1_000]


def test_a_spill_file_holding_a_refused_row_replays_its_good_rows(ledger_url, spill_dir):
    writer = LedgerWriter(ledger_url, batch_size=100)
    batch, good = _bad_batch()
    spill = writer._own_spill()
    spill.parent.mkdir(parents=True, exist_ok=True)
    spill.write_text("".join(json.dumps({"row": r.to_dict()}, separators=(",", ":")) + "\n" for r in batch))
    writer.add([_row(500)])
    assert writer.flush(30)
    stats = writer.stats()
    writer.close()
    assert _stored(ledger_url)[0] == good | {_row(500).span_id}
    assert stats["replayed"] == len(good) and stats["dropped_refused"] == len(BAD) and "spilled" not in stats
    assert not list(spill_dir.glob("*.jsonl"))  # nothing kept to block the next replay


def test_writing_around_a_refused_row_stops_at_the_deadline_and_spills_the_rest(ledger_url, spill_dir):
    """close()'s deadline passes while a refused batch is written in parts: no part begins after it; the rest is
    spilled, and the next writer writes it around the refused rows."""
    writer = LedgerWriter(ledger_url, batch_size=100, prepare_ahead=False)
    batch, good = _bad_batch()
    writer._start = lambda: False  # queued before the writer thread starts (close() starts it)
    writer.add(batch)
    del writer._start
    store = writer._connected()
    parts = []
    write = store.write

    def part_then_deadline(rows, runs=()):
        written = write(rows, runs)
        parts.append(written)  # a part written (a refused one raised): the deadline passes while it was
        writer._stop_by = time.monotonic()
        return written

    store.write = part_then_deadline
    writer.close(timeout_s=30)
    stats = writer.stats()
    assert len(parts) == 1 and stats["written"] == parts[0] > 0
    assert stats["spilled"] + stats["written"] + stats.get("dropped_refused", 0) == len(batch)
    next_writer = LedgerWriter(ledger_url, batch_size=100)
    assert next_writer.flush(30)
    assert next_writer.stats()["dropped_refused"] + stats.get("dropped_refused", 0) == len(BAD)
    next_writer.close()
    assert _stored(ledger_url)[0] == good


def test_an_error_in_aicosts_own_sqlite_function_is_a_refusal_not_an_outage(tmp_path, spill_dir, caplog):
    """An hour cell holding an amount no later row can be added to (written by an aicost before the amounts were
    bounded): the rows of that cell are refused, counted and logged as such; not an outage ("unreachable")
    retried for ever while every later batch waits in the spill file."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    writer = LedgerWriter(url, batch_size=100)
    writer.add([_row(1, cost=Decimal("0.1234567890123"))])  # 13 decimals: summed by aicost_dec_sum
    assert writer.flush(30)
    import sqlite3

    with sqlite3.connect(tmp_path / "ledger.db") as conn:
        conn.execute("UPDATE aicost_rollup SET cost = '1' || substr(printf('%0300d', 0), 1, 300) "
                     "WHERE dim = 'all' AND grain = 'hour'")
    forget("ledger:refused")
    with caplog.at_level(logging.WARNING, logger="aicost"):
        writer.add([_row(2, cost=Decimal("0.1234567890123"))])
        assert writer.flush(30)
        writer.add([_row(3, time=NOW - timedelta(hours=3))])  # another hour's cell: written
        assert writer.flush(30)
    stats = writer.stats()
    writer.close()
    assert stats["dropped_refused"] == 1 and stats["written"] == 2
    assert not {"spilled", "outages", "write_errors"} & stats.keys(), stats
    assert "exact decimal sum" in caplog.text and "unreachable" not in caplog.text


def test_a_row_the_ledger_takes_at_its_door_is_never_refused_by_a_rollup_sum(ledger_url, spill_dir, caplog):
    """SQLite adds a rollup cell's amounts to 60 digits and raises rather than rounds, in the transaction that
    inserts the raw row. Under the old bound of a row (under $10**24, at most 36 decimals) two rows of $9 x 10**23
    made a cell of 25 integer digits, and a later row of that cell with 36 decimals was refused by the sum, its
    raw row lost with it, while $0.25 still went in. A row is now either refused at the door, alone, by the
    bound (:func:`aicost.ledger.rollup.summable`), or kept: never refused by a sum (on PostgreSQL neither)."""
    from aicost.ledger.rollup import summable

    fine = Decimal("0." + "0" * 35 + "1")  # 36 decimals
    rows = [_row(1, cost=Decimal("9E+23")), _row(2, cost=Decimal("9E+23")), _row(3, cost=fine), _row(4)]
    writer = LedgerWriter(ledger_url, batch_size=100)
    forget("ledger:refused")
    with caplog.at_level(logging.ERROR, logger="aicost"):
        for row in rows:  # a batch each, all in the same cells
            writer.add([row])
            assert writer.flush(30)
    stats = writer.stats()
    writer.close()
    door = [r for r in rows if summable(r.cost)]
    stored, total = _stored(ledger_url)
    assert stored == {r.span_id for r in door}
    assert total.cost == sum_usd(r.cost for r in door)
    assert stats.get("dropped_refused", 0) == len(rows) - len(door) and "exact decimal sum" not in caplog.text


# The extremes of what the door takes (rollup.summable): the largest amount of either sign, with every decimal
# the bound allows, and the finest, written from the bound itself.
LARGEST = Decimal("9" * SUMMABLE_LIMIT.adjusted() + "." + "9" * SUMMABLE_DECIMALS)
FINEST = Decimal("0.25" + "0" * (SUMMABLE_DECIMALS - 3) + "1")


def test_the_largest_and_the_finest_rows_the_door_takes_all_add_up_in_one_cell(ledger_url, spill_dir):
    """Rows at the bound's extremes, a batch each into the same rollup cells (hour, day, cube, pairs): every one is
    kept and the cells hold their exact sum."""
    rows = [_row(1, cost=LARGEST), _row(2, cost=LARGEST), _row(3, cost=FINEST), _row(4, cost=LARGEST.copy_negate()),
            _row(5, cost=FINEST.copy_negate())]
    writer = LedgerWriter(ledger_url, batch_size=100)
    for row in rows:
        writer.add([row])
        assert writer.flush(30)
    stats = writer.stats()
    writer.close()
    stored, total = _stored(ledger_url)
    assert stored == {r.span_id for r in rows} and "dropped_refused" not in stats, stats
    assert total.cost == sum_usd(r.cost for r in rows) == LARGEST


def test_any_sum_of_rows_the_door_takes_fits_sqlites_exact_decimal_sum():
    """Why no sum refuses a row the door took: a ledger holds fewer than 2**63 rows (SQLite's 64-bit row ids, the
    64-bit counts beside every amount), so a rollup cell, a report's total or a period's change (this period's
    cell minus the previous one's, pairs.py) is a sum of fewer than 2**63 amounts of the bound, which
    aicost_dec_add and aicost_dec_sum add in their 60 digits without rounding (they raise rather than round)."""
    import decimal

    from aicost.ledger.store import _dec_add, _DecSum

    exact = decimal.Context(prec=200, traps=[decimal.Inexact])
    worst = exact.multiply(LARGEST, 2**63 - 1)  # every row of a full ledger at the bound, in one cell
    assert Decimal(_dec_add(str(worst), str(FINEST))) == exact.add(worst, FINEST)
    earlier = exact.multiply(LARGEST.copy_negate(), 2**62)  # a change: rows of both periods, fewer than 2**63 in all
    now = exact.multiply(LARGEST, 2**62 - 1)
    assert Decimal(_dec_add(str(now), str(exact.minus(earlier)))) == exact.subtract(now, earlier)
    total = _DecSum()
    for amount in (worst, FINEST.copy_negate(), FINEST, LARGEST.copy_negate()):
        total.step(str(amount))
    assert Decimal(total.finalize()) == exact.subtract(worst, LARGEST)


@pytest.mark.parametrize("value", ["1e300", "-1e11", "1E+11", "1E-31", "-0.2500000000000000000000000000001", "NaN"])
def test_the_ledger_refuses_an_amount_it_cannot_sum(ledger_url, value):
    """On every database, by the one bound (rollup.summable), whose reason it names: a report could not add it up
    either (60 digits), nor, on SQLite, a rollup."""
    from aicost.ledger.store import LedgerRefused

    with open_store(ledger_url) as store:
        with pytest.raises(LedgerRefused, match=r"cannot sum exactly \(1E\+11 dollars or more, more than 30 decimals"):
            store.write([_row(1, saved_cost=Decimal(value))])
        assert store.write([_row(2, saved_cost=Decimal("-99999999999.5")), _row(3, cost=Decimal("1E-30")),
                            _row(4, cost=Decimal("1.000000000000000000000000000000000000000"))]) == 3
