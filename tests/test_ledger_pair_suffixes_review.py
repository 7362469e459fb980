"""Review of the hour suffixes (schema 9) on real SQLite and PostgreSQL. After every step of the summing (hourly
``until``, chunks cutting inside hours, a backfill then live, ``until`` jumping so ``hours_from`` moves, a
PostgreSQL session in a +05:30 zone) and every late batch (rows at 00:00, on the hour, 23:59:59.999999, odd
amounts, feature runs, replays), EVERY suffix :func:`suffix_kept` names is read alone and equals the raw rows from
its hour to its day's end, and no other suffix is stored; and :meth:`LedgerStore._sum_added` (costs over sets all
added, SQLite) answers as the SQL path does, keys of no value and of the text 'None' apart."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from aicost.ledger import FeatureRun, open_store
from aicost.ledger.days import midnight
from aicost.ledger import store as store_module
from aicost.ledger.pairs import PREFIX, SUFFIX, suffix_kept
from aicost.ledger.query import _pair_days
from aicost.ledger.schema import PAIR_TABLE, PAIR_UNITS

from ledger_helpers import (DROP_UNKNOWN_REASON, answers, fresh_pg_database, python_sums, run_sql, spend_sums,
                            sum_all_pairs)
from test_ledger_pair_hours_review import _edge_rows
from test_ledger_pair_suffixes import _suffixes
from test_ledger_pairs_fuzz import _assert_units_are_the_text, _rows

UTC = timezone.utc
DAY, HOUR, MINUTE = timedelta(days=1), timedelta(hours=1), timedelta(minutes=1)
WINDOW_EDGE = datetime(2026, 12, 13, tzinfo=UTC)  # a 64-day window's first day
KEYS = [(("team", "user"), None), (("tag:env", "customer"), None), (("feature",), {"user": "u1"})]


def _check_every_suffix(store, first_day, days, keys=KEYS):
    """Every suffix kept, alone, equals its raw rows; none stored that is not kept; no empty suffix cell; units
    the text's where known and never negative."""
    summed, hours_from = store.pair_marks()
    kept = {s for k in range(-3, days + 1) for h in range(1, 24)
            if suffix_kept(s := first_day + k * DAY + h * HOUR, summed, hours_from)}
    stored = _suffixes(store)
    assert stored <= kept, (sorted(stored - kept), summed, hours_from)
    for s in sorted(kept):
        end = midnight(s) + DAY
        assert _pair_days(s, end, summed, hours_from) == ([], [(SUFFIX, s, 1)], []), (s, summed, hours_from)
        for k, where in keys:
            assert spend_sums(store, s, end, k, where) == python_sums(store, s, end, k, where), (
                s, k, where, summed, hours_from)
    net = "calls + cache_hits + refusals + runs"
    assert not store._fetch(f"SELECT bucket FROM {PAIR_TABLE} WHERE days = {SUFFIX} AND {net} <= 0", [])
    _assert_units_are_the_text(store)
    return kept


def _ledger_rows(seed, first, days):
    rng = random.Random(seed)
    rows, runs = _rows(rng, first, days, 220 * days, 0.3, f"v{seed}")
    rows += _edge_rows(midnight(first), days, f"w{seed}")
    # feature runs on the hour, at 00:00 and at the day's last microsecond
    day = midnight(first)
    runs += [FeatureRun(run_id=f"x{seed}{k:03d}{i}", feature="f1", time=day + k * DAY + t, outcome="succeeded",
                        team="t1", user="u1", customer="c1", tags={"env": "prod"})
             for k in range(days) for i, t in enumerate([timedelta(0), 9 * HOUR, DAY - timedelta(microseconds=1)])]
    return rng, rows, runs


def _steps(store, rng, rows, runs, steps, first_day, days):
    """Write two thirds of the rows and runs, then per step sum to ``until`` in chunks of ``max_rows`` and write
    the late rows and runs now before ``summed_before`` (half of them, and a replay), checking every suffix."""
    late = set(rng.sample(range(len(rows)), len(rows) // 3))
    late_runs = set(rng.sample(range(len(runs)), len(runs) // 3))
    store.write([r for i, r in enumerate(rows) if i not in late], [r for i, r in enumerate(runs) if i not in late_runs])
    pending = [rows[i] for i in sorted(late)]
    pending_runs = [runs[i] for i in sorted(late_runs)]
    written: list = []
    seen = set()
    for until, max_rows in steps:
        sum_all_pairs(store, max_rows=max_rows, until=until)
        seen |= _check_every_suffix(store, first_day, days)
        summed = store.pairs_summed_before()
        now = [r for r in pending if r.time < summed]
        now_runs = [r for r in pending_runs if r.time < summed]
        batch = now[: len(now) // 2 + 1]
        store.write(batch + rng.sample(written, min(len(written), 4)), now_runs[: len(now_runs) // 2 + 1])
        written += batch
        pending = [r for r in pending if r not in batch]
        pending_runs = [r for r in pending_runs if r not in now_runs[: len(now_runs) // 2 + 1]]
        seen |= _check_every_suffix(store, first_day, days)
    store.write(pending, pending_runs)
    sum_all_pairs(store, max_rows=41, until=None)
    seen |= _check_every_suffix(store, first_day, days)
    return seen


def test_every_kept_suffix_through_hourly_steps_chunks_and_late_rows(ledger_url):
    first = WINDOW_EDGE - DAY + 5 * HOUR + 7 * MINUTE  # the first day ever summed starts mid-day
    day = midnight(first)
    rng, rows, runs = _ledger_rows(3, first, 3)
    steps = [(day + DAY + 2 * HOUR + 30 * MINUTE, 17)]
    steps += [(day + DAY + (3 + k) * HOUR + (k % 3) * 20 * MINUTE, [None, 7, 23][k % 3]) for k in range(0, 40, 3)]
    seen = _steps(store := open_store(ledger_url), rng, rows, runs, steps, day, 3)
    assert {midnight(s) for s in seen} >= {day - DAY, day, day + DAY}  # the day before the first row's too
    store.close()


def test_every_kept_suffix_through_a_backfill_and_until_jumping(ledger_url):
    """A backfill (days keeping no prefixes), then live hour by hour, then ``until`` far ahead (hours_from moves
    past the kept days, their suffixes dropped), then near again."""
    first = WINDOW_EDGE - 2 * DAY + 20 * HOUR
    day = midnight(first)
    rng, rows, runs = _ledger_rows(5, first, 5)
    cut = day + 2 * DAY
    store = open_store(ledger_url)
    early = [r for r in rows if r.time < cut][::2]
    store.write(early)
    sum_all_pairs(store, max_rows=60, until=day + 9 * DAY)  # on the way to a time a week on: no day keeps prefixes
    summed, hours_from = store.pair_marks()
    assert not _suffixes(store) and hours_from > midnight(summed - timedelta(microseconds=1))
    steps = [(cut + k * HOUR, [None, 9][k % 2]) for k in range(1, 30, 4)]
    steps += [(day + 12 * DAY, 80), (day + 5 * DAY, 13)]
    seen = _steps(store, rng, [r for r in rows if id(r) not in set(map(id, early))], runs, steps, day, 5)
    assert cut in {midnight(s) for s in seen}  # the first day summed live kept them
    assert not _suffixes(store)  # until far ahead: every day's dropped
    store.close()


def test_every_kept_suffix_in_a_postgresql_session_at_plus_05_30(pg_server):
    url = fresh_pg_database(pg_server)
    run_sql(url, [f"ALTER DATABASE {url.rsplit('/', 1)[1]} SET timezone = 'Asia/Kolkata'"])
    first = WINDOW_EDGE - DAY + 4 * HOUR
    day = midnight(first)
    rng, rows, runs = _ledger_rows(7, first, 3)
    steps = [(day + DAY + k * HOUR, [None, 5][k % 2]) for k in range(0, 40, 5)]
    store = open_store(url)
    _steps(store, rng, rows, runs, steps, day, 3)
    store.close()


def test_the_migration_from_8_on_the_hour_and_mid_hour(ledger_url):
    """Schema 8 summed to an hour exactly (that hour's suffix is the summing's to derive, not the migration's)
    and to a time inside an hour: migrated, then summed on with late rows, every suffix exact."""
    for n, (hours, minutes) in enumerate([(7, 0), (7, 25)]):
        url = ledger_url if n == 0 else (ledger_url.replace("ledger.db", "ledger2.db") if ledger_url.startswith(
            "sqlite") else fresh_pg_database(ledger_url))
        first = WINDOW_EDGE - DAY + 2 * HOUR
        day = midnight(first)
        rng, rows, runs = _ledger_rows(11 + n, first, 3)
        store = open_store(url)
        store.write(rows[::2], runs)
        sum_all_pairs(store, max_rows=30, until=day + DAY + hours * HOUR + minutes * MINUTE)
        store.close()
        run_sql(url, [f"DELETE FROM {PAIR_TABLE} WHERE days = {SUFFIX}", DROP_UNKNOWN_REASON,
                      "DELETE FROM aicost_schema WHERE version >= 9"])
        store = open_store(url)
        _check_every_suffix(store, day, 3)
        store.write(rows[1::2])
        _check_every_suffix(store, day, 3)
        for k in range(hours, 30, 3):
            sum_all_pairs(store, max_rows=[None, 11][k % 2], until=day + DAY + k * HOUR)
            _check_every_suffix(store, day, 3)
        store.close()


# ------------------------------------------------------------------------------------------------ _sum_added
def _odd_values_ledger(ledger_url, odd):
    """Two days summed to the second's afternoon: users of no value, '' and the text 'None', tags of an empty
    value."""
    first = WINDOW_EDGE - DAY
    rng = random.Random(17)
    rows, runs = _rows(rng, first, 2, 1200, odd, "n")
    users = [None, "None", "u1", "u2", ""]
    rows = [replace(r, user=users[i % len(users)], tags=[{}, {"env": ""}, {"env": "None"}, {"env": "prod"}][i % 4])
            for i, r in enumerate(rows)]
    store = open_store(ledger_url)
    store.write(rows, runs)
    sum_all_pairs(store, max_rows=None, until=first + DAY + 15 * HOUR + 20 * MINUTE)
    return store, first


@pytest.mark.parametrize("odd", [0, 0.2])
def test_sum_added_answers_as_the_sql_path(ledger_url, monkeypatch, odd):
    store, first = _odd_values_ledger(ledger_url, odd)
    sets = [(SUFFIX, first + 15 * HOUR, 1), (PREFIX, first + DAY + 15 * HOUR, 1)]
    summed, hours_from = store.pair_marks()
    assert suffix_kept(sets[0][1], summed, hours_from)
    cases = [(("team", "user"), ("team", "user"), None), (("user", "tag"), ("user",), None),
             (("user", "tag"), ("tag:env",), None), (("user", "tag"), ("user", "tag:env"), {"tag:env": "None"}),
             (("team", "user"), ("user",), {"team": "t1"}), (("user", "customer"), ("customer",), {"user": "None"}),
             (("user", "customer"), ("customer", "user"), {"user": ""}), (("team", "tag"), ("tag",), None)]
    answered = []
    for pair, keys, where in cases:
        for measure in ("cost", "saved_cost", "stopped_cost"):
            monkeypatch.undo()  # the real _sum_added, watched
            calls = answers(monkeypatch, "_sum_added")
            fast = store.sum_pairs(pair, sets, [], keys, where=where, measures=(measure,))
            answered += calls
            monkeypatch.setattr(store_module.LedgerStore, "_sum_added", lambda *a, **k: None)
            slow = store.sum_pairs(pair, sets, [], keys, where=where, measures=(measure,))
            assert sorted(fast, key=repr) == sorted(slow, key=repr), (pair, keys, where, measure)
            assert all(isinstance(v, str) and Decimal(v) >= 0 for *_, v in fast)
    # the period through the report, every key against the raw rows
    for keys, where in [(("user", "tag:env"), None), (("user",), {"tag:env": ""}), (("customer",), {"user": "None"})]:
        start, end = first + 15 * HOUR, first + DAY + 15 * HOUR
        assert spend_sums(store, start, end, keys, where) == python_sums(store, start, end, keys, where), (keys, where)
    if store.dialect == "sqlite":
        assert any(answered) if odd == 0 else True
        units = store._fetch(f"SELECT {', '.join(PAIR_UNITS.values())} FROM {PAIR_TABLE}", [])
        assert all(u is None or u >= 0 for cell in units for u in cell)
    store.close()


# ------------------------------------------------------------------------------------------------ _pair_days
def test_pair_days_covers_each_instant_of_the_period_once():
    """Whatever the period, summed_before and hours_from: the day cells, prefixes, suffixes (only those kept) and
    raw rows a report reads hold every instant of the period once and nothing else (a set holds only rows before
    summed_before; raw rows hold any)."""
    from aicost.ledger.store import _span

    rng = random.Random(19)
    base = WINDOW_EDGE - 3 * DAY
    for _ in range(1500):
        summed = base + rng.randrange(0, 6 * 24 * 12) * 5 * MINUTE
        hours_from = midnight(summed) - rng.randrange(0, 4) * DAY
        start = base + rng.randrange(0, 7 * 24 * 12) * 5 * MINUTE
        end = start + rng.randrange(1, 3 * 24 * 12) * 5 * MINUTE
        runs, hours, edges = _pair_days(start, end, summed, hours_from)
        for days, s, _sign in hours:
            assert days != SUFFIX or suffix_kept(s, summed, hours_from)
        held = [(a, min(b, summed), 1) for a, b in runs]
        held += [(*_span(days, s), sign) for days, s, sign in hours]
        held = [(a, min(b, summed), sign) for a, b, sign in held] + list(edges)
        t = start - HOUR
        while t < end + HOUR:
            for u in (t, t + 150 * timedelta(seconds=1)):
                covered = sum(sign for a, b, sign in held if a <= u < b)
                assert covered == (1 if start <= u < end else 0), (start, end, summed, hours_from, u, runs, hours,
                                                                   edges)
            t += 5 * MINUTE
