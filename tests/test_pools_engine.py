"""Pools measured by the serving engine: utilisation from vLLM's gauges (running and waiting requests, KV-cache
usage) sampled over the interval, GPU time shared by the engine's own prefill / decode seconds, token weights from
the engine. A fake vLLM /metrics page with vLLM's names, real openai SDK calls, an injected clock."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest

import aicost
from aicost.pools import QUANTUM, configure_pools
from tests.pool_helpers import FakeVllmMetrics, SimClock
from tests.vendor_server import ReplayServer, openai_chat_reply, openai_client

MODEL = "acme/llama-3.1-8b-support-ft"
T0 = int(datetime(2026, 12, 1, tzinfo=timezone.utc).timestamp())


@pytest.fixture
def env(instrumented, replay_server: ReplayServer):
    client = openai_client(replay_server)
    yield replay_server, client
    client.close()
    aicost.pools.disable()


def _call(client, server: ReplayServer, team: str, prompt: int, completion: int) -> None:
    server.enqueue(openai_chat_reply(model=MODEL, prompt_tokens=prompt, completion_tokens=completion))
    with aicost.attribute(team=team):
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])


def _gauges(engine: FakeVllmMetrics, running=0, waiting=0, kv=0.0) -> None:
    engine.running, engine.waiting, engine.kv = running, waiting, kv


def test_gpu_time_key_shares_the_busy_time_the_engine_reports(env):
    server, client = env
    clock = SimClock(T0)
    with FakeVllmMetrics(MODEL) as engine:
        # 2 GPUs x $2.75 = $5.50 an hour, 4 request slots (vLLM --max-num-seqs)
        meter = configure_pools({"gpu": {"gpu_hour": "2.75", "gpus": 2, "endpoints": [server.url], "models": [MODEL],
                                         "owner": "ml-platform", "key": "gpu_time", "metrics_url": engine.url,
                                         "max_concurrency": 4}}, clock=clock)
        calls = (("search", 1000, 10), ("support", 100, 200), ("support", 500, 50))
        # the engine's load through the hour, sampled at these seconds (each holds until the next sample):
        timeline = [(300, dict(running=2)),           # 2 of 4 slots: 0.5 (also stands for 0-300 s)
                     (1200, dict(running=1, kv=0.6)),  # KV cache 60 % full: 0.6
                     (1800, dict(running=4, waiting=3)),  # requests queued: full, 1
                     (2700, dict())]                  # nothing running: 0
        for (at, gauges), call in zip(timeline, (*calls, None)):
            clock.now = T0 + at
            _gauges(engine, **gauges)
            meter.sample()
            if call is not None:
                team, prompt, completion = call
                _call(client, server, team, prompt, completion)
                engine.served(prompt, completion, prefill_per_token="0.0002", decode_per_token="0.025")
        clock.now = T0 + 3600
        _gauges(engine, kv=0.25)
        meter.sample()  # taken at the hour's end: it belongs to the next hour
        [hour] = meter.close_due()
        clock.now = T0 + 7200
        [idle_hour] = meter.close_due()
        # the third hour: the one sample sees an empty engine, but a call ran between samples; the engine's
        # counters prove 0.5 s prefill + 50 s decode on 1 of 4 slots, so the hour was busy at least 12.625 s
        _gauges(engine)
        meter.sample()
        _call(client, server, "search", 2500, 2000)
        engine.served(2500, 2000, prefill_per_token="0.0002", decode_per_token="0.025")
        clock.now = T0 + 3 * 3600
        [short] = meter.close_due()
    assert short.busy_seconds == Decimal("12.625")
    assert short.used == QUANTUM * (5_500_000_000 * 12625 // 3_600_000) and short.allocations[0].final == short.used
    # busy = 0.5 x 1200 s + 0.6 x 600 s + 1 x 900 s + 0 x 900 s = 1,860 engine-seconds of 3,600
    assert hour.busy_seconds == 1860 and hour.utilisation_from == "engine load, 4 samples"
    assert hour.used == QUANTUM * (5_500_000_000 * 1860 // 3600) == Decimal("2.841666666")
    assert hour.used + hour.idle == hour.cost == Decimal("5.5")
    # each call's share of that busy time: its own GPU-seconds as the engine measured them (prefill + decode)
    assert (hour.input_weight, hour.output_weight, hour.weights_from) == (Decimal("0.0002"), Decimal("0.025"), "engine")
    units = [a.units for a in hour.allocations]
    assert units == [Decimal("0.45"), Decimal("5.02"), Decimal("1.35")]
    assert sum(a.final for a in hour.allocations) == hour.used
    for a in hour.allocations:
        assert abs(a.final - hour.used * a.units / sum(units)) < QUANTUM
    # the next hour: the engine was 25 % loaded by traffic aicost never saw; no call pays it, the owner does
    assert idle_hour.busy_seconds == 900 and idle_hour.used == 0 and idle_hour.idle == idle_hour.cost


def test_token_key_weights_and_utilisation_from_the_engine_and_the_declared_fallbacks(env):
    server, client = env
    clock = SimClock(T0)
    with FakeVllmMetrics(MODEL) as engine:
        # the engine measures the weights and the utilisation; output_weight and capacity_per_hour are only the
        # fallbacks for an hour without engine figures
        meter = configure_pools({"chat": {"gpu_hour": "2.50", "gpus": 2, "endpoints": [server.url], "models": [MODEL],
                                          "owner": "ml-platform", "metrics_url": engine.url, "output_weight": 3,
                                          "capacity_per_hour": 100_000}}, clock=clock)
        _gauges(engine, kv=0.4)
        meter.sample()
        _call(client, server, "search", 400, 100)  # the engine's counters have not moved yet this hour
        clock.now = T0 + 3600
        [first] = meter.close_due()
        _call(client, server, "search", 400, 100)  # no load sample this hour
        engine.served(800, 200, prefill_per_token="0.0001", decode_per_token="0.004")
        clock.now = T0 + 7200
        [second] = meter.close_due()
    assert (first.output_weight, first.weights_from) == (3, "declared (no engine data yet)")
    assert first.utilisation == Decimal("0.4") and first.used == Decimal(2)  # 40 % of $5, from the KV cache
    assert first.utilisation_from == "engine load, 1 sample"
    # decode costs 40x prefill per token on this engine: measured, it beats the declared 3
    assert (second.input_weight, second.output_weight, second.weights_from) == (1, 40, "engine")
    assert second.allocations[0].units == 400 + 40 * 100
    assert second.utilisation_from == "declared capacity"
    assert second.used == QUANTUM * (5_000_000_000 * 4400 // 100_000)  # 4,400 of 100,000 units
    for interval in (first, second):
        assert interval.used + interval.idle == interval.cost == Decimal(5)
        assert sum(a.final for a in interval.allocations) == interval.used


class _FlakyScrape:
    """The engine's /metrics as the meter reads it (vLLM's page, parsed); unreachable while ``down``."""

    def __init__(self, engine: FakeVllmMetrics) -> None:
        self.engine, self.down = engine, False

    def __call__(self, url: str, models: tuple[str, ...]):
        from aicost.pools.engine import parse

        if self.down:
            raise OSError("connection refused")
        return parse(self.engine.text(), models)


def test_an_interval_without_a_counter_baseline_has_no_counter_data_not_the_engines_lifetime(env):
    """A failed /metrics read leaves nothing to difference from: the engine's lifetime counters (a week of
    traffic) must not count as this hour's, or the busy-time floor makes a nearly idle hour fully used and one
    call pays the idle time. The read is the next interval's baseline; a failed read at a close is not bridged
    either (the next interval does not take two intervals' counters)."""
    server, client = env
    clock = SimClock(T0)
    engine = FakeVllmMetrics(MODEL)
    engine.served(500_000_000, 50_000_000, prefill_per_token="0.0002", decode_per_token="0.025")  # a week's
    scrape = _FlakyScrape(engine)
    scrape.down = True  # the baseline read at configure time fails
    meter = configure_pools({"gpu": {"gpu_hour": "2.50", "gpus": 2, "endpoints": [server.url], "models": [MODEL],
                                     "owner": "ml-platform", "key": "gpu_time", "metrics_url": "http://vllm/metrics",
                                     "max_concurrency": 256}}, clock=clock, scrape=scrape)
    scrape.down = False
    hours = []
    for hour in range(5):
        for minute in range(0, 60, 10):  # 1 of 256 slots busy all hour: 14.0625 busy seconds
            clock.now = T0 + hour * 3600 + minute * 60
            _gauges(engine, running=1)
            meter.sample()
        _call(client, server, "search", 20_000, 2_000)
        engine.served(20_000, 2_000, prefill_per_token="0.0002", decode_per_token="0.025")  # 4 s + 50 s
        clock.now = T0 + (hour + 1) * 3600
        scrape.down = hour == 2  # the read at the third hour's close fails
        hours.extend(meter.close_due())
        scrape.down = False
    first, second, third, fourth, fifth = hours
    # no counter data: no baseline (first), the read failed (third), the baseline before it is not bridged (fourth)
    for interval in (first, third, fourth):  # the load samples alone
        assert interval.engine is None
        assert interval.busy_seconds == Decimal("14.0625") and interval.used == Decimal("0.019531250")
        assert interval.used + interval.idle == interval.cost == Decimal(5)
    assert first.weights_from == "default 1:1 (no engine data yet)"
    assert third.weights_from == fourth.weights_from == "engine (previous interval)"
    for interval in (second, fifth):  # a baseline one hour old: the hour's own counters
        assert (interval.engine.prompt_tokens, interval.engine.generation_tokens) == (20_000, 2_000)
        assert interval.busy_seconds == Decimal("14.0625") and interval.weights_from == "engine"


def test_a_gpu_time_interval_without_engine_figures_says_its_shares_are_estimated(env, tmp_path):
    """gpu_time shares an interval by the GPU-seconds the engine measured. With no engine figures yet (its /metrics
    never read), the meter shared it by tokens 1:1, and nothing said so: the interval, the ledger and `aicost report
    --pool` gave the team shares as exact. With max_concurrency declared, the utilisation even compared the calls'
    1,310 tokens with the interval's 4 x 3,600 slot-seconds as if they were GPU-seconds ("engine request-seconds
    over max_concurrency": 9.1 %). The interval says its shares are estimated and why (in memory, read back from the
    ledger, in the report's table and JSON), and its utilisation is not made from tokens: nothing measured it, so
    the calls pay the interval, as when nothing is declared."""
    import io
    import json

    from aicost.cli import main
    from aicost.ledger import open_store
    from aicost.pools import read_intervals, summarise

    server, client = env
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    aicost.instrument(ledger=url)  # the calls' rows and the closed interval's
    clock = SimClock(T0)
    scrape = _FlakyScrape(FakeVllmMetrics(MODEL))
    scrape.down = True  # the engine's /metrics cannot be read all hour
    meter = configure_pools({"gpu": {"gpu_hour": "2.50", "gpus": 2, "endpoints": [server.url], "models": [MODEL],
                                     "owner": "ml-platform", "key": "gpu_time", "metrics_url": "http://vllm/metrics",
                                     "max_concurrency": 4}}, clock=clock, scrape=scrape)
    _call(client, server, "search", 1000, 10)
    _call(client, server, "support", 100, 200)
    clock.now = T0 + 3600
    [hour] = meter.close_due()
    assert hour.weights_from == "default 1:1 (no engine data yet)"
    assert [a.units for a in hour.allocations] == [1010, 300]  # tokens, not GPU-seconds
    assert "GPU-seconds" in hour.estimate_reason and "1:1" in hour.estimate_reason
    assert "request-seconds" not in hour.utilisation_from
    assert hour.used == hour.cost == Decimal(5)  # no measure of the used fraction: the calls pay the interval
    aicost.ledger.writer.active().flush()
    with open_store(url, create=False) as store:
        [read] = read_intervals(store, "gpu", datetime.fromtimestamp(T0, timezone.utc),
                                datetime.fromtimestamp(T0 + 3600, timezone.utc))
    assert read.estimate_reason == hour.estimate_reason
    summary = summarise([read])
    assert (summary.estimated_intervals, summary.estimate_reasons) == (1, (hour.estimate_reason,))
    reports = {}
    for fmt in ("table", "json"):
        out, err = io.StringIO(), io.StringIO()
        assert main(["report", "--ledger", url, "--pool", "gpu", "--since", "2026-12-01", "--until", "2026-12-02",
                     "--format", fmt], out=out, err=err) == 0, err.getvalue()
        reports[fmt] = out.getvalue()
    assert f"1 of 1 interval: {hour.estimate_reason}" in reports["table"]
    assert json.loads(reports["json"])["estimated"] == {"intervals": 1, "reasons": [hour.estimate_reason]}
    pytest.importorskip("plotly")
    import html

    page = tmp_path / "spend.html"
    out, err = io.StringIO(), io.StringIO()
    # (the interval is on the simulated clock, Dec 1, the call rows on the real one: a period with both)
    assert main(["dashboard", "--ledger", url, "--since", "2026-12-01", "--until", "2030-01-01", "--out", str(page)],
                out=out, err=err) == 0, err.getvalue()
    assert f"Estimated team shares: {html.escape(summary.estimate_note())}." in page.read_text()


@pytest.mark.parametrize("key", ["gpu_time", "tokens"])
def test_an_interval_on_an_earlier_intervals_engine_weights_says_its_shares_are_estimated(env, tmp_path, key):
    """The engine's /metrics unreadable at an interval's close: the interval is shared by the weights the engine
    measured in an earlier interval (the documented fallback), other traffic's seconds per token, not this
    interval's, as the key says. Its shares were given as exact (estimate_reason None), while the 1:1 default's
    said they were estimated. It says so too, in memory and read back from the ledger, and the summary counts it."""
    from aicost.ledger import open_store
    from aicost.pools import read_intervals, summarise
    from aicost.pools.ledger import write_interval

    server, client = env
    clock = SimClock(T0)
    engine = FakeVllmMetrics(MODEL)
    scrape = _FlakyScrape(engine)
    meter = configure_pools({"pool": {"gpu_hour": "2.50", "gpus": 2, "endpoints": [server.url], "models": [MODEL],
                                      "owner": "ml-platform", "key": key, "metrics_url": "http://vllm/metrics",
                                      "max_concurrency": 4, "output_weight": 3}}, clock=clock, scrape=scrape)
    hours = []
    for hour in range(2):
        _call(client, server, "search", 400, 100)
        engine.served(400, 100, prefill_per_token="0.0001", decode_per_token="0.004")
        clock.now = T0 + (hour + 1) * 3600
        scrape.down = hour == 1  # the read at the second hour's close fails
        hours.extend(meter.close_due())
    measured, previous = hours
    assert (measured.weights_from, measured.estimate_reason) == ("engine", None)
    assert previous.weights_from == "engine (previous interval)"
    assert (previous.input_weight, previous.output_weight) == (measured.input_weight, measured.output_weight)
    assert "earlier interval" in previous.estimate_reason and "no engine figures for the interval" in \
        previous.estimate_reason
    with open_store(f"sqlite:///{tmp_path / 'ledger.db'}") as store:
        for interval in hours:
            write_interval(store, interval)
        read = list(read_intervals(store, "pool", datetime.fromtimestamp(T0, timezone.utc),
                                   datetime.fromtimestamp(T0 + 7200, timezone.utc)))
    assert [interval.estimate_reason for interval in read] == [None, previous.estimate_reason]
    summary = summarise(read)
    assert (summary.estimated_intervals, summary.estimate_reasons) == (1, (previous.estimate_reason,))
