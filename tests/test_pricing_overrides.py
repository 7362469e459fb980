"""User price files and the Python override API: custom, fine-tuned, self-hosted, committed, discounts."""

from __future__ import annotations

import io
import json
import re
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from aicost import cli
from aicost.pricing import (
    PriceFileError,
    add_discount,
    check_price_file,
    clear_overrides,
    load_price_file,
    price_call,
    resolve,
    set_price,
)
from aicost.usage import Usage
from pricing_helpers import _fresh_pricing_state, per_m  # noqa: F401

UTC = timezone.utc
USAGE = Usage(input_tokens=1_000_000, output_tokens=1_000_000)

GOOD_TOML = """\
version = 1

[[model]]
model = "ft:gpt-4o-mini-2024-07-18:acme::*"
provider = "openai"
input = "0.30"
output = "1.20"
cache_read = "0.15"

[[model]]
model = "llama-3.1-70b"
gpu_hour = "2.40"
gpus = 2
tokens_per_second = 1800
input_tokens_per_second = 12000

[[commitment]]
provider = "anthropic"
model = "claude-sonnet-4-5*"
input = "2.40"
output = "12"
from = 2026-01-01
until = 2026-07-01

[[discount]]
provider = "openai"
model = "gpt-4o*"
percent = "15"

[[discount]]
provider = "openai"
percent = 5
"""


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_toml_price_file_end_to_end(tmp_path):
    load_price_file(write(tmp_path, "prices.toml", GOOD_TOML))

    fine_tuned = price_call("openai", "ft:gpt-4o-mini-2024-07-18:acme::x1y2", USAGE)
    assert fine_tuned.total == Decimal("1.50") and fine_tuned.source == "override"

    # Self-hosted: 2 GPUs x $2.40/h = $0.001333.../s; at 1,800 output tok/s that is $0.740740740741 per M.
    hosted = price_call("openai", "llama-3.1-70b", Usage(input_tokens=0, output_tokens=1_000_000))
    assert hosted.known and hosted.total == Decimal("0.740740740741")
    prefill = price_call("openai", "llama-3.1-70b", Usage(input_tokens=1_000_000, output_tokens=0))
    assert prefill.total == Decimal("0.111111111111")

    # Committed-use rate applies inside its dates; the catalog price before and after.
    usage = Usage(input_tokens=100_000, output_tokens=100_000)
    inside = price_call("anthropic", "claude-sonnet-4-5-20250929", usage, at=datetime(2026, 3, 1, tzinfo=UTC))
    outside = price_call("anthropic", "claude-sonnet-4-5-20250929", usage, at=datetime(2026, 8, 1, tzinfo=UTC))
    assert inside.total == Decimal("1.44") and inside.source == "override"
    assert outside.total == Decimal("1.8") and outside.source != "override"

    # Most specific discount wins: 15 % on gpt-4o*, 5 % on the rest of OpenAI, none elsewhere.
    assert price_call("openai", "gpt-4o-2024-08-06", USAGE).total == Decimal("12.5") * Decimal("0.85")
    assert price_call("openai", "gpt-4.1", USAGE).total == Decimal(10) * Decimal("0.95")
    assert price_call("anthropic", "claude-3-5-haiku-20241022", USAGE).total == Decimal("4.8")
    # Azure bills OpenAI models but the OpenAI discount is negotiated with OpenAI: not applied.
    assert price_call("azure.ai.openai", "gpt-4o-2024-08-06", USAGE).total == Decimal("12.5")


def test_json_price_file(tmp_path):
    data = {"model": [{"model": "my-vllm-model", "input": "0.10", "output": "0.20"}],
            "discount": [{"provider": "anthropic", "percent": 10, "from": "2026-01-01"}]}
    load_price_file(write(tmp_path, "prices.json", json.dumps(data, indent=2)))
    assert price_call("openai", "my-vllm-model", USAGE).total == Decimal("0.30")
    haiku = price_call("anthropic", "claude-3-5-haiku-20241022", USAGE, at=datetime(2026, 2, 1, tzinfo=UTC))
    assert haiku.total == Decimal("4.8") * Decimal("0.9")
    before = price_call("anthropic", "claude-3-5-haiku-20241022", USAGE, at=datetime(2025, 12, 31, tzinfo=UTC))
    assert before.total == Decimal("4.8")


def test_override_beats_catalog_and_clear_restores_it():
    set_price("gpt-4o", provider="openai", input="1", output="2")
    assert price_call("openai", "gpt-4o", USAGE).total == Decimal(3)
    clear_overrides()
    assert price_call("openai", "gpt-4o", USAGE).total == Decimal("12.5")


def test_override_with_long_context_band_and_tier():
    set_price("house-model", input="1", output="2", long_context=[{"above": 100_000, "input": "2", "output": "4"}])
    set_price("house-model", service_tier="batch", input="0.5", output="1")
    assert price_call("openai", "house-model", Usage(input_tokens=100_000)).total == Decimal("0.1")
    assert price_call("openai", "house-model", Usage(input_tokens=100_001)).total == per_m(100_001, "2")
    assert price_call("openai", "house-model", USAGE, service_tier="batch").total == Decimal("1.5")


def test_a_standard_tier_rule_prices_a_call_that_reports_no_tier():
    """A call whose vendor reports no tier (Gemini, Bedrock, a request without service_tier) is billed at the
    standard tier: a rule for that tier prices it, as it prices one whose response says 'default' or 'standard'."""
    set_price("gpt-4o", provider="openai", service_tier="standard", input="1", output="2")
    for tier in (None, "default", "standard"):
        cost = price_call("openai", "gpt-4o", USAGE, service_tier=tier)
        assert (cost.total, cost.source) == (Decimal("3"), "override"), tier
    assert price_call("openai", "gpt-4o", USAGE, service_tier="batch").source != "override"


def test_discount_api():
    add_discount("12.5", provider="anthropic")
    assert price_call("anthropic", "claude-3-5-haiku-latest", USAGE).total == Decimal("4.2")
    with pytest.raises(ValueError, match="percent"):
        add_discount(150, provider="openai")


def test_a_discount_is_exact_under_a_low_host_precision():
    """The discount factor is computed at call time, on the host's thread: never in the host's decimal context."""
    import decimal

    add_discount("12.345", provider="openai")
    with decimal.localcontext() as ctx:
        ctx.prec = 3  # the host's own business: 100 - 12.345 must not become 87.7
        total = price_call("openai", "gpt-4o", Usage(input_tokens=1_000_000)).total
    assert total == Decimal("2.5") * (Decimal(100) - Decimal("12.345")) / 100 == Decimal("2.191375")


# --- validation: rejected at load, naming line and field -------------------------------------------------


@pytest.mark.parametrize("body,line,field", [
    ('[[model]]\nmodel = "x"\ninput = "1"\nouput = "2"\n', 4, "ouput"),
    ('[[model]]\nmodel = "x"\ninput = "-1"\n', 3, "input"),
    ('[[model]]\nmodel = "x"\ninput = "__import__(\'os\').system(\'true\')"\n', 3, "input"),
    ('[[model]]\nmodel = "x"\ninput = "1"\nfrom = 2026-05-01\nuntil = 2026-01-01\n', 5, "until"),
    ('[[model]]\nmodel = "x"\ninput = "1"\ngpu_hour = "2"\ntokens_per_second = 10\n', 3, "input"),
    ('[[model]]\nmodel = "x"\ngpu_hour = "2"\n', 1, "tokens_per_second"),
    ('[[model]]\nmodel = "x"\n', 1, "input"),
    ('[[model]]\ninput = "1"\n', 1, "model"),
    ('[[model]]\nmodel = "x*y"\ninput = "1"\n', 2, "model"),
    ('[[discount]]\nprovider = "openai"\npercent = 101\n', 3, "percent"),
    ('[[commitment]]\nmodel = "gpt-4o"\ninput = "1"\n', 1, "from"),
    ('[[model]]\nmodel = "x"\ninput = "1"\n\n[[model]]\nmodel = "x"\ninput = "2"\n', 5, "model"),
    ('[[discount]]\nprovider = "openai"\npercent = 5\n\n[[discount]]\nprovider = "openai"\npercent = 6\n', 5, "percent"),
    ('[[modle]]\nmodel = "x"\n', 1, "modle"),
    ('[[model]]\nmodel = "x"\ninput = true\n', 3, "input"),
])
def test_invalid_toml_rejected_with_line_and_field(tmp_path, body, line, field):
    path = write(tmp_path, "bad.toml", body)
    with pytest.raises(PriceFileError) as caught:
        load_price_file(path)
    assert caught.value.line == line, str(caught.value)
    assert caught.value.field == field, str(caught.value)
    assert str(path) in str(caught.value)
    # Nothing from a rejected file is installed.
    assert resolve("openai", "x") is None


def test_toml_syntax_error_names_line(tmp_path):
    path = write(tmp_path, "bad.toml", '[[model]]\nmodel = "x"\ninput = \n')
    with pytest.raises(PriceFileError) as caught:
        check_price_file(path)
    assert caught.value.line == 3


def test_invalid_json_rejected_with_line_and_field(tmp_path):
    text = '{\n  "model": [\n    {"model": "a", "input": "1"},\n    {\n      "model": "b",\n      "outptu": "2"\n    }\n  ]\n}\n'
    with pytest.raises(PriceFileError) as caught:
        load_price_file(write(tmp_path, "bad.json", text))
    assert (caught.value.line, caught.value.field) == (6, "outptu")
    with pytest.raises(PriceFileError) as caught:
        load_price_file(write(tmp_path, "broken.json", '{\n "model": [\n'))
    assert caught.value.line == 3


def test_unsupported_file_type_and_missing_file(tmp_path):
    with pytest.raises(PriceFileError, match=".toml or .json"):
        load_price_file(write(tmp_path, "prices.yaml", "model: x\n"))
    with pytest.raises(PriceFileError, match="cannot read"):
        load_price_file(tmp_path / "absent.toml")


def test_file_contradicting_already_loaded_overrides_is_rejected(tmp_path):
    set_price("x", input="1")
    with pytest.raises(PriceFileError, match="overlap"):
        load_price_file(write(tmp_path, "p.toml", '[[model]]\nmodel = "x"\ninput = "2"\n'))
    assert price_call("openai", "x", Usage(input_tokens=1_000_000)).total == Decimal(1)  # no output rate: no output


def test_a_misspelt_provider_is_refused_and_a_provider_of_your_own_is_not(tmp_path):
    """A price for 'opanai' never applies: every OpenAI call would go on at the catalog's price, silently. A
    provider of one's own (a gateway, a self-hosted server, an integration's vendor) is legitimate: only a name that
    is not a known provider's but is a near-miss of one is refused, naming the argument and the known providers."""
    with pytest.raises(PriceFileError, match=r"unknown provider 'opanai': did you mean 'openai'\?") as caught:
        set_price("gpt-4o", provider="opanai", input="1", output="2")
    assert caught.value.field == "provider" and "aws.bedrock, azure.ai.openai" in str(caught.value)
    with pytest.raises(PriceFileError, match="did you mean 'anthropic'"):
        add_discount("10", provider="Antropic")
    with pytest.raises(PriceFileError) as caught:  # a price file goes through the same check
        load_price_file(write(tmp_path, "p.toml", '[[model]]\nmodel = "m"\nprovider = "vertex-ai"\ninput = "1"\n'))
    assert (caught.value.line, caught.value.field) == (3, "provider") and "'vertex_ai'" in str(caught.value)
    assert resolve("openai", "gpt-4o").source != "override"  # nothing was installed
    with pytest.raises(PriceFileError, match="did you mean 'together_ai'"):  # other separators: the same name
        set_price("m", provider="together-ai", input="1")
    for provider in ("OpenAI", "bedrock", "aws", "x-ai", "together_ai", "litellm", "my-vllm", "toyai"):
        set_price(f"own-{provider}", provider=provider, input="1", output="1")
    assert price_call("litellm", "own-litellm", USAGE).total == Decimal(2)


def test_a_known_provider_name_with_a_suffix_of_ones_own_is_a_provider_of_ones_own():
    """A second vLLM server ('vllm2'), a region's gateway ('openai-eu'): a known name whole, then a digit or a
    separator and more, is a deployment named after what it runs, not a misspelling, and its price applies."""
    for provider in ("vllm2", "vllm-2", "openai-eu", "ollama2", "anthropic_proxy"):
        set_price("served-model", provider=provider, input="1", output="1")
        assert price_call(provider, "served-model", USAGE).total == Decimal(2)
    assert resolve("vllm", "served-model") is None  # the rules are each deployment's own
    for misspelt, meant in (("aws.bedrok", "aws.bedrock"), ("azure.ai.openia", "azure.ai.openai")):
        with pytest.raises(PriceFileError, match=f"did you mean '{meant}'"):  # a known name's start is no suffix
            set_price("m", provider=misspelt, input="1")


def test_set_price_validates_at_configure_time():
    with pytest.raises(ValueError, match="'output'"):
        set_price("x", input="1", output="abc")
    with pytest.raises(ValueError, match="unknown field"):
        set_price("x", input="1", outptu="2")


# --- CLI ---------------------------------------------------------------------------------------------------


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_cli_prices_table():
    code, out, _ = run_cli("prices", "claude-sonnet-4-5-20250929", "--provider", "anthropic")
    assert code == 0
    assert "anthropic/claude-sonnet-4-5" in out
    assert "input > 200,000" in out and "22.5" in out and "cache_write_1h" in out


def test_cli_prices_table_names_a_per_character_rate_as_such():
    code, out, _ = run_cli("prices", "tts-1")
    assert code == 0
    assert re.search(r"input_characters +base \(per 1M characters\)", out) and "tokens" not in out


def test_cli_prices_history_and_tier():
    code, out, _ = run_cli("prices", "o3", "--at", "2025-05-01", "--tier", "flex")
    assert code == 0 and "tier flex" in out
    assert " 5\n" in out and " 20\n" in out  # half of $10 / $40


def test_cli_unknown_model_fails():
    code, _, err = run_cli("prices", "definitely-not-a-model")
    assert code == 1 and "unknown model" in err


def test_cli_check(tmp_path):
    good = write(tmp_path, "good.toml", GOOD_TOML)
    code, out, _ = run_cli("prices", "--check", str(good))
    assert code == 0 and "3 model price(s), 2 discount(s)" in out
    bad = write(tmp_path, "bad.toml", '[[model]]\nmodel = "x"\ninput = "1"\nouput = "2"\n')
    code, _, err = run_cli("prices", "--check", str(bad))
    assert code == 1 and f"{bad}:4" in err and "ouput" in err and "did you mean 'output'" in err


def test_cli_lists_unknown_models_recorded_by_the_app(tmp_path, monkeypatch):
    record = tmp_path / "unknown.json"
    monkeypatch.setenv("AICOST_UNKNOWN_MODELS_FILE", str(record))
    price_call("openai", "mystery-model-7b", Usage(input_tokens=5))
    price_call("openai", "mystery-model-7b", Usage(input_tokens=5))
    code, out, _ = run_cli("prices", "--unknown")
    assert code == 0 and "mystery-model-7b" in out and out.count("mystery-model-7b") == 1


def test_cli_price_file_applies_overrides(tmp_path):
    path = write(tmp_path, "p.toml", GOOD_TOML)
    code, out, _ = run_cli("prices", "llama-3.1-70b", "--price-file", str(path))
    assert code == 0 and "source override" in out and "0.740740740741" in out


def test_cli_runs_as_a_program():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "aicost.cli", "prices", "gpt-4o-mini", "--provider", "openai"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "openai/gpt-4o-mini" in done.stdout and "0.15" in done.stdout


def test_cli_lists_catalog_models_of_a_provider():
    code, out, _ = run_cli("prices", "--list", "--provider", "gen_ai.nothing")
    assert code == 1
    code, out, _ = run_cli("prices", "--list", "--provider", "anthropic")
    assert code == 0 and "claude-sonnet-4-5" in out and "gpt-4o" not in out
