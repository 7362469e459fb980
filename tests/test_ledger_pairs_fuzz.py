"""Schema 7 (pair cells' units) and the prefix-difference join under random ledgers: odd amounts, late
batches over many days and across a window's edge, replays, filters; every pair report equals the raw rows summed
in Python, and SQLite's cells' units are their text's exactly."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from aicost.ledger import FeatureRun, LedgerRow, open_store
from aicost.ledger.pairs import spans
from aicost.ledger.schema import PAIR_TABLE, PAIR_UNITS

from ledger_helpers import answers, assert_cell_sets_nest, python_sums, spend_sums, sum_all_pairs

UTC = timezone.utc
# 2026-10-10 is the first day of a 64-day window (day 20736 from 1970-01-01)
WINDOW_START = datetime(2026, 10, 10, tzinfo=UTC)
GOOD = ["0", "0.001", "0.000000000001", "5", "0.1", "123.456789012345"]
ODD = ["999999.999999999999", "-0.5", "1000000", "1234567.25", "0.0000000000001", "-0.000000000001"]


def _rows(rng, first, days, n, odd, prefix):
    rows, runs = [], []
    for i in range(n):
        t = first + timedelta(seconds=rng.randrange(days * 86400))
        kind = rng.choice(["call", "call", "call", "cache_hit", "refusal"])
        amount = Decimal(rng.choice(ODD) if rng.random() < odd else rng.choice(GOOD))
        tags = rng.choice([{}, {"env": "prod"}, {"env": "dev", "region": "eu"}, {"region": "us"}])
        common = dict(span_id=f"{prefix}{i:013x}", kind=kind, time=t, provider=rng.choice(["openai", "anthropic"]),
                      request_model=rng.choice(["m1", "m2"]), team=rng.choice(["t1", "t2", None]),
                      feature=rng.choice(["f1", "f2"]), user=rng.choice(["u1", "u2", "u3", None]),
                      customer=rng.choice(["c1", "c2", ""]), tags=tags, input_tokens=rng.randrange(100))
        if kind == "call":
            rows.append(LedgerRow(**common, cost=None if rng.random() < 0.05 else amount))
        elif kind == "cache_hit":
            rows.append(LedgerRow(**common, saved_cost=amount))
        else:
            rows.append(LedgerRow(**common, stopped_cost=amount))
        if rng.random() < 0.1:
            runs.append(FeatureRun(run_id=f"{prefix}r{i:012x}", feature=common["feature"], time=t,
                                   outcome=rng.choice(["succeeded", "failed"]), team=common["team"],
                                   user=common["user"], customer=common["customer"], tags=tags))
    return rows, runs


def _assert_units_are_the_text(store):
    if store.dialect != "sqlite":
        return
    cells = store._fetch(f"SELECT {', '.join(PAIR_UNITS)}, {', '.join(PAIR_UNITS.values())} FROM {PAIR_TABLE}", [])
    for cell in cells:
        for text, known in zip(cell[:3], cell[3:]):
            amount = Decimal(text)
            assert known is None or (amount >= 0 and known == amount.scaleb(12)), cell


def _joins(monkeypatch):
    """Whether each prefix difference a report read was answered by the join (True) or summed as usual (False)."""
    return answers(monkeypatch, "_sum_joined")


CASES = [(("team", "customer"), None), (("customer", "team"), None), (("user", "tag:env"), None),
         (("tag", "user"), None), (("customer",), {"team": "t1"}), (("team",), {"user": "u2"}),
         (("tag:region",), {"customer": "c1"}), (("feature", "customer"), None), (("user",), {"tag:env": "prod"}),
         (("model", "user"), None), (("user", "customer"), None)]


@pytest.mark.parametrize("seed", range(int(__import__("os").environ.get("REVIEW7_SEEDS", 3))))
def test_odd_amounts_late_batches_and_prefix_differences(ledger_url, monkeypatch, seed):
    rng = random.Random(seed)
    odd = [0, 0.01, 0.2][seed % 3]  # seed 0: every cell has units (the join answers)
    first = WINDOW_START - timedelta(days=5)  # 10-05 .. 10-16, across the window's edge
    days = 12
    store = open_store(ledger_url)
    rows, runs = _rows(rng, first, days, 900, odd, "a")
    on_time = [r for r in rows if r.time.hour % 5]
    store.write(on_time, [r for r in runs if r.time.hour % 5])
    sum_all_pairs(store, max_rows=300)
    late = [r for r in rows if not r.time.hour % 5]
    late_runs = [r for r in runs if not r.time.hour % 5]
    assert store.write(late, late_runs) == len(late)  # one batch, late rows over 12 days in two windows
    assert store.write(late, late_runs) == 0  # a replay
    more, more_runs = _rows(rng, first, days, 200, odd, "b")  # a second late batch
    store.write(more, more_runs)
    _assert_units_are_the_text(store)
    assert assert_cell_sets_nest(store)  # window prefixes and day cells, after late batches and a replay

    joined = _joins(monkeypatch)
    periods = [(WINDOW_START + timedelta(days=1), WINDOW_START + timedelta(days=4)),  # prefix 5 less prefix 1
               (first + timedelta(days=1), first + timedelta(days=4)),  # in the window before
               (WINDOW_START + timedelta(days=2), WINDOW_START + timedelta(days=6)),
               (first, first + timedelta(days=days)),  # across the edge
               (first + timedelta(days=2, hours=3), first + timedelta(days=9, hours=20))]
    for start, end in periods:
        for keys, where in CASES:
            assert spend_sums(store, start, end, keys, where) == python_sums(store, start, end, keys, where), \
                (keys, where, start, end)
    if seed % 3 < 2:
        assert any(joined)
    if seed % 3 == 0:
        assert all(joined), joined
    store.close()


def test_units_near_the_limit_add_up_to_past_it(ledger_url):
    """Cells of $999,999.999999999999 each: two of them added (a fold, a late row) pass $1 million; the units must
    become NULL (never a float) and the reports stay exact, also over many such cells summed together."""
    day = WINDOW_START + timedelta(days=3)
    big = Decimal("999999.999999999999")
    rows = [LedgerRow(span_id=f"c{i:015x}", kind="call", time=day + timedelta(hours=i % 72), provider="openai",
                      request_model="m", cost=big if i % 3 else Decimal("0.5"), team=f"t{i % 2}",
                      customer=f"c{i % 4}", user=f"u{i % 5}")
            for i in range(60)]
    store = open_store(ledger_url)
    store.write([r for r in rows if r.time.hour % 4])
    sum_all_pairs(store)
    store.write([r for r in rows if not r.time.hour % 4])  # late
    _assert_units_are_the_text(store)
    if store.dialect == "sqlite":
        kinds = {t for (t,) in store._fetch(f"SELECT DISTINCT typeof(cost_units) FROM {PAIR_TABLE}", [])}
        assert kinds <= {"integer", "null"}, kinds
    for start, end in [(day, day + timedelta(days=3)), (day + timedelta(days=1), day + timedelta(days=3)),
                       (day - timedelta(days=2), day + timedelta(days=4))]:
        for keys, where in [(("team", "customer"), None), (("customer",), {"team": "t1"}), (("user", "team"), None)]:
            assert spend_sums(store, start, end, keys, where) == python_sums(store, start, end, keys, where)
    store.close()


def test_lines_and_movers_of_prefix_differences(ledger_url, monkeypatch):
    """A report whose period and previous period are each one prefix less another (the join), written as lines by
    PostgreSQL or not, under way or not: the same text and movers as without lines, and the movers' changes equal
    the raw rows' costs in Python."""
    from aicost.ledger.report import Period, build_report, render_csv, render_json, write_report
    import io

    rng = random.Random(7)
    first = WINDOW_START + timedelta(days=1)
    store = open_store(ledger_url)
    rows, runs = _rows(rng, first, 9, 1500, 0, "a")
    store.write(rows, runs)
    sum_all_pairs(store)
    joined = _joins(monkeypatch)
    start = WINDOW_START + timedelta(days=5)
    periods = [Period(start, start + timedelta(days=4)),
               Period(start, start + timedelta(days=4), elapsed=start + timedelta(days=3, hours=5))]
    for period in periods:
        for keys, where in [(("team", "customer"), None), (("user", "tag:env"), None), (("customer",), {"team": "t2"}),
                            (("day", "customer", "user"), None)]:
            full = build_report(store, period=period, group_by=keys, where=where)
            for fmt, render in (("csv", render_csv), ("json", render_json)):
                read = build_report(store, period=period, group_by=keys, where=where, lines=fmt)
                written = io.StringIO()
                write_report(read, fmt, written)
                assert written.getvalue() == render(full), (fmt, keys, period)
                assert read.movers == full.movers, (fmt, keys, period)
            mover_keys = tuple(k for k in keys if k != "day")
            now = python_sums(store, period.start, period.compared.end, mover_keys, where)
            before = python_sums(store, period.previous.start, period.previous.end, mover_keys, where)
            for mover in full.movers:
                key = tuple(mover.key[k] for k in mover_keys)
                change = (now[key]["cost"] if key in now else 0) - (before[key]["cost"] if key in before else 0)
                assert mover.change == change, (mover, keys, period)
    assert any(joined)
    store.close()


@pytest.mark.parametrize("seed", range(2))
def test_late_rows_while_the_summing_is_part_way(ledger_url, seed):
    """The summing stopped inside a day (its prefix started, partly summed), late rows of many days in one batch
    (a replay too), then the summing goes on: every pair report, the joined differences among them, equals the raw
    rows at each step, and the cells' units are their text's."""
    rng = random.Random(100 + seed)
    first = WINDOW_START - timedelta(days=3)
    store = open_store(ledger_url)
    rows, runs = _rows(rng, first, 10, 1200, 0.02 * seed, "a")
    rows.sort(key=lambda r: r.time)
    cut = WINDOW_START + timedelta(days=4, hours=7)
    store.write([r for r in rows if r.time < cut or r.time.minute % 3], runs)
    sum_all_pairs(store, max_rows=250, until=cut)
    assert store.pairs_summed_before() == cut
    late = [r for r in rows if r.time >= cut and not r.time.minute % 3]  # not late: after the summing
    more, more_runs = _rows(rng, first, 10, 300, 0.02 * seed, "b")
    store.write(more, more_runs)  # late where before cut
    store.write(more, more_runs)  # a replay
    store.write(late)
    _assert_units_are_the_text(store)
    periods = [(WINDOW_START + timedelta(days=1), WINDOW_START + timedelta(days=4)),
               (WINDOW_START + timedelta(days=1), WINDOW_START + timedelta(days=5)),
               (first + timedelta(days=1), first + timedelta(days=3)),
               (first + timedelta(days=1), first + timedelta(days=9)),
               (WINDOW_START + timedelta(days=2, hours=5), cut + timedelta(hours=3))]
    for step in range(2):
        for start, end in periods:
            for keys, where in CASES[::2]:
                assert spend_sums(store, start, end, keys, where) == python_sums(store, start, end, keys, where), \
                    (step, keys, where, start, end)
        sum_all_pairs(store, max_rows=400)
        _assert_units_are_the_text(store)
        assert assert_cell_sets_nest(store)
    store.close()


def test_a_late_batch_over_a_whole_window(ledger_url):
    """Late rows of every day of a 64-day window (and days either side) in one batch, then a batch of late rows
    half of which are stored already: each reaches its day's cells and every longer prefix once (up to 63 more),
    units and all; long prefix differences equal the raw rows."""
    rng = random.Random(64)
    window = WINDOW_START - timedelta(days=64)
    first = window - timedelta(days=2)
    store = open_store(ledger_url)
    rows, runs = _rows(rng, first, 70, 1400, 0.003, "a")
    on_time = [r for r in rows if r.time.minute % 4]
    late = [r for r in rows if not r.time.minute % 4]
    store.write(on_time, runs)
    sum_all_pairs(store)
    store.write(late[::2])
    more, _ = _rows(rng, first, 70, 100, 0, "b")
    assert store.write([*late, *more]) == len(late) - len(late[::2]) + len(more)  # half a replay
    _assert_units_are_the_text(store)
    assert assert_cell_sets_nest(store)
    periods = [(window + timedelta(days=1), window + timedelta(days=63)), (window + timedelta(days=1), WINDOW_START),
               (window + timedelta(days=12), window + timedelta(days=53)),
               (window + timedelta(days=62), window + timedelta(days=64)),
               (first, first + timedelta(days=70))]
    for start, end in periods:
        for keys, where in [(("team", "customer"), None), (("user", "tag:env"), None),
                            (("customer",), {"team": "t1"}), (("tag",), {"user": "u1"})]:
            assert spend_sums(store, start, end, keys, where) == python_sums(store, start, end, keys, where), \
                (keys, where, start, end)
    store.close()


def test_a_pair_only_before_the_period_is_no_group_of_it(ledger_url, monkeypatch):
    """The join subtracts the earlier prefix cell by cell: a pair seen only before the period (its cells in both
    prefixes, equal) is no group, nor is a pair seen only after it; one seen in the period is."""
    day = WINDOW_START + timedelta(days=1)

    def row(i, when, team, customer, cost="1.25"):
        return LedgerRow(span_id=f"d{i:015x}", kind="call", time=when, provider="openai", request_model="m",
                         cost=Decimal(cost), team=team, customer=customer, user="u")

    rows = [row(0, day - timedelta(hours=20), "early", "c"), row(1, day + timedelta(hours=3), "early", "c"),
            row(2, day + timedelta(days=2), "during", "c"), row(3, day + timedelta(days=5, hours=2), "late", "c"),
            row(4, day + timedelta(days=1, hours=1), "zero", "c", "0")]
    store = open_store(ledger_url)
    store.write(rows)
    sum_all_pairs(store)
    start, end = day + timedelta(days=1), day + timedelta(days=4)
    assert [sign for *_, sign in spans(start, end)] == [1, -1]
    joined = _joins(monkeypatch)
    for keys, where in [(("team", "customer"), None), (("team",), {"customer": "c"}), (("customer",), {"team": "early"})]:
        found = spend_sums(store, start, end, keys, where)
        assert found == python_sums(store, start, end, keys, where), (keys, where)
    assert {k for k in spend_sums(store, start, end, ("team", "customer"))} == {("during", "c"), ("zero", "c")}
    assert joined and all(joined)
    store.close()


def test_every_pair_key_order_and_filter_of_a_prefix_difference(ledger_url, monkeypatch):
    """Every pair of report keys, in either order, grouped by both or by one and filtered on the other, over
    periods that are one prefix less another: the join answers each, equal to the raw rows."""
    from itertools import product

    from aicost.ledger.pairs import PAIRS

    key_of = {"team": ["team"], "feature": ["feature"], "model": ["model"], "provider": ["provider"],
              "user": ["user"], "customer": ["customer"], "tag": ["tag", "tag:env"]}
    value = {"team": "t1", "feature": "f2", "model": "m1", "provider": "openai", "user": "u3", "customer": "c2",
             "tag:env": "prod", "tag": None}
    rng = random.Random(5)
    first = WINDOW_START
    store = open_store(ledger_url)
    rows, runs = _rows(rng, first, 8, 1000, 0, "a")
    store.write([r for r in rows if r.time.minute % 3], runs)
    sum_all_pairs(store)
    store.write([r for r in rows if not r.time.minute % 3])  # late
    joined = _joins(monkeypatch)
    periods = [(first + timedelta(days=1), first + timedelta(days=4)), (first + timedelta(days=3), first + timedelta(days=8))]
    for (x, y), (start, end) in product(PAIRS, periods):
        for a, b in product(key_of[x], key_of[y]):
            cases = [((a, b), None), ((b, a), None)]
            cases += [((a,), {b: value[b]})] if value[b] else []
            cases += [((b,), {a: value[a]})] if value[a] else []
            for keys, where in cases:
                assert spend_sums(store, start, end, keys, where) == python_sums(store, start, end, keys, where), \
                    (keys, where, start, end)
    assert joined and all(joined)
    store.close()


@pytest.mark.xfail(strict=True, reason="a prefix cell past $1M loses its units for the rest of the "
                                       "window, and the join then gives up (the report runs twice)")
def test_a_prefix_past_a_million_keeps_the_join(tmp_path, monkeypatch):
    """SQLite: a pair spending $600,000 a day (every amount exact, every day cell under $1 million) has window
    prefixes past $1 million: their units could be kept up to 2**63 - 1 (adding two units known not negative
    overflows only past that: compare before adding), so a week of it is still read by the join."""
    start = WINDOW_START + timedelta(days=1)
    rows = [LedgerRow(span_id=f"m{i:015x}", kind="call", time=WINDOW_START + timedelta(days=i, hours=12),
                      provider="openai", request_model="m", cost=Decimal("600000.5"), team="t", customer="c")
            for i in range(6)]
    store = open_store(f"sqlite:///{tmp_path / 'ledger.db'}")
    store.write(rows)
    sum_all_pairs(store)
    joined = _joins(monkeypatch)
    end = start + timedelta(days=4)
    assert spend_sums(store, start, end, ("team", "customer")) == python_sums(store, start, end, ("team", "customer"))
    assert joined == [True]
    store.close()
