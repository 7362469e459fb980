"""Spend spikes (robust STL baseline) per team / feature / model / customer, with the calls behind them."""

from __future__ import annotations

import io
import json
import random
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from aicost.cli import main
from reports_helpers import SPIKE_CALLS, SPIKE_COST, SPIKE_CUSTOMER, SPIKE_DAY, SPIKE_MODEL, SPIKE_TEAM, build_rows
from reports_helpers import unpriced_rows, write_ledger

pytest.importorskip("statsmodels")

from aicost.reports import anomalies as A  # noqa: E402


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def ledger(tmp_path_factory):
    return write_ledger(tmp_path_factory.mktemp("ledger") / "ledger.db")


@pytest.fixture(scope="module")
def clean_ledger(tmp_path_factory):
    return write_ledger(tmp_path_factory.mktemp("clean") / "ledger.db", spike=False)


def test_the_planted_spike_is_found_in_every_dimension_with_the_calls_that_caused_it(ledger):
    code, out, err = run_cli("anomalies", "--ledger", ledger, "--since", "2026-11-02", "--until", "2026-11-30",
                             "--format", "json", "--calls", "5")
    assert code == 0, err
    found = json.loads(out)
    assert {(a["dimension"], a["group"]) for a in found} == {
        ("team", SPIKE_TEAM), ("feature", "answer"), ("model", SPIKE_MODEL), ("customer", SPIKE_CUSTOMER)}
    spike_ids = {r.span_id for r in build_rows()[0] if r.request_model == SPIKE_MODEL}
    assert len(spike_ids) == SPIKE_CALLS
    for a in found:
        assert a["start"] == SPIKE_DAY.isoformat()
        assert Decimal(a["actual_usd"]) >= SPIKE_CALLS * SPIKE_COST
        assert Decimal(a["baseline_usd"]) < Decimal("1")  # the team's usual ~$0.45 a day, not dragged up
        assert len(a["calls"]) == 5
        assert {c["span_id"] for c in a["calls"]} <= spike_ids  # the costliest calls are the spike's own
        assert all(c["cost_usd"] == str(SPIKE_COST) and c["model"] == SPIKE_MODEL for c in a["calls"])


def test_table_output_names_the_spike_and_its_calls(ledger):
    code, out, err = run_cli("anomalies", "--ledger", ledger, "--since", "2026-11-20", "--until", "2026-11-30",
                             "--by", "team", "--calls", "2")
    assert code == 0, err
    assert f"team {SPIKE_TEAM}  {SPIKE_DAY}  spent 30.51 USD against a baseline of" in out
    assert out.count(SPIKE_MODEL) == 2  # two call lines


def test_no_false_alarm_on_ordinary_traffic(clean_ledger):
    code, out, err = run_cli("anomalies", "--ledger", clean_ledger, "--since", "2026-11-02", "--until", "2026-11-30")
    assert code == 0, err
    assert "No spikes" in out


def test_hourly_granularity_finds_the_hour(ledger):
    code, out, err = run_cli("anomalies", "--ledger", ledger, "--since", "2026-11-20", "--until", "2026-11-30",
                             "--by", "team", "--granularity", "hour", "--format", "json", "--calls", "1")
    assert code == 0, err
    (a,) = json.loads(out)
    assert a["start"] == datetime(2026, 11, 26, 3, tzinfo=timezone.utc).isoformat()


def test_bad_input_and_empty_periods(ledger):
    code, out, err = run_cli("anomalies", "--ledger", ledger, "--by", "team,department")
    assert code == 2 and "unknown dimension 'department'" in err and "customer" in err
    code, out, err = run_cli("anomalies", "--ledger", ledger, "--since", "2025-01-01", "--until", "2025-01-08")
    assert code == 0 and "No spend recorded between 2025-01-01" in out
    with pytest.raises(ValueError, match="granularity"):
        A.detect("team", {}, granularity="week")


@pytest.mark.parametrize("min_usd", [Decimal("0.1"), "0.1", 0.1])
def test_min_usd_is_the_amount_written_float_or_not(min_usd):
    """``detect(min_usd=0.1)``: a float made ``Decimal(0.1)``, 0.1000000000000000055..., so a spike exceeding its
    baseline by exactly $0.10 was not one, where ``Decimal("0.1")`` found it; and a host that traps
    ``FloatOperation`` got an exception. A float is read as written (its repr), as a budget's limit is; what is not
    an amount is refused, naming ``min_usd``."""
    import decimal

    points = [(date(2026, 11, 1) + timedelta(days=i), Decimal("0.05")) for i in range(20)]
    points.append((date(2026, 11, 21), Decimal("0.15")))  # $0.10 over a flat $0.05 a day
    with decimal.localcontext() as ctx:
        ctx.traps[decimal.FloatOperation] = True
        (spike,) = A.detect("team", {"t": points}, min_usd=min_usd)
    assert spike.excess == Decimal("0.1")
    for bad in (float("nan"), "ten", True):
        with pytest.raises(ValueError, match="min_usd"):
            A.detect("team", {"t": points}, min_usd=bad)


def test_detection_rate_on_injected_spikes():
    """40 synthetic groups, a month each, spikes of 3-6x injected into ~4 % of days: most are found, and
    ordinary days are almost never flagged. (The full figures are in docs/reports.md.)"""
    rng = random.Random(3)
    series, injected = {}, {}
    for g in range(40):
        base, weekend = rng.uniform(5, 200), rng.uniform(0.3, 0.9)
        points, spikes = [], set()
        for i in range(30):
            d = date(2026, 11, 1) + timedelta(days=i)
            v = base * (weekend if d.weekday() >= 5 else 1) * rng.lognormvariate(0, 0.15)
            if i >= 3 and rng.random() < 0.04:
                v *= rng.uniform(3, 6)
                spikes.add(d)
            points.append((d, Decimal(str(round(v, 6)))))
        series[f"t{g}"], injected[f"t{g}"] = points, spikes
    result = A.evaluate(series, injected)
    assert result.injected >= 20
    assert result.recall >= 0.7
    assert result.false_alarms_per_1000 <= 5


def test_a_spike_on_the_last_day_of_the_ledger_is_found(tmp_path):
    """The overnight case: the spike is the newest bucket, where a smoother would bend to meet it."""
    url = write_ledger(tmp_path / "ends-on-spike.db", days=(SPIKE_DAY - date(2026, 11, 2)).days + 1)
    code, out, err = run_cli("anomalies", "--ledger", url, "--since", "2026-11-20", "--until", "2026-11-27",
                             "--by", "team", "--format", "json")
    assert code == 0, err
    (a,) = json.loads(out)
    assert (a["group"], a["start"]) == (SPIKE_TEAM, SPIKE_DAY.isoformat())
    assert Decimal(a["baseline_usd"]) < Decimal("1")


def test_a_bucket_cut_by_the_end_of_the_scan_is_explained_by_its_calls_before_the_end(tmp_path):
    """Scanning to a moment inside a day (today, or a replayed "now"): a costlier call later that day is neither
    in the bucket's spend nor among the calls behind it."""
    from aicost.ledger import CALL, LedgerRow, open_store

    url = write_ledger(tmp_path / "ledger.db")
    later = LedgerRow(span_id="f" * 16, kind=CALL, time=datetime(2026, 11, 26, 5, tzinfo=timezone.utc),
                      provider="openai", operation="chat", request_model="gpt-4o", response_model="gpt-4o",
                      input_tokens=1, output_tokens=1, cost=Decimal("5"), cost_parts={"input": Decimal("5")},
                      price_source="test", team=SPIKE_TEAM, feature="answer", customer=SPIKE_CUSTOMER)
    with open_store(url) as store:
        store.write([later])
        now = datetime(2026, 11, 26, 3, 20, tzinfo=timezone.utc)
        (a,) = A.scan_ledger(store, date(2026, 11, 20), now, dimensions=("team",), calls=3)
    assert (a.group, a.start) == (SPIKE_TEAM, SPIKE_DAY)
    assert a.actual < SPIKE_CALLS * SPIKE_COST  # only the spike calls made by 03:20 (and the day's usual spend)
    assert a.calls and all(c.time < now for c in a.calls), [c.time for c in a.calls]


@pytest.mark.parametrize("option, value, accepted", [
    ("--z", "nan", "a finite number >= 0"), ("--z", "inf", "a finite number >= 0"),
    ("--z", "-2", "a finite number >= 0"), ("--min-ratio", "nan", "a finite number >= 0"),
    ("--calls", "-1", "a whole number >= 0"),
])
def test_cli_anomalies_refuses_numbers_that_would_change_the_scan_unseen(ledger, capsys, option, value, accepted):
    with pytest.raises(SystemExit) as exit_:
        main(["anomalies", "--ledger", ledger, "--period", "2026-11", "--by", "team", option, value])
    assert exit_.value.code == 2
    assert f"argument {option}: must be {accepted}, got '{value}'" in capsys.readouterr().err


@pytest.mark.parametrize("by", ["", ",", " , "])
def test_cli_anomalies_refuses_a_by_naming_no_dimension(ledger, by):
    """It scanned nothing and answered "No spikes"."""
    code, out, err = run_cli("anomalies", "--ledger", ledger, "--period", "2026-11", "--by", by)
    assert code == 2 and "No spikes" not in out
    assert "--by names no dimension" in err and "team, feature, customer" in err


def test_a_spike_with_calls_of_unknown_price_says_its_spend_is_a_lower_bound(tmp_path):
    """Unpriced calls by the spiking team on the spike day: the spike's spend leaves them out, and says so."""
    from aicost.ledger import open_store

    url = write_ledger(tmp_path / "ledger.db")
    with open_store(url) as store:
        store.write(unpriced_rows(SPIKE_TEAM, 1, 7, start=SPIKE_DAY) + unpriced_rows("labs", 3, 2, first_id=70_000_000))
    period = ["--since", "2026-11-20", "--until", "2026-11-30", "--by", "team"]
    code, out, err = run_cli("anomalies", "--ledger", url, *period, "--format", "json")
    assert code == 0, err
    (a,) = json.loads(out)
    assert (a["group"], a["start"], a["unknown_cost_calls"]) == (SPIKE_TEAM, SPIKE_DAY.isoformat(), 7)
    code, out, err = run_cli("anomalies", "--ledger", url, *period)
    assert code == 0, err
    assert "7 calls with an unknown price, not in the total" in out  # labs' calls are from Nov 2, before the period
    assert f"team {SPIKE_TEAM}  {SPIKE_DAY}  spent 30.51 USD + 7 calls of unknown price against a baseline" in out
