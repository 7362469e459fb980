"""A measured option for issue 15's one open case, not what aicost does: per-group running totals by the hour.

``aicost report --period 168h --by team,user`` at an hour whose period starts on a day older than
``aicost.ledger.pairs.HOUR_DAYS`` reads that day's raw rows for its edge, and the previous period's (top movers)
for its own: 2-3 s on the 10 M-row benchmark ledger, where day-aligned periods take 0.5-0.9 s (benchmarks/README.md).
Hour prefixes kept for every day would still read about eight sets of pair cells (~1 s).

The option measured here: for each pair group (``team x user``), a row per hour it was active holding its sums
from the window's start to that hour's end. A period [a, b) of whole hours is then R(b) - R(a) per group, where
R(t) is the group's last row before t: two index seeks, wherever a and b fall, and the previous period shares R(a).
This script builds that table for one pair from a ledger built by ``benchmarks/ledger_report.py`` (into a scratch
file, from the raw rows in one pass; 23 of the cells' 28 measures, money as integer nano-dollars of the float
value: the read's cost is its seeks, not the arithmetic) and times the read of a period and its previous period
for every group of the pair (three boundaries), fetched into Python as a report fetches them. It also checks the
result against the raw rows for every group. What it would cost for all 15 pairs (the writer's side, late rows,
storage, PostgreSQL, ``24h``): ``pair_running_design.py``.

Run: python benchmarks/pair_running_totals.py --db /tmp/aicost-bench-ledger.db [--out /tmp/aicost-running.db]
                                              [--end "2026-12-01 14"] [--hours 168]
"""

from __future__ import annotations

import argparse
import resource
import sqlite3
import time
from datetime import datetime, timedelta
from pathlib import Path

_TOKENS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "cache_write_1h_tokens",
           "reasoning_tokens", "input_audio_tokens", "output_audio_tokens", "input_image_tokens",
           "output_image_tokens", "cache_read_image_tokens", "cache_read_audio_tokens", "input_characters",
           "web_search_requests")
_NANO = "CAST(ROUND(CAST({} AS REAL) * 1e9) AS INTEGER)"
MEASURES = {"calls": "kind = 'call'", "unknown": "price_known = 0", "estimated": "estimated",
            "errors": "error_type IS NOT NULL", "cost_nano": _NANO.format("cost"),
            **{t: t for t in _TOKENS}, "hits": "kind = 'cache_hit'", "saved_nano": _NANO.format("saved_cost"),
            "refusals": "kind = 'refusal'", "stopped_nano": _NANO.format("stopped_cost")}
_WHERE = "team IS NOT NULL AND user_id IS NOT NULL"


def build(db: Path, out: Path) -> int:
    """The running totals of ``team x user`` per active hour, from every raw row of ``db``; the row count."""
    out.unlink(missing_ok=True)
    con = sqlite3.connect(out)
    con.execute("ATTACH ? AS l", (str(db),))
    sums = ", ".join(f"SUM({expr}) AS {m}" for m, expr in MEASURES.items())
    con.execute(f"CREATE TEMP TABLE hourly AS SELECT substr(ts, 1, 13) AS hour, team AS va, user_id AS vb, {sums} "
                f"FROM l.aicost_ledger WHERE {_WHERE} GROUP BY 1, 2, 3")
    cols = ", ".join(f"{m} INTEGER" for m in MEASURES)
    con.execute(f"CREATE TABLE running (va TEXT, vb TEXT, hour TEXT, {cols}, PRIMARY KEY (va, vb, hour)) "
                "WITHOUT ROWID")
    running = ", ".join(f"SUM({m}) OVER w" for m in MEASURES)
    con.execute(f"INSERT INTO running SELECT va, vb, hour, {running} FROM hourly "
                "WINDOW w AS (PARTITION BY va, vb ORDER BY hour ROWS UNBOUNDED PRECEDING) ORDER BY va, vb, hour")
    con.execute("CREATE TABLE groups AS SELECT DISTINCT va, vb FROM hourly")
    con.commit()
    return con.execute("SELECT count(*) FROM running").fetchone()[0]


def read_sql(bounds: tuple[str, str, str]) -> str:
    """Each group's sums over [a, b) and over [p, a), from its running totals at p, a and b."""
    def at(alias: str, bound: str) -> str:
        return (f"LEFT JOIN running {alias} ON {alias}.va = g.va AND {alias}.vb = g.vb AND {alias}.hour = "
                f"(SELECT max(hour) FROM running x WHERE x.va = g.va AND x.vb = g.vb AND x.hour < '{bound}')")
    diffs = ", ".join(f"COALESCE(b.{m}, 0) - COALESCE(a.{m}, 0), COALESCE(a.{m}, 0) - COALESCE(p.{m}, 0)"
                      for m in MEASURES)
    p, a, b = bounds
    return f"SELECT g.va, g.vb, {diffs} FROM groups g {at('b', b)} {at('a', a)} {at('p', p)}"


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, default=Path("/tmp/aicost-bench-ledger.db"))
    parser.add_argument("--out", type=Path, default=Path("/tmp/aicost-running.db"))
    parser.add_argument("--end", default="2026-12-01 14", help="the period's end, an hour: 'YYYY-MM-DD HH'")
    parser.add_argument("--hours", type=int, default=168)
    args = parser.parse_args()
    end = datetime.strptime(args.end, "%Y-%m-%d %H")
    bounds = tuple((end - timedelta(hours=args.hours * n)).strftime("%Y-%m-%d %H") for n in (2, 1, 0))
    started = time.perf_counter()
    rows = build(args.db, args.out)
    print(f"built {rows:,} running-total rows of team x user in {time.perf_counter() - started:.0f} s "
          f"({args.out.stat().st_size / 2**20:.0f} MB)")
    con = sqlite3.connect(args.out)
    sql = read_sql(bounds)  # type: ignore[arg-type]
    runs = []
    for _ in range(3):
        wall, used = time.perf_counter(), cpu()
        got = con.execute(sql).fetchall()
        runs.append((cpu() - used, time.perf_counter() - wall))
    used, wall = min(runs)
    print(f"{args.hours}h to {args.end}:00 and the {args.hours}h before, {len(got):,} groups: "
          f"{wall:.3f} s wall, {used:.3f} s CPU (least CPU of 3)")
    con.execute("ATTACH ? AS l", (str(args.db),))
    raw = {(va, vb): (calls, out) for va, vb, calls, out in con.execute(
        f"SELECT team, user_id, SUM(kind = 'call'), SUM(output_tokens) FROM l.aicost_ledger WHERE {_WHERE} "
        "AND ts >= ? AND ts < ? GROUP BY 1, 2", bounds[1:])}
    at = list(MEASURES).index("output_tokens")
    wrong = [g for g in got if raw.get(g[:2], (0, 0)) != (g[2], g[2 + 2 * at])]
    print(f"against the raw rows: {len(got) - len(wrong):,} groups agree, {len(wrong):,} differ")


if __name__ == "__main__":
    main()
