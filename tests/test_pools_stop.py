"""When a pool meter stops (the pools reconfigured or disabled, the interpreter's exit), the calls of the interval
still open are not lost: a pool the new meter keeps goes on counting its interval, the others' open interval is
closed early (whole, the time after the stop idle) and written, and the exit does it without starting a thread.
Real openai SDK calls to an OpenAI-compatible server on 127.0.0.1, on an injected clock."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timezone
from decimal import Decimal

import pytest

import aicost
from aicost import hooks
from aicost.pools import QUANTUM, configure_pools
from aicost.pools import meter as pool_meter
from tests.pool_helpers import FakeVllmMetrics, SimClock
from tests.vendor_server import ReplayServer, openai_chat_reply, openai_client

MODEL = "acme/llama-3.1-8b-support-ft"  # no catalog price: only the pool prices it
T0 = datetime(2026, 12, 1, tzinfo=timezone.utc).timestamp()
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def env(instrumented, replay_server: ReplayServer):
    client = openai_client(replay_server)
    yield instrumented, replay_server, client
    client.close()
    aicost.pools.disable()


def _pool(server: ReplayServer, **extra):
    return {"gpu_hour": "2.75", "gpus": 2, "endpoints": [server.url.split("//", 1)[1]], "models": [MODEL],
            "owner": "ml-platform", "output_weight": 3, **extra}


def _call(client, server: ReplayServer, team: str, prompt: int, completion: int) -> None:
    server.enqueue(openai_chat_reply(model=MODEL, prompt_tokens=prompt, completion_tokens=completion))
    with aicost.attribute(team=team):
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])


def _kept(meter) -> list:
    """A sink that keeps what the meter closes (there is no ledger here)."""
    closed: list = []
    meter.sinks.append(closed.append)
    return closed


def _pool_span_costs(telemetry) -> list:
    return [(s.attributes or {}).get("aicost.cost.total_usd") for s in telemetry.aicost_spans()
            if "aicost.pool.name" in (s.attributes or {})]


def test_a_pool_the_new_meter_keeps_goes_on_counting_its_open_interval(env):
    """configure_pools with other arguments replaces the meter. The calls of the open interval were the old
    meter's alone: the new one closed the hour with none of them (all idle, the calls' cost in nobody's figures),
    and the pool's provisional rate was gone until another interval closed (its calls unknown)."""
    telemetry, server, client = env
    clock = SimClock(T0)
    meter = configure_pools({"chat": _pool(server)}, clock=clock)
    _call(client, server, "search", 1000, 100)  # hour 1: gives the pool its rate
    clock.now = T0 + 3600
    [first] = meter.close_due()
    clock.advance(600)
    _call(client, server, "support", 2000, 50)
    telemetry.clear()
    again = configure_pools({"chat": _pool(server)}, clock=clock, background=False)  # same pool, another argument
    assert again is not meter
    clock.advance(600)
    _call(client, server, "search", 500, 10)
    assert meter.close_due() == []  # the old meter closes nothing any more
    clock.now = T0 + 7200
    [second] = again.close_due()
    assert [(a.team, a.input_tokens) for a in second.allocations] == [("support", 2000), ("search", 500)]
    # the same pool: its provisional rate goes on (hour 1's), never unknown after the reconfigure
    per_million = first.used / first.units * 1_000_000
    rates = (per_million.quantize(Decimal("1e-9")), (per_million * 3).quantize(Decimal("1e-9")))
    late = second.allocations[1]
    assert late.provisional == (500 * rates[0] + 10 * rates[1]) / 1_000_000
    assert [Decimal(str(c)) for c in _pool_span_costs(telemetry)] == [late.provisional]
    assert second.used == second.cost == Decimal("5.5")  # no capacity declared: its calls pay the hour
    assert list(again.closed["chat"]) == [first, second]  # the history moved with the pool
    assert meter.lost_calls == again.lost_calls == 0


def test_a_changed_pool_of_the_same_name_takes_the_open_calls_and_prices_the_interval_by_its_settings(env):
    telemetry, server, client = env
    clock = SimClock(T0 + 300)
    configure_pools({"chat": _pool(server)}, clock=clock)
    _call(client, server, "search", 1000, 100)
    again = configure_pools({"chat": _pool(server, gpu_hour="3", capacity_per_hour=100_000)}, clock=clock)
    clock.now = T0 + 3600
    [interval] = again.close_due()
    assert [(a.team, a.units) for a in interval.allocations] == [("search", 1300)]
    assert interval.cost == Decimal(6) and interval.used == (Decimal(6) * 1300 / 100_000).quantize(QUANTUM)
    assert "closed early" not in interval.utilisation_from


def test_a_call_made_while_the_old_meter_stops_joins_the_new_meters_interval(env):
    """configure_pools took the old meter off the hooks before stopping it, and put the new one on after: a call
    recorded meanwhile (the stop closes intervals, and may wait 5 s for a close under way) reached neither meter,
    and its tokens were in no allocation without a word. Here the call comes from the old meter's sink, as the
    stop hands it the interval it closes early: as a call on another thread could."""
    telemetry, server, client = env
    clock = SimClock(T0 + 600)
    pools = {"chat": _pool(server), "other": {**_pool(server), "endpoints": ["10.0.0.9:8000"]}}
    meter = configure_pools(pools, clock=clock)
    meter.sinks.append(lambda interval: _call(client, server, "support", 2000, 50) if interval.pool == "other" else 0)
    again = configure_pools({"chat": pools["chat"]}, clock=clock)  # "other" is dropped: closed early
    clock.now = T0 + 3600
    [hour] = again.close_due()
    assert [(a.team, a.units) for a in hour.allocations] == [("support", 2150)]
    assert meter.lost_calls == 0


def test_a_pool_the_new_meter_drops_has_its_open_interval_closed_early_and_written(env):
    telemetry, server, client = env
    clock = SimClock(T0)
    pools = {"chat": _pool(server, capacity_per_hour=100_000),
             "other": {**_pool(server), "endpoints": ["10.0.0.9:8000"]}}
    meter = configure_pools(pools, clock=clock)
    closed = _kept(meter)
    clock.advance(1200)
    _call(client, server, "search", 1000, 100)
    clock.advance(600)
    again = configure_pools({"other": pools["other"]}, clock=clock)
    [chat] = [c for c in closed if c.pool == "chat"]
    assert not [c for c in closed if c.pool == "other"]  # kept: the new meter goes on counting it
    assert [(a.team, a.units) for a in chat.allocations] == [("search", 1300)]
    assert chat.cost == Decimal("5.5") and chat.used == (Decimal("5.5") * 1300 / 100_000).quantize(QUANTUM, "ROUND_FLOOR")
    assert chat.used + chat.idle == chat.cost
    assert chat.utilisation_from == ("declared capacity; closed early (pools reconfigured) at 00:30:00 UTC, "
                                     "1800 of 3600 s in: no call metered after it")
    assert again.close_due(now=T0 + 3600)[0].pool == "other"


def test_a_pool_given_another_interval_closes_its_open_one_early_and_the_new_intervals_begin_after_it(env):
    telemetry, server, client = env
    clock = SimClock(T0 + 600)
    meter = configure_pools({"chat": _pool(server)}, clock=clock)
    closed = _kept(meter)
    _call(client, server, "search", 1000, 100)
    again = configure_pools({"chat": _pool(server, interval=900)}, clock=clock)
    [hour] = closed
    assert (hour.end.timestamp(), [a.team for a in hour.allocations]) == (T0 + 3600, ["search"])
    clock.now = T0 + 1200
    _call(client, server, "support", 10, 1)  # the hour is booked: it joins the first 15 minutes after it
    assert again.close_due(now=T0 + 3600) == []  # none of the booked hour again
    [quarter] = again.close_due(now=T0 + 4500)
    assert quarter.start.timestamp() == T0 + 3600 and [a.team for a in quarter.allocations] == ["support"]


def test_an_interval_begun_at_the_stops_second_and_not_booked_is_the_new_meters_first(env):
    """An interval that began at the stop's very second, with no call in it, is not booked by the old meter; the
    new meter with another interval length began after it all the same: that hour was booked by no one."""
    telemetry, server, client = env
    clock = SimClock(T0)
    meter = configure_pools({"chat": _pool(server)}, clock=clock)
    closed = _kept(meter)
    clock.now = T0 + 3600  # the second the next hour begins
    again = configure_pools({"chat": _pool(server, interval=1800)}, clock=clock)
    assert [c.start.timestamp() for c in closed] == [T0]  # the hour that ended; the one just begun is not booked
    [first, second] = again.close_due(now=T0 + 7200)
    assert (first.start.timestamp(), second.end.timestamp()) == (T0 + 3600, T0 + 7200)


def test_disable_closes_the_open_interval_early_whole_and_the_sinks_get_it(env):
    """disable() (and uninstrument()) dropped the open interval's calls: never allocated, never written."""
    telemetry, server, client = env
    clock = SimClock(T0)
    meter = configure_pools({"chat": _pool(server, capacity_per_hour=100_000)}, clock=clock)
    closed = _kept(meter)
    clock.advance(900)
    for team, prompt, completion in (("search", 1500, 300), ("support", 3000, 800)):
        _call(client, server, team, prompt, completion)
    clock.advance(100)
    aicost.pools.disable()
    [interval] = closed
    units = 1500 + 3 * 300 + 3000 + 3 * 800
    # the whole hour, each call's share what the hour's close would have given it had no other call come
    assert interval.cost == Decimal("5.5") and interval.end.timestamp() == T0 + 3600
    assert interval.used == (Decimal("5.5") * units / 100_000).quantize(QUANTUM, "ROUND_FLOOR")
    assert sum(a.final for a in interval.allocations) == interval.used and interval.used + interval.idle == interval.cost
    assert "closed early (pools disabled) at 00:16:40 UTC, 1000 of 3600 s in" in interval.utilisation_from
    assert meter.close_due(now=T0 + 3600) == [] and meter.lost_calls == 0


def test_uninstrument_writes_the_open_interval_to_the_ledger_before_closing_it(env, tmp_path, spill_dir,
                                                                                monkeypatch):
    from aicost.ledger import writer

    made = []

    class Counted(writer.LedgerWriter):
        def __init__(self, *args, **kwargs) -> None:
            made.append(kwargs.get("setting"))
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(writer, "LedgerWriter", Counted)
    telemetry, server, client = env
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    aicost.instrument(ledger=url)
    configure_pools({"chat": _pool(server)}, clock=SimClock(T0 + 60))
    _call(client, server, "search", 1000, 100)
    aicost.uninstrument()
    [interval] = _stored(url)
    assert [(a.team, a.final) for a in interval.allocations] == [("search", Decimal("5.5"))]
    assert made == ["instrument(ledger=...)"]  # its writer wrote it: the pools opened no writer of their own


def test_an_interval_closed_early_counts_the_engine_load_up_to_the_stop_and_reads_no_engine(env):
    telemetry, server, client = env
    clock = SimClock(T0)
    with FakeVllmMetrics(MODEL) as engine:
        meter = configure_pools({"chat": _pool(server, metrics_url=engine.url)}, clock=clock)
        closed = _kept(meter)
        clock.advance(600)
        engine.kv = 0.5
        meter.sample()  # load 0.5 from 00:10 (and back to the interval's start)
        _call(client, server, "search", 1000, 100)
        clock.advance(600)
        scrapes = engine.scrapes
        aicost.pools.disable()
        assert engine.scrapes == scrapes  # bounded: no engine read at the stop
    [interval] = closed
    # busy: 0.5 held over the 1200 s up to the stop, none after it: 600 of 3600 s, a sixth of $5.50
    assert interval.busy_seconds == 600 and interval.used == (Decimal("5.5") / 6).quantize(QUANTUM, "ROUND_FLOOR")
    assert interval.utilisation_from.startswith("engine load, 1 sample; closed early (pools disabled)")


def test_a_call_recorded_as_its_meter_stops_goes_to_the_new_meter_or_is_counted_lost(env, caplog):
    telemetry, server, client = env
    clock = SimClock(T0)
    results = []
    hooks.add_listener(results.append)
    try:
        meter = configure_pools({"chat": _pool(server)}, clock=clock)
        _call(client, server, "search", 1000, 100)
    finally:
        hooks.remove_listener(results.append)
    [result] = [r for r in results if r.info.request_model == MODEL]
    again = configure_pools({"chat": _pool(server)}, clock=clock, background=False)
    meter(result)  # the old meter's listener, still running as it was replaced
    assert [len(calls) for calls in again._open["chat"].values()] == [2]
    assert meter.lost_calls == 0
    aicost.pools.disable()
    with caplog.at_level(logging.WARNING, logger="aicost"):
        again(result)  # no meter after this one: counted and logged, never silently
    assert again.lost_calls == 1 and "will never be allocated" in caplog.text


def test_stop_waits_for_a_close_under_way_no_longer_than_its_bound(env, monkeypatch):
    telemetry, server, client = env
    clock = SimClock(T0)
    meter = configure_pools({"chat": _pool(server)}, clock=clock, background=False)
    _call(client, server, "search", 1000, 100)
    monkeypatch.setattr(pool_meter, "_STOP_WAIT_S", 0.2)
    meter._closing.acquire()  # a close under way on the closing thread, stuck (an engine that does not answer)
    try:
        began = time.monotonic()
        assert meter.stop(why="exit") == []
        assert time.monotonic() - began < 1 and meter.lost_calls == 1  # counted, not waited for
    finally:
        meter._closing.release()
    assert meter.close_due(now=T0 + 3600) == []  # stopped: the call is not allocated later either


def test_at_exit_an_interval_due_but_not_yet_closed_is_closed_without_reading_the_engine(env):
    """The closing thread closes due intervals once a minute: at an exit within that minute, the stop closed the
    hour that had ended through the engine's counters, a read of up to 5 s per pool (more than the exit's whole
    10 s bound with a few pools), though "the engine is not read at the stop". It is closed as the open one is,
    without them, within the exit's deadline."""
    telemetry, server, client = env
    clock = SimClock(T0 + 600)
    reads = []

    def slow_engine(url, models):  # an engine that does not answer (its scrape times out after 5 s)
        reads.append(url)
        time.sleep(1)
        raise OSError("timed out")

    meter = configure_pools({"chat": _pool(server, metrics_url="http://10.0.0.9:8000/metrics")}, clock=clock,
                            scrape=slow_engine, background=False)
    closed = _kept(meter)
    _call(client, server, "search", 1000, 100)
    clock.now = T0 + 3600 + 30  # the hour ended 30 s ago: not closed yet
    reads.clear()
    began = time.monotonic()
    aicost.pools._close_at_exit(time.monotonic() + 10)
    assert time.monotonic() - began < 0.5 and reads == []
    assert [(c.start.timestamp(), [a.team for a in c.allocations]) for c in closed] == [(T0, ["search"]),
                                                                                         (T0 + 3600, [])]


def _run(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env={**os.environ, **env}, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


_CHILD = """
    import atexit, json, threading
    started = []
    def report():  # registered before aicost is imported: runs after the ledger's exit flush
        print(json.dumps({"started": started, "lost": getattr(meter, "lost_calls", None)}), flush=True)
    atexit.register(report)
    import aicost
    from datetime import datetime, timezone
    from tests.vendor_server import ReplayServer, openai_chat_reply, openai_client
    MODEL = "acme/llama-3.1-8b-support-ft"
    T0 = datetime(2026, 12, 1, tzinfo=timezone.utc).timestamp()
    import aicost.pools  # and the ledger's writer, which registers the exit's flush
    Thread_start = threading.Thread.start
    def record_starts():  # registered after the ledger's exit flush: runs just before it
        def recording(thread):
            started.append(thread.name)
            return Thread_start(thread)
        threading.Thread.start = recording
    atexit.register(record_starts)
    with ReplayServer() as server:
        aicost.instrument(INSTRUMENT)
        client = openai_client(server)
        pools = {"chat": {"gpu_hour": "2.50", "gpus": 2, "endpoints": [server.url.split("//")[1]],
                          "models": [MODEL], "owner": "ml", "output_weight": 4, "capacity_per_hour": 100000}}
        meter = aicost.pools.configure_pools(pools, clock=lambda: T0 + 600, CONFIGURE)
        server.enqueue(openai_chat_reply(model=MODEL, prompt_tokens=1000, completion_tokens=100))
        with aicost.attribute(team="search"):
            client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
        client.close()
    # the process exits with the call's interval open
"""


def _stored(url: str):
    from aicost.ledger import open_store

    with open_store(url, create=False) as store:
        return list(aicost.pools.read_intervals(store, "chat", datetime(2026, 12, 1, tzinfo=timezone.utc),
                                                datetime(2026, 12, 2, tzinfo=timezone.utc)))


def test_at_exit_the_open_interval_is_closed_early_and_written_by_the_running_ledger(tmp_path, spill_dir):
    """The exit's path (the ledger's atexit flush, which hands the pools' open intervals over first): the
    interval is allocated and written by the ledger's running writer thread. Before, nothing was written."""
    url = f"sqlite:///{tmp_path / 'exit.db'}"
    done = _run(_CHILD.replace("INSTRUMENT", f"ledger={url!r}").replace("CONFIGURE", "background=False"),
                {"XDG_CACHE_HOME": str(spill_dir.parent)})
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    [interval] = _stored(url)
    assert [(a.team, a.input_tokens, a.output_tokens) for a in interval.allocations] == [("search", 1000, 100)]
    assert interval.cost == Decimal(5) and interval.used == Decimal(5) * 1400 / 100_000
    assert "closed early (exit) at 00:10:00 UTC, 600 of 3600 s in" in interval.utilisation_from
    assert '"started": []' in done.stdout and '"lost": 0' in done.stdout, done.stdout


def test_at_exit_a_pools_own_ledger_without_a_thread_spills_the_interval_for_the_next_writer(tmp_path, spill_dir):
    """configure_pools(ledger=...) with its own writer, whose thread never started (no interval closed yet):
    the exit starts no thread for it; the interval is spilled and the next writer of that ledger stores it."""
    url = f"sqlite:///{tmp_path / 'own.db'}"
    done = _run(_CHILD.replace("INSTRUMENT", "").replace("CONFIGURE", f"ledger={url!r}"),
                {"XDG_CACHE_HOME": str(spill_dir.parent)})
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert '"started": []' in done.stdout, done.stdout  # nor the pools' closing thread, nor a ledger writer's
    assert list(spill_dir.glob("*-pools*.jsonl"))
    from aicost.pools.ledger import ledger_sink

    sink = ledger_sink(url)  # what the next process's configure_pools(ledger=...) writes with
    sink.flush()
    sink.close()
    [interval] = _stored(url)
    assert [(a.team, a.input_tokens) for a in interval.allocations] == [("search", 1000)]
    assert "closed early (exit)" in interval.utilisation_from

