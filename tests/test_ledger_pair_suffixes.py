"""Hour suffixes of the pair cells (schema 9) on real SQLite and PostgreSQL: a closed day keeping hour prefixes
also keeps each hour's suffix (the day's rows from that hour on), so ``24h`` and the 24 hours before it read two
cell sets each, not three. A suffix holds exactly the raw rows from its hour to its day's end, through chunked
summing, odd amounts (SQLite's text path), late rows and replays; exactly those :func:`suffix_kept` names exist;
the migration from schema 8 derives the same cells the summing does."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from aicost.ledger import open_store, spend_table
from aicost.ledger.days import DAY, HOUR, midnight
from aicost.ledger.pairs import _CELL, HOUR_DAYS, SUFFIX, suffix_kept
from aicost.ledger.query import _pair_days
from aicost.ledger.schema import MEASURES, PAIR_TABLE, SCHEMA_VERSION
from aicost.ledger.store import parse_ts

from ledger_helpers import (DROP_UNKNOWN_REASON, answers, assert_cell_sets_nest, python_sums, run_sql, spend_sums,
                            sum_all_pairs)
from test_ledger_pairs_fuzz import CASES, WINDOW_START, _assert_units_are_the_text, _rows

FIRST = WINDOW_START + 3 * DAY  # four days inside one 64-day window
DAYS = 4


def _suffixes(store):
    """The hour suffixes stored: their first hours."""
    return {parse_ts(b) for (b,) in store._fetch(f"SELECT DISTINCT bucket FROM {PAIR_TABLE} WHERE days = {SUFFIX}",
                                                 [])}


def _kept(summed, hours_from, days=DAYS):
    """Every hour suffix :func:`suffix_kept` says the cells hold, over ``days`` days from :data:`FIRST`."""
    return {s for k in range(days) for h in range(1, 24)
            if suffix_kept(s := FIRST + k * DAY + h * HOUR, summed, hours_from)}


def _suffix_cells(store):
    """The suffix cells, every measure (not SQLite's units: a cell's units, once NULL, stay NULL as late rows add to
    it, so the summing's and a derivation's may differ where the text allows them; both are checked to be their
    text's where known)."""
    return store._fetch(f"SELECT days, bucket, {_CELL}, {', '.join(MEASURES)} FROM {PAIR_TABLE} WHERE days = "
                        f"{SUFFIX} ORDER BY bucket, dim_a, dim_b, value_a, value_b", [])


def _ledger(ledger_url, seed, odd):
    """A ledger of :data:`DAYS` days summed in chunks to its last hour, with late rows (a batch, its replay, a
    second batch) added after."""
    rng = random.Random(seed)
    store = open_store(ledger_url)
    rows, runs = _rows(rng, FIRST, DAYS, 1500, odd, "a")
    store.write([r for r in rows if r.time.minute % 4], [r for r in runs if r.time.minute % 4])
    sum_all_pairs(store, max_rows=200)
    late = [r for r in rows if not r.time.minute % 4]
    late_runs = [r for r in runs if not r.time.minute % 4]
    assert store.write(late, late_runs) == len(late)
    assert store.write(late, late_runs) == 0  # a replay adds nothing
    more, more_runs = _rows(rng, FIRST, DAYS, 300, odd, "b")
    store.write(more, more_runs)
    return store


@pytest.mark.parametrize("seed", range(3))
def test_each_suffix_holds_the_rows_from_its_hour_to_its_day_s_end(ledger_url, seed):
    store = _ledger(ledger_url, seed, [0, 0.01, 0.2][seed])
    summed, hours_from = store.pair_marks()
    kept = _kept(summed, hours_from)
    # the summing stopped on the last day: the day before is closed and keeps them, to summed's hour (and the one
    # before that too when the last row is late enough in its day)
    assert midnight(summed) - DAY in {midnight(s) for s in kept}
    assert _suffixes(store) == kept  # exactly those: every hour of the test's days has rows
    _assert_units_are_the_text(store)
    assert assert_cell_sets_nest(store)
    for s in sorted(kept)[::5]:
        end = midnight(s) + DAY
        runs, hours, edges = _pair_days(s, end, summed, hours_from)
        assert (runs, hours, edges) == ([], [(SUFFIX, s, 1)], [])  # the suffix alone
        for keys, where in CASES[::2]:
            assert spend_sums(store, s, end, keys, where) == python_sums(store, s, end, keys, where), (s, keys)
    for s in sorted(kept)[::7]:  # 24 hours from a suffix's hour, and inside minutes
        for start, end in [(s, s + DAY), (s + timedelta(minutes=20), s + DAY - timedelta(minutes=10))]:
            for keys, where in CASES[1::3]:
                assert spend_sums(store, start, end, keys, where) == python_sums(store, start, end, keys, where), (
                    start, end, keys)
    store.close()


def test_the_summing_derives_each_suffix_with_the_next_day_s_prefix_to_its_hour(ledger_url):
    """Suffixes appear as the summing goes: the day before's from an hour with the next day's prefix to that hour
    (the chunk that starts it), none of a day the summing is inside, and the days past keeping hour prefixes drop
    theirs."""
    store = open_store(ledger_url)
    rows, runs = _rows(random.Random(7), FIRST, 6, 2000, 0, "a")
    store.write(rows, runs)
    day = FIRST + DAY
    sum_all_pairs(store, until=day + 13 * HOUR + timedelta(minutes=30))
    summed, hours_from = store.pair_marks()
    assert summed == day + 13 * HOUR + timedelta(minutes=30) and hours_from <= day - DAY
    assert _suffixes(store) == {day - DAY + h * HOUR for h in range(1, 15)}  # 14:00's started with 13:00's chunk
    sum_all_pairs(store)
    summed, hours_from = store.pair_marks()
    assert hours_from == midnight(summed) - (HOUR_DAYS - 1) * DAY
    assert {midnight(s) for s in _suffixes(store)} == {hours_from, hours_from + DAY}
    assert _suffixes(store) == _kept(summed, hours_from, days=6)
    store.close()


def test_the_migration_from_schema_8_derives_the_suffixes_the_summing_keeps(ledger_url):
    store = _ledger(ledger_url, 3, 0.02)
    derived = _suffix_cells(store)
    assert derived
    store.close()
    run_sql(ledger_url, [f"DELETE FROM {PAIR_TABLE} WHERE days = {SUFFIX}",
                         DROP_UNKNOWN_REASON,
                         "DELETE FROM aicost_schema WHERE version >= 9"])  # what version 8 wrote
    store = open_store(ledger_url)
    assert store.schema_version() == SCHEMA_VERSION == 10
    assert _suffix_cells(store) == derived  # cell for cell, every measure
    _assert_units_are_the_text(store)
    store.close()


@pytest.mark.parametrize("seed", range(3))
def test_costs_of_sets_all_added_equal_the_raw_rows(ledger_url, monkeypatch, seed):
    """Costs alone over cell sets all added (a day's suffix and the next day's prefix: top movers' previous 24
    hours) are summed in Python on SQLite (``_sum_added``): every key and filter equals the raw rows, groups of no
    value (None) among them; a cell without units (an odd amount) sums the texts as usual."""
    store = _ledger(ledger_url, 10 + seed, [0, 0.01, 0.3][seed])
    answered = answers(monkeypatch, "_sum_added")
    summed, hours_from = store.pair_marks()
    for s in sorted(_kept(summed, hours_from))[::6]:
        for start, end in [(s, s + DAY), (s, midnight(s) + DAY)]:
            if end > summed:
                continue
            for keys, where in CASES:
                costs = spend_table(store, start, end, keys, where, measures=("cost",), order=False)
                raw = python_sums(store, start, end, keys, where)
                assert dict(zip(zip(*costs.columns[:len(keys)]), costs.column("cost"))) == {
                    k: v["cost"] for k, v in raw.items()}, (start, end, keys, where)
    if store.dialect == "sqlite":
        assert any(answered) and (all(answered) if seed == 0 else not all(answered)), answered
    else:
        assert not answered  # PostgreSQL's cells hold no units: summed by the database
    store.close()
