"""``aicost prices`` speaks one provider vocabulary, never prints ``None``, reports every mistake in a price file,
and prints tables that line up (issue 13, item 5)."""

from __future__ import annotations

import io
import re

import pytest

from aicost import cli
from aicost.pricing import catalog, names
from pricing_helpers import _fresh_pricing_state  # noqa: F401


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def listed_providers() -> set[str]:
    code, out, _ = run("prices", "--list")
    assert code == 0
    return {line.split()[0] for line in out.splitlines()[2:] if line.strip()}


def test_list_shows_the_provider_names_spans_carry_and_provider_accepts_each_of_them() -> None:
    shown = listed_providers()
    assert {"aws.bedrock", "gcp.gen_ai", "x_ai", "azure.ai.openai", "openai", "anthropic"} <= shown
    assert not {"aws", "google", "x-ai"} & shown  # catalog ids are not a second vocabulary on screen
    for provider in shown:
        code, out, err = run("prices", "--list", "--provider", provider)
        assert code == 0, err
        assert {line.split()[0] for line in out.splitlines()[2:] if line.strip()} == {provider}
    for table in catalog.current().providers.values():  # and the model lines resolve under the shown name
        model = table.models[-1]
        code, out, err = run("prices", model.id, "--provider", names.provider_name(table.id))
        assert code in (0, 1) and "unknown provider" not in err


@pytest.mark.parametrize("spelling", ["aws", "aws.bedrock", "bedrock", "x-ai", "x_ai", "xai", "google", "gcp.gen_ai"])
def test_catalog_ids_and_otel_names_are_both_accepted(spelling: str) -> None:
    code, _, err = run("prices", "--list", "--provider", spelling)
    assert code == 0, err


def test_an_unknown_provider_is_an_error_that_lists_the_accepted_names() -> None:
    code, out, err = run("prices", "gpt-4o", "--provider", "opneai")
    assert code == 2 and not out
    assert "unknown provider 'opneai'" in err and "aws.bedrock" in err and "openai" in err


def test_a_named_vendor_resolves_as_its_calls_do_never_at_another_vendors_price() -> None:
    code, out, err = run("prices", "gpt-4o-mini", "--provider", "groq")
    assert code == 1 and not out and "unknown model 'gpt-4o-mini' (provider groq)" in err
    code, out, _ = run("prices", "gpt-4o-mini")  # no vendor named: the naming scheme says OpenAI
    assert code == 0 and out.splitlines()[0] == "gpt-4o-mini -> openai/gpt-4o-mini"
    # OpenRouter has no table of its own but resells vendor/model names at the vendor's price; Together neither.
    code, out, err = run("prices", "openai/gpt-4o-mini", "--provider", "openrouter")
    assert code == 0, err
    assert out.splitlines()[0] == "openai/gpt-4o-mini -> openai/gpt-4o-mini"
    code, out, err = run("prices", "openai/gpt-4o-mini", "--provider", "together_ai")
    assert code == 1 and "unknown model" in err and "unknown provider" not in err


def test_a_price_file_model_without_a_provider_never_prints_none(tmp_path) -> None:
    path = tmp_path / "f.toml"
    path.write_text('[[model]]\nmodel = "my-llm"\ninput = "0.50"\noutput = "1.50"\n')
    code, out, _ = run("prices", "my-llm", "--price-file", str(path))
    assert code == 0
    assert "None" not in out
    assert out.splitlines()[0] == "my-llm -> my-llm (any provider)"
    # a provider the price file names is accepted by --provider too
    path.write_text('[[model]]\nmodel = "my-llm"\nprovider = "my-vllm"\ninput = "0.50"\n')
    code, out, err = run("prices", "my-llm", "--provider", "my-vllm", "--price-file", str(path))
    assert code == 0, err
    assert out.splitlines()[0] == "my-llm -> my-vllm/my-llm"


def test_check_reports_every_mistake_in_the_file(tmp_path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[[model]]\nmodel = "a"\ninput = "1"\nouput = "2"\n\n'
                    '[[model]]\nmodel = "b"\ninput = "abc"\nfrom = "yesterday"\n\n'
                    '[[discount]]\npercent = "150"\n')
    code, _, err = run("prices", "--check", str(path))
    assert code == 1
    assert f"invalid: {path}: 4 problems" in err
    for line, field in ((4, "ouput"), (8, "input"), (9, "from"), (12, "percent")):
        assert re.search(rf"{re.escape(str(path))}:{line}: .*\(field '{field}'\)", err), (line, field, err)


def test_check_of_a_good_file_still_says_ok(tmp_path) -> None:
    path = tmp_path / "ok.toml"
    path.write_text('[[model]]\nmodel = "a"\ninput = "1"\n')
    code, out, _ = run("prices", "--check", str(path))
    assert code == 0 and out.startswith(f"ok: {path}: 1 model price(s)")


@pytest.mark.parametrize("model", ["gpt-4o", "claude-sonnet-4-5", "tts-1", "gemini-2.5-pro"])
def test_price_tables_line_up(model: str) -> None:
    code, out, _ = run("prices", model)
    assert code == 0
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.lstrip().startswith("rate "))
    header, rows = lines[start], lines[start + 1:]
    applies_at = header.index("applies")
    for row in rows:  # every row's second column starts under the header's, e.g. web_search_preview's
        assert row[applies_at - 2:applies_at] == "  " and row[applies_at] != " ", (row, header)
    # amounts are aligned on the decimal point (or the units digit, for whole numbers)
    units = {len(row.rstrip()) - len(row.rstrip().partition(".")[2]) - (1 if "." in row.split()[-1] else 0)
             for row in rows}
    assert len(units) == 1, rows


@pytest.mark.parametrize("provider", ["vllm", "VLLM", "vllm2", "vllm-eu", "openai-eu", "litellm", "my-gateway"])
def test_a_provider_price_rules_accept_is_no_unknown_provider_only_no_price_for_the_model(provider) -> None:
    """Price rules accept a vendor aicost knows without a table (vllm) and a provider of one's own (vllm2, a
    gateway's name): a lookup without a price file then has no price for the model from it, exit 1 as for any
    unknown model, not "unknown provider" (exit 2), which is for a misspelling that no rule would accept."""
    from aicost.pricing import clear_overrides, set_price

    set_price("llama-3.1-8b", provider=provider, input="0.1", output="0.2")  # the rule is accepted...
    clear_overrides()
    code, out, err = run("prices", "llama-3.1-8b", "--provider", provider)  # ...and without it, no price
    assert (code, out) == (1, "") and f"unknown model 'llama-3.1-8b' (provider {provider})" in err
    assert "unknown provider" not in err
    code, out, err = run("prices", "--list", "--provider", provider)
    assert code == 1 and "unknown provider" not in err and "no price table" in err
