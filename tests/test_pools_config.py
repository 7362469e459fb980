"""Pools: which pool prices a call (by endpoint, not by model name), what instrument() leaves configured, and
the one validator behind configure time and ``aicost prices --check``."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest

import aicost
from aicost import pricing
from aicost.pools import configure_pools
from tests.pool_helpers import SimClock
from tests.vendor_server import ReplayServer, openai_chat_reply, openai_client

MODEL = "acme/llama-3.1-8b-support-ft"
T0 = datetime(2026, 12, 1, tzinfo=timezone.utc).timestamp()


def _host_port(server: ReplayServer) -> str:
    return server.url.split("//", 1)[1]


def _call(client, server: ReplayServer, prompt: int, completion: int):
    server.enqueue(openai_chat_reply(model=MODEL, prompt_tokens=prompt, completion_tokens=completion))
    client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])


def test_two_pools_serving_one_model_name_each_price_at_their_own_provisional_rate(instrumented, replay_server):
    clock = SimClock(T0)
    with ReplayServer() as other:
        a, b = openai_client(replay_server), openai_client(other)
        try:
            base = {"models": [MODEL], "owner": "ml", "output_weight": 1}
            meter = configure_pools({
                "cheap": {**base, "gpu_hour": "1", "endpoints": [_host_port(replay_server)]},
                "dear": {**base, "gpu_hour": "9", "endpoints": [_host_port(other)]},
            }, clock=clock)
            _call(a, replay_server, 1000, 0)
            _call(b, other, 1000, 0)
            clock.now = T0 + 3600
            meter.close_due()
            # each pool's whole hour over its 1,000 units: $1 and $9 per 1,000 tokens
            assert meter.provisional_rate("cheap") == Decimal("0.001")
            assert meter.provisional_rate("dear") == Decimal("0.009")
            instrumented.clear()
            _call(a, replay_server, 500, 0)
            _call(b, other, 500, 0)
            costs = {s.attributes["aicost.pool.name"]: Decimal(s.attributes["aicost.cost.total_usd"])
                     for s in instrumented.aicost_spans()}
            assert costs == {"cheap": Decimal("0.5"), "dear": Decimal("4.5")}
        finally:
            a.close()
            b.close()
            aicost.pools.disable()


def _price_file(tmp_path, server: ReplayServer, name: str = "prices.toml"):
    path = tmp_path / name
    path.write_text(f'''
[pools.support-llama]
gpu_hour = "2.50"
endpoints = ["{_host_port(server)}"]
models = ["{MODEL}"]
owner = "ml-platform"
output_weight = 4
''')
    return path


def test_instrument_without_the_price_file_drops_the_files_pools(instrumented, replay_server, tmp_path):
    path = _price_file(tmp_path, replay_server)
    try:
        aicost.instrument(price_file=path)
        meter = aicost.pools.active()
        assert [p.name for p in meter.pools] == ["support-llama"]
        aicost.instrument(price_file=path)  # idempotent: the same meter, its open interval's calls kept
        assert aicost.pools.active() is meter
        aicost.instrument()  # starts from its own arguments: no price file, so no pools from one
        assert aicost.pools.active() is None
        # pools declared in code are not the price file's: a later instrument() leaves them alone
        declared = configure_pools({"code": {"gpu_hour": 1, "endpoints": ["10.0.0.9:8000"], "models": ["m"],
                                             "owner": "ml", "output_weight": 2}}, background=False)
        aicost.instrument()
        assert aicost.pools.active() is declared
    finally:
        aicost.pools.disable()
