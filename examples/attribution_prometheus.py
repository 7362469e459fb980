"""Cost per feature and per customer in Prometheus, with the queries that answer each question.

Run from the checkout root (no API key, no network: the calls go to a loopback fake vendor)::

    .venv/bin/python examples/attribution_prometheus.py            # serve metrics on 127.0.0.1:9464 for 2 s
    .venv/bin/python examples/attribution_prometheus.py --serve 600 # ...long enough to point Prometheus at it

It instruments the real OpenAI SDK, exports aicost metrics with the OpenTelemetry Prometheus exporter, makes
calls for two features of a support app (``summarize`` and ``answer``) on behalf of three customers, and prints
the aicost lines of its own ``/metrics`` page plus the PromQL for each question. With a real key, drop the fake
vendor (``base_url``) and everything else stays the same.

Prometheus scrape config for the served endpoint::

    scrape_configs:
      - job_name: support-app
        static_configs: [{targets: ["127.0.0.1:9464"]}]
"""

from __future__ import annotations

import argparse
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import openai  # noqa: E402
from opentelemetry.exporter.prometheus import PrometheusMetricReader  # noqa: E402
from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from prometheus_client import start_http_server  # noqa: E402

import aicost  # noqa: E402
from aicost import metrics  # noqa: E402
from aicost.pricing import format_usd  # noqa: E402
from vendor_server import ReplayServer  # noqa: E402  (the loopback fake vendor from the test suite)

QUERIES = {
    "Spend per feature (USD, exact integer nano-dollars / 1e9)":
        "sum by (aicost_feature) (aicost_cost_nano_usd_total) / 1e9",
    "Spend per feature over the last hour (USD)":
        "sum by (aicost_feature) (increase(aicost_cost_USD_total[1h]))",
    "Spend per customer (customer is a label only because this app opted in)":
        "sum by (aicost_customer) (aicost_cost_USD_total)",
    "Cost per successful 'answer' (all attempts' spend / successes)":
        'sum(aicost_cost_USD_total{aicost_feature="answer"})'
        ' / sum(aicost_feature_runs_total{aicost_feature="answer", aicost_outcome="succeeded"})',
    "Input tokens per feature":
        'sum by (aicost_feature) (gen_ai_client_token_usage_sum{gen_ai_token_type="input"})',
}


def print_answers(page: str) -> None:
    """The same questions answered from the scraped page, so the numbers can be read without a Prometheus."""
    from collections import defaultdict
    from decimal import Decimal

    from prometheus_client.parser import text_string_to_metric_families

    by_feature: dict[str, Decimal] = defaultdict(Decimal)
    by_customer: dict[str, Decimal] = defaultdict(Decimal)
    runs: dict[tuple[str, str], int] = defaultdict(int)
    for family in text_string_to_metric_families(page):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "aicost_cost_nano_usd_total":
                usd = Decimal(int(sample.value)).scaleb(-9)
                by_feature[labels["aicost_feature"]] += usd
                by_customer[labels["aicost_customer"]] += usd
            elif sample.name == "aicost_feature_runs_total":
                runs[(labels["aicost_feature"], labels["aicost_outcome"])] += int(sample.value)
    print("# Answers, computed from the page")
    for feature_name, usd in sorted(by_feature.items()):
        print(f"spend  feature={feature_name:10s} ${format_usd(usd)}")
    for customer, usd in sorted(by_customer.items()):
        print(f"spend  customer={customer:9s} ${format_usd(usd)}")
    successes = runs[("answer", "succeeded")]
    attempts = sum(n for (f, _), n in runs.items() if f == "answer")
    print(f"answer: {attempts} runs, {successes} succeeded; cost per successful answer "
          f"${format_usd((by_feature['answer'] / successes).quantize(Decimal('1e-9')))} "
          f"(vs ${format_usd((by_feature['answer'] / attempts).quantize(Decimal('1e-9')))} per run)\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9464, help="metrics port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--serve", type=float, default=2.0, help="seconds to keep serving /metrics at the end")
    args = parser.parse_args()

    reader = PrometheusMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    httpd, _ = start_http_server(args.port, addr="127.0.0.1")
    port = httpd.server_address[1]
    aicost.instrument(tracer_provider=TracerProvider(), meter_provider=meter_provider)
    # A handful of enterprise customers: few enough to be labels. With thousands, leave this off and ask the
    # spans (aicost.customer is on every span) instead: each label value is a new series in every metric.
    metrics.configure(meter_provider, high_cardinality_labels={"customer"})

    with ReplayServer() as vendor:
        client = openai.OpenAI(api_key="not-needed", base_url=vendor.openai_base_url, max_retries=0)
        messages = [{"role": "user", "content": "Summarise this support ticket in two sentences, please."}]

        @aicost.feature("summarize", team="support")
        def summarize(customer: str) -> str:
            with aicost.attribute(customer=customer):
                reply = client.chat.completions.create(model="gpt-4o-mini", messages=messages)
            return reply.choices[0].message.content or ""

        @aicost.feature("answer", team="support")
        def answer(customer: str, attempt_ok: bool) -> None:
            with aicost.attribute(customer=customer):
                client.chat.completions.create(model="gpt-4o", messages=messages)  # draft
                client.chat.completions.create(model="gpt-4o-mini", messages=messages)  # self-check
            if not attempt_ok:
                aicost.set_outcome("rejected_by_agent")  # spent, but not a success

        for customer, tickets in {"acme": 6, "globex": 3, "initech": 1}.items():
            for i in range(tickets):
                summarize(customer)
                answer(customer, attempt_ok=(i % 3 != 2))

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        page = response.read().decode()
    print(f"# aicost series on http://127.0.0.1:{port}/metrics")
    for line in page.splitlines():
        if line.startswith(("aicost_cost_USD_total", "aicost_cost_nano_usd_total", "aicost_feature_runs_total")):
            print(line.replace('otel_scope_name="aicost",otel_scope_schema_url="",otel_scope_version="0.1.0"', "…"))
    print()
    print_answers(page)
    for question, query in QUERIES.items():
        print(f"# {question}\n{query}\n")
    print("# What the numbers mean: list-price USD from aicost's versioned catalog, one increment per billed call;")
    print("# a unit of work's own span rolls up its calls (aicost.rollup.*) and is never counted as spend.")
    time.sleep(max(0.0, args.serve))
    httpd.shutdown()
    meter_provider.shutdown()


if __name__ == "__main__":
    main()
