"""A small, fully known ledger for the report tests: four weeks of calls by three teams, with one planted spike.

Deterministic (a seeded RNG), so every figure the tests compare is reproducible; small (a few thousand rows), so
it writes in well under a second into SQLite. The month-scale synthetic ledgers for benchmarks come from the
ledger's own generator; this one exists because a test must know exactly which calls caused the spike.
"""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

from aicost.ledger import CACHE_HIT, CALL, REFUSAL, FeatureRun, LedgerRow, open_store

START = date(2026, 11, 2)  # a Monday
DAYS = 28
SPIKE_DAY = date(2026, 11, 26)
SPIKE_TEAM = "search"
SPIKE_CUSTOMER = "globex"
SPIKE_MODEL = "gpt-4.1"
SPIKE_CALLS = 40
SPIKE_COST = Decimal("0.75")  # each spike call: 40 x 0.75 = $30, ten times search's normal day

TEAMS = {"search": ("answer", "index"), "support": ("triage",), "research": ("summarize",)}
MODELS = {"gpt-4o-mini": Decimal("0.0009"), "gpt-4o": Decimal("0.012"), "claude-sonnet-4-5": Decimal("0.021")}
CUSTOMERS = ("acme", "initech", "umbrella")


def _span_id(n: int) -> str:
    return f"{n:016x}"


def build_rows(days: int = DAYS, start: date = START, spike: bool = True) -> tuple[list[LedgerRow], list[FeatureRun]]:
    rng = random.Random(15)
    rows: list[LedgerRow] = []
    runs: list[FeatureRun] = []
    n = 0
    for d in range(days):
        day = start + timedelta(days=d)
        weekend = day.weekday() >= 5
        for team, features in TEAMS.items():
            calls_today = rng.randint(14, 20) if not weekend else rng.randint(5, 8)
            for i in range(calls_today):
                n += 1
                feature = features[i % len(features)]
                model = list(MODELS)[(i + d) % len(MODELS)]
                when = datetime(day.year, day.month, day.day, tzinfo=timezone.utc) + timedelta(
                    seconds=rng.randint(0, 86_399))
                inp, out = rng.randint(500, 3000), rng.randint(50, 600)
                cost = (MODELS[model] * (inp + 4 * out) / 1000).quantize(Decimal("0.0000001"))
                run_id = _span_id(10_000_000 + n)
                outcome = "succeeded" if rng.random() < 0.8 else "failed"
                rows.append(LedgerRow(
                    span_id=_span_id(n), kind=CALL, time=when, provider="openai" if "gpt" in model else "anthropic",
                    operation="chat", request_model=model, response_model=model, input_tokens=inp,
                    output_tokens=out, cost=cost, cost_parts={"input": cost}, price_source="test",
                    team=team, feature=feature, customer=CUSTOMERS[(i + d) % 3], user=f"u{i % 5}",
                    run_id=run_id, outcome=outcome))
                runs.append(FeatureRun(run_id=run_id, feature=feature, time=when + timedelta(seconds=2),
                                       outcome=outcome, team=team, customer=CUSTOMERS[(i + d) % 3], calls=1,
                                       cost=cost))
            # A few cache hits and one refusal a day per team
            for j in range(2):
                n += 1
                rows.append(LedgerRow(
                    span_id=_span_id(n), kind=CACHE_HIT, time=datetime(day.year, day.month, day.day, 12, j,
                                                                        tzinfo=timezone.utc),
                    request_model="gpt-4o", cost=Decimal(0), saved_cost=Decimal("0.004"), cache_name="faq",
                    team=team, feature=features[0]))
            n += 1
            rows.append(LedgerRow(
                span_id=_span_id(n), kind=REFUSAL, time=datetime(day.year, day.month, day.day, 13,
                                                                 tzinfo=timezone.utc),
                request_model="gpt-4o", cost=Decimal(0), stopped_cost=Decimal("0.05"), budget="team/day",
                team=team, feature=features[0]))
        if spike and day == SPIKE_DAY:
            for k in range(SPIKE_CALLS):
                n += 1
                rows.append(LedgerRow(
                    span_id=_span_id(n), kind=CALL,
                    time=datetime(day.year, day.month, day.day, 3, k, tzinfo=timezone.utc),
                    provider="openai", operation="chat", request_model=SPIKE_MODEL, response_model=SPIKE_MODEL,
                    input_tokens=200_000, output_tokens=20_000, cost=SPIKE_COST, cost_parts={"input": SPIKE_COST},
                    price_source="test", team=SPIKE_TEAM, feature="answer", customer=SPIKE_CUSTOMER, user="batch"))
    return rows, runs


def unpriced_rows(team: str, days: int, per_day: int, start: date = START, first_id: int = 50_000_000,
                  hour: int = 9, model: str = "ft:gpt-4o:acme:x") -> list[LedgerRow]:
    """``per_day`` calls a day by ``team`` to a model without a price: rows with cost NULL (an unknown price)."""
    rows = []
    for d in range(days):
        day = start + timedelta(days=d)
        for i in range(per_day):
            rows.append(LedgerRow(
                span_id=_span_id(first_id + d * per_day + i), kind=CALL,
                time=datetime(day.year, day.month, day.day, hour, i % 60, tzinfo=timezone.utc), provider="openai",
                operation="chat", request_model=model, response_model=model, input_tokens=1000, output_tokens=100,
                cost=None, price_known=False, team=team, feature="tune", customer=CUSTOMERS[0]))
    return rows


def write_ledger(path_or_url, **options) -> str:
    """Write the ledger to a SQLite file at ``path_or_url`` (or to that ledger URL); return its URL."""
    url = str(path_or_url) if "://" in str(path_or_url) else f"sqlite:///{path_or_url}"
    rows, runs = build_rows(**options)
    with open_store(url) as store:
        store.write(rows, runs)
    return url
