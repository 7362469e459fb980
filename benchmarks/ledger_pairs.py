"""What summing rows into the pair cells costs (``LedgerStore.compact_pairs``, schema 6): CPU per row, behind the
writer, on SQLite and PostgreSQL.

One synthetic day (50 teams, 500 customers, ~2,000 users; ``--rows`` rows) is written into a fresh ledger through
the normal write path (``fill``; nothing is summed into the pair cells there: only the background writer's thread
and ``aicost sum-pairs`` sum them), then summed chunk by chunk as the writer does (``--chunk`` rows per
transaction): the chunks' CPU (this process's for SQLite; this process's and the server backend's for
PostgreSQL, from /proc) per row summed. Twice: as the writer sums today (the day keeps its hour prefixes, schema 8:
a chunk per hour at most, each hour's prefix started as a copy of the one before), and as a backfill's past day
(summed on the way to ten days later: no hour prefix).

Run: python benchmarks/ledger_pairs.py [--rows 100000] [--chunk 50000] [--no-postgres]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from aicost.ledger import open_store  # noqa: E402
from aicost.ledger.synthetic import Profile, fill  # noqa: E402

START = datetime(2026, 11, 2, tzinfo=timezone.utc)


def _backend_cpu(store) -> float:
    """CPU seconds of the store's PostgreSQL backend (server on this box), from /proc."""
    pid = store._conn.info.backend_pid
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(url: str, rows: int, chunk: int, hours: bool) -> None:
    store = open_store(url)
    fill(store, Profile(days=1, teams=50, customers=500, calls=int(rows * 1.1), start=START, seed=1), batch=20_000)
    (count,) = store._fetch("SELECT COUNT(*) FROM aicost_ledger", [])[0]
    server = store.dialect == "postgresql"
    cpu, wall, server_cpu = time.process_time(), time.perf_counter(), _backend_cpu(store) if server else 0.0
    chunks = 0
    until = START + timedelta(days=1 if hours else 10)  # the day is one of the last three to it, or not
    while store.compact_pairs(max_rows=chunk, until=until):
        chunks += 1
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    server_cpu = _backend_cpu(store) - server_cpu if server else 0.0
    (cells,) = store._fetch("SELECT COUNT(*) FROM aicost_rollup_pair", [])[0]
    print(f"{store.dialect}, {'hour prefixes' if hours else 'no hour prefix'}: {count:,} rows summed in {chunks} "
          f"chunks of <= {chunk:,}: {wall:.1f} s wall, "
          f"{1e6 * (cpu + server_cpu) / count:.1f} us CPU per row (client {cpu:.1f} s"
          + (f", server {server_cpu:.1f} s" if server else "") + f"); {cells:,} pair cells")
    store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--chunk", type=int, default=50_000)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f}")
    for hours in (True, False):
        with tempfile.TemporaryDirectory() as tmp:
            measure(f"sqlite:///{tmp}/ledger.db", args.rows, args.chunk, hours)
    if not args.no_postgres:
        from cache_helpers import postgres_server
        from ledger_helpers import fresh_pg_database

        with postgres_server() as server:
            for hours in (True, False):
                measure(fresh_pg_database(server), args.rows, args.chunk, hours)


if __name__ == "__main__":
    main()
