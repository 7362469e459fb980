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
