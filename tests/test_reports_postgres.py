"""Forecasts, spikes and the dashboard read a PostgreSQL ledger exactly as they read SQLite (a real server)."""

from __future__ import annotations

import io
import json
import re

import pytest

from aicost.cli import main
from ledger_helpers import fresh_pg_database
from reports_helpers import SPIKE_DAY, SPIKE_TEAM, write_ledger

pytest.importorskip("statsmodels")
pytest.importorskip("plotly")
pytest.importorskip("psycopg")

PERIOD = ["--since", "2026-11-02", "--until", "2026-11-30"]


def run_cli(*argv: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    assert main(list(argv), out=out, err=err) == 0, err.getvalue()
    return out.getvalue()


def test_postgres_and_sqlite_ledgers_give_the_same_forecasts_spikes_and_dashboard_totals(tmp_path, pg_server):
    sqlite = write_ledger(tmp_path / "ledger.db")
    postgres = write_ledger(fresh_pg_database(pg_server))
    results = {}
    for name, url in (("sqlite", sqlite), ("postgresql", postgres)):
        forecast = json.loads(run_cli("forecast", "--ledger", url, "--as-of", "2026-11-20", "--format", "json"))
        spikes = json.loads(run_cli("anomalies", "--ledger", url, *PERIOD, "--format", "json"))
        page = tmp_path / f"{name}.html"
        run_cli("dashboard", "--ledger", url, "--out", str(page), *PERIOD)
        totals = dict(re.findall(r'data-total="([a-z_]+)" data-exact="([^"]*)"', page.read_text()))
        report = json.loads(run_cli("report", "--ledger", url, "--format", "json", *PERIOD))["totals"]
        assert totals["cost_usd"] == report["cost_usd"] and totals["calls"] == str(report["calls"])
        results[name] = (forecast, spikes, totals)
    assert results["postgresql"] == results["sqlite"]
    forecast, spikes, _ = results["postgresql"]
    assert {f["group"] for f in forecast} == {"search", "support", "research"}
    assert (SPIKE_TEAM, SPIKE_DAY.isoformat()) in {(a["group"], a["start"]) for a in spikes}
