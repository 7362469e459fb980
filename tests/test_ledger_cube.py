"""aicost_rollup_cube (schema 5) on real SQLite and PostgreSQL: reports grouped by, or filtered on, two or more of
team / feature / model / provider are read from its cells (the planner's choice is asserted by the tables read),
and agree to the last digit with sums of the raw rows in Python, over whole days, whole hours and minute edges;
replays never double count; the migration from schema 4 fills the cube exactly as the writer does."""

from __future__ import annotations

import itertools
import random
import sqlite3
from datetime import timedelta
from decimal import Decimal

import pytest

from aicost.ledger import CALL, FeatureRun, LedgerRow, open_store, spend
from aicost.ledger.query import plan
from aicost.ledger.row import CACHE_HIT, REFUSAL, TOKEN_FIELDS
from aicost.ledger.schema import CUBE_FOLDED_TABLE, CUBE_KEYS, CUBE_TABLE, SCHEMA_VERSION
from aicost.ledger.synthetic import Profile, fill, fill_copies, generate

PAIRS = list(itertools.combinations(CUBE_KEYS, 2))


def _value(item, key):
    if key == "day":
        return item.time.strftime("%Y-%m-%d")
    if key == "hour":
        return item.time.strftime("%Y-%m-%dT%H:00Z")
    return getattr(item, key, None) or None  # a run has no model or provider


def _python_sums(store, start, end, keys, where=None):
    """Every measure per group of ``keys``, summed in Python from the rows and runs read back. Runs count only
    when neither model nor provider is grouped or filtered on (a run has neither), as in every report."""
    where = where or {}
    out = {}

    def acc(item):
        group = tuple(_value(item, k) for k in keys)
        return out.setdefault(group, {"cost": Decimal(0), "calls": 0, "unknown": 0, "estimated": 0, "errors": 0,
                                      "tokens": {f: 0 for f in TOKEN_FIELDS}, "hits": 0, "saved": Decimal(0),
                                      "refusals": 0, "stopped": Decimal(0), "runs": 0, "succeeded": 0})

    for r in store.rows(start, end, where=where):
        a = acc(r)
        if r.kind == CALL:
            a["calls"] += 1
            a["unknown"] += r.cost is None
            a["cost"] += r.cost or 0
            a["estimated"] += r.estimated
            a["errors"] += bool(r.error_type)
            for f in TOKEN_FIELDS:
                a["tokens"][f] += getattr(r, f)
        elif r.kind == CACHE_HIT:
            a["hits"] += 1
            a["saved"] += r.saved_cost or 0
        elif r.kind == REFUSAL:
            a["refusals"] += 1
            a["stopped"] += r.stopped_cost or 0
    if not {"model", "provider"} & {*keys, *where}:
        for run in store.runs(start, end, where=where):
            a = acc(run)
            a["runs"] += 1
            a["succeeded"] += run.outcome == "succeeded"
    return out


def _spend_sums(store, start, end, keys, where=None):
    return {tuple(g.key[k] for k in keys): {
        "cost": g.cost, "calls": g.calls, "unknown": g.unknown_cost_calls, "estimated": g.estimated_calls,
        "errors": g.error_calls, "tokens": g.tokens, "hits": g.cache_hits, "saved": g.saved_cost,
        "refusals": g.refusals, "stopped": g.stopped_cost, "runs": g.runs, "succeeded": g.succeeded_runs}
        for g in spend(store, start, end, keys, where)}


def _periods(first, days, rng, n=2):
    midnight = first.replace(hour=0, minute=0, second=0, microsecond=0)
    periods = [(midnight, midnight + timedelta(days=days)),  # whole days
               (midnight + timedelta(hours=5), midnight + timedelta(days=days - 1, hours=7))]  # whole hours
    for _ in range(n):  # minutes inside hours at both edges
        a = first + timedelta(seconds=rng.randrange(0, days * 86400))
        periods.append((a, a + timedelta(seconds=rng.randrange(3700, 2 * 86400))))
    return periods


class _Reads:
    """The SQL of every query a store runs for a report (both dialects fetch sums through ``_fetch``)."""

    def __init__(self, store, monkeypatch):
        self.sql: list[str] = []
        fetch = store._fetch

        def recording(sql, params):
            self.sql.append(sql)
            return fetch(sql, params)

        monkeypatch.setattr(store, "_fetch", recording)

    def tables(self) -> set[str]:
        text = " ".join(self.sql)
        return {t for t in ("aicost_rollup_cube", "aicost_rollup ", "aicost_ledger", "aicost_runs") if t in text}


def test_the_planner_reads_the_cube_for_any_combination_of_its_keys():
    for a, b in PAIRS:
        for time in ((), ("day",), ("hour",), ("day", "hour")):
            assert plan((*time, a, b)) == "cube"
        assert plan((a,), {b: "x"}) == "cube"
        assert plan((), {a: "x", b: "y"}) == "cube"
    assert plan(CUBE_KEYS) == "cube"
    assert plan(("team",)) == plan(("team",), {"team": "x"}) == "rollup"  # one key: its own, smaller cells
    for other in ("customer", "user", "tag", "tag:env"):
        assert plan(("team", other)) == plan(("team",), {other: "x"}) == "rows"


def test_every_pair_with_day_and_hour_equals_the_raw_rows_summed_in_python(ledger_url, monkeypatch):
    store = open_store(ledger_url)
    fill(store, Profile(days=3, teams=5, customers=12, calls=1500, seed=11), batch=400)
    first, _ = store.time_range()
    rng = random.Random(7)
    periods = _periods(first, 3, rng)
    for (a, b), time in itertools.product(PAIRS, ((), ("day",), ("hour",))):
        keys = (*time, a, b)
        for start, end in periods:
            assert _spend_sums(store, start, end, keys) == _python_sums(store, start, end, keys), (keys, start, end)
    midnight = first.replace(hour=0, minute=0, second=0, microsecond=0)
    for keys in (("day", *CUBE_KEYS), ("hour", *CUBE_KEYS), CUBE_KEYS):  # one cell per group: read as it is
        for start, end in ((midnight, midnight + timedelta(days=3)), periods[-1]):
            assert _spend_sums(store, start, end, keys) == _python_sums(store, start, end, keys), (keys, start, end)
    # The whole-day period reads the cube's cells alone: no raw row is summed.
    reads = _Reads(store, monkeypatch)
    spend(store, midnight, midnight + timedelta(days=3), ["team", "model"])
    assert reads.tables() == {"aicost_rollup_cube"}
    store.close()


def test_filters_on_cube_keys_equal_the_raw_rows_and_read_the_cube(ledger_url, monkeypatch):
    store = open_store(ledger_url)
    fill(store, Profile(days=2, teams=4, customers=8, calls=1200, seed=5), batch=500)
    first, _ = store.time_range()
    rows = list(store.rows(first, first + timedelta(days=3)))
    team = next(r.team for r in rows if r.team)
    model = next(r.model for r in rows if r.model and r.team == team)
    feature = next(r.feature for r in rows if r.feature and r.team == team)
    cases = [(("team",), {"model": model}), (("model", "day"), {"team": team}), (("provider",), {"team": team}),
             (("hour",), {"team": team, "feature": feature}), ((), {"team": team, "model": model}),
             (("feature", "model"), {"team": team})]
    rng = random.Random(2)
    for keys, where in cases:
        for start, end in _periods(first, 2, rng):
            assert (_spend_sums(store, start, end, keys, where)
                    == _python_sums(store, start, end, keys, where)), (keys, where, start, end)
    reads = _Reads(store, monkeypatch)
    midnight = first.replace(hour=0, minute=0, second=0, microsecond=0)
    spend(store, midnight + timedelta(hours=3), midnight + timedelta(days=1, hours=5), ["feature"], {"team": team})
    assert reads.tables() == {"aicost_rollup_cube"}
    store.close()


def test_a_replayed_or_overlapping_batch_is_counted_once_in_the_cube(ledger_url):
    items = list(generate(Profile(days=1, teams=4, customers=6, calls=600, seed=4)))
    rows = [i for i in items if isinstance(i, LedgerRow)]
    runs = [i for i in items if isinstance(i, FeatureRun)]
    store = open_store(ledger_url)
    assert store.write(rows[:300], runs[:120]) == 300
    assert store.write(rows[200:], runs[100:]) == len(rows) - 300  # 100 rows and 20 runs already stored
    assert store.write(rows, runs) == 0
    assert store.write(rows[:50] + rows[:50], runs[:10] + runs[:10]) == 0
    first, last = store.time_range()
    start, end = first.replace(minute=0, second=0, microsecond=0), last + timedelta(hours=1)
    for keys in (("team", "feature"), ("model", "provider"), ("day", "team", "model")):
        assert _spend_sums(store, start, end, keys) == _python_sums(store, start, end, keys)
    store.close()


def _cube(store):
    return sorted(store._fetch(f"SELECT * FROM {CUBE_TABLE}", []), key=lambda cell: tuple(map(str, cell)))


def _run(url, statements):
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url[len("sqlite:///"):])
        for s in statements:
            conn.execute(s)
        conn.commit()
        conn.close()
    else:
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            for s in statements:
                conn.execute(s)


def test_a_version_4_ledger_is_migrated_and_its_cube_filled_as_the_writer_fills_it(ledger_url):
    store = open_store(ledger_url)
    fill(store, Profile(days=2, teams=4, customers=8, calls=700, seed=6), batch=300)
    written = _cube(store)
    first, last = store.time_range()
    store.close()
    assert written
    _run(ledger_url, [f"DROP TABLE {CUBE_TABLE}", f"DROP TABLE {CUBE_FOLDED_TABLE}",
                      "DELETE FROM aicost_schema WHERE version = 5"])  # what 4 wrote
    store = open_store(ledger_url)
    assert store.schema_version() == SCHEMA_VERSION == 5
    assert _cube(store) == written  # cell for cell, what the writer had summed batch by batch
    start = first.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    for keys in PAIRS:
        for end in (start + timedelta(days=1), last):  # whole hours, then minutes
            assert _spend_sums(store, start, end, keys) == _python_sums(store, start, end, keys)
    store.close()


def test_synthetic_copies_copy_the_cube(ledger_url):
    store = open_store(ledger_url)
    fill_copies(store, Profile(teams=4, customers=8, calls=300, seed=8), days=3)
    first, last = store.time_range()
    rng = random.Random(4)
    for keys in (("team", "model"), ("day", "feature", "provider")):
        for start, end in _periods(first, 3, rng, n=1):
            assert _spend_sums(store, start, end, keys) == _python_sums(store, start, end, keys)
    store.close()
