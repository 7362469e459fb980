"""What the pair summing's longest statements and the cube's day fold cost on a large ledger: CPU seconds of each
statement alone, the figures docs/ledger.md quotes for a copy, a drop and a fold under the write lock.

On a SQLite ledger such as ``ledger_report.py`` builds (its synthetic 10-million-row ledger, summed to its last
day's last hour), each statement runs in a ``BEGIN IMMEDIATE`` transaction that is rolled back, so the ledger
keeps what it held (still: run it on a copy, it takes the write lock), the run with the least CPU of 3:

* an hour prefix started as a copy of the one before (``pairs._copy_sql``): the last day's prefix to 23:00 from
  its prefix to 22:00 (that prefix deleted first, in the same transaction);
* a day's window prefix started as a copy of the day before's: the last day's;
* the drop of a day's hour prefixes and suffixes (``pairs._DROP_HOURS_SQL``), as when the summing starts the day
  after the last and the first of the three days keeping them is dropped; and of its hour prefixes alone;
* the cube's closed-day fold (``rollup.close_days_sql``) of the last day's hour cells into day cells.

CPU is the calling thread's (``time.thread_time``): SQLite runs in it. Wall time is printed beside it.

Run: python benchmarks/ledger_pair_statements.py --db LEDGER.db [--day 2026-12-01]
``--day``: the ledger's last day, summed to its 23:00 with hour prefixes kept (the benchmark ledger's default).
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import datetime, timedelta, timezone

from aicost.ledger import open_store, pairs, rollup
from aicost.ledger.schema import PAIR_TABLE

DAY = timedelta(days=1)


def measure(store, label: str, setup: list, sql: str, params: list) -> None:
    best = None
    for _ in range(3):
        with store._lock:
            cur = store._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                for statement, args in setup:
                    cur.execute(statement, args)
                cpu, wall = time.thread_time(), time.perf_counter()
                cur.execute(sql, params)
                cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
                cells = cur.rowcount
            finally:
                cur.execute("ROLLBACK")
        if best is None or cpu < best[0]:
            best = (cpu, wall, cells)
    print(f"{label}: {best[2]:,} cells, {best[0]:.3f} s CPU, {best[1]:.3f} s wall (least CPU of 3)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", required=True, help="a SQLite ledger (a copy: the statements take its write lock)")
    parser.add_argument("--day", default="2026-12-01", help="its last day, summed to 23:00 (ISO date)")
    args = parser.parse_args()
    day = datetime.fromisoformat(args.day).replace(tzinfo=timezone.utc)
    store = open_store(f"sqlite:///{os.path.abspath(args.db)}", create=False)
    d, ts = rollup.DIALECTS[store.dialect], store._ts
    print(f"load average {os.getloadavg()[0]:.1f}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    h22, h23 = day + timedelta(hours=22), day + timedelta(hours=23)
    measure(store, f"hour prefix copy, {day:%m-%d} to 23:00 from 22:00",
            [(f"DELETE FROM {PAIR_TABLE} WHERE days = {pairs.PREFIX} AND bucket = ?", [ts(h23)])],
            pairs._copy_sql(d), [pairs.PREFIX, ts(h23), pairs.PREFIX, ts(h22)])
    n = pairs.day_number(day) % pairs.WINDOW + 1
    first = day - (n - 1) * DAY
    measure(store, f"window prefix copy, {day:%m-%d}: {n} days from {n - 1}",
            [(f"DELETE FROM {PAIR_TABLE} WHERE days = ? AND bucket = ?", [n, ts(first)])],
            pairs._copy_sql(d), [n, ts(first), n - 1, ts(first)])
    dropped = day - (pairs.HOUR_DAYS - 1) * DAY  # the first day keeping hour prefixes, dropped when day + 1 starts
    measure(store, f"drop of {dropped:%m-%d}'s hour prefixes and suffixes", [], pairs._DROP_HOURS_SQL,
            [ts(dropped + DAY)])
    measure(store, f"drop of {dropped:%m-%d}'s hour prefixes alone", [],
            f"DELETE FROM {PAIR_TABLE} WHERE days = {pairs.PREFIX} AND bucket < ?", [ts(dropped + DAY)])
    measure(store, f"cube day fold of {day:%m-%d}", [], store._sql(rollup.close_days_sql(d)),
            [ts(day), ts(day + DAY)])
    print(f"load average {os.getloadavg()[0]:.1f}")
    store.close()


if __name__ == "__main__":
    main()
