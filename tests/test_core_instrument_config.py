"""``instrument()`` checks everything before it configures anything: a price file that contradicts prices loaded
earlier raises before the spend ledger, its listener or the file's pools are switched on. ``uninstrument()``
restores everything, also what aicost put on SDK clients."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import aicost
from aicost import hooks
from aicost.pricing.overrides import PriceFileError
from aicost.pricing.engine import replace_overrides

_PRICE = '''version = 1
[[model]]
model = "my-model"
input = "1"
output = "2"
'''
_POOL = '''
[pools.support-llama]
gpu_hour = "2.50"
gpus = 2
endpoints = ["vllm.internal:8000"]
models = ["acme/llama-3.1-8b-support-ft"]
owner = "ml-platform"
output_weight = 4
'''


def test_a_price_file_contradicting_loaded_prices_configures_nothing(tmp_path: Path, tracer_provider):
    mine = tmp_path / "prices_a.toml"
    mine.write_text(_PRICE)
    theirs = tmp_path / "prices_b.toml"
    theirs.write_text(_PRICE + _POOL)  # the same model at overlapping dates: a contradiction
    db = tmp_path / "ledger.db"
    aicost.uninstrument()
    loaded = aicost.load_price_file(mine)  # the application's own prices
    listeners = hooks.listeners()
    try:
        with pytest.raises(PriceFileError, match="contradicts"):
            aicost.instrument(tracer_provider=tracer_provider, price_file=theirs, ledger=f"sqlite:///{db}")
        assert not aicost.is_instrumented()
        assert not db.exists()
        writer = sys.modules.get("aicost.ledger.writer")
        assert writer is None or writer.active() is None
        pools = sys.modules.get("aicost.pools")
        assert pools is None or pools.active() is None
        assert hooks.listeners() == listeners
    finally:
        aicost.uninstrument()
        replace_overrides(loaded, None)


def test_uninstrument_gives_anthropic_clients_their_own_tracer_back(tracer_provider, replay_server):
    """aicost captures the SDK's own call span through a stand-in tracer on each Anthropic client that made a call;
    after ``uninstrument()`` the client traces as it did before aicost."""
    from vendor_server import anthropic_client, anthropic_message_reply

    client = anthropic_client(replay_server)
    own = client._tracer  # the SDK's tracer (from the global provider the fixture installed)
    aicost.instrument(tracer_provider=tracer_provider)
    try:
        replay_server.enqueue(anthropic_message_reply())
        client.messages.create(model="claude-3-5-haiku-20241022", max_tokens=5,
                               messages=[{"role": "user", "content": "hi"}])
        assert client._tracer is not own  # aicost's stand-in while instrumented
    finally:
        aicost.uninstrument()
    assert client._tracer is own
    client.close()


def test_uninstrument_lets_go_of_the_providers_instrument_was_given():
    """After ``uninstrument()`` nothing of aicost's goes to the providers ``instrument()`` was given: a unit of work
    (and a cache lookup) traces and counts through the global providers, as before ``instrument()``, and content
    capture is off again."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from aicost import telemetry

    exporter, reader = InMemorySpanExporter(), InMemoryMetricReader()
    mine = TracerProvider()
    mine.add_span_processor(SimpleSpanProcessor(exporter))
    meters = MeterProvider(metric_readers=[reader])
    aicost.instrument(tracer_provider=mine, meter_provider=meters, capture_content=True)
    with aicost.feature("while-instrumented"):
        pass
    aicost.uninstrument()
    with aicost.feature("after-uninstrument"):
        pass
    assert [s.name for s in exporter.get_finished_spans()] == ["aicost.feature while-instrumented"]
    data = reader.get_metrics_data()
    runs = [dict(p.attributes)["aicost.feature"] for rm in data.resource_metrics for sm in rm.scope_metrics
            for m in sm.metrics if m.name == "aicost.feature.runs" for p in m.data.data_points]
    assert runs == ["while-instrumented"]
    assert telemetry.state.capture_content is False
    meters.shutdown()
    mine.shutdown()
