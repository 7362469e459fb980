"""`opentelemetry-instrument python app.py` picks aicost up through its entry point, with no code change."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

import pytest

import aicost
from otlp_receiver import OtlpReceiver
from vendor_server import ReplayServer, openai_chat_reply

ROOT = Path(__file__).resolve().parent.parent


def test_entry_point_is_registered_and_instruments():
    eps = [e for e in entry_points(group="opentelemetry_instrumentor") if e.name == "aicost"]
    assert len(eps) == 1
    instrumentor = eps[0].load()()
    assert tuple(instrumentor.instrumentation_dependencies()) == ()
    instrumentor.instrument()
    try:
        assert aicost.is_instrumented()
    finally:
        instrumentor.uninstrument()
    assert not aicost.is_instrumented()


def test_the_instrumentor_and_aicost_share_one_state(tracer_provider, span_exporter, openai_client):
    """The instrumentor and ``aicost.instrument()`` / ``uninstrument()`` may be mixed: each undoes the other, and
    instrument() after either uninstrument() records calls again (once each), with all of instrument()'s arguments."""
    from aicost.instrumentation import config
    from aicost.otel_instrumentor import AicostInstrumentor

    def costed_spans_per_call() -> int:
        span_exporter.clear()
        openai_client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        return len([s for s in span_exporter.get_finished_spans() if "gen_ai.usage.cost" in (s.attributes or {})])

    instrumentor = AicostInstrumentor()
    try:
        instrumentor.instrument(tracer_provider=tracer_provider)
        aicost.uninstrument()
        assert not instrumentor.is_instrumented_by_opentelemetry and costed_spans_per_call() == 0
        instrumentor.instrument(tracer_provider=tracer_provider, capture_content=True, stream_usage="never")
        assert aicost.is_instrumented() and costed_spans_per_call() == 1
        assert (config.capture_content, config.stream_usage) == (True, "never")
        instrumentor.instrument(tracer_provider=tracer_provider)  # already instrumented: nothing patched twice
        aicost.instrument(tracer_provider=tracer_provider)
        assert costed_spans_per_call() == 1

        instrumentor.uninstrument()
        assert not aicost.is_instrumented() and costed_spans_per_call() == 0
        aicost.instrument(tracer_provider=tracer_provider)
        assert instrumentor.is_instrumented_by_opentelemetry
        instrumentor.uninstrument()
        assert not aicost.is_instrumented() and costed_spans_per_call() == 0
    finally:
        aicost.uninstrument()


def test_the_instrumentor_takes_its_arguments_when_aicost_is_instrumented_already(tracer_provider):
    """``aicost.instrument()`` is idempotent and each call starts from its own arguments; the instrumentor, one state
    with it, too. OpenTelemetry's ``BaseInstrumentor.instrument()`` returns at once while its flag is set (with a
    warning only), so after ``opentelemetry-instrument`` (or ``aicost.instrument()``) had run, the instrumentor's
    ``instrument(capture_content=True)`` was dropped, and a bad argument was not refused."""
    from aicost.errors import ConfigurationError
    from aicost.instrumentation import config
    from aicost.otel_instrumentor import AicostInstrumentor

    aicost.instrument(tracer_provider=tracer_provider)
    try:
        AicostInstrumentor().instrument(tracer_provider=tracer_provider, capture_content=True, stream_usage="never")
        assert (config.capture_content, config.stream_usage) == (True, "never")
        with pytest.raises(ConfigurationError, match="capture_content"):
            AicostInstrumentor().instrument(capture_content="false")
    finally:
        aicost.uninstrument()


@pytest.mark.parametrize("instrumented_before", [False, True])
@pytest.mark.parametrize("keyword, meant", [("ledgr", "ledger"), ("price_fle", "price_file"),
                                            ("capture_contents", "capture_content"),
                                            ("tracer_provdier", "tracer_provider")])
def test_the_instrumentor_refuses_a_misspelt_aicost_argument(tracer_provider, keyword, meant, instrumented_before):
    """``AicostInstrumentor().instrument(ledgr=...)`` was accepted and the argument dropped: no ledger, no word said.
    A near miss of one of ``aicost.instrument()``'s arguments is refused, naming it, the argument meant and every
    one accepted, before anything is changed, whether or not aicost is instrumented already."""
    from aicost.errors import ConfigurationError
    from aicost.otel_instrumentor import AicostInstrumentor

    if instrumented_before:
        aicost.instrument(tracer_provider=tracer_provider)
    try:
        with pytest.raises(ConfigurationError) as refused:
            AicostInstrumentor().instrument(tracer_provider=tracer_provider, **{keyword: "x"})
        assert aicost.is_instrumented() is instrumented_before
    finally:
        aicost.uninstrument()
    message = str(refused.value)
    assert f"unknown argument {keyword!r}, did you mean {meant!r}?" in message
    assert ("aicost.instrument()'s capture_content, ledger, meter_provider, price_file, stream_usage, tracer_provider; "
            "OpenTelemetry's event_logger_provider, logger_provider, raise_exception_on_conflict, skip_dep_check"
            in message), message


@pytest.mark.parametrize("instrumented_before", [False, True])
def test_opentelemetry_keywords_and_a_distros_own_still_work(tracer_provider, caplog, instrumented_before):
    """What OpenTelemetry passes is not aicost's and is not refused: the keywords ``BaseInstrumentor.instrument()``
    reads (the auto-instrumentation's loader passes ``skip_dep_check=True``, through the distro, as done here) and
    the log providers instrumentors take. A keyword a distro adds for every instrumentor, neither aicost's nor a near
    miss of one, is left to it (refused, it would stop the auto-instrumentation of every instrumentor after aicost),
    and said once."""
    import logging

    from opentelemetry.instrumentation.distro import DefaultDistro

    from aicost.instrumentation import config

    (entry_point,) = [e for e in entry_points(group="opentelemetry_instrumentor") if e.name == "aicost"]
    distros_own = f"sampling_hint_{instrumented_before}".lower()  # a name of its own: each is said once a process
    if instrumented_before:
        aicost.instrument(tracer_provider=tracer_provider)
    caplog.set_level(logging.WARNING, logger="aicost")
    try:
        DefaultDistro().load_instrumentor(entry_point, skip_dep_check=True)
        assert aicost.is_instrumented()
        entry_point.load()().instrument(skip_dep_check=True, raise_exception_on_conflict=True, logger_provider=None,
                                        event_logger_provider=None, tracer_provider=tracer_provider,
                                        stream_usage="never", **{distros_own: "x"})
        assert aicost.is_instrumented() and config.stream_usage == "never"
    finally:
        aicost.uninstrument()
    warned = [r.getMessage() for r in caplog.records if "ignored" in r.getMessage()]
    assert warned == [f"aicost: AicostInstrumentor().instrument ignored {distros_own}: neither aicost.instrument()'s "
                      "arguments nor OpenTelemetry's own"]


def test_opentelemetry_instrument_emits_costed_spans(tmp_path):
    launcher = Path(sys.executable).with_name("opentelemetry-instrument")
    if not launcher.exists():
        launcher = shutil.which("opentelemetry-instrument")
        if launcher is None:
            pytest.skip("opentelemetry-instrument is not installed (pip install 'aicost-otel[otel-auto]')")
    app = tmp_path / "app.py"
    app.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from vendor_server import ReplayServer, openai_chat_reply
        import openai
        with ReplayServer() as srv:
            srv.enqueue(openai_chat_reply("gpt-4o-mini-2024-07-18", prompt_tokens=1000, completion_tokens=100))
            client = openai.OpenAI(api_key="t", base_url=srv.openai_base_url, max_retries=0)
            client.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": "hi"}}])
    """))
    env = {**os.environ, "OTEL_TRACES_EXPORTER": "console", "OTEL_METRICS_EXPORTER": "none",
           "OTEL_LOGS_EXPORTER": "none", "OTEL_SERVICE_NAME": "autoinstrument-test"}
    result = subprocess.run([str(launcher), sys.executable, str(app)], capture_output=True, text=True, env=env,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    # The console exporter prints one JSON object per span.
    decoder, text, spans, i = json.JSONDecoder(), result.stdout, [], 0
    while (start := text.find("{", i)) != -1:
        span, i = decoder.raw_decode(text, start)
        spans.append(span)
    costed = [sp for sp in spans if "gen_ai.usage.cost" in sp.get("attributes", {})]
    assert len(costed) == 1, result.stdout[-2000:]
    # gpt-4o-mini: 1000 input tokens x $0.15/MTok + 100 output tokens x $0.60/MTok
    assert costed[0]["attributes"]["aicost.cost.total_usd"] == "0.00021"


def _env_without_otel(**extra: str) -> dict[str, str]:
    """The test process's environment less any OTEL_* setting, plus ``extra``: what the README tells a user to set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(extra)
    return env


def _launcher() -> str:
    launcher = Path(sys.executable).with_name("opentelemetry-instrument")
    if launcher.exists():
        return str(launcher)
    found = shutil.which("opentelemetry-instrument")
    if found is None:
        pytest.skip("opentelemetry-instrument is not installed (pip install 'aicost-otel[otel-auto]')")
    return found


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_zero_code_setup_from_the_readme_exports_a_costed_span_over_otlp(tmp_path, protocol):
    """README: `pip install "aicost-otel[otel-auto]"`, OTEL_SERVICE_NAME and OTEL_EXPORTER_OTLP_ENDPOINT, then
    `opentelemetry-instrument python app.py`. With the distro's default exporter (OTLP/gRPC) that failed with
    "Requested component 'otlp_proto_grpc' not found" until the extra installed the OTLP exporters."""
    app = tmp_path / "app.py"
    app.write_text(textwrap.dedent("""
        import os
        import openai
        client = openai.OpenAI(api_key="t", base_url=os.environ["APP_VENDOR_URL"], max_retries=0)
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    """))
    with OtlpReceiver() as collector, ReplayServer() as vendor:
        vendor.enqueue(openai_chat_reply("gpt-4o-mini-2024-07-18", prompt_tokens=1000, completion_tokens=100))
        settings = {"OTEL_SERVICE_NAME": "my-app", "APP_VENDOR_URL": vendor.openai_base_url}
        if protocol == "grpc":
            settings["OTEL_EXPORTER_OTLP_ENDPOINT"] = collector.grpc_endpoint
        else:
            settings["OTEL_EXPORTER_OTLP_ENDPOINT"] = collector.http_endpoint
            settings["OTEL_EXPORTER_OTLP_PROTOCOL"] = protocol
        result = subprocess.run([_launcher(), sys.executable, str(app)], capture_output=True, text=True,
                                env=_env_without_otel(**settings), timeout=120)
        assert result.returncode == 0, result.stderr[-2000:]
        assert "not found" not in result.stderr and "Failed to auto initialize" not in result.stderr, result.stderr
        costed = collector.costed_spans()
    assert len(costed) == 1, (collector.spans, result.stderr[-2000:])
    assert costed[0]["attributes"]["aicost.cost.total_usd"] == "0.00021"


def test_readme_application_snippet_exports_a_costed_attributed_span(tmp_path):
    """The README's "Use it in your application" code, run as written, against a loopback vendor and collector;
    its imports come from the extras its install line names."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Use it in your application"):]
    install = section[section.index("pip install"):section.index("\n", section.index("pip install"))]
    assert "otlp" in install, install  # the snippet's exporter comes from the `otlp` extra
    code = section[section.index("```python\n") + len("```python\n"):]
    code = code[:code.index("```")]
    app = tmp_path / "app.py"
    app.write_text(code)
    with OtlpReceiver() as collector, ReplayServer() as vendor:
        vendor.enqueue(openai_chat_reply("gpt-4o-mini-2024-07-18", prompt_tokens=1000, completion_tokens=100))
        env = _env_without_otel(OTEL_EXPORTER_OTLP_ENDPOINT=collector.http_endpoint, OPENAI_API_KEY="t",
                                OPENAI_BASE_URL=vendor.openai_base_url)
        result = subprocess.run([sys.executable, str(app)], capture_output=True, text=True, env=env, timeout=120)
        assert result.returncode == 0, result.stderr[-2000:]
        costed = collector.costed_spans()
    assert len(costed) == 1, (collector.spans, result.stderr[-2000:])
    attrs = costed[0]["attributes"]
    assert attrs["aicost.cost.total_usd"] == "0.00021"
    assert (attrs["aicost.team"], attrs["aicost.feature"], attrs["aicost.customer"]) == ("search", "answer", "acme")
