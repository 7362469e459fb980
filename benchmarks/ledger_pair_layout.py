"""What the pair cells' layout costs the slowest report, ``aicost report --period 24h --by team,user``, and what two
other layouts cost: CPU instructions, counted by valgrind's callgrind, on a copy.

Before schema 9 a ``24h`` period ending on an hour read three pair cell sets: the ending day's hour prefix (its rows
before the hour), and the day before's cells less that day's hour prefix. Top movers read the 24 hours before it the
same way. Two layouts read fewer or cheaper cells:

* **hour suffixes** (made by schema 9, measured here first): a closed day's rows from an hour on, one set, in place
  of its cells less its hour prefix. The copy derives the two suffixes these periods need (``days`` -1,
  ``bucket`` the hour) with the summing's own statement (``pairs.suffix_sql``), and leaves out a schema-9 ledger's
  own, so it compares the same two layouts on a ledger of schema 8 or 9. The suffix comes after the hour prefix in the join
  (listed so here; the store puts the longer set first): both sets have an arm either way;
* **an integer set id** (not made) in the primary key, ``(set_id, value_a, value_b)``, in place of
  ``(days, bucket, dim_a, dim_b, value_a, value_b)``: each primary key probe compares three fields, not six.

Cases, each counted after one run of itself (so the pages it reads are cached):

* ``this period, 3 sets`` / ``2 sets (suffix)``: ``LedgerStore.sum_pairs`` as a table report calls it (its 13
  measures, largest cost first);
* ``previous period, 3 sets`` / ``2 sets (suffix)``: the costs top movers compare against;
* ``join of costs, key as stored`` / ``integer set id``: this period's three sets joined by primary key, costs only,
  written out in SQL over two copies of the same cells.

The answers of three sets and of two are checked equal. The copy holds the pair cells of the twelve days before the
period's end (~6 million on the benchmark ledger; ~1.7 GB, built in a few minutes, kept with ``--scratch``).

Run: python benchmarks/ledger_pair_layout.py --db LEDGER.db [--end 2026-12-01T13:00] [--scratch PATH]
``--db``: a SQLite ledger such as ``ledger_report.py`` builds (its synthetic 10-million-row ledger); the period's
day and the day before it must be summed, with their hour prefixes kept.
"""

from __future__ import annotations

import argparse
import contextlib
import sqlite3
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from _callgrind import can_toggle, regions  # benchmarks/_callgrind.py: the script's own directory is on sys.path

from aicost.ledger import open_store
from aicost.ledger.days import DAY, midnight
from aicost.ledger.rollup import SQLITE
from aicost.ledger.schema import PAIR_TABLE
from aicost.ledger.pairs import SUFFIX, suffix_sql
from aicost.ledger.store import _dec_add, _sqlite_ts

PAIR = ("team", "user")
KEY = ("days", "bucket", "dim_a", "value_a", "dim_b", "value_b")


def build(source: Path, scratch: Path, end: datetime) -> None:
    """The copy: the pair cells of the twelve days before ``end``, the two hour suffixes of ``PAIR`` the periods
    read, and the same cells in a table keyed by an integer set id; built under another name and renamed when
    done, so a copy that exists is whole. It records ``end``."""
    partial = scratch.with_name(scratch.name + ".partial")
    partial.unlink(missing_ok=True)
    open_store(f"sqlite:///{partial.resolve()}").close()  # the ledger's schema
    conn = sqlite3.connect(partial)
    conn.execute("ATTACH ? AS source", (source.resolve().as_uri() + "?mode=ro",))
    conn.execute(f"INSERT INTO {PAIR_TABLE} SELECT * FROM source.{PAIR_TABLE} WHERE bucket >= ? AND days <> ?",
                 (_sqlite_ts(midnight(end) - 12 * DAY), SUFFIX))
    columns = [row[1] for row in conn.execute(f"PRAGMA table_info({PAIR_TABLE})")]
    amounts = [c for c in columns if c not in KEY]
    money = {c.removesuffix("_units") for c in amounts if c.endswith("_units")}
    if not money:
        raise SystemExit(f"{source}: its pair cells keep no integer units (a SQLite ledger of schema 7 or later)")

    conn.create_function("aicost_dec_add", 2, _dec_add, deterministic=True)  # as the store registers it
    for day in (midnight(end) - 2 * DAY, midnight(end) - DAY):  # the two suffixes, as the summing derives them
        conn.execute(suffix_sql(SQLITE), (_sqlite_ts(day + (end - midnight(end))), _sqlite_ts(day)))
    conn.execute(f"CREATE TABLE keyed (set_id INTEGER NOT NULL, {', '.join(columns)}, "
                 "PRIMARY KEY (set_id, value_a, value_b)) WITHOUT ROWID")
    conn.execute("CREATE TABLE set_ids AS SELECT ROW_NUMBER() OVER () AS set_id, * FROM "
                 f"(SELECT DISTINCT days, bucket, dim_a, dim_b FROM {PAIR_TABLE})")
    conn.execute(f"INSERT INTO keyed SELECT s.set_id, p.* FROM {PAIR_TABLE} p JOIN set_ids s ON s.days = p.days AND "
                 "s.bucket = p.bucket AND s.dim_a = p.dim_a AND s.dim_b = p.dim_b")
    conn.execute("CREATE TABLE layout_end AS SELECT ? AS end_", (end.isoformat(),))
    conn.commit()
    conn.close()
    partial.rename(scratch)


# The workload, run under callgrind: each case once, then once counted.
WORKLOAD = r'''
import ctypes, sys
from datetime import datetime
from aicost.ledger import open_store
from aicost.ledger.days import DAY, midnight
from aicost.ledger.report import FORMAT_MEASURES
from aicost.ledger.store import _sqlite_ts

cg = ctypes.CDLL(%(helper)r)
scratch, end = sys.argv[1], datetime.fromisoformat(sys.argv[2])
store = open_store("sqlite:///" + scratch, create=False)
pair, suffix, stored = %(pair)r, %(suffix)r, %(table)r
day = midnight(end)
hour, hour_before = end, end - DAY  # the hour prefixes (days 0) and suffixes (days -1) of the two days
now3 = [(0, hour, 1), (1, day - DAY, 1), (0, hour_before, -1)]
now2 = [(0, hour, 1), (suffix, hour_before, 1)]
before3 = [(0, hour_before, 1), (1, day - 2 * DAY, 1), (0, hour_before - DAY, -1)]
before2 = [(0, hour_before, 1), (suffix, hour_before - DAY, 1)]


def now(sets):
    return store.sum_pairs(pair, sets, [], pair, measures=FORMAT_MEASURES["table"], ordered=True)


def before(sets):
    return store.sum_pairs(pair, sets, [], pair, measures=("cost",))


def join_sql(keyed):
    """this period's three sets joined by primary key, costs alone, as _sum_joined meets them (the set ids are
    looked up here, before the counted runs)"""
    def cells(t, days, bucket):
        if keyed:
            found = store._fetch("SELECT set_id FROM set_ids WHERE days = ? AND bucket = ? AND dim_a = ? AND "
                                 "dim_b = ?", [days, _sqlite_ts(bucket), *pair])
            return f"{t}.set_id = {found[0][0]}"
        return (f"{t}.days = {days} AND {t}.bucket = '{_sqlite_ts(bucket)}' AND {t}.dim_a = '{pair[0]}' AND "
                f"{t}.dim_b = '{pair[1]}'")

    table = "keyed" if keyed else stored
    same = "{t}.value_a = {o}.value_a AND {t}.value_b = {o}.value_b"
    first = (f"SELECT t0.value_a, t0.value_b, t0.cost_units + COALESCE(t1.cost_units, 0) - "
             f"COALESCE(t2.cost_units, 0) AS c FROM {table} t0 "
             f"LEFT JOIN {table} t1 ON {cells('t1', 1, day - DAY)} AND {same.format(t='t1', o='t0')} "
             f"LEFT JOIN {table} t2 ON {cells('t2', 0, hour_before)} AND {same.format(t='t2', o='t0')} "
             f"WHERE {cells('t0', 0, hour)}")
    second = (f"SELECT t1.value_a, t1.value_b, t1.cost_units - COALESCE(t2.cost_units, 0) FROM {table} t1 "
              f"LEFT JOIN {table} t2 ON {cells('t2', 0, hour_before)} AND {same.format(t='t2', o='t1')} "
              f"WHERE {cells('t1', 1, day - DAY)} AND NOT EXISTS (SELECT 1 FROM {table} t0 WHERE "
              f"{cells('t0', 0, hour)} AND {same.format(t='t0', o='t1')})")
    return f"SELECT count(*), sum(c) FROM ({first} UNION ALL {second})"


joins = {keyed: join_sql(keyed) for keyed in (False, True)}
cases = {"now3": lambda: now(now3), "now2": lambda: now(now2), "before3": lambda: before(before3),
         "before2": lambda: before(before2), "join_stored": lambda: store._fetch(joins[False], []),
         "join_keyed": lambda: store._fetch(joins[True], [])}
answers = {}
cg.cg_start()
for name, case in cases.items():
    case()
    cg.cg_toggle()
    answers[name] = case()
    cg.cg_toggle()
    cg.cg_dump(name.encode())
assert answers["now3"] == answers["now2"]  # ordered, both
assert sorted(answers["before3"], key=repr) == sorted(answers["before2"], key=repr)
assert answers["join_stored"] == answers["join_keyed"]
print(len(answers["now3"]), len(answers["before3"]))
'''

LABELS = {"now3": "this period, 3 sets", "now2": "this period, 2 sets (suffix)",
          "before3": "previous period, 3 sets", "before2": "previous period, 2 sets (suffix)",
          "join_stored": "join of costs, key as stored", "join_keyed": "join of costs, integer set id"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", type=Path, required=True, help="a SQLite ledger (read only)")
    parser.add_argument("--end", default="2026-12-01T13:00", help="the 24 hours' end, on an hour (UTC)")
    parser.add_argument("--scratch", type=Path, help="the copy's file: built when missing, kept")
    args = parser.parse_args()
    if not can_toggle():
        raise SystemExit("needs valgrind, its headers (valgrind/callgrind.h) and a C compiler")
    end = datetime.fromisoformat(args.end).replace(tzinfo=timezone.utc)
    if end.minute or end.second or end.microsecond:
        parser.error("--end: an hour")
    with tempfile.TemporaryDirectory() as tmp:
        scratch = args.scratch or Path(tmp) / "layout.db"
        if not scratch.exists():
            print(f"copying the pair cells into {scratch} ...", flush=True)
            build(args.db, scratch, end)
        with contextlib.closing(sqlite3.connect(scratch)) as conn:
            built = conn.execute("SELECT end_ FROM layout_end").fetchone()[0]
        if built != end.isoformat():
            parser.error(f"--scratch {scratch} was built for --end {built}: remove it, or give that end")
        out, counts = regions(lambda helper: WORKLOAD % {"helper": helper, "pair": PAIR, "suffix": SUFFIX,
                                                         "table": PAIR_TABLE},
                              [str(scratch), end.isoformat()], root=Path(__file__).resolve().parent.parent)
    groups, before = out.split()
    print(f"\n24 hours to {end:%Y-%m-%d %H:%M} UTC by {','.join(PAIR)}: {int(groups):,} groups "
          f"({int(before):,} the 24 hours before)\n")
    print("| case | G instructions |\n|---|---|")
    for name, label in LABELS.items():
        print(f"| {label} | {counts[name] / 1e9:.2f} |")


if __name__ == "__main__":
    main()
