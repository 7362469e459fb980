"""A fake vLLM engine for pool tests: an OpenAI-compatible model server (the ReplayServer) beside a Prometheus
``/metrics`` page that uses vLLM's real metric names and label set, with counters the test advances."""

from __future__ import annotations

import threading
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

METRICS_TEMPLATE = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{{engine="0",model_name="{model}"}} {running}
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{{engine="0",model_name="{model}"}} {waiting}
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{{engine="0",model_name="{model}"}} {kv}
# HELP vllm:prompt_tokens_total Number of prefill tokens processed.
# TYPE vllm:prompt_tokens_total counter
vllm:prompt_tokens_total{{engine="0",model_name="{model}"}} {prompt}
# HELP vllm:generation_tokens_total Number of generation tokens processed.
# TYPE vllm:generation_tokens_total counter
vllm:generation_tokens_total{{engine="0",model_name="{model}"}} {generation}
# HELP vllm:request_prefill_time_seconds Histogram of time spent in PREFILL phase for request.
# TYPE vllm:request_prefill_time_seconds histogram
vllm:request_prefill_time_seconds_bucket{{engine="0",le="0.3",model_name="{model}"}} {requests}
vllm:request_prefill_time_seconds_bucket{{engine="0",le="+Inf",model_name="{model}"}} {requests}
vllm:request_prefill_time_seconds_count{{engine="0",model_name="{model}"}} {requests}
vllm:request_prefill_time_seconds_sum{{engine="0",model_name="{model}"}} {prefill}
# HELP vllm:request_decode_time_seconds Histogram of time spent in DECODE phase for request.
# TYPE vllm:request_decode_time_seconds histogram
vllm:request_decode_time_seconds_bucket{{engine="0",le="+Inf",model_name="{model}"}} {requests}
vllm:request_decode_time_seconds_count{{engine="0",model_name="{model}"}} {requests}
vllm:request_decode_time_seconds_sum{{engine="0",model_name="{model}"}} {decode}
# HELP vllm:prompt_tokens_total Number of prefill tokens processed.
# TYPE vllm:prompt_tokens_total counter
vllm:prompt_tokens_total{{engine="0",model_name="other-model"}} 999999.0
"""


class FakeVllmMetrics:
    """Counters as vLLM keeps them; ``served(...)`` adds a request the way the engine would count it."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.prompt = self.generation = self.requests = 0
        self.prefill = self.decode = Decimal(0)
        self.running = self.waiting = 0  # gauges: requests in the batch / queued, now
        self.kv = 0.0  # gauge: KV-cache usage, 0 to 1
        self.scrapes = 0
        self._httpd: ThreadingHTTPServer | None = None

    def served(self, prompt: int, generation: int, *, prefill_per_token: str, decode_per_token: str) -> None:
        self.prompt += prompt
        self.generation += generation
        self.requests += 1
        self.prefill += Decimal(prefill_per_token) * prompt
        self.decode += Decimal(decode_per_token) * generation

    def text(self) -> str:
        return METRICS_TEMPLATE.format(model=self.model, running=float(self.running), waiting=float(self.waiting),
                                       kv=float(self.kv), prompt=float(self.prompt),
                                       generation=float(self.generation), requests=float(self.requests),
                                       prefill=self.prefill, decode=self.decode)

    def __enter__(self) -> "FakeVllmMetrics":
        metrics = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                if self.path != "/metrics":
                    self.send_error(404)
                    return
                metrics.scrapes += 1
                body = metrics.text().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        assert self._httpd is not None
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/metrics"

    def __exit__(self, *exc: object) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()


class SimClock:
    """A fixed, injectable clock (epoch seconds) the test moves by hand."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
