"""``instrument()`` imports no vendor SDK: an SDK the application imports later is patched by a post-import hook
inside that import statement, and ``uninstrument()`` removes the hook. The SDKs are imported in a fresh
interpreter (this process has imported them already), and their calls go over real HTTP to the loopback server.
The hook's own behaviour (errors, threads, re-instrumenting) is checked in-process on small modules written for
the test."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

import aicost
from aicost import _import_hooks, integrations
from aicost.vendor import Endpoint, Integration, RequestMeta, ResponseMeta

TESTS = Path(__file__).resolve().parent
SDKS = ("openai", "anthropic", "google.genai", "botocore")

_CHILD = r"""
import json, sys
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
import aicost

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
aicost.instrument(tracer_provider=provider)
aicost.instrument(tracer_provider=provider)  # idempotent: still one hook per SDK
SDKS = {sdks!r}
out = {{"imported_by_instrument": [m for m in SDKS if m in sys.modules]}}
if {uninstrument!r}:
    aicost.uninstrument()
out["meta_path_hooked"] = any(type(f).__module__ == "aicost._import_hooks" for f in sys.meta_path)

import anthropic, boto3, openai
from botocore.config import Config
from google import genai
from google.genai import types
from vendor_server import ReplayServer, Reply, anthropic_client, load_recording, openai_client

with ReplayServer() as server:
    openai_client(server).chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": "hi"}}])
    anthropic_client(server, open_telemetry=False).messages.create(
        model="claude-3-5-haiku-20241022", max_tokens=16, messages=[{{"role": "user", "content": "hi"}}])
    server.enqueue(Reply.from_recording(load_recording("gemini-generatecontent-nonstream-011")))
    gemini = genai.Client(api_key="t", http_options=types.HttpOptions(  # kept: a dropped client closes its HTTP
        base_url=server.url, retry_options=types.HttpRetryOptions(attempts=1)))
    gemini.models.generate_content(model="gemini-2.5-flash", contents="hi")
    server.enqueue(Reply.from_recording(load_recording("bedrock-converse-nonstream-001")))
    boto3.client("bedrock-runtime", region_name="us-east-1", endpoint_url=server.url, aws_access_key_id="t",
                 aws_secret_access_key="t", config=Config(retries={{"max_attempts": 1}})).converse(
        modelId="amazon.nova-micro-v1:0", messages=[{{"role": "user", "content": [{{"text": "hi"}}]}}])
out["costed"] = sorted(s.attributes["gen_ai.provider.name"] for s in exporter.get_finished_spans()
                       if "gen_ai.usage.cost" in s.attributes)
from openai.resources.chat.completions.completions import Completions
out["openai_patched"] = type(Completions.__dict__["create"]).__name__ == "FunctionWrapper"
out["loader_kept"] = type(openai.__loader__).__module__ != "aicost._import_hooks"
out["meta_path_left"] = any(type(f).__module__ == "aicost._import_hooks" for f in sys.meta_path)
print(json.dumps(out))
"""


def _child(uninstrument: bool) -> dict:
    pytest.importorskip("google.genai")
    pytest.importorskip("boto3")
    code = f"import sys; sys.path.insert(0, {str(TESTS)!r})\n" + _CHILD.format(sdks=SDKS, uninstrument=uninstrument)
    env = {**os.environ, "ANTHROPIC_OPEN_TELEMETRY": "false"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env,
                          cwd=TESTS.parent)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_instrument_imports_no_sdk_and_patches_each_when_the_app_imports_it():
    out = _child(uninstrument=False)
    assert out["imported_by_instrument"] == []
    assert out["meta_path_hooked"]
    assert out["costed"] == ["anthropic", "aws.bedrock", "gcp.gemini", "openai"]  # one costed span per call
    assert out["openai_patched"] and out["loader_kept"]
    assert not out["meta_path_left"]  # every SDK came: the finder is gone from sys.meta_path


def test_uninstrument_before_the_import_leaves_the_sdks_untouched():
    out = _child(uninstrument=True)
    assert out["imported_by_instrument"] == []
    assert not out["meta_path_hooked"]
    assert out["costed"] == []
    assert not out["openai_patched"]


# ------------------------------------------------------------------------------------------ in-process, toy SDKs
class _ToyIntegration(Integration):
    """Patches ``Client.call`` of the module named by ``sdk``; the call's result is its usage."""

    name = "toy"

    def provider(self, resource):
        return "toy"

    def request_meta(self, endpoint, resource, kwargs):
        return RequestMeta(model=kwargs.get("model"), stream=False, max_tokens=None, service_tier=None,
                           server_address=None, server_port=None)

    def read_response(self, endpoint, response, want_text):
        return ResponseMeta()

    def is_stream(self, obj):
        return False


def _toy(tmp_path: Path, name: str, body: str = "") -> type:
    """A module ``name`` on sys.path (not imported) with a ``Client`` class, and an integration class for it."""
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(body) + "\nclass Client:\n    def call(self, **kw):\n"
                                         "        return kw\n")
    return type(f"Toy_{name}", (_ToyIntegration,), {
        "sdk": name, "endpoints": (Endpoint(name, ("Client", ""), "call", f"{name}.call", "chat"),)})


@pytest.fixture
def toy_path(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    added: list[type] = []
    yield tmp_path, added
    aicost.uninstrument()
    for cls in added:
        integrations.unregister(cls)
        sys.modules.pop(cls.sdk, None)


def _patched(module) -> bool:
    return type(module.Client.__dict__["call"]).__name__ == "FunctionWrapper"


def test_a_failing_hook_is_logged_once_and_the_import_still_works(toy_path, caplog):
    tmp, added = toy_path
    broken = type("Broken", (_toy(tmp, "toy_broken_sdk"),), {"__init__": lambda self: 1 / 0, "name": "broken"})
    added.append(broken)
    integrations.register(broken)
    aicost.instrument()
    with caplog.at_level(logging.ERROR, logger="aicost"):
        import toy_broken_sdk  # noqa: F401 - the import the application makes

        aicost.uninstrument()
        aicost.instrument()  # imported now: the hook runs at once, and fails the same way
    assert toy_broken_sdk.Client().call(model="m") == {"model": "m"}
    assert not _patched(toy_broken_sdk)
    assert len([r for r in caplog.records if "could not be loaded" in r.getMessage()]) == 1


def test_a_hook_that_fails_while_patching_never_fails_the_import(toy_path, caplog):
    tmp, added = toy_path
    broken = type("BrokenTable", (_toy(tmp, "toy_table_sdk"),), {"endpoints": property(lambda self: 1 / 0)})
    added.append(broken)
    integrations.register(broken)
    aicost.instrument()
    with caplog.at_level(logging.ERROR, logger="aicost"):
        import toy_table_sdk
    assert toy_table_sdk.Client().call(model="m") == {"model": "m"}
    assert [r.getMessage() for r in caplog.records] == ["aicost: could not instrument toy_table_sdk; its calls are "
                                                       "not recorded"]


def test_an_sdk_import_that_fails_keeps_its_hook_for_the_next_attempt(toy_path):
    tmp, added = toy_path
    cls = _toy(tmp, "toy_flaky_sdk", "import os\nif os.environ.get('TOY_FAIL'): raise RuntimeError('not yet')\n")
    added.append(cls)
    integrations.register(cls)
    aicost.instrument()
    os.environ["TOY_FAIL"] = "1"
    try:
        with pytest.raises(RuntimeError, match="not yet"):
            import toy_flaky_sdk  # noqa: F401
    finally:
        del os.environ["TOY_FAIL"]
    assert "toy_flaky_sdk" in _import_hooks.waiting()
    import toy_flaky_sdk

    assert _patched(toy_flaky_sdk)


def test_register_while_instrumented_patches_an_imported_sdk_at_once_and_uninstrument_restores_it(toy_path):
    tmp, added = toy_path
    cls = _toy(tmp, "toy_early_sdk")
    added.append(cls)
    import toy_early_sdk

    original = toy_early_sdk.Client.__dict__["call"]
    aicost.instrument()
    integrations.register(cls)
    assert _patched(toy_early_sdk)
    aicost.uninstrument()
    assert toy_early_sdk.Client.__dict__["call"] is original
    aicost.instrument()
    aicost.instrument()  # idempotent: wrapped once
    assert toy_early_sdk.Client.__dict__["call"].__wrapped__ is original


def test_imports_racing_instrument_and_uninstrument_end_patched_exactly_once(toy_path):
    """Threads import eight SDKs while others instrument and uninstrument: no deadlock, and after a last
    instrument() every SDK is patched once (its wrapper wraps the original method)."""
    tmp, added = toy_path
    names = [f"toy_race_sdk_{i}" for i in range(8)]
    for name in names:
        cls = _toy(tmp, name, "import time\ntime.sleep(0.01)\n")  # a slow module: imports overlap the toggling
        added.append(cls)
        integrations.register(cls)
    errors: list[BaseException] = []

    def run(fn):
        try:
            fn()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def toggle():
        for _ in range(20):
            aicost.instrument()
            aicost.uninstrument()

    threads = [threading.Thread(target=run, args=(lambda n=n: __import__(n),)) for n in names]
    threads += [threading.Thread(target=run, args=(toggle,)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads) and not errors
    aicost.instrument()
    for name in names:
        call = sys.modules[name].Client.__dict__["call"]
        assert _patched(sys.modules[name])
        assert type(call.__wrapped__).__name__ == "function"
    aicost.uninstrument()
    assert not any(_patched(sys.modules[name]) for name in names)
    assert _import_hooks.waiting() == []
