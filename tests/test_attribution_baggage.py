"""Attribution across services: two processes over HTTP on loopback, W3C baggage through OTel propagators.

The upstream (this test process) opens an attribution scope and calls the downstream service
(``attribution_downstream_app.py``, its own Python process) with headers written by the global OpenTelemetry
propagator. The downstream makes an instrumented OpenAI call to its own loopback fake vendor. Its LLM span must
be charged to the upstream team and feature, sit in the upstream trace, and never carry what the upstream kept
private (user, customer) or another concurrent request's attribution.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from opentelemetry import trace

from aicost import semconv
from aicost.attribution import attribute, configure_propagation, inject_headers

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def downstream():
    """A downstream service that trusts this upstream (a service of its own) for team, feature, customer, tags."""
    yield from _downstream("--trust", "team,feature,customer,tags")


@pytest.fixture(scope="module")
def default_downstream():
    """A downstream service with the default trust: only ``feature`` is taken from baggage."""
    yield from _downstream()


def _downstream(*args: str):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, str(HERE / "attribution_downstream_app.py"), *args],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    ready: list[str] = []
    reader = threading.Thread(target=lambda: ready.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout=60)
    if not ready or not ready[0].startswith("READY "):
        proc.kill()
        raise RuntimeError(f"downstream did not start: {ready!r} {proc.stderr.read()[-2000:]}")
    port = int(ready[0].split()[1])
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def ask(base: str, headers: dict[str, str], question: str = "what is baggage") -> dict:
    request = urllib.request.Request(f"{base}/answer", data=json.dumps({"question": question}).encode(),
                                     headers={"content-type": "application/json", **headers}, method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@pytest.fixture(autouse=True)
def _default_propagation():
    configure_propagation()
    yield
    configure_propagation()


def test_downstream_llm_call_is_charged_to_the_upstream_team_and_feature(downstream, tracer_provider):
    tracer = tracer_provider.get_tracer("upstream-test")
    with tracer.start_as_current_span("upstream request") as upstream_span:
        with attribute(team="search", feature="answer", user="u-42", customer="acme"):
            reply = ask(downstream, inject_headers())
    a = reply["attributes"]
    assert a[semconv.AICOST_TEAM] == "search"
    assert a[semconv.AICOST_FEATURE] == "answer"
    # user and customer ids do not leave the upstream process unless it opts in
    assert semconv.AICOST_USER not in a and semconv.AICOST_CUSTOMER not in a
    assert a[semconv.GEN_AI_PROVIDER_NAME] == "openai" and a[semconv.GEN_AI_USAGE_COST] > 0
    # the downstream call is part of the upstream trace
    assert reply["trace_id"] == format(upstream_span.get_span_context().trace_id, "032x")
    assert reply["parent_span_id"] == format(upstream_span.get_span_context().span_id, "016x")


def test_opted_in_fields_ride_along(downstream):
    configure_propagation(["team", "feature", "customer", "tags"])
    with attribute(team="billing", feature="invoice", customer="globex", region="eu"):
        reply = ask(downstream, inject_headers())
    a = reply["attributes"]
    assert (a[semconv.AICOST_TEAM], a[semconv.AICOST_FEATURE], a[semconv.AICOST_CUSTOMER]) == (
        "billing", "invoice", "globex")
    assert a["aicost.tag.region"] == "eu"


def test_no_leak_between_concurrent_requests_of_the_downstream_server(downstream):
    n = 24
    replies: list[dict | None] = [None] * n
    barrier = threading.Barrier(n, timeout=30)

    def client(i: int) -> None:
        if i % 4 == 3:
            headers: dict[str, str] = {}  # a request with no attribution at all
        else:
            with attribute(team=f"team-{i}", feature=f"feature-{i % 3}"):
                headers = inject_headers()
        barrier.wait()
        replies[i] = ask(downstream, headers)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    for t in threads:
        t.join(timeout=max(0.1, deadline - time.monotonic()))
    for i, reply in enumerate(replies):
        assert reply is not None, f"request {i} did not complete"
        a = reply["attributes"]
        if i % 4 == 3:
            assert semconv.AICOST_TEAM not in a and semconv.AICOST_FEATURE not in a
        else:
            assert a[semconv.AICOST_TEAM] == f"team-{i}" and a[semconv.AICOST_FEATURE] == f"feature-{i % 3}"


def test_headers_without_an_active_scope_carry_no_attribution(downstream):
    assert trace.get_current_span().get_span_context().is_valid is False
    reply = ask(downstream, inject_headers())
    assert not any(k.startswith("aicost.team") or k.startswith("aicost.feature") for k in reply["attributes"])


def test_a_downstream_with_default_trust_takes_only_the_feature_from_baggage(default_downstream):
    # Anyone can write baggage: by default team, user, customer and tags from upstream are not believed.
    configure_propagation(["team", "feature", "user", "customer", "tags"])
    with attribute(team="search", feature="answer", user="u-42", customer="victim", region="eu"):
        reply = ask(default_downstream, inject_headers())
    a = reply["attributes"]
    assert a[semconv.AICOST_FEATURE] == "answer"
    assert not any(k in a for k in (semconv.AICOST_TEAM, semconv.AICOST_USER, semconv.AICOST_CUSTOMER,
                                    "aicost.tag.region"))
