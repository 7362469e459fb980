"""aicost_rollup_cube (schema 5) on real SQLite and PostgreSQL: reports grouped by, or filtered on, two or more of
team / feature / model / provider are read from its cells (the planner's choice is asserted by the tables read),
and agree to the last digit with sums of the raw rows in Python, over whole days, whole hours and minute edges;
replays never double count; the migration from schema 4 fills the cube exactly as the writer does. The cube's day
cells are written for closed days only: a day is folded once, when a later day is first written; late rows of a
folded day reach its day cells; two writers racing a fold (two connections to one SQLite file, two PostgreSQL
sessions) lose nothing."""

from __future__ import annotations

import itertools
import random
import threading
from datetime import timedelta
from decimal import Decimal

import pytest

from aicost.ledger import CALL, FeatureRun, LedgerRow, open_store, spend
from aicost.ledger.query import plan
from aicost.ledger.schema import CUBE_FOLDED_TABLE, CUBE_KEYS, CUBE_TABLE, SCHEMA_VERSION
from aicost.ledger.synthetic import Profile, fill, fill_copies, generate

from ledger_helpers import (DROP_PAIRS, DROP_UNKNOWN_REASON, Reads, python_sums, run_sql, sample_periods, spend_sums,
                            waiting_for_the_write_lock)

PAIRS = list(itertools.combinations(CUBE_KEYS, 2))


def test_the_planner_reads_the_cube_for_any_combination_of_its_keys():
    for a, b in PAIRS:
        for time in ((), ("day",), ("hour",), ("day", "hour")):
            assert plan((*time, a, b)) == "cube"
        assert plan((a,), {b: "x"}) == "cube"
        assert plan((), {a: "x", b: "y"}) == "cube"
    assert plan(CUBE_KEYS) == "cube"
    assert plan(("team",)) == plan(("team",), {"team": "x"}) == "rollup"  # one key: its own, smaller cells
    for other in ("customer", "user", "tag", "tag:env"):
        assert plan(("team", other)) == plan(("team",), {other: "x"}) == "pairs"  # the pair cells (schema 6)


def test_every_pair_with_day_and_hour_equals_the_raw_rows_summed_in_python(ledger_url, monkeypatch):
    store = open_store(ledger_url)
    fill(store, Profile(days=3, teams=5, customers=12, calls=1500, seed=11), batch=400)
    first, _ = store.time_range()
    rng = random.Random(7)
    periods = sample_periods(first, 3, rng)
    for (a, b), time in itertools.product(PAIRS, ((), ("day",), ("hour",))):
        keys = (*time, a, b)
        for start, end in periods:
            assert spend_sums(store, start, end, keys) == python_sums(store, start, end, keys), (keys, start, end)
    midnight = first.replace(hour=0, minute=0, second=0, microsecond=0)
    for keys in (("day", *CUBE_KEYS), ("hour", *CUBE_KEYS), CUBE_KEYS):  # one cell per group: read as it is
        for start, end in ((midnight, midnight + timedelta(days=3)), periods[-1]):
            assert spend_sums(store, start, end, keys) == python_sums(store, start, end, keys), (keys, start, end)
    # The whole-day period reads the cube's cells alone: no raw row is summed.
    reads = Reads(store, monkeypatch)
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
        for start, end in sample_periods(first, 2, rng):
            assert (spend_sums(store, start, end, keys, where)
                    == python_sums(store, start, end, keys, where)), (keys, where, start, end)
    reads = Reads(store, monkeypatch)
    midnight = first.replace(hour=0, minute=0, second=0, microsecond=0)
    spend(store, midnight + timedelta(hours=3), midnight + timedelta(days=1, hours=5), ["feature"], {"team": team})
    assert reads.tables() == {"aicost_rollup_cube"}
    store.close()


def _cube(store):
    return sorted(store._fetch(f"SELECT * FROM {CUBE_TABLE}", []), key=lambda cell: tuple(map(str, cell)))


def test_a_version_4_ledger_is_migrated_and_its_cube_filled_as_the_writer_fills_it(ledger_url):
    store = open_store(ledger_url)
    fill(store, Profile(days=2, teams=4, customers=8, calls=700, seed=6), batch=300)
    written = _cube(store)
    first, last = store.time_range()
    store.close()
    assert written
    run_sql(ledger_url, [f"DROP TABLE {CUBE_TABLE}", f"DROP TABLE {CUBE_FOLDED_TABLE}", *DROP_PAIRS,
                         DROP_UNKNOWN_REASON, "DELETE FROM aicost_schema WHERE version >= 5"])  # what 4 wrote
    store = open_store(ledger_url)
    assert store.schema_version() == SCHEMA_VERSION == 10
    assert _cube(store) == written  # cell for cell, what the writer had summed batch by batch
    start = first.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    for keys in PAIRS:
        for end in (start + timedelta(days=1), last):  # whole hours, then minutes
            assert spend_sums(store, start, end, keys) == python_sums(store, start, end, keys)
    store.close()


def test_the_migration_never_folds_past_today_whatever_the_rows_say(ledger_url):
    """A row dated in the future (a host whose clock is ahead) does not move ``folded_before`` past today: the
    migration caps it as the writer caps its fold, so today's batches still write hour cells only, and today is
    folded when tomorrow's first batch comes."""
    from datetime import datetime, timezone

    today = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    store = open_store(ledger_url)
    store.write([LedgerRow(span_id=f"r{k}", kind=CALL, time=today + timedelta(days=days, hours=1),
                           provider="openai", response_model="gpt-4o-mini", team="t", cost=Decimal("0.0001"),
                           input_tokens=5, output_tokens=1) for k, days in enumerate((-2, 0, 40))])
    store.close()
    run_sql(ledger_url, [f"DROP TABLE {CUBE_TABLE}", f"DROP TABLE {CUBE_FOLDED_TABLE}", *DROP_PAIRS,
                         DROP_UNKNOWN_REASON, "DELETE FROM aicost_schema WHERE version >= 5"])  # what 4 wrote
    store = open_store(ledger_url)
    assert store.folded_before() == today
    assert _day_cells(store, today - timedelta(days=2)) == 1
    assert _day_cells(store, today) == _day_cells(store, today + timedelta(days=40)) == 0
    store.close()


def test_synthetic_copies_copy_the_cube(ledger_url):
    store = open_store(ledger_url)
    fill_copies(store, Profile(teams=4, customers=8, calls=300, seed=8), days=3)
    first, last = store.time_range()
    rng = random.Random(4)
    for keys in (("team", "model"), ("day", "feature", "provider")):
        for start, end in sample_periods(first, 3, rng, n=1):
            assert spend_sums(store, start, end, keys) == python_sums(store, start, end, keys)
    store.close()


# -- closed days: the cube's day cells --------------------------------------------------------------------------
def _by_day(url):
    """Two days of synthetic traffic: (rows, runs) of the first day, of the second, and the first day's midnight."""
    items = list(generate(Profile(days=2, teams=4, customers=6, calls=900, seed=12)))
    midnight = min(i.time for i in items).replace(hour=0, minute=0, second=0, microsecond=0)
    days = []
    for k in range(2):
        low, high = midnight + timedelta(days=k), midnight + timedelta(days=k + 1)
        part = [i for i in items if low <= i.time < high]
        days.append(([i for i in part if isinstance(i, LedgerRow)], [i for i in part if isinstance(i, FeatureRun)]))
    return days, midnight


def _day_cells(store, day):
    return store._fetch(store._sql(f"SELECT COUNT(*) FROM {CUBE_TABLE} WHERE grain = 'day' AND bucket = ?"),
                        [store._ts(day)])[0][0]


def _assert_exact(store, start, end):
    """Every pair of the cube's keys, by day and not, and the totals, equal the raw rows summed in Python."""
    for keys in ((), *PAIRS, ("day", "team", "model"), ("hour", "feature", "provider"), CUBE_KEYS):
        assert spend_sums(store, start, end, keys) == python_sums(store, start, end, keys), (keys, start, end)


def test_a_day_is_folded_once_when_a_later_day_is_written_and_late_rows_reach_its_day_cells(ledger_url,
                                                                                             monkeypatch):
    ((rows1, runs1), (rows2, runs2)), day1 = _by_day(ledger_url)
    day2, day3 = day1 + timedelta(days=1), day1 + timedelta(days=2)
    late_rows, late_runs = rows1[::7], runs1[::7]  # held back: they arrive after the day is folded
    store = open_store(ledger_url)
    store.write([r for r in rows1 if r not in late_rows], [r for r in runs1 if r not in late_runs])
    assert store.folded_before() == day1  # the day being written has hour cells alone
    assert _day_cells(store, day1) == 0
    _assert_exact(store, day1, day2)
    store.write(rows2[:100], runs2[:20])  # a later day: the first is closed now, and folded
    assert store.folded_before() == day2
    assert _day_cells(store, day1) > 0 and _day_cells(store, day2) == 0
    _assert_exact(store, day1, day3)
    folded = _cube(store)
    store.write(rows2[100:], runs2[20:])  # more of the second day: no fold, no day cell
    assert store.folded_before() == day2 and _day_cells(store, day2) == 0
    assert [c for c in _cube(store) if c[0] == "day"] == [c for c in folded if c[0] == "day"]
    store.write(late_rows, late_runs)  # late rows of the folded day: its day cells and its hour cells
    assert [c for c in _cube(store) if c[0] == "day"] != [c for c in folded if c[0] == "day"]
    _assert_exact(store, day1, day3)
    store.write(late_rows, late_runs)  # a replay of them: counted once
    _assert_exact(store, day1, day3)
    # The first day whole reads its day cells (its hour cells would be 24 times more); the second, not folded,
    # its hour cells.
    reads = Reads(store, monkeypatch)
    spend(store, day1, day3, ["team", "model"])
    assert reads.tables() == {"aicost_rollup_cube"}
    assert "day" in reads.params and "hour" in reads.params
    # A second store (another process) on the same ledger sees the fold and adds a late row to the day cells too.
    other = open_store(ledger_url)
    extra = LedgerRow(span_id="late-late", kind=CALL, time=day1 + timedelta(hours=3), provider="openai",
                      response_model="gpt-4o-mini", team="late-team", feature="late", cost=Decimal("0.000123"),
                      input_tokens=10, output_tokens=2)
    assert other.write([extra]) == 1
    other.close()
    assert spend_sums(store, day1, day2, ["team"], {"model": extra.model})[("late-team",)]["cost"] == \
        Decimal("0.000123")
    _assert_exact(store, day1, day3)
    store.close()


def test_a_fold_rolled_back_is_done_again_by_the_next_batch(ledger_url):
    """A write that fails after folding a day (its commit, the connection) rolls the fold back; the store does
    not keep believing the day folded: the next batch of the later day folds it."""
    ((rows1, runs1), (rows2, runs2)), day1 = _by_day(ledger_url)
    store = open_store(ledger_url)
    store.write(rows1, runs1)
    close_days = store._close_days

    def failing(cur, last):  # the fold is done, then the transaction fails
        close_days(cur, last)
        raise RuntimeError("the commit failed")

    store._close_days = failing
    with pytest.raises(RuntimeError):
        store.write(rows2[:50], runs2[:5])
    assert store.folded_before() == day1  # rolled back
    del store._close_days
    store.write(rows2, runs2)
    assert store.folded_before() == day1 + timedelta(days=1)
    assert _day_cells(store, day1) > 0
    _assert_exact(store, day1, day1 + timedelta(days=2))
    store.close()


@pytest.mark.parametrize("isolation", ["default", "repeatable read"])
@pytest.mark.parametrize("first", ["late rows", "fold"])
def test_two_writers_racing_a_day_fold_lose_nothing(ledger_url, first, isolation):
    """Two writers (two connections to one SQLite file; two PostgreSQL sessions, as two hosts): one writes late
    rows of day 1, the other the first rows of day 2, which folds day 1. Whichever holds its transaction open
    first (paused inside it, after its cells), the other waits for the ledger's write lock and then sees its
    commit: the late rows end in day 1's day cells either way, and every report equals the raw rows. Also on a
    PostgreSQL database whose default isolation is REPEATABLE READ (its snapshot would be taken before the wait
    for the lock, so the waiter would miss the fold): the write transaction is READ COMMITTED whatever the
    server's default."""
    if isolation != "default":
        if ledger_url.startswith("sqlite"):
            pytest.skip("SQLite has no isolation setting")
        run_sql(ledger_url, [f"ALTER DATABASE {ledger_url.rsplit('/', 1)[1]} "
                          f"SET default_transaction_isolation = '{isolation}'"])
    ((rows1, runs1), (rows2, runs2)), day1 = _by_day(ledger_url)
    day2, day3 = day1 + timedelta(days=1), day1 + timedelta(days=2)
    late_rows, late_runs = rows1[::5], runs1[::5]
    setup = open_store(ledger_url)
    setup.write([r for r in rows1 if r not in late_rows], [r for r in runs1 if r not in late_runs])
    assert setup.folded_before() == day1
    late_writer, folder = open_store(ledger_url), open_store(ledger_url)
    jobs = {"late rows": (late_writer, late_rows, late_runs), "fold": (folder, rows2, runs2)}
    holder, holder_rows, holder_runs = jobs[first]
    waiter, waiter_rows, waiter_runs = jobs["fold" if first == "late rows" else "late rows"]
    inside, release = threading.Event(), threading.Event()
    close_days = holder._close_days

    def pausing(cur, last):  # the holder's transaction, its cells written (and day 1 folded, for the folder)
        close_days(cur, last)
        inside.set()
        assert release.wait(30)

    holder._close_days = pausing
    errors = []

    def run(store, rows, runs):
        try:
            store.write(rows, runs)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    held = threading.Thread(target=run, args=(holder, holder_rows, holder_runs))
    held.start()
    assert inside.wait(30)
    waiting = threading.Thread(target=run, args=(waiter, waiter_rows, waiter_runs))
    waiting.start()
    waiting_for_the_write_lock(ledger_url, setup, waiter)
    assert waiting.is_alive()  # it cannot write while the holder's transaction is open
    release.set()
    held.join(30)
    waiting.join(30)
    assert not errors and not held.is_alive() and not waiting.is_alive()
    assert setup.folded_before() == day2
    assert _day_cells(setup, day1) > 0
    _assert_exact(setup, day1, day3)
    # Day 1's day cells, read one per group, hold exactly its rows' sums (the late rows too).
    assert spend_sums(setup, day1, day2, ["day", *CUBE_KEYS]) == python_sums(setup, day1, day2, ["day", *CUBE_KEYS])
    for store in (setup, late_writer, folder):
        store.close()
