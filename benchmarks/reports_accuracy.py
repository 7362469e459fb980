"""Measured error of `aicost forecast` and `aicost anomalies` on a synthetic ledger (figures in docs/reports.md).

    python benchmarks/reports_accuracy.py [--ledger sqlite:///12weeks.db]

The ledger's synthetic generator writes 12 weeks of traffic for 12 teams (weekly and daily cycles, Zipf-sized
teams, exact prices) with eight planted spikes: one team's traffic multiplied 3x for one day. Then:

* forecast backtest (``aicost.reports.forecast.backtest``): at every third day from day 28 on, each team's and
  the whole ledger's spend over the next 7 and 14 days is forecast from the days before, and compared with what
  the ledger really spent. Printed: WAPE (sum of absolute errors / sum of actual spend), MAPE, the share of
  actual totals inside the 80 % interval, and the WAPE of a run-rate baseline (last 7 days' mean x horizon);
* spike detection (``aicost.reports.anomalies.evaluate``) on the per-team daily series: planted spikes found,
  and false alarms (other team-days flagged) per 1,000 team-days, with the default materiality rules (excess of
  at least $1 and 2x the baseline) and looser ones.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import timedelta

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

DAYS = 84
SPIKES = tuple((team, day, 3.0) for team, day in
               ((0, 40), (1, 47), (2, 53), (3, 60), (4, 66), (5, 71), (6, 76), (7, 81)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ledger", help="sqlite:///path.db; filled with the synthetic 12 weeks if missing")
    args = parser.parse_args()

    from aicost.ledger import open_store
    from aicost.ledger.synthetic import Profile, fill
    from aicost.reports import anomalies, forecast
    from aicost.reports.data import daily_series

    profile = Profile(days=DAYS, teams=12, customers=200, calls=90_000, seed=11, spikes=SPIKES)
    url = args.ledger or f"sqlite:///{tempfile.mkdtemp(prefix='aicost-acc-')}/ledger.db"
    if not os.path.exists(url.removeprefix("sqlite:///")):
        t0 = time.perf_counter()
        with open_store(url) as store:
            rows = fill(store, profile)
        print(f"synthetic ledger: {rows:,} rows, {DAYS} days, 12 teams in {time.perf_counter() - t0:.0f} s -> {url}")
    start = profile.start
    end = start + timedelta(days=DAYS)
    with open_store(url, create=False) as store:
        teams = daily_series(store, start, end, "team")
        teams.pop("(none)", None)
        everything = daily_series(store, start, end)
    print(f"spend per team over {DAYS} days: " + ", ".join(
        f"{g} ${sum(v for _, v in pts):.0f}" for g, pts in sorted(teams.items())))

    print("\nforecast backtest (STL + ETS(A,Ad,N); interval 80 %)")
    print(f"{'series':10s} {'horizon':>7s} {'forecasts':>9s} {'WAPE':>7s} {'MAPE':>7s} {'coverage':>8s} "
          f"{'run-rate WAPE':>13s}")
    for name, series in (("teams", teams), ("all", everything)):
        for horizon in (7, 14):
            r = forecast.backtest(series, horizon=horizon, min_history=28, step=3)
            print(f"{name:10s} {horizon:7d} {r.forecasts:9d} {r.wape:7.1%} {r.mape:7.1%} {r.coverage:8.0%} "
                  f"{r.naive_wape:13.1%}")

    injected = {f"team-{team:02d}": {(start + timedelta(days=day)).date()} for team, day, _ in SPIKES}
    print("\nspike detection on per-team daily spend (robust STL, z >= 4), by materiality rules")
    print(f"{'min excess':>10s} {'min ratio':>9s} {'found':>7s} {'false alarms':>12s} {'per 1,000 team-days':>19s}")
    from decimal import Decimal

    for min_usd in ("1", "0.1", "0"):
        for min_ratio in (2.0, 1.5):
            e = anomalies.evaluate(teams, injected, dimension="team", min_ratio=min_ratio, min_usd=Decimal(min_usd))
            print(f"{'$' + min_usd:>10s} {min_ratio:9.1f} {e.detected:>3d} of {e.injected} {e.false_alarms:12d} "
                  f"{e.false_alarms_per_1000:19.1f}")
    found = anomalies.detect("team", teams, z=0, min_ratio=0, min_usd=Decimal(0))
    print("\nthe planted spikes (3x a team's traffic for a day):")
    for team, dates in sorted(injected.items()):
        (day,) = dates
        hit = next((a for a in found if a.group == team and a.start == day), None)
        if hit is not None:
            print(f"  {team} {day}: spent ${hit.actual:.2f}, baseline ${hit.baseline:.2f}, z {hit.score:.1f}")

if __name__ == "__main__":
    main()
