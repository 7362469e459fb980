"""What allocating one interval's pool cost costs, at 100,000 and 1,000,000 calls in the interval.

Measured: ``split()`` alone (integer units in, cumulative rounding in nano-dollars) and a whole interval close
(integer units per call, ``split()``, one Allocation per call, the ClosedInterval), both with the token key and
declared weights (the engine read is one HTTP GET per interval whatever the call count, so it is left out).
CPU time of this process (``time.process_time``), best of 3; the box is shared, so the 1M / 100k ratio is the
figure to trust. Optional ``--ledger``: the same interval turned into ledger records and written to a SQLite
ledger (aicost_pool_allocation rows, one transaction per slice of 5,000), as the ledger writer's thread does.

Run: python benchmarks/pools_allocation.py [--calls 1000000] [--ledger]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from aicost.pools import split
from aicost.pools.config import pool_from_mapping
from aicost.pools.meter import PoolMeter, _Use

T0 = 1_796_083_200  # 2026-12-01T00:00Z


def _uses(n: int) -> list[_Use]:
    rng = random.Random(7)
    teams = [f"team-{i}" for i in range(50)]
    return [_Use(f"{i:016x}", teams[i % 50], "m", rng.randint(50, 8000), rng.randint(1, 1500), None)
            for i in range(n)]


def _best(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best


def run(n: int, ledger: bool) -> dict[str, float]:
    uses = _uses(n)
    pool = pool_from_mapping("bench", {"gpu_hour": "3.99", "gpus": 8, "endpoints": ["h:1"], "models": ["m"],
                                       "owner": "ml", "output_weight": 4, "capacity_per_hour": 10**12})
    units = [u.input_tokens + 4 * u.output_tokens for u in uses]
    used = (Decimal(sum(units)), Decimal(10**12))
    figures = {"split": _best(lambda: split(Decimal("31.92"), units, used))}
    meter = PoolMeter([pool], clock=lambda: T0)

    def close():
        meter._open["bench"][T0] = list(uses)
        return meter._close(pool, T0)

    figures["close"] = _best(close)
    meter.clear_prices()
    if ledger:
        from aicost.ledger import open_store
        from aicost.pools.ledger import records

        interval = close()
        start = time.process_time()
        queued = records(interval)
        figures["records"] = time.process_time() - start
        with tempfile.TemporaryDirectory() as tmp:
            store = open_store(f"sqlite:///{Path(tmp) / 'l.db'}")
            start = time.process_time()
            for record in queued:
                record.store_into(store)
            figures["ledger"] = time.process_time() - start
            store.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--ledger", action="store_true")
    args = parser.parse_args()
    small = run(args.calls // 10, args.ledger)
    large = run(args.calls, args.ledger)
    for name in large:
        print(f"{name:<7} {args.calls // 10:>9,} calls {small[name]:8.3f} s   {args.calls:>9,} calls "
              f"{large[name]:8.3f} s   ratio {large[name] / small[name]:.2f}   "
              f"{large[name] / args.calls * 1e6:.2f} us/call")


if __name__ == "__main__":
    main()
