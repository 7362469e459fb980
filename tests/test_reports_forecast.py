"""Month-end forecasts (statsmodels STL + ETS) over plain series and over a real SQLite ledger."""

from __future__ import annotations

import io
import json
import math
import random
from datetime import date, timedelta
from decimal import Decimal

import pytest

from aicost.cli import main
from reports_helpers import unpriced_rows, write_ledger

pytest.importorskip("statsmodels")

from aicost.reports import forecast as F  # noqa: E402


def weekly_series(days: int, start: date = date(2026, 10, 5), base: float = 100.0, growth: float = 0.004,
                  seed: int = 1) -> list[tuple[date, Decimal]]:
    """Weekday traffic, quieter weekends, slow growth, 10 % noise: what an AI feature's spend looks like."""
    rng = random.Random(seed)
    out = []
    for i in range(days):
        d = start + timedelta(days=i)
        level = base * (1 + growth) ** i * (0.4 if d.weekday() >= 5 else 1.0)
        out.append((d, Decimal(str(round(level * rng.lognormvariate(0, 0.1), 6)))))
    return out


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_month_end_projection_is_actual_plus_forecast_and_its_interval_holds_the_truth():
    series = weekly_series(61)  # 2026-10-05 .. 2026-12-04
    as_of = date(2026, 11, 18)
    f = F.forecast_period("search", series, as_of=as_of, budget=Decimal("2000"))
    assert f.method == F.METHOD_STL_ETS
    assert (f.period_start, f.period_end) == (date(2026, 11, 1), date(2026, 11, 30))
    # The spend so far is exact: the Decimal sum of the days up to as_of, not a model output.
    assert f.actual == sum(v for d, v in series if date(2026, 11, 1) <= d <= as_of)
    truth = sum(v for d, v in series if date(2026, 11, 1) <= d <= date(2026, 11, 30))
    assert f.low <= truth <= f.high
    assert abs(f.projected - truth) / truth < Decimal("0.05")
    assert f.low < f.projected < f.high
    assert f.over_budget and f.over_budget_likely  # ~2,700 projected against 2,000


def test_short_histories_get_simpler_models_and_too_short_gets_none():
    series = weekly_series(10, start=date(2026, 11, 1))
    f = F.forecast_period("new-team", series, as_of=date(2026, 11, 10))
    assert f.method == F.METHOD_ETS and f.low is not None
    f = F.forecast_period("newest", series[:3], as_of=date(2026, 11, 3))
    assert f.method == F.METHOD_NONE
    assert f.projected == f.actual == sum(v for _, v in series[:3]) and f.low is None


def test_a_group_that_never_spent_projects_zero_and_missing_days_are_zero_spend():
    f = F.forecast_period("idle", [(date(2026, 11, 1), Decimal(0))] * 1, as_of=date(2026, 11, 20))
    assert f.projected == 0
    dense = F.dense_daily([(date(2026, 11, 3), Decimal("2")), (date(2026, 11, 3), Decimal("1"))],
                          date(2026, 11, 1), date(2026, 11, 4))
    assert dense == [0, 0, Decimal(3), 0]


def test_backtest_scores_the_method_against_a_run_rate_baseline():
    series = {f"team{i}": weekly_series(56, base=50 + 30 * i, growth=0.01 * (i - 1), seed=i) for i in range(3)}
    result = F.backtest(series, horizon=14, min_history=21, step=7)
    assert result.forecasts == 3 * 4  # origins at days 21, 28, 35, 42
    assert 0 <= result.wape < 0.15 and math.isfinite(result.naive_wape)
    # On trending series the model beats "last week's mean x horizon", which cannot see a trend.
    assert result.wape < result.naive_wape
    assert 0 <= result.coverage <= 1
    with pytest.raises(ValueError, match="no origin"):
        F.backtest(series, horizon=60)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="level"):
        F.forecast_period("x", weekly_series(20), as_of=date(2026, 10, 20), level=1.5)
    with pytest.raises(ValueError, match="outside"):
        F.forecast_period("x", weekly_series(20), as_of=date(2026, 10, 20), period_start=date(2026, 11, 1))


# --------------------------------------------------------------------------------------------- over the ledger
@pytest.fixture(scope="module")
def ledger(tmp_path_factory):
    return write_ledger(tmp_path_factory.mktemp("ledger") / "ledger.db", spike=False)


def test_cli_forecast_per_team_table_and_json(ledger):
    code, out, err = run_cli("forecast", "--ledger", ledger, "--as-of", "2026-11-20")
    assert code == 0, err
    assert "month-end spend for 2026-11, as of 2026-11-20 (20 of 30 days actual), 80% interval" in out
    assert {"search", "support", "research"} <= set(line.split()[0] for line in out.splitlines()[2:])
    code, out, err = run_cli("forecast", "--ledger", ledger, "--as-of", "2026-11-20", "--format", "json",
                             "--by", "global")
    data = json.loads(out)
    assert [d["group"] for d in data] == ["(all)"]
    (d,) = data
    assert Decimal(d["low_usd"]) <= Decimal(d["projected_usd"]) <= Decimal(d["high_usd"])
    assert d["method"] == F.METHOD_STL_ETS
    # The three teams' actual spend adds up to the global actual, exactly.
    code, out, _ = run_cli("forecast", "--ledger", ledger, "--as-of", "2026-11-20", "--format", "json")
    assert sum(Decimal(t["actual_usd"]) for t in json.loads(out)) == Decimal(d["actual_usd"])


def test_cli_forecast_against_monthly_budgets(ledger, tmp_path):
    budgets = tmp_path / "budgets.toml"
    budgets.write_text('[[budgets]]\nlimit_usd = "10"\nwindow = "month"\nscope = "team"\n\n'
                       '[[budgets]]\nlimit_usd = "500"\nwindow = "month"\nname = "company"\n\n'
                       '[[budgets]]\nlimit_usd = "1"\nwindow = "day"\n')
    code, out, err = run_cli("forecast", "--ledger", ledger, "--as-of", "2026-11-20", "--budgets", str(budgets),
                             "--format", "json")
    assert code == 0, err
    data = {d["group"]: d for d in json.loads(out)}
    # One forecast per team for the per-team budget, one for the global one; the daily budget has no month-end.
    assert set(data) == {"team/month[search]", "team/month[support]", "team/month[research]", "company"}
    assert all(data[f"team/month[{t}]"]["over_budget"] for t in ("search", "support", "research"))  # ~$13 each
    assert data["company"]["over_budget"] is False and data["company"]["budget_usd"] == "500"


def test_cli_forecast_bad_input(ledger, tmp_path):
    code, out, err = run_cli("forecast", "--ledger", ledger, "--by", "department")
    assert code == 2
    assert "unknown dimension 'department'" in err and "team, feature, customer" in err
    empty = tmp_path / "empty.db"
    from aicost.ledger import open_store

    open_store(f"sqlite:///{empty}").close()
    code, out, err = run_cli("forecast", "--ledger", f"sqlite:///{empty}")
    assert code == 0 and "the ledger is empty" in out
    code, out, err = run_cli("forecast", "--ledger", ledger, "--as-of", "2025-03-10")
    assert code == 0 and "no spend in the ledger in the 8 weeks up to 2025-03-10" in out


def test_cli_forecast_of_monthly_budgets_without_spend_says_no_spend_not_no_budget(ledger, tmp_path):
    """A monthly budget over a ledger with no spend before --as-of (the quickstart's ledger, whose rows are all of
    today) used to answer "no monthly budget in the file", exit status 2: the file has one, the ledger has no spend
    to forecast, and that is what it says, exit status 0, as without --budgets. A file without a monthly budget
    is still refused."""
    budgets = tmp_path / "budgets.toml"
    budgets.write_text('[[budgets]]\nlimit_usd = "500"\nwindow = "month"\n\n'
                       '[[budgets]]\nlimit_usd = "20"\nwindow = "month"\nscope = "team"\n')
    code, out, err = run_cli("forecast", "--ledger", ledger, "--as-of", "2025-03-10", "--budgets", str(budgets))
    assert (code, err) == (0, "")
    assert "no spend in the ledger in the 8 weeks up to 2025-03-10" in out
    daily = tmp_path / "daily.toml"
    daily.write_text('[[budgets]]\nlimit_usd = "20"\nwindow = "day"\n')
    code, out, err = run_cli("forecast", "--ledger", ledger, "--as-of", "2026-11-20", "--budgets", str(daily))
    assert code == 2 and "no monthly budget in the file" in err


@pytest.mark.parametrize("top", ["0", "-1", "two"])
def test_cli_forecast_refuses_a_top_that_is_not_a_positive_whole_number(ledger, capsys, top):
    """--top 0 used to say "no spend ... nothing to forecast", --top -1 to drop the last team silently."""
    with pytest.raises(SystemExit) as exit_:
        main(["forecast", "--ledger", ledger, "--as-of", "2026-11-20", "--top", top])
    assert exit_.value.code == 2
    assert f"argument --top: must be a whole number >= 1, got '{top}'" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ calls of unknown price
@pytest.fixture(scope="module")
def unpriced_ledger(tmp_path_factory):
    """The helpers ledger, plus a team "labs" whose every call has an unknown price (5 a day from Nov 2) and 3
    unpriced calls a day by search (the priced teams keep their spend)."""
    from aicost.ledger import open_store

    url = write_ledger(tmp_path_factory.mktemp("unpriced") / "ledger.db", spike=False)
    with open_store(url) as store:
        store.write(unpriced_rows("labs", 28, 5) + unpriced_rows("search", 28, 3, first_id=60_000_000))
    return url


def test_a_forecast_counts_the_calls_of_unknown_price_it_leaves_out(unpriced_ledger):
    """A team of unpriced calls is not "$0 projected": it says how many calls its figures leave out."""
    code, out, err = run_cli("forecast", "--ledger", unpriced_ledger, "--as-of", "2026-11-20", "--format", "json")
    assert code == 0, err
    data = {d["group"]: d for d in json.loads(out)}
    assert data["labs"]["unknown_cost_calls"] == 5 * 19  # Nov 2 .. Nov 20
    assert data["search"]["unknown_cost_calls"] == 3 * 19 and Decimal(data["search"]["actual_usd"]) > 0
    assert data["support"]["unknown_cost_calls"] == 0
    code, out, err = run_cli("forecast", "--ledger", unpriced_ledger, "--as-of", "2026-11-20")
    assert code == 0, err
    header = out.splitlines()[1].split()
    assert header[:4] == ["team", "spent", "USD", "unpriced"]
    assert "labs: 95 with an unknown price, not in the total: its spent and projected USD are lower bounds" in out
    assert "search: 57 with an unknown price, not in the total" in out


def test_a_ledger_of_unpriced_calls_only_is_not_no_spend(tmp_path):
    from aicost.ledger import open_store

    url = f"sqlite:///{tmp_path / 'unpriced.db'}"
    with open_store(url) as store:
        store.write(unpriced_rows("labs", 20, 5, start=date(2026, 11, 1)))
    code, out, err = run_cli("forecast", "--ledger", url, "--as-of", "2026-11-20")
    assert code == 0, err
    assert "nothing to forecast" not in out
    assert "labs: 100 with an unknown price, not in the total" in out


def test_the_budget_forecasts_count_calls_of_unknown_price_too(unpriced_ledger, tmp_path):
    budgets = tmp_path / "budgets.toml"
    budgets.write_text('[[budgets]]\nlimit_usd = "10"\nwindow = "month"\nscope = "team"\n\n'
                       '[[budgets]]\nlimit_usd = "10"\nwindow = "month"\nscope = "team"\nvalue = "labs"\n'
                       'name = "labs"\n\n[[budgets]]\nlimit_usd = "500"\nwindow = "month"\nname = "company"\n')
    code, out, err = run_cli("forecast", "--ledger", unpriced_ledger, "--as-of", "2026-11-20", "--budgets",
                             str(budgets), "--format", "json")
    assert code == 0, err
    data = {d["group"]: d["unknown_cost_calls"] for d in json.loads(out)}
    assert data["team/month[labs]"] == data["labs"] == 95 and data["team/month[search]"] == 57
    assert data["company"] == 95 + 57 and data["team/month[support]"] == 0
