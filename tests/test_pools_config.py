"""Pools: which pool prices a call (by endpoint, not by model name), what instrument() leaves configured, and
the one validator behind configure time and ``aicost prices --check``."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal

import pytest

import aicost
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



def test_the_public_load_price_file_accepts_a_price_files_pools(replay_server, tmp_path):
    """aicost.load_price_file reads [pools.NAME] as instrument(price_file=...) does (not as an unknown section),
    and a bad pool is refused by the same reader, naming the field."""
    from aicost.pricing import PriceFileError, clear_overrides, engine

    path = _price_file(tmp_path, replay_server)
    path.write_text(path.read_text() + '\n[[model]]\nmodel = "my-ft"\ninput = "1"\noutput = "2"\n')
    bad = tmp_path / "bad.toml"
    bad.write_text('[pools.x]\ngpu_hour = "1"\nendpoints = ["h:1"]\nmodels = ["m"]\nowner = "ml"\n')
    try:
        loaded = aicost.load_price_file(path)
        assert list(loaded.sections["pools"]) == ["support-llama"]
        assert aicost.pricing.resolve("openai", "my-ft") is not None  # its prices are installed
        with pytest.raises(PriceFileError, match=r"pools\.x\.metrics_url"):
            aicost.load_price_file(bad)
        assert aicost.pools.active() is None  # read, not put to work: instrument(price_file=...) does that
    finally:
        clear_overrides()
    assert not engine.current_overrides().sections


def test_a_second_price_files_pools_merge_with_the_firsts_by_name(replay_server, tmp_path):
    from aicost.pricing import clear_overrides, engine
    from aicost.pricing.overrides import Overrides

    merged = Overrides(sections={"pools": {"a": 1, "b": 2}, "x": 5}).merged(
        Overrides(sections={"pools": {"b": 3, "c": 4}, "x": 6}))
    assert merged.sections == {"pools": {"a": 1, "b": 3, "c": 4}, "x": 6}  # tables by name; anything else replaced
    first = _price_file(tmp_path, replay_server, "first.toml")
    second = tmp_path / "second.toml"
    second.write_text(first.read_text().replace("support-llama", "batch-llama").replace(MODEL, "other-model"))
    try:
        aicost.load_price_file(first)
        aicost.load_price_file(second)
        assert sorted(engine.current_overrides().sections["pools"]) == ["batch-llama", "support-llama"]
    finally:
        clear_overrides()


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


def test_a_price_files_pools_are_read_and_checked_once(instrumented, replay_server, tmp_path, monkeypatch):
    """load_file runs the pools' reader and configure_pools takes what it read: one validation, not two."""
    from aicost.pools import config

    calls = []
    real = config.check_pools
    monkeypatch.setattr(config, "check_pools", lambda data: calls.append(data) or real(data))
    try:
        aicost.instrument(price_file=_price_file(tmp_path, replay_server))
        assert [p.name for p in aicost.pools.active().pools] == ["support-llama"]
    finally:
        aicost.pools.disable()
    assert len(calls) == 1
    with pytest.raises(aicost.errors.ConfigurationError, match="Pool objects"):
        configure_pools(({"not": "a Pool"},), background=False)


def test_pricing_reads_a_features_section_only_through_the_reader_it_is_given(tmp_path):
    """The pricing layer names no feature: a section is allowed, and what its reader returned kept, only when the
    caller gives the reader; without one it is an unknown section like any other."""
    from aicost.pricing import PriceFileError
    from aicost.pricing.overrides import load_file

    path = tmp_path / "p.toml"
    path.write_text('[pools.a]\ngpu_hour = "1"\n\n[widgets.w]\nsize = 3\n')
    with pytest.raises(PriceFileError, match="unknown section"):
        load_file(path, sections={"pools": lambda table: (table, [])})  # widgets has no reader
    loaded = load_file(path, sections={"pools": lambda table: ("read", []), "widgets": lambda table: (table, [])})
    assert loaded.sections == {"pools": "read", "widgets": {"w": {"size": 3}}}



@pytest.mark.parametrize("value", [[], "", 0, False, None, [1]])
def test_a_pools_section_that_is_empty_or_not_a_table_is_refused(tmp_path, value):
    """Present but not a table of pools: refused by the pools' reader, never skipped because it is falsy."""
    from aicost.instrumentation import PRICE_FILE_SECTIONS
    from aicost.pricing import PriceFileError
    from aicost.pricing.overrides import load_file

    path = tmp_path / "p.json"
    path.write_text(json.dumps({"version": 1, "pools": value}))
    with pytest.raises(PriceFileError, match=r"pools: must be a table of pools .*got " + type(value).__name__):
        load_file(path, sections=PRICE_FILE_SECTIONS)
    path.write_text(json.dumps({"version": 1, "pools": {}}))  # an empty table declares no pools
    assert not load_file(path, sections=PRICE_FILE_SECTIONS).sections.get("pools")

BAD_POOLS = {  # four pools: four problems in two of them, and two valid ones that overlap
    "a": {"gpu_hour": 1, "endpoints": ["vllm.internal:8000"], "models": ["m"], "owner": "ml", "output_weight": 2},
    "b": {"gpu_hour": 1, "gpus": 0, "endpoints": ["vllm.internal:8000"], "models": ["m"], "owner": "",
          "output_weight": 2},
    "c": {"monthly": 10, "gpu_hour": 1, "endpoints": ["h:1"], "models": ["m"], "owner": "ml", "key": "gpu_time"},
    "d": {"gpu_hour": 1, "endpoints": ["http://vllm.internal:8000/v1"], "models": ["m"], "owner": "ml",
          "output_weight": 2},
}
BAD_TOML = '''
[[model]]
model = "my-ft"
input = "-1"

[pools.a]
gpu_hour = 1
endpoints = ["vllm.internal:8000"]
models = ["m"]
owner = "ml"
output_weight = 2

[pools.b]
gpu_hour = 1
gpus = 0
endpoints = ["vllm.internal:8000"]
models = ["m"]
owner = ""
output_weight = 2

[pools.c]
monthly = 10
gpu_hour = 1
endpoints = ["h:1"]
models = ["m"]
owner = "ml"
key = "gpu_time"

[pools.d]
gpu_hour = 1
endpoints = ["http://vllm.internal:8000/v1"]
models = ["m"]
owner = "ml"
output_weight = 2
'''


def test_prices_check_lists_every_pool_problem_in_the_words_configure_time_uses(tmp_path):
    import io

    from aicost.cli import main
    from aicost.errors import ConfigurationError

    with pytest.raises(ConfigurationError) as raised:
        configure_pools(BAD_POOLS, background=False)
    expected = [str(p) for p in raised.value.problems]
    assert len(expected) == 5 and aicost.pools.active() is None
    assert any("pools.b.gpus" in p for p in expected) and any("pools.b.owner" in p for p in expected)
    assert any("pools.c.gpu_hour" in p for p in expected) and any("pools.c.metrics_url" in p for p in expected)
    assert any("pools.d.endpoints: overlaps pool 'a'" in p for p in expected)
    path = tmp_path / "prices.toml"
    path.write_text(BAD_TOML)
    out, err = io.StringIO(), io.StringIO()
    assert main(["prices", "--check", str(path)], out=out, err=err) == 1
    listed = err.getvalue().splitlines()
    assert listed[0] == f"invalid: {path}: 6 problems"  # the model price's and the five pools'
    for problem in expected:  # each at its line: "  FILE:LINE: pools.NAME.field: message"
        assert sum(line.endswith(f": {problem}") for line in listed) == 1, problem
    assert f"{path}:15: pools.b.gpus:" in err.getvalue() and f"{path}:18: pools.b.owner:" in err.getvalue()
    # instrument(price_file=...) refuses the same file with the same problems, and changes nothing
    with pytest.raises(ConfigurationError) as at_configure:
        aicost.instrument(price_file=path)
    assert all(problem in str(at_configure.value) for problem in expected)
    assert aicost.pools.active() is None
    good = tmp_path / "good.toml"
    good.write_text(BAD_TOML.split("[pools.b]")[0].replace('input = "-1"', 'input = "1"\noutput = "2"'))
    out = io.StringIO()
    assert main(["prices", "--check", str(good)], out=out, err=io.StringIO()) == 0
    assert "1 model price(s), 0 discount(s), 1 pool(s)" in out.getvalue()


def test_a_bad_pools_ledger_url_is_refused_at_configure_time():
    from aicost.errors import ConfigurationError

    pools = {"p": {"gpu_hour": 1, "endpoints": ["10.0.0.5:8000"], "models": ["m"], "owner": "ml", "output_weight": 2}}
    with pytest.raises(ConfigurationError, match=r"configure_pools\(ledger=\.\.\.\).*mysql://x"):
        configure_pools(pools, background=False, ledger="mysql://x")
    assert aicost.pools.active() is None


def test_metrics_url_without_prometheus_client_is_refused_at_configure_time(monkeypatch):
    import importlib.util

    from aicost.errors import ConfigurationError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "prometheus_client" else real(name, *a))
    pools = {"p": {"gpu_hour": 1, "endpoints": ["10.0.0.5:8000"], "models": ["m"], "owner": "ml",
                   "metrics_url": "http://10.0.0.5:8000/metrics"}}
    with pytest.raises(ConfigurationError, match=r"pools\.p\.metrics_url: .*aicost-otel\[prometheus\]"):
        configure_pools(pools, background=False)



@pytest.mark.parametrize("endpoint, base_url, default_port", [
    ("vllm-svc:80", "http://vllm-svc:80/v1", 80),
    ("http://vllm-svc:80/v1", "http://vllm-svc/v1", 80),
    ("https://vllm-svc:443/v1", "https://vllm-svc:443/v1", 443),
    ("vllm-svc:443", "https://vllm-svc/v1", 443),
])
def test_a_pool_declared_with_the_schemes_default_port_matches_the_sdks_calls(endpoint, base_url, default_port):
    """The SDKs' URL drops a default port (the call's server.port is None): a pool declared with it must still
    match, or its whole GPU cost is booked idle. The port is read as the core reads it (server_of)."""
    import openai

    from aicost.integrations.stainless import server_of
    from aicost.pools import PoolMeter, pool_from_mapping

    class Resource:  # an SDK resource: server_of reads resource._client
        def __init__(self, url: str) -> None:
            self._client = openai.OpenAI(api_key="x", base_url=url)

    pool = pool_from_mapping("p", {"gpu_hour": 1, "endpoints": [endpoint], "models": ["m"], "owner": "ml",
                                   "output_weight": 2})
    meter = PoolMeter([pool], clock=lambda: 0)
    assert server_of(Resource(base_url)) == ("vllm-svc", None)
    assert meter.pool_of(*server_of(Resource(base_url)), "m") is pool
    assert meter.pool_of("vllm-svc", default_port, "m") is pool  # an integration that records the default port
    assert meter.pool_of(*server_of(Resource(base_url.replace("vllm-svc", "other-svc"))), "m") is None


@pytest.mark.parametrize("settings_, field, boundaries", [
    ({"interval": 86400, "start": "2026-12-01T18:00"}, "start", "2026-12-01 00:00 and 2026-12-02 00:00 UTC"),
    ({"interval": 86400, "until": "2026-12-03T06:00"}, "until", "2026-12-03 00:00 and 2026-12-04 00:00 UTC"),
    ({"start": "2026-12-01T09:30+02:00"}, "start", "2026-12-01 07:00 and 2026-12-01 08:00 UTC"),
    ({"interval": 900, "until": "2026-12-01T10:20:30"}, "until", "2026-12-01 10:15 and 2026-12-01 10:30 UTC"),
])
def test_a_period_that_starts_or_ends_inside_an_interval_is_refused_naming_the_boundaries(settings_, field,
                                                                                          boundaries):
    """An interval is charged whole or not at all: a pool whose start or until fell inside one paid the whole
    of it (a day's interval from 18:00 to 06:00 two days later, $10/h: $720 for 36 hours' $360). Refused at
    configure time, naming the setting and the boundaries around it."""
    from aicost.errors import ConfigurationError

    base = {"gpu_hour": "10", "endpoints": ["h:1"], "models": ["m"], "owner": "ml", "output_weight": 1}
    with pytest.raises(ConfigurationError, match=rf"pools\.p\.{field}: must fall on an interval boundary") as caught:
        configure_pools({"p": {**base, **settings_}}, clock=lambda: 0)
    assert f"the nearest are {boundaries}" in str(caught.value)
    assert aicost.pools.active() is None
    # on a boundary it is accepted: a date, or a time the interval divides (07:00+02:00 is 05:00 UTC)
    for aligned in ({"interval": 86400, "start": "2026-12-01", "until": "2026-12-03"},
                    {"start": "2026-12-01T07:00+02:00", "until": "2026-12-01T19:00"},
                    {"interval": 900, "start": "2026-12-01T10:15"}):
        configure_pools({"p": {**base, **aligned}}, clock=lambda: 0, background=False)
        aicost.pools.disable()
