"""Review of the hour prefixes (schema 8) on real SQLite and PostgreSQL: rows at hour edges (00:00, on the hour,
23:59:59.999999), odd amounts, chunks cutting on and within hours, the summing going to ``until`` in hourly steps
or in one go (a backfill, then live), late batches at every step (mid-hour, on days before ``hours_from``) and
replays. After every step each hour prefix a report may read is checked through reports that read it alone or
less another (``[midnight, end)``, ``[end1, end2)``), and other periods (minute edges, across the window edge,
grouped by day, filtered) against the raw rows summed in Python."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from aicost.ledger import LedgerRow, open_store
from aicost.ledger.pairs import HOUR_DAYS, PREFIX, SUFFIX
from aicost.ledger.query import _pair_days
from aicost.ledger.schema import PAIR_TABLE
from aicost.ledger.store import parse_ts

from ledger_helpers import (DROP_UNKNOWN_REASON, assert_cell_sets_nest, fresh_pg_database, python_sums, run_sql,
                            spend_sums)
from test_ledger_pairs_fuzz import ODD, _assert_units_are_the_text, _rows

UTC = timezone.utc
DAY, HOUR, MINUTE = timedelta(days=1), timedelta(hours=1), timedelta(minutes=1)
WINDOW_EDGE = datetime(2026, 12, 13, tzinfo=UTC)  # 2026-10-10 + 64 days: a window's first day
KEYS = [("team", "customer"), ("tag:env", "user"), ("customer", "feature"), ("day", "user", "team")]
WHERES = [None, {"team": "t1"}, {"tag:env": "prod"}, {"customer": ""}]


def _midnight(t):
    return t.replace(hour=0, minute=0, second=0, microsecond=0)


def _edge_rows(first, days, prefix):
    """Rows exactly on hours, at 00:00, at 23:59:59.999999 and in the last hour, each with an odd amount."""
    rows = []
    for k in range(days):
        day = first + k * DAY
        for i, t in enumerate([day, day + HOUR, day + 9 * HOUR, day + 9 * HOUR + timedelta(microseconds=1),
                               day + 22 * HOUR, day + 23 * HOUR, day + 23 * HOUR + 30 * MINUTE,
                               day + DAY - timedelta(microseconds=1)]):
            rows.append(LedgerRow(span_id=f"{prefix}{k:03d}{i:03d}", kind="call", time=t, provider="openai",
                                  request_model="m1", team=["t1", "t2", None][i % 3], feature="f1",
                                  user=["u1", "u2", None][(i + k) % 3], customer=["c1", "", "c2"][i % 3],
                                  tags={"env": "prod"} if i % 2 else {}, input_tokens=i,
                                  cost=Decimal(ODD[(i + k) % len(ODD)])))
    return rows


def _kept_hour_ends(store):
    summed, hours_from = store.pair_marks()
    ends = []
    for k in range(HOUR_DAYS + 1):
        day = hours_from + k * DAY
        ends += [day + h * HOUR for h in range(1, 24) if day + h * HOUR < summed]
    return summed, hours_from, ends


def _hour_prefix_days(store):
    return {_midnight(parse_ts(b)) for (b,) in store._fetch(f"SELECT DISTINCT bucket FROM {PAIR_TABLE} "
                                                              f"WHERE days = 0", [])}


def _check(store, rng, keys_list=KEYS, extra=(), n=10):
    """``n`` of the hour prefixes a report may read, alone and less another, and a few other periods, exact."""
    summed, hours_from, ends = _kept_hour_ends(store)
    assert all(day >= hours_from for day in _hour_prefix_days(store)), (hours_from, _hour_prefix_days(store))
    periods = [(_midnight(e), e) for e in ends]
    periods += [(a, b) for a, b in zip(ends, ends[3:]) if _midnight(a) == _midnight(b)]
    periods += [(e - DAY, e) for e in ends[::5]]  # 24h: a day's cells less an hour prefix, and a prefix
    periods += [(e - DAY + 7 * MINUTE, e - 3 * MINUTE) for e in ends[::7]]  # minute edges
    periods = rng.sample(periods, min(n, len(periods))) + list(extra)
    periods += [(_midnight(summed) + 2 * HOUR, summed + 40 * MINUTE),  # ending after summed_before
                (summed - 90 * MINUTE, summed + DAY), (summed - DAY - 5 * HOUR, summed)]
    for start, end in periods:
        keys, where = rng.choice(keys_list), rng.choice(WHERES)
        if where and set(where) <= set(keys):
            where = None
        if where and "day" in keys:
            keys = keys[:2]
        assert spend_sums(store, start, end, keys, where) == python_sums(store, start, end, keys, where), (
            keys, where, start, end, summed, hours_from)
    _assert_units_are_the_text(store)
    assert_cell_sets_nest(store)


def _sum(store, until, max_rows):
    while store.compact_pairs(max_rows=max_rows, until=until):
        pass


def _scenario(store, seed, first, days, steps):
    """Write a ledger of ``days`` days from ``first`` (mid-day), keep back a third as late rows, then per step:
    sum to the step's ``until`` (chunks of the step's size), write the late rows now before ``summed_before``
    (and replay some already written), check."""
    rng = random.Random(seed)
    rows, runs = _rows(rng, first, days, 260 * days, 0.3, f"s{seed}")
    rows += _edge_rows(_midnight(first) + DAY, days - 1, f"e{seed}")
    late = set(rng.sample(range(len(rows)), len(rows) // 3))
    store.write([r for i, r in enumerate(rows) if i not in late], runs)
    late_rows = [rows[i] for i in sorted(late)]
    written = []
    for until, max_rows in steps:
        _sum(store, until, max_rows)
        summed = store.pairs_summed_before()
        now = [r for r in late_rows if r.time < summed and r not in written]
        batch = now[: len(now) // 2 + 1] + rng.sample(written, min(len(written), 5))  # late, and a replay
        store.write(batch)
        written += now[: len(now) // 2 + 1]
        _check(store, rng)
    store.write(late_rows)
    _sum(store, None, 37)
    return rows


def test_hourly_steps_with_chunks_late_rows_and_replays(ledger_url):
    """The writer's steady state: ``until`` each next hour, chunks several an hour, late rows at every step."""
    store = open_store(ledger_url)
    first = WINDOW_EDGE - 2 * DAY + 7 * HOUR + 23 * MINUTE  # mid-day; the ledger crosses the window edge
    day = _midnight(first)
    steps = [(day + 2 * DAY + 5 * HOUR + 30 * MINUTE, None)]  # to a time mid-hour at once
    steps += [(day + 2 * DAY + (6 + k) * HOUR + (k % 3) * 20 * MINUTE, [None, 3, 11][k % 3]) for k in range(14)]
    steps += [(day + 3 * DAY + 2 * HOUR, 5)]
    _scenario(store, 41, first, 4, steps)
    _check(store, random.Random(1), n=40, extra=[(day, day + 4 * DAY), (WINDOW_EDGE - 13 * HOUR, WINDOW_EDGE + 15 * HOUR),
                                            (WINDOW_EDGE + 9 * HOUR, WINDOW_EDGE + DAY + 9 * HOUR)])
    store.close()


def test_a_backfill_then_live(ledger_url):
    """The first two days written and summed on the way to a time days ahead (they keep no prefixes), then the rest
    written and summed hour by hour (live): the days summed live keep them, exact throughout."""
    store = open_store(ledger_url)
    first = WINDOW_EDGE - 3 * DAY + 13 * HOUR
    day = _midnight(first)
    rng = random.Random(43)
    rows, runs = _rows(rng, first, 4, 900, 0.3, "b")
    rows += _edge_rows(day + DAY, 3, "be")
    cut = day + 2 * DAY
    store.write([r for r in rows if r.time < cut], [r for r in runs if r.time < cut])
    _sum(store, day + 12 * DAY, 50)
    summed, hours_from = store.pair_marks()
    assert not _hour_prefix_days(store) and hours_from >= _midnight(summed) == cut
    _check(store, rng)
    store.write([r for r in rows if r.time >= cut][::2], [r for r in runs if r.time >= cut])
    for k in range(1, 40):
        _sum(store, cut + k * HOUR, [None, 3][k % 2])
        if k % 6 == 0:
            store.write([r for r in rows if cut <= r.time < store.pairs_summed_before()][1::2])  # late
            _check(store, rng)
    _check(store, rng, extra=[(cut - 5 * HOUR, cut + 19 * HOUR), (first, first + 3 * DAY)])
    store.close()


def test_until_jumps_so_that_a_day_being_summed_keeps_prefixes_and_the_next_does_not(ledger_url):
    """A day started with ``until`` near (it keeps hour prefixes), then ``until`` far ahead: the next day keeps
    none and the first day's are dropped (hours_from past both); then ``until`` near again."""
    store = open_store(ledger_url)
    first = WINDOW_EDGE - DAY + 30 * MINUTE
    day = _midnight(first)
    steps = [(day + 5 * HOUR, 13), (day + 11 * HOUR + 30 * MINUTE, None), (day + 9 * DAY, 40),
             (day + 3 * DAY + 3 * HOUR, 9)]
    _scenario(store, 47, first, 4, steps)
    _check(store, random.Random(3))
    store.close()


def test_empty_hours_and_empty_days_inside_the_kept_days(ledger_url):
    """Rows on day 1 and day 4 only (days 2 and 3, and most hours, empty), summed hour by hour: late rows then land
    on the empty days' hours, and every prefix read is exact."""
    store = open_store(ledger_url)
    day = WINDOW_EDGE - DAY
    rows = [r for r in _edge_rows(day, 4, "x") if _midnight(r.time) in (day, day + 3 * DAY)]
    store.write(rows)
    rng = random.Random(4)
    for k in range(1, 3 * 24 + 12):
        _sum(store, day + k * HOUR, None)
    summed, hours_from = store.pair_marks()
    assert summed == day + 3 * DAY + 11 * HOUR and hours_from == day + DAY
    _check(store, rng)
    late = [replace(r, span_id="late" + r.span_id, time=r.time + DAY) for r in rows if _midnight(r.time) == day]
    store.write(late)  # late rows on the empty day 2, on hours, at 00:00 and 23:59:59.999999
    _check(store, rng)
    store.close()


def test_pair_days_never_reads_an_hour_prefix_at_or_after_summed_nor_before_hours_from():
    rng = random.Random(9)
    base = WINDOW_EDGE - 3 * DAY
    for _ in range(4000):
        summed = base + rng.randrange(0, 6 * 24 * 60) * MINUTE
        hours_from = _midnight(summed) - rng.randrange(0, 4) * DAY
        start = base + rng.randrange(0, 7 * 24 * 12) * 5 * MINUTE
        end = start + rng.randrange(1, 3 * 24 * 12) * 5 * MINUTE
        _, hours, _ = _pair_days(start, end, summed, hours_from)
        for days, e, _sign in hours:  # a suffix only where derived: its day closed, the next day's prefix started
            assert _midnight(e) >= hours_from and e < summed and e != _midnight(e), (start, end, summed, e)
            assert days == PREFIX or (days == SUFFIX and e + DAY < summed + HOUR), (start, end, summed, e)


def test_late_rows_in_a_postgresql_session_with_a_half_hour_offset_and_daylight_saving(pg_server):
    """A session time zone of +05:30 or with a daylight-saving change: the hour prefixes' hours are UTC hours."""
    for zone, first in [("Asia/Kolkata", WINDOW_EDGE - DAY + 4 * HOUR),
                        ("America/New_York", datetime(2026, 10, 31, 3, 0, tzinfo=UTC))]:
        url = fresh_pg_database(pg_server)
        run_sql(url, [f"ALTER DATABASE {url.rsplit('/', 1)[1]} SET timezone = '{zone}'"])
        store = open_store(url)
        day = _midnight(first)
        steps = [(day + DAY + k * HOUR, [None, 4][k % 2]) for k in range(0, 30, 5)]
        _scenario(store, 53, first, 3, steps)
        _check(store, random.Random(5))
        store.close()


def test_late_rows_on_days_before_the_ledger_s_first_row_and_before_hours_from(ledger_url):
    """A ledger whose first row is mid-day: its first day keeps hour prefixes from the day two before it (with no
    row); late rows then arrive on those days, on the day before them (before hours_from) and at hour edges."""
    store = open_store(ledger_url)
    first = WINDOW_EDGE + 14 * HOUR + 10 * MINUTE
    day = _midnight(first)
    rng = random.Random(61)
    rows, runs = _rows(rng, first, 1, 300, 0.3, "f")
    store.write(rows, runs)
    for k in range(1, 9):
        _sum(store, day + (14 + k) * HOUR, [None, 7][k % 2])
    summed, hours_from = store.pair_marks()
    assert hours_from == day - 2 * DAY and summed == day + 22 * HOUR
    before, _ = _rows(rng, day - 3 * DAY, 3, 400, 0.3, "g")
    edges = _edge_rows(day - 3 * DAY, 3, "h") + [r for r in _edge_rows(day, 1, "i") if r.time < summed]
    assert store.write(before + edges) == len(before) + len(edges)
    assert store.write(before[::3]) == 0  # a replay
    _check(store, rng, n=30, extra=[(day - 3 * DAY + 5 * HOUR, day + 5 * HOUR), (day - 2 * DAY, day + 22 * HOUR)])
    store.close()


def test_summing_first_to_a_time_before_the_first_row_s_day(ledger_url):
    """``compact_pairs(until=)`` before the first row's day moves ``summed_before`` there without a day's first
    chunk (no decision on hour prefixes: ``hours_from`` stays at its start); late rows then, and the summing on."""
    store = open_store(ledger_url)
    first = WINDOW_EDGE + DAY + 3 * HOUR
    day = _midnight(first)
    rng = random.Random(67)
    rows, runs = _rows(rng, first, 2, 500, 0.3, "p")
    store.write(rows, runs)
    store.compact_pairs(until=day - DAY + 5 * HOUR + 30 * MINUTE)
    summed, hours_from = store.pair_marks()
    assert summed == day - DAY + 5 * HOUR + 30 * MINUTE
    old, _ = _rows(rng, day - 9 * DAY, 8, 300, 0.3, "q")
    store.write([r for r in old if r.time < summed])
    _check(store, rng, n=10, extra=[(day - 9 * DAY + 5 * HOUR, day - 8 * DAY + 5 * HOUR), (day - 3 * DAY, first)])
    for k in range(1, 30, 3):
        _sum(store, day + k * HOUR, 40)
        store.write([r for r in rows if r.time < store.pairs_summed_before()][::5])  # replays
        _check(store, rng, n=5)
    store.close()


def test_the_migration_from_7_mid_hour_then_hourly_with_late_rows(ledger_url):
    """Migrated while the summing is mid-hour: that day reads no prefix; the next days keep them; late rows on
    all of them."""
    store = open_store(ledger_url)
    first = WINDOW_EDGE - DAY + 2 * HOUR
    day = _midnight(first)
    rng = random.Random(71)
    rows, runs = _rows(rng, first, 3, 700, 0.3, "m")
    late = rows[::4]
    store.write([r for r in rows if r not in late], runs)
    _sum(store, day + 13 * HOUR + 20 * MINUTE, 30)
    store.close()
    run_sql(ledger_url, [f"DELETE FROM {PAIR_TABLE} WHERE days <= 0",
                         "ALTER TABLE aicost_rollup_pair_mark DROP COLUMN hours_from",
                         DROP_UNKNOWN_REASON, "DELETE FROM aicost_schema WHERE version >= 8"])
    store = open_store(ledger_url)
    assert store.pair_marks() == (day + 13 * HOUR + 20 * MINUTE, day + DAY)
    store.write([r for r in late if r.time < day + 13 * HOUR])
    _check(store, rng, n=5)
    for k in range(14, 60, 3):
        _sum(store, day + k * HOUR, [None, 9][k % 2])
        store.write([r for r in late if r.time < store.pairs_summed_before()])
        _check(store, rng, n=5)
    assert _hour_prefix_days(store) == {day + DAY, day + 2 * DAY}
    store.close()


def test_late_feature_runs_reach_the_hour_prefixes(ledger_url):
    """Feature runs (in every pair but those with model or provider) held back and written late, some on the hour
    and at 00:00, into kept days summed hour by hour, and replayed."""
    store = open_store(ledger_url)
    first = WINDOW_EDGE - DAY + 3 * HOUR
    day = _midnight(first)
    rng = random.Random(73)
    rows, runs = _rows(rng, first, 3, 900, 0.2, "r")
    runs = [replace(r, time=_midnight(r.time) + r.time.hour * HOUR) if i % 3 == 0 else r for i, r in enumerate(runs)]
    late = runs[::2]
    store.write(rows, [r for r in runs if r not in late])
    for k in range(3, 3 * 24, 4):
        _sum(store, day + k * HOUR, [None, 6][k % 2])
        summed = store.pairs_summed_before()
        assert store.write([], [r for r in late if r.time < summed]) >= 0
        _check(store, rng, keys_list=[("team", "customer"), ("user", "tag:env"), ("day", "feature", "user")], n=4)
    store.close()
