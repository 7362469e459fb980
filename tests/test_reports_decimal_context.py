"""The reports (forecasts, anomalies, alerts, the dashboard, their CLI tables) are called from host code, whose
thread may run a decimal context of its own: a low precision, another rounding, Inexact trapped. They read the
same as in the default context all the same. Before, at 4 digits, a forecast's projection could not be rounded
to 6 places (InvalidOperation), nor $12,345 to the dollar; a budget threshold of 80 % of $1,234.56 was
$987.6, so $987.62 of spend crossed it; and ROUND_DOWN turned 67 % of a budget into 66 %."""

from __future__ import annotations

import dataclasses
import decimal
import io
import re
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from aicost.budget import Budget
from aicost.cli import main
from aicost.ledger import CALL, LedgerRow, open_store
from aicost.reports import alerts as AL
from aicost.reports._format import usd
from reports_helpers import build_rows

pytest.importorskip("statsmodels")

from aicost.reports import anomalies as AN  # noqa: E402
from aicost.reports import forecast as F  # noqa: E402

HOST_CONTEXTS = {
    "prec=4": decimal.Context(prec=4),
    "ROUND_DOWN": decimal.Context(rounding=decimal.ROUND_DOWN),
    "Inexact trapped": decimal.Context(traps=[decimal.Inexact, decimal.InvalidOperation, decimal.DivisionByZero]),
}


@pytest.fixture(scope="module")
def dear_ledger(tmp_path_factory) -> str:
    """The reports' test ledger with every cost made dear and long (x 997.3, plus a ten-millionth): amounts of
    $10 to $1,000 with ten or more digits, which a host's 4-digit context cannot hold."""
    url = f"sqlite:///{tmp_path_factory.mktemp('ledger') / 'ledger.db'}"
    rows, runs = build_rows()
    rows = [dataclasses.replace(r, cost=r.cost * Decimal("997.3") + Decimal("0.0000001"), cost_parts={})
            if r.cost else r for r in rows]
    with open_store(url) as store:
        store.write(rows, runs)
    return url


def _cli(*argv: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    assert main(list(argv), out=out, err=err) == 0, err.getvalue()
    return out.getvalue()


@pytest.mark.parametrize("context", list(HOST_CONTEXTS.values()), ids=list(HOST_CONTEXTS))
def test_forecasts_and_anomalies_read_as_in_the_default_context(dear_ledger, context):
    def read() -> list:
        with open_store(dear_ledger) as store:
            forecasts = F.forecast_ledger(store, by="team", as_of=date(2026, 11, 20))
            spikes = AN.scan_ledger(store, date(2026, 11, 20), date(2026, 11, 30), calls=2)
        tables = [_cli(command, "--ledger", dear_ledger, *options, *form)
                  for command, options in (("forecast", ("--as-of", "2026-11-20")),
                                           ("anomalies", ("--since", "2026-11-20", "--until", "2026-11-30")))
                  for form in ((), ("--format", "json"))]
        ratios = [a.ratio for a in spikes]
        return [forecasts, [(a.actual, a.baseline, a.excess) for a in spikes], ratios, tables]

    expected = read()
    assert expected[0] and expected[1]  # forecasts of every team, the planted spike
    with decimal.localcontext(context):
        assert read() == expected


@pytest.mark.parametrize("context", list(HOST_CONTEXTS.values()), ids=list(HOST_CONTEXTS))
def test_budget_alerts_cross_the_exact_fraction_of_the_limit(tmp_path, context):
    """80 % of $1,234.56 is $987.648: $987.62 of spend has not crossed it (at 4 digits it was $987.6, crossed);
    $987.65 has. The alert's figures are as in the default context."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    now = datetime(2026, 11, 20, 12, tzinfo=timezone.utc)
    spent = {"under": "987.62", "over": "987.65"}
    with open_store(url) as store:
        store.write([LedgerRow(span_id=f"{i:016x}", kind=CALL, time=now - timedelta(hours=1), provider="openai",
                               request_model="gpt-4o", cost=Decimal(cost), team=team)
                     for i, (team, cost) in enumerate(spent.items())])
        budgets = [Budget(limit_usd=Decimal("1234.56"), window="month", scope="team", thresholds=(0.5, 0.8))]
        expected = AL.budget_threshold_alerts(store, budgets, now=now)
        with decimal.localcontext(context):
            alerts = AL.budget_threshold_alerts(store, budgets, now=now)
    assert [a.key for a in alerts] == [a.key for a in expected] == [
        "budget:team/month:over:month:2026-11:0.8", "budget:team/month:under:month:2026-11:0.5"]
    assert alerts == expected
    assert "$988 of $1,235 spent in month:2026-11 (80.0%)" in alerts[0].text


@pytest.mark.parametrize("context", list(HOST_CONTEXTS.values()), ids=list(HOST_CONTEXTS))
def test_amounts_and_shares_for_people_are_rounded_as_in_the_default_context(context):
    values = [Decimal("12345.678"), Decimal("-2.345"), Decimal("0.00012345"), Decimal("99.995")]
    expected = [usd(v) for v in values]
    alert = AL.budget_alert("b", None, "month", Decimal("0.8"), Decimal("3"), Decimal("2.0000001"))
    with decimal.localcontext(context):
        assert [usd(v) for v in values] == expected == ["$12,346", "$-2.34", "$0.0001", "$100.00"]
        assert AL.budget_alert("b", None, "month", Decimal("0.8"), Decimal("3"), Decimal("2.0000001")) == alert
    assert "(66.7%)" in alert.text


def test_the_dashboard_reads_as_in_the_default_context(dear_ledger, tmp_path):
    pytest.importorskip("plotly")
    pages = []
    for context in (decimal.Context(), *HOST_CONTEXTS.values()):
        page = tmp_path / f"{len(pages)}.html"
        with decimal.localcontext(context):
            _cli("dashboard", "--ledger", dear_ledger, "--out", str(page), "--since", "2026-11-02", "--until",
                 "2026-11-30")
        # The header's "generated <minute>" is the clock's: four builds under load can straddle a minute.
        pages.append(re.sub(r"generated \d{4}-\d\d-\d\d \d\d:\d\d UTC", "generated (minute)", page.read_text()))
    assert all("generated (minute)" in p for p in pages)
    assert pages[1:] == pages[:1] * 3
