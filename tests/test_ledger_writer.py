"""The ledger fed by the core's hooks, end to end: real SDKs over real HTTP to the loopback vendor server, rows
written by the background writer into real SQLite and PostgreSQL. Also: bounded queue, outage spill and replay
(a real PostgreSQL server behind a proxy that goes down), exit flush, fork, several processes on one file."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

import aicost
from aicost import semconv
from aicost.budget import Budget, BudgetExceeded, configure_budgets, disable_budgets
from aicost.errors import ConfigurationError
from aicost.ledger import CACHE_HIT, CALL, REFUSAL, LedgerRow, open_store, spend, totals
from aicost.ledger import writer as ledger_writer
from aicost.ledger.exporter import LedgerSpanExporter
from aicost.ledger.query import MONEY_DIV
from aicost.ledger.writer import LedgerWriter

from ledger_helpers import fresh_pg_database
from servers import OutageProxy
from vendor_server import (anthropic_message_reply, openai_chat_reply, openai_chat_stream_reply,
                           openai_responses_reply)

MESSAGES = [{"role": "user", "content": "Say hello"}]
NOW = datetime.now(timezone.utc)
WINDOW = (NOW - timedelta(days=1), NOW + timedelta(days=1))


def _rows(url):
    with open_store(url, create=False) as store:
        return list(store.rows(*WINDOW))


def _write_spill(path, rows):
    """A spill file of ``rows``, as a writer spills them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"row": row.to_dict()}, separators=(",", ":")) + "\n" for row in rows))


def _queue_before_the_thread(writer, items):
    """Queue ``items`` while the writer thread is not started yet (it starts on the first row): its first drain, at
    the next flush(), then finds them all queued."""
    writer._start = lambda: False
    try:
        writer.add(items)
    finally:
        del writer._start  # the class's again


def test_calls_cache_hits_refusals_and_runs_reach_the_ledger(instrumented, ledger_url, spill_dir, openai_client,
                                                             anthropic_client, replay_server):
    aicost.instrument(tracer_provider=instrumented.tracer_provider, ledger=ledger_url)
    replay_server.enqueue(openai_chat_reply(prompt_tokens=1200, completion_tokens=300, cached_tokens=1024),
                          anthropic_message_reply(input_tokens=40, output_tokens=12))

    @aicost.cache(prompt="messages", ignore=["client"])
    def ask(client, *, model, messages):
        return client.chat.completions.create(model=model, messages=messages)

    with aicost.feature("answer", team="search", customer="acme", region="eu") as unit:
        ask(openai_client, model="gpt-4o-mini", messages=MESSAGES)
        ask(openai_client, model="gpt-4o-mini", messages=MESSAGES)  # a hit: no request, no spend
    with aicost.attribute(team="research"):
        anthropic_client.messages.create(model="claude-3-5-haiku-20241022", max_tokens=64, messages=MESSAGES)
    configure_budgets(budgets=[Budget(limit_usd="0.0005", window="day", name="tiny")])
    try:
        with aicost.attribute(team="search"), pytest.raises(BudgetExceeded) as refused:
            openai_client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=1000)
    finally:
        disable_budgets()
    assert ledger_writer.active().flush()
    rows = {r.kind: [] for r in []}
    for r in _rows(ledger_url):
        rows.setdefault(r.kind, []).append(r)
    spans = {format(s.context.span_id, "016x"): s for s in instrumented.cost_spans()}
    assert len(rows[CALL]) == 2 and len(spans) == 2
    for row in rows[CALL]:
        span = spans[row.span_id]  # the row is keyed by the call's span id
        assert row.trace_id == format(span.context.trace_id, "032x")
        assert row.cost == Decimal(span.attributes[semconv.AICOST_COST_TOTAL])
        assert row.input_tokens == span.attributes[semconv.GEN_AI_USAGE_INPUT_TOKENS]
        assert row.response_model == span.attributes[semconv.GEN_AI_RESPONSE_MODEL]
        assert sum(row.cost_parts.values()) == row.cost and row.price_known
    openai_row = next(r for r in rows[CALL] if r.provider == "openai")
    assert (openai_row.team, openai_row.feature, openai_row.customer, openai_row.tags) == (
        "search", "answer", "acme", {"region": "eu"})
    assert openai_row.cache_read_tokens == 1024 and openai_row.run_id == unit.run_id
    assert openai_row.outcome == "succeeded"  # the run ended after the call: its outcome was written back
    (hit,) = rows[CACHE_HIT]
    assert hit.saved_cost == openai_row.cost and hit.cost == 0 and hit.team == "search"
    (refusal,) = rows[REFUSAL]
    assert refusal.stopped_cost == refused.value.requested_usd and refusal.budget == "tiny"
    assert refusal.cost == 0 and refusal.team == "search" and refusal.request_model == "gpt-4o"
    with open_store(ledger_url, create=False) as store:
        t = totals(store, *WINDOW)
    assert t.cost == sum(r.cost for r in rows[CALL]) and (t.runs, t.succeeded_runs) == (1, 1)
    assert (t.cache_hits, t.saved_cost, t.refusals) == (1, hit.saved_cost, 1)


@pytest.mark.parametrize("unknown_cost_fails", [False, True], ids=["pricing-failed", "unknown-cost-failed-too"])
def test_a_call_whose_pricing_failed_is_an_unknown_cost_never_a_known_zero(instrumented, ledger_url, spill_dir,
                                                                          openai_client, replay_server, monkeypatch,
                                                                          unknown_cost_fails):
    """Pricing that raises inside aicost is swallowed (the call is the app's), but the call was billed: its cost is
    unknown, never $0. The span says so and why, the ledger row (written from the hooks, or from the exported span)
    agrees, and the report counts it as a call with an unknown price. Also when ``pricing.unknown_cost`` raised too
    and the core had no Cost at all: the span carried no ``aicost.price.known`` then, and the span exporter, which
    takes a span without it for no call's, wrote no row, the call's spend forgotten in a ledger fed by spans."""
    import aicost.pricing
    from aicost import _log
    from aicost.ledger.exporter import rows_from_span

    def broken(*args, **kwargs):
        raise RuntimeError("pricing exploded")

    monkeypatch.setattr(aicost.pricing, "price_checked", broken)
    if unknown_cost_fails:
        monkeypatch.setattr(aicost.pricing, "unknown_cost", broken)
    monkeypatch.setattr(_log, "_seen", set())
    aicost.instrument(tracer_provider=instrumented.tracer_provider, ledger=ledger_url)
    replay_server.enqueue(openai_chat_reply(prompt_tokens=120, completion_tokens=30))
    openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert ledger_writer.active().flush()
    (span,) = instrumented.aicost_spans()
    a = span.attributes
    assert a[semconv.GEN_AI_USAGE_INPUT_TOKENS] == 120 and a[semconv.AICOST_PRICE_KNOWN] is False
    assert semconv.GEN_AI_USAGE_COST not in a
    assert a[semconv.AICOST_PRICE_UNKNOWN_REASON].startswith("aicost's pricing failed on this call")
    (row,) = _rows(ledger_url)
    (exported,) = rows_from_span(span)
    for made in (row, exported):
        assert (made.kind, made.input_tokens, made.output_tokens, made.cost, made.price_known) == (
            CALL, 120, 30, None, False)
        assert made.price_unknown_reason == a[semconv.AICOST_PRICE_UNKNOWN_REASON]  # why, in both ledgers alike
    with open_store(ledger_url, create=False) as store:
        t = totals(store, *WINDOW)
    assert (t.calls, t.unknown_cost_calls, t.cost) == (1, 1, 0)


def test_a_call_the_core_sent_without_a_cost_is_never_written_as_known_zero():
    """The core prices every billed call it reports (an unknown price is a Cost too); one that reaches the ledger
    with no cost at all is one aicost failed to price: unknown, with its usage or without, failed or not."""
    from opentelemetry.trace import INVALID_SPAN

    from aicost.hooks import CallInfo, CallResult
    from aicost.ledger.capture import call_item, row_from_item
    from aicost.usage import Usage
    from aicost.vendor import DEFAULT_SHAPE

    info = CallInfo(provider="openai", operation="chat", endpoint="openai.chat.completions.create",
                    request_model="gpt-4o-mini", kwargs={}, stream=False, is_async=False, shape=DEFAULT_SHAPE)
    for usage, error_type in ((Usage(input_tokens=5, output_tokens=2), None), (None, "APIConnectionError"),
                              (Usage(input_tokens=5), "RateLimitError"), (None, None)):
        row = row_from_item(call_item(CallResult(info=info, usage=usage, cost=None, response_model=None,
                                                 error_type=error_type, duration_s=0.1, span=INVALID_SPAN)))
        assert (row.cost, row.price_known) == (None, False), (usage, error_type)


def test_a_host_that_traps_float_operations_gets_every_cost(instrumented, ledger_url, spill_dir, openai_client,
                                                            anthropic_client, replay_server, monkeypatch, caplog):
    """A host may trap ``decimal.FloatOperation`` (``Decimal(0.5)`` and ``Decimal(1) < 0.5`` then raise) in its
    threads, and in ``decimal.DefaultContext`` (the writer thread's). The calls above, through the real SDKs: their
    pricing, spans, metrics, cache, budget and ledger rows never mix a float into a Decimal, so nothing is lost to
    an error aicost swallows (it would be logged as an error) and every figure is as without the trap."""
    import decimal

    monkeypatch.setitem(decimal.DefaultContext.traps, decimal.FloatOperation, True)
    host = decimal.Context(traps=[decimal.FloatOperation, decimal.InvalidOperation, decimal.DivisionByZero,
                                  decimal.Overflow])
    with decimal.localcontext(host), caplog.at_level(logging.WARNING, logger="aicost"):
        test_calls_cache_hits_refusals_and_runs_reach_the_ledger(instrumented, ledger_url, spill_dir, openai_client,
                                                                 anthropic_client, replay_server)
        aicost.instrument(tracer_provider=instrumented.tracer_provider, meter_provider=instrumented.meter_provider)
        replay_server.enqueue(openai_chat_reply(prompt_tokens=1200, completion_tokens=300))
        openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # and its cost metrics
        (nano,) = instrumented.metrics()["aicost.cost.nano_usd"]
    assert nano.value == 360_000  # 1,200 tokens at $0.15/M and 300 at $0.60/M
    assert [r.getMessage() for r in caplog.records if r.name.startswith("aicost") and r.levelno >= logging.ERROR] == []


def test_unknown_price_is_a_row_with_unknown_cost(instrumented, tmp_path, spill_dir, openai_client, replay_server):
    url = f"sqlite:///{tmp_path / 'l.db'}"
    aicost.instrument(tracer_provider=instrumented.tracer_provider, ledger=url)
    replay_server.enqueue(openai_chat_reply(model="my-private-model-7"))
    openai_client.chat.completions.create(model="my-private-model-7", messages=MESSAGES)
    ledger_writer.active().flush()
    (row,) = _rows(url)
    assert row.cost is None and row.price_known is False and row.input_tokens == 9
    with open_store(url, create=False) as store:
        t = totals(store, *WINDOW)
    assert (t.cost, t.calls, t.unknown_cost_calls) == (0, 1, 1)


def test_off_by_default_env_var_idempotent_and_bad_url(monkeypatch, tmp_path, spill_dir):
    monkeypatch.delenv("AICOST_LEDGER", raising=False)
    aicost.instrument()
    try:
        assert ledger_writer.active() is None
        url = f"sqlite:///{tmp_path / 'env.db'}"
        monkeypatch.setenv("AICOST_LEDGER", url)
        aicost.instrument()
        first = ledger_writer.active()
        assert first is not None and first.url == url
        aicost.instrument()
        aicost.instrument(ledger=url)
        assert ledger_writer.active() is first  # idempotent
        monkeypatch.delenv("AICOST_LEDGER")
        aicost.instrument()  # each call starts from its own arguments: ledger left out is the default, off
        assert ledger_writer.active() is None
        aicost.instrument(ledger=url)
        with pytest.raises(ConfigurationError, match="instrument\\(ledger=...\\): unsupported ledger URL"):
            aicost.instrument(ledger="mysql://nope")
        monkeypatch.setenv("AICOST_LEDGER", "sqlite://bad")
        aicost.uninstrument()
        with pytest.raises(ConfigurationError, match="AICOST_LEDGER: malformed SQLite ledger URL"):
            aicost.instrument()
    finally:
        aicost.uninstrument()
    assert ledger_writer.active() is None


@pytest.mark.parametrize("option, value, accepted", [
    ("batch_size", 0, "an int of at least 1"), ("batch_size", -5, "an int of at least 1"),
    ("batch_size", True, "an int of at least 1"), ("batch_size", 2.5, "an int of at least 1"),
    ("batch_size", "100", "an int of at least 1"),
    ("max_queue", 0, "an int of at least 1"), ("max_queue", -1, "an int of at least 1"),
    ("max_queue", False, "an int of at least 1"),
    ("flush_interval_s", 0, "a number of seconds greater than 0"),
    ("flush_interval_s", -1, "a number of seconds greater than 0"),
    ("flush_interval_s", float("nan"), "a number of seconds greater than 0"),
    ("flush_interval_s", float("inf"), "a number of seconds greater than 0"),
    ("flush_interval_s", True, "a number of seconds greater than 0"),
    ("flush_interval_s", "0.5", "a number of seconds greater than 0"),
    ("spill_max_bytes", -1, "an int of at least 0"), ("spill_max_bytes", 1.5, "an int of at least 0"),
    ("spill_max_bytes", True, "an int of at least 0"),
])
def test_bad_writer_settings_are_refused_at_construction_naming_the_argument(tmp_path, spill_dir, option, value,
                                                                            accepted):
    """A batch size of 0 spun the writer thread at full CPU, an interval of 0 busy-waited, a queue of -1 dropped
    every row: each is refused when the writer (or the span exporter that makes one) is built, naming the argument
    and what it accepts; a wrong type is a ConfigurationTypeError, and a bool is not a number. Nothing is opened."""
    from aicost.errors import ConfigurationTypeError

    url = f"sqlite:///{tmp_path / 'w.db'}"
    wrong_type = isinstance(value, (bool, str)) or (isinstance(value, float) and option != "flush_interval_s")
    for make in (LedgerWriter, LedgerSpanExporter, ledger_writer.configure):
        with pytest.raises(ConfigurationTypeError if wrong_type else ConfigurationError) as error:
            make(url, **{option: value})
        assert f"{option} must be {accepted}, got {value!r}" in str(error.value)
    assert not (tmp_path / "w.db").exists() and ledger_writer.active() is None


@pytest.mark.parametrize("value, wrong_type", [(5, True), (b"/tmp/spill.jsonl", True), (["spill"], True),
                                               ("", False), ("/", False)])
def test_a_spill_path_that_is_no_file_path_is_refused_naming_the_argument(tmp_path, spill_dir, value, wrong_type):
    """``spill_path=5`` raised the bare TypeError of pathlib ("expected str, bytes or os.PathLike object, not
    int"), naming neither the argument nor what it accepts; a path with no file name ("", "/") made spill files
    named "-<pid>.jsonl". Each is refused as the other options are, before the database is opened."""
    from aicost.errors import ConfigurationTypeError

    url = f"sqlite:///{tmp_path / 'w.db'}"
    for make in (LedgerWriter, LedgerSpanExporter, ledger_writer.configure):
        with pytest.raises(ConfigurationTypeError if wrong_type else ConfigurationError) as error:
            make(url, spill_path=value)
        assert f"spill_path must be a file path (a str or os.PathLike), got {value!r}" in str(error.value)
        assert isinstance(error.value, TypeError) == wrong_type
    assert not (tmp_path / "w.db").exists() and ledger_writer.active() is None


def test_a_spill_path_given_as_a_str_or_a_path_names_the_spill_files(tmp_path, spill_dir):
    from pathlib import Path

    for value in (str(tmp_path / "a" / "mine.jsonl"), Path(tmp_path / "b" / "mine.jsonl")):
        writer = LedgerWriter(f"sqlite:///{tmp_path / 'w.db'}", spill_path=value)
        try:
            assert (writer._spill_dir, writer._spill_stem) == (Path(value).parent, "mine")
        finally:
            writer.close()


def test_the_edges_of_good_writer_settings_are_kept(tmp_path, spill_dir):
    """A queue and a batch of one row, any positive interval (an int too), no spill file at all."""
    writer = LedgerWriter(f"sqlite:///{tmp_path / 'w.db'}", max_queue=1, batch_size=1, flush_interval_s=2,
                          spill_max_bytes=0)
    try:
        assert (writer.max_queue, writer.batch_size, writer.flush_interval_s, writer.spill_max_bytes) == (1, 1, 2.0, 0)
        assert type(writer.flush_interval_s) is float
    finally:
        writer.close()


def test_full_queue_drops_are_counted_and_logged_never_raised(tmp_path, spill_dir, caplog):
    from aicost._log import forget

    forget("ledger:queue-full")
    writer = LedgerWriter(f"sqlite:///{tmp_path / 'q.db'}", max_queue=10)
    with caplog.at_level(logging.WARNING, logger="aicost"):  # no writer thread yet: the queue only fills
        _queue_before_the_thread(writer, (LedgerRow(span_id=f"{i:016x}", kind=CALL, time=NOW, cost=Decimal(1))
                                          for i in range(25)))
    stats = writer.stats()
    assert stats["enqueued"] == 10 and stats["dropped_queue_full"] == 15
    assert any("queue is full" in r.getMessage() for r in caplog.records)
    writer.flush()
    assert writer.stats()["written"] == 10
    writer.close()


def test_database_outage_spills_then_replays_without_double_counting(pg_server, spill_dir):
    url = fresh_pg_database(pg_server)
    port = int(url.split(":")[-1].split("/")[0])
    proxy = OutageProxy(port)
    via_proxy = url.replace(f":{port}/", f":{proxy.port}/")
    try:
        writer = LedgerWriter(via_proxy)
        before = [LedgerRow(span_id=f"a{i:015x}", kind=CALL, time=NOW, cost=Decimal("0.001")) for i in range(30)]
        writer.add(before)
        assert writer.flush() and writer.stats()["written"] == 30
        proxy.down()
        during = [LedgerRow(span_id=f"b{i:015x}", kind=CALL, time=NOW, cost=Decimal("0.002")) for i in range(40)]
        writer.add(during)
        writer.add(before[:5])  # a duplicate arriving during the outage
        writer.flush()
        stats = writer.stats()
        assert stats["spilled"] == 45 and stats["outages"] >= 1 and stats.get("written") == 30
        assert list(spill_dir.glob("ledger-spill-*.jsonl"))  # kept on disk, not in memory
        proxy.up = True
        writer.flush()
        stats = writer.stats()
        assert stats["replayed"] == 45 and stats["written"] == 70 and stats["duplicates"] == 5
        assert not list(spill_dir.glob("ledger-spill-*.jsonl"))
        writer.close()
        with open_store(url, create=False) as store:
            t = totals(store, *WINDOW)
        assert t.calls == 70 and t.cost == Decimal("0.030") + Decimal("0.080")
    finally:
        proxy.close()


def test_spill_is_bounded(tmp_path, spill_dir, caplog):
    writer = LedgerWriter("postgresql://postgres@127.0.0.1:1/none", spill_max_bytes=2000)
    writer.add(LedgerRow(span_id=f"{i:016x}", kind=CALL, time=NOW, cost=Decimal(1)) for i in range(50))
    with caplog.at_level(logging.WARNING, logger="aicost"):
        writer.flush()
    stats = writer.stats()
    assert stats["spilled"] > 0 and stats["dropped_spill_full"] > 0
    assert stats["spilled"] + stats["dropped_spill_full"] == 50
    assert sum(p.stat().st_size for p in spill_dir.glob("*.jsonl")) <= 2000
    writer.close()


def _run(code: str, env_extra: dict[str, str]) -> subprocess.CompletedProcess:
    env = {**os.environ, **env_extra}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
                          timeout=120)


def test_rows_are_flushed_at_exit_even_those_queued_during_exit(tmp_path, spill_dir):
    url = f"sqlite:///{tmp_path / 'exit.db'}"
    done = _run("""
        import atexit
        from datetime import datetime, timezone
        from decimal import Decimal
        from aicost.ledger import LedgerRow, CALL
        from aicost.ledger import writer
        def late():  # registered after the ledger's exit flush (at the writer's import): runs before it, at exit
            writer.active().add([LedgerRow(span_id="ffffffffffffffff", kind=CALL, time=datetime.now(timezone.utc),
                                           cost=Decimal("0.5"))])
        atexit.register(late)
        w = writer.configure(URL)
        w.flush_interval_s = 3600  # the thread will not write these in time: only the exit flush can
        w.add(LedgerRow(span_id=f"{i:016x}", kind=CALL, time=datetime.now(timezone.utc), cost=Decimal("0.25"))
              for i in range(500))
    """.replace("URL", repr(url)), {"XDG_CACHE_HOME": str(tmp_path / "c")})
    assert done.returncode == 0, done.stderr
    assert "can't create new thread" not in done.stderr and "Traceback" not in done.stderr
    rows = _rows(url)
    assert len(rows) == 501 and sum(r.cost for r in rows) == Decimal("125.5")


def test_forked_child_writes_its_own_rows(tmp_path, spill_dir):
    url = f"sqlite:///{tmp_path / 'fork.db'}"
    done = _run("""
        import os
        from datetime import datetime, timezone
        from decimal import Decimal
        from aicost.ledger import LedgerRow, CALL
        from aicost.ledger import writer
        w = writer.configure(URL)
        w.add([LedgerRow(span_id="0000000000000001", kind=CALL, time=datetime.now(timezone.utc), cost=Decimal(1))])
        pid = os.fork()
        if pid == 0:
            w.add([LedgerRow(span_id="0000000000000002", kind=CALL, time=datetime.now(timezone.utc),
                             cost=Decimal(2))])
            w.flush()
            os._exit(0 if w.stats()["written"] == 1 else 3)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        w.flush()
    """.replace("URL", repr(url)), {"XDG_CACHE_HOME": str(tmp_path / "c")})
    assert done.returncode == 0, done.stderr
    assert sorted(r.cost for r in _rows(url)) == [1, 2]


def test_several_processes_write_one_sqlite_file(tmp_path, spill_dir):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    open_store(url).close()
    code = """
        import sys
        from datetime import datetime, timezone
        from decimal import Decimal
        from aicost.ledger import LedgerRow, CALL
        from aicost.ledger.writer import LedgerWriter
        w = LedgerWriter(URL, batch_size=100)
        n = int(sys.argv[1])
        w.add(LedgerRow(span_id=f"{n:04x}{i:012x}", kind=CALL, time=datetime.now(timezone.utc), cost=Decimal("0.01"),
                        team=f"t{n}") for i in range(1500))
        w.close()
        assert w.stats()["written"] == 1500, w.stats()
    """.replace("URL", repr(url))
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "c")}
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), str(n)], env=env,
                              stderr=subprocess.PIPE, text=True) for n in range(3)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    with open_store(url, create=False) as store:
        t = totals(store, *WINDOW)
        from aicost.ledger import spend

        teams = {g.key["team"]: (g.calls, g.cost) for g in spend(store, *WINDOW, ["team"])}
    assert t.calls == 4500 and t.cost == Decimal("45.00")
    assert teams == {f"t{n}": (1500, Decimal("15.00")) for n in range(3)}


def test_span_exporter_fills_the_same_rows_as_the_hooks(instrumented, tmp_path, spill_dir, openai_client,
                                                        replay_server):
    hooks_url = f"sqlite:///{tmp_path / 'hooks.db'}"
    spans_url = f"sqlite:///{tmp_path / 'spans.db'}"
    aicost.instrument(tracer_provider=instrumented.tracer_provider, ledger=hooks_url)
    replay_server.enqueue(openai_chat_reply(prompt_tokens=2000, completion_tokens=100, cached_tokens=1536,
                                            reasoning_tokens=40, model="gpt-5-2025-08-07"),
                          openai_chat_reply(model="never-priced-model"))
    with aicost.feature("summarize", team="docs", user="u-1"):
        openai_client.chat.completions.create(model="gpt-5", messages=MESSAGES)
        openai_client.chat.completions.create(model="never-priced-model", messages=MESSAGES)
    ledger_writer.active().flush()
    exporter = LedgerSpanExporter(spans_url)  # as a central process would receive the spans over OTLP
    exporter.export(instrumented.spans())
    assert exporter.force_flush()
    exporter.shutdown()
    fields = ("span_id", "kind", "trace_id", "provider", "request_model", "response_model", "input_tokens",
              "output_tokens", "cache_read_tokens", "reasoning_tokens", "cost", "cost_parts", "price_known", "team",
              "feature", "user", "run_id", "outcome", "service_tier", "price_source", "price_unknown_reason")
    from_hooks = [tuple(getattr(r, f) for f in fields) for r in _rows(hooks_url)]
    from_spans = [tuple(getattr(r, f) for f in fields) for r in _rows(spans_url)]
    assert len(from_hooks) == 2 and sorted(from_hooks, key=str) == sorted(from_spans, key=str)
    assert sorted((r.response_model, r.price_unknown_reason) for r in _rows(hooks_url)) == [
        ("gpt-5-2025-08-07", None),  # known: no reason
        ("never-priced-model", "no price for this model from this provider (and tier) in the catalog or price "
                               "overrides")]
    with open_store(spans_url, create=False) as a, open_store(hooks_url, create=False) as b:
        assert totals(a, *WINDOW) == totals(b, *WINDOW)


def test_a_deferred_calls_row_says_why_its_price_is_unknown_in_both_ledgers(instrumented, tmp_path, spill_dir,
                                                                           openai_client, replay_server):
    """A background response returned queued (``aicost.usage.deferred``) has no usage and no cost: its row is of
    unknown price, and its ``price_unknown_reason`` was NULL on both paths (the in-process capture and the span
    exporter), the one unknown-price row that did not say why. Both now say it was deferred, in the same words."""
    from vendor_server import Reply

    hooks_url = f"sqlite:///{tmp_path / 'hooks.db'}"
    spans_url = f"sqlite:///{tmp_path / 'spans.db'}"
    aicost.instrument(tracer_provider=instrumented.tracer_provider, ledger=hooks_url)
    replay_server.enqueue(Reply.json({
        "id": "resp_bg", "object": "response", "created_at": 1_700_000_000, "status": "queued",
        "model": "gpt-4.1-nano-2025-04-14", "output": [], "parallel_tool_calls": True, "tool_choice": "auto",
        "tools": [], "error": None, "incomplete_details": None, "instructions": None, "metadata": {},
        "temperature": 1.0, "top_p": 1.0, "text": {"format": {"type": "text"}}, "truncation": "disabled",
        "usage": None, "background": True}))
    openai_client.responses.create(model="gpt-4.1-nano", input="a long report", background=True)
    assert ledger_writer.active().flush()
    (span,) = instrumented.spans()
    assert span.attributes[semconv.AICOST_USAGE_DEFERRED] is True
    exporter = LedgerSpanExporter(spans_url)  # as a central process would receive the spans over OTLP
    exporter.export([span])
    assert exporter.force_flush()
    exporter.shutdown()
    (from_hooks,), (from_spans,) = _rows(hooks_url), _rows(spans_url)
    for row in (from_hooks, from_spans):
        assert (row.kind, row.cost, row.price_known) == (CALL, None, False)
        assert row.price_unknown_reason == ("deferred: the vendor queued the work (a background response or "
                                            "interaction returned unfinished); this call reported no usage to price")


def test_span_exporter_turns_refusals_and_cache_hits_into_the_same_rows_as_the_hooks(
        instrumented, tmp_path, spill_dir, openai_client, replay_server):
    hooks_url = f"sqlite:///{tmp_path / 'hooks.db'}"
    spans_url = f"sqlite:///{tmp_path / 'spans.db'}"
    aicost.instrument(tracer_provider=instrumented.tracer_provider, ledger=hooks_url)
    replay_server.enqueue(openai_chat_reply(prompt_tokens=1200, completion_tokens=300, cached_tokens=1024))

    @aicost.cache(prompt="messages", ignore=["client"])
    def ask(client, *, model, messages):
        return client.chat.completions.create(model=model, messages=messages)

    with aicost.feature("answer", team="search", customer="acme", region="eu"):
        ask(openai_client, model="gpt-4o-mini", messages=MESSAGES)
        ask(openai_client, model="gpt-4o-mini", messages=MESSAGES)  # a hit: no request, no spend
    configure_budgets(budgets=[Budget(limit_usd="0.0005", window="day", name="tiny")])
    try:
        with aicost.attribute(team="search", user="u-7"), pytest.raises(BudgetExceeded) as refused:
            openai_client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=1000)
    finally:
        disable_budgets()
    assert ledger_writer.active().flush()
    exporter = LedgerSpanExporter(spans_url)  # as a central process would receive the spans over OTLP
    exporter.export(instrumented.spans())
    assert exporter.force_flush()
    exporter.shutdown()
    fields = ("span_id", "kind", "trace_id", "provider", "request_model", "cost", "saved_cost", "stopped_cost",
              "cache_name", "budget", "team", "feature", "user", "customer", "tags", "run_id")
    from_hooks = sorted((tuple(getattr(r, f) for f in fields) for r in _rows(hooks_url)), key=str)
    from_spans = sorted((tuple(getattr(r, f) for f in fields) for r in _rows(spans_url)), key=str)
    kinds = sorted(row[1] for row in from_hooks)
    assert kinds == sorted([CALL, CACHE_HIT, REFUSAL])
    assert from_spans == from_hooks
    by_kind = {row[1]: dict(zip(fields, row)) for row in from_spans}
    assert by_kind[REFUSAL]["stopped_cost"] == refused.value.requested_usd > 0
    assert (by_kind[REFUSAL]["budget"], by_kind[REFUSAL]["user"]) == ("tiny", "u-7")
    assert by_kind[CACHE_HIT]["saved_cost"] == by_kind[CALL]["cost"] > 0
    with open_store(spans_url, create=False) as a, open_store(hooks_url, create=False) as b:
        ta = totals(a, *WINDOW)
        assert ta == totals(b, *WINDOW)
    assert (ta.cache_hits, ta.refusals, ta.stopped_cost) == (1, 1, refused.value.requested_usd)


def _images_reply(usage=None):
    from vendor_server import Reply

    body = {"created": 1_700_000_000, "data": [{"b64_json": "aGVsbG8="}]}
    if usage is not None:
        body["usage"] = usage
    return Reply.json(body)


def test_both_ledgers_keep_why_a_price_is_unknown_as_the_span_says_it(instrumented, ledger_url, tmp_path, spill_dir,
                                                                      openai_client, replay_server):
    """A row of unknown cost keeps why (``price_unknown_reason``, schema 10), so finance can tell a model the
    catalog lacks from usage that failed validation, a hosted tool aicost cannot price, a unit the catalog has no
    rate for: the span's ``aicost.price.unknown_reason``, in the ledger the hooks fill (on SQLite and PostgreSQL)
    and the one the span exporter fills alike. A known cost has none. None quotes the prompt or the key."""
    spans_url = f"sqlite:///{tmp_path / 'spans.db'}"
    aicost.instrument(tracer_provider=instrumented.tracer_provider, ledger=ledger_url)
    file_search = {"id": "fs_1", "type": "file_search_call", "status": "completed", "queries": ["refund policy"],
                   "results": None}
    bad_usage = {"input_tokens": -1, "output_tokens": 100, "total_tokens": 99,
                 "input_tokens_details": {"text_tokens": 0, "image_tokens": 0}}
    replay_server.enqueue(openai_chat_reply(model="never-priced-model"), openai_chat_reply(),
                          openai_responses_reply("gpt-4.1-2025-04-14", input_tokens=1000, output_tokens=100,
                                                 tool_items=[file_search]),
                          _images_reply(bad_usage), _images_reply())
    openai_client.chat.completions.create(model="never-priced-model", messages=MESSAGES)
    openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    openai_client.responses.create(model="gpt-4.1", input="What is the refund policy?",
                                   tools=[{"type": "file_search", "vector_store_ids": ["vs_1"]}])
    openai_client.images.generate(model="gpt-image-1.5", prompt="a cat in a hat")
    openai_client.images.generate(model="dall-e-3", prompt="a cat in a hat")
    assert ledger_writer.active().flush()
    exporter = LedgerSpanExporter(spans_url)
    exporter.export(instrumented.spans())
    assert exporter.force_flush()
    exporter.shutdown()
    said = {format(span.get_span_context().span_id, "016x"): span.attributes.get(
        semconv.AICOST_PRICE_UNKNOWN_REASON) for span in instrumented.aicost_spans()}
    from_hooks = {r.span_id: r.price_unknown_reason for r in _rows(ledger_url)}
    from_spans = {r.span_id: r.price_unknown_reason for r in _rows(spans_url)}
    assert from_hooks == from_spans == said and len(said) == 5
    reasons = sorted(filter(None, said.values()))
    assert len(reasons) == 4 and list(said.values()).count(None) == 1  # the known call's
    assert reasons[0].startswith("no price for this model") and reasons[1] == "no token usage in the response " \
        "(models billed per image)"
    assert "the call ran hosted tools billed per call or session (file_search)" in reasons[2]
    assert reasons[3] == "the usage failed validation"
    for text in reasons:  # aicost's own sentences: never the prompt, the input or the key
        assert not any(secret in text for secret in ("Say hello", "refund", "cat in a hat", "test")), text


def test_a_reason_is_kept_bounded_and_only_for_an_unknown_price_on_both_paths():
    """A reason that is not aicost's sentence (a third-party integration's ``ResponseMeta.unpriced``, a span
    another process exported) is cut at ``UNKNOWN_REASON_MAX`` characters, the same on both paths; one that is
    no text is None; a known price keeps none, whatever the span says."""
    from types import SimpleNamespace

    from opentelemetry.trace import INVALID_SPAN, SpanContext

    from aicost.hooks import CallInfo, CallResult
    from aicost.ledger.capture import call_item, row_from_item
    from aicost.ledger.exporter import rows_from_span
    from aicost.ledger.row import UNKNOWN_REASON_MAX, unknown_reason_text
    from aicost.pricing import unknown_cost
    from aicost.usage import Usage
    from aicost.vendor import DEFAULT_SHAPE

    long = "why " * 1000
    kept = unknown_reason_text(long)
    assert len(kept) == UNKNOWN_REASON_MAX and kept == long[:UNKNOWN_REASON_MAX - 1] + "\u2026"
    assert unknown_reason_text("x" * UNKNOWN_REASON_MAX) == "x" * UNKNOWN_REASON_MAX  # at the bound: as it is
    assert [unknown_reason_text(v) for v in (None, "", 7, b"why")] == [None] * 4
    info = CallInfo(provider="openai", operation="chat", endpoint="openai.chat.completions.create",
                    request_model="m", kwargs={}, stream=False, is_async=False, shape=DEFAULT_SHAPE)
    usage = Usage(input_tokens=5, output_tokens=2)
    hooked = row_from_item(call_item(CallResult(
        info=info, usage=usage, cost=unknown_cost("openai", "m", None, usage), response_model=None, error_type=None,
        duration_s=0.1, span=INVALID_SPAN, unknown_reason=long)))

    def span(known, reason):
        attributes = {semconv.GEN_AI_PROVIDER_NAME: "openai", semconv.AICOST_PRICE_KNOWN: known,
                      semconv.AICOST_PRICE_UNKNOWN_REASON: reason}
        if known:
            attributes[semconv.AICOST_COST_TOTAL] = "0.001"
        context = SpanContext(trace_id=1, span_id=2, is_remote=False)
        return SimpleNamespace(attributes=attributes, name="chat m", start_time=1, end_time=2, parent=None,
                               get_span_context=lambda: context)

    (exported,) = rows_from_span(span(False, long))
    assert hooked.price_unknown_reason == exported.price_unknown_reason == kept
    assert rows_from_span(span(False, 42))[0].price_unknown_reason is None
    (known,) = rows_from_span(span(True, "a reason on a priced call"))
    assert known.price_known and known.cost == Decimal("0.001") and known.price_unknown_reason is None


def test_calls_and_cache_hits_inside_a_feature_carry_its_run_id(instrumented, ledger_url, spill_dir, openai_client,
                                                                 replay_server):
    """The run a call (and a cache hit) belongs to is on its span, as aicost.run.id: the run id the in-process
    ledger files it under, which is the feature span's own id and its aicost.run.id too. A call in no feature
    carries none. A ledger fed from exported spans needs no walk from the call to its feature."""
    aicost.instrument(tracer_provider=instrumented.tracer_provider, ledger=ledger_url)
    replay_server.enqueue(openai_chat_reply(), openai_chat_reply())

    @aicost.cache(prompt="messages", ignore=["client"])
    def ask(client, *, model, messages):
        return client.chat.completions.create(model=model, messages=messages)

    with aicost.feature("answer", team="search") as unit:
        ask(openai_client, model="gpt-4o-mini", messages=MESSAGES)
        ask(openai_client, model="gpt-4o-mini", messages=MESSAGES)  # a hit: no request
    openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # in no feature
    assert ledger_writer.active().flush()
    spans = instrumented.spans()
    (feature,) = [s for s in spans if s.name == "aicost.feature answer"]
    (in_feature, outside) = [s for s in spans if semconv.AICOST_PRICE_KNOWN in s.attributes]
    (hit,) = [s for s in spans if s.attributes.get(semconv.AICOST_CACHE_HIT)]
    run_id = format(feature.get_span_context().span_id, "016x")
    assert unit.run_id == run_id
    assert in_feature.attributes[semconv.AICOST_RUN_ID] == hit.attributes[semconv.AICOST_RUN_ID] == run_id
    assert feature.attributes[semconv.AICOST_RUN_ID] == run_id
    assert semconv.AICOST_RUN_ID not in outside.attributes
    assert {r.kind: r.run_id for r in _rows(ledger_url) if r.run_id is not None} == {CALL: run_id, CACHE_HIT: run_id}


def test_runs_inside_one_request_span_with_features_untraced_are_each_their_own_run(instrumented, tmp_path, spill_dir,
                                                                                   openai_client, replay_server):
    """Feature units on a no-op tracer inside an application's request span: OpenTelemetry's no-op tracer hands back
    a span with the current span's context, and a unit took its run id from it, so every run in the request had the
    request span's id. The ledger, keyed by run id, kept one run of two: the spend of both over one run, its unit
    cost doubled, and both calls filed under it. Each run has its own id, and its calls are filed under it."""
    from opentelemetry import trace
    from aicost import attribution

    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    aicost.instrument(tracer_provider=instrumented.tracer_provider, ledger=url)
    attribution.set_tracer_provider(trace.NoOpTracerProvider())
    replay_server.enqueue(openai_chat_reply(), openai_chat_reply())
    try:
        with instrumented.tracer_provider.get_tracer("app").start_as_current_span("GET /answer"):
            with aicost.feature("answer") as first:
                openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
            with aicost.feature("answer") as second:
                openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    finally:
        attribution.set_tracer_provider(None)
    assert ledger_writer.active().flush()
    assert first.run_id != second.run_id
    with open_store(url, create=False) as store:
        assert sorted(run.run_id for run in store.runs(*WINDOW)) == sorted([first.run_id, second.run_id])
        assert sorted(row.run_id for row in store.rows(*WINDOW)) == sorted([first.run_id, second.run_id])
        (answer,) = spend(store, *WINDOW, ["feature"])
    assert answer.runs == 2 and answer.cost_per_run == MONEY_DIV(answer.cost, 2)


@pytest.mark.parametrize("features_untraced_by", ["set_tracer_provider", "instrument"])
def test_a_run_whose_span_is_not_recorded_is_named_by_no_exported_call(
        features_untraced_by, instrumented, tmp_path, spill_dir, openai_client, anthropic_client, replay_server):
    """Feature units not traced (a no-op tracer for them) while calls are: ``aicost.attribution.set_tracer_provider``
    given a no-op provider, or ``instrument(tracer_provider=...)`` given one while the Anthropic SDK traces its calls
    natively through the global provider (aicost enriches that span). No span ever brings such a run to a ledger fed
    from exported spans, so its calls and cache hits must not name it: their rows named a run the ledger never got
    (no outcome, ever; a run id FOCUS exports that leads nowhere). The in-process ledger, told of the run by its
    event, still files them under it."""
    from opentelemetry import trace
    from aicost import attribution

    hooks_url = f"sqlite:///{tmp_path / 'hooks.db'}"
    spans_url = f"sqlite:///{tmp_path / 'spans.db'}"
    if features_untraced_by == "set_tracer_provider":
        aicost.instrument(tracer_provider=instrumented.tracer_provider, ledger=hooks_url)
        attribution.set_tracer_provider(trace.NoOpTracerProvider())
        replay_server.enqueue(openai_chat_reply())
    else:
        aicost.instrument(tracer_provider=trace.NoOpTracerProvider(), ledger=hooks_url)
        replay_server.enqueue(anthropic_message_reply())

    @aicost.cache(prompt="messages")
    def ask(*, messages):
        if features_untraced_by == "set_tracer_provider":
            return openai_client.chat.completions.create(model="gpt-4o-mini", messages=messages).model_dump()
        return anthropic_client.messages.create(model="claude-3-5-haiku-20241022", max_tokens=64,
                                                messages=messages).model_dump()

    try:
        with aicost.feature("answer", team="search") as unit:
            ask(messages=MESSAGES)
            ask(messages=MESSAGES)  # a hit
    finally:
        attribution.set_tracer_provider(None)
    assert ledger_writer.active().flush()
    spans = instrumented.spans()
    assert not [s for s in spans if s.name.startswith("aicost.feature")]  # the run's span records nothing
    assert len([s for s in spans if semconv.AICOST_PRICE_KNOWN in s.attributes]) == 1
    exporter = LedgerSpanExporter(spans_url)  # as a central process would receive the spans over OTLP
    exporter.export(spans)
    assert exporter.force_flush()
    exporter.shutdown()
    with open_store(spans_url, create=False) as store:
        runs = {run.run_id for run in store.runs(*WINDOW)}
        rows = list(store.rows(*WINDOW))
    # aicost's own cache span goes where its other spans go: nowhere, when instrument() was given the no-op tracer
    assert sorted(row.kind for row in rows) == ([CACHE_HIT, CALL] if features_untraced_by == "set_tracer_provider"
                                                else [CALL])
    assert [(row.kind, row.run_id) for row in rows if row.run_id is not None and row.run_id not in runs] == []
    with open_store(hooks_url, create=False) as store:  # the in-process ledger: the run and its calls, as before
        assert [run.run_id for run in store.runs(*WINDOW)] == [unit.run_id]
        assert sorted((row.kind, row.run_id) for row in store.rows(*WINDOW)) == [(CACHE_HIT, unit.run_id),
                                                                                 (CALL, unit.run_id)]


def test_a_run_whose_span_records_but_is_not_sampled_is_named_by_no_span():
    """A unit span a sampler records but does not sample (``RECORD_ONLY``) is never exported: its run keeps the
    span's id (the in-process ledger's), and the spans inside it name no run (``UnitOfWork.span_run_id``)."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
    from aicost import attribution

    class RecordOnly(Sampler):
        def should_sample(self, *args, **kwargs):
            return SamplingResult(Decision.RECORD_ONLY)

        def get_description(self):
            return "RecordOnly"

    attribution.set_tracer_provider(TracerProvider(sampler=RecordOnly()))
    try:
        with aicost.feature("answer") as unit:
            pass
    finally:
        attribution.set_tracer_provider(None)
    assert unit.span.is_recording() is False  # ended
    assert unit.run_id == format(unit.span.get_span_context().span_id, "016x") and unit.span_run_id is None


def test_span_exporter_takes_a_calls_run_from_the_call_whichever_batches_bring_its_ancestors(
        instrumented, tmp_path, spill_dir, openai_client, replay_server):
    """A stream started under an HTTP request span and read after it ended: the call's parent is that request span,
    exported in an earlier batch, and the feature span ends last, in a later batch (a run longer than the
    BatchSpanProcessor's delay). The walk from the call's parent stopped at the request span, which the batch did
    not hold, and filed the call under it as its run. The call carries its run: the row has the feature run's id
    and, once the run is stored, its outcome: the rows the in-process ledger writes."""
    hooks_url = f"sqlite:///{tmp_path / 'hooks.db'}"
    spans_url = f"sqlite:///{tmp_path / 'spans.db'}"
    aicost.instrument(tracer_provider=instrumented.tracer_provider, ledger=hooks_url)
    replay_server.enqueue(openai_chat_stream_reply(5))
    tracer = instrumented.tracer_provider.get_tracer("app")
    with aicost.feature("answer", team="search") as unit:
        with tracer.start_as_current_span("GET /answer"):
            stream = openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
        for _ in stream:  # read after the request span ended: the call span ends after it
            pass
        unit.set_outcome("answered")
    assert ledger_writer.active().flush()
    request, call, feature = instrumented.spans()
    assert (request.name, feature.name) == ("GET /answer", "aicost.feature answer")
    assert call.parent.span_id == request.get_span_context().span_id
    exporter = LedgerSpanExporter(spans_url)  # as a central process would receive the spans over OTLP
    for batch in ([request], [call], [feature]):  # each in its own batch, in the order they ended
        exporter.export(batch)
        assert exporter.force_flush()
    exporter.shutdown()
    (row,) = _rows(spans_url)
    assert (row.run_id, row.outcome) == (unit.run_id, "answered")
    assert unit.run_id == format(feature.get_span_context().span_id, "016x")
    fields = ("span_id", "kind", "cost", "team", "feature", "run_id", "outcome")
    assert [tuple(getattr(r, f) for f in fields) for r in _rows(hooks_url)] == [tuple(getattr(row, f) for f in fields)]


def test_span_exporter_run_id_is_the_nearest_older_feature_in_the_batch():
    """For a span without aicost.run.id: the nearest feature span of its batch, if that one has none either."""
    from aicost.ledger.exporter import _nearest_feature

    parents = {"call": "cache", "cache": "feat", "feat": "http", "http": None, "lone": "http2", "http2": None,
               "new": "outer", "outer": None}
    features = {"feat": True, "new": False, "outer": True}
    assert _nearest_feature("cache", parents, features) == "feat"  # a call inside @aicost.cache inside a feature
    assert _nearest_feature("feat", parents, features) == "feat"
    assert _nearest_feature("http2", parents, features) is None  # in no feature
    assert _nearest_feature("elsewhere", parents, features) is None  # parent exported in another batch: any span
    assert _nearest_feature("new", parents, features) is None  # a feature that writes run ids: not in it
    assert _nearest_feature(None, parents, features) is None


def test_batches_are_prepared_on_a_second_thread(tmp_path, spill_dir):
    """With more than one batch queued, the next batch is prepared on the writer's preparing thread while the
    writer thread writes the current one; close() stops both. A writer made with prepare_ahead=False starts no
    preparing thread. Every row lands once and the rollups equal the rows."""
    import threading

    from aicost.ledger import spend
    from aicost.ledger.synthetic import Profile, generate

    items = list(generate(Profile(days=1, teams=3, customers=5, calls=700, seed=3, start=NOW - timedelta(hours=6))))
    rows = [i for i in items if isinstance(i, LedgerRow)]
    for ahead in (True, False):
        url = f"sqlite:///{tmp_path / f'pipe-{ahead}.db'}"
        writer = LedgerWriter(url, batch_size=64, max_queue=len(items) + 1, prepare_ahead=ahead)
        before = set(threading.enumerate())
        _queue_before_the_thread(writer, items)
        assert writer.flush(timeout_s=None)
        preparer = writer._preparer
        assert (preparer is None) == (not ahead)
        assert set(threading.enumerate()) - before == {writer._thread} | ({preparer._thread} if ahead else set())
        assert writer.stats()["written"] == len(rows) and writer.stats()["runs_written"] == len(items) - len(rows)
        writer.close()
        assert not writer._thread.is_alive() and (preparer is None or not preparer._thread.is_alive())
        with open_store(url, create=False) as store:
            first, last = store.time_range()
            end = last + timedelta(seconds=1)
            raw = {g.key["team"]: (g.calls, g.cost, g.runs) for g in spend(store, first, end, ["team"])}
            whole_hours = (first.replace(minute=0, second=0, microsecond=0),
                           (last + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0))
            rolled = {g.key["team"]: (g.calls, g.cost, g.runs) for g in spend(store, *whole_hours, ["team"])}
            assert raw == rolled and sum(c for c, _, _ in raw.values()) == sum(r.kind == CALL for r in rows)
            assert sum(cost for _, cost, _ in raw.values()) == sum(r.cost for r in rows if r.kind == CALL and
                                                                   r.cost is not None)


def test_the_exit_flush_writes_a_backlog_without_starting_a_thread(tmp_path, spill_dir):
    """At exit the writer thread writes what is queued; it starts no preparing thread (nothing starts a thread at
    interpreter shutdown), and the batches are prepared on the writer thread itself. Here the writer thread is
    held in a first write until the exit begins, with a backlog of several batches queued behind it."""
    url = f"sqlite:///{tmp_path / 'exit-backlog.db'}"
    code = """
    import atexit, json, threading
    started = []
    def report():  # registered before the ledger's exit flush (the writer is imported below): runs after it
        print(json.dumps({"started": started, "stats": w.stats()}), flush=True)
    atexit.register(report)
    from datetime import timedelta, datetime, timezone
    from aicost.ledger import writer
    from aicost.ledger.store import SQLiteStore
    from aicost.ledger.synthetic import Profile, generate
    start = Thread_start = threading.Thread.start
    def record_starts():  # registered after the writer's import: runs just before its exit flush
        def recording(thread):
            started.append(thread.name)
            return Thread_start(thread)
        threading.Thread.start = recording
    atexit.register(record_starts)
    items = list(generate(Profile(days=1, teams=3, customers=5, calls=700, seed=3,
                                  start=datetime.now(timezone.utc) - timedelta(hours=6))))
    entered, write_prepared = threading.Event(), SQLiteStore.write_prepared
    def held(store, batch):  # the first write waits for the exit to begin
        SQLiteStore.write_prepared = write_prepared
        entered.set()
        while not w._exiting:
            entered.wait(0.01)
        return write_prepared(store, batch)
    SQLiteStore.write_prepared = held
    w = writer.LedgerWriter(URL, batch_size=64, max_queue=len(items) + 1)
    w.add(items[:1])
    w.flush(timeout_s=0)
    assert entered.wait(30)
    w.add(items[1:])
    print(json.dumps({"items": len(items), "rows": sum(type(i).__name__ == "LedgerRow" for i in items)}))
    """
    done = _run(code.replace("URL", repr(url)), {"XDG_CACHE_HOME": str(spill_dir.parent)})
    assert done.returncode == 0, done.stderr
    counts, seen = (json.loads(line) for line in done.stdout.splitlines())
    assert seen["started"] == []
    stats = seen["stats"]
    assert stats["written"] == counts["rows"] and stats["runs_written"] == counts["items"] - counts["rows"]
    assert "spilled" not in stats and len(_rows(url)) == counts["rows"]


def test_a_backlog_is_written_in_batches_that_double_up_to_four_times_the_batch_size_and_shrink_at_its_end(
        tmp_path, spill_dir, monkeypatch):
    url = f"sqlite:///{tmp_path / 'backlog.db'}"
    writer = LedgerWriter(url, batch_size=10, max_queue=1000, prepare_ahead=False)
    sizes = []
    store_batch = writer._store_batch
    monkeypatch.setattr(writer, "_store_batch", lambda rows, *rest: sizes.append(len(rows)) or store_batch(rows, *rest))
    _queue_before_the_thread(writer, (LedgerRow(span_id=f"{i:016x}", kind=CALL, time=NOW, cost=Decimal("0.01"))
                                      for i in range(215)))
    assert writer.flush()
    assert sizes == [10, 20, 40, 40, 40, 32, 16, 10, 7] and writer.stats()["written"] == 215
    writer.close()
    with open_store(url, create=False) as store:
        assert totals(store, *WINDOW).cost == Decimal("2.15")


def test_a_write_failing_past_its_own_handling_loses_neither_its_batch_nor_the_next_one_taken(
        tmp_path, spill_dir, monkeypatch):
    """The next batch is taken off the queue while the current one is written. If that write fails past its own
    handling (a bug: here an error it does not catch), the next batch goes back on the queue and the failed one
    to the spill file, replayed by the next drain: every row is written once, none into thin air (the failed
    batch used to be released unspilled)."""
    url = f"sqlite:///{tmp_path / 'fail.db'}"
    writer = LedgerWriter(url, batch_size=10, max_queue=1000, prepare_ahead=False)
    store_batch, failed = writer._store_batch, []

    def fail_once(rows, *rest):
        if not failed:
            failed.append(len(rows))
            raise RuntimeError("a bug past the write's own handling")
        return store_batch(rows, *rest)

    monkeypatch.setattr(writer, "_store_batch", fail_once)
    _queue_before_the_thread(writer, (LedgerRow(span_id=f"{i:016x}", kind=CALL, time=NOW, cost=Decimal("0.01"))
                                      for i in range(100)))
    assert not writer.flush()  # the failure is logged, not raised; the queue still holds what was not written
    assert failed == [10] and writer.stats()["spilled"] == 10
    assert writer.flush()  # the rest, and the spill replayed
    stats = writer.stats()
    writer.close()
    assert stats["written"] == 100 and not stats.get("dropped_spill_error")
    with open_store(url, create=False) as store:
        assert totals(store, *WINDOW).cost == Decimal("1.00")


def test_the_preparing_thread_never_leaves_a_batch_waiting_once_stopped():
    from aicost.ledger.writer import _Preparer

    preparer = _Preparer()
    assert preparer.submit(lambda x: x * 2, 21).result(timeout=5) == 42
    preparer.stop()
    assert not preparer._thread.is_alive()
    assert preparer.submit(lambda x: x * 2, 4).result(timeout=0) == 8  # done on the caller's thread


def test_close_waits_no_longer_than_its_timeout_and_begins_no_write_after_it(ledger_url, spill_dir, monkeypatch,
                                                                              caplog):
    """close() returns within its timeout even while a batch is being prepared (here: until an event), and then
    leaves the database to the writer thread. That thread begins no write after the deadline, not even of the
    batches it had taken and prepared (it used to write those, one batch past the deadline): the closing side
    spilled them, and the thread ends and closes the database itself. On PostgreSQL the preparing thread formats
    COPY data from what the store kept of its connection, never from the connection itself, which the writer
    thread may be closing. The next writer replays the spill: every row once."""
    import threading

    from aicost.ledger.store import PostgresStore, SQLiteStore

    store_class = PostgresStore if ledger_url.startswith("postgresql") else SQLiteStore
    entered, release, staged = threading.Event(), threading.Event(), []
    stage = store_class._stage

    def slow_stage(store, row_params, run_params):
        if not entered.is_set():
            entered.set()
            release.wait(60)
        staged.append(stage(store, row_params, run_params))
        return staged[-1]

    monkeypatch.setattr(store_class, "_stage", slow_stage)
    writer = LedgerWriter(ledger_url, batch_size=50, max_queue=10_000)
    writer.add(LedgerRow(span_id=f"{i:016x}", kind=CALL, time=NOW, cost=Decimal("0.01")) for i in range(400))
    assert entered.wait(30)  # the writer thread's first batch is being prepared, and holds on
    closer = threading.Thread(target=writer.close, kwargs={"timeout_s": 0.5})
    closer.start()
    closer.join(30)
    try:
        assert not closer.is_alive()  # close() returned while the batch is still being prepared
        assert writer._store is not None  # not closed under the writer thread: it is left to that thread
    finally:
        release.set()
    writer._thread.join(30)
    assert not writer._thread.is_alive() and writer._store is None and writer._preparer is None
    stats = writer.stats()
    assert stats.get("written", 0) == 0 and stats["spilled"] == 400  # no write begun after the deadline
    assert "could not prepare" not in caplog.text
    _replayed_by_the_next_writer(ledger_url, spill_dir, 400)
    monkeypatch.undo()
    if store_class is PostgresStore:
        store = open_store(ledger_url, create=False)
        store.close()  # as after an outage: no connection now
        assert store.prepare([LedgerRow(span_id="late", kind=CALL, time=NOW)]).staged is not None


def test_rows_close_could_not_write_in_time_are_spilled_and_replayed_by_the_next_writer(tmp_path, spill_dir):
    """Rows still queued when close()'s time is up go to the spill file (they were dropped, uncounted), and the
    next writer of the ledger replays them."""
    url = f"sqlite:///{tmp_path / 'late.db'}"
    writer = LedgerWriter(url, batch_size=10, max_queue=1000, prepare_ahead=False)
    writer._start = lambda: False  # no writer thread: nothing is written, close() spills it all
    writer.add(LedgerRow(span_id=f"{i:016x}", kind=CALL, time=NOW, cost=Decimal("0.01")) for i in range(100))
    writer.close(timeout_s=0)
    stats = writer.stats()
    assert stats["spilled"] == 100 and stats.get("written", 0) == 0 and stats["queued"] == 0
    _replayed_by_the_next_writer(url, spill_dir, 100)  # the spill of this (live) process


_SLOW_STORE = """
    import json, os, sys, threading, time
    from datetime import datetime, timezone
    from decimal import Decimal
    from aicost.ledger import LedgerRow, CALL
    from aicost.ledger import writer
    from aicost.ledger.store import SQLiteStore
    write_prepared = SQLiteStore.write_prepared
    writing = threading.Event()
    def slow(store, batch):  # a database that needs 1.5 s per batch: 3,000 rows would take 15 s
        writing.set()
        time.sleep(1.5)
        return write_prepared(store, batch)
    SQLiteStore.write_prepared = slow
    writer._EXIT_FLUSH_S = 1.0  # (10 s in production) the test's exit is short
    w = writer.LedgerWriter(URL, batch_size=200)
    w.add(LedgerRow(span_id=f"{i:016x}", kind=CALL, time=datetime.now(timezone.utc), cost=Decimal("0.01"))
          for i in range(3000))
    writing.wait(30)  # the writer thread is in its first write
"""


def _stored_or_spilled_then_replayed(url, spill_dir, done):
    """Every one of the 3,000 rows is stored or in a spill file; the next writer replays them: all stored once."""
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "can't create new thread" not in done.stderr
    stored = {r.span_id for r in _rows(url)}
    spilled = set()
    for path in spill_dir.glob("*.jsonl"):
        spilled |= {json.loads(line)["row"]["span_id"] for line in path.read_text().splitlines() if line.strip()}
    assert spilled - stored, "nothing was spilled: the slow store cannot have written 3,000 rows in time"
    assert stored | spilled == {f"{i:016x}" for i in range(3000)}
    again = LedgerWriter(url)
    assert again.flush()  # the exited process's spill file is adopted and replayed
    assert again.stats()["replayed"] >= len(spilled - stored)
    again.close()
    assert not list(spill_dir.glob("*.jsonl"))
    with open_store(url, create=False) as store:
        assert totals(store, *WINDOW).calls == 3000 and totals(store, *WINDOW).cost == Decimal("30.00")


def test_rows_the_exit_flush_cannot_write_in_time_are_spilled_never_lost(tmp_path, spill_dir):
    """The exit flush is bounded; the rows it could not write by then, including the batch the writer thread is
    still writing when the interpreter exits (it is not waited for), are spilled for the next writer."""
    url = f"sqlite:///{tmp_path / 'slow.db'}"
    done = _run(_SLOW_STORE.replace("URL", repr(url)), {"XDG_CACHE_HOME": str(spill_dir.parent)})
    _stored_or_spilled_then_replayed(url, spill_dir, done)


def test_rows_close_cannot_write_in_time_are_spilled_even_if_the_process_exits_at_once(tmp_path, spill_dir):
    """close(timeout_s) returns in time while the writer thread is writing, having spilled the queue and the
    batches the thread had taken (the one being written too: the process may exit before that write ends)."""
    url = f"sqlite:///{tmp_path / 'slow.db'}"
    code = _SLOW_STORE + """
    start = time.monotonic()
    w.close(timeout_s=0.5)
    print(json.dumps({"close_s": time.monotonic() - start, "queued": w.stats()["queued"]}))
    """
    done = _run(code.replace("URL", repr(url)), {"XDG_CACHE_HOME": str(spill_dir.parent)})
    _stored_or_spilled_then_replayed(url, spill_dir, done)
    assert json.loads(done.stdout)["close_s"] < 1.4  # returned before the write under way (1.5 s) ended


def test_a_close_after_the_exit_flush_waits_no_longer_than_the_exit(tmp_path, spill_dir):
    """An OpenTelemetry provider registers its exit handler before aicost, so its shutdown (the ledger span
    exporter's close(30)) runs after the ledger's exit flush: that close keeps the exit's deadline (1 s here)
    instead of waiting up to 30 s more for the writes under way (4 s each here). Every row still ends up stored
    or spilled, and the next writer stores each once."""
    url = f"sqlite:///{tmp_path / 'late_close.db'}"
    code = """
    import atexit, json, time
    began = []
    def late_close():  # registered before aicost's exit flush: runs after it
        w.close(timeout_s=30)
        print(json.dumps({"after_exit_began_s": time.monotonic() - began[0]}), flush=True)
    atexit.register(late_close)
    """ + _SLOW_STORE.replace("time.sleep(1.5)", "time.sleep(4)") + """
    began.append(time.monotonic())
    """
    done = _run(code.replace("URL", repr(url)), {"XDG_CACHE_HOME": str(spill_dir.parent)})
    _stored_or_spilled_then_replayed(url, spill_dir, done)
    assert json.loads(done.stdout)["after_exit_began_s"] < 3.0  # the old code waited for the writes (>= 4 s)


@pytest.mark.parametrize("ending", ["close", "exit"])
def test_a_reopen_held_by_another_process_lock_delays_neither_close_nor_the_exit(tmp_path, spill_dir, ending):
    """The writer thread opens a SQLite ledger again after an outage closed it (a damaged file) or in a forked
    child, with SQLite's 30 s busy timeout, outside the write's time limit. Another connection holding the file
    exclusively (locking_mode=EXCLUSIVE) makes that open wait the full 30 s; close(1) and the exit (1 s here)
    still return by their deadline, since the closing side never opens the store: it waits for the thread until
    then and spills the batch the thread took, which is kept for the next writer, not lost. (The thread itself
    ends soon after too: the next test.)"""
    url = f"sqlite:///{tmp_path / 'held.db'}"
    code = """
    import json, sqlite3, sys, time
    from datetime import datetime, timezone
    from decimal import Decimal
    from aicost.ledger import CALL, LedgerRow, writer
    writer._EXIT_FLUSH_S = 1.0  # (10 s in production) the test's exit is short
    w = writer.configure(URL)
    w._store.close()
    w._store = None  # as after an outage that closed it, or in a forked child: the next write opens it again
    holder = sqlite3.connect(PATH, isolation_level=None, timeout=0)  # a second connection, holding the file
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("CREATE TABLE held(x)")
    w.add([LedgerRow(span_id="00000000000000aa", kind=CALL, time=datetime.now(timezone.utc), cost=Decimal(1))])
    time.sleep(0.3)  # the writer thread is in its reopen, waiting for the lock
    if ENDING == "close":
        began = time.monotonic()
        w.close(timeout_s=1)
        print(json.dumps({"close_s": time.monotonic() - began}), flush=True)
    """.replace("URL", repr(url)).replace("PATH", repr(str(tmp_path / "held.db"))).replace("ENDING", repr(ending))
    began = time.monotonic()
    done = _run(code, {"XDG_CACHE_HOME": str(spill_dir.parent)})
    took = time.monotonic() - began
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert took < 1 + 3 + 5, took  # the deadline, generous margins (the interpreter's start): never the 30 s
    if ending == "close":
        assert json.loads(done.stdout)["close_s"] < 1 + 3
    spilled = [json.loads(line)["row"]["span_id"] for path in spill_dir.glob("*.jsonl")
               for line in path.read_text().splitlines() if line.strip()]
    assert spilled == ["00000000000000aa"]


def test_a_writer_thread_in_a_reopen_held_by_another_connection_ends_soon_after_close(tmp_path, spill_dir):
    """The writer thread is reopening its SQLite ledger (after an outage closed it) while another connection holds
    the file exclusively (BEGIN EXCLUSIVE, locking_mode=EXCLUSIVE), when close(1) begins. close() returns by its
    deadline and spills the row; the thread, which waited in that open for SQLite's 30 s busy timeout, ends
    within the reopen's own bound (5 s) instead, not 30 s after it began."""
    import sqlite3

    path = tmp_path / "held.db"
    writer = LedgerWriter(f"sqlite:///{path}", flush_interval_s=0.05)
    writer._store.close()
    writer._store = None  # as after an outage that closed it: the next write opens it again
    holder = sqlite3.connect(path, isolation_level=None, timeout=0)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("CREATE TABLE held(x)")
    try:
        writer.add([LedgerRow(span_id="00000000000000aa", kind=CALL, time=NOW, cost=Decimal(1))])
        time.sleep(0.5)
        assert writer._thread.is_alive() and writer._store is None and "outages" not in writer.stats()  # in it
        writer.close(timeout_s=1)
        writer._thread.join(15)  # 5 s of the reopen, and generous margins; it used to wait 30 s
        assert not writer._thread.is_alive()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert writer.stats()["spilled"] == 1
    _replayed_by_the_next_writer(f"sqlite:///{path}", spill_dir, 1)


def test_close_stops_a_spill_replay_at_its_deadline_and_keeps_the_rest_on_disk(tmp_path, spill_dir, monkeypatch):
    """A spill file is replayed batch by batch; close(timeout_s) begins no batch after its deadline. The rest stays
    on disk in a file of its own, which the next writer replays. (It used to go back into this process's bounded
    spill file, here full, and the replayed file was deleted anyway: those rows were lost.)"""
    from aicost.ledger.store import SQLiteStore

    url = f"sqlite:///{tmp_path / 'replay.db'}"
    writer = LedgerWriter(url, batch_size=500, prepare_ahead=False)
    _write_spill(writer._own_spill(), [LedgerRow(span_id=f"{i:016x}", kind=CALL, time=NOW, cost=Decimal("0.01"))
                                       for i in range(5000)])
    writer.spill_max_bytes = 1000  # this process's spill file is full: not one more row fits
    writes, write_prepared = [], SQLiteStore.write_prepared

    def slow(store, batch):  # each write ends after close()'s deadline: a 5,000-row file would take 10 of them
        writes.append(len(batch.rows))
        time.sleep(max(0.0, deadline + 0.1 - time.monotonic()))
        return write_prepared(store, batch)

    monkeypatch.setattr(SQLiteStore, "write_prepared", slow)
    deadline = time.monotonic() + 2.0  # (close's own is no earlier)
    writer.close(timeout_s=2.0)
    writer._thread.join(30)
    assert writes == [500]  # the batch begun before the deadline, then no other
    stats = writer.stats()
    assert stats["replayed"] == 500 and "spilled" not in stats and "dropped_spill_full" not in stats
    assert not writer._own_spill().exists()  # the rest is not in the bounded spill file
    monkeypatch.setattr(SQLiteStore, "write_prepared", write_prepared)
    _replayed_by_the_next_writer(url, spill_dir, 4500, stored=5000)
    assert not list(spill_dir.iterdir())


def test_a_row_queued_by_a_call_racing_close_is_counted_as_dropped_by_that_call(tmp_path, spill_dir, monkeypatch,
                                                                                 caplog):
    """on_call checks that the writer is open and then appends, without a lock (the hot path); a close() that
    takes the queue in between leaves that row behind. The call itself finds that out and counts the row as
    dropped, and logs it (it used to be counted only when stats() was read)."""
    from aicost._log import forget

    writer = LedgerWriter(f"sqlite:///{tmp_path / 'race.db'}")
    writer.add([LedgerRow(span_id="a" * 16, kind=CALL, time=NOW, cost=Decimal("0.01"))])
    assert writer.flush()

    def racing(result):  # on_call found the writer open; close() runs to its end before the row is appended
        writer.close()
        return LedgerRow(span_id="b" * 16, kind=CALL, time=NOW)

    monkeypatch.setattr(ledger_writer, "call_item", racing)
    forget("ledger:closed")
    with caplog.at_level(logging.WARNING, logger="aicost"):
        writer.on_call(None)
    assert not writer._queue and writer._counts["dropped_closed"] == 1
    assert "arrived after the ledger was closed" in caplog.text
    stats = writer.stats()
    assert stats["written"] == 1 and stats["dropped_closed"] == 1 and stats["queued"] == 0


def test_a_call_or_hit_without_a_span_keeps_one_id_however_often_its_row_is_built():
    """Without an OpenTelemetry SDK a call's span id is 0. The row's own id is fixed when the call is queued, not
    when the row is built: the exit spills queued items that the writer thread may be writing at the same time,
    and a replay must then find the row already stored (a new id per build stored calls twice)."""
    from opentelemetry.trace import INVALID_SPAN

    from aicost.hooks import CacheHit, CallInfo, CallResult
    from aicost.ledger.capture import call_item, event_item, row_from_item
    from aicost.vendor import DEFAULT_SHAPE

    info = CallInfo(provider="openai", operation="chat", endpoint="openai.chat.completions.create",
                    request_model="gpt-4o-mini", kwargs={}, stream=False, is_async=False, shape=DEFAULT_SHAPE)
    call = call_item(CallResult(info=info, usage=None, cost=None, response_model=None, error_type=None,
                                duration_s=0.1, span=INVALID_SPAN, started_ns=time.time_ns()))
    hit = event_item(CacheHit(name="faq", saved_usd=Decimal("0.01"), attribution={}, run_id=None,
                              span=INVALID_SPAN, time_ns=time.time_ns()))
    for item in (call, hit):
        first, again = row_from_item(item), row_from_item(item)
        assert first.span_id and first.span_id == again.span_id
    assert row_from_item(call).span_id != row_from_item(hit).span_id


def test_a_calls_row_carries_its_spans_ids_from_an_sdk_span_or_any_span_context():
    """The listener reads an OpenTelemetry SpanContext by index (its properties cost a Python call each on the
    calling thread); a span whose context is some other object is still read by its trace_id / span_id."""
    from types import SimpleNamespace

    from opentelemetry.sdk.trace import TracerProvider

    from aicost.hooks import CallInfo, CallResult
    from aicost.ledger.capture import call_item, row_from_item
    from aicost.vendor import DEFAULT_SHAPE

    info = CallInfo(provider="openai", operation="chat", endpoint="openai.chat.completions.create",
                    request_model="gpt-4o-mini", kwargs={}, stream=False, is_async=False, shape=DEFAULT_SHAPE)
    sdk_span = TracerProvider().get_tracer("t").start_span("chat")
    sdk_span.end()
    context = sdk_span.get_span_context()
    other = SimpleNamespace(get_span_context=lambda: SimpleNamespace(trace_id=0xABC, span_id=0xDEF))
    rows = [row_from_item(call_item(CallResult(info=info, usage=None, cost=None, response_model=None,
                                               error_type=None, duration_s=0.1, span=span)))
            for span in (sdk_span, other)]
    assert (rows[0].trace_id, rows[0].span_id) == (f"{context.trace_id:032x}", f"{context.span_id:016x}")
    assert (rows[1].trace_id, rows[1].span_id) == (f"{0xABC:032x}", f"{0xDEF:016x}")


# -- the exit and close path: bounded, nothing silently lost -------------------------------------------------------
def _exit_with_rows(url: str, spill_dir, extra: str = "", rows: int = 300) -> tuple[subprocess.CompletedProcess, float]:
    """A process that queues ``rows`` rows (its writer thread waits for a full batch or a flush: only the exit's
    flush writes them, with a 1 s bound) and exits; its result and how long it ran. It prints its writer's stats
    after the exit flush."""
    code = """
        import atexit, json
        from datetime import datetime, timezone
        from decimal import Decimal
        atexit.register(lambda: print(json.dumps(w.stats()), flush=True))  # runs after the ledger's exit flush
        from aicost.ledger import LedgerRow, CALL
        from aicost.ledger import writer
        writer._EXIT_FLUSH_S = 1.0  # (10 s in production)
        EXTRA
        w = writer.LedgerWriter(URL, flush_interval_s=3600)
        w.add(LedgerRow(span_id=f"{i:016x}", kind=CALL, time=datetime.now(timezone.utc), cost=Decimal("0.01"))
              for i in range(ROWS))
    """.replace("EXTRA", extra).replace("URL", repr(url)).replace("ROWS", str(rows))
    began = time.monotonic()
    done = _run(code, {"XDG_CACHE_HOME": str(spill_dir.parent)})
    return done, time.monotonic() - began


def _replayed_by_the_next_writer(url: str, spill_dir, rows: int, stored: int | None = None) -> None:
    """A new writer of the ledger replays ``rows`` spilled rows, leaves no spill file, and the ledger then holds
    ``stored`` calls (default: those rows)."""
    again = LedgerWriter(url)
    assert again.flush() and again.stats()["replayed"] == rows
    again.close()
    assert not list(spill_dir.glob("*.jsonl"))
    with open_store(url, create=False) as store:
        assert totals(store, *WINDOW).calls == (rows if stored is None else stored)


def test_an_exit_write_waits_for_a_locked_sqlite_file_no_longer_than_the_exit(tmp_path, spill_dir):
    """Another process is writing the SQLite file for longer than the exit may wait. The exit's write gives up at
    the exit's deadline (it used to wait for SQLite's 30 s busy timeout) and its rows are spilled."""
    import sqlite3

    url = f"sqlite:///{tmp_path / 'locked.db'}"
    open_store(url).close()
    other = sqlite3.connect(tmp_path / "locked.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # holds the write lock until the rollback below
    try:
        done, took = _exit_with_rows(url, spill_dir)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert done.returncode == 0, done.stderr
    stats = json.loads(done.stdout)
    assert stats["spilled"] == 300 and stats.get("written", 0) == 0
    assert took < 20  # the exit's bound is 1 s here; the busy timeout alone was 30 s
    _replayed_by_the_next_writer(url, spill_dir, 300)


@pytest.fixture
def pg_write_lock(pg_server):
    """A PostgreSQL ledger and a session holding the ledger writers' advisory lock (another host's write that
    does not end): ``(url, release)``."""
    import psycopg

    from aicost.ledger.store import _ADVISORY_LOCK

    url = fresh_pg_database(pg_server)
    open_store(url).close()
    holder = psycopg.connect(url, autocommit=True)
    holder.execute("SELECT pg_advisory_lock(%s)", (_ADVISORY_LOCK,))
    try:
        yield url, holder.close
    finally:
        holder.close()


def test_an_exit_write_waits_for_a_postgresql_lock_no_longer_than_the_exit(pg_write_lock, spill_dir):
    """A write at exit that waits for another session's lock (no lock or statement timeout: it waited for ever,
    and the process never exited) gives up at the exit's deadline; the rows are spilled."""
    url, release = pg_write_lock
    try:
        done, took = _exit_with_rows(url, spill_dir)
    finally:
        release()
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["spilled"] == 300 and took < 30
    _replayed_by_the_next_writer(url, spill_dir, 300)


def test_a_batch_the_writer_thread_takes_back_to_spill_at_the_exit_is_spilled_before_the_process_ends(
        pg_write_lock, spill_dir):
    """The write at the exit's deadline fails (another session's lock); the writer thread takes its batch back from
    the closing side to spill it, and the closing side, finding nothing taken, used to let the process end while
    that spill was under way: the rows were lost, neither written nor spilled (seen under load). Forced here: the
    closing side gives up only once the batch is taken back, and the spill is slow."""
    trace = """
        import threading, time
        taken_back = threading.Event()
        release, give_up, spill = writer.LedgerWriter._release_held, writer.LedgerWriter._give_up, writer.LedgerWriter._spill
        def _release_held(self, batch):
            found = release(self, batch)
            if found and threading.current_thread().name == "aicost-ledger":
                taken_back.set()
            return found
        def _give_up(self):
            taken_back.wait(10)
            give_up(self)
        def _spill(self, items):
            if threading.current_thread().name == "aicost-ledger":
                time.sleep(0.5)
            spill(self, items)
        writer.LedgerWriter._release_held, writer.LedgerWriter._give_up, writer.LedgerWriter._spill = _release_held, _give_up, _spill
    """
    url, release = pg_write_lock
    try:
        done, _ = _exit_with_rows(url, spill_dir, extra=textwrap.indent(textwrap.dedent(trace).strip(), " " * 8).lstrip())
    finally:
        release()
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout).get("spilled") == 300, (done.stdout, done.stderr)
    _replayed_by_the_next_writer(url, spill_dir, 300)


def test_a_write_under_way_at_close_gives_up_by_its_deadline_on_postgresql(pg_write_lock, spill_dir):
    """close(timeout_s) returns by its deadline, and the writer thread's write, waiting for a lock another session
    holds, gives up by then too (lock_timeout and statement_timeout for that transaction): the thread ends and
    closes its connection instead of waiting for ever. Its rows are spilled once."""
    import threading

    url, release = pg_write_lock
    writer = LedgerWriter(url, flush_interval_s=3600)
    writer.add(LedgerRow(span_id=f"{i:016x}", kind=CALL, time=NOW, cost=Decimal("0.01")) for i in range(300))
    closer = threading.Thread(target=writer.close, kwargs={"timeout_s": 3.0})  # the write begins well before
    try:
        closer.start()
        closer.join(20)
        assert not closer.is_alive()
        writer._thread.join(20)
        assert not writer._thread.is_alive() and writer._store is None
    finally:
        release()
        closer.join(60)
    stats = writer.stats()
    assert stats["spilled"] == 300 and stats.get("written", 0) == 0 and stats["outages"] == 1
    _replayed_by_the_next_writer(url, spill_dir, 300)


# -- a write already waiting for a lock when close() or the exit begins: cut short at the deadline ----------------
def _in_its_write(writer) -> None:
    """Wait until the writer thread has taken and built the batch of what is queued (it is then in its write,
    with no time limit: close() has not begun), and a moment for the write to reach its lock."""
    for _ in range(2000):
        with writer._cond:
            if not writer._queue and writer._taken and writer._taken[0].built is not None:
                break
        time.sleep(0.005)
    else:
        raise AssertionError("the writer thread never took the batch")
    time.sleep(0.3)


def test_a_write_waiting_for_a_sqlite_lock_when_close_begins_is_cut_short_at_its_deadline(tmp_path, spill_dir):
    """The writer thread is already writing when close(1) begins, waiting (with no time limit: SQLite's busy
    timeout, 30 s) for another connection holding the file's write lock (BEGIN EXCLUSIVE). close() returns by its
    deadline, and the write, which the deadline did not bound, is cut short then: the thread ends soon after, not
    when the busy timeout ends (it used to linger past close() for those 30 s). Its rows are spilled (counted
    writes_cut, not an outage) and stored once by the next writer, once the lock is released."""
    import sqlite3

    path = tmp_path / "held.db"
    url = f"sqlite:///{path}"
    writer = LedgerWriter(url, flush_interval_s=0.05)
    holder = sqlite3.connect(path, isolation_level=None, timeout=0)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        writer.add(LedgerRow(span_id=f"{i:016x}", kind=CALL, time=NOW, cost=Decimal("0.01")) for i in range(300))
        _in_its_write(writer)
        began = time.monotonic()
        writer.close(timeout_s=1)
        took = time.monotonic() - began
        writer._thread.join(10)  # the cut write ends within 0.1 s; the old one waited 30 s
        assert not writer._thread.is_alive(), "the writer thread still waits for the lock after close()"
        assert took < 1 + 3, took  # the deadline, and a generous margin (never the 30 s)
        stats = writer.stats()
        assert stats["writes_cut"] == 1 and stats["spilled"] == 300, stats
        assert "written" not in stats and "outages" not in stats, stats
        with sqlite3.connect(path) as reader:  # (WAL: a reader is not held up by the lock)
            assert reader.execute("SELECT COUNT(*) FROM aicost_ledger").fetchone() == (0,)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    _replayed_by_the_next_writer(url, spill_dir, 300)


def test_a_sqlite_write_past_its_lock_wait_at_close_is_not_counted_cut(tmp_path, spill_dir):
    """A write begun before close(), its lock taken, still in its statements at the deadline (a long batch): a
    cut cannot end it (SQLite's statements run to their end), and it ends by itself. It was counted in writes_cut
    and logged as a write "still waiting for the database", "cut short", and close() waited 2 s more for it; it is
    left to end now, its rows spilled as at any deadline, and stored once."""
    import sqlite3
    import threading

    path = tmp_path / "busy.db"
    url = f"sqlite:///{path}"
    writer = LedgerWriter(url, flush_interval_s=0.05)
    entered, go_on = threading.Event(), threading.Event()

    def hold():  # the write's first insert waits here: a batch's statements running past the deadline
        entered.set()
        go_on.wait(60)
        return 0

    writer._store._conn.create_function("aicost_test_hold", 0, hold)
    with sqlite3.connect(path) as db:
        db.execute("CREATE TRIGGER aicost_test_hold AFTER INSERT ON aicost_ledger BEGIN SELECT aicost_test_hold(); END")
    try:
        writer.add(LedgerRow(span_id=f"{i:016x}", kind=CALL, time=NOW, cost=Decimal("0.01")) for i in range(300))
        assert entered.wait(60), "the write never reached its statements"
        writer.close(timeout_s=0.5)
        stats = writer.stats()
        assert "writes_cut" not in stats and stats["spilled"] == 300, stats
    finally:
        go_on.set()
        writer._thread.join(60)
    assert writer.stats()["written"] == 300
    with sqlite3.connect(path) as db:
        db.execute("DROP TRIGGER aicost_test_hold")
    _replayed_by_the_next_writer(url, spill_dir, 300)


@pytest.fixture(params=["advisory", "table"])
def pg_held(request, pg_server):
    """A PostgreSQL ledger and another session holding what a write waits for: the ledger writers' advisory lock
    (another host's write that does not end), or the ledger table (LOCK TABLE in a transaction): ``(url,
    waiting, waiters, release)``, where ``waiting(pid)`` waits until the backend ``pid`` waits for a lock (no
    guess at timing) and ``waiters()`` counts the sessions waiting for one."""
    import psycopg

    from aicost.ledger.store import _ADVISORY_LOCK

    url = fresh_pg_database(pg_server)
    open_store(url).close()
    holder = psycopg.connect(url, autocommit=True)
    if request.param == "advisory":
        holder.execute("SELECT pg_advisory_lock(%s)", (_ADVISORY_LOCK,))
    else:
        holder.execute("BEGIN")
        holder.execute("LOCK TABLE aicost_ledger IN SHARE MODE")  # a write's COPY waits for it
    probe = psycopg.connect(url, autocommit=True)

    def waiting(pid):
        for _ in range(2000):
            if probe.execute("SELECT COUNT(*) FROM pg_locks WHERE NOT granted AND pid = %s", (pid,)).fetchone()[0]:
                return
            time.sleep(0.005)
        raise AssertionError("the write never waited for the lock")

    def waiters():
        return probe.execute("SELECT COUNT(*) FROM pg_locks WHERE NOT granted").fetchone()[0]

    try:
        yield url, waiting, waiters, holder.close
    finally:
        holder.close()
        probe.close()


def test_a_write_waiting_for_a_postgresql_lock_when_close_begins_is_cut_short_at_its_deadline(pg_held, spill_dir):
    """The writer thread is already writing when close(1) begins, waiting for a lock another session holds (the
    writers' advisory lock, or the ledger table), with no lock_timeout (close() had not begun). close() returns by
    its deadline and cancels the write then: the thread ends and closes its connection, and its server session
    waits no more (it used to wait for as long as the lock was held, for ever here, past close() and the exit).
    The rows are spilled (writes_cut, not an outage) and stored once by the next writer, once the lock is freed."""
    url, waiting, waiters, release = pg_held
    writer = LedgerWriter(url, flush_interval_s=0.05)
    try:
        writer.add(LedgerRow(span_id=f"{i:016x}", kind=CALL, time=NOW, cost=Decimal("0.01")) for i in range(300))
        waiting(writer._store._conn.info.backend_pid)
        began = time.monotonic()
        writer.close(timeout_s=1)
        took = time.monotonic() - began
        writer._thread.join(10)
        assert not writer._thread.is_alive(), "the writer thread still waits for the lock after close()"
        assert took < 1 + 3, took
        assert writer._store is None  # closed by the thread as it ended
        stats = writer.stats()
        assert stats["writes_cut"] == 1 and stats["spilled"] == 300, stats
        assert "written" not in stats and "outages" not in stats, stats
        assert waiters() == 0  # the write's session was cancelled, then closed
    finally:
        release()
        writer._thread.join(60)
    _replayed_by_the_next_writer(url, spill_dir, 300)


def test_a_postgresql_write_close_cannot_cancel_is_not_counted_cut_nor_waited_for(pg_held, spill_dir, monkeypatch):
    """With a libpq older than 17 (psycopg over the system's libpq: no cancel_safe) close() sends nothing, and the
    write waits on, as docs/ledger.md says. It was counted (writes_cut) and logged as cut short all the same, and
    close() waited 2 s more for a write nothing would end. Its rows are spilled as at any deadline; the write,
    once the lock is freed, stores them too: once."""
    from psycopg import capabilities

    monkeypatch.setattr(capabilities, "has_cancel_safe", lambda *args, **kwargs: False)
    url, waiting, waiters, release = pg_held
    writer = LedgerWriter(url, flush_interval_s=0.05)
    try:
        writer.add(LedgerRow(span_id=f"{i:016x}", kind=CALL, time=NOW, cost=Decimal("0.01")) for i in range(300))
        waiting(writer._store._conn.info.backend_pid)
        writer.close(timeout_s=1)
        stats = writer.stats()
        assert "writes_cut" not in stats and stats["spilled"] == 300, stats
        assert waiters() == 1  # nothing was sent: the write still waits for the lock
    finally:
        release()
        writer._thread.join(60)
    assert writer.stats()["written"] == 300
    _replayed_by_the_next_writer(url, spill_dir, 300)


def test_a_write_waiting_for_a_postgresql_lock_when_the_exit_begins_is_cut_short(pg_held, spill_dir):
    """The exit's flush begins while the writer thread's write waits for a lock another session holds (no
    lock_timeout: the write began before the exit). The exit cancels it at its deadline: the process exits with
    its rows spilled, and its server session no longer waits for the lock (it used to: a backend waiting for a lock
    does not see its client gone, and held its place, and for a table lock the writers' advisory lock too,
    until the lock was freed). The next writer stores the rows once."""
    url, waiting, waiters, release = pg_held
    code = """
        import atexit, json, psycopg, time
        from datetime import datetime, timezone
        from decimal import Decimal
        atexit.register(lambda: print(json.dumps(w.stats()), flush=True))  # runs after the ledger's exit flush
        from aicost.ledger import LedgerRow, CALL
        from aicost.ledger import writer
        writer._EXIT_FLUSH_S = 1.0  # (10 s in production)
        w = writer.LedgerWriter(URL, flush_interval_s=0.05)
        pid = w._store._conn.info.backend_pid
        w.add(LedgerRow(span_id=f"{i:016x}", kind=CALL, time=datetime.now(timezone.utc), cost=Decimal("0.01"))
              for i in range(300))
        with psycopg.connect(URL, autocommit=True) as probe:  # the write waits for the lock, then the exit begins
            while not probe.execute("SELECT COUNT(*) FROM pg_locks WHERE NOT granted AND pid = %s",
                                    (pid,)).fetchone()[0]:
                time.sleep(0.005)
    """.replace("URL", repr(url))
    try:
        done = _run(code, {"XDG_CACHE_HOME": str(spill_dir.parent)})
        assert done.returncode == 0, done.stderr
        for _ in range(200):  # a cancelled backend ends as its client closes; give the server a moment
            if not waiters():
                break
            time.sleep(0.05)
        assert waiters() == 0, "the exited process's session still waits for the lock"
        stats = json.loads(done.stdout)
        assert stats["writes_cut"] == 1 and stats["spilled"] == 300 and "outages" not in stats, stats
    finally:
        release()
    _replayed_by_the_next_writer(url, spill_dir, 300)


# -- several writers at the exit: one bound for all, however many need a cut ---------------------------------------
_SEVERAL_AT_EXIT = """
    import atexit, json, sys, time
    from datetime import datetime, timezone
    from decimal import Decimal
    began = []
    atexit.register(lambda: print(json.dumps({"stats": [w.stats() for w in ws], "exit_s": time.monotonic() - began[0]}),
                                  flush=True))  # runs after the ledger's exit flush
    from aicost.ledger import LedgerRow, CALL
    from aicost.ledger import writer
    atexit.register(lambda: began.append(time.monotonic()))  # runs before it
    writer._EXIT_FLUSH_S = 1.0  # (10 s in production)
    ws = [writer.LedgerWriter(url, flush_interval_s=0.05) for url in URLS]
    for k, w in enumerate(ws):
        w.add(LedgerRow(span_id=f"{k:04x}{i:012x}", kind=CALL, time=datetime.now(timezone.utc), cost=Decimal("0.01"))
              for i in range(300))
    WAIT
"""


def _several_replayed(urls: list[str], spill_dir, rows: int) -> None:
    """The next writer of each ledger replays its ``rows`` spilled rows and stores them once; no spill file is left."""
    for url in urls:
        again = LedgerWriter(url)
        assert again.flush() and again.stats()["replayed"] == rows, (url, again.stats())
        again.close()
        with open_store(url, create=False) as store:
            assert totals(store, *WINDOW).calls == rows
    assert not list(spill_dir.glob("*.jsonl"))


def test_several_sqlite_writes_waiting_for_locks_at_the_exit_are_all_cut_within_one_bound(tmp_path, spill_dir):
    """Three writers of three SQLite files, each file held by another connection (BEGIN EXCLUSIVE), each writer
    thread already in its write (waiting for the lock, with no time limit) when the exit begins. All are cut at
    the exit's one deadline and all their rows are spilled (each writer counts writes_cut), and the exit ends
    within its bound (1 s here) and the 2 s it waits for cut writes, once for all of them. (It did before too: a
    SQLite cut ends its write within 0.1 s, so waiting for one writer after another cost little. The PostgreSQL
    tests below are where the order showed.)"""
    import sqlite3

    urls, holders = [], []
    try:
        for k in range(3):
            path = tmp_path / f"held{k}.db"
            open_store(f"sqlite:///{path}").close()
            holder = sqlite3.connect(path, isolation_level=None, timeout=0)
            holder.execute("BEGIN EXCLUSIVE")
            holders.append(holder)
            urls.append(f"sqlite:///{path}")
        wait = """
            for w in ws:  # every writer thread waits for its file's lock, then the exit begins
                while w._store is None or not w._store._waiting_lock:
                    time.sleep(0.005)
            time.sleep(0.3)
        """
        code = textwrap.dedent(_SEVERAL_AT_EXIT).replace("URLS", repr(urls)).replace("WAIT", textwrap.dedent(wait))
        done = _run(code, {"XDG_CACHE_HOME": str(spill_dir.parent)})
    finally:
        for holder in holders:
            holder.execute("ROLLBACK")
            holder.close()
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    for stats in out["stats"]:
        assert stats["writes_cut"] == 1 and stats["spilled"] == 300, out
        assert "written" not in stats and "outages" not in stats, out
    assert out["exit_s"] < 1 + 2 + 3, out  # the bound, the cut's 2 s, a generous margin
    _several_replayed(urls, spill_dir, 300)


def _locked_ledger_behind(pg_server: str, proxy) -> tuple[str, Any]:
    """A fresh PostgreSQL ledger whose writers' advisory lock another session holds: its URL through ``proxy`` (an
    :class:`OutageProxy` of ``pg_server``) and that session, to close."""
    import psycopg

    from aicost.ledger.store import _ADVISORY_LOCK

    url = fresh_pg_database(pg_server)
    open_store(url).close()
    holder = psycopg.connect(url, autocommit=True)
    holder.execute("SELECT pg_advisory_lock(%s)", (_ADVISORY_LOCK,))
    port = int(pg_server.split(":")[-1].split("/")[0])
    return url.replace(f":{port}/", f":{proxy.port}/"), holder


def _lock_waiters(pg_server: str, names: list[str], count: int, child: Any = None) -> list[int]:
    """The pids of the ``count`` sessions of the databases ``names`` waiting for a lock, once that many are
    (AssertionError after 40 s, or as soon as ``child``, a process making them, has ended)."""
    import psycopg

    with psycopg.connect(pg_server, autocommit=True) as probe:
        for _ in range(4000):
            pids = [pid for pid, in probe.execute("SELECT pid FROM pg_stat_activity WHERE wait_event_type = "
                                                  "'Lock' AND datname = ANY(%s)", (names,))]
            if len(pids) == count:
                return pids
            assert child is None or child.poll() is None, child.communicate()
            time.sleep(0.01)
    raise AssertionError("the writes never waited for the lock")


def _end_lock_waiters(pg_server: str, names: list[str]) -> None:
    """End the sessions of the databases ``names`` still waiting for a lock: those no cancel reached."""
    import psycopg

    with psycopg.connect(pg_server, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                      "AND datname = ANY(%s)", (names,))


def _several_pg_at_exit(pg_server: str, spill_dir, answer_cancels: str) -> tuple[dict, list[int], list]:
    """Four writers of four PostgreSQL ledgers (through an :class:`OutageProxy` on 127.0.0.1) in a process, each
    writer thread's write waiting for the writers' advisory lock another session holds when the exit begins. The
    proxy then answers the cancel requests as ``answer_cancels`` says: ``"never"`` (it takes each new connection
    and never answers: a server that does not take them) or ``"lost"`` (it reads each request and closes the
    connection, as the server does once it has the request, but passes it on to no one: every cancel is lost,
    as one reaching the server between two statements is). Returns the process's output (every writer's stats,
    how long its exit took), the waiting sessions' pids, and the cancel requests the proxy took ``(time, pid)``;
    the next writer of each ledger then stores its spilled rows once."""
    proxy = OutageProxy(int(pg_server.split(":")[-1].split("/")[0]))
    urls, holders, pids = [], [], []
    try:
        for _ in range(4):
            url, holder = _locked_ledger_behind(pg_server, proxy)
            holders.append(holder)
            urls.append(url)
        names = [u.rsplit("/", 1)[1] for u in urls]
        code = textwrap.dedent(_SEVERAL_AT_EXIT).replace("URLS", repr(urls)).replace("WAIT", "sys.stdin.readline()")
        child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True,
                                 env={**os.environ, "XDG_CACHE_HOME": str(spill_dir.parent)})
        try:
            pids = _lock_waiters(pg_server, names, 4, child)  # every write waits for its lock
            if answer_cancels == "never":
                proxy.silent = True
            else:
                proxy.cancels = []
            out, err = child.communicate("\n", timeout=120)
        finally:
            child.kill()
            child.wait()
            _end_lock_waiters(pg_server, names)
    finally:
        for holder in holders:
            holder.close()
    try:
        assert child.returncode == 0, err
        done = json.loads(out)
        cancels = list(proxy.cancels or ())
        proxy.silent, proxy.cancels = False, None
        _several_replayed(urls, spill_dir, 300)
    finally:
        proxy.close()
    return done, pids, cancels


def test_several_postgresql_writes_cut_at_the_exit_share_its_bound_when_the_server_takes_no_cancel(
        pg_server, spill_dir):
    """Four writers' writes waiting for a lock when the exit begins, and the server then takes no cancel request
    (each waits its whole time). The exit cut one writer after another, each cut waiting up to 1 s for its
    cancel request, and each writer waited for (cutting again) up to 2 s: about 2 s more per writer, 9 s for this
    1 s bound. Now all are cut before any is waited for, and no cut runs past the one 2 s after the deadline (but
    for the 0.1 s each cancel request is given at least): the exit ends within its bound and those 2 s. Every
    writer counts its cut and spills its rows, which the next writers store once."""
    done, _, _ = _several_pg_at_exit(pg_server, spill_dir, "never")
    for stats in done["stats"]:
        assert stats["writes_cut"] == 1 and stats["spilled"] == 300, done
        assert "written" not in stats and "outages" not in stats, done
    assert done["exit_s"] < 1 + 2 + 1.5, done  # the bound, the cuts' 2 s, a margin (it was about 9 s)


def test_several_postgresql_writes_waiting_at_the_exit_are_all_cut_at_its_deadline(pg_server, spill_dir):
    """Four writers' writes waiting for a lock when the exit begins, and every cancel is lost (the server takes
    the request, the write goes on waiting). The exit cut the first writer and waited 2 s for its write to end
    before cutting the next: those sessions kept waiting (on a table lock, holding the writers' advisory lock
    that every other host's writer waits for) 2 s past the deadline for nothing. Now every write is cut at the
    deadline, before any is waited for: each session's first cancel request comes within moments of the first
    (it came 2 s later), and the exit still ends within its bound and the 2 s."""
    done, pids, cancels = _several_pg_at_exit(pg_server, spill_dir, "lost")
    for stats in done["stats"]:
        assert stats["writes_cut"] == 1 and stats["spilled"] == 300, done
    first = {}
    for at, pid in cancels:
        first.setdefault(pid, at)
    assert sorted(first) == sorted(pids), (cancels, pids)
    assert max(first.values()) - min(first.values()) < 1, cancels  # (2 s and more apart before)
    assert done["exit_s"] < 1 + 2 + 1.5, done


def test_a_postgresql_server_that_takes_no_cancel_does_not_hold_up_the_next_writers_first_cut(pg_server, spill_dir):
    """Two writers closed together, as the exit closes them (:func:`~aicost.ledger.writer._finish_closes`), each
    writer thread's write waiting for the writers' advisory lock another session holds: the first writer's server
    (through an :class:`OutageProxy`) then takes no cancel request, the second's takes its requests (and loses
    them, so that the proxy keeps the time each came). The first round of cuts gave each cancel request up to
    1 s (what was left of the 2 s cut wait, 1 s at most): the second writer's first cancel went out 1 s past the
    deadline, its session (holding a table lock, or the advisory lock every other host's writer waits for) left
    waiting for it, and with four such writers the fourth's 2 s past it. Now the first round gives each 0.1 s and
    leaves the longer waits to the cuts that follow: the second writer's first cancel reaches its server within
    moments of the deadline. Both count their cut and spill their rows, which the next writers store once."""
    from aicost.ledger.writer import _finish_closes

    port = int(pg_server.split(":")[-1].split("/")[0])
    proxies = [OutageProxy(port), OutageProxy(port)]
    urls, holders, writers = [], [], []
    try:
        for proxy in proxies:
            url, holder = _locked_ledger_behind(pg_server, proxy)
            holders.append(holder)
            urls.append(url)
        names = [u.rsplit("/", 1)[1] for u in urls]
        try:
            for k, url in enumerate(urls):
                writer = LedgerWriter(url, flush_interval_s=0.05)
                writers.append(writer)
                writer.add(LedgerRow(span_id=f"{k:04x}{i:012x}", kind=CALL, time=NOW, cost=Decimal("0.01"))
                           for i in range(300))
            _lock_waiters(pg_server, names, 2)  # both writes wait for their lock
            proxies[0].silent = True
            proxies[1].cancels = cancels = []
            deadline = time.monotonic() + 0.2
            for writer in writers:
                writer._begin_close(deadline)
            _finish_closes(writers)
        finally:
            _end_lock_waiters(pg_server, names)
            for writer in writers:
                if writer._thread is not None:
                    writer._thread.join(60)
    finally:
        for holder in holders:
            holder.close()
    try:
        for writer in writers:
            stats = writer.stats()
            assert stats["writes_cut"] == 1 and stats["spilled"] == 300, stats
            assert "written" not in stats and "outages" not in stats, stats
        assert cancels, "the second writer's write was never cut"
        assert cancels[0][0] - deadline < 0.8, (deadline, cancels)  # (1 s and more before: the first cancel waited 1 s)
        for proxy in proxies:
            proxy.silent, proxy.cancels = False, None
        _several_replayed(urls, spill_dir, 300)
    finally:
        for proxy in proxies:
            proxy.close()


def test_what_the_exit_spills_is_built_and_encoded_once_and_no_further_than_the_spill_file_holds(
        tmp_path, spill_dir):
    """At exit the writer thread is stuck in a write (a database that never answers) with batches taken and
    prepared, and the rest queued. The exit's flush spills the prepared batches from the rows already built (it
    built them again), and encodes rows only while the spill file has room (it encoded the whole queue, past
    the exit's deadline, then dropped what did not fit). Each row is counted: spilled or dropped, never both."""
    url = f"sqlite:///{tmp_path / 'stuck.db'}"
    code = """
        import atexit, collections, json, threading, time
        built, encoded = collections.Counter(), []
        atexit.register(lambda: print(json.dumps({"built": built, "encoded": len(encoded), "stats": w.stats()})))
        from decimal import Decimal
        from opentelemetry.trace import INVALID_SPAN
        from aicost.hooks import CacheHit
        from aicost.ledger import LedgerRow, writer
        from aicost.ledger.store import SQLiteStore
        row_from_item = writer.row_from_item
        def counted(item):
            built[str(item[3])] += 1  # the hit's own row id, fixed when it was queued
            return row_from_item(item)
        writer.row_from_item = counted
        to_dict = LedgerRow.to_dict
        LedgerRow.to_dict = lambda row: encoded.append(1) or to_dict(row)
        never = threading.Event()
        SQLiteStore.write_prepared = lambda store, batch: never.wait()
        writer._EXIT_FLUSH_S = 1.0
        w = writer.LedgerWriter(URL, batch_size=100, max_queue=2000, spill_max_bytes=20_000)
        for i in range(1000):
            w.on_event(CacheHit(name="faq", saved_usd=Decimal("0.01"), attribution={}, run_id=None,
                                span=INVALID_SPAN, time_ns=time.time_ns()))
        while not w._taken:  # the writer thread has taken its first batch (and is stuck writing it)
            time.sleep(0.01)
    """.replace("URL", repr(url))
    done = _run(code, {"XDG_CACHE_HOME": str(spill_dir.parent)})
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    stats = seen["stats"]
    assert stats["spilled"] + stats["dropped_spill_full"] == 1000 and 0 < stats["spilled"] < 100
    assert max(seen["built"].values()) == 1  # no row built twice
    assert sum(seen["built"].values()) < 1000  # the queue past the spill file's bound was never built
    assert seen["encoded"] <= stats["spilled"] + 1  # nor encoded (one row found that it no longer fits)


def test_a_row_queued_after_the_exit_flush_is_counted_as_dropped_and_logged(tmp_path, spill_dir):
    """A row queued after the exit's flush (an exit handler that runs after it) is not written, since nothing
    writes any more; it is counted as dropped and logged, never silently lost (it stayed in the queue)."""
    url = f"sqlite:///{tmp_path / 'late.db'}"
    done = _run("""
        import atexit, json
        from datetime import datetime, timezone
        from decimal import Decimal
        def late():  # registered before the ledger's exit flush (the writer is imported below): runs after it
            w.add([LedgerRow(span_id="f" * 16, kind=CALL, time=datetime.now(timezone.utc), cost=Decimal("0.5"))])
            print(json.dumps(w.stats()), flush=True)
        atexit.register(late)
        from aicost.ledger import LedgerRow, CALL
        from aicost.ledger import writer
        w = writer.LedgerWriter(URL)
        w.add([LedgerRow(span_id="1" * 16, kind=CALL, time=datetime.now(timezone.utc), cost=Decimal("0.25"))])
        assert w.flush()  # the writer thread runs
    """.replace("URL", repr(url)), {"XDG_CACHE_HOME": str(spill_dir.parent)})
    assert done.returncode == 0, done.stderr
    stats = json.loads(done.stdout)
    assert stats["written"] == 1 and stats["dropped_closed"] == 1 and stats["queued"] == 0
    assert "arrived after the ledger was closed" in done.stderr
    assert [r.span_id for r in _rows(url)] == ["1" * 16]


def test_ctrl_c_during_the_exit_flush_still_spills(tmp_path, spill_dir):
    """Ctrl-C while the exit's flush waits for a slow database: the flush stops there, and what is not written is
    spilled all the same (the next writer replays it)."""
    url = f"sqlite:///{tmp_path / 'interrupted.db'}"
    code = _SLOW_STORE.replace("writer._EXIT_FLUSH_S = 1.0", "writer._EXIT_FLUSH_S = 60.0") + """
    import atexit, signal
    def interrupt(*_):
        raise KeyboardInterrupt
    signal.signal(signal.SIGALRM, interrupt)
    atexit.register(lambda: signal.setitimer(signal.ITIMER_REAL, 0.5))  # runs just before the exit's flush
    """
    began = time.monotonic()
    done = _run(code.replace("URL", repr(url)), {"XDG_CACHE_HOME": str(spill_dir.parent)})
    assert time.monotonic() - began < 40  # interrupted: the flush's own bound here is 60 s
    _stored_or_spilled_then_replayed(url, spill_dir, done)


def test_a_spill_file_an_earlier_aicost_was_replaying_is_adopted(tmp_path, spill_dir):
    """An earlier aicost renamed a spill file it replayed <stem>-<pid>.replay-<replayer>; left by a process that
    died, the next writer adopts it as it adopts any spill file of a process that is gone."""
    url = f"sqlite:///{tmp_path / 'old-name.db'}"
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(gone.stdout)
    writer = LedgerWriter(url)
    old = spill_dir / f"{writer._spill_stem}-{pid}.replay-{pid}"
    _write_spill(old, [LedgerRow(span_id=f"{i:016x}", kind=CALL, time=NOW, cost=Decimal("0.01")) for i in range(20)])
    assert writer.flush() and writer.stats()["replayed"] == 20 and not old.exists()
    writer.close()
    with open_store(url, create=False) as store:
        assert totals(store, *WINDOW).calls == 20


def test_a_flush_that_times_out_while_a_batch_is_being_written_says_so(tmp_path, spill_dir, monkeypatch):
    """The writer thread takes a batch off the queue when it begins to write it: an empty queue is not "written".
    A flush whose time runs out first returns False, one that waits for the write True."""
    import threading

    from aicost.ledger.store import SQLiteStore

    release, write_prepared = threading.Event(), SQLiteStore.write_prepared

    def slow(store, batch):
        release.wait(30)
        return write_prepared(store, batch)

    monkeypatch.setattr(SQLiteStore, "write_prepared", slow)
    url = f"sqlite:///{tmp_path / 'slow.db'}"
    w = LedgerWriter(url, flush_interval_s=3600)
    now = datetime.now(timezone.utc)
    w.add(LedgerRow(span_id=f"{i:016x}", kind=CALL, time=now, cost=Decimal("0.01")) for i in range(50))
    assert w.flush(0.3) is False and w.stats().get("written", 0) == 0
    release.set()
    assert w.flush(30) is True and w.stats()["written"] == 50
    w.close()


def test_a_spill_file_is_adopted_by_writers_of_its_own_ledger_only(tmp_path, spill_dir, monkeypatch):
    """Spill files are named after the ledger. A relative SQLite URL (``sqlite:///ledger.db``) names another file in
    each working directory: the rows a process spilled for one were replayed into the other (spend in the wrong
    ledger, and missing from its own). The next writer of the same ledger adopts them, however its URL spells it."""
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(gone.stdout)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    spilled = LedgerWriter("sqlite:///ledger.db")  # as the process that died, in a/, named its spill file
    spilled.close()
    _write_spill(spill_dir / f"{spilled._spill_stem}-{pid}.jsonl",
                 [LedgerRow(span_id=f"{i:016x}", kind=CALL, time=NOW, cost=Decimal("0.01")) for i in range(20)])
    monkeypatch.chdir(tmp_path / "b")
    other = LedgerWriter("sqlite:///ledger.db")  # the same words, another ledger: b/ledger.db
    assert other.flush() and "replayed" not in other.stats()
    other.close()
    assert _rows(f"sqlite:///{tmp_path / 'b' / 'ledger.db'}") == []
    same = LedgerWriter(str(tmp_path / "a" / "ledger.db"))  # a/ledger.db, spelt as a plain path
    assert same.flush() and same.stats()["replayed"] == 20
    same.close()
    assert len(_rows(f"sqlite:///{tmp_path / 'a' / 'ledger.db'}")) == 20


def test_a_spill_file_an_earlier_aicost_named_after_an_absolute_url_is_still_adopted(tmp_path, spill_dir):
    """Before spill files were named after the ledger file, their name came from the URL's words: a file left by a
    process that died, spilled for ``/abs/ledger.db`` (a plain path), is adopted by the next writer of that ledger.
    One spilled for a relative URL is not: those words named another ledger in each working directory."""
    import hashlib

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(gone.stdout)
    plain = str(tmp_path / "ledger.db")
    for words in (plain, "sqlite:///ledger.db"):
        stem = f"ledger-spill-{hashlib.sha256(words.encode()).hexdigest()[:12]}"
        _write_spill(spill_dir / f"{stem}-{pid}.jsonl",
                     [LedgerRow(span_id=f"{words == plain:x}{i:015x}", kind=CALL, time=NOW, cost=Decimal("0.01"))
                      for i in range(20)])
    writer = LedgerWriter(plain)
    assert writer.flush() and writer.stats()["replayed"] == 20
    writer.close()
    assert len(_rows(f"sqlite:///{plain}")) == 20


def _without_libpq_environment(monkeypatch):
    for variable in ("PGHOST", "PGHOSTADDR", "PGPORT", "PGUSER", "PGDATABASE", "PGOPTIONS", "PGSERVICE"):
        monkeypatch.delenv(variable, raising=False)


def test_spellings_of_one_postgres_ledger_are_one_identity_and_others_are_not(monkeypatch):
    """Spill files were named after a PostgreSQL URL's words: a default port written out, ``localhost`` for
    127.0.0.1, a password or ``sslmode`` added made another spill file, which a writer of the other spelling never
    adopted (spilled rows lost, or a replay split). The identity is the role, the host, the port and the database
    as libpq resolves them, never a password."""
    from aicost.ledger.identity import ledger_identity

    _without_libpq_environment(monkeypatch)
    one = {ledger_identity(url) for url in (
        "postgresql://u@127.0.0.1:5432/db",
        "postgresql://u@localhost/db?sslmode=disable",
        "postgres://u:s3cret@LOCALHOST./db?application_name=app&connect_timeout=3",
        "postgresql+psycopg://u@[::1]:5432/db?password=other",
        "postgresql:///db?host=localhost&user=u",
    )}
    assert one == {"postgresql://u@localhost:5432/db"}
    others = ["postgresql://u@localhost:5433/db", "postgresql://v@localhost/db", "postgresql://u@localhost/db2",
              "postgresql://u@db.internal/db", "postgresql://u@localhost/db?options=-csearch_path%3Dother"]
    assert len({ledger_identity(url) for url in others} | one) == len(others) + 1
    assert "s3cret" not in ledger_identity("postgresql://u:s3cret@localhost/db?sslpassword=s3cret")
    monkeypatch.setenv("PGPORT", "6543")  # libpq's environment is what an unspelt part means
    monkeypatch.setenv("PGUSER", "u")
    assert ledger_identity("postgresql://localhost/db") == "postgresql://u@localhost:6543/db"
    assert ledger_identity("postgresql://localhost:6543") == "postgresql://u@localhost:6543/u"


def test_a_postgres_spill_file_is_adopted_by_a_writer_that_spells_the_url_otherwise(pg_server, spill_dir, monkeypatch):
    """The rows a process that died spilled for ``postgresql://...@127.0.0.1:PORT/db`` are replayed by the next
    writer of that database, though its URL says ``localhost``, adds a password and ``sslmode``."""
    _without_libpq_environment(monkeypatch)
    url = fresh_pg_database(pg_server)
    assert "@127.0.0.1:" in url and "?" not in url
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    spilled = LedgerWriter(url)  # as the process that died named its spill file
    spilled.close()
    _write_spill(spill_dir / f"{spilled._spill_stem}-{int(gone.stdout)}.jsonl",
                 [LedgerRow(span_id=f"{i:016x}", kind=CALL, time=NOW, cost=Decimal("0.01")) for i in range(20)])
    user, rest = url[len("postgresql://"):].split("@", 1)
    respelt = f"postgres://{user.split(':')[0]}:unused@localhost:{rest.split(':', 1)[1]}?sslmode=disable"
    writer = LedgerWriter(respelt)
    assert writer.flush() and writer.stats()["replayed"] == 20
    writer.close()
    assert len(_rows(url)) == 20
