"""`aicost report` prints tens of thousands of groups (a month by day and user) from columns, summed and sorted in
the database, with money as exact text: these tests hold that bulk path to the general one, on real SQLite and
PostgreSQL. The groups equal the raw rows summed in SQL (a different statement, no rollups), in the same order;
the table, CSV and JSON equal what straightforward per-group code makes of the same groups (each group an
object, each cell formatted on its own, json.dumps, csv.writer); and SQLite's integer sums fall back to exact
decimals when amounts have more than 12 decimals or a sum passes 2**63 pico-dollars."""

from __future__ import annotations

import csv
import io
import json
import random
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aicost.ledger import CALL, LedgerRow, open_store, spend, totals
from aicost.ledger.query import SpendGroup
from aicost.ledger.report import (TABLE_ROWS, Period, build_report, render_csv, render_json, render_table,
                                  write_report)
from aicost.ledger.row import TOKEN_FIELDS
from aicost.ledger.synthetic import Profile, fill
from aicost.pricing.money import canonical, format_usd

DAY = datetime(2026, 11, 2, tzinfo=timezone.utc)


# -- the general path, written the plain way: one object and one formatted cell at a time -----------------------
def _money(value):
    return "-" if value is None else format(canonical(value), "f")


def _label(value):
    return "(none)" if value is None else value


def _align(rows, left):
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(widths[i]) if i < left else c.rjust(widths[i]) for i, c in enumerate(r)).rstrip()
            for r in rows]


def _table(report, rows=0):
    """The table of the first ``rows`` groups (0: all), then one of the others, each measure summed."""
    total = report.totals.cost
    groups = report.groups
    if rows and len(groups) > rows:
        others = groups[rows:]
        label = [f"({len(others):,} others)", *[""] * (len(report.group_by) - 1)]
        groups = [*groups[:rows], SpendGroup.from_measures(dict(zip(report.group_by, label)),
                                                           [sum(m) for m in zip(*(g.measures() for g in others))])]
    header = [*report.group_by, "cost USD", "share", "calls", "unpriced", "input", "cached", "output", "reasoning",
              "cache hits", "saved USD", "refused", "stopped USD", "runs", "USD/run", "USD/success"]
    body = [[*(_label(v) for v in g.key.values()), _money(g.cost),
             "-" if not total else f"{(g.cost * 100 / total):.1f}%", f"{g.calls:,}", f"{g.unknown_cost_calls:,}",
             *(f"{g.tokens[n]:,}" for n in ("input_tokens", "cache_read_tokens", "output_tokens", "reasoning_tokens")),
             f"{g.cache_hits:,}", _money(g.saved_cost), f"{g.refusals:,}", _money(g.stopped_cost), f"{g.runs:,}",
             _money(g.cost_per_run), _money(g.cost_per_success)] for g in groups]
    return _align([header, *body], len(report.group_by))


def _group_dict(g):
    return {"key": g.key, "cost_usd": _money(g.cost), "calls": g.calls, "unknown_cost_calls": g.unknown_cost_calls,
            "estimated_calls": g.estimated_calls, "error_calls": g.error_calls, "tokens": g.tokens,
            "cache_hits": g.cache_hits, "saved_usd": _money(g.saved_cost), "refusals": g.refusals,
            "stopped_usd": _money(g.stopped_cost), "runs": g.runs, "succeeded_runs": g.succeeded_runs,
            "cost_per_run_usd": None if g.cost_per_run is None else _money(g.cost_per_run),
            "cost_per_success_usd": None if g.cost_per_success is None else _money(g.cost_per_success)}


def _json(report):
    p = report.period
    return json.dumps({
        "period": {"start": p.start.isoformat(), "end": p.end.isoformat(), "label": p.label},
        "compared_period": {"start": p.compared.start.isoformat(), "end": p.compared.end.isoformat()},
        "previous_period": {"start": p.previous.start.isoformat(), "end": p.previous.end.isoformat()},
        "ledger": report.ledger, "group_by": list(report.group_by), "empty": report.empty,
        "totals": _group_dict(report.totals), "groups": [_group_dict(g) for g in report.groups],
        "movers": [{"key": m.key, "previous_usd": _money(m.previous), "current_usd": _money(m.current),
                    "change_usd": _money(m.change), "change_pct": None if m.change_pct is None else str(m.change_pct)}
                   for m in report.movers],
    }, indent=2) + "\n"


_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "'")  # a CSV text cell starting so gets a leading '


def _csv(report):
    out = io.StringIO()
    writer = csv.writer(out)
    names = ["cost_usd", "calls", "unknown_cost_calls", "estimated_calls", "error_calls", *TOKEN_FIELDS, "cache_hits",
             "saved_usd", "refusals", "stopped_usd", "runs", "succeeded_runs", "cost_per_run_usd",
             "cost_per_success_usd"]
    writer.writerow([*report.group_by, *names])
    for g in (report.groups if report.group_by else [report.totals]):
        d = _group_dict(g)
        writer.writerow([*("" if v is None else "'" + v if v[:1] in _FORMULA_STARTS else v for v in g.key.values()),
                         *(d["tokens"][n] if n in TOKEN_FIELDS else ("" if d[n] is None else d[n]) for n in names)])
    return out.getvalue()


def _raw_groups(store, period, keys):
    """The groups summed over the raw rows and runs in SQL (no rollup read), in spend()'s order."""
    n = len(keys)
    groups = [SpendGroup.from_measures(dict(zip(keys, r[:n])), [Decimal(v) if isinstance(v, str) else v for v in r[n:]])
              for r in store.sum_rows(period.start, period.end, keys)]
    groups.sort(key=lambda g: (-g.cost, -g.calls, tuple(str(v) for v in g.key.values())))
    return groups


def _periods():
    return [Period(DAY, DAY + timedelta(days=4), "whole days"),
            Period(DAY + timedelta(hours=5), DAY + timedelta(days=3, hours=19), "hour edges"),
            Period(DAY + timedelta(hours=5, minutes=17), DAY + timedelta(days=3, hours=19, minutes=41),
                   "minute edges")]


@pytest.mark.parametrize("keys", [("day", "user"), ("user", "day"), ("hour", "team"), ("customer",), ("day", "tag"),
                                  ("team", "model"), ("day",), ()])
def test_bulk_report_equals_the_raw_rows_and_the_plain_renderings(ledger_url, keys):
    with open_store(ledger_url) as store:
        fill(store, Profile(days=4, teams=5, customers=15, calls=2500, seed=21, start=DAY), batch=700)
        for period in _periods():
            report = build_report(store, period=period, group_by=keys)
            assert report.totals == totals(store, period.start, period.end)
            if keys:
                groups = report.groups
                assert groups == _raw_groups(store, period, keys), period.label  # same sums, same order
                assert len(groups) > 3
            mover_keys = tuple(k for k in keys if k not in ("day", "hour"))
            if mover_keys:  # the movers against spend() of the mover keys in both periods, on its own
                before = {tuple(g.key.values()): g.cost for g in spend(store, period.previous.start,
                                                                        period.previous.end, mover_keys)}
                now = {tuple(g.key.values()): g.cost for g in spend(store, period.start, period.end, mover_keys)}
                for m in report.movers:
                    k = tuple(m.key.values())
                    assert (m.previous, m.current) == (before.get(k, 0), now.get(k, 0))
                assert report.movers and len(report.movers) == min(5, sum(before.get(k, 0) != now.get(k, 0)
                                                                          for k in set(before) | set(now)))
            if keys:
                text = render_table(report, 0)  # every group
                assert text[text.index("by "):].split("\n")[1:len(report.groups) + 2] == _table(report)
                for rows in (TABLE_ROWS, 3):  # the first rows, and a line for the others
                    text = render_table(report, rows)
                    shown = min(rows + 1, len(report.groups))
                    assert text[text.index("by "):].split("\n")[1:shown + 2] == _table(report, rows)
                    if rows < len(report.groups):
                        assert f"the {rows} largest of {len(report.groups):,} groups, then the others summed" in text
            assert render_json(report) == _json(report)
            assert render_csv(report) == _csv(report)


def test_ties_are_ordered_by_calls_then_key_values_as_text(ledger_url):
    """Equal costs (here: none at all) rank by calls, then by the key values as text, None as 'None'."""
    rows = []
    for i, (team, user, cost) in enumerate([("b", "u1", "1.5"), ("a", None, "1.5"), ("a", "u2", "1.5"),
                                             ("a", "Na", "1.5"), ("c", "u1", None), ("c", "u1", "2"),
                                             ("a", "u3", "0.25")]):
        rows.append(LedgerRow(span_id=f"{i:016x}", kind=CALL, time=DAY + timedelta(hours=3, minutes=i),
                              provider="openai", request_model="gpt-4o", cost=None if cost is None else Decimal(cost),
                              team=team, user=user))
    with open_store(ledger_url) as store:
        store.write(rows)
        report = build_report(store, period=Period(DAY, DAY + timedelta(days=1)), group_by=("team", "user"))
    assert [tuple(g.key.values()) for g in report.groups] == [
        ("c", "u1"), ("a", "Na"), ("a", None), ("a", "u2"), ("b", "u1"), ("a", "u3")]  # 'Na' < 'None' < 'u2'


def test_the_text_none_ranks_before_no_value_on_a_tie(ledger_url):
    """On a tie of cost and calls, a group whose value is the text 'None' comes before the group of no value, as
    SQL's COALESCE(value, 'None'), value IS NULL orders them (SQLite's integer path sorts in Python)."""
    rows = [LedgerRow(span_id=f"{i:016x}", kind=CALL, time=DAY + timedelta(hours=3, minutes=i), provider="openai",
                      request_model="gpt-4o", cost=Decimal("0.5"), team="a", user=user)
            for i, user in enumerate([None, "None", "Nonf", "Nond"])]
    with open_store(ledger_url) as store:
        store.write(rows)
        report = build_report(store, period=Period(DAY, DAY + timedelta(days=1)), group_by=("team", "user"))
    assert [g.key["user"] for g in report.groups] == ["Nond", "None", None, "Nonf"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([None, "None", "Nona", "a", "b", "\u00e9", "\U0001f600"]),
                          st.sampled_from([None, "None", "x", "y"]),
                          st.one_of(st.none(), st.integers(-3, 3)), st.integers(0, 2)),
                max_size=40, unique_by=lambda r: r[:2]))
def test_python_report_order_is_sqls_order_by(groups):
    """store._in_report_order (SQLite's integer path sorts its groups in Python) gives the order of the ORDER BY
    LedgerStore._final writes, run by SQLite on the same rows: ranks largest first and NULL last, then each value
    in code point order with no value read as 'None' and after it."""
    import sqlite3

    from aicost.ledger.store import _in_report_order

    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE r (g0, g1, cost, calls)")
    conn.executemany("INSERT INTO r VALUES (?, ?, ?, ?)", groups)
    expected = conn.execute(
        "SELECT g0, g1, 'rest' FROM r ORDER BY cost DESC, calls DESC, COALESCE(g0, 'None'), (g0 IS NULL), "
        "COALESCE(g1, 'None'), (g1 IS NULL)").fetchall()
    rows = [(g0, g1, "rest", cost, calls) for g0, g1, cost, calls in groups]
    assert _in_report_order(rows, 2, 2) == expected
    assert _in_report_order([r[:3] + r[4:] for r in rows], 2, 1) == conn.execute(
        "SELECT g0, g1, 'rest' FROM r ORDER BY calls DESC, COALESCE(g0, 'None'), (g0 IS NULL), "
        "COALESCE(g1, 'None'), (g1 IS NULL)").fetchall()


def test_integer_sums_fall_back_to_exact_decimals(ledger_url):
    """On SQLite a report sums money as 64-bit integers of pico-dollars: past 2**63 of them (about $9.2 million)
    SQLite raises rather than wraps, and an amount with more than 12 decimals is no whole number of them; both
    take the exact Decimal sum instead. (PostgreSQL sums NUMERIC.)"""
    from aicost.pricing.money import sum_usd

    amounts = [(0, "4999999.999999999999"), (1, "4999999.999999999999"), (2, "0.0000000000001"), (2, "1.25")]
    rows = [LedgerRow(span_id=f"{i:016x}", kind=CALL, time=DAY + timedelta(days=d, hours=10, minutes=i),
                      provider="openai", request_model="gpt-4o", cost=Decimal(a), team="t", user=f"u{i % 2}")
            for i, (d, a) in enumerate(amounts)]
    with open_store(ledger_url) as store:
        store.write(rows)
        whole = Period(DAY, DAY + timedelta(days=3))
        edges = Period(DAY + timedelta(hours=9, minutes=30), DAY + timedelta(days=2, hours=10, minutes=3))
        (team,) = spend(store, whole.start, whole.end, ["team"])  # day cells summed: past 2**63 units
        assert team.cost == sum_usd(Decimal(a) for _, a in amounts)
        (team,) = spend(store, edges.start, edges.end, ["team"])  # cells and raw edge rows, one of 13 decimals
        assert team.cost == sum_usd(Decimal(a) for _, a in amounts[:3])
        report = build_report(store, period=whole, group_by=("day", "user"))
        assert report.totals.cost == sum_usd(Decimal(a) for _, a in amounts)
        assert render_json(report) == _json(report)


@settings(max_examples=400, deadline=None)
@given(st.decimals(allow_nan=False, allow_infinity=False, places=None) | st.builds(
    lambda digits, exp: Decimal(digits).scaleb(exp), st.integers(-10**30, 10**30), st.integers(-40, 12)))
def test_money_text_fast_path_is_the_canonical_text(value):
    assert format_usd(value) == format(canonical(value), "f")


def test_a_random_month_by_day_and_user_renders_the_same_both_ways(tmp_path):
    """A bigger SQLite month (one cell per user and day: the path that reads cells without summing them)."""
    rng = random.Random(3)
    with open_store(f"sqlite:///{tmp_path / 'm.db'}") as store:
        fill(store, Profile(days=9, teams=8, customers=40, calls=6000, seed=rng.randrange(100), start=DAY))
        report = build_report(store, period=Period(DAY, DAY + timedelta(days=9)), group_by=("day", "user"))
        assert len(report.groups) > 500
        assert report.groups == _raw_groups(store, report.period, ("day", "user"))
        assert render_csv(report) == _csv(report) and render_json(report) == _json(report)
        # What `aicost report` writes, in pieces, is the same text; so for one group, totals only, and no rows.
        reports = [report, build_report(store, period=Period(DAY, DAY + timedelta(days=9)), group_by=("team",),
                                        where={"team": report.groups[0].key.get("team") or "t0"}),
                   build_report(store, period=report.period, group_by=()),
                   build_report(store, period=Period(DAY - timedelta(days=3), DAY), group_by=("day", "user"))]
        for each in reports:
            for fmt, render in (("table", render_table), ("csv", render_csv), ("json", render_json)):
                written = io.StringIO()
                write_report(each, fmt, written)
                assert written.getvalue() == render(each), (fmt, each.group_by)
            assert render_csv(each) == _csv(each) and render_json(each) == _json(each)


def test_each_format_reads_only_its_measures_and_writes_the_same_text(ledger_url):
    """`aicost report` reads of the groups only the measures its format shows (a table: 13 of 25): what it
    writes is the text of the report of every measure, for every grouping, including none."""
    from aicost.ledger.report import FORMAT_MEASURES
    from aicost.ledger.schema import MEASURES

    with open_store(ledger_url) as store:
        fill(store, Profile(days=3, teams=4, customers=9, calls=900, seed=5, start=DAY), batch=500)
        period = Period(DAY + timedelta(hours=3, minutes=10), DAY + timedelta(days=3))
        assert len(FORMAT_MEASURES["table"]) < len(MEASURES)
        for keys in [("day", "user"), ("team",), ("tag",), ("team", "model"), ()]:
            full = build_report(store, period=period, group_by=keys)
            for fmt, render in (("table", render_table), ("csv", render_csv), ("json", render_json)):
                read = build_report(store, period=period, group_by=keys, measures=FORMAT_MEASURES[fmt])
                assert read.table.measures == FORMAT_MEASURES[fmt]
                written = io.StringIO()
                write_report(read, fmt, written)
                assert written.getvalue() == render(full), (fmt, keys)
        with pytest.raises(ValueError, match="every measure"):  # no SpendGroup with made-up zeros
            build_report(store, period=period, group_by=("team",), measures=FORMAT_MEASURES["table"]).groups


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.decimals(min_value=-10**6, max_value=10**6, allow_nan=False, places=12),
                          st.integers(0, 10**6)), min_size=1, max_size=20))
def test_unit_cost_texts_are_the_canonical_text_of_each_quotient(pairs):
    """Unit costs for whole columns, made as text without a call per value, equal format_usd(MONEY_DIV(a, n))
    one by one (None where n is 0): amounts of either sign, quotients that round to -0 or to a whole number."""
    from aicost.ledger.query import MONEY_DIV, unit_cost_texts

    amounts, counts = [a for a, _ in pairs], [n for _, n in pairs]
    assert unit_cost_texts(amounts, counts) == [None if not n else format_usd(MONEY_DIV(a, n)) for a, n in pairs]
    assert unit_cost_texts([Decimal("-1E-12"), Decimal(20), Decimal(0), Decimal("0.000001")],
                           [3, 2, 7, 7]) == ["0", "10", "0", "0.0000001429"]


def test_a_count_whose_parts_cancel_out_is_still_read(ledger_url):
    """A report leaves out of its read a count that is 0 in every row and cell it would sum (a token class no
    call used); a count whose total is 0 only because its parts cancel (+5 and -5 tokens) is read and shown."""
    rows = [LedgerRow(span_id=f"{i:016x}", kind=CALL, time=DAY + timedelta(hours=h, minutes=7), provider="openai",
                      request_model="gpt-4o", input_tokens=tokens, cost=Decimal("0.5"), team="t", user=user)
            for i, (h, user, tokens) in enumerate([(1, "a", 5), (2, "b", -5), (3, "a", 0)])]
    with open_store(ledger_url) as store:
        store.write(rows)
        for period in (Period(DAY, DAY + timedelta(days=1)),
                       Period(DAY + timedelta(minutes=3), DAY + timedelta(hours=5))):
            for keys in (("day", "user"), ("user",), ("team", "user")):
                report = build_report(store, period=period, group_by=keys)
                assert report.totals.tokens["input_tokens"] == 0
                assert {g.key["user"]: g.tokens["input_tokens"] for g in report.groups} == {"a": 5, "b": -5}
                assert all(g.tokens["output_tokens"] == 0 for g in report.groups)
                assert render_csv(report) == _csv(report) and render_json(report) == _json(report)


# -- lines written by the database (PostgreSQL), build_report(lines=...) -------------------------------------------
_ODD_USERS = ['a,"b"', "é ü 𝄞", None, "tab\tnew\nline", "?%s %(x)s", "\x7f'quote'",
              # a spreadsheet would run these as formulas (OWASP's CSV injection); the CSV writes them as text
              '=HYPERLINK("http://x","y")', "+1", "-2", "@SUM(A1)", "\tx", "\rx", "'q"]


def _odd_rows():
    """Rows and runs whose users need quoting in CSV and escaping in JSON, costs of either sign and with ties
    in their unit costs (half a 10**-10 dollar), groups with and without runs."""
    from aicost.ledger import FeatureRun

    rows, runs = [], []
    costs = [Decimal("0.00000000015"), Decimal("0.00000000025"), Decimal("-0.00000000025"), Decimal("-1E-12"),
             Decimal("20"), Decimal("123456789.123456789012"), Decimal("-0.5"), Decimal("1.5"), Decimal("-2"),
             Decimal("0.25"), Decimal("-0.125"), Decimal("3"), Decimal("-7")]
    for i, (user, cost) in enumerate(zip(_ODD_USERS, costs)):
        for h in (2, 30):
            rows.append(LedgerRow(span_id=f"{i:08x}{h:08x}", kind=CALL, time=DAY + timedelta(hours=h, minutes=13),
                                  provider="openai", request_model="gpt-4o", input_tokens=7 * i, output_tokens=h,
                                  cost=cost, team="t", user=user, customer=f"c{i % 2}"))
        if i % 3:
            runs.append(FeatureRun(run_id=f"{i:016x}", feature="f", time=DAY + timedelta(hours=2, minutes=20),
                                   outcome="succeeded" if i % 2 else "failed", team="t", user=user))
    return rows, runs


def test_the_database_writes_csv_and_json_lines_as_the_report_would(ledger_url):
    """`aicost report --format csv|json` asks the database to write each group's line (build_report(lines=...)):
    PostgreSQL does (report._lines says so), SQLite does not (the measures are read as before). Either way the
    text is the report's: every grouping and path (cells read as they are, rollups summed, minute edges from the
    raw rows, two keys from the raw rows or from the cube, a filter), keys that need quoting or escaping, unit costs of either
    sign, ties rounded half-even, groups without runs; the same top movers, of a period under way too (read from
    the cost each line comes with); a report built for one format refuses to render another."""
    with open_store(ledger_url) as store:
        fill(store, Profile(days=2, teams=3, customers=6, calls=700, seed=8, start=DAY), batch=400)
        store.write(*_odd_rows())
        periods = [Period(DAY, DAY + timedelta(days=2)), Period(DAY + timedelta(minutes=7), DAY + timedelta(hours=40)),
                   Period(DAY - timedelta(days=5), DAY - timedelta(days=4)),
                   # under way: its top movers are the table's costs less the second day's (each line's cost)
                   Period(DAY, DAY + timedelta(days=2), elapsed=DAY + timedelta(hours=29))]
        for period in periods:
            for keys, where in [(("day", "user"), None), (("user",), None), (("hour", "user"), None),
                                (("team", "user"), None), (("user",), {"user": 'a,"b"'}), (("tag",), None), ((), None),
                                (("team", "model"), None), (("day", "team", "feature"), None),
                                (("feature",), {"team": "t"})]:
                full = build_report(store, period=period, group_by=keys, where=where)
                for fmt, render in (("csv", render_csv), ("json", render_json)):
                    read = build_report(store, period=period, group_by=keys, where=where, lines=fmt)
                    written = io.StringIO()
                    write_report(read, fmt, written)
                    assert written.getvalue() == render(full) == render(read), (fmt, keys, period)
                    assert read.movers == full.movers and read.totals == full.totals
                    wrote = store.dialect == "postgresql" and bool(keys)
                    assert (read._lines == fmt) == wrote and (read.table._lines is not None) == wrote
                    if wrote and len(read.table):
                        other = "json" if fmt == "csv" else "csv"
                        for render_other in (render_table, {"csv": render_csv, "json": render_json}[other]):
                            with pytest.raises(ValueError, match="written by the database"):
                                render_other(read)
        with pytest.raises(ValueError, match="lines is"):
            build_report(store, period=periods[0], group_by=("team",), lines="table")


def test_csv_text_cells_never_start_a_formula_and_numbers_stay_numbers(ledger_url):
    """Attribution can come from upstream baggage: a key cell a spreadsheet would run as a formula (= + - @, or a
    tab or carriage return first) is written with a leading ' (so is one starting with ', so dropping one ' undoes
    it), on both paths (PostgreSQL writing the lines, Python writing them); numbers are never touched, a negative
    cost stays -0.5 and the day stays a date."""
    keys = ("day", "team", "customer", "user")
    users = ['=HYPERLINK("http://x","y")', "+1", "-2", "@SUM(A1)", "\tx", "\rx", "'q", "a-b", "plain=1"]
    rows = [LedgerRow(span_id=f"{i:016x}", kind=CALL, time=DAY + timedelta(hours=1), provider="openai",
                      request_model="gpt-4o", input_tokens=3, cost=Decimal("-0.5"), team="-5", customer="+c", user=u)
            for i, u in enumerate(users)]
    with open_store(ledger_url) as store:
        store.write(rows, [])
        period = Period(DAY, DAY + timedelta(days=1))
        texts = []
        for lines in (None, "csv"):
            report = build_report(store, period=period, group_by=keys, lines=lines)
            assert (report._lines == "csv") == (lines == "csv" and store.dialect == "postgresql")
            texts.append(render_csv(report))
    assert texts[0] == texts[1]
    header, *cells = list(csv.reader(io.StringIO(texts[0])))
    written = {line[3]: dict(zip(header, line)) for line in cells}
    escaped = ['\'=HYPERLINK("http://x","y")', "'+1", "'-2", "'@SUM(A1)", "'\tx", "'\rx", "''q", "a-b", "plain=1"]
    assert sorted(written) == sorted(escaped)
    for line in written.values():
        assert (line["day"], line["team"], line["customer"]) == ("2026-11-02", "'-5", "'+c")
        assert (line["cost_usd"], line["calls"], line["input_tokens"]) == ("-0.5", "1", "3")


def test_a_line_postgresql_cannot_write_exactly_is_read_as_measures(ledger_url):
    """A unit cost the database might round otherwise than Python (an amount of more than 24 decimals): the
    groups are read as measures instead, and the text is the same."""
    for _, read, same in _each_format_with_a_cost(ledger_url, Decimal("0.123456789012345678901234567891")):
        assert read._lines is None and read.table._lines is None
        assert same


def _each_format_with_a_cost(ledger_url, cost):
    """The odd rows and one call costing ``cost``: per format (csv, json), the report built asking the database
    for its lines, and whether its text equals the report's built from measures."""
    rows, runs = _odd_rows()
    rows.append(LedgerRow(span_id="f" * 16, kind=CALL, time=DAY + timedelta(hours=3), provider="openai",
                          request_model="gpt-4o", cost=cost, team="t", user=_ODD_USERS[0]))
    with open_store(ledger_url) as store:
        store.write(rows, runs)
        period = Period(DAY, DAY + timedelta(days=2))
        for fmt, render in (("csv", render_csv), ("json", render_json)):
            read = build_report(store, period=period, group_by=("day", "user"), lines=fmt)
            yield fmt, read, render(read) == render(build_report(store, period=period, group_by=("day", "user")))


def test_trailing_zeros_do_not_stop_postgresql_writing_the_lines(ledger_url):
    """A cost stored with many trailing zeros (1.500000000000000000000000000: 27 decimals written, 1 that counts)
    is not past the exactness condition: PostgreSQL still writes the lines, the same text."""
    for fmt, read, same in _each_format_with_a_cost(ledger_url, Decimal("1.500000000000000000000000000")):
        assert read._lines == (fmt if ledger_url.startswith("postgresql") else None)
        assert same


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.decimals(min_value=-10**9, max_value=10**9, allow_nan=False, places=12),
                          st.integers(1, 10**9)), min_size=1, max_size=40))
def test_postgresql_unit_costs_are_python_s_quotients(pg_server, pairs):
    """The SQL that writes a unit cost into a line (exact division, half-even to 10 decimals, canonical text)
    gives unit_cost_texts (the text the report's Python writes, format_usd(MONEY_DIV(a, n))), and says so (its
    condition)."""
    import psycopg

    from aicost.ledger.query import unit_cost_texts
    from aicost.ledger.store import _pg_unit_cost

    pairs = pairs + [(Decimal("0.00000000015"), 1), (Decimal("0.00000000025"), 1), (Decimal("-0.00000000025"), 1),
                     (Decimal("-1E-12"), 3), (Decimal("5E-11"), 1), (Decimal("20"), 2), (Decimal("0"), 9),
                     (Decimal("0.000001"), 7), (Decimal("999999999999999999999.999999999999999999999999"), 3)]
    text, exact = _pg_unit_cost("r.s0", "r.s1")
    values = ", ".join(["(%s::numeric, %s::bigint)"] * len(pairs))
    sql = f"SELECT {text}, {exact} FROM (VALUES {{}}) AS r(s0, s1)"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        got = conn.execute(sql.format(values), [v for pair in pairs for v in pair]).fetchall()
        assert got == [(text, True) for text in unit_cost_texts([a for a, _ in pairs], [n for _, n in pairs])]
        # past the condition: said, not trusted
        assert conn.execute(sql.format("(%s::numeric, 3::bigint)"), [Decimal("1E-25")]).fetchone()[1] is False
        # a negative count: the rounding would follow the amount's sign, not the quotient's
        assert conn.execute(sql.format("(1::numeric, -3::bigint)")).fetchone()[1] is False
        # trailing zeros are not decimals: 27 written, 1 that counts
        assert conn.execute(sql.format("(%s::numeric, 3::bigint)"),
                            [Decimal("1.500000000000000000000000000")]).fetchone() == ("0.5", True)


def test_lines_read_at_once_without_chunked_streaming(ledger_url, monkeypatch):
    """The lines are read in chunks where psycopg and libpq can (libpq 17+), else all at once: the same text."""
    with open_store(ledger_url) as store:
        fill(store, Profile(days=2, teams=3, customers=6, calls=400, seed=4, start=DAY), batch=400)
        period = Period(DAY, DAY + timedelta(days=2))
        chunked = render_json(build_report(store, period=period, group_by=("day", "user"), lines="json"))
        if store.dialect == "postgresql":
            import psycopg

            monkeypatch.setattr(psycopg.capabilities, "has_stream_chunked", lambda check=False: False)
            streams = []
            monkeypatch.setattr(psycopg.Cursor, "stream", lambda *a, **kw: streams.append(a) or iter(()))
        at_once = build_report(store, period=period, group_by=("day", "user"), lines="json")
        assert render_json(at_once) == chunked == render_json(build_report(store, period=period,
                                                                           group_by=("day", "user")))
        if store.dialect == "postgresql":
            assert at_once._lines == "json" and not streams


def test_a_line_field_not_read_is_an_error_not_a_zero(ledger_url):
    """A line's field that is not among the measures read (not asked for, misspelled) raises, on either database,
    rather than being written as 0; a count skipped as 0 in every group is still written as 0."""
    from aicost.ledger.query import spend_table
    from aicost.ledger.store import _LineFormat

    rows = [LedgerRow(span_id=f"{i:016x}", kind=CALL, time=DAY + timedelta(hours=1), provider="openai",
                      request_model="gpt-4o", cost=Decimal("1.5"), team="t") for i in range(3)]
    with open_store(ledger_url) as store:
        store.write(rows, [])
        end = DAY + timedelta(days=1)
        line = _LineFormat(("", ",", "\n"), ("cost", "calls"))
        with pytest.raises(ValueError, match="calls"):
            spend_table(store, DAY, end, ("team",), measures=("cost",), _line=line)
        with pytest.raises(ValueError, match="callz"):
            spend_table(store, DAY, end, ("team",), measures=("cost", "calls"),
                        _line=_LineFormat(("", ",", "\n"), ("cost", "callz")))
        if store.dialect == "postgresql":  # the store itself refuses too (a caller that skips spend_table)
            with pytest.raises(ValueError, match="calls"):
                store.sum_rows(DAY, end, ("team",), measures=("cost",), _line=line)
        written = spend_table(store, DAY, end, ("team",), measures=("cost", "calls", "refusals"),
                              maybe_zero=("refusals",),
                              _line=_LineFormat(("", ",", ",", "\n"), ("cost", "calls", "refusals")))
        if store.dialect == "postgresql":
            assert list(written._lines) == ["4.5,3,0\n"]
        else:
            assert written.rows() == [("t", Decimal("4.5"), 3, 0)]


def test_a_line_of_more_fields_than_concat_takes(ledger_url):
    """PostgreSQL's concat() takes at most 100 arguments: a line of more fields (each a value and a separator)
    is still written, the same text."""
    from aicost.ledger.query import spend_table
    from aicost.ledger.store import _LineFormat

    rows = [LedgerRow(span_id=f"{i:016x}", kind=CALL, time=DAY + timedelta(hours=1), provider="openai",
                      request_model="gpt-4o", cost=Decimal("1.25"), team="t") for i in range(3)]
    slots = ("cost", "calls", ("cost", "calls")) * 40
    with open_store(ledger_url) as store:
        store.write(rows, [])
        table = spend_table(store, DAY, DAY + timedelta(days=1), ("team",), measures=("cost", "calls"),
                            _line=_LineFormat(("[",) + (";",) * (len(slots) - 1) + ("]",), slots))
        if store.dialect == "postgresql":
            assert list(table._lines) == ["[" + ";".join(["3.75;3;1.25"] * 40) + "]"]


def test_groups_of_a_report_whose_lines_the_database_wrote(ledger_url):
    """report.groups of a report built with lines=: on PostgreSQL, refused with a message saying what was read
    (the database's lines, and each group's cost alone); on SQLite, the groups as without lines=."""
    with open_store(ledger_url) as store:
        fill(store, Profile(days=1, teams=2, customers=3, calls=50, seed=2, start=DAY), batch=100)
        period = Period(DAY, DAY + timedelta(days=1))
        read = build_report(store, period=period, group_by=("team",), lines="csv")
        if store.dialect == "postgresql":
            with pytest.raises(ValueError, match="written by the database as csv lines"):
                read.groups
        else:
            assert read.groups == build_report(store, period=period, group_by=("team",)).groups


def test_write_report_writes_every_piece_after_empty_ones(monkeypatch):
    """write_report joins pieces 256 at a time: a run of 256 empty pieces does not end the text."""
    from aicost.ledger import report as report_module

    monkeypatch.setattr(report_module, "_csv_pieces", lambda report: ["a", *[""] * 600, "b"])
    out = io.StringIO()
    write_report(None, "csv", out)
    assert out.getvalue() == "ab"
