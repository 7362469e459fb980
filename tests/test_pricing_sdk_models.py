"""Every model the installed SDKs name is priced, or recorded as an unknown price: never a silent $0.

The SDKs' ``ChatModel`` / ``Model`` literals are the vendors' own list of what they sell, and they change in
minor releases. So the exact list of names the catalog does not price yet is asserted only against the SDK
versions pinned in ``constraints.txt`` (CI's first pass). Against newer SDKs (CI's second pass, or a user's
install) a name the catalog lacks is reported as a warning in the test summary, not a failure: aicost records
such a call with ``aicost.price.known=false``, which is correct, and the pins are moved on purpose
(``.ci/refresh-constraints``) together with the catalog.
"""

from __future__ import annotations

import logging
import typing
import warnings
from importlib.metadata import version
from pathlib import Path

from aicost.pricing import price_call
from aicost.usage import Usage

# No price published in the sources the catalog is built from (genai-prices 0.2.3, vendor pages) as of 2026-11,
# for the names the pinned SDKs list. Calls to them are recorded with aicost.price.known=false, never as $0.
NOT_YET_PRICED = {
    "openai": {"gpt-6.2-astra", "gpt-6.2-sol"},
    "anthropic": {"claude-mythos-5", "claude-mythos-5-1", "claude-mythos-preview"},
}
CONSTRAINTS = Path(__file__).resolve().parent.parent / "constraints.txt"


def _pinned(dist: str) -> str | None:
    for line in CONSTRAINTS.read_text().splitlines():
        name, _, pin = line.partition("==")
        if pin and name.strip().lower() == dist:
            return pin.strip()
    return None


def _literals(tp: object, out: set[str]) -> set[str]:
    for arg in typing.get_args(tp):
        if isinstance(arg, str):
            out.add(arg)
        else:
            _literals(arg, out)
    return out


def _check(provider: str, dist: str, names: set[str]) -> None:
    logging.disable(logging.WARNING)
    try:
        costs = {n: price_call(provider, n, Usage(input_tokens=10, output_tokens=10)) for n in names}
    finally:
        logging.disable(logging.NOTSET)
    free = {n for n, c in costs.items() if c.known and not c.total > 0}
    assert not free, f"priced as a known $0: {sorted(free)}"
    unpriced = {n for n, c in costs.items() if not c.known}
    installed = version(dist)
    if installed == _pinned(dist):
        assert unpriced == NOT_YET_PRICED[provider]
    elif unpriced - NOT_YET_PRICED[provider]:
        warnings.warn(UserWarning(
            f"{dist} {installed} (pinned: {_pinned(dist)}) names models the catalog does not price yet, recorded "
            f"as unknown prices: {sorted(unpriced - NOT_YET_PRICED[provider])}"))


def test_openai_chat_models_are_priced():
    from openai.types.shared import chat_model

    names = _literals(chat_model.ChatModel, set())
    assert len(names) > 50
    _check("openai", "openai", names)


def test_anthropic_models_are_priced():
    from anthropic.types import model

    names = _literals(model.Model, set())
    assert len(names) > 10
    _check("anthropic", "anthropic", names)


def test_readme_names_the_pinned_sdk_versions():
    """The README says which SDK versions CI tests; it must say what constraints.txt pins."""
    readme = (CONSTRAINTS.parent / "README.md").read_text()
    for dist in ("openai", "anthropic", "opentelemetry-sdk"):
        assert f"`{dist}=={_pinned(dist)}`" in readme, dist
