"""Price files and ``set_price`` reject bad input with one clear ``ConfigurationError`` (``PriceFileError``) that
names the file, line and field: never a raw ``UnicodeDecodeError``, ``TypeError`` or an exception at pricing time
(issue 14, item 6)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from aicost.errors import ConfigurationError
from aicost.pricing import PriceFileError, check_price_file, load_price_file, price_call, set_price
from aicost.usage import Usage
from pricing_helpers import _fresh_pricing_state  # noqa: F401


def test_a_non_utf8_price_file_is_a_configuration_error_naming_file_line_and_problem(tmp_path):
    path = tmp_path / "prices.toml"
    path.write_bytes(b'[[model]]\nmodel = "x"\nnote = "caf\xe9"\ninput = "1"\n')  # Latin-1, not UTF-8
    with pytest.raises(ConfigurationError) as raised:
        load_price_file(path)
    assert isinstance(raised.value, PriceFileError)
    message = str(raised.value)
    assert message.startswith(f"{path}:3: ") and "not UTF-8" in message and "0xe9" in message


def test_instrument_reports_a_non_utf8_price_file_as_a_configuration_error(tmp_path):
    import aicost

    path = tmp_path / "prices.json"
    path.write_bytes(b'{"model": [{"model": "\xff", "input": "1"}]}')
    with pytest.raises(ConfigurationError, match="not UTF-8"):
        aicost.instrument(price_file=path)


def test_a_utf8_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "prices.toml"
    path.write_bytes(b'\xef\xbb\xbf[[model]]\nmodel = "bom-model"\ninput = "2"\n')
    assert len(check_price_file(path).rules) == 1


@pytest.mark.parametrize("bad", [None, 42, b"prices.toml", ""])
def test_price_file_argument_that_is_not_a_path(bad):
    with pytest.raises(ConfigurationError, match="price_file must be a path"):
        load_price_file(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("long_context", [5, 0, {"above": 200000}, True])
def test_set_price_long_context_must_be_a_list(long_context):
    with pytest.raises(ConfigurationError, match="long_context"):
        set_price("x", input="1", long_context=long_context)  # type: ignore[arg-type]


@pytest.mark.parametrize("rate, problem", [
    ("1E+12", "below 1,000,000,000"),
    ("1E-999999", "decimal places"),
    ("0.0000000000000000001", "decimal places"),
])
def test_rates_that_cannot_be_priced_exactly_are_refused_at_configure_time(rate, problem):
    # Before: accepted here, then every call of the model failed to price (or overflowed) later.
    with pytest.raises(ConfigurationError, match=problem) as raised:
        set_price("x", input=rate)
    assert "'input'" in str(raised.value)


def test_small_and_large_rates_that_are_fine_still_price_exactly():
    set_price("x", input="0.000000000000000001", output="999999999")
    cost = price_call("openai", "x", Usage(input_tokens=1_000_000, output_tokens=1))
    assert cost.total == Decimal("0.000000000000000001") + Decimal("999.999999")


def test_every_problem_of_a_file_is_reported_at_once(tmp_path):
    path = tmp_path / "prices.toml"
    path.write_text('[[model]]\nmodel = "a"\ninput = "-1"\noutptu = "2"\n')
    with pytest.raises(PriceFileError) as raised:
        load_price_file(path)
    assert [(p.line, p.field) for p in raised.value.problems] == [(3, "input"), (4, "outptu")]
    assert "2 problems" in str(raised.value) and f"{path}:3:" in str(raised.value) and f"{path}:4:" in str(raised.value)
    with pytest.raises(PriceFileError) as raised:  # set_price too: both bad rates at once
        set_price("x", input="abc", output="-2")
    assert {p.field for p in raised.value.problems} == {"input", "output"}


def test_a_service_tier_that_is_no_tier_is_refused_naming_the_tiers_accepted(tmp_path):
    """A misspelt tier made a rule that never applied: every call at the catalog's rate, silently."""
    with pytest.raises(PriceFileError, match="must be a service tier, one of batch, .*priority.*got 'prority'"):
        set_price("house-model", service_tier="prority", input="1")
    path = tmp_path / "prices.toml"
    path.write_text('[[model]]\nmodel = "x"\ninput = "1"\nservice_tier = "flexx"\n')
    with pytest.raises(PriceFileError) as raised:
        load_price_file(path)
    assert (raised.value.line, raised.value.field) == (4, "service_tier")
    for word in ("Batch ", "default", "latency_optimized"):  # vendors' words, any case; a catalog tier
        assert set_price("house-model", service_tier=word, input="1").service_tier is not None


def test_a_key_given_twice_in_a_json_price_file_is_refused_naming_line_and_field(tmp_path):
    """json keeps the last of two values silently (TOML refuses them): a rate given twice, or a second "model"
    array that dropped the first, priced calls at a value the file may not mean."""
    path = tmp_path / "prices.json"
    path.write_text('{"model": [\n {"model": "x",\n  "input": "1",\n  "input": "100"}\n]}\n')
    with pytest.raises(PriceFileError, match="given twice") as raised:
        load_price_file(path)
    assert (raised.value.line, raised.value.field) == (3, "input")
    path.write_text('{"model": [{"model": "x", "input": "1"}],\n "model": [{"model": "y", "input": "2"}]}\n')
    with pytest.raises(PriceFileError, match="given twice") as raised:
        load_price_file(path)
    assert raised.value.field == "model"


def test_a_key_given_twice_inside_a_table_of_a_json_price_file_is_refused_too(tmp_path):
    """Not only an entry's own keys: a long_context band's rate or a pool's gpu_hour given twice is a price the
    file may not mean, and json would keep the last silently (docs/pricing.md: "a key given twice in one JSON
    object")."""
    import aicost

    path = tmp_path / "prices.json"
    path.write_text('{"model": [\n {"model": "x", "input": "1",\n  "long_context": [{"above": 100, "input": "3", '
                    '"input": "4"}]}\n]}\n')
    with pytest.raises(PriceFileError, match="given twice") as raised:
        load_price_file(path)
    assert (raised.value.line, raised.value.field) == (3, "long_context[0].input")
    path.write_text('{"pools": {"p": {"gpu_hour": "1", "gpu_hour": "2", "gpus": 1, "endpoints": ["h:1"],\n'
                    '  "models": ["m"], "owner": "o", "output_weight": 2}}}\n')
    with pytest.raises(PriceFileError, match="given twice") as raised:
        aicost.load_price_file(path)
    assert raised.value.field == "pools.p.gpu_hour"
