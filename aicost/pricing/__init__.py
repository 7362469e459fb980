"""Exact, offline, overridable prices for LLM calls.

The contract the rest of aicost codes against::

    price_call(provider, model, usage, *, service_tier=None, at=None) -> Cost
    resolve(provider, model, *, at=None, service_tier=None) -> ModelPrice | None
    current_price(provider, model, service_tier=None) -> ModelPrice | None   (now; cached, never warns)
    catalog_providers() -> tuple[str, ...]   (the provider names the catalog has price tables for)
    with_sub_inferences(cost, [(kind, Cost | None), ...]) -> Cost   (parts priced at other models, added)
    unknown_cost(provider, model, service_tier, usage, reason=None) -> Cost   (billed, but by a unit with no rate here)
    set_scoped_prices(scope, {model: rates}) / scoped_price(scope, model)   (prices only for calls an
        interceptor scoped with CallInfo.price_scope: a self-hosted pool's provisional rate)
    canonical(Decimal) -> Decimal / format_usd(Decimal) -> str / sum_usd(amounts) -> Decimal   (the one written
        form of money: no trailing zeros, never an exponent; every span, metric, CLI and API result uses it)

``provider`` is an OpenTelemetry ``gen_ai.provider.name`` (``openai``, ``anthropic``, ``azure.ai.openai``,
``aws.bedrock``, ``gcp.vertex_ai``, ...); ``model`` is the model that answered (fall back to the requested
one). Unknown models give ``Cost(known=False, total=None)``, never $0. See docs/pricing.md.
"""

from __future__ import annotations

from .cost import RATE_NAMES, Cost, ModelPrice, unknown_cost, with_sub_inferences
from .engine import (
    UnknownModel,
    add_discount,
    catalog_providers,
    catalog_version,
    check_price_file,
    clear_overrides,
    current_price,
    load_price_file,
    price_call,
    refresh_catalog_from_genai_prices,
    resolve,
    scoped_price,
    set_price,
    set_scoped_prices,
    unknown_models,
    use_bundled_catalog,
    use_catalog_file,
)
from .money import canonical, format_usd, sum_usd
from .overrides import PriceFileError

__all__ = [
    "Cost",
    "ModelPrice",
    "PriceFileError",
    "RATE_NAMES",
    "UnknownModel",
    "add_discount",
    "canonical",
    "catalog_providers",
    "catalog_version",
    "current_price",
    "scoped_price",
    "set_scoped_prices",
    "check_price_file",
    "clear_overrides",
    "format_usd",
    "load_price_file",
    "price_call",
    "refresh_catalog_from_genai_prices",
    "resolve",
    "set_price",
    "sum_usd",
    "unknown_cost",
    "unknown_models",
    "use_bundled_catalog",
    "use_catalog_file",
    "with_sub_inferences",
]
