"""``aicost report`` over a 10-million-row ledger (30 days, 50 teams, 500 customers): seconds per report.

The ledger is built once (``--db``, reused when it already holds the rows): one realistic day from the synthetic
generator (``aicost.ledger.synthetic``: diurnal traffic, Zipf teams and customers, a real model mix priced by the
catalog) is written through the normal write path, rollups included, then copied to the other 29 days in SQL,
rows and rollups shifted together (a day's rollups shifted by k days are exactly the shifted rows' rollups). So
every row is a real ledger row, and the rollups are what the writer maintains.

Then each report is timed as ``aicost report`` runs it (``build_report``: totals, groups, and top movers, which
reads the previous period too), best of 3, in a fresh process state; and, for scale, the same totals summed from
the raw rows of ONE day.

Run: python benchmarks/ledger_report.py [--rows 10000000] [--db /tmp/aicost-bench-ledger.db]
"""

from __future__ import annotations

import argparse
import sqlite3
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from aicost.ledger import open_store
from aicost.ledger.report import Period, build_report
from aicost.ledger.synthetic import Profile, fill

START = datetime(2026, 11, 1, tzinfo=timezone.utc)
DAYS = 30


def build(db: Path, rows: int) -> None:
    url = f"sqlite:///{db}"
    with open_store(url) as store:
        have = store._conn.execute("SELECT COUNT(*) FROM aicost_ledger").fetchone()[0]
    if have >= rows * 0.5:  # a build that was interrupted still holds whole days (one transaction per day)
        print(f"reusing {db} ({have:,} rows)")
        return
    db.unlink(missing_ok=True)
    per_day = rows // DAYS
    t = time.perf_counter()
    with open_store(url) as store:
        written = fill(store, Profile(days=1, teams=50, customers=500, calls=int(per_day * 1.1), start=START,
                                      seed=1), batch=20_000)
    print(f"day 1: {written:,} rows written through the write path in {time.perf_counter() - t:.0f} s")
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")  # a benchmark build: speed over durability
    conn.execute("PRAGMA cache_size=-1000000")
    conn.execute("DROP INDEX IF EXISTS aicost_ledger_ts")  # rebuilt once after the copy, not per row
    conn.execute("DROP INDEX IF EXISTS aicost_ledger_run")
    cols = [r[1] for r in conn.execute("PRAGMA table_info(aicost_ledger)")]
    rcols = [r[1] for r in conn.execute("PRAGMA table_info(aicost_rollup)")]
    runcols = [r[1] for r in conn.execute("PRAGMA table_info(aicost_runs)")]
    day1 = (START.strftime("%Y-%m-%d 00:00:00.000000"), (START + timedelta(days=1)).strftime("%Y-%m-%d 00:00:00.000000"))
    t = time.perf_counter()
    for k in range(1, DAYS):
        shift = f"datetime(ts, '+{k} days') || substr(ts, 20)"
        select = ", ".join(f"substr(span_id, 1, 2) || printf('%02d', {k}) || substr(span_id, 5)" if c == "span_id" else
                           f"CASE WHEN run_id IS NULL THEN NULL ELSE run_id || '.{k}' END" if c == "run_id" else
                           shift if c == "ts" else c for c in cols)
        conn.execute("BEGIN")
        conn.execute(f"INSERT INTO aicost_ledger ({', '.join(cols)}) SELECT {select} FROM aicost_ledger "
                     "WHERE ts >= ? AND ts < ?", day1)
        select_runs = ", ".join(f"run_id || '.{k}'" if c == "run_id" else shift if c == "ts" else c for c in runcols)
        conn.execute(f"INSERT INTO aicost_runs ({', '.join(runcols)}) SELECT {select_runs} FROM aicost_runs "
                     "WHERE ts >= ? AND ts < ?", day1)
        select_rollup = ", ".join(f"datetime(bucket, '+{k} days') || substr(bucket, 20)" if c == "bucket" else c
                                  for c in rcols)
        conn.execute(f"INSERT INTO aicost_rollup ({', '.join(rcols)}) SELECT {select_rollup} FROM aicost_rollup "
                     "WHERE bucket >= ? AND bucket < ?", day1)
        conn.execute("COMMIT")
    conn.execute("CREATE INDEX aicost_ledger_ts ON aicost_ledger (ts)")
    conn.execute("CREATE INDEX aicost_ledger_run ON aicost_ledger (run_id)")
    total = conn.execute("SELECT COUNT(*) FROM aicost_ledger").fetchone()[0]
    conn.close()
    print(f"days 2-{DAYS}: copied in SQL in {time.perf_counter() - t:.0f} s; {total:,} rows")


def best(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--db", type=Path, default=Path("/tmp/aicost-bench-ledger.db"))
    args = parser.parse_args()
    build(args.db, args.rows)
    store = open_store(f"sqlite:///{args.db}", create=False)
    rows = store._conn.execute("SELECT COUNT(*) FROM aicost_ledger").fetchone()[0]
    rollups = store._conn.execute("SELECT COUNT(*) FROM aicost_rollup").fetchone()[0]
    print(f"ledger: {rows:,} rows, {rollups:,} rollup rows, {args.db.stat().st_size / 1e9:.1f} GB")
    month = Period(START, START + timedelta(days=DAYS), "30 days")
    week = Period(START + timedelta(days=20, hours=13), START + timedelta(days=27, hours=13), "7 days, hour edges")
    edge = Period(START + timedelta(days=20, hours=13, minutes=20), START + timedelta(days=27, hours=9, minutes=5),
                  "7 days, minute edges")
    print(f"\n{'report':44s} {'seconds':>8s}")
    for period in (month, week, edge):
        for keys in (("team",), ("customer",), ("model",), ("feature",), ("day", "team"), ("user",)):
            if period is not month and keys not in (("team",), ("customer",), ("user",)):
                continue
            seconds = best(lambda: build_report(store, period=period, group_by=keys))
            print(f"{period.label + ' by ' + ','.join(keys):44s} {seconds:8.3f}")
    day = Period(START + timedelta(days=3), START + timedelta(days=4))
    raw = best(lambda: sum(1 for _ in store.rows(day.start, day.end)), repeat=1)
    print(f"{'(raw rows of ONE day, read and summed)':44s} {raw:8.3f}")
    store.close()


if __name__ == "__main__":
    main()
