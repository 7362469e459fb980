"""Every model the installed SDKs name is priced, except the few listed here with no published price yet.

The SDKs' ``ChatModel`` / ``Model`` literals are the vendors' own list of what they sell. When an SDK upgrade
adds a name, this test fails until the catalog (or this list, with a reason) is updated: a new model must not
quietly become an "unknown price" in production.
"""

from __future__ import annotations

import logging
import typing

from aicost.pricing import price_call
from aicost.usage import Usage

# No price published in the sources the catalog is built from (genai-prices 0.2.3, vendor pages) as of 2026-11.
# Calls to them are recorded with aicost.price.known=false, never as $0.
NOT_YET_PRICED = {
    "openai": {"gpt-6.2-astra", "gpt-6.2-sol"},
    "anthropic": {"claude-mythos-5", "claude-mythos-5-1", "claude-mythos-preview"},
}


def _literals(tp: object, out: set[str]) -> set[str]:
    for arg in typing.get_args(tp):
        if isinstance(arg, str):
            out.add(arg)
        else:
            _literals(arg, out)
    return out


def _unpriced(provider: str, names: set[str]) -> set[str]:
    logging.disable(logging.WARNING)
    try:
        return {n for n in names if not price_call(provider, n, Usage(input_tokens=10, output_tokens=10)).known}
    finally:
        logging.disable(logging.NOTSET)


def test_openai_chat_models_are_priced():
    from openai.types.shared import chat_model

    names = _literals(chat_model.ChatModel, set())
    assert len(names) > 50
    assert _unpriced("openai", names) == NOT_YET_PRICED["openai"]


def test_anthropic_models_are_priced():
    from anthropic.types import model

    names = _literals(model.Model, set())
    assert len(names) > 10
    assert _unpriced("anthropic", names) == NOT_YET_PRICED["anthropic"]
