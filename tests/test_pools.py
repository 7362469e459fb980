"""Self-hosted pools: real openai SDK calls to an OpenAI-compatible server on 127.0.0.1, a fake vLLM /metrics
page with vLLM's metric names, two teams over simulated hours on an injected clock."""

from __future__ import annotations

import random
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import aicost
import aicost.integrations
from aicost import pricing
from aicost.errors import ConfigurationError
from aicost.pools import QUANTUM, PoolMeter, configure_pools, pool_from_mapping, split, summarise, what_if
from aicost.pools.allocate import as_ints
from aicost.pools.engine import parse
from aicost.pools.meter import _Use
from aicost.usage import Usage
from tests.pool_helpers import FakeVllmMetrics, SimClock
from tests.vendor_server import ReplayServer, openai_chat_reply, openai_client

MODEL = "acme/llama-3.1-8b-support-ft"  # no catalog price: only the pool prices it
T0 = datetime(2026, 12, 1, tzinfo=timezone.utc).timestamp()


@pytest.fixture
def clock() -> SimClock:
    return SimClock(T0)


@pytest.fixture
def pool_env(instrumented, replay_server: ReplayServer):
    client = openai_client(replay_server)
    yield instrumented, replay_server, client
    client.close()
    aicost.pools.disable()


def _pool(server: ReplayServer, **extra):
    host_port = server.url.split("//", 1)[1]
    return {"gpu_hour": "2.75", "gpus": 2, "endpoints": [host_port], "models": [MODEL], "owner": "ml-platform",
            **extra}


def _call(client, server: ReplayServer, team: str, prompt: int, completion: int) -> None:
    server.enqueue(openai_chat_reply(model=MODEL, prompt_tokens=prompt, completion_tokens=completion))
    with aicost.attribute(team=team):
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])


def _span_cost(span) -> Decimal | None:
    value = (span.attributes or {}).get("aicost.cost.total_usd")
    return None if value is None else Decimal(value)


def test_two_teams_over_hours_token_key_exact_and_provisional_becomes_final(pool_env, clock):
    telemetry, server, client = pool_env
    # 2 GPUs x $2.75 = $5.50 an hour; output weighs 3 input tokens; the pool serves 300k units an hour at full load
    meter = configure_pools({"chat": _pool(server, output_weight=3, capacity_per_hour=300_000)}, clock=clock)
    rng = random.Random(18)
    traffic = {hour: [(team, rng.randint(50, 4000), rng.randint(1, 900)) for team in ("search", "support")
                      for _ in range(rng.randint(0, 6))] for hour in range(5)}
    traffic[3] = []  # an hour nobody called: all idle
    closed = []
    for hour in range(5):
        telemetry.clear()
        for team, prompt, completion in traffic[hour]:
            clock.advance(1)
            _call(client, server, team, prompt, completion)
        spans = {f"{s.context.span_id:016x}": s for s in telemetry.aicost_spans()
                 if "aicost.pool.name" in (s.attributes or {})}
        assert len(spans) == len(traffic[hour])
        for span in spans.values():
            assert span.attributes["aicost.pool.name"] == "chat"
            assert span.attributes["aicost.cost.provisional"] is True
        clock.now = T0 + (hour + 1) * 3600
        [interval] = meter.close_due()
        closed.append(interval)
        assert interval.cost == Decimal("5.5")
        assert interval.used + interval.idle == interval.cost  # exact, every interval
        assert sum((a.final for a in interval.allocations), Decimal(0)) == interval.used
        assert len(interval.allocations) == len(traffic[hour])
        units = sum(3 * c + p for _, p, c in traffic[hour])
        assert interval.used == (Decimal("5.5") * min(1, Decimal(units) / 300_000)).quantize(QUANTUM, "ROUND_FLOOR")
        for a in interval.allocations:
            # the span said the provisional cost (the last closed interval's rate); the ledger gets the final one
            span = spans[a.span_id]
            assert _span_cost(span) == a.provisional
            if hour == 0:
                assert a.provisional is None  # no closed interval yet: unknown, never $0
            else:
                previous = next(c for c in reversed(closed[:-1]) if c.allocations)
                per_million = previous.used / previous.units * 1_000_000
                input_rate, output_rate = (per_million.quantize(Decimal("1e-9")),
                                           (per_million * 3).quantize(Decimal("1e-9")))
                assert a.provisional == (a.input_tokens * input_rate + a.output_tokens * output_rate) / 1_000_000
            assert abs(a.final - interval.used * a.units / interval.units) < QUANTUM
    assert closed[3].used == 0 and closed[3].idle == Decimal("5.5") and closed[3].utilisation == 0
    summary = summarise(closed)
    assert summary.cost == Decimal("27.5") == summary.used + summary.idle
    assert sum(summary.by_team.values(), Decimal(0)) == summary.used
    assert set(summary.by_team) == {"search", "support"}
    assert summary.cost_per_million_tokens == pricing.canonical(
        Decimal("27.5") * 1_000_000 / sum(p + c for h in traffic.values() for _, p, c in h))


@pytest.mark.parametrize("tier", ["default", "PRIORITY"])
def test_a_pool_call_without_a_rate_carries_its_tier_normalised_as_any_unknown_cost(pool_env, clock, tier):
    """Before the pool's first interval closes a call's cost is unknown; the tier its response names is on the
    span as pricing names it for every other unknown cost (OpenAI's "default" is "standard"), not as sent."""
    telemetry, server, client = pool_env
    configure_pools({"chat": _pool(server, output_weight=3)}, clock=clock)
    server.enqueue(openai_chat_reply(model=MODEL, service_tier=tier))
    client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    (span,) = [s for s in telemetry.aicost_spans() if "aicost.pool.name" in (s.attributes or {})]
    expected = pricing.price_call("openai", MODEL, Usage(input_tokens=9), service_tier=tier)
    assert span.attributes["aicost.price.known"] is False and expected.known is False
    assert span.attributes["aicost.service_tier"] == expected.service_tier == tier.lower().replace("default",
                                                                                                     "standard")


def test_gpu_time_key_reads_vllm_metrics(pool_env, clock):
    telemetry, server, client = pool_env
    with FakeVllmMetrics(MODEL) as engine:
        engine.served(10_000, 0, prefill_per_token="0.0001", decode_per_token="0.02")  # before: not this hour's
        meter = configure_pools({"gpu": _pool(server, key="gpu_time", metrics_url=engine.url, max_concurrency=4)},
                                clock=clock)
        assert engine.scrapes == 1  # the counters' baseline
        for team, prompt, completion in (("search", 1000, 10), ("support", 100, 200), ("support", 500, 50)):
            clock.advance(60)
            _call(client, server, team, prompt, completion)
            engine.served(prompt, completion, prefill_per_token="0.0002", decode_per_token="0.025")
        clock.now = T0 + 3600
        [interval] = meter.close_due()
    assert engine.scrapes == 2
    # the interval's own counters (baseline subtracted), not the other model's series on the same page
    assert (interval.engine.prompt_tokens, interval.engine.generation_tokens) == (1600, 260)
    assert interval.input_weight == Decimal("0.0002") and interval.output_weight == Decimal("0.025")
    assert interval.weights_from == "engine"
    gpu_seconds = {a.team: Decimal(0) for a in interval.allocations}
    for a in interval.allocations:
        gpu_seconds[a.team] += a.units
    assert gpu_seconds == {"search": Decimal("0.45"), "support": Decimal("6.37")}
    # utilisation: request-seconds used of 4 slots x 3600 s
    assert interval.used == (Decimal("5.5") * Decimal("6.82") / 14400).quantize(QUANTUM, "ROUND_FLOOR")
    assert interval.used + interval.idle == interval.cost == Decimal("5.5")


def test_engine_metrics_parse_real_names_and_restarts():
    engine = FakeVllmMetrics(MODEL)
    engine.served(100, 20, prefill_per_token="0.001", decode_per_token="0.01")
    first = parse(engine.text(), (MODEL,))
    assert (first.prompt_tokens, first.generation_tokens, first.prefill_seconds, first.decode_seconds) == (
        100, 20, Decimal("0.1"), Decimal("0.2"))
    engine.served(50, 5, prefill_per_token="0.001", decode_per_token="0.01")
    delta = parse(engine.text(), (MODEL,)).since(first)
    assert (delta.prompt_tokens, delta.generation_tokens) == (50, 5)
    restarted = FakeVllmMetrics(MODEL)
    restarted.served(7, 1, prefill_per_token="0.001", decode_per_token="0.01")
    assert parse(restarted.text(), (MODEL,)).since(first).prompt_tokens == 7  # a counter went down: engine restart


def test_token_weights_derived_from_engine_when_not_declared(pool_env, clock):
    telemetry, server, client = pool_env
    with FakeVllmMetrics(MODEL) as engine:
        meter = configure_pools({"chat": _pool(server, metrics_url=engine.url)}, clock=clock)
        _call(client, server, "search", 400, 100)
        engine.served(400, 100, prefill_per_token="0.0001", decode_per_token="0.004")
        clock.now = T0 + 3600
        [interval] = meter.close_due()
    assert (interval.input_weight, interval.output_weight) == (1, 40)  # decode costs 40x prefill per token
    assert interval.allocations[0].units == 400 + 40 * 100
    assert interval.idle == 0 and interval.used == Decimal("5.5")  # no capacity declared: calls pay it all


@pytest.mark.parametrize("settings_, field", [
    ({"models": []}, "pools.p.models"),
    ({"endpoints": []}, "pools.p.endpoints"),
    ({"start": "2026-12-02", "until": "2026-12-01"}, "pools.p.until"),
    ({"key": "vibes"}, "pools.p.key"),
    ({"monthly": 9000}, "pools.p.gpu_hour"),
    ({"gpus": 0}, "pools.p.gpus"),
    ({"owner": ""}, "pools.p.owner"),
    ({"key": "gpu_time"}, "pools.p.metrics_url"),
    ({"interval": 7}, "pools.p.interval"),
    ({"colour": "red"}, "pools.p.colour"),
])
def test_bad_pools_are_refused_at_configure_time_naming_the_field(settings_, field):
    base = {"gpu_hour": 2, "endpoints": ["10.0.0.5:8000"], "models": ["m"], "owner": "ml", "output_weight": 2}
    with pytest.raises(ConfigurationError, match=field.replace(".", r"\.")):
        configure_pools({"p": {**base, **settings_}}, clock=lambda: T0)
    assert aicost.pools.active() is None


def test_overlapping_pools_are_refused():
    a = {"gpu_hour": 2, "endpoints": ["http://vllm.internal:8000/v1"], "models": ["m", "n"], "owner": "ml",
         "output_weight": 2}
    with pytest.raises(ConfigurationError, match=r"pools\.b\.endpoints: overlaps pool 'a'.*'n' at vllm\.internal:8000"):
        configure_pools({"a": a, "b": {**a, "models": ["n"], "endpoints": ["vllm.internal:8000"]}}, clock=lambda: T0)
    # same endpoint and model in periods that do not overlap: a pool replaced by a new one is fine
    meter = configure_pools({"a": {**a, "until": "2026-12-01"}, "b": {**a, "start": "2026-12-01"}}, clock=lambda: T0)
    assert len(meter.pools) == 2
    aicost.pools.disable()


def test_overlapping_pools_built_one_by_one_are_refused_too():
    """pool_from_mapping is public: pools handed over as a tuple get the same overlap check as a mapping."""
    a = {"gpu_hour": 2, "endpoints": ["vllm.internal:8000"], "models": ["m"], "owner": "ml", "output_weight": 2}
    with pytest.raises(ConfigurationError, match=r"pools\.b\.endpoints: overlaps pool 'a'.*'m' at vllm\.internal:8000"):
        configure_pools((pool_from_mapping("a", a), pool_from_mapping("b", a)), clock=lambda: T0)
    assert aicost.pools.active() is None
    meter = configure_pools((pool_from_mapping("a", {**a, "until": "2026-12-01"}),
                             pool_from_mapping("b", {**a, "start": "2026-12-01"})), clock=lambda: T0)
    assert [p.name for p in meter.pools] == ["a", "b"]
    aicost.pools.disable()


def test_price_file_pools(tmp_path, pool_env):
    telemetry, server, client = pool_env
    host_port = server.url.split("//", 1)[1]
    path = tmp_path / "prices.toml"
    path.write_text(f'''
[pools.support-llama]
monthly = "9000"
endpoints = ["{host_port}"]
models = ["{MODEL}"]
owner = "ml-platform"
output_weight = 4
interval = 900
''')
    aicost.instrument(price_file=path)
    meter = aicost.pools.active()
    assert [p.name for p in meter.pools] == ["support-llama"]
    pool = meter.pools[0]
    # $9000 over December's 31 days, 15 minutes of it, to the nano-dollar
    assert pool.interval_cost(datetime(2026, 12, 1, tzinfo=timezone.utc)) == Decimal("3.024193548")
    bad = tmp_path / "bad.toml"
    bad.write_text('[pools.x]\ngpu_hour = 1\nendpoints = ["h:1"]\nmodels = ["m"]\n')
    with pytest.raises(ConfigurationError, match=r"pools\.x\.owner"):
        aicost.instrument(price_file=bad)


def test_budget_reserves_the_provisional_rate(pool_env, clock):
    telemetry, server, client = pool_env
    meter = configure_pools({"chat": _pool(server, output_weight=3)}, clock=clock)
    from aicost.budget import Budget, configure_budgets, disable_budgets

    _call(client, server, "search", 1000, 100)
    clock.now = T0 + 3600
    meter.close_due()
    guard = configure_budgets(budgets=[Budget(limit_usd=100)])
    try:
        # $5.50 over 1300 units: the pool's provisional rate, for this pool's calls only (a price scoped to it)
        scope = "pool:chat provisional"
        price = pricing.scoped_price(scope, MODEL)
        rate = Decimal("5.5") / 1300
        assert price.rates["input"] == (rate * 1_000_000).quantize(Decimal("1e-9"))
        assert price.rates["output"] == (rate * 3 * 1_000_000).quantize(Decimal("1e-9"))
        assert pricing.current_price("openai", MODEL) is None  # not a price of the model name for anyone else
        # the guard reserves at it before the next call: the worst case of a 10-output-token request
        info = aicost.hooks.CallInfo("openai", "chat", "openai.chat.completions.create", MODEL,
                                     {"model": MODEL, "messages": [{"role": "user", "content": "hi"}],
                                      "max_tokens": 10}, False, False, price_scope=scope,
                                     shape=aicost.integrations.endpoint("openai.chat.completions.create").shape)
        assert guard._estimate(info, MODEL, "openai", 1000, True) == price.cost(
            aicost.Usage(input_tokens=1000, output_tokens=10)).total
    finally:
        disable_budgets()
    aicost.pools.disable()
    assert pricing.scoped_price(scope, MODEL) is None  # nothing left behind


@pytest.mark.parametrize("budgets_first", [True, False], ids=["budgets-then-pools", "pools-then-budgets"])
def test_the_guard_reserves_at_the_pool_rate_whichever_was_configured_first(pool_env, clock, budgets_first):
    """docs/self-hosted.md: the guard reserves a pool call at the pool's provisional rate. It did only when pools
    were configured first: budgets first, the guard ran before the meter set the call's price scope, priced it
    from the catalog (no price) and, with on_unknown_price='allow', let it through a $0.0001 budget ($5.50 spent)."""
    from aicost.budget import Budget, BudgetExceeded, configure_budgets, disable_budgets

    telemetry, server, client = pool_env
    budgets = dict(budgets=[Budget(limit_usd="0.0001", name="tiny")], on_unknown_price="allow")
    guard = configure_budgets(**budgets) if budgets_first else None
    meter = configure_pools({"chat": _pool(server, output_weight=3)}, clock=clock)
    guard = guard or configure_budgets(**budgets)
    try:
        _call(client, server, "search", 1000, 100)  # no rate before the first interval closes: unbudgeted (documented)
        clock.now = T0 + 3600
        meter.close_due()
        order = aicost.hooks.interceptors()
        assert order.index(meter) < order.index(guard)
        spent = guard.status()[0].spent_usd
        with pytest.raises(BudgetExceeded) as refused:
            _call(client, server, "search", 1000, 100)
        assert refused.value.requested_usd > 0  # the worst case at the pool's rate
        assert guard.status()[0].spent_usd == spent
    finally:
        disable_budgets()


def test_what_if_prices_the_same_tokens_on_a_hosted_model(pool_env, clock):
    telemetry, server, client = pool_env
    meter = configure_pools({"chat": _pool(server, output_weight=3, capacity_per_hour=100_000)}, clock=clock)
    _call(client, server, "search", 20_000, 1_000)
    clock.now = T0 + 3600
    summary = summarise(meter.close_due())
    answer = what_if(summary, "openai", "gpt-4o-mini")
    expected = pricing.price_call("openai", "gpt-4o-mini", aicost.Usage(input_tokens=20_000, output_tokens=1_000))
    assert answer.cost == expected.total
    assert "23 % utilisation" in answer.sentence()  # 23,000 of 100,000 units
    with pytest.raises(ConfigurationError, match="no price"):
        what_if(summary, "openai", "no-such-model")


def test_what_if_is_the_hosted_vendors_list_price_whatever_prices_this_process_loaded(pool_env, clock):
    """docs/self-hosted.md: the same tokens at the catalog model's list prices. The process's own price overrides
    and discounts (a provider-less rule for the pool's model, a negotiated discount) are not what the hosted vendor
    lists, and ``aicost report --compare`` in a fresh process has none of them: one ledger, one answer."""
    telemetry, server, client = pool_env
    meter = configure_pools({"chat": _pool(server, output_weight=3, capacity_per_hour=100_000)}, clock=clock)
    _call(client, server, "search", 20_000, 1_000)
    clock.now = T0 + 3600
    summary = summarise(meter.close_due())
    usage = aicost.Usage(input_tokens=20_000, output_tokens=1_000)
    listed = pricing.price_call("openai", "gpt-4o-mini", usage).total
    try:
        pricing.set_price("gpt-4o-mini", input="0.01", output="0.02")  # any provider: the process's own rate
        pricing.add_discount("50", provider="openai")
        pricing.set_price("house-model", provider="openai", input="1", output="2")
        assert pricing.price_call("openai", "gpt-4o-mini", usage).total != listed
        assert what_if(summary, "openai", "gpt-4o-mini").cost == listed
        with pytest.raises(ConfigurationError, match="no price"):  # priced by an override only: no list price
            what_if(summary, "openai", "house-model")
    finally:
        pricing.clear_overrides()


@settings(max_examples=300, deadline=None)
@given(cost_quanta=st.integers(0, 10**12), weights=st.lists(st.integers(0, 10**7), max_size=40),
       capacity=st.one_of(st.none(), st.integers(1, 10**9)), scale=st.sampled_from(["1", "0.001", "0.25"]))
def test_split_is_exact_for_any_weights(cost_quanta, weights, capacity, scale):
    cost = QUANTUM * cost_quanta
    ws = [Decimal(w) * Decimal(scale) for w in weights]
    total = sum(ws, Decimal(0))
    units, _ = as_ints(ws)
    result = split(cost, units, None if capacity is None else (total, Decimal(capacity)))
    assert sum(result.shares, Decimal(0)) == result.used
    assert result.used + result.idle == cost
    assert all(s >= 0 and s == s.quantize(QUANTUM) for s in result.shares)
    if not total:
        assert result.used == 0
    elif capacity is None or total >= capacity:
        assert result.used == cost
    for w, share in zip(ws, result.shares):  # each share within one quantum of its exact part
        if total:
            assert abs(share - result.used * w / total) < QUANTUM


def test_split_leaves_busy_time_no_call_accounts_for_idle():
    """An engine busy all interval with no recorded call (traffic that bypassed aicost): all idle, the owner's."""
    result = split(Decimal("2.5"), [0, 0], (Decimal(3600), Decimal(3600)))
    assert (result.used, result.idle, result.shares) == (0, Decimal("2.5"), [0, 0])


def test_the_old_split_call_translates_as_documented():
    """docs/self-hosted.md: split(cost, weights, capacity) is now split(cost, as_ints(weights)[0], (sum, capacity))."""
    weights = [Decimal("1.5"), Decimal("2"), Decimal("0.25")]
    result = split(Decimal(3), as_ints(weights)[0], (sum(weights), Decimal(10)))  # 3.75 of 10 used: $1.125
    assert result.shares == [Decimal("0.45"), Decimal("0.6"), Decimal("0.075")]
    assert (result.used, result.idle, result.utilisation) == (Decimal("1.125"), Decimal("1.875"), Decimal("0.375"))


def test_the_meter_closes_an_interval_with_split(monkeypatch, clock):
    """The meter's allocation is allocate.split's (so split's tests test what the meter does)."""
    from aicost.pools import meter as meter_module

    seen = []
    real = meter_module.split
    monkeypatch.setattr(meter_module, "split", lambda *a: seen.append(a) or real(*a))
    pool = pool_from_mapping("p", {"gpu_hour": "2.50", "endpoints": ["h:1"], "models": ["m"], "owner": "ml",
                                   "output_weight": 4, "capacity_per_hour": 100_000})
    meter = PoolMeter([pool], clock=clock)
    try:
        meter._open["p"][int(T0)] = [_Use("a", "t", "m", 1000, 10, None), _Use("b", "t", "m", 3000, 0, None)]
        closed = meter.close_due(T0 + 3600)[0]
    finally:
        meter.clear_prices()
    assert seen == [(Decimal("2.50"), [1040, 3000], (Decimal(4040 * 3600), Decimal(100_000 * 3600)))]
    assert [a.final for a in closed.allocations] == real(*seen[0]).shares
    # $2.50 x 4,040 / 100,000 units used = $0.101, shared 1,040 : 3,000; the rest idle
    assert [a.final for a in closed.allocations] == [Decimal("0.026"), Decimal("0.075")]
    assert (closed.used, closed.idle) == (Decimal("0.101"), Decimal("2.399"))


# ------------------------------------------------------------------------- ledger, report, docs example
WORKED_EXAMPLE = {  # hour -> [(team, calls, input tokens, output tokens)]: the docs/self-hosted.md example
    0: [("search", 10, 1500, 300), ("support", 4, 3000, 800)],
    1: [("search", 20, 1500, 300)],
    2: [],
}


def _worked_example(pool_env, clock, tmp_path):
    telemetry, server, client = pool_env
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    aicost.instrument(ledger=url)
    # 2 GPUs at $2.50 an hour; an output token weighs 4 input tokens; 100,000 units an hour at full load
    meter = configure_pools({"support-llama": _pool(server, gpu_hour="2.50", output_weight=4,
                                                    capacity_per_hour=100_000)}, clock=clock)
    assert meter.sinks  # the ledger instrument(ledger=...) writes to
    for hour, traffic in WORKED_EXAMPLE.items():
        for team, calls, prompt, completion in traffic:
            for _ in range(calls):
                clock.advance(1)
                _call(client, server, team, prompt, completion)
        clock.now = T0 + (hour + 1) * 3600
        meter.close_due()
    aicost.ledger.writer.active().flush()
    return url, meter


def _report(url: str, *extra: str) -> str:
    import io

    from aicost.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = main(["report", "--ledger", url, "--pool", "support-llama", "--since", "2026-12-01",
                 "--until", "2026-12-02", *extra], out=out, err=err)
    assert code == 0, err.getvalue()
    return out.getvalue()


def test_ledger_holds_final_allocations_and_idle_and_report_shows_them(pool_env, clock, tmp_path):
    import json

    from aicost.ledger import open_store

    url, meter = _worked_example(pool_env, clock, tmp_path)
    closed = list(meter.closed["support-llama"])
    with open_store(url, create=False) as store:
        stored = list(aicost.pools.read_intervals(store, "support-llama", datetime(2026, 12, 1, tzinfo=timezone.utc),
                                                  datetime(2026, 12, 2, tzinfo=timezone.utc)))
        # call rows carry the real time of the call (the pool's intervals run on the simulated clock)
        calls = {r.span_id: r for r in store.rows(datetime(2000, 1, 1), datetime(2100, 1, 1), kinds=("call",))}
    assert len(calls) == 34
    assert [(i.cost, i.used, i.idle) for i in stored] == [(i.cost, i.used, i.idle) for i in closed]
    for interval in stored:
        assert interval.used + interval.idle == interval.cost == Decimal(5)
        for a in interval.allocations:
            # the call's own ledger row keeps the provisional cost it was priced at; the final one is beside it
            assert calls[a.span_id].cost == a.provisional
            # priced at the pool's provisional rate (a price override), or unknown before the first interval closed
            assert calls[a.span_id].price_known == (a.provisional is not None)
            assert calls[a.span_id].price_source == ("override" if a.provisional is not None else "unknown")
    data = json.loads(_report(url, "--format", "json", "--compare", "openai/gpt-4o-mini"))
    assert data["cost"] == "15" and Decimal(data["used"]) + Decimal(data["idle"]) == 15
    assert Decimal(data["teams"]["search"]) + Decimal(data["teams"]["support"]) == Decimal(data["used"])
    assert data["figures"] == "final" and "not part of the final" in data["provisional"]["note"]


def test_docs_worked_example_is_what_the_code_computes(pool_env, clock, tmp_path):
    from pathlib import Path

    url, _ = _worked_example(pool_env, clock, tmp_path)
    table = _report(url, "--compare", "openai/gpt-4o-mini")
    docs = (Path(__file__).resolve().parents[1] / "docs" / "self-hosted.md").read_text()
    assert table in docs, table


def test_dashboard_has_a_pool_section_with_final_figures(pool_env, clock, tmp_path):
    pytest.importorskip("plotly")
    from aicost.ledger import open_store
    from aicost.ledger.report import parse_period
    from aicost.reports.dashboard import build_dashboard

    url, _ = _worked_example(pool_env, clock, tmp_path)
    # the pool's intervals run on the simulated clock (Dec 1), the call rows on the real one: a period with both
    period = parse_period(None, since="2026-12-01", until="2030-01-01")
    with open_store(url, create=False) as store:
        page, _ = build_dashboard(store, period)
    assert 'data-pool="support-llama"' in page and "chart-pool-support-llama" in page
    assert '<b data-total="pool-cost">$15</b>' in page and "utilisation 35.3 %" in page
    assert "idle ($9.71" not in page and "idle $9.71" in page


def test_a_call_whose_interval_closes_while_it_is_recorded_is_allocated_in_the_next(pool_env, clock):
    """The listener reads the clock, then takes the lock to add the call to that interval. If the closing thread
    closes the interval in between (the clock below does it at that very moment, as the other thread would), the
    call was added to an interval already closed: never allocated, its cost in nobody's figures. It joins the
    oldest open interval instead."""
    telemetry, server, client = pool_env
    meter = configure_pools({"chat": _pool(server, output_weight=3)}, clock=clock)
    closed = []

    class ClosesWhileRead(SimClock):
        armed = False

        def __call__(self) -> float:
            now = self.now
            if self.armed:  # the listener's read: 59:59 of the first hour; the hour closes before it records
                self.armed = False
                closed.extend(meter.close_due(now=T0 + 3600))
            return now

    racing = ClosesWhileRead(T0 + 3599)
    meter.clock = racing
    racing.armed = True
    _call(client, server, "search", 1000, 100)
    assert not racing.armed and [c.allocations for c in closed] == [()]  # the hour closed, without the call
    racing.now = T0 + 7200
    [second] = meter.close_due()
    assert [(a.team, a.input_tokens, a.output_tokens) for a in second.allocations] == [("search", 1000, 100)]
    assert second.used == second.cost == Decimal("5.5")  # no capacity declared: its only call pays the hour


@pytest.mark.parametrize("where", ["app thread", "meter thread"])
def test_an_interval_closes_exactly_whatever_the_decimal_context(clock, where):
    """The meter closes intervals on its own thread, whose decimal context is a copy of decimal.DefaultContext (a
    host may lower its precision there), or on the app's (``close_due()``, a scheduler with its own context);
    summaries and the report are read on the app's. The interval's cost, every share, the provisional rate, the
    summary and its table are the same as in the default context. Before, at 4 digits, the interval's cost
    ($8.2537035 an hour) could not be quantized to the nano-dollar: InvalidOperation, no interval closed."""
    import decimal
    import threading

    from aicost.pools.meter import provisional_origin
    from aicost.pools.report import render_table as pool_table

    pool = pool_from_mapping("p", {"gpu_hour": "2.7512345", "gpus": 3, "endpoints": ["h:1"], "models": ["m"],
                                   "owner": "ml", "output_weight": "4.25", "capacity_per_hour": 123_457})

    def close() -> list:
        meter = PoolMeter([pool], clock=clock)
        try:
            meter._open["p"][int(T0)] = [_Use("a", "t1", "m", 1234, 567, None),
                                         _Use("b", "t2", "m", 98765, 4321, Decimal("0.0123456")),
                                         _Use("c", "t1", "m", 5, 0, None)]
            [closed] = meter.close_due(T0 + 3600)
            summary = summarise([closed])
            return [closed, closed.by_team(), summary, pool_table(summary, "December"), meter.provisional_rate("p"),
                    pricing.scoped_price(provisional_origin(pool), "m").rates]
        finally:
            meter.clear_prices()

    expected = close()
    assert expected[0].cost == Decimal("8.2537035") and expected[0].used + expected[0].idle == expected[0].cost
    got: list = []
    if where == "app thread":
        with decimal.localcontext(decimal.Context(prec=4)):
            got = close()
    else:
        saved = decimal.DefaultContext.prec
        decimal.DefaultContext.prec = 4  # what a new thread's context starts as
        try:
            thread = threading.Thread(target=lambda: got.extend(close()))
            thread.start()
            thread.join()
        finally:
            decimal.DefaultContext.prec = saved
    assert got == expected


def _money_of(interval) -> dict[str, Decimal]:
    """Every amount of a closed interval, by name."""
    amounts = {"cost": interval.cost, "used": interval.used, "idle": interval.idle}
    amounts.update({f"final {a.span_id}": a.final for a in interval.allocations})
    amounts.update({f"provisional {a.span_id}": a.provisional for a in interval.allocations
                    if a.provisional is not None})
    amounts.update({f"by_team {team}": share for team, share in interval.by_team().items()})
    return amounts


def test_every_amount_a_pool_makes_is_canonical(clock, tmp_path):
    """Money is Decimal in one canonical form (pricing.canonical): the ledger writes it so, and a pool's amounts
    in memory were not: an interval's cost and idle were nano-dollar quantized (Decimal('10.000000000')), a call's
    share Decimal('0.104000000'), an idle hour's used and a share of nothing Decimal('0E-9'), team sums and the
    summary's provisional total whatever their additions left. Each is canonical where it is made, and reads the
    same from the ledger as in memory."""
    from aicost.ledger import open_store
    from aicost.pools.ledger import read_intervals, write_interval

    def canonical(amount: Decimal) -> bool:
        return repr(amount) == repr(pricing.canonical(amount))

    pool = pool_from_mapping("p", {"gpu_hour": "2.50", "gpus": 4, "endpoints": ["h:1"], "models": ["m"],
                                   "owner": "ml", "output_weight": 4, "capacity_per_hour": 100_000})
    start = datetime.fromtimestamp(T0, timezone.utc)
    meter = PoolMeter([pool], clock=clock)
    try:
        meter._open["p"][int(T0)] = [_Use("a", "t1", "m", 1000, 10, Decimal("0.015")),
                                     _Use("b", "t1", "m", 3000, 0, Decimal("0.005")), _Use("c", "t2", "m", 0, 0, None)]
        busy, idle = meter.close_due(T0 + 7200)  # $10 an hour: $0.404 used the first, nothing the second
    finally:
        meter.clear_prices()
    summary = summarise([busy, idle])
    shared = split(Decimal("10.000000000"), [104, 300, 0], (Decimal(404), Decimal(10_000)))
    amounts = {"interval_cost": pool.interval_cost(start), "split used": shared.used, "split idle": shared.idle,
               **{f"split share {i}": share for i, share in enumerate(shared.shares)},
               **{f"busy {name}": value for name, value in _money_of(busy).items()},
               **{f"idle {name}": value for name, value in _money_of(idle).items()},
               "summary cost": summary.cost, "summary used": summary.used, "summary idle": summary.idle,
               "summary provisional": summary.provisional,
               **{f"summary by_team {team}": share for team, share in summary.by_team.items()}}
    assert {name: value for name, value in amounts.items() if not canonical(value)} == {}
    assert (busy.used, busy.idle, idle.used, summary.by_team) == (
        Decimal("0.404"), Decimal("9.596"), 0, {"t1": Decimal("0.404"), "t2": 0})
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    with open_store(url) as store:
        write_interval(store, busy)
        write_interval(store, idle)
        read = list(read_intervals(store, "p", start, datetime.fromtimestamp(T0 + 7200, timezone.utc)))
    assert [{n: repr(v) for n, v in _money_of(i).items()} for i in read] == [
        {n: repr(v) for n, v in _money_of(i).items()} for i in (busy, idle)]


def test_summarising_a_period_without_a_closed_interval_says_what_it_needs(clock, tmp_path):
    """``summarise`` of a period whose ledger holds no closed interval of the pool raised ``ValueError("no closed
    intervals in the period")``, which named neither the argument nor what is accepted, and docs/self-hosted.md's
    snippet did not say it raises. An empty summary would not be more honest: it has no pool or owner to name, and
    its $0 cost and 0 % utilisation would read as a pool that sat idle, not as a period nothing measured (``aicost
    report --pool`` and the dashboard say "no figures" there, and never summarise). So it is still a ValueError,
    whose message says which argument was empty and what it takes."""
    from aicost.ledger import open_store
    from aicost.pools.ledger import read_intervals, write_interval

    pool = pool_from_mapping("p", {"gpu_hour": "2.50", "gpus": 1, "endpoints": ["h:1"], "models": ["m"],
                                   "owner": "ml", "output_weight": 4})
    meter = PoolMeter([pool], clock=clock)
    try:
        meter._open["p"][int(T0)] = [_Use("a", "t1", "m", 1000, 10, None)]
        [hour] = meter.close_due(T0 + 3600)
    finally:
        meter.clear_prices()
    day = 24 * 3600
    with open_store(f"sqlite:///{tmp_path / 'ledger.db'}") as store:
        write_interval(store, hour)
        closed = read_intervals(store, "p", datetime.fromtimestamp(T0, timezone.utc),
                                datetime.fromtimestamp(T0 + day, timezone.utc))
        assert summarise(closed).intervals == 1  # a generator, as read_intervals returns it
        for pool_name, start in (("p", T0 + day), ("other", T0)):  # the next day; a pool the ledger does not have
            nothing = read_intervals(store, pool_name, datetime.fromtimestamp(start, timezone.utc),
                                     datetime.fromtimestamp(start + day, timezone.utc))
            with pytest.raises(ValueError) as raised:
                summarise(nothing)
            assert str(raised.value) == (
                "summarise: intervals is empty (no closed interval of the pool in the period); it takes one or more "
                "ClosedInterval, e.g. from read_intervals(); check for none first, as aicost report --pool does")
    with pytest.raises(ValueError, match="^summarise: intervals is empty"):
        summarise([])


def test_summarising_intervals_of_more_than_one_pool_is_refused_naming_them(clock, tmp_path):
    """``summarise`` took the pool and owner from the first interval and summed whatever it was given: two pools'
    intervals (read from one ledger and put together, or a two-pool meter's ``close_due()`` passed whole) came out as
    one summary under the first pool's name and owner, the second pool's cost and teams counted as the first's. It is
    a ValueError naming the argument, the pools and what is accepted, as for no interval at all."""
    from aicost.ledger import open_store
    from aicost.pools.ledger import read_intervals, write_interval

    pools = [pool_from_mapping(name, {"gpu_hour": "2.50", "gpus": 1, "endpoints": [f"{name}:1"], "models": ["m"],
                                      "owner": owner, "output_weight": 4})
             for name, owner in (("p", "ml"), ("q", "infra"))]
    meter = PoolMeter(pools, clock=clock)
    try:
        meter._open["p"][int(T0)] = [_Use("a", "t1", "m", 1000, 10, None)]
        meter._open["q"][int(T0)] = [_Use("b", "t2", "m", 2000, 20, None)]
        closed = meter.close_due(T0 + 3600)
    finally:
        meter.clear_prices()
    assert sorted(i.pool for i in closed) == ["p", "q"]
    day = 24 * 3600
    with open_store(f"sqlite:///{tmp_path / 'ledger.db'}") as store:
        for interval in closed:
            write_interval(store, interval)
        each = {name: list(read_intervals(store, name, datetime.fromtimestamp(T0, timezone.utc),
                                          datetime.fromtimestamp(T0 + day, timezone.utc))) for name in ("p", "q")}
    assert summarise(each["p"]).pool == "p" and summarise(each["q"]).owner == "infra"  # one pool's: as before
    for mixed in (each["p"] + each["q"], iter(each["q"] + each["p"]), closed):
        with pytest.raises(ValueError) as raised:
            summarise(mixed)
        assert str(raised.value) == (
            "summarise: intervals hold more than one pool ('p', 'q'); it takes one pool's ClosedInterval, e.g. from "
            "read_intervals(store, pool, start, end), or a meter's close_due() filtered to one pool "
            "([i for i in closed if i.pool == name])")
