"""Pricing hot path: what one call's cost computation costs, against genai-prices' calc_price.

Prints measured figures (microseconds per call: best and median of 7 repeats; on a shared, loaded machine the
best is the closer estimate of the code's own cost) and the ratio measured in this run:
    .venv/bin/python benchmarks/pricing.py
"""

from __future__ import annotations

import os
import statistics
import sys
import timeit
from datetime import datetime, timezone

from aicost.pricing import engine, price_call, resolve
from aicost.usage import Usage

REPEATS = 7


def per_call_us(fn, number: int) -> tuple[float, float]:
    runs = timeit.repeat(fn, number=number, repeat=REPEATS)
    return min(runs) / number * 1e6, statistics.median(runs) / number * 1e6


def main() -> int:
    simple = Usage(input_tokens=1200, output_tokens=300)
    anthropic = Usage(input_tokens=250_000, output_tokens=2_000, cache_read_tokens=150_000, cache_write_tokens=40_000,
                      cache_write_1h_tokens=10_000)
    reasoning = Usage(input_tokens=5_000, output_tokens=20_000, reasoning_tokens=18_000, cache_read_tokens=4_000)
    past = datetime(2025, 6, 1, tzinfo=timezone.utc)
    price = resolve("openai", "gpt-4o-2024-08-06")
    assert price is not None

    rows = [
        ("ModelPrice.cost (resolved once, 2 token classes)", lambda: price.cost(simple), 200_000),
        ("price_call openai gpt-4o (cached, now)", lambda: price_call("openai", "gpt-4o-2024-08-06", simple), 200_000),
        ("price_call anthropic sonnet-4.5 cache r/w + long ctx", lambda: price_call(
            "anthropic", "claude-sonnet-4-5-20250929", anthropic), 100_000),
        ("price_call gpt-5 reasoning, flex tier", lambda: price_call(
            "openai", "gpt-5-2025-08-07", reasoning, service_tier="flex"), 100_000),
        ("price_call at a past date (history)", lambda: price_call("openai", "gpt-4o", simple, at=past), 100_000),
        ("price_call unknown model", lambda: price_call("openai", "my-llama", simple), 100_000),
    ]

    def cold_resolve() -> None:
        engine._resolved.clear()
        engine._now.clear()
        resolve("aws.bedrock", "us.anthropic.claude-sonnet-4-5-20250929-v1:0")

    rows.append(("resolve, cold (name resolution, no cache)", cold_resolve, 2_000))

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"python {sys.version.split()[0]}; catalog {engine.catalog_version()}; {os.cpu_count()} cpus, load {load:.1f}")
    print(f"{'':58s} {'best':>9s} {'median':>9s}  (us/call)")
    results = {}
    for label, fn, number in rows:
        fn()
        results[label] = per_call_us(fn, number)
        print(f"{label:58s} {results[label][0]:9.2f} {results[label][1]:9.2f}")

    try:
        import genai_prices
    except ImportError:
        print("genai-prices not installed: comparison skipped")
        return 0
    gp_usage = genai_prices.Usage(input_tokens=1200, output_tokens=300)
    genai_prices.calc_price(gp_usage, "gpt-4o-2024-08-06", provider_id="openai")
    gp = per_call_us(lambda: genai_prices.calc_price(gp_usage, "gpt-4o-2024-08-06", provider_id="openai"), 2_000)
    ours = results["price_call openai gpt-4o (cached, now)"]
    print(f"{'genai_prices.calc_price openai gpt-4o (same usage)':58s} {gp[0]:9.2f} {gp[1]:9.2f}")
    print(f"ratio genai-prices / aicost price_call (best): {gp[0] / ours[0]:.0f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
