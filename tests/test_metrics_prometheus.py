"""A real metrics backend: Prometheus scrapes an app exporting aicost metrics; PromQL must agree with the spans.

The app is this test process: aicost instrumented with the OpenTelemetry Prometheus exporter, served on a free
127.0.0.1 port. It makes real SDK calls (OpenAI and Anthropic, plain and streamed) to the loopback vendor under
two teams. A ``prometheus`` server (Debian package) started by ``tests/servers.py`` scrapes it every second,
and ``sum by (aicost_team) (aicost_cost_nano_usd_total)`` read back through the HTTP API must equal, exactly,
the sum of the spans' exact ``aicost.cost.total_usd`` per team (``aicost_cost_USD_total``: exactly per series). Skipped with the reason when the binary is missing
(a failure in CI, where AICOST_REQUIRE_SERVERS=1).
"""

from __future__ import annotations

import calendar
import json
import time
import urllib.parse
import urllib.request
from collections import defaultdict
from decimal import Decimal

import pytest

pytest.importorskip("opentelemetry.exporter.prometheus", reason="the prometheus extra is not installed")

from opentelemetry.exporter.prometheus import PrometheusMetricReader  # noqa: E402
from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from prometheus_client import CollectorRegistry, start_http_server  # noqa: E402

import aicost  # noqa: E402
from aicost import semconv  # noqa: E402
from aicost.attribution import attribute, feature  # noqa: E402

from servers import free_port, prometheus_server  # noqa: E402

MSG = [{"role": "user", "content": "count my tokens please"}]
COST_METRIC = "aicost_cost_USD_total"  # aicost.cost, unit USD, counter, as the exporter names it
NANO_METRIC = "aicost_cost_nano_usd_total"  # aicost.cost.nano_usd: integer nano-dollars


@pytest.fixture
def prometheus_app(tracer_provider, span_exporter):
    registry = CollectorRegistry()
    reader = PrometheusMetricReader(registry=registry)
    meter_provider = MeterProvider(metric_readers=[reader])
    port = free_port()
    httpd, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    aicost.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        aicost.uninstrument()
        httpd.shutdown()
        httpd.server_close()
        meter_provider.shutdown()


def promql(base: str, query: str) -> list[dict]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(url, timeout=5) as response:
        body = json.loads(response.read())
    assert body["status"] == "success", body
    return body["data"]["result"]


def scraped_after(base: str, target: str, moment: float, timeout: float = 30.0) -> None:
    """Wait until Prometheus has scraped ``target`` successfully after ``moment`` (unix seconds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{base}/api/v1/targets", timeout=5) as response:
            targets = json.loads(response.read())["data"]["activeTargets"]
        for t in targets:
            if t["scrapeUrl"].startswith(f"http://{target}/") and t["health"] == "up" and t["lastScrape"]:
                last = t["lastScrape"]  # RFC 3339 with nanoseconds
                stamp = calendar.timegm(time.strptime(last[:19], "%Y-%m-%dT%H:%M:%S"))  # UTC, whole seconds
                if stamp > moment + 1:
                    return
        time.sleep(0.25)
    raise AssertionError(f"Prometheus did not scrape {target} after the calls within {timeout}s")


def test_promql_sum_by_team_equals_the_spans_total_exactly(prometheus_app, openai_client, anthropic_client,
                                                           span_exporter):
    with prometheus_server([prometheus_app], scrape_interval="1s") as prom:
        with attribute(team="search"):
            with feature("answer"):
                for _ in range(7):
                    openai_client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
                anthropic_client.messages.create(model="claude-3-5-haiku-20241022", max_tokens=32, messages=MSG)
            with feature("rerank", customer="acme"):
                for _ in range(3):
                    openai_client.chat.completions.create(model="gpt-4o", messages=MSG)
        with attribute(team="billing", feature="invoice"):
            for _ in range(5):
                stream = openai_client.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True,
                                                               stream_options={"include_usage": True})
                for _ in stream:
                    pass
            with anthropic_client.messages.stream(model="claude-3-5-haiku-20241022", max_tokens=32,
                                                  messages=MSG) as s:
                s.until_done()
        calls_done = time.time()

        per_team: dict[str, Decimal] = defaultdict(Decimal)
        tokens: dict[str, int] = defaultdict(int)
        cost_spans = [s for s in span_exporter.get_finished_spans() if semconv.AICOST_COST_TOTAL in s.attributes]
        assert len(cost_spans) == 17
        for s in cost_spans:
            team = s.attributes[semconv.AICOST_TEAM]
            per_team[team] += Decimal(s.attributes[semconv.AICOST_COST_TOTAL])
            tokens[team] += s.attributes[semconv.GEN_AI_USAGE_INPUT_TOKENS] + s.attributes[
                semconv.GEN_AI_USAGE_OUTPUT_TOKENS]
        assert set(per_team) == {"search", "billing"} and all(v > 0 for v in per_team.values())

        scraped_after(prom, prometheus_app, calls_done)
        # Integer nano-dollars: Prometheus adds the series exactly, so the team totals match to the last digit.
        result = promql(prom, f"sum by (aicost_team) ({NANO_METRIC})")
        from_prometheus = {r["metric"]["aicost_team"]: Decimal(r["value"][1]).scaleb(-9) for r in result}
        assert from_prometheus == dict(per_team)

        # The USD counter: every series is the exact running total rounded once to a double, so each series
        # reads back exactly; a sum over several series is Prometheus' float addition (see aicost/metrics.py).
        series = promql(prom, COST_METRIC)
        per_series: dict[tuple, Decimal] = defaultdict(Decimal)
        for s in cost_spans:
            a = s.attributes
            per_series[(a[semconv.AICOST_TEAM], a[semconv.AICOST_FEATURE], a[semconv.GEN_AI_REQUEST_MODEL])] += (
                Decimal(a[semconv.AICOST_COST_TOTAL]))
        assert {(r["metric"]["aicost_team"], r["metric"]["aicost_feature"], r["metric"]["gen_ai_request_model"]):
                Decimal(r["value"][1]) for r in series} == dict(per_series)
        usd_sum = promql(prom, f"sum by (aicost_team) ({COST_METRIC})")
        for r in usd_sum:
            assert abs(Decimal(r["value"][1]) - per_team[r["metric"]["aicost_team"]]) < Decimal("1e-15")

        # The same money, cut by feature, adds up to the team totals (one query per question).
        by_feature = promql(prom, f'sum by (aicost_feature) ({NANO_METRIC}{{aicost_team="search"}})')
        features = {r["metric"]["aicost_feature"]: Decimal(r["value"][1]).scaleb(-9) for r in by_feature}
        assert set(features) == {"answer", "rerank"}
        assert sum(features.values()) == per_team["search"]

        # Token histograms agree too, and customer ids are not labels by default.
        token_sums = promql(prom, "sum by (aicost_team) (gen_ai_client_token_usage_sum)")
        assert {r["metric"]["aicost_team"]: int(float(r["value"][1])) for r in token_sums} == dict(tokens)
        assert promql(prom, f'{COST_METRIC}{{aicost_customer!=""}}') == []

        # The histograms carry the GenAI conventions' server.port (from the call's span); cost series do not.
        ports = promql(prom, "count by (server_port) (gen_ai_client_operation_duration_seconds_count)")
        assert [r["metric"].get("server_port") for r in ports] == [str(cost_spans[0].attributes[semconv.SERVER_PORT])]

        # Units of work are counted by outcome, for cost per successful run.
        runs = promql(prom, 'sum by (aicost_feature, aicost_outcome) (aicost_feature_runs_total)')
        assert {(r["metric"]["aicost_feature"], r["metric"]["aicost_outcome"]): r["value"][1] for r in runs} == {
            ("answer", "succeeded"): "1", ("rerank", "succeeded"): "1"}
