"""aicost_rollup_pair (schema 6) on real SQLite and PostgreSQL: reports by two keys where one is user, customer or a
tag (team x customer, user x model, customer x tag:env) read each day the cheaper way (its pair cells, less or plus
raw rows, or its raw rows), and agree to the last digit with sums of the raw rows in Python: before any summing,
half-way through a day, after all of it, grouped by day or not, with filters. Late rows (written after the summing
passed their time) reach their day's cells and every longer block holding them, once; a summing racing a late batch
(two connections, two PostgreSQL sessions) loses nothing; the migration from schema 5 sums nothing and the summing
catches up; the background writer sums behind its batches."""

from __future__ import annotations

import itertools
import random
import threading
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from time import monotonic

import pytest

from aicost.ledger import FeatureRun, LedgerRow, open_store, spend
from aicost.ledger import pairs as pairs_module
from aicost.ledger import store as store_module
from aicost.ledger import writer as writer_module
from aicost.ledger.pairs import PAIRS, WINDOW, spans
from aicost.ledger.query import _pair_days, plan
from aicost.ledger.report import build_report
from aicost.ledger.schema import PAIR_TABLE, PAIR_UNITS, SCHEMA_VERSION
from aicost.ledger.synthetic import Profile, fill, fill_copies, generate

from ledger_helpers import (DROP_PAIRS, DROP_UNKNOWN_REASON, Reads, assert_cell_sets_nest, fresh_pg_database,
                            python_sums, run_sql, sample_periods, spend_sums, sum_all_pairs, waiting_for_the_write_lock)

# One report key per pair dimension ('tag' twice: all tags as name=value, and one tag's values)
KEY_OF = {"team": ["team"], "feature": ["feature"], "model": ["model"], "provider": ["provider"], "user": ["user"],
          "customer": ["customer"], "tag": ["tag", "tag:env"]}
PAIR_KEYS = [(a, b) for x, y in PAIRS for a in KEY_OF[x] for b in KEY_OF[y]]
UTC = timezone.utc


def _pair_cells(store, where="true"):
    return store._fetch(f"SELECT COUNT(*) FROM {PAIR_TABLE} WHERE {where}", [])[0][0]


def test_spans_add_up_to_each_day_of_a_period_once_from_a_few_window_prefixes():
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    rng = random.Random(3)
    for _ in range(500):
        first = epoch + timedelta(days=rng.randrange(20_000, 20_500))
        last = first + timedelta(days=rng.randrange(0, 120))
        found = spans(first, last)
        count: dict = {}
        for days, start, sign in found:
            number = (start - epoch) // timedelta(days=1)
            assert days == 1 or number % WINDOW == 0  # a day's cells, or a window's prefix
            assert number // WINDOW == (number + days - 1) // WINDOW  # within one window
            for k in range(days):
                count[start + timedelta(days=k)] = count.get(start + timedelta(days=k), 0) + sign
        assert {day: n for day, n in count.items() if n} == {first + timedelta(days=k): 1
                                                               for k in range((last - first).days)}
        if (last - first).days <= WINDOW:
            assert len(found) <= 4  # two prefixes and, at most, two days alone


def test_the_planner_reads_the_pair_cells_for_two_keys_with_user_customer_or_a_tag():
    for a, b in PAIR_KEYS:
        for time in ((), ("day",)):
            assert plan((*time, a, b)) == "pairs", (a, b)
        assert plan((a,), {b: "x"}) == plan((b,), {a: "x"}) == "pairs"
        assert plan(("hour", a, b)) == "rows"  # pair cells hold days
    assert plan(("team", "customer", "user")) == "rows"
    assert plan(("tag:env", "tag:region")) == "rows"
    assert plan(("team", "model")) == "cube" and plan(("customer",)) == "rollup"


def test_a_pair_report_reads_each_instant_once_and_at_most_half_of_each_edge_day_raw():
    """_pair_days over random periods and summing points: every instant of the period is counted once (cells that
    hold it plus raw rows added less raw rows subtracted), none outside it; the cells are read only where they
    hold what they are read for; each day (the day being summed too) is read the cheaper way, in hours of raw
    rows; and a day the cells hold whole costs at most half a day of raw rows."""
    day, hour = timedelta(days=1), timedelta(hours=1)
    base = datetime(2026, 11, 2, tzinfo=UTC)
    rng = random.Random(11)

    def midnight(t):
        return t.replace(hour=0, minute=0, second=0, microsecond=0)

    for _ in range(3000):
        start = base + rng.randrange(0, 6 * 24 * 4) * hour / 4
        end = start + rng.randrange(1, 5 * 24 * 4) * hour / 4
        summed = base + rng.randrange(0, 10 * 24) * hour
        summed_day = midnight(summed)
        runs, hours, edges = _pair_days(start, end, summed)
        assert not hours
        points = sorted({start, end, summed, *(t for r in runs for t in r), *(t for e in edges for t in e[:2]),
                         *(midnight(start) + k * day for k in range(12))})
        for t in points:  # the count is constant between these points: one instant per piece suffices
            t = t + timedelta(minutes=1)
            cell_day = midnight(t)
            held = cell_day + day if cell_day < summed_day else summed if cell_day == summed_day else cell_day
            in_cells = sum(1 for first, last in runs if first <= t < last) if t < held else 0  # cells hold t
            count = in_cells + sum(sign for low, high, sign in edges if low <= t < high)
            assert count == (1 if start <= t < end else 0), (start, end, summed, t, runs, edges)
        for first, last in runs:  # no day's cells read that hold nothing yet
            assert first < last and first <= summed_day and (first < summed_day or summed > summed_day)
            assert last <= summed_day + day
        for k in range(12):  # each day read the cheaper way: its raw rows, or its cells less (or plus) raw rows
            first = midnight(start) + k * day
            low, high = max(start, first), min(end, first + day)
            if low >= high:
                continue
            held = first + day if first < summed_day else summed if first == summed_day else first
            cheaper = min(high - low, (low - first) + abs(held - high) if held > low else high - low)
            raw = sum((min(first + day, b) - max(first, a) for a, b, _ in edges if a < first + day and b > first),
                      timedelta())
            assert raw == cheaper, (start, end, summed, first, edges)
            if first < summed_day:  # a day summed whole: at most half of it read raw
                assert raw <= day / 2
        if start == midnight(start) and end == midnight(end) and end <= summed_day:
            assert not edges


def _spans(first):
    """Periods over a 3-day ledger starting at ``first``: whole days, whole hours, minutes at both edges, one day,
    and most of one day (its cells less the rows of its first and last hours, once it is summed)."""
    midnight = first.replace(hour=0, minute=0, second=0, microsecond=0)
    return [(midnight, midnight + timedelta(days=3)), (midnight + timedelta(hours=5, minutes=17),
                                                        midnight + timedelta(days=2, hours=20, minutes=3)),
            (midnight + timedelta(days=1), midnight + timedelta(days=2)), (first, first + timedelta(days=5)),
            (midnight + timedelta(days=1, hours=1, minutes=50), midnight + timedelta(days=1, hours=22, minutes=40))]


def _assert_every_pair_exact(store, periods, keys_list=PAIR_KEYS, times=((), ("day",))):
    for (a, b), time in itertools.product(keys_list, times):
        keys = (*time, a, b)
        for start, end in periods:
            assert spend_sums(store, start, end, keys) == python_sums(store, start, end, keys), (keys, start, end)


def test_every_pair_equals_the_raw_rows_before_during_and_after_the_summing(ledger_url, monkeypatch):
    store = open_store(ledger_url)
    fill(store, Profile(days=3, teams=4, customers=9, calls=900, seed=12), batch=300)
    first, last = store.time_range()
    periods = _spans(first)
    assert store.pairs_summed_before() == datetime(1970, 1, 1, tzinfo=UTC)  # nothing summed: all raw
    _assert_every_pair_exact(store, periods[:2], keys_list=PAIR_KEYS[::3])
    # Half-way through the second day: its cells hold [midnight, summed); every block before is built.
    midway = first.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1, hours=13)
    sum_all_pairs(store, until=midway)
    assert store.pairs_summed_before() == midway
    # and periods ending in the day being summed: 3 h before where it got (its cells less those hours' rows),
    # and 11 h before (that day's rows read raw)
    _assert_every_pair_exact(store, [*periods, (periods[1][0], midway - timedelta(hours=3)),
                                     (periods[1][0], midway - timedelta(hours=11))])
    reads = Reads(store, monkeypatch)
    day1 = midway.replace(hour=0) - timedelta(days=1)
    spend(store, day1, day1 + timedelta(days=1), ["team", "customer"])
    assert "aicost_rollup_pair" in " ".join(reads.sql)
    assert "aicost_ledger" not in " ".join(reads.sql)  # a whole day summed: no raw row read
    # Then in small chunks up to the last row's hour (the default), as the writer does.
    sum_all_pairs(store, max_rows=97)
    assert store.pairs_summed_before() == last.replace(minute=0, second=0, microsecond=0)
    _assert_every_pair_exact(store, periods)
    _assert_units_are_the_text(store)
    # Most of a summed day (one of the last three: it keeps hour prefixes): its prefix to 23:00 less its prefix
    # to 02:00, and the raw rows of the minutes between those and the period's edges, not the 21 hours of raw
    # rows the period covers
    low, high = periods[-1]
    reads.sql.clear()
    reads.params.clear()
    spend(store, low, high, ["team", "customer"])
    midnight = low.replace(hour=0, minute=0, second=0, microsecond=0)
    assert "aicost_rollup_pair" in " ".join(reads.sql)
    assert store._ts(midnight + timedelta(hours=2)) in reads.params
    assert store._ts(midnight + timedelta(hours=23)) in reads.params
    assert store._ts(midnight + timedelta(days=1)) not in reads.params  # not the day's cells
    store.close()


def test_a_token_class_whose_parts_cancel_in_the_total_is_still_read(ledger_url):
    """The zero-column check reads each part (cells, raw rows) for its flags: a class whose total is 0 because the
    groups cancel (+5 and -5 in the day's cells) is read when any part holds it, even if another part (the raw
    rows after summed_before) holds none."""
    day = datetime(2026, 11, 3, tzinfo=UTC)
    rows = [LedgerRow(span_id=f"{i:016x}", kind="call", time=day + timedelta(hours=h, minutes=7), provider="openai",
                      request_model="gpt-4o", input_tokens=t, cost=Decimal("0.5"), team="t", user=u)
            for i, (h, u, t) in enumerate([(1, "a", 5), (2, "b", -5), (20, "a", 0)])]
    with open_store(ledger_url) as store:
        store.write(rows)
        store.compact_pairs(until=day + timedelta(hours=12))
        report = build_report(store, day, day + timedelta(days=1), group_by=("team", "user"))  # checks the zeros
    assert report.totals.tokens["input_tokens"] == 0
    assert {g.key["user"]: g.tokens["input_tokens"] for g in report.groups} == {"a": 5, "b": -5}


def test_filters_with_pairs_equal_the_raw_rows(ledger_url):
    store = open_store(ledger_url)
    fill(store, Profile(days=2, teams=4, customers=8, calls=700, seed=5), batch=250)
    first, _ = store.time_range()
    sum_all_pairs(store, max_rows=200)
    rows = list(store.rows(first, first + timedelta(days=3)))
    customer = next(r.customer for r in rows if r.customer)
    team = next(r.team for r in rows if r.team and r.customer == customer)
    user = next(r.user for r in rows if r.user)
    cases = [(("team",), {"customer": customer}), (("customer", "day"), {"team": team}),
             (("model",), {"user": user}), (("tag:env",), {"customer": customer}), (("customer",), {"tag:env": "prod"}),
             ((), {"team": team, "customer": customer}), (("day",), {"user": user, "feature": rows[0].feature})]
    rng = random.Random(2)
    for keys, where in cases:
        for start, end in sample_periods(first, 2, rng):
            assert spend_sums(store, start, end, keys, where) == python_sums(store, start, end, keys, where), (
                keys, where, start, end)
    store.close()


def _by_day(url, days=3):
    items = list(generate(Profile(days=days, teams=4, customers=6, calls=300 * days, seed=21)))
    first = items[0].time.replace(hour=0, minute=0, second=0, microsecond=0)
    out = []
    for k in range(days):
        low, high = first + timedelta(days=k), first + timedelta(days=k + 1)
        out.append(([i for i in items if isinstance(i, LedgerRow) and low <= i.time < high],
                    [i for i in items if isinstance(i, FeatureRun) and low <= i.time < high]))
    return out, first


def test_late_rows_reach_their_day_cells_and_the_prefixes_built_once(ledger_url):
    """Rows written after the summing passed their time are added by their own batch: to their day's cells and to
    every window prefix already built that holds the day; written again (a replay), nothing changes."""
    days, first = _by_day(ledger_url, days=4)
    late_rows = days[0][0][::4] + days[1][0][::3]
    late_runs = days[0][1][::4]
    store = open_store(ledger_url)
    store.write([r for rows, _ in days for r in rows if r not in late_rows],
                [r for _, runs in days for r in runs if r not in late_runs])
    sum_all_pairs(store)
    assert store.pairs_summed_before() > first + timedelta(days=3)
    end = first + timedelta(days=3)  # three whole days summed: a prefix less another (a window starts before)
    assert [sign for *_, sign in spans(first, end)] == [1, -1]
    built = store._fetch(f"SELECT COUNT(*) FROM {PAIR_TABLE} WHERE days > 1", [])[0][0]
    assert built > 0
    assert store.write(late_rows, late_runs) == len(late_rows)
    assert store.write(late_rows, late_runs) == 0  # a replay: stored already, not added again
    _assert_units_are_the_text(store)
    later = first + timedelta(days=1)  # a prefix less one that holds cells (the first day's)
    assert [sign for *_, sign in spans(later, later + timedelta(days=3))] == [1, -1]
    _assert_every_pair_exact(store, [(first, end), (first, first + timedelta(days=4)),
                                     (first + timedelta(hours=3), end), (later, later + timedelta(days=3))],
                             keys_list=PAIR_KEYS[::2])
    store.close()


def test_a_prefix_less_another_is_the_difference_of_their_cells(ledger_url, monkeypatch):
    """A period that reads one prefix less an earlier one joins each cell of the first to its cell of the second,
    and looks the cells of each pair of the rest (the raw rows at its edges: a pair new in them too) up: the same
    groups, to the last digit, as summing every part together, filtered or not, with the rest or without, and
    where a cell holds no units or the rest sums past $1 million (SQLite: then summed as usual). The earlier
    prefix holds no pair the later one lacks (``assert_cell_sets_nest``): the join reads its cells only as
    looked up."""
    store = open_store(ledger_url)
    fill(store, Profile(days=5, teams=3, customers=6, calls=1000, seed=4), batch=400)
    first, _ = store.time_range()
    day = first.replace(hour=0, minute=0, second=0, microsecond=0)
    store.write([LedgerRow(span_id=f"ee{k:014x}", kind="call", time=day + timedelta(days=4, hours=h), provider="openai",
                           request_model="gpt-4o", cost=Decimal(cost), team="t-new", user=f"u-new{k}",
                           customer="c-new", feature="f-new")
                 for k, (h, cost) in enumerate([(1, "900000"), (3, "0.25"), (3.5, "0.5")])]  # summed to 02:00
                # two pairs whose values run together alike ('tAB' 'c', 'tA' 'Bc'): one in the cells, one in the rest
                + [LedgerRow(span_id=f"ed{h:014x}", kind="call", time=day + timedelta(hours=h), provider="openai",
                             request_model="gpt-4o", cost=Decimal("0.125"), team=team, customer=customer)
                   for h, team, customer in ((50, "tAB", "c"), (101, "tA", "Bc"))])
    sum_all_pairs(store, until=day + timedelta(days=4, hours=2))
    start, end = day + timedelta(days=1), day + timedelta(days=4)
    (plus, _, _), _ = spans(start, end)
    rows = list(store.rows(start, end))
    team = next(r.team for r in rows if r.team)
    periods = [(start, end), (start + timedelta(hours=5), end + timedelta(hours=7))]  # the second: raw rows too

    def both_ways(expensive):
        for (low, high), rest in zip(periods, ("", "pr AS MATERIALIZED")):
            reads = Reads(store, monkeypatch)
            spend(store, low, high, ["team", "customer"])
            joined_sql = f"LEFT JOIN {PAIR_TABLE} t1" in reads.sql[-1] and rest in reads.sql[-1]
            assert joined_sql or expensive  # the two prefixes joined (unless an amount forbids it)
            monkeypatch.undo()
        cases = [(("team", "customer"), None), (("customer", "team"), None), (("user", "tag:env"), None),
                 (("customer",), {"team": team}), (("tag",), {"feature": rows[0].feature}),
                 (("user",), {"team": "t-new"})]
        for (low, high), (keys, where) in itertools.product(periods, cases):
            joined = spend(store, low, high, keys, where)
            with monkeypatch.context() as m:
                m.setattr(store_module, "_join_order", lambda *args: None)
                assert joined == spend(store, low, high, keys, where), (keys, where, low, high)

    both_ways(expensive=False)
    for low, high in periods:
        assert spend_sums(store, low, high, ("team", "customer")) == python_sums(store, low, high,
                                                                                ("team", "customer"))
    store.write([LedgerRow(span_id="ee" + "f" * 14, kind="call", time=day + timedelta(days=4, hours=4),
                           provider="openai", request_model="gpt-4o", cost=Decimal("8500000"), team="t-new",
                           user="u-new0", customer="c-new")])  # the rest past $1 million: with the cell's, past 2**63
    assert assert_cell_sets_nest(store)
    if store.dialect == "sqlite":
        run_sql(ledger_url, [f"UPDATE {PAIR_TABLE} SET cost_units = NULL WHERE days = {plus} AND dim_a = 'user'"])
    both_ways(expensive=store.dialect == "sqlite")
    # what the invariant check catches: a pair of the earlier prefix taken out of the later one
    run_sql(ledger_url, [f"DELETE FROM {PAIR_TABLE} WHERE days = {plus} AND dim_a = 'team' AND dim_b = 'customer' "
                         f"AND value_a = 'tAB' AND value_b = 'c'"])
    with pytest.raises(AssertionError):
        assert_cell_sets_nest(store)
    store.close()


def _assert_units_are_the_text(store, *, all_known=True):
    """SQLite's pair cells: each amount's units, where known, are its text's exactly; and (``all_known``: no amount
    of the rows is negative, past $1 million or past 12 decimals) known wherever the text allows them."""
    if store.dialect != "sqlite":
        return
    units = list(PAIR_UNITS.values())
    cells = store._fetch(f"SELECT {', '.join(PAIR_UNITS)}, {', '.join(units)} FROM {PAIR_TABLE}", [])
    assert cells
    for cell in cells:
        for text, known in zip(cell[:3], cell[3:]):
            amount = Decimal(text)
            fits = 0 <= amount < 10 ** 6 and amount == amount.quantize(Decimal("1E-12"))
            assert known is None or (fits and known == amount.scaleb(12)), cell
            assert known is not None or not fits or not all_known, cell


def test_odd_amounts_leave_their_cells_units_unknown_and_every_pair_exact(ledger_url):
    """SQLite: an amount the integer units cannot hold exactly (negative, past $1 million, 13 decimals), summed
    by a chunk or added by a late batch, leaves its cells' units NULL (that cell's text is converted, or the
    report sums the text) and every other cell's known, and every pair report is exact."""
    day = datetime(2026, 11, 3, tzinfo=UTC)
    odd = [Decimal("-0.5"), Decimal("1234567.25"), Decimal("0.0000000000001"), Decimal("0.25")]
    rows = [LedgerRow(span_id=f"{i:016x}", kind="call", time=day + timedelta(hours=h, minutes=i), provider="openai",
                      request_model="gpt-4o", input_tokens=i, cost=odd[i % 4] if i % 5 == 0 else Decimal("0.001"),
                      team=f"t{i % 2}", user=f"u{i % 7}", customer=f"c{i % 3}")
            for i, h in enumerate(hour for hour in range(0, 72, 2) for _ in range(3))]
    # a cell of $2 that a late refund of $0.5 leaves at $1.5: its text allows units, its units stay unknown
    rows += [LedgerRow(span_id=f"ff{h:014x}", kind="call", time=day + timedelta(hours=h), provider="openai",
                       request_model="gpt-4o", cost=cost, team="t9", user="u9", customer="c9")
             for h, cost in ((1, Decimal(2)), (6, Decimal("-0.5")))]
    store = open_store(ledger_url)
    store.write([r for r in rows if r.time.hour % 6])
    sum_all_pairs(store)
    store.write([r for r in rows if not r.time.hour % 6])  # late
    _assert_units_are_the_text(store, all_known=False)
    if store.dialect == "sqlite":
        units = [tuple(c) for c in store._fetch(f"SELECT cost, cost_units FROM {PAIR_TABLE}", [])]
        assert ("1.5", None) in units and any(u is None for _, u in units) and any(u is not None for _, u in units)
    periods = [(day, day + timedelta(days=3)), (day + timedelta(hours=5), day + timedelta(days=2, hours=7))]
    _assert_every_pair_exact(store, periods, keys_list=[("team", "user"), ("customer", "user"), ("team", "customer")])
    for start, end in periods:  # the $1.5 cell, no odd amount beside it: its text converted (no fallback)
        for keys in (("user",), ("customer",)):
            assert spend_sums(store, start, end, keys, {"team": "t9"}) == python_sums(store, start, end, keys,
                                                                                     {"team": "t9"})
    store.close()


def test_the_migration_to_schema_7_drops_sqlite_s_pair_cells_to_sum_them_again_with_units(ledger_url):
    """Version 7: SQLite's pair cells are made again, with integer units (the migration drops them; the summing
    makes them anew, as after version 6, and reports read raw rows, exact, until then); PostgreSQL's are kept.
    On both, the one-row table of how far they are summed is renamed, so that version 6 code still running fails
    on its old name rather than adding to a cell's text and not to its units. A report sums the units a cell
    holds, not its text."""
    store = open_store(ledger_url)
    fill(store, Profile(days=2, teams=3, customers=6, calls=500, seed=17), batch=250)
    first, last = store.time_range()
    sum_all_pairs(store)
    summed, cells = store.pairs_summed_before(), _pair_cells(store, "days > 0")  # version 6 kept no hour prefix
    store.close()
    old_mark = "aicost_rollup_pair_summed"
    as_version_6 = [f"ALTER TABLE aicost_rollup_pair_mark RENAME TO {old_mark}",
                    f"ALTER TABLE {old_mark} DROP COLUMN hours_from", f"DELETE FROM {PAIR_TABLE} WHERE days <= 0",
                    DROP_UNKNOWN_REASON, "DELETE FROM aicost_schema WHERE version >= 7"]
    if "sqlite" in ledger_url:
        as_version_6 += [f"ALTER TABLE {PAIR_TABLE} DROP COLUMN {u}" for u in PAIR_UNITS.values()]
    run_sql(ledger_url, as_version_6)
    store = open_store(ledger_url)
    assert store.schema_version() == SCHEMA_VERSION == 10
    with pytest.raises(Exception, match=old_mark):  # what version 6 reads first
        store._fetch(f"SELECT summed_before FROM {old_mark}", [])
    periods = [(first, last + timedelta(seconds=1)), (first + timedelta(hours=5), first + timedelta(hours=40))]
    if store.dialect == "sqlite":
        assert store.pairs_summed_before() == datetime(1970, 1, 1, tzinfo=UTC) and _pair_cells(store) == 0
        _assert_every_pair_exact(store, periods, keys_list=PAIR_KEYS[::5])  # raw rows
        sum_all_pairs(store)
    assert store.pairs_summed_before() == summed and _pair_cells(store, "days > 0") == cells
    _assert_units_are_the_text(store)
    _assert_every_pair_exact(store, periods, keys_list=PAIR_KEYS[::3])
    if store.dialect == "sqlite":  # a report sums the units a cell holds, not its text: changed by hand, they show
        day = first.replace(hour=0, minute=0, second=0, microsecond=0)

        def costs():  # two days' cells, summed (one day's would be read as they are)
            groups = spend(store, day, day + timedelta(days=2), ["team", "customer"])
            return {(g.key["team"], g.key["customer"]): g.cost for g in groups}

        before = costs()
        first_day = "days = 1 AND bucket = ? AND dim_a = 'team' AND dim_b = 'customer'"
        changed = {tuple(v) for v in store._fetch(f"SELECT value_a, value_b FROM {PAIR_TABLE} WHERE {first_day}",
                                                  [store._ts(day)])}
        store._conn.execute(f"UPDATE {PAIR_TABLE} SET cost_units = cost_units + 1000000000000 WHERE {first_day}",
                            [store._ts(day)])
        assert changed and {key: cost - before[key] for key, cost in costs().items()} == {
            key: int(key in changed) for key in before}
    store.close()


def test_the_migration_from_schema_5_sums_nothing_and_the_summing_catches_up_in_chunks(ledger_url):
    """The migration only creates the tables (summing a large ledger in its one transaction would hold the write
    lock for minutes): reports read raw rows, exact, until the summing has caught up, chunk by chunk."""
    store = open_store(ledger_url)
    fill(store, Profile(days=2, teams=4, customers=8, calls=700, seed=6), batch=300)
    first, last = store.time_range()
    store.close()
    run_sql(ledger_url, [*DROP_PAIRS, DROP_UNKNOWN_REASON,
                         "DELETE FROM aicost_schema WHERE version >= 6"])  # what 5 wrote
    store = open_store(ledger_url)
    assert store.schema_version() == SCHEMA_VERSION == 10
    assert store.pairs_summed_before() == datetime(1970, 1, 1, tzinfo=UTC) and _pair_cells(store) == 0
    periods = [(first, last + timedelta(seconds=1))]
    _assert_every_pair_exact(store, periods, keys_list=PAIR_KEYS[::4])
    chunks = 0
    while store.compact_pairs(max_rows=150):
        chunks += 1
    assert chunks > 2 and store.pairs_summed_before() == last.replace(minute=0, second=0, microsecond=0)
    _assert_every_pair_exact(store, periods, keys_list=PAIR_KEYS[::2])
    store.close()


def test_a_report_reads_summed_before_and_the_cells_in_one_snapshot(ledger_url, monkeypatch):
    """A summing that commits between a report's read of summed_before and its sums would have the report read
    rows twice (in the cells it moved, and raw from the old mark): both come from one snapshot."""
    store = open_store(ledger_url)
    fill(store, Profile(days=2, teams=3, customers=6, calls=500, seed=13), batch=250)
    first, last = store.time_range()
    sum_all_pairs(store, until=first + timedelta(hours=20))
    summer = open_store(ledger_url)
    read_mark = store.pair_marks

    def mark_then_a_summing_commits():
        mark = read_mark()
        assert summer.compact_pairs(until=first + timedelta(hours=30))
        return mark

    monkeypatch.setattr(store, "pair_marks", mark_then_a_summing_commits)
    start, end = first.replace(hour=0, minute=0, second=0, microsecond=0), last + timedelta(seconds=1)
    assert spend_sums(store, start, end, ("team", "customer")) == python_sums(store, start, end, ("team", "customer"))
    summer.close()
    store.close()


def test_late_rows_on_a_postgresql_session_in_a_daylight_saving_time_zone(pg_server):
    """A prefix's end is counted in days of 86,400 s, not the session's calendar days (23 or 25 hours across a
    daylight-saving change): late rows around the US change of 2026-11-01 reach the right prefixes."""
    ledger_url = fresh_pg_database(pg_server)
    run_sql(ledger_url, [f"ALTER DATABASE {ledger_url.rsplit('/', 1)[1]} SET timezone = 'America/New_York'"])
    days, first = _by_day(ledger_url, days=4)
    late_rows = days[1][0][::3] + days[2][0][::4]
    store = open_store(ledger_url)
    store.write([r for rows, _ in days for r in rows if r not in late_rows], [r for _, runs in days for r in runs])
    sum_all_pairs(store)
    assert store.write(late_rows) == len(late_rows)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    window = epoch + timedelta(days=(first - epoch).days // WINDOW * WINDOW)  # the window's first day
    _assert_every_pair_exact(store, [(window, first + timedelta(days=4)), (first, first + timedelta(days=3)),
                                     (first + timedelta(days=1), first + timedelta(days=3))],
                             keys_list=[("team", "customer"), ("user", "tag:env")])
    store.close()


def test_the_summing_never_passes_the_latest_row_nor_two_minutes_ago(ledger_url):
    now = datetime.now(UTC)
    store = open_store(ledger_url)
    rows = [LedgerRow(span_id=f"r{k}", kind="call", time=t, provider="openai", response_model="gpt-4o-mini",
                      team="t", customer="c", cost=None, input_tokens=5, output_tokens=1)
            for k, t in enumerate((now - timedelta(days=2), now - timedelta(hours=5, minutes=30), now + timedelta(days=3)))]
    store.write(rows)
    sum_all_pairs(store)
    hour_ago = (now - store_module.PAIR_LAG).replace(minute=0, second=0, microsecond=0)
    assert store.pairs_summed_before() == hour_ago  # not past two minutes ago, whatever a row's date says
    store.close()


def test_synthetic_copies_sum_their_pairs(ledger_url):
    store = open_store(ledger_url)
    fill_copies(store, Profile(days=1, teams=3, customers=5, calls=300, seed=9), days=3)
    first, last = store.time_range()
    assert store.pairs_summed_before() == last.replace(minute=0, second=0, microsecond=0)
    _assert_every_pair_exact(store, [(first, last + timedelta(seconds=1))], keys_list=PAIR_KEYS[::3])
    store.close()


def test_a_new_user_and_customer_on_every_row_costs_368_pair_cells_per_row_after_64_days(tmp_path):
    """What docs/ledger.md ("What the prefixes cost") says the window prefixes cost where every row brings a new
    user and customer (a consumer app's per-person ids): such a row is in the 11 pairs with user or customer, each
    in its day's cells and in the prefix of every day of its window from its own on (the first day's prefix is
    its cells), so after the window's 64 days about 11 x (1 + 65 / 2) = 368 of those cells per row; and, on the
    days keeping hour prefixes, one cell per pair in each hour prefix and hour suffix holding it (up to 23). Real
    SQLite, 20 rows a day: fails if a row costs more cells than that."""
    per_day, days = 20, WINDOW
    first = datetime(2026, 1, 1, tzinfo=UTC)
    first += timedelta(days=-pairs_module.day_number(first) % WINDOW)  # a window's first day
    rows = [LedgerRow(span_id=f"{d:03d}{k:03d}", kind="call",
                      time=first + timedelta(days=d, seconds=k * 86_400 // per_day),
                      provider="openai", response_model="gpt-4o-mini", team=f"t{k % 5}", feature=f"f{k % 3}",
                      user=f"u{d}-{k}", customer=f"c{d}-{k}", tags={"env": "prod"}, cost=Decimal("0.001"),
                      input_tokens=5, output_tokens=1)
            for d in range(days) for k in range(per_day)]
    store = open_store(f"sqlite:///{tmp_path / 'ledger.db'}")
    store.write(rows)
    end = first + timedelta(days=days)
    sum_all_pairs(store, until=end)  # as the writer does just after the window's last day
    new_pairs = [p for p in PAIRS if {"user", "customer"} & set(p)]
    assert len(new_pairs) == 11
    of_new = "(dim_a IN ('user', 'customer') OR dim_b IN ('user', 'customer'))"
    by_day = _pair_cells(store, f"days >= 1 AND {of_new}")
    # a row of day d: its day's cells, and the prefixes of n days for n = d + 1 .. 64 (n = 1 is the day's cells)
    assert by_day == len(new_pairs) * sum(1 + days - max(d, 1) for d in range(days) for _ in range(per_day))
    assert round(by_day / len(rows), 1) == 368.3
    # hour prefixes (rows before each hour 01:00-23:00) on the days kept by hour, the last ones before ``end``;
    # hour suffixes (rows from each hour) on those of them closed since: at most 23 sets hold a row
    kept = [first + timedelta(days=d) for d in range(days)
            if first + timedelta(days=d) >= end - (pairs_module.HOUR_DAYS - 1) * timedelta(days=1)]
    assert len(kept) == 2  # the days to the summing's end: the window's last two (end's day has no row)
    hours = [r.time.hour for r in rows if r.time >= kept[0]]
    closed = [r.time.hour for r in rows if kept[0] <= r.time < kept[-1]]
    by_hour = _pair_cells(store, f"days <= 0 AND {of_new}")
    assert by_hour == len(new_pairs) * (sum(23 - h for h in hours) + sum(h for h in closed))
    assert _pair_cells(store) / len(rows) < 376  # all pairs, all sets: 375.8 (2026-12-07)
    store.close()


def test_the_background_writer_sums_behind_its_batches(ledger_url, spill_dir, monkeypatch):
    monkeypatch.setattr(writer_module, "PAIR_INTERVAL_S", 0.0)
    items = list(generate(Profile(days=2, teams=3, customers=5, calls=500, seed=8)))
    writer = writer_module.LedgerWriter(ledger_url, flush_interval_s=0.05)
    try:
        writer.add(items)
        assert writer.flush(timeout_s=60)
        store = open_store(ledger_url)
        _, last = store.time_range()
        target = last.replace(minute=0, second=0, microsecond=0)
        for _ in range(400):  # the writer thread sums on its next wakes
            if store.pairs_summed_before() == target:
                break
            threading.Event().wait(0.05)
        assert store.pairs_summed_before() == target
        assert writer.stats()["pair_chunks"] >= 1 and writer.stats().get("pair_errors", 0) == 0
        first, _ = store.time_range()
        _assert_every_pair_exact(store, [(first, last + timedelta(seconds=1))], keys_list=[("team", "customer"),
                                                                                           ("user", "tag:env")])
        store.close()
    finally:
        writer.close()


@pytest.mark.parametrize("first", ["late rows", "summing"])
def test_a_summing_racing_a_late_batch_loses_nothing(ledger_url, first):
    """Two connections (two PostgreSQL sessions, as two hosts): one sums day 2's rows into the pair cells, the other
    writes late rows of day 1 and 2. Whichever holds its transaction open first (paused inside it), the other
    waits for the ledger's write lock, then reads ``summed_before`` as the first left it: each late row is summed
    once, by the summing or by its batch."""
    (day1, day2, day3), day = _by_day(ledger_url)
    late_rows, late_runs = day1[0][::5] + day2[0][::5], day1[1][::5]
    setup = open_store(ledger_url)
    setup.write([r for r in day1[0] + day2[0] + day3[0] if r not in late_rows],
                [r for r in day1[1] + day2[1] + day3[1] if r not in late_runs])
    sum_all_pairs(setup, until=day + timedelta(days=1, hours=2))
    late_writer, summer = open_store(ledger_url), open_store(ledger_url)
    inside, release = threading.Event(), threading.Event()
    compact, add_late = pairs_module.compact, late_writer._add_late_pairs

    def pausing_compact(*args, **kwargs):
        moved = compact(*args, **kwargs)
        if threading.current_thread().name == "holder":
            inside.set()
            assert release.wait(30)
        return moved

    def pausing_late(*args):
        add_late(*args)
        if threading.current_thread().name == "holder":
            inside.set()
            assert release.wait(30)

    late_writer._add_late_pairs = pausing_late
    errors = []
    jobs = {"late rows": lambda: late_writer.write(late_rows, late_runs),
            "summing": lambda: sum_all_pairs(summer, until=day + timedelta(days=2, hours=5))}

    def run(job):
        try:
            jobs[job]()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    import unittest.mock

    with unittest.mock.patch.object(pairs_module, "compact", pausing_compact):
        held = threading.Thread(target=run, args=(first,), name="holder")
        held.start()
        assert inside.wait(30)
        other = "summing" if first == "late rows" else "late rows"
        waiting = threading.Thread(target=run, args=(other,), name="waiter")
        waiting.start()
        waiting_for_the_write_lock(ledger_url, setup, summer if other == "summing" else late_writer)
        assert waiting.is_alive()
        release.set()
        held.join(30)
        waiting.join(30)
    assert not errors and not held.is_alive() and not waiting.is_alive()
    assert setup.pairs_summed_before() == day + timedelta(days=2, hours=5)
    _assert_every_pair_exact(setup, [(day, day + timedelta(days=3)), (day, day + timedelta(days=2)),
                                     (day + timedelta(days=1), day + timedelta(days=2, hours=5))],
                             keys_list=[("team", "customer"), ("user", "model"), ("customer", "tag:env")])
    for store in (setup, late_writer, summer):
        store.close()


def test_aicost_sum_pairs_sums_what_is_left_and_says_when_nothing_is(ledger_url):
    import io

    from aicost.cli import main

    store = open_store(ledger_url)
    fill(store, Profile(days=2, teams=3, customers=5, calls=400, seed=3), batch=200)
    _, last = store.time_range()
    out, err = io.StringIO(), io.StringIO()
    assert main(["sum-pairs", "--ledger", ledger_url], out=out, err=err) == 0
    assert store.pairs_summed_before() == last.replace(minute=0, second=0, microsecond=0)
    assert out.getvalue().startswith("pair cells summed up to ") and "summed up to" in err.getvalue()
    out = io.StringIO()
    assert main(["sum-pairs", "--ledger", ledger_url], out=out, err=io.StringIO()) == 0
    assert out.getvalue().startswith("nothing to sum")
    store.close()


def test_a_batch_is_refused_once_a_newer_aicost_migrated_the_ledger(ledger_url):
    """An open store whose ledger a newer aicost migrated (schema version above this one's) writes nothing more:
    its batch raises LedgerSchemaError and is rolled back (the background writer spills it, for the newer
    version to replay), rather than being written without what the newer schema maintains; nor does it sum rows
    into the pair cells."""
    from aicost.ledger import LedgerSchemaError

    items = list(generate(Profile(days=1, teams=2, customers=3, calls=60, seed=2)))
    rows = [i for i in items if isinstance(i, LedgerRow)]
    store = open_store(ledger_url)
    assert store.write(rows[:20]) == 20
    run_sql(ledger_url, [f"INSERT INTO aicost_schema (version, applied_at, aicost_version) VALUES "
                         f"({SCHEMA_VERSION + 1}, '2026-12-05 00:00:00', '99')"])
    with pytest.raises(LedgerSchemaError, match=f"schema version {SCHEMA_VERSION + 1}"):
        store.write(rows[20:])
    assert store._fetch("SELECT COUNT(*) FROM aicost_ledger", [])[0][0] == 20
    with pytest.raises(LedgerSchemaError, match="ledger pair summing"):  # nor sums into cells it may not know
        store.compact_pairs()
    assert _pair_cells(store) == 0
    store.close()


def test_the_writer_sums_no_chunk_while_a_batch_of_rows_waits(ledger_url, spill_dir, monkeypatch):
    """A chunk holds the writer thread for a second or two: with a batch's worth of rows queued, batches first."""
    writer = writer_module.LedgerWriter(ledger_url, batch_size=10)
    calls = []
    try:
        writer._store = open_store(ledger_url)
        monkeypatch.setattr(writer._store, "compact_pairs", lambda: calls.append(1) or False)
        writer._queue.extend(range(10))
        due = monotonic() - 1  # due a moment ago: it waits for the batches
        assert writer._sum_pairs(due) == due and not calls
        writer._queue.clear()
        assert writer._sum_pairs(due) > monotonic() + writer_module.PAIR_INTERVAL_S - 1 and calls == [1]
        writer._queue.extend(range(10))  # overdue by a whole interval: it sums even so (a busy writer would never)
        assert writer._sum_pairs(monotonic() - writer_module.PAIR_INTERVAL_S - 1) and calls == [1, 1]
    finally:
        writer._queue.clear()
        writer.close()


def _with_and_without_a_team(url):
    day = datetime(2026, 10, 11, tzinfo=UTC)
    store = open_store(url)
    store.write([LedgerRow(span_id=f"{i:016x}", kind="call", time=day + timedelta(hours=i), provider="openai",
                           request_model="m", cost=Decimal("1"), team=None if i % 2 else "t", customer="c", user="u")
                 for i in range(100)])
    return store, day


def test_a_table_of_counts_all_zero_still_has_its_groups(ledger_url):
    """A table whose every measure is a count 0 in every group still lists the groups (and a table without keys
    its one row of totals): one measure is read to find them. It was an SQL syntax error (the review's find)."""
    from aicost.ledger.query import spend_table

    store, day = _with_and_without_a_team(ledger_url)
    for summed in (False, True):
        if summed:
            sum_all_pairs(store)
        for keys, expected in (((), [(0, 0)]), (("team", "customer"), [("t", "c", 0, 0), (None, "c", 0, 0)])):
            table = spend_table(store, day, day + timedelta(days=4), keys, measures=("input_tokens", "runs"),
                                maybe_zero=("input_tokens", "runs"))
            assert sorted(table.rows(), key=str) == expected, (summed, keys)
    store.close()


def test_a_filter_on_no_value_reads_the_same_rows_raw_and_from_cells(ledger_url):
    """``where={"team": ""}``: the rows without a team, whether read raw (NULL) or from the cells ('')."""
    store, day = _with_and_without_a_team(ledger_url)
    start, end = day, day + timedelta(days=2)
    raw = spend_sums(store, start, end, ("customer",), {"team": ""})  # nothing summed yet
    assert raw == python_sums(store, start, end, ("customer",), {"team": ""}) and raw[("c",)]["calls"] == 24
    sum_all_pairs(store)
    assert spend_sums(store, start, end, ("customer",), {"team": ""}) == raw
    store.close()


@pytest.mark.parametrize("joined", [True, False])
def test_a_table_of_counts_zero_in_every_group_reads_no_measure(ledger_url, monkeypatch, joined):
    """A table whose only measures are 0 in every group (a token class no call used) reads the groups alone."""
    from aicost.ledger.query import spend_table

    store, day = _with_and_without_a_team(ledger_url)
    sum_all_pairs(store)
    if not joined:
        monkeypatch.setattr(store_module, "_join_order", lambda *args: None)
    table = spend_table(store, day + timedelta(days=1), day + timedelta(days=4), ("team", "customer"),
                        measures=("input_tokens",), maybe_zero=("input_tokens",))
    assert sorted(table.rows(), key=str) == [("t", "c", 0), (None, "c", 0)]
    store.close()
