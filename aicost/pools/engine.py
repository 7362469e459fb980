"""What the serving engine itself measured, read from its Prometheus ``/metrics`` (vLLM's names).

vLLM exports, per served model (label ``model_name``): the counters ``vllm:prompt_tokens_total`` and
``vllm:generation_tokens_total``; the histograms ``vllm:request_prefill_time_seconds`` and
``vllm:request_decode_time_seconds`` (their ``_sum`` is the total seconds requests spent in prefill / decode);
the gauges ``vllm:num_requests_running``, ``vllm:num_requests_waiting`` and ``vllm:kv_cache_usage_perc``
(``vllm:gpu_cache_usage_perc`` before the v1 engine; a fraction, 1 = full). Counters only grow, so an interval's figures are the difference of two scrapes; a counter that
went down means the engine restarted, and the later scrape alone is the interval's figure.

The text is parsed with prometheus-client's parser (the format has escaping and histogram rules not worth
re-implementing).
"""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass
from decimal import Decimal

from ..pricing.money import RATIO  # the engine's figures are read on the meter's thread: never its own context

_COUNTERS = {
    "vllm:prompt_tokens_total": "prompt_tokens",
    "vllm:generation_tokens_total": "generation_tokens",
    "vllm:request_prefill_time_seconds_sum": "prefill_seconds",
    "vllm:request_decode_time_seconds_sum": "decode_seconds",
}
_GAUGES = {
    "vllm:num_requests_running": "running",
    "vllm:num_requests_waiting": "waiting",
    "vllm:kv_cache_usage_perc": "kv_cache_usage",
    "vllm:gpu_cache_usage_perc": "kv_cache_usage",  # vLLM v0 name
}


@dataclass(frozen=True)
class EngineSample:
    """One scrape: counters (cumulative) and gauges (now), summed over the pool's models."""

    prompt_tokens: Decimal = Decimal(0)
    generation_tokens: Decimal = Decimal(0)
    prefill_seconds: Decimal = Decimal(0)
    decode_seconds: Decimal = Decimal(0)
    running: Decimal = Decimal(0)
    kv_cache_usage: Decimal = Decimal(0)
    waiting: Decimal = Decimal(0)

    def load(self, max_concurrency: int | None = None) -> Decimal:
        """How full the engine is right now, 0 to 1: full (1) when requests are waiting, else the larger of the
        share of its request slots in use (``running / max_concurrency``, vLLM's ``--max-num-seqs``, when
        declared) and its KV-cache usage: the engine can take no more work when either runs out."""
        if self.waiting > 0:
            return Decimal(1)
        slots = RATIO.divide(self.running, max_concurrency) if max_concurrency else Decimal(0)
        return min(Decimal(1), max(slots, self.kv_cache_usage))

    def since(self, earlier: "EngineSample") -> "EngineSample":
        """The counters' growth from ``earlier`` to this scrape (gauges as of this scrape). There is no growth
        without an earlier scrape: the meter then has no counter data (``PoolMeter._counters``), never this
        scrape's lifetime totals as one interval's."""
        restarted = any(getattr(self, f) < getattr(earlier, f) for f in set(_COUNTERS.values()))
        if restarted:
            return self
        return EngineSample(*(RATIO.subtract(getattr(self, f), getattr(earlier, f)) for f in
                              ("prompt_tokens", "generation_tokens", "prefill_seconds", "decode_seconds")),
                            running=self.running, kv_cache_usage=self.kv_cache_usage, waiting=self.waiting)

    @property
    def seconds_per_prompt_token(self) -> Decimal | None:
        if self.prompt_tokens and self.prefill_seconds:
            return RATIO.divide(self.prefill_seconds, self.prompt_tokens)
        return None

    @property
    def seconds_per_generation_token(self) -> Decimal | None:
        if self.generation_tokens and self.decode_seconds:
            return RATIO.divide(self.decode_seconds, self.generation_tokens)
        return None


def parse(text: str, models: tuple[str, ...] | None = None) -> EngineSample:
    """The sample in a /metrics page; only series whose ``model_name`` is one of ``models`` (all when None or
    when a series has no model label)."""
    from prometheus_client.parser import text_string_to_metric_families

    values: dict[str, Decimal] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            field = _COUNTERS.get(sample.name) or _GAUGES.get(sample.name)
            if field is None:
                continue
            model = sample.labels.get("model_name")
            if models is not None and model is not None and model not in models:
                continue
            value = Decimal(repr(float(sample.value)))
            if field == "kv_cache_usage":  # a fraction per engine: the busiest one
                values[field] = max(values.get(field, Decimal(0)), value)
            else:
                values[field] = RATIO.add(values.get(field, Decimal(0)), value)
    return EngineSample(**values)


def scrape(url: str, models: tuple[str, ...] | None = None, *, timeout: float = 5.0) -> EngineSample:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (the operator's own engine)
        return parse(response.read().decode("utf-8"), models)
