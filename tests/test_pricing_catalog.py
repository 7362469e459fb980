"""Published prices pinned for a broad sample, and every model found in real recorded traffic resolves."""

from __future__ import annotations

from decimal import Decimal

import pytest

from aicost.pricing import catalog_version, price_call, resolve
from aicost.usage import Usage
from pricing_helpers import _fresh_pricing_state, per_m  # noqa: F401

# (provider as gen_ai.provider.name, model as reported, {rate: USD per 1M tokens}) from the vendors' price pages.
PUBLISHED = [
    ("openai", "gpt-4o-2024-08-06", {"input": "2.5", "cache_read": "1.25", "output": "10"}),
    ("openai", "gpt-4o-2024-05-13", {"input": "5", "output": "15"}),
    ("openai", "gpt-4o-mini-2024-07-18", {"input": "0.15", "cache_read": "0.075", "output": "0.6"}),
    ("openai", "gpt-4.1-2025-04-14", {"input": "2", "cache_read": "0.5", "output": "8"}),
    ("openai", "gpt-4.1-mini", {"input": "0.4", "cache_read": "0.1", "output": "1.6"}),
    ("openai", "gpt-4.1-nano-2025-04-14", {"input": "0.1", "cache_read": "0.025", "output": "0.4"}),
    ("openai", "gpt-5-2025-08-07", {"input": "1.25", "cache_read": "0.125", "output": "10"}),
    ("openai", "gpt-5-mini-2025-08-07", {"input": "0.25", "cache_read": "0.025", "output": "2"}),
    ("openai", "gpt-5-nano-2025-08-07", {"input": "0.05", "cache_read": "0.005", "output": "0.4"}),
    ("openai", "gpt-5.4-2026-03-05", {"input": "2.5", "cache_read": "0.25", "output": "15"}),
    ("openai", "o1", {"input": "15", "cache_read": "7.5", "output": "60"}),
    ("openai", "o3-mini", {"input": "1.1", "cache_read": "0.55", "output": "4.4"}),
    ("openai", "o4-mini", {"input": "1.1", "cache_read": "0.275", "output": "4.4"}),
    ("openai", "gpt-4-turbo", {"input": "10", "output": "30"}),
    ("openai", "gpt-4-0613", {"input": "30", "output": "60"}),
    ("openai", "gpt-4-1106-vision-preview", {"input": "10", "output": "30"}),
    ("openai", "gpt-3.5-turbo-0125", {"input": "0.5", "output": "1.5"}),
    ("openai", "gpt-3.5-turbo-0613", {"input": "1.5", "output": "2"}),
    ("openai", "gpt-3.5-turbo-instruct", {"input": "1.5", "output": "2"}),
    ("openai", "davinci-002", {"input": "2", "output": "2"}),
    ("openai", "davinci:2023-07-21-v2", {"input": "2", "output": "2"}),
    ("azure.ai.openai", "gpt-35-turbo-instruct", {"input": "1.5", "output": "2"}),
    ("openai", "text-embedding-3-small", {"input": "0.02"}),
    ("openai", "text-embedding-3-large", {"input": "0.13"}),
    ("openai", "text-embedding-ada-002-v2", {"input": "0.1"}),
    ("openai", "gpt-4o-realtime-preview", {"input": "5", "output": "20", "input_audio": "40", "output_audio": "80"}),
    ("openai", "gpt-4o-audio-preview", {"input": "2.5", "output": "10", "input_audio": "40", "output_audio": "80"}),
    ("openai", "tts-1", {"input_characters": "15"}),
    ("openai", "tts-1-hd", {"input_characters": "30"}),
    ("openai", "gpt-4o-mini-tts-2025-03-20", {"input": "0.6", "output": "12"}),
    ("openai", "gpt-image-1", {"input": "5", "cache_read": "1.25", "input_image": "10", "cache_read_image": "2.5"}),
    ("openai", "ft:gpt-4o-mini-2024-07-18:acme::abc123", {"input": "0.3", "output": "1.2"}),
    ("anthropic", "claude-3-haiku-20240307",
     {"input": "0.25", "cache_write": "0.3", "cache_read": "0.03", "output": "1.25"}),
    ("anthropic", "claude-3-opus-20240229",
     {"input": "15", "cache_write": "18.75", "cache_read": "1.5", "output": "75"}),
    ("anthropic", "claude-3-5-haiku-20241022", {"input": "0.8", "cache_write": "1", "cache_read": "0.08", "output": "4"}),
    ("anthropic", "claude-3-5-sonnet-20240620",
     {"input": "3", "cache_write": "3.75", "cache_read": "0.3", "output": "15"}),
    ("anthropic", "claude-3-7-sonnet-20250219",
     {"input": "3", "cache_write": "3.75", "cache_write_1h": "6", "cache_read": "0.3", "output": "15"}),
    ("anthropic", "claude-sonnet-4-5-20250929",
     {"input": "3", "cache_write": "3.75", "cache_write_1h": "6", "cache_read": "0.3", "output": "15",
      "web_search": "10"}),
    ("anthropic", "claude-haiku-4-5", {"input": "1", "cache_write": "1.25", "cache_write_1h": "2", "cache_read": "0.1",
                                       "output": "5"}),
    ("anthropic", "claude-opus-4-1-20250805", {"input": "15", "output": "75"}),
    ("anthropic", "claude-opus-4-5", {"input": "5", "cache_read": "0.5", "output": "25"}),
    ("anthropic", "claude-2.1", {"input": "8", "output": "24"}),
    ("anthropic", "claude-instant-1.2", {"input": "0.8", "output": "2.4"}),
    ("gcp.gemini", "gemini-2.5-pro", {"input": "1.25", "output": "10"}),
    ("gcp.gemini", "gemini-2.5-flash", {"input": "0.3", "output": "2.5"}),
    ("gcp.gemini", "gemini-2.0-flash", {"input": "0.1", "output": "0.4"}),
    ("gcp.vertex_ai", "gemini-1.5-pro-002", {"input": "1.25", "output": "5"}),
    ("gcp.vertex_ai", "claude-3-5-sonnet@20240620", {"input": "3", "output": "15"}),
    ("mistral_ai", "mistral-large-latest", {"input": "2", "output": "6"}),
    ("deepseek", "deepseek-reasoner", {"input": "0.28", "cache_read": "0.028", "output": "0.42"}),
    ("x_ai", "grok-3", {"input": "3", "output": "15"}),
    ("x_ai", "grok-3-mini", {"input": "0.3", "output": "0.5"}),
    ("groq", "llama-3.3-70b-versatile", {"input": "0.59", "output": "0.79"}),
    ("groq", "llama-3.1-8b-instant", {"input": "0.05", "output": "0.08"}),
    ("cohere", "command-r-plus", {"input": "2.5", "output": "10"}),
    ("cohere", "command-r", {"input": "0.15", "output": "0.6"}),
    ("aws.bedrock", "anthropic.claude-3-5-sonnet-20240620-v1:0", {"input": "3", "output": "15"}),
    ("aws.bedrock", "amazon.nova-pro-v1:0", {"input": "0.8", "output": "3.2"}),
    ("aws.bedrock", "amazon.nova-micro-v1:0", {"input": "0.035", "output": "0.14"}),
    ("azure.ai.openai", "gpt-35-turbo", {"input": "0.5", "output": "1.5"}),
    ("azure.ai.openai", "gpt-4o-2024-08-06", {"input": "2.5", "output": "10"}),
]


@pytest.mark.parametrize("provider,model,rates", PUBLISHED, ids=[f"{p}:{m}" for p, m, _ in PUBLISHED])
def test_published_rates(provider, model, rates):
    price = resolve(provider, model)
    assert price is not None, f"{provider} {model} did not resolve"
    for name, usd in rates.items():
        assert price.rates.get(name) == Decimal(usd), (name, price.rates)


# Every (vendor, model in response) in /work/shared/recordings (real recorded API traffic).
RECORDED = [
    ("openai", m)
    for m in (
        "gpt-3.5-turbo-0125 gpt-3.5-turbo-0613 gpt-35-turbo gpt-4 gpt-4-0613 gpt-4-1106-vision-preview "
        "gpt-4.1-2025-04-14 gpt-4.1-nano-2025-04-14 gpt-4o-2024-05-13 gpt-4o-2024-08-06 gpt-4o-mini "
        "gpt-4o-mini-2024-07-18 gpt-5-2025-08-07 gpt-5-mini-2025-08-07 gpt-5-nano-2025-08-07 gpt-5.4-2026-03-05 "
        "davinci-002 gpt-3.5-turbo-instruct text-embedding-3-small text-embedding-3-large text-embedding-ada-002 "
        "text-embedding-ada-002-v2"
    ).split()
] + [
    ("anthropic", m)
    for m in (
        "claude-2.1 claude-instant-1.2 claude-3-haiku-20240307 claude-3-opus-20240229 claude-3-5-haiku-20241022 "
        "claude-3-5-haiku-latest claude-3-5-sonnet-20240620 claude-3-7-sonnet-20250219 claude-sonnet-4-5-20250929 "
        "claude-sonnet-4-6"
    ).split()
] + [("azure.ai.openai", "gpt-35-turbo"), ("azure.ai.openai", "gpt-5-nano-2025-08-07"),
      ("openai", "davinci:2023-07-21-v2"), ("openai", "gpt-4-vision-preview"), ("azure.ai.openai", "gpt-35-turbo-0125"),
      ("azure.ai.openai", "gpt-35-turbo-instruct")]


@pytest.mark.parametrize("provider,model", RECORDED)
def test_every_recorded_model_is_priced(provider, model):
    # An embedding model has no output rate: a call to it has no output (output would make its cost unknown).
    cost = price_call(provider, model, Usage(input_tokens=100, output_tokens=0 if "embedding" in model else 10))
    assert cost.known and cost.total is not None and cost.total > 0
    assert cost.source == catalog_version()


# Recorded calls, usage exactly as the vendor reported it, cost worked out by hand from the price page.
def test_recorded_anthropic_cache_write_call():
    # anthropic-messages-nonstream-005: claude-3-7-sonnet, input 21, cache_creation 1733, output 561.
    usage = Usage(input_tokens=21 + 1733, cache_write_tokens=1733, output_tokens=561)
    cost = price_call("anthropic", "claude-3-7-sonnet-20250219", usage)
    assert cost.parts == {"input": per_m(21, "3"), "cache_write": per_m(1733, "3.75"), "output": per_m(561, "15")}
    assert cost.total == Decimal("0.01497675")


def test_recorded_anthropic_cache_read_call():
    # anthropic-messages-nonstream-006: the same prompt read back from the cache.
    usage = Usage(input_tokens=21 + 1733, cache_read_tokens=1733, output_tokens=568)
    cost = price_call("anthropic", "claude-3-7-sonnet-20250219", usage)
    assert cost.total == per_m(21, "3") + per_m(1733, "0.3") + per_m(568, "15")


def test_recorded_openai_cached_call():
    # openai-chat-nonstream-014: gpt-4o-mini, prompt 1370 of which cached 1280, completion 155.
    usage = Usage(input_tokens=1370, cache_read_tokens=1280, output_tokens=155)
    cost = price_call("openai", "gpt-4o-mini-2024-07-18", usage)
    assert cost.total == Decimal("0.0002025")
    assert cost.parts["cache_read"] == per_m(1280, "0.075")


def test_recorded_azure_reasoning_call():
    # openai-chat-nonstream-038: Azure gpt-5-nano, prompt 11, completion 203 of which reasoning 192.
    usage = Usage(input_tokens=11, output_tokens=203, reasoning_tokens=192)
    cost = price_call("azure.ai.openai", "gpt-5-nano-2025-08-07", usage)
    assert cost.total == Decimal("0.00008175")
    assert cost.parts["reasoning"] == per_m(192, "0.4")
    assert cost.parts["output"] == per_m(11, "0.4")


def test_catalog_version_names_its_source():
    assert catalog_version().startswith("genai-prices-")
    assert "+aicost." in catalog_version()


def test_output_limits_for_budget_worst_case():
    price = resolve("anthropic", "claude-sonnet-4-5-20250929")
    assert price.max_output_tokens == 64000 and price.context_window == 200000
    assert resolve("openai", "gpt-4o").max_output_tokens == 16384


def test_bundled_catalog_is_reproducible_from_genai_prices():
    """The JSON in the wheel is exactly what build_catalog makes from the installed genai-prices data."""
    genai_prices = pytest.importorskip("genai_prices")  # in the test extra (pricing-data)
    from aicost.pricing import build_catalog

    catalog, _ = build_catalog.build()
    if catalog["catalog_version"] != f"genai-prices-{genai_prices.__version__}":
        pytest.skip("different genai-prices version installed")
    assert build_catalog.render(catalog) == build_catalog.DATA_FILE.read_text(encoding="utf-8")


def test_importing_pricing_does_no_network_and_loads_lazily():
    import subprocess
    import sys

    code = (
        "import socket\n"
        "def refuse(*a, **k): raise AssertionError('network used')\n"
        "socket.socket.connect = refuse\n"
        "socket.create_connection = refuse\n"
        "import aicost.pricing as p, aicost.pricing.catalog as c\n"
        "assert c.bundled.cache_info().currsize == 0, 'catalog loaded at import'\n"
        "from aicost.usage import Usage\n"
        "assert p.price_call('openai', 'gpt-4o', Usage(input_tokens=1)).known\n"
        "import sys; assert 'genai_prices' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_opt_in_catalog_file_replaces_prices_until_reset(tmp_path):
    from aicost.pricing import use_bundled_catalog, use_catalog_file

    custom = {
        "schema": 1,
        "catalog_version": "acme-2027-01",
        "providers": [{"id": "openai", "models": [
            {"id": "gpt-4o", "match": {"starts_with": "gpt-4o"}, "prices": [{"rates": {"input": "2", "output": "8"}}]},
        ]}],
    }
    path = tmp_path / "catalog.json"
    path.write_text(__import__("json").dumps(custom), encoding="utf-8")
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    assert use_catalog_file(path).startswith("acme-2027-01+aicost.")
    cost = price_call("openai", "gpt-4o-2024-08-06", usage)
    assert cost.total == Decimal(10) and cost.source.startswith("acme-2027-01")
    use_bundled_catalog()
    assert price_call("openai", "gpt-4o-2024-08-06", usage).total == Decimal("12.5")


def test_bad_catalog_file_is_refused_and_changes_nothing(tmp_path):
    from aicost.pricing import use_catalog_file

    path = tmp_path / "catalog.json"
    path.write_text('{"schema": 2}', encoding="utf-8")
    with pytest.raises(ValueError, match="not an aicost price catalog"):
        use_catalog_file(path)
    assert catalog_version().startswith("genai-prices-")


def test_refresh_from_installed_genai_prices():
    pytest.importorskip("genai_prices")
    from aicost.pricing import refresh_catalog_from_genai_prices

    version = refresh_catalog_from_genai_prices()
    assert "refreshed" in version and catalog_version() == version
    assert price_call("openai", "gpt-4o", Usage(input_tokens=1_000_000)).total == Decimal("2.5")


def _recordings():
    import json
    from pathlib import Path

    root = Path(__file__).parent / "fixtures" / "recordings"
    # Google and Bedrock recordings include models billed otherwise (a SageMaker endpoint) or not in the catalog:
    # tests/test_replay_google.py and test_replay_bedrock.py say which must be priced, and at what.
    for path in sorted([*root.glob("openai/*.json"), *root.glob("anthropic/*.json")]):
        rec = json.loads(path.read_text(encoding="utf-8"))
        model = rec["derived"].get("model_in_response")
        if 200 <= rec["response"]["status"] < 300 and model:
            azure = ".openai.azure.com" in (rec["request"].get("host") or "")
            provider = "azure.ai.openai" if azure else rec["vendor"]
            yield pytest.param(provider, model, id=rec["id"])


@pytest.mark.parametrize("provider,model", list(_recordings()))
def test_every_model_answering_in_the_recorded_corpus_is_priced(provider, model):
    """Data-driven twin of the list above: a recording added later with a new model fails here first."""
    assert resolve(provider, model) is not None, f"{provider} {model}"


@pytest.mark.parametrize("broken", [
    {"providers": [{"id": "x", "models": [{"id": "m", "match": {"regex": "("}, "prices": [{"rates": {}}]}]}]},
    {"providers": [{"id": "x", "models": [{"id": "m", "prices": [{"rates": {"input": "abc"}}]}]}]},
    {"providers": [{"id": "x", "models": [{"id": "m"}]}]},
])
def test_malformed_catalog_is_refused(tmp_path, broken):
    import json

    from aicost.pricing import use_catalog_file

    path = tmp_path / "c.json"
    path.write_text(json.dumps({"schema": 1, "catalog_version": "x", **broken}), encoding="utf-8")
    with pytest.raises(ValueError, match="malformed catalog"):
        use_catalog_file(path)
    assert catalog_version().startswith("genai-prices-")


def test_the_2024_10_01_audio_snapshots_are_priced_at_their_own_audio_rates_not_the_later_cut():
    """gpt-4o-realtime-preview and gpt-4o-audio-preview launched at $100 / $200 per million audio tokens in and out
    ($20 cached audio, realtime); the 2024-12-17 snapshots cut that to $40 / $80 ($2.50). A call naming the
    2024-10-01 snapshot was priced at the later, lower rates."""
    audio = Usage(input_tokens=1_000_000, input_audio_tokens=1_000_000, output_tokens=1_000_000,
                  output_audio_tokens=1_000_000)
    assert price_call("openai", "gpt-4o-realtime-preview-2024-10-01", audio).total == Decimal("300")
    assert price_call("openai", "gpt-4o-audio-preview-2024-10-01", audio).total == Decimal("300")
    cached = Usage(input_tokens=1_000_000, input_audio_tokens=0, cache_read_tokens=1_000_000,
                   cache_read_audio_tokens=1_000_000)
    assert price_call("openai", "gpt-4o-realtime-preview-2024-10-01", cached).total == Decimal("20")
    assert price_call("openai", "gpt-4o-realtime-preview-2024-12-17", audio).total == Decimal("120")  # the cut
