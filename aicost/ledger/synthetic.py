"""Realistic synthetic ledgers, for benchmarks, dashboards and demos (never mixed into a real ledger by accident:
every synthetic row's span id starts with ``5y``, and its price source is ``synthetic:<catalog version>``).

What makes it realistic enough to test reports, forecasts and anomaly detection on:

* traffic follows the working day (a diurnal curve peaking mid-afternoon UTC) and the week (weekends at 40 %);
* teams and customers are Zipf-distributed (a few big spenders, a long tail), users belong to customers;
* a model mix of real catalog models, each call priced exactly by aicost's own pricing engine; token counts are
  log-normal, prompt-cache reads common on long prompts, reasoning on reasoning models;
* calls come in feature runs (1-4 calls, 90 % succeed), with cache hits (what they saved), budget refusals,
  vendor errors, estimated usage and a few calls to a model without a price;
* optional ``spikes``: (team, day index, factor) multiplies that team's traffic on that day, an anomaly to find.

``generate(...)`` yields rows and runs in time order; ``fill(store, ...)`` writes them in batches.
``fill_copies(store, ...)`` builds a large ledger fast (the report benchmark's 10 million rows): one generated day
written through the normal write path, then copied to the following days in SQL, rows, runs and rollups together.
"""

from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Iterator, Sequence

from ..pricing.cost import MONEY
from ..usage import Usage
from .days import midnight
from .row import CACHE_HIT, CALL, REFUSAL, FeatureRun, LedgerRow
from . import rollup
from .schema import CUBE_KEYS, CUBE_TABLE, MEASURES, ROW_COLUMNS, RUN_COLUMNS, SET_FOLDED_SQL
from .store import LedgerStore

__all__ = ["Profile", "generate", "fill", "fill_copies", "MODELS"]

# (provider, model, weight, reasoning)
MODELS: tuple[tuple[str, str, float, bool], ...] = (
    ("openai", "gpt-4o-mini", 0.38, False),
    ("openai", "gpt-4o", 0.14, False),
    ("openai", "gpt-5", 0.06, True),
    ("openai", "text-embedding-3-small", 0.10, False),
    ("anthropic", "claude-sonnet-4-5", 0.16, False),
    ("anthropic", "claude-haiku-4-5", 0.14, False),
    ("openai", "ft:gpt-4o-mini:acme:internal", 0.02, False),  # a fine-tune priced nowhere: unknown cost
)
FEATURES = ("search", "summarize", "triage", "chat", "extract", "translate", "classify", "draft-reply", "agent",
            "rerank", "qa", "tagging", "moderate", "insights", "onboarding", "sql-assist", "code-review",
            "meeting-notes", "email", "kb-answer")


@dataclass(frozen=True)
class Profile:
    days: int = 30
    teams: int = 50
    customers: int = 500
    users_per_customer: int = 4
    calls: int = 100_000
    seed: int = 7
    start: datetime = datetime(2026, 11, 1, tzinfo=timezone.utc)
    spikes: tuple[tuple[int, int, float], ...] = ()  # (team index, day index, traffic factor)


def _zipf_weights(n: int, s: float = 1.1) -> list[float]:
    return [1 / (i + 1) ** s for i in range(n)]


def _hour_weights() -> list[float]:
    # Quiet nights, a morning ramp, a peak around 14:00 UTC.
    return [0.15 + math.exp(-((h - 14) ** 2) / 18) for h in range(24)]


class _Prices:
    def __init__(self) -> None:
        from ..pricing import catalog_version, current_price

        self.source = f"synthetic:{catalog_version()}"
        self.prices = {(p, m): current_price(p, m) for p, m, _, _ in MODELS}

    def cost(self, provider: str, model: str, usage: Usage):
        price = self.prices.get((provider, model))
        return None if price is None else price.cost(usage)


def generate(profile: Profile = Profile()) -> Iterator[LedgerRow | FeatureRun]:
    """Rows and feature runs, oldest first; about ``profile.calls`` call rows."""
    rng = random.Random(profile.seed)
    prices = _Prices()
    teams = [f"team-{i:02d}" for i in range(profile.teams)]
    team_w = _zipf_weights(profile.teams)
    customers = [f"cust-{i:04d}" for i in range(profile.customers)]
    cust_w = _zipf_weights(profile.customers, 1.05)
    team_features = {t: rng.sample(FEATURES, k=min(len(FEATURES), rng.randint(2, 5))) for t in teams}
    models = [(p, m, r) for p, m, _, r in MODELS]
    model_w = [w for _, _, w, _ in MODELS]
    hour_w = _hour_weights()
    slots: list[tuple[int, int]] = []
    slot_w: list[float] = []
    for day in range(profile.days):
        weekday = (profile.start + timedelta(days=day)).weekday()
        for hour in range(24):
            slots.append((day, hour))
            slot_w.append(hour_w[hour] * (0.4 if weekday >= 5 else 1.0))
    total_w = sum(slot_w)
    spikes = {(t, d): f for t, d, f in profile.spikes}
    seq = 0
    for (day, hour), w in zip(slots, slot_w):
        runs_here = max(0, round(profile.calls / 2.2 * w / total_w + rng.uniform(-0.5, 0.5)))
        base = profile.start + timedelta(days=day, hours=hour)
        pending: list[tuple[datetime, LedgerRow | FeatureRun]] = []
        for _ in range(runs_here):
            team_i = rng.choices(range(profile.teams), team_w)[0]
            repeat = spikes.get((team_i, day), 1.0)
            copies = int(repeat) + (1 if rng.random() < repeat - int(repeat) else 0)
            for _ in range(copies):
                seq += 1
                pending.extend(_run(rng, prices, seq, base, teams[team_i], team_features[teams[team_i]], customers,
                                    cust_w, profile.users_per_customer, models, model_w))
        pending.sort(key=lambda item: item[0])
        for _, item in pending:
            yield item


def _run(rng: random.Random, prices: _Prices, seq: int, base: datetime, team: str, features: Sequence[str],
         customers: Sequence[str], cust_w: Sequence[float], users_per_customer: int,
         models: Sequence[tuple[str, str, bool]], model_w: Sequence[float]) -> list[tuple[datetime, LedgerRow | FeatureRun]]:
    feature = rng.choice(features)
    customer = rng.choices(customers, cust_w)[0]
    user = f"{customer}-u{rng.randrange(users_per_customer)}"
    tags = {"env": "prod" if rng.random() < 0.9 else "staging"}
    run_id = f"5e{seq:014x}"
    t = base + timedelta(seconds=rng.uniform(0, 3540))
    out: list[tuple[datetime, LedgerRow | FeatureRun]] = []
    total = Decimal(0)
    calls = 0
    failed = False
    for n in range(rng.choice((1, 1, 1, 2, 2, 3, 4))):
        t += timedelta(seconds=rng.uniform(0.2, 8))
        provider, model, reasoning = models[rng.choices(range(len(models)), model_w)[0]]
        span_id = f"5y{seq:09x}{n:05x}"[:16]
        common = dict(span_id=span_id, time=t, provider=provider, request_model=model, team=team, feature=feature,
                      user=user, customer=customer, tags=dict(tags), run_id=run_id,
                      endpoint=f"{provider}.{'embeddings' if 'embedding' in model else 'chat'}",
                      operation="embeddings" if "embedding" in model else "chat")
        roll = rng.random()
        if roll < 0.03:  # the cache answered
            saved = prices.cost(provider, model, _usage(rng, model, reasoning))
            out.append((t, LedgerRow(kind=CACHE_HIT, cost=Decimal(0), cache_name=f"{feature}.answer",
                                     saved_cost=None if saved is None or not saved.known else saved.total, **common)))
            continue
        if roll < 0.032:  # a budget refused it
            out.append((t, LedgerRow(kind=REFUSAL, cost=Decimal(0), budget=f"{team}-daily",
                                     stopped_cost=Decimal(f"0.{rng.randrange(50, 5000):04d}"), **common)))
            failed = True
            continue
        usage = _usage(rng, model, reasoning)
        error = None
        if rng.random() < 0.005:
            usage, error = Usage(), "rate_limit_error"
        cost = prices.cost(provider, model, usage)
        row = LedgerRow(kind=CALL, response_model=model, input_tokens=usage.input_tokens,
                        output_tokens=usage.output_tokens, cache_read_tokens=usage.cache_read_tokens,
                        reasoning_tokens=usage.reasoning_tokens, estimated=usage.estimated, error_type=error,
                        duration_s=round(rng.lognormvariate(0, 0.6), 3), price_source=prices.source,
                        service_tier="standard", **common)
        if cost is None or not cost.known:
            row.cost, row.price_known = None, False
        else:
            row.cost, row.cost_parts, row.price_model = cost.total, dict(cost.parts), cost.model
            total = MONEY.add(total, cost.total)  # exact: the same ledger whatever the thread's decimal context
        calls += 1
        failed = failed or error is not None
        out.append((t, row))
    outcome = "failed" if failed or rng.random() < 0.08 else "succeeded"
    t += timedelta(seconds=0.1)
    out.append((t, FeatureRun(run_id=run_id, feature=feature, time=t, outcome=outcome, team=team, user=user,
                              customer=customer, tags=dict(tags), calls=calls, cost=total)))
    return out


def _usage(rng: random.Random, model: str, reasoning: bool) -> Usage:
    if "embedding" in model:
        return Usage(input_tokens=int(rng.lognormvariate(5.5, 1.0)) + 1)
    prompt = int(rng.lognormvariate(7.0, 1.1)) + 20
    cached = (prompt // 128) * 128 if prompt > 1024 and rng.random() < 0.45 else 0
    output = int(rng.lognormvariate(5.3, 0.9)) + 1
    thinking = int(output * rng.uniform(0.5, 3)) if reasoning else 0
    return Usage(input_tokens=prompt, output_tokens=output + thinking, cache_read_tokens=cached,
                 reasoning_tokens=thinking, estimated=rng.random() < 0.02)


def fill(store: LedgerStore, profile: Profile = Profile(), batch: int = 5_000) -> int:
    """Write a synthetic ledger into ``store``; returns the call / cache-hit / refusal rows written."""
    rows: list[LedgerRow] = []
    runs: list[FeatureRun] = []
    written = 0
    for item in generate(profile):
        (runs if isinstance(item, FeatureRun) else rows).append(item)
        if len(rows) >= batch:
            written += store.write(rows, runs)
            rows, runs = [], []
    written += store.write(rows, runs)
    return written


def fill_copies(store: LedgerStore, profile: Profile, days: int, progress=None) -> int:
    """A ledger of ``days`` days, fast: ``profile``'s first day is generated and written through the normal write
    path (rollups included), then copied to each following day in SQL, one transaction per day: its rows and runs
    with their times shifted by whole days and new ids, and its rollups (the cube's too) shifted the same way. A
    day's rollups shifted by k days are exactly the rollups of its rows shifted by k days (every dimension but the
    bucket is unchanged), so the copies' rollups are what the writer would have built; the tests check they equal
    the raw sums. The cube's days but the last are then folded into day cells, as the writer leaves closed days,
    and the rows summed into the pair cells (:meth:`~aicost.ledger.store.LedgerStore.compact_pairs`).
    Day 1's traffic pattern (a weekday) repeats every day. Returns the rows in the ledger."""
    if not 1 <= days <= 255:
        raise ValueError("fill_copies: days must be 1..255 (the copy's day goes into two hex digits of its ids)")
    first = midnight(profile.start)
    fill(store, dataclasses.replace(profile, days=1, start=first), batch=20_000)
    sqlite = store.dialect == "sqlite"
    low, high = store._ts(first), store._ts(first + timedelta(days=1))
    for k in range(1, days):
        def shift(column: str) -> str:
            if sqlite:
                return f"datetime({column}, '+{k} days') || substr({column}, 20)"
            return f"{column} + interval '{k} days'"

        def new_id(column: str) -> str:  # synthetic ids are '5y' / '5e' + 14 hex digits: day k in digits 3-4
            return (f"CASE WHEN {column} IS NULL THEN NULL "
                    f"ELSE substr({column}, 1, 2) || '{k:02x}' || substr({column}, 5) END")

        def copy(table: str, columns: Sequence[str], time_column: str, ids: Sequence[str]) -> str:
            select = ", ".join(shift(c) if c == time_column else new_id(c) if c in ids else c for c in columns)
            return (f"INSERT INTO {table} ({', '.join(columns)}) SELECT {select} FROM {table} "
                    f"WHERE {time_column} >= ? AND {time_column} < ?")

        store.execute_many([
            (copy("aicost_ledger", ROW_COLUMNS, "ts", ("span_id", "run_id")), [[low, high]]),
            (copy("aicost_runs", RUN_COLUMNS, "ts", ("run_id",)), [[low, high]]),
            (copy("aicost_rollup", ("grain", "bucket", "dim", "value", *MEASURES), "bucket", ()), [[low, high]]),
            (copy(CUBE_TABLE, ("grain", "bucket", *CUBE_KEYS, *MEASURES), "bucket", ()), [[low, high]]),
        ])
        if progress is not None:
            progress(k + 1, days)
    # The days before the last are closed, as the writer would have left them: their cube hour cells folded into
    # day cells (the first day's batches folded nothing: its day was the latest then).
    closed = store._ts(first + timedelta(days=days - 1))
    store.execute_many([(rollup.close_days_sql(rollup.DIALECTS[store.dialect]), [[low, closed]]),
                        (SET_FOLDED_SQL, [[closed]])])
    # The pair cells, summed from the rows as the writer sums them behind its batches (they are not copied: the
    # first day's were never summed, its batches came faster than the writer's summing).
    while store.compact_pairs(max_rows=400_000):
        pass
    return store._fetch("SELECT COUNT(*) FROM aicost_ledger", [])[0][0]
