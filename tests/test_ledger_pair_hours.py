"""Hour prefixes of the pair cells (schema 8) on real SQLite and PostgreSQL: for the last :data:`HOUR_DAYS` days
the summing keeps each hour's prefix of the day, so a period of hours by a pair (``24h`` by team and user, and the
24 hours before it that top movers read) reads cells, not a day of raw rows. Every report still agrees to the last
digit with sums of the raw rows in Python: summed in small chunks, with late rows and replays, after the prefixes
of older days are dropped, on a backfill's past days (which keep none), and after the migration from schema 7."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

from aicost.ledger import FeatureRun, open_store
from aicost.ledger import store as store_module
from aicost.ledger.days import midnight as _midnight
from aicost.ledger.pairs import HOUR_DAYS, PREFIX, SUFFIX, suffix_kept
from aicost.ledger.query import _pair_days
from aicost.ledger.report import build_report
from aicost.ledger.schema import PAIR_TABLE, SCHEMA_VERSION
from aicost.ledger.store import parse_ts
from aicost.ledger.synthetic import Profile, fill, generate

from ledger_helpers import DROP_UNKNOWN_REASON, Reads, python_sums, run_sql, spend_sums, sum_all_pairs

UTC = timezone.utc
DAY, HOUR = timedelta(days=1), timedelta(hours=1)
KEYS = [("team", "customer"), ("user", "tag:env"), ("day", "team", "user"), ("model", "customer")]


def _generated(profile):
    items = list(generate(profile))
    return [i for i in items if not isinstance(i, FeatureRun)], [i for i in items if isinstance(i, FeatureRun)]


def _hour_prefix_days(store):
    """The days that have hour prefixes (days 0), each with how many."""
    counts = {}
    for (bucket,) in store._fetch(f"SELECT DISTINCT bucket FROM {PAIR_TABLE} WHERE days = 0", []):
        day = _midnight(parse_ts(bucket))
        counts[day] = counts.get(day, 0) + 1
    return counts


def _assert_exact(store, periods, keys_list=KEYS):
    for start, end in periods:
        for keys in keys_list:
            assert spend_sums(store, start, end, keys) == python_sums(store, start, end, keys), (keys, start, end)


def test_each_instant_is_read_once_and_a_day_keeping_hour_prefixes_reads_no_raw_row_between_hours():
    """_pair_days with hour prefixes, over random periods, summing points and first days keeping them: every
    instant of the period is counted once (day cells, hour prefixes and raw rows, each where it holds what it is
    read for), an hour prefix read is one the summing has finished, and a day keeping them whose part of the period
    starts and ends on the hour, before the summing point, reads no raw row."""
    base = datetime(2026, 11, 2, tzinfo=UTC)
    rng = random.Random(5)
    for _ in range(3000):
        start = base + rng.randrange(0, 6 * 24 * 4) * HOUR / 4
        end = start + rng.randrange(1, 5 * 24 * 4) * HOUR / 4
        summed = base + rng.randrange(0, 10 * 24 * 4) * HOUR / 4
        hours_from = base + rng.randrange(0, 10) * DAY
        summed_day = _midnight(summed)
        runs, hours, edges = _pair_days(start, end, summed, hours_from)
        for days, t_edge, _ in hours:  # only the hour prefixes of days keeping them, finished; suffixes derived
            assert _midnight(t_edge) >= hours_from and _midnight(t_edge) < t_edge and t_edge == t_edge.replace(
                minute=0) and t_edge <= summed
            assert days == PREFIX or (days == SUFFIX and suffix_kept(t_edge, summed, hours_from))
        points = sorted({start, end, summed, *(t for r in runs for t in r), *(t for _, t, _ in hours),
                         *(t for e in edges for t in e[:2]), *(_midnight(start) + k * DAY for k in range(12))})
        for t in points:
            t = t + timedelta(minutes=1)
            day = _midnight(t)
            held = day + DAY if day < summed_day else summed if day == summed_day else day
            count = sum(1 for first, last in runs if first <= t < last) if t < held else 0
            count += sum(sign for days, t_end, sign in hours if days == PREFIX and _midnight(t_end) == day
                         and t < t_end)
            count += sum(sign for days, s, sign in hours if days == SUFFIX and _midnight(s) == day and t >= s)
            count += sum(sign for low, high, sign in edges if low <= t < high)
            assert count == (1 if start <= t < end else 0), (start, end, summed, hours_from, t, runs, hours, edges)
        for k in range(12):  # a day whose part starts on an hour with its suffix kept and ends at its end: that alone
            day = _midnight(start) + k * DAY
            low, high = max(start, day), min(end, day + DAY)
            if low > day and low == low.replace(minute=0) and high == day + DAY and suffix_kept(low, summed,
                                                                                                  hours_from):
                assert [h for h in hours if _midnight(h[1]) == day] == [(SUFFIX, low, 1)], (start, end, hours)
                assert not [e for e in edges if e[0] < day + DAY and e[1] > day], (start, end, summed, edges)
        for k in range(12):
            day = _midnight(start) + k * DAY
            low, high = max(start, day), min(end, day + DAY)
            on_the_hour = low == low.replace(minute=0) and high == high.replace(minute=0)
            if low < high and day >= hours_from and high <= summed and on_the_hour:
                assert not [e for e in edges if e[0] < day + DAY and e[1] > day], (start, end, summed, edges)


def test_periods_of_hours_equal_the_raw_rows_with_chunks_late_rows_and_replays(ledger_url):
    store = open_store(ledger_url)
    rows, runs = _generated(Profile(days=4, teams=3, customers=6, calls=1200, seed=21))
    late = [r for r in rows if r.time.minute % 7 == 0]
    store.write([r for r in rows if r not in late], runs)
    sum_all_pairs(store, max_rows=131)  # small chunks: several an hour, each within its hour
    first, last = store.time_range()
    summed, hours_from = store.pair_marks()
    assert hours_from == _midnight(summed) - (HOUR_DAYS - 1) * DAY
    kept = _hour_prefix_days(store)
    assert set(kept) == {hours_from + k * DAY for k in range(HOUR_DAYS)}
    assert kept[hours_from] == 23 and kept[_midnight(summed)] == summed.hour  # every hour's prefix, to summed's
    assert store.write(late) == len(late)  # late rows: to the day cells, window and hour prefixes holding them
    assert store.write(late) == 0  # a replay adds nothing
    day = _midnight(summed)
    periods = [(day - DAY + 9 * HOUR, day + 9 * HOUR),  # 24 hours: yesterday's cells less its prefix to 09:00
               (day - 2 * DAY + 9 * HOUR, day - DAY + 9 * HOUR),  # the 24 hours before (top movers')
               (day - DAY + 3 * HOUR, day - DAY + 17 * HOUR),  # one prefix less another
               (day - 2 * DAY + 13 * HOUR + 20 * timedelta(minutes=1), day - 5 * HOUR - 7 * timedelta(minutes=1)),
               (day + 2 * HOUR, last + timedelta(seconds=1)),  # the day being summed, and its raw rows after
               (first, last + timedelta(seconds=1))]
    _assert_exact(store, periods)
    store.close()


def test_a_period_of_hours_on_days_keeping_them_reads_cells_not_raw_rows(ledger_url, monkeypatch):
    store = open_store(ledger_url)
    fill(store, Profile(days=3, teams=3, customers=6, calls=900, seed=23), batch=300)
    sum_all_pairs(store)
    summed, _ = store.pair_marks()
    end = _midnight(summed) + 9 * HOUR
    reads = Reads(store, monkeypatch)
    joined = []
    real = store_module.LedgerStore._sum_joined

    def spy(self, *args, **kwargs):
        found = real(self, *args, **kwargs)
        joined.append((args[1], found is not None))  # the sets joined, answered
        return found

    monkeypatch.setattr(store_module.LedgerStore, "_sum_joined", spy)
    report = build_report(store, end - DAY, end, group_by=("team", "user"))
    assert report.groups and report.movers is not None
    assert "aicost_rollup_pair" in " ".join(reads.sql)
    assert "aicost_ledger" not in " ".join(reads.sql)  # this 24 hours and the 24 before: no raw row read
    assert store._ts(end) in reads.params and store._ts(end - DAY) in reads.params  # the two prefixes to 09:00
    # the period: the day's suffix from 09:00 and the next day's prefix to 09:00, joined by primary key; the 24
    # hours before, read for their costs alone, summed together (one measure: cheaper than a lookup per cell)
    assert joined == [([(SUFFIX, end - DAY, 1), (PREFIX, end, 1)], True)]  # the longer first
    store.close()


def test_older_days_drop_their_hour_prefixes(ledger_url):
    """Only the last :data:`HOUR_DAYS` days to where the summing goes keep hour prefixes: each new day drops the
    prefixes of the day now too old, and reports of that day read raw rows again, exact."""
    store = open_store(ledger_url)
    fill(store, Profile(days=6, teams=3, customers=5, calls=700, seed=29), batch=400)
    first, last = store.time_range()
    first_day = _midnight(first)
    sum_all_pairs(store, until=first_day + 2 * DAY + 5 * HOUR)  # two days and five hours, going there
    assert set(_hour_prefix_days(store)) == {first_day, first_day + DAY, first_day + 2 * DAY}
    sum_all_pairs(store)  # the rest, to the last row's hour: days 4 to 6 keep them, 1 to 3 dropped theirs
    summed, hours_from = store.pair_marks()
    assert hours_from == _midnight(summed) - (HOUR_DAYS - 1) * DAY == first_day + 3 * DAY
    assert set(_hour_prefix_days(store)) == {hours_from + k * DAY for k in range(HOUR_DAYS)}
    _assert_exact(store, [(first_day + 9 * HOUR, first_day + DAY + 9 * HOUR),
                          (first_day + 3 * DAY + 9 * HOUR, first_day + 4 * DAY + 9 * HOUR)])
    store.close()


def test_a_backfill_s_past_days_keep_no_hour_prefix(ledger_url):
    """Summed on the way to a time days after them, a backfill's days keep no hour prefix (they would be dropped
    days later): the mark moves past each, and their periods of hours read raw rows, exact."""
    store = open_store(ledger_url)
    fill(store, Profile(days=4, teams=3, customers=5, calls=600, seed=37), batch=400)
    first, last = store.time_range()
    sum_all_pairs(store, until=_midnight(last) + 10 * DAY)
    summed, hours_from = store.pair_marks()
    assert not _hour_prefix_days(store) and hours_from > _midnight(last)
    _assert_exact(store, [(_midnight(first) + 9 * HOUR, _midnight(first) + DAY + 9 * HOUR)])
    store.close()


def test_the_migration_from_schema_7_keeps_hour_prefixes_from_the_next_day(ledger_url):
    """Version 8 adds ``hours_from``: the day after the one being summed, whose hours before the migration have no
    prefix; reports read that day's raw rows until then, exact, and the next day keeps them."""
    store = open_store(ledger_url)
    rows, runs = _generated(Profile(days=3, teams=3, customers=5, calls=700, seed=31))
    store.write(rows, runs)
    first, last = store.time_range()
    day = _midnight(first) + DAY
    sum_all_pairs(store, until=day + 13 * HOUR)
    store.close()
    mark = "aicost_rollup_pair_mark"
    run_sql(ledger_url, [f"DELETE FROM {PAIR_TABLE} WHERE days <= 0", f"ALTER TABLE {mark} DROP COLUMN hours_from",
                         DROP_UNKNOWN_REASON,
                         "DELETE FROM aicost_schema WHERE version >= 8"])  # what version 7 wrote
    store = open_store(ledger_url)
    assert store.schema_version() == SCHEMA_VERSION == 10  # through 8 (and 9: no suffix, no day keeps prefixes)
    summed, hours_from = store.pair_marks()
    assert summed == day + 13 * HOUR and hours_from == day + DAY
    _assert_exact(store, [(day + 2 * HOUR, day + 11 * HOUR), (day - 10 * HOUR, day + 10 * HOUR)])
    sum_all_pairs(store)  # on through the next day: it keeps its hour prefixes
    assert set(_hour_prefix_days(store)) == {day + DAY}
    _assert_exact(store, [(day + 2 * HOUR, day + 11 * HOUR), (day + DAY + 2 * HOUR, day + DAY + 11 * HOUR)])
    store.close()
