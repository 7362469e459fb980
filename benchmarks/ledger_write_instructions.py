"""What the ledger's write path costs per row, in CPU instructions (valgrind's callgrind): deterministic, so two
versions of the writer can be compared on a shared box, where CPU times vary by 20 % between identical runs.

The synthetic day (``aicost.ledger.synthetic``: 50 teams, 500 customers, ~2,000 users) is written into a fresh
SQLite ledger by ``store.prepare`` + ``store.write_prepared`` in batches of ``--batch`` rows, as the background
writer does (the staged path): a first batch, not counted (it creates the connection's temporary tables and
warms the caches), then ``--rows`` rows counted, every prepare in one region and every write transaction in
another. Both run in this one thread (the writer runs them on two), so the sum is the writer's instructions per
row. The rows are of one day, so the cube's closed-day fold never runs here; it runs once a day (measured
separately: ``--fold``).

The store holds every row it writes to the ledger's bounds (``aicost.ledger.row.within_bounds``), but for rows the
in-process capture made, which it marks as bounded already. The synthetic rows are made by hand, so they are
checked, as the span exporter's rows are; ``--marked`` marks them as the capture does, to measure the in-process
path (on a checkout without the mark it changes nothing).

``--root`` measures another checkout's ``aicost`` with this same script (e.g. main, to compare).

Run: python benchmarks/ledger_write_instructions.py [--rows 20000] [--batch 5000] [--marked] [--root PATH]
Needs valgrind with its headers and a C compiler (apt-get install valgrind gcc).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import _callgrind  # benchmarks/_callgrind.py: the script's own directory is on sys.path

ROOT = Path(__file__).resolve().parent.parent

WORKLOAD = r'''
import ctypes, gc, sys, tempfile
from datetime import datetime, timezone
sys.path.insert(0, {root!r})
from aicost.ledger import open_store
from aicost.ledger.row import FeatureRun, LedgerRow
from aicost.ledger.synthetic import Profile, generate

rows_n, batch, marked = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "marked"
start = datetime(2026, 11, 1, tzinfo=timezone.utc)
items = list(generate(Profile(days=1, calls=int((rows_n + batch) * 1.2), start=start, seed=3)))
rows = [i for i in items if isinstance(i, LedgerRow)][:rows_n + batch]
runs = [i for i in items if isinstance(i, FeatureRun)]
if marked and hasattr(LedgerRow, "_bounded"):  # as aicost.ledger.capture.row_from_item marks its rows and runs
    for item in rows + runs:
        item._bounded = True
share = len(runs) * batch // len(rows)  # runs spread over the batches as they come
batches = [(rows[i:i + batch], runs[i // batch * share:(i // batch + 1) * share]) for i in range(0, len(rows), batch)]
store = open_store(f"sqlite:///{{tempfile.mkdtemp()}}/bench.db")
store.write_prepared(store.prepare(*batches[0]))
cg = ctypes.CDLL({helper!r})
gc.collect()
cg.cg_start()
cg.cg_dump(b"skip")
prepared = []
for b in batches[1:]:
    cg.cg_toggle(); p = store.prepare(*b); cg.cg_toggle()
    prepared.append(p)
cg.cg_dump(b"prepare")
for p in prepared:
    cg.cg_toggle(); store.write_prepared(p); cg.cg_toggle()
cg.cg_dump(b"write")
print(sum(len(b[0]) for b in batches[1:]))
'''


def count(root: Path, rows: int, batch: int, marked: bool = False) -> dict[str, int]:
    stdout, counts = _callgrind.regions(lambda helper: WORKLOAD.format(root=str(root), helper=helper),
                                        [str(rows), str(batch), "marked" if marked else "made"], root=root,
                                        options=["--separate-threads=no"])
    return {"rows": int(stdout.split()[-1]), **counts}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--marked", action="store_true",
                        help="rows marked as the in-process capture marks them (their bounds not checked again)")
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout whose aicost is measured")
    args = parser.parse_args()
    if not _callgrind.can_toggle():
        sys.exit("needs valgrind, its headers and a C compiler (apt-get install valgrind gcc)")
    c = count(args.root.resolve(), args.rows, args.batch, args.marked)
    n = c["rows"]
    print(f"{args.root}: {n:,} rows in batches of {args.batch:,}{', marked' if args.marked else ''}")
    print(f"  prepare: {c['prepare'] / 1e9:.3f} G instructions, write: {c['write'] / 1e9:.3f} G, "
          f"per row: {(c['prepare'] + c['write']) / n / 1e3:.1f} k ({c['prepare'] / n / 1e3:.1f} k + "
          f"{c['write'] / n / 1e3:.1f} k)")


if __name__ == "__main__":
    main()
