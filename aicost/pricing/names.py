"""Vendor spellings -> the names the catalog uses: providers, service tiers and model references.

Why a module of its own: the same model reaches aicost under many names (``gpt-4o`` on OpenAI,
``openai/gpt-4o`` through a router, ``us.anthropic.claude-...-v1:0`` on Bedrock, ``claude-3-5-sonnet@20240620``
on Vertex, ``models/gemini-2.5-pro`` from the Gemini API) and the same tier under several words
(OpenAI ``default``/``auto``, Anthropic ``standard``). Getting these wrong prices a call at $0 or at the wrong
vendor's rate, so the rules live in one place with the tests next to them.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any

# OpenTelemetry ``gen_ai.provider.name`` values (and common spellings) -> catalog provider id.
PROVIDER_ALIASES: dict[str, str] = {
    "openai": "openai",
    "anthropic": "anthropic",
    "azure.ai.openai": "azure",
    "azure.ai.inference": "azure",
    "azure_openai": "azure",
    "azure": "azure",
    "aws.bedrock": "aws",
    "bedrock": "aws",
    "aws": "aws",
    "amazon": "aws",
    "gcp.vertex_ai": "google",
    "gcp.gemini": "google",
    "gcp.gen_ai": "google",
    "vertex_ai": "google",
    "vertex": "google",
    "gemini": "google",
    "google": "google",
    "mistral_ai": "mistral",
    "mistral": "mistral",
    "mistralai": "mistral",
    "deepseek": "deepseek",
    "x_ai": "x-ai",
    "xai": "x-ai",
    "x-ai": "x-ai",
    "groq": "groq",
    "cohere": "cohere",
    "moonshot": "moonshotai",
    "moonshotai": "moonshotai",
    "perplexity": "perplexity",
}

# Vendors aicost recognises whose own prices the catalog has no table for (OpenAI-compatible hosts the openai
# integration names, OTel provider names). Like every named vendor, their calls are priced by an override (price
# file, ``set_price``) or a resale the catalog declares (OpenRouter's ``vendor/model`` names), else unknown.
VENDORS_WITHOUT_TABLE = frozenset({"together_ai", "fireworks_ai", "openrouter", "vllm", "ollama", "ibm.watsonx.ai"})

# The ``gen_ai.provider.name`` each catalog table is shown under (``aicost prices --list``, the price table), so
# that one vocabulary is shown and accepted everywhere; both it and the catalog id are accepted as input.
CATALOG_PROVIDER_NAMES: dict[str, str] = {
    "azure": "azure.ai.openai",
    "aws": "aws.bedrock",
    "google": "gcp.gen_ai",
    "mistral": "mistral_ai",
    "x-ai": "x_ai",
}


def provider_name(catalog_id: str | None) -> str | None:
    """The OpenTelemetry provider name of a catalog table (``aws`` -> ``aws.bedrock``); other ids as they are."""
    return CATALOG_PROVIDER_NAMES.get(catalog_id, catalog_id) if catalog_id else catalog_id


# Raw tier words from responses / requests -> normalised tier. ``auto`` resolves to the default tier unless the
# response says otherwise; OpenAI's Scale Tier is prepaid capacity whose tokens list at the standard rate.
SERVICE_TIERS: dict[str, str] = {
    "default": "standard",
    "auto": "standard",
    "standard": "standard",
    "standard_only": "standard",
    "on_demand": "standard",
    "scale": "scale",
    "flex": "flex",
    "priority": "priority",
    "batch": "batch",
    "fast": "fast",
}

# Tiers whose rates the catalog carries as variants; every other tier is billed at the standard rate.
PRICED_TIERS = frozenset({"batch", "flex", "priority", "fast"})


def provider_id(name: str | None) -> str | None:
    """Catalog provider id for an OpenTelemetry provider name, or None when aicost has no table for it."""
    if not name:
        return None
    return PROVIDER_ALIASES.get(name.strip().lower())


def names_vendor(name: str | None) -> bool:
    """Whether ``name`` names a vendor aicost knows. A named vendor's call is priced only from its own table or a
    resale it declares, never by the model's naming scheme (``gpt-*`` on Groq is not OpenAI's ``gpt-*``); an
    unnamed or unrecognised provider (a gateway, spans from elsewhere) is priced by the naming scheme."""
    return provider_id(name) is not None or (name is not None and name.strip().lower() in VENDORS_WITHOUT_TABLE)


def tier_text(tier: Any) -> Any:
    """A service tier as text, the one conversion every tier given to pricing goes through: an enum by its value
    (a typed SDK's ``class ServiceTier(str, Enum)``, whose ``str()`` is ``"ServiceTier.PRIORITY"``, an unknown word
    that would be priced at the standard rate; or a plain ``Enum`` of text). None stays None; text is returned as
    it is. Anything else (a dict, a list, a number, an enum of one) is no tier: returned as it is, for pricing to
    say so (:func:`tier_problem`) rather than price its ``str()`` as an unknown word."""
    if tier is None or type(tier) is str:
        return tier
    value = getattr(tier, "value", tier)
    return str(value) if isinstance(value, str) else tier


def tier_problem(tier: Any) -> str | None:
    """Why ``tier`` cannot be read as a service tier, or None when it can (None, text, or an enum of text): the
    reason a call given such a tier has an unknown cost (never the standard rate, which it may not be billed at).
    Names the tier's type, not its value: one reason, and one warning, per kind of mistake."""
    text = tier_text(tier)
    if text is None or isinstance(text, str):
        return None
    return (f"the service tier is a {type(tier).__name__}, not text (a tier's name, or an enum of one), so the rate "
            "that bills the call is unknown")


def normalise_tier(tier: Any) -> str | None:
    """None stays None (no tier reported: standard rates); unknown words are kept, lower-cased. Enums by their
    value (``tier_text``). Anything else (a dict, a number: :func:`tier_problem` says why) is None here: pricing
    asks :func:`tier_problem` first where the tier decides the price."""
    text = tier_text(tier)
    if not isinstance(text, str):
        return None
    word = text.strip().lower()
    if not word:
        return None
    return SERVICE_TIERS.get(word, word)


_ARN = re.compile(r"^arn:aws[\w-]*:bedrock:[^:]*:[^:]*:[\w-]+/")
_PUBLISHER_PATH = re.compile(r"^(?:projects/[^/]+/locations/[^/]+/)?publishers/[^/]+/models/")
_COMPACT_DATE = re.compile(r"-(20\d\d)(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])(?=-|:|\Z)")


def clean_model(model: str) -> str:
    """Lower-case and strip transport decorations that never change the price (ARN, Vertex/Gemini paths)."""
    ref = model.strip().lower()
    ref = _ARN.sub("", ref)
    ref = _PUBLISHER_PATH.sub("", ref)
    if ref.startswith("models/"):
        ref = ref[len("models/") :]
    return ref


def split_provider_prefix(ref: str) -> tuple[str, str] | None:
    """``openai/gpt-4o`` -> ("openai", "gpt-4o") when the prefix names a provider aicost prices."""
    head, sep, tail = ref.partition("/")
    if not sep or not tail:
        return None
    provider = PROVIDER_ALIASES.get(head)
    return (provider, tail) if provider else None


_BEDROCK_ANTHROPIC = re.compile(r"^(?:[a-z]{2,6}\.)?anthropic\.(claude-[a-z0-9.-]+?)(?:-v\d+(?::\d+)?)?\Z")
_VERSION_SUFFIX = re.compile(r"-0\d\d\Z")  # Vertex model versions: gemini-2.5-flash-001


def bedrock_anthropic(ref: str) -> str | None:
    """``us.anthropic.claude-3-5-haiku-20241022-v1:0`` -> ``claude-3-5-haiku-20241022``.

    Used only when Bedrock's own table lacks the model: Anthropic models on Bedrock (on-demand) list at
    Anthropic's own prices (the catalog declares that resale), unlike other vendors' models there (Cohere, Mistral
    bill differently on Bedrock).
    """
    match = _BEDROCK_ANTHROPIC.match(ref)
    return match.group(1) if match else None


def resold_names(ref: str) -> list[str]:
    """Spellings to look a resold model up by in its vendor's own table: ``variants_of``, and Bedrock's
    ``us.anthropic.claude-...-v1:0`` as Anthropic spells it."""
    out = variants_of(ref)
    claude = bedrock_anthropic(ref)
    if claude is not None:
        out.extend(variants_of(claude))
    return out


_LOCAL_TAG = re.compile(r":(?:latest|\d+(?:\.\d+)?[bkm]\b.*|[\w.-]*\bq\d[\w.-]*)\Z")


# Anthropic's beta flag for Claude's 1M-token window (``context-1m-2025-08-07``), however the request carries it:
# the Messages API's ``betas`` / ``anthropic-beta`` header, Bedrock's ``anthropic_beta`` body field.
LONG_CONTEXT_BETA = "context-1m-"


def enables_long_context(betas: object) -> bool:
    """Whether Anthropic beta flags enable Claude's 1M-token window: a list of flag names, or one header value
    (comma-separated names). The only case Anthropic (and AWS, Google for Claude) bills the long-context rates."""
    if isinstance(betas, str):
        betas = betas.split(",")
    if not isinstance(betas, (list, tuple)):
        return False
    return any(isinstance(b, str) and b.strip().startswith(LONG_CONTEXT_BETA) for b in betas)


def long_context_needs_opt_in(model: str) -> bool:
    """Claude models (on Anthropic, Bedrock or Vertex) bill their long-context rates only to a request that
    enabled the 1M-token window (beta ``context-1m-*``); without it the window is 200K tokens. Other vendors'
    bands (Gemini, GPT-5.4) apply by the request's input alone."""
    return "claude-" in model


def looks_self_hosted(ref: str) -> bool:
    """Ollama-style ``name:14b`` / ``name:latest`` tags: a local model, never a vendor's API price by guesswork."""
    return _LOCAL_TAG.search(ref) is not None


def variants_of(ref: str) -> list[str]:
    """Spellings to try, in order: as given, Azure ``gpt-35``, Vertex ``@date`` as ``-date``, compact dates."""
    out = [ref]
    if "gpt-35-" in ref:  # Azure spells GPT-3.5 without the dot
        out.append(ref.replace("gpt-35-", "gpt-3.5-"))
    if "@" in ref:
        out.append(ref.replace("@", "-"))
    if _VERSION_SUFFIX.search(ref):
        out.append(_VERSION_SUFFIX.sub("", ref))
    for candidate in list(out):
        expanded = _COMPACT_DATE.sub(_dashed_date, candidate)
        if expanded != candidate:
            out.append(expanded)
    return out


def _dashed_date(match: re.Match[str]) -> str:
    year, month, day = int(match.group(1)), int(match.group(2)), int(match.group(3))
    try:
        date(year, month, day)
    except ValueError:
        return match.group(0)
    return f"-{year:04d}-{month:02d}-{day:02d}"
