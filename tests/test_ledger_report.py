"""`aicost report` and `aicost export --format focus` on real ledgers (SQLite and PostgreSQL): totals equal the
rows, unit costs, top movers, aligned tables, CSV / JSON, bad input; every exported FOCUS file passes the spec's
column rules, and its costs add up to the report's total."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
import sys
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from aicost.cli import main
from aicost.errors import ConfigurationError
from aicost.ledger import CACHE_HIT, CALL, REFUSAL, FeatureRun, LedgerRow, open_store, spend, totals
from aicost.ledger.focus import COLUMN_NAMES, export_focus
from aicost.ledger.report import Period, PeriodError, build_report, parse_period, render_table
from aicost.ledger.synthetic import Profile, fill

from ledger_helpers import sum_all_pairs, validate_focus

DAY = datetime(2026, 11, 20, tzinfo=timezone.utc)


def _cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(args), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def _two_weeks(url: str) -> None:
    """Week 1: search spends 1.00 per day; week 2: 3.00 per day, support stays at 0.50; runs with outcomes."""
    rows, runs = [], []
    for day in range(14):
        t = DAY + timedelta(days=day, hours=10)
        for team, cost in (("search", "1.00" if day < 7 else "3.00"), ("support", "0.50")):
            run_id = f"r{day:02d}{team}"
            rows.append(LedgerRow(span_id=f"{day:02d}{team:0<14}"[:16], kind=CALL, time=t, provider="openai",
                                  request_model="gpt-4o", input_tokens=1000, output_tokens=100,
                                  cost=Decimal(cost), cost_parts={"input": Decimal(cost)}, team=team,
                                  feature="answer", run_id=run_id))
            runs.append(FeatureRun(run_id=run_id, feature="answer", time=t + timedelta(seconds=1), team=team,
                                   outcome="succeeded" if day % 2 == 0 else "failed"))
    with open_store(url) as store:
        store.write(rows, runs)


def test_report_totals_unit_costs_and_movers(ledger_url):
    _two_weeks(ledger_url)
    with open_store(ledger_url, create=False) as store:
        week2 = Period(DAY + timedelta(days=7), DAY + timedelta(days=14))
        report = build_report(store, period=week2, group_by=("team",))
    assert report.totals.cost == Decimal("24.50") and report.totals.calls == 14
    search = next(g for g in report.groups if g.key["team"] == "search")
    assert search.cost == Decimal("21.00") and search.runs == 7 and search.succeeded_runs == 3  # days 8, 10, 12
    assert search.cost_per_run == Decimal("3.00") and search.cost_per_success == Decimal("7.00")
    (top, *rest) = report.movers
    assert top.key == {"team": "search"} and top.previous == Decimal("7.00") and top.current == Decimal("21.00")
    assert top.change_pct == Decimal("200.0") and rest == []  # support did not move


@pytest.mark.parametrize("by", [("team",), ("team", "customer")])  # the rollups, and the pair cells
def test_a_period_under_way_is_compared_with_the_same_hours_of_the_previous_one(ledger_url, by):
    """Steady spend (each team the same every day at 10:00) seen at 08:30, before today's call: top movers compare
    `7d`'s six whole days elapsed with the same six days of the week before, not with a whole week, where every
    team would look down by a day's spend; on the period's first day, the hours elapsed with the same hours."""
    rows = [LedgerRow(span_id=f"s{day:02d}{team}", kind=CALL, time=DAY + timedelta(days=day, hours=10),
                      provider="openai", request_model="gpt-4o", cost=Decimal(cost), team=team, customer="acme")
            for day in range(14) for team, cost in (("search", "1.25"), ("support", "0.50"))]
    # and today's, in the table but not compared: one before now, one later today (a clock ahead)
    rows += [LedgerRow(span_id=f"t{hour:02d}", kind=CALL, time=DAY + timedelta(days=14, hours=hour), provider="openai",
                       request_model="gpt-4o", cost=Decimal("7"), team="search", customer="acme") for hour in (8, 23)]
    now = DAY + timedelta(days=14, hours=8, minutes=30)
    period = parse_period("7d", now=now)
    assert (period.compared.start, period.compared.end) == (DAY + timedelta(days=8), DAY + timedelta(days=14))
    assert period.previous == Period(DAY + timedelta(days=1), DAY + timedelta(days=7), "previous period")
    with open_store(ledger_url) as store:
        store.write(rows)
        sum_all_pairs(store)  # to the last row's hour: the pair report reads the cells, and today's
        if by == ("team", "customer"):
            assert store.pairs_summed_before() == DAY + timedelta(days=14, hours=23)
        report = build_report(store, period=period, group_by=by)
        assert report.totals.calls == 14 and report.movers == []
        # on its first day (at 11:30, after the day's call): its hours against the same hours of the day before
        today = parse_period("today", now=DAY + timedelta(days=13, hours=11, minutes=30))
        assert today.previous == Period(DAY + timedelta(days=12), DAY + timedelta(days=12, hours=12),
                                        "previous period")
        assert build_report(store, period=today, group_by=by).movers == []
        # no previous period (from 1970): no movers, not every group "new"
        assert build_report(store, period=parse_period(since="1970-01-01", now=now), group_by=by).movers == []
    # a custom period from 23:00 compares whole days counted from its start: 13 h 45 min in, its hours
    custom = parse_period(since="2026-11-19T23:00", until="2026-11-26", now=datetime(2026, 11, 20, 12, 45,
                                                                                      tzinfo=timezone.utc))
    assert custom.compared.end == datetime(2026, 11, 20, 13, tzinfo=timezone.utc)
    # a period that has ended is compared whole
    assert parse_period("yesterday", now=now).previous == Period(DAY + timedelta(days=12), DAY + timedelta(days=13),
                                                                 "previous period")


def test_top_movers_are_the_largest_changes_with_ties_in_key_order(tmp_path):
    """Only the groups that can make the top become movers (a month by team and user is 32,000 groups): the
    result is still the largest absolute changes, ties at the limit in the order of their keys as text."""
    week1, week2 = DAY, DAY + timedelta(days=7)
    changes = {"a": 5, "b": -5, "c": 5, "d": 3, "e": 5, "f": 0, "g": 9}  # cost in week 2 minus week 1
    rows = []
    for team, change in changes.items():
        for k, (when, cost) in enumerate(((week1, 10), (week2, 10 + change))):
            rows.append(LedgerRow(span_id=f"m{team}{k}", kind=CALL, time=when + timedelta(hours=1), provider="openai",
                                  request_model="gpt-4o", cost=Decimal(cost), team=team, customer="x"))
    with open_store(f"sqlite:///{tmp_path / 'l.db'}") as store:
        store.write(rows)
        report = build_report(store, period=Period(week2, week2 + timedelta(days=7)), group_by=("team", "customer"),
                              movers=3)
    assert [(m.key["team"], m.change) for m in report.movers] == [("g", 9), ("a", 5), ("b", -5)]


def test_a_report_reads_one_state_of_the_ledger_while_a_writer_adds_rows(ledger_url, monkeypatch):
    """Totals, groups and movers are separate reads; a row another connection writes between them is in none of
    them, so the groups add up to the totals (it is in the next report)."""
    import aicost.ledger.report as report_module

    _two_weeks(ledger_url)
    late = LedgerRow(span_id="late000000000000", kind=CALL, time=DAY + timedelta(days=8, hours=11),
                     provider="openai", request_model="gpt-4o", input_tokens=7, cost=Decimal("5"),
                     cost_parts={"input": Decimal("5")}, team="search", feature="answer")
    real_spend_table = report_module.spend_table

    def spend_table_after_a_write(*args, **kwargs):
        if kwargs.get("maybe_zero") is not None:  # the groups' read, after the totals': a writer commits a row
            with open_store(ledger_url) as writer:
                writer.write([late])
        return real_spend_table(*args, **kwargs)

    monkeypatch.setattr(report_module, "spend_table", spend_table_after_a_write)
    week2 = Period(DAY + timedelta(days=7), DAY + timedelta(days=14))
    with open_store(ledger_url, create=False) as store:
        report = build_report(store, period=week2, group_by=("team",), movers=0)
        assert report.totals.cost == Decimal("24.50")
        assert sum(g.cost for g in report.groups) == Decimal("24.50")
        assert sum(g.tokens["input_tokens"] for g in report.groups) == report.totals.tokens["input_tokens"] == 14_000
        monkeypatch.setattr(report_module, "spend_table", real_spend_table)
        again = build_report(store, period=week2, group_by=("team",), movers=0)
    assert again.totals.cost == sum(g.cost for g in again.groups) == Decimal("29.50")


def test_build_report_names_an_unknown_measure():
    with pytest.raises(ValueError, match=r"unknown measures \[.costs.\]; valid: calls, unknown_cost_calls"):
        build_report(None, DAY, DAY + timedelta(days=1), measures=["costs"])


def test_cli_table_is_aligned_and_formats_agree(ledger_url):
    _two_weeks(ledger_url)
    code, out, err = _cli("report", "--ledger", ledger_url, "--since", "2026-11-27", "--until", "2026-12-04",
                          "--by", "team")
    assert code == 0, err
    assert "Total spend   24.5 USD   (14 calls)" in out
    table = out[out.index("by team"):out.index("Top movers")].strip().splitlines()[1:]
    header, *body = table
    assert [line.split()[0] for line in body] == ["search", "support"]  # largest first
    ends = {len(line) for line in table}
    assert len(ends) == 1  # every line of the table ends at the same column: numbers right-aligned
    cost_col = header.index("cost USD") + len("cost USD")
    assert all(line[:cost_col].endswith(("21", "3.5")) for line in body)
    assert re.search(r"search\s+7\s+21\s+\+14\s+\+200\.0%", out)
    code, out_json, _ = _cli("report", "--ledger", ledger_url, "--since", "2026-11-27", "--until", "2026-12-04",
                             "--by", "team", "--format", "json")
    data = json.loads(out_json)
    assert data["totals"]["cost_usd"] == "24.5" and data["groups"][0]["cost_per_success_usd"] == "7"
    assert data["movers"][0]["change_usd"] == "14"
    code, out_csv, _ = _cli("report", "--ledger", ledger_url, "--since", "2026-11-27", "--until", "2026-12-04",
                            "--by", "day,team", "--format", "csv")
    lines = list(csv.DictReader(io.StringIO(out_csv)))
    assert len(lines) == 14 and sum(Decimal(x["cost_usd"]) for x in lines) == Decimal("24.5")
    assert {x["input_tokens"] for x in lines} == {"1000"}


def test_cli_csv_and_json_are_the_full_report_s_text(ledger_url, monkeypatch):
    """`aicost report --format csv|json` has the database write the lines where it can (PostgreSQL) and a CSV
    reads no movers (it prints none): what it prints is still the text of the report of every measure."""
    from aicost.ledger import report as report_module

    _two_weeks(ledger_url)
    asked = []
    build = report_module.build_report
    monkeypatch.setattr(report_module, "build_report", lambda *a, **kw: asked.append(kw) or build(*a, **kw))
    period = parse_period(since="2026-11-27", until="2026-12-04")
    with open_store(ledger_url) as store:
        for keys in ("team", "day,team"):
            full = build(store, period=period, group_by=keys.split(","))
            for fmt, render in (("csv", report_module.render_csv), ("json", report_module.render_json)):
                code, out, err = _cli("report", "--ledger", ledger_url, "--since", "2026-11-27", "--until",
                                      "2026-12-04", "--by", keys, "--format", fmt)
                assert code == 0, err
                assert out == render(full), (keys, fmt)
                assert asked[-1]["lines"] == fmt and asked[-1]["movers"] == (0 if fmt == "csv" else 5)
    assert full.movers  # the JSON printed them


@pytest.mark.parametrize("database", ["app tables", "empty file", "postgresql"])
def test_a_reader_never_writes_a_ledger_into_a_database_that_holds_none(database, tmp_path, request):
    """``--ledger`` pointing at the app's own database (or an empty file, or a PostgreSQL database without the
    ledger) is refused, exit status 2 with one line naming the setting, and the database is left as it was: a
    reader never creates a ledger. A writer (``create=True``) still makes its ledger there."""
    import sqlite3

    if database == "postgresql":
        import psycopg

        from ledger_helpers import fresh_pg_database

        url = fresh_pg_database(request.getfixturevalue("pg_server"))
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE users (id integer PRIMARY KEY)")

        def tables():
            with psycopg.connect(url, autocommit=True) as conn:
                return sorted(r[0] for r in conn.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"))
    else:
        path = tmp_path / "app.db"
        url = str(path)
        if database == "app tables":
            with sqlite3.connect(path) as conn:
                conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY)")
            conn.close()
        else:
            path.write_bytes(b"")
        before = path.read_bytes()

        def tables():
            assert path.read_bytes() == before  # not even switched to WAL
            conn = sqlite3.connect(path)
            try:
                return sorted(r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))
            finally:
                conn.close()
    expected = [] if database == "empty file" else ["users"]
    for command in (["report"], ["export", "--format", "focus", "--out", str(tmp_path / "focus.csv")]):
        code, out, err = _cli(*command, "--ledger", url)
        assert code == 2 and out == "", err
        assert err.count("\n") == 1 and "--ledger: no ledger at" in err and "no aicost_schema table" in err, err
        assert tables() == expected
    with pytest.raises(ConfigurationError, match="^ledger: no ledger at .*not an aicost ledger"):
        open_store(url, create=False, setting="ledger")
    assert tables() == expected
    open_store(url).close()  # a writer makes its ledger beside the app's tables
    if database != "postgresql":
        before = path.read_bytes()
    assert "aicost_schema" in tables() and set(expected) <= set(tables())
    with open_store(url, create=False) as store:  # and a reader reads it
        assert totals(store, DAY, DAY + timedelta(days=1)).calls == 0


def test_cli_empty_range_unknown_key_and_bad_ledger(ledger_url, tmp_path):
    _two_weeks(ledger_url)
    code, out, _ = _cli("report", "--ledger", ledger_url, "--period", "2025-01")
    assert code == 0 and "No spend recorded between 2025-01-01" in out
    code, _, err = _cli("report", "--ledger", ledger_url, "--by", "team,colour")
    assert code == 2 and "unknown group-by key 'colour'; valid keys: team, feature, customer, user, model" in err
    code, _, err = _cli("report", "--ledger", f"sqlite:///{tmp_path}/nope.db")
    assert code == 2 and "--ledger: no ledger at" in err
    code, _, err = _cli("report", "--ledger", "redis://x")
    assert code == 2 and "--ledger: unsupported ledger URL" in err
    code, _, err = _cli("report", "--ledger", ledger_url, "--where", "colour=red")
    assert code == 2 and "unknown filter key 'colour'; valid keys: team, feature, user, customer" in err
    code, _, err = _cli("report", "--ledger", ledger_url, "--period", "fortnight")
    assert code == 2 and "unknown period 'fortnight'; use today, yesterday" in err


def test_periods():
    now = datetime(2026, 12, 4, 20, 30, tzinfo=timezone.utc)
    assert parse_period("yesterday", now=now) == Period(datetime(2026, 12, 3, tzinfo=timezone.utc),
                                                        datetime(2026, 12, 4, tzinfo=timezone.utc), "yesterday")
    # N days are whole UTC days through today, as a bill's days are: the default 7d, and 30d; under way, they
    # compare with the previous period to the end of the current hour
    assert parse_period(None, now=now) == Period(datetime(2026, 11, 28, tzinfo=timezone.utc),
                                                 datetime(2026, 12, 5, tzinfo=timezone.utc), "7d",
                                                 elapsed=datetime(2026, 12, 4, 21, tzinfo=timezone.utc))
    assert parse_period("30d", now=now).start == datetime(2026, 11, 5, tzinfo=timezone.utc)
    one, today = parse_period("1d", now=now), parse_period("today", now=now)
    assert (one.start, one.end) == (today.start, today.end)
    # N hours are the last N hours up to the end of the current hour
    hours = parse_period("48h", now=now)
    assert hours.end == datetime(2026, 12, 4, 21, tzinfo=timezone.utc) and hours.end - hours.start == timedelta(hours=48)
    assert parse_period("last-month", now=now).start == datetime(2026, 11, 1, tzinfo=timezone.utc)
    # a calendar month compares with the calendar month before: whole, or as many days as have elapsed
    utc = timezone.utc
    assert parse_period("2026-03", now=now).previous == Period(datetime(2026, 2, 1, tzinfo=utc),
                                                               datetime(2026, 3, 1, tzinfo=utc), "previous month")
    assert parse_period("2026-02", now=now).previous == Period(datetime(2026, 1, 1, tzinfo=utc),
                                                               datetime(2026, 2, 1, tzinfo=utc), "previous month")
    assert parse_period("this-month", now=now).previous == Period(  # December 4th: November 1st to 3rd
        datetime(2026, 11, 1, tzinfo=utc), datetime(2026, 11, 4, tzinfo=utc), "previous month")
    march_31 = parse_period("this-month", now=datetime(2027, 3, 31, 12, tzinfo=utc))
    assert march_31.previous == Period(datetime(2027, 2, 1, tzinfo=utc), datetime(2027, 3, 1, tzinfo=utc),
                                       "previous month")  # 30 days elapsed: all of February
    assert not parse_period("1970-01", now=now).previous.end > datetime(1970, 1, 1, tzinfo=utc)  # none
    # --until alone starts where 7d does; a start before 1970 is refused, not a traceback; from 1970 on, the
    # previous period starts no earlier
    assert parse_period(until="2026-12-01", now=now).start == datetime(2026, 11, 28, tzinfo=timezone.utc)
    for since in ("0001-01-01", "1969-12-31"):
        with pytest.raises(PeriodError, match="before 1970-01-01"):
            parse_period(since=since, until="2026-12-01", now=now)
    everything = parse_period(since="1970-01-01", until="9999-01-01", now=now)
    assert everything.previous.start == datetime(1970, 1, 1, tzinfo=timezone.utc) == everything.previous.end
    assert parse_period("2026-02", now=now).end == datetime(2026, 3, 1, tzinfo=timezone.utc)


@pytest.mark.parametrize("period", ["9999-12", "9999-12-31"])
def test_a_period_past_the_last_date_is_refused_not_a_traceback(period, tmp_path):
    """A period ending after 9999-12-31 cannot be a datetime: its end overflowed (OverflowError, a traceback and
    exit status 1) where every other bad period is refused with the accepted forms, exit status 2."""
    with pytest.raises(PeriodError, match="9999-12-31"):
        parse_period(period)
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    open_store(url).close()
    err = io.StringIO()
    assert main(["report", "--ledger", url, "--period", period], out=io.StringIO(), err=err) == 2
    assert "9999-12-31" in err.getvalue()
    assert parse_period("9999-11").end == datetime(9999, 12, 1, tzinfo=timezone.utc)  # the last whole month


@pytest.mark.parametrize("file_format", ["csv", "parquet"])
def test_focus_export_passes_the_spec_rules_and_adds_up(ledger_url, tmp_path, file_format):
    with open_store(ledger_url) as store:
        fill(store, Profile(days=3, teams=5, customers=12, calls=1500, seed=11))
        first, last = store.time_range()
        end = last + timedelta(seconds=1)
        target = tmp_path / f"focus.{file_format}"
        progress = io.StringIO()
        result = export_focus(store, first, end, target, progress=True, progress_stream=progress)
        t = totals(store, first, end)
    assert validate_focus(target) == []
    assert result.charges > result.calls > 0
    assert result.total == t.cost  # every known dollar, exactly once
    assert result.unknown_price_calls == t.unknown_cost_calls > 0  # left out, and said so
    assert "exporting FOCUS:" in progress.getvalue() and progress.getvalue().endswith("\n")
    if file_format == "csv":
        with open(target, newline="") as f:
            rows = list(csv.DictReader(f))
        assert tuple(rows[0].keys()) == COLUMN_NAMES
        assert sum(Decimal(r["BilledCost"]) for r in rows) == t.cost
        input_rows = [r for r in rows if r["x_TokenClass"] == "input"]
        assert all(r["ConsumedUnit"] == "Tokens" and r["ServiceCategory"] == "AI and Machine Learning"
                   for r in input_rows)
        tags = json.loads(input_rows[0]["Tags"])
        assert {"team", "feature", "customer", "user", "env"} <= set(tags)
    else:
        import pyarrow.parquet as pq

        table = pq.read_table(target)
        assert sum(table.column("BilledCost").to_pylist()) == t.cost


def test_focus_csv_string_cells_never_start_a_formula(ledger_url, tmp_path):
    """A model name is the caller's: a FOCUS CSV string cell a spreadsheet would run as a formula gets a leading '
    (the file still passes the spec's rules); the costs, negative ones included, stay numbers, exactly; the
    attribution is inside the Tags JSON, unchanged; Parquet, typed, is written as it is."""
    row = LedgerRow(span_id="a" * 16, kind=CALL, time=DAY + timedelta(hours=3), provider="openai",
                    request_model="=cmd|' /C calc'!A0", response_model="-m", input_tokens=4, cost=Decimal("-0.5"),
                    cost_parts={"input": Decimal("-0.5")}, team="@team", user="+u", run_id="\tr")
    with open_store(ledger_url) as store:
        store.write([row], [])
        for name in ("focus.csv", "focus.parquet"):
            export_focus(store, DAY, DAY + timedelta(days=1), tmp_path / name)
            assert validate_focus(tmp_path / name) == []
    with open(tmp_path / "focus.csv", newline="") as f:
        (charge,) = csv.DictReader(f)
    assert (charge["x_Model"], charge["x_RequestModel"], charge["SkuId"]) == ("'-m", "\'=cmd|' /C calc'!A0", "openai/-m")
    assert charge["ChargeDescription"].startswith("'-m: ") and charge["x_RunId"] == "'\tr"
    assert (charge["BilledCost"], charge["ListUnitPrice"], charge["ConsumedQuantity"]) == ("-0.5", "-0.125", "4")
    assert json.loads(charge["Tags"]) == {"team": "@team", "user": "+u"}
    import pyarrow.parquet as pq

    (typed,) = pq.read_table(tmp_path / "focus.parquet").to_pylist()
    assert (typed["x_Model"], typed["x_RunId"], typed["BilledCost"]) == ("-m", "\tr", Decimal("-0.5"))


def test_focus_validator_catches_broken_files(tmp_path):
    good = tmp_path / "good.csv"
    with open_store(f"sqlite:///{tmp_path / 'l.db'}") as store:
        fill(store, Profile(days=1, teams=2, customers=3, calls=60, seed=2))
        first, last = store.time_range()
        export_focus(store, first, last + timedelta(seconds=1), good)
    assert validate_focus(good) == []
    text = good.read_text()
    header, first_row, *rest = text.splitlines()
    broken = tmp_path / "broken.csv"
    bad = first_row.replace("AI and Machine Learning", "AI").replace("Usage-Based", "Sometimes", 1)
    broken.write_text("\n".join([header.replace("x_Model", "Model"), bad, *rest]) + "\n")
    problems = validate_focus(broken)
    assert any("ServiceCategory 'AI' is not an allowed value" in p for p in problems)
    assert any("ChargeFrequency 'Sometimes'" in p for p in problems)
    assert any("column Model: not a FOCUS column and not prefixed x_" in p for p in problems)


def _focus_charges(path) -> dict[str, dict]:
    """The charges of a FOCUS file by token class, amounts as Decimals whatever the format."""
    amounts = ("ListCost", "ListUnitPrice", "ContractedCost", "ContractedUnitPrice", "PricingQuantity",
               "ConsumedQuantity", "BilledCost")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        charges = pq.read_table(path).to_pylist()
    else:
        with open(path, newline="") as f:
            charges = [{k: (Decimal(v) if k in amounts else v) for k, v in c.items()} for c in csv.DictReader(f)]
    return {c["x_TokenClass"]: c for c in charges}


def _step_priced_call() -> LedgerRow:
    """A Claude call priced step by step (a server-side tool loop), one step over the 200K band: its input class is
    210,001 tokens at $6/M and 7 at $3/M, and 1.260027 / 210,008 has no end; its output, 10 tokens at each band's
    rate, averages to a rate that does."""
    from aicost.pricing.engine import price_call
    from aicost.usage import Usage

    steps = (Usage(input_tokens=210_001, output_tokens=10), Usage(input_tokens=7, output_tokens=10))
    cost = price_call("anthropic", "claude-sonnet-4-5", Usage(input_tokens=210_008, output_tokens=20),
                      long_context=True, steps=steps)
    assert cost.tier == "input>200000" and dict(cost.parts) == {"input": Decimal("1.260027"),
                                                                "output": Decimal("0.000375")}
    return LedgerRow(span_id="b" * 16, kind=CALL, time=DAY + timedelta(hours=5), provider="anthropic",
                     operation="chat", request_model="claude-sonnet-4-5", response_model="claude-sonnet-4-5",
                     input_tokens=210_008, output_tokens=20, cost=cost.total, cost_parts=dict(cost.parts),
                     price_source=cost.source, team="search")


@pytest.mark.parametrize("file_format", ["csv", "parquet"])
def test_focus_a_class_billed_at_two_rates_keeps_list_cost_equal_to_unit_price_times_quantity(tmp_path, file_format):
    """Before: the input's unit price was 1.260027 / 210,008 cut at 60 digits, so in the CSV ListUnitPrice x
    PricingQuantity != ListCost, and the Parquet export raised (more than 24 decimal places). Now that class is one
    request at its exact cost (the ledger does not itemise it by rate), its tokens still the consumed quantity."""
    row = _step_priced_call()
    target = tmp_path / f"steps.{file_format}"
    with open_store(f"sqlite:///{tmp_path / 'l.db'}") as store:
        store.write([row], [])
        result = export_focus(store, DAY, DAY + timedelta(days=1), target)
    assert validate_focus(target) == []
    charges = _focus_charges(target)
    mixed, output = charges["input"], charges["output"]
    assert (mixed["PricingQuantity"], mixed["PricingUnit"]) == (1, "Requests")
    assert mixed["ListUnitPrice"] == mixed["ContractedUnitPrice"] == mixed["ListCost"] == Decimal("1.260027")
    assert (mixed["ConsumedQuantity"], mixed["ConsumedUnit"]) == (210_008, "Tokens")
    assert mixed["SkuPriceId"] == "anthropic/claude-sonnet-4-5/standard/input/per-request"
    assert mixed["ChargeDescription"].endswith("(standard tier; no exact unit rate, priced per request)")
    assert (output["PricingQuantity"], output["PricingUnit"]) == (20, "Tokens")
    assert output["ListUnitPrice"] * output["PricingQuantity"] == output["ListCost"] == Decimal("0.000375")
    assert result.total == sum(c["BilledCost"] for c in charges.values()) == row.cost


def test_focus_export_that_fails_leaves_no_partial_file(tmp_path):
    """A cost Parquet cannot hold exactly (25 decimals) fails the export, never rounded. Before, the CLI exited 2
    and left a 0-row .parquet, which a FinOps tool would load as the period's (empty) charges; now nothing is left
    at the name, and an earlier export there stays whole."""
    url = f"sqlite:///{tmp_path / 'l.db'}"
    tiny = Decimal("0.0000000000000000000000001")
    row = LedgerRow(span_id="c" * 16, kind=CALL, time=DAY + timedelta(hours=1), provider="openai",
                    request_model="gpt-4o", input_tokens=1, cost=tiny, cost_parts={"input": tiny})
    with open_store(url) as store:
        store.write([row], [])
    fresh, earlier = tmp_path / "fresh.parquet", tmp_path / "earlier.parquet"
    earlier.write_bytes(b"the previous export")
    for target in (fresh, earlier):
        code, out, err = _cli("export", "--ledger", url, "--format", "focus", "--period", "2026-11",
                              "-o", str(target))
        assert code == 2 and "more than 24 decimal places" in err and out == ""
    assert not fresh.exists()
    assert earlier.read_bytes() == b"the previous export"
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")]
    code, out, err = _cli("export", "--ledger", url, "--format", "focus", "--period", "2026-11",
                          "-o", str(tmp_path / "fine.csv"))  # CSV holds it exactly
    assert code == 0, err
    assert validate_focus(tmp_path / "fine.csv") == []


def _as_an_earlier_aicost(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows written from here on as an aicost before the ledger's bound of a row ($10^11, 30 decimals:
    ``rollup.SUMMABLE_LIMIT``) wrote them, up to $10^24 with 36 decimals: a ledger it left still holds them."""
    from aicost.ledger import rollup

    monkeypatch.setattr(rollup, "SUMMABLE_LIMIT", Decimal("1E+24"))
    monkeypatch.setattr(rollup, "SUMMABLE_DECIMALS", 36)


@pytest.mark.parametrize("amount", ["100000000000000", "123456789012345.5", "-100000000000000"])
def test_focus_parquet_refuses_an_amount_of_10_to_the_14_in_one_line_of_its_own(amount, tmp_path, monkeypatch):
    """$10^14 or more does not fit Parquet's decimal128(38, 24). The export failed with pyarrow's words ("Decimal
    type with precision 39 does not fit into precision inferred..."), which name neither the amount's column nor
    its row nor what is accepted. Now aicost says so in one line, exit status 2, and leaves no file. (No cost the
    ledger takes now is that large, but a ledger an earlier aicost wrote may hold one, and a token count may be.)"""
    _as_an_earlier_aicost(monkeypatch)
    url = f"sqlite:///{tmp_path / 'l.db'}"
    big = Decimal(amount)
    row = LedgerRow(span_id="d" * 16, kind=CALL, time=DAY + timedelta(hours=1), provider="openai",
                    request_model="gpt-4o", input_tokens=1, cost=big, cost_parts={"input": big})
    with open_store(url) as store:
        store.write([row], [])
    target = tmp_path / "focus.parquet"
    code, out, err = _cli("export", "--ledger", url, "--format", "focus", "--period", "2026-11", "-o", str(target))
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and err.startswith("aicost export: "), err
    assert f"{amount}" in err and "BilledCost" in err and "d" * 16 in err, err  # the amount, its column and row
    assert "below $10^14" in err and "at most 24 decimal places" in err and "csv" in err, err  # what is accepted
    assert "precision" not in err, err  # not pyarrow's words
    assert not target.exists() and not [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")]


def test_focus_parquet_names_a_row_whose_span_id_holds_control_characters_in_one_line(tmp_path):
    """The Parquet export's refusal names the ledger row by its span id, which a span from elsewhere may fill with
    anything: a newline in it split the "one line" error, and the line after it read as aicost's own. The id is
    quoted (repr) now, its control characters escaped."""
    url = f"sqlite:///{tmp_path / 'l.db'}"
    span_id = "d" * 16 + "\naicost export: wrote 0 rows\r\x1b[2J"
    row = LedgerRow(span_id=span_id, kind=CALL, time=DAY + timedelta(hours=1), provider="openai",
                    request_model="gpt-4o", input_tokens=10**14, cost=Decimal(1), cost_parts={"input": Decimal(1)})
    with open_store(url) as store:
        store.write([row], [])
    target = tmp_path / "focus.parquet"
    code, out, err = _cli("export", "--ledger", url, "--format", "focus", "--period", "2026-11", "-o", str(target))
    assert (code, out) == (2, "") and err.count("\n") == 1 and err.endswith("\n"), err
    assert f"(ledger row {span_id!r})" in err and err[:-1].isprintable(), err
    assert not target.exists()


def test_focus_parquet_refuses_a_quantity_of_10_to_the_14_in_one_line_of_its_own(tmp_path):
    """A quantity is held as Parquet holds an amount: 10^14 tokens do not fit either, and the export says which
    column and row, as for a cost, and what Parquet holds in quantities, not dollars: the message said "$10^14" of
    a token count."""
    url = f"sqlite:///{tmp_path / 'l.db'}"
    row = LedgerRow(span_id="d" * 16, kind=CALL, time=DAY + timedelta(hours=1), provider="openai",
                    request_model="gpt-4o", input_tokens=10**14, cost=Decimal(1), cost_parts={"input": Decimal(1)})
    with open_store(url) as store:
        store.write([row], [])
    target = tmp_path / "focus.parquet"
    code, out, err = _cli("export", "--ledger", url, "--format", "focus", "--period", "2026-11", "-o", str(target))
    assert (code, out) == (2, "") and err.count("\n") == 1, err
    assert "ConsumedQuantity 100000000000000 has a size of 10^14 or more" in err and "d" * 16 in err, err
    assert "holds quantities below 10^14 with at most 24 decimal places" in err and "$" not in err, err
    assert "holds every quantity exactly" in err, err
    assert not target.exists()


def test_focus_parquet_holds_the_largest_amount_it_can_exactly(tmp_path, monkeypatch):
    """$99,999,999,999,999 and 24 nines of decimals is 38 digits: it fits, whatever the thread's context rounds."""
    import pyarrow.parquet as pq

    _as_an_earlier_aicost(monkeypatch)
    url = f"sqlite:///{tmp_path / 'l.db'}"
    largest = Decimal("99999999999999." + "9" * 24)
    with open_store(url) as store:
        store.write([LedgerRow(span_id="e" * 16, kind=CALL, time=DAY + timedelta(hours=1), provider="openai",
                               request_model="gpt-4o", input_tokens=1, cost=largest, cost_parts={"input": largest})], [])
    with open_store(url) as store:
        export_focus(store, DAY, DAY + timedelta(days=1), tmp_path / "focus.parquet")
    assert pq.read_table(tmp_path / "focus.parquet").column("BilledCost").to_pylist() == [largest]


def test_focus_export_says_its_own_error_whatever_the_hosts_contexts_trap(tmp_path, monkeypatch):
    """The check that a cost fits Parquet's 24 decimals rounds in a context of aicost's own. Before, it rounded in
    a context made at export time from ``decimal.DefaultContext``: a host's that trapped Inexact turned the clear
    "more than 24 decimal places" (which the CLI reports) into a bare ``decimal.Inexact``."""
    import decimal

    url = f"sqlite:///{tmp_path / 'l.db'}"
    tiny = Decimal("0.0000000000000000000000001")
    with open_store(url) as store:
        store.write([LedgerRow(span_id="c" * 16, kind=CALL, time=DAY + timedelta(hours=1), provider="openai",
                               request_model="gpt-4o", input_tokens=1, cost=tiny, cost_parts={"input": tiny})], [])
    monkeypatch.setitem(decimal.DefaultContext.traps, decimal.Inexact, True)
    host = decimal.Context(prec=4, traps=[decimal.Inexact, decimal.Rounded, decimal.InvalidOperation])
    with decimal.localcontext(host), open_store(url) as store:
        with pytest.raises(ValueError, match="BilledCost 0.0000000000000000000000001 has more than 24 decimal places"):
            export_focus(store, DAY, DAY + timedelta(days=1), tmp_path / "focus.parquet")
    assert not (tmp_path / "focus.parquet").exists()


def test_focus_parquet_without_pyarrow_is_an_error_naming_the_extra(tmp_path, monkeypatch):
    """docs/ledger.md: `aicost export --format focus ... -o llm-spend.parquet`, and a failed export is exit status
    2 with nothing left at the name. pyarrow comes with the `ledger` extra only (not with the README's
    `aicost-otel[openai,anthropic,offline,otlp]`); without it the CLI died with a traceback (status 1, a
    RuntimeError the command did not catch). Now it says what to install, as a missing psycopg does."""
    url = f"sqlite:///{tmp_path / 'l.db'}"
    cost = Decimal("0.0025")
    row = LedgerRow(span_id="d" * 16, kind=CALL, time=DAY + timedelta(hours=1), provider="openai",
                    request_model="gpt-4o", input_tokens=1000, cost=cost, cost_parts={"input": cost})
    with open_store(url) as store:
        store.write([row], [])
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # `import pyarrow` raises ImportError, as when not installed
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    target = tmp_path / "llm-spend.parquet"
    code, out, err = _cli("export", "--ledger", url, "--format", "focus", "--period", "2026-11", "-o", str(target))
    assert code == 2 and out == ""
    assert err.startswith("aicost export: ") and "aicost-otel[ledger]" in err and "Traceback" not in err
    assert not target.exists() and not [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")]


def test_focus_summary_says_what_is_not_in_the_file(tmp_path):
    """docs/ledger.md: unknown-price calls, cache hits and refusals, and calls that billed nothing are 'said in the
    command's summary'. Before, it named only the unknown-price calls: the others were never printed (the $0 call
    not even counted), so the file had fewer calls than `aicost report` with no word why."""
    url = f"sqlite:///{tmp_path / 'l.db'}"
    t = DAY + timedelta(hours=2)

    def call(n, cost, **kw):
        return LedgerRow(span_id=f"{n:016x}", kind=CALL, time=t, provider="openai", request_model="gpt-4o",
                         input_tokens=1000, cost=cost, cost_parts={"input": cost} if cost else {}, team="search",
                         **kw)

    rows = [call(1, Decimal("0.5")), call(2, Decimal(0)), call(3, None, price_known=False),
            LedgerRow(span_id="4" * 16, kind=CACHE_HIT, time=t, cost=Decimal(0), saved_cost=Decimal("0.2")),
            LedgerRow(span_id="5" * 16, kind=REFUSAL, time=t, cost=Decimal(0), stopped_cost=Decimal("0.3"))]
    with open_store(url) as store:
        store.write(rows, [])
    code, out, err = _cli("export", "--ledger", url, "--format", "focus", "--period", "2026-11",
                          "-o", str(tmp_path / "f.csv"))
    assert code == 0, err
    assert out.rstrip("\n").endswith("f.csv; 1 calls with an unknown price are not in it (see aicost report); "
                                      "2 cache hits and refusals and 1 calls that billed nothing are not in it "
                                      "(no money was billed)")
    with open_store(url, create=False) as store:
        result = export_focus(store, t, t + timedelta(hours=1), tmp_path / "f.parquet")
    assert (result.calls, result.free_calls, result.skipped_rows, result.unknown_price_calls) == (1, 1, 2, 1)
    # an output that cannot be written is an error naming the command (status 2), as docs/ledger.md says
    code, out, err = _cli("export", "--ledger", url, "--format", "focus", "--period", "2026-11",
                          "-o", str(tmp_path / "missing-dir" / "f.csv"))
    assert code == 2 and err.startswith("aicost export: ") and "missing-dir" in err


def test_cli_export_writes_focus(ledger_url, tmp_path):
    with open_store(ledger_url) as store:
        fill(store, Profile(days=2, teams=3, customers=5, calls=200, seed=4, start=DAY))
    target = tmp_path / "month.parquet"
    code, out, err = _cli("export", "--ledger", ledger_url, "--format", "focus", "--period", "2026-11",
                          "-o", str(target))
    assert code == 0, err
    assert re.match(r"wrote [\d,]+ FOCUS 1\.3 charges \([\d,]+ calls, [\d.]+ USD\) to .*month\.parquet; [\d,]+ calls "
                    r"with an unknown price are not in it", out)
    assert err == ""  # no progress unless on a terminal or asked for
    assert validate_focus(target) == []
    with open_store(ledger_url, create=False) as store:
        by_team = spend(store, DAY, DAY + timedelta(days=2), ["team"])
    report_total = sum(g.cost for g in by_team)
    assert Decimal(re.search(r"calls, ([\d.]+) USD", out).group(1)) == report_total


def test_render_table_says_when_empty(tmp_path):
    with open_store(f"sqlite:///{tmp_path / 'e.db'}") as store:
        report = build_report(store, period=Period(DAY, DAY + timedelta(days=1)), group_by=("team",))
    assert report.empty and "the ledger has no rows in this period" in render_table(report)


def test_quickstart_writes_a_ledger_that_aicost_report_reads(tmp_path):
    """The README's quickstart ends with `aicost report` on the ledger examples/quickstart.py just wrote."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    env.pop("AICOST_LEDGER", None)
    for _ in range(2):  # a second run starts a fresh demo ledger: nothing counted twice
        done = subprocess.run([sys.executable, str(root / "examples" / "quickstart.py")], capture_output=True,
                              text=True, timeout=180, cwd=tmp_path, env=env)
        assert done.returncode == 0, done.stderr[-2000:]
    total = next(line for line in done.stdout.splitlines() if line.startswith("all calls")).split()[2]
    report = subprocess.run([sys.executable, "-m", "aicost.cli", "report", "--by", "team", "--format", "json"],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    assert report.returncode == 0, report.stderr
    data = json.loads(report.stdout)
    assert Decimal(data["totals"]["cost_usd"]) == Decimal(total) and data["totals"]["calls"] == 8
    assert {g["key"]["team"] for g in data["groups"]} == {"research", "search", "support"}


@pytest.mark.parametrize("keys", [("team",), ("user",), ("customer",), ("feature",), ("day", "team"), ("hour",),
                                  ("model",), ("tag",)])
def test_report_totals_equal_the_ledger_totals_for_every_grouping(tmp_path, keys):
    """build_report sums the groups into the totals when the grouping partitions the rows; it must still equal
    totals() read on its own, over a period whose edges fall inside an hour (raw rows) and whole days (rollups)."""
    url = f"sqlite:///{tmp_path / 'l.db'}"
    with open_store(url) as store:
        fill(store, Profile(days=3, teams=5, customers=12, calls=1500, seed=4, start=DAY))
        period = Period(DAY + timedelta(hours=5, minutes=17), DAY + timedelta(days=2, hours=19, minutes=41))
        report = build_report(store, period=period, group_by=keys)
        assert report.totals == totals(store, period.start, period.end)
        assert report.totals.calls > 0 and report.totals.runs > 0


def test_amounts_are_written_and_read_as_plain_decimals_whatever_the_threads_decimal_context(tmp_path):
    """The rows' money is written as text by the writing thread (the app's, or the writer's: a copy of
    decimal.DefaultContext), whose context may write exponents in lower case (capitals=0). The text is plain
    all the same: it was '1e-7', which SQLite's integer sums read as a dollar (three calls of $0.0000001 to
    $0.0000003 reported $6), and the table's unit costs were written '3.000e-7'."""
    import decimal

    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    rows = [LedgerRow(span_id=f"{i:016x}", kind=CALL, time=DAY + timedelta(hours=1), provider="openai",
                      request_model="gpt-4o-mini", cost=Decimal("1E-7") * (i + 1), team="t", run_id="r")
            for i in range(3)]
    run = FeatureRun(run_id="r", feature="f", time=DAY + timedelta(hours=2), outcome="succeeded", calls=3, team="t")
    with decimal.localcontext(decimal.Context(capitals=0)):
        with open_store(url) as store:
            store.write(rows, [run, dataclasses.replace(run, run_id="s")])
            report = build_report(store, period=Period(DAY, DAY + timedelta(days=1)), group_by=("team",))
            lines = render_table(report)
    assert report.totals.cost == Decimal("0.0000006")
    assert "Total spend   0.0000006 USD" in lines and "0.0000003 USD per run" in lines
    assert not re.search(r"\de-", lines) and re.search(r"^t +0\.0000006 .* 0\.0000003 +0\.0000003$", lines, re.M)
    code, out, err = _cli("report", "--ledger", url, "--since", "2026-11-20", "--until", "2026-11-21", "--by", "team",
                          "--format", "csv")
    assert code == 0 and not re.search(r"\de-", out) and "t,0.0000006,3," in out and ",0.0000003," in out, out
