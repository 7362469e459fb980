"""The worst case a call can cost, known before it is sent.

Input tokens are counted locally (``aicost.tokens``: tiktoken's exact counts from bundled rank files, or a
flagged estimate with no network access). Output is bounded by the request's own cap, else the model's maximum
output from the price catalog, else a configured default. Counts that are only estimates (Anthropic has no
public local tokenizer) are inflated by ``estimate_margin`` so the reservation stays an upper bound.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable, Mapping

from ..pricing.names import tier_text
from ..usage import Usage
from ..vendor import RequestShape
from .money import ceil_times

PriceLookup = Callable[..., Any]  # (provider, model, *, service_tier=None) -> ModelPrice | None


@dataclass(frozen=True, slots=True)
class Estimate:
    cost_usd: Decimal | None  # None: the model has no known price, or none for what the call may bill
    input_tokens: int
    output_tokens: int
    input_exact: bool
    # Why a priced model's worst case has no price (pricing's ``Cost.unknown_reason``: its price has no output
    # rate, and the call may generate output); None otherwise.
    unknown_reason: str | None = None


def default_price_lookup() -> PriceLookup:
    from .. import pricing

    return pricing.current_price


class Prices:
    """Asks the price catalog (``aicost.pricing.current_price_and_reason``: the price now, cached until it can
    next change, and without one why), or the application's ``price_lookup``, on every call.

    No second cache here: the catalog caches its lookups and invalidates them when a price override changes, and
    a copy in the guard would keep reserving at a stale price.
    """

    __slots__ = ("_lookup", "_find")

    def __init__(self, lookup: PriceLookup | None) -> None:
        self._lookup = lookup
        self._find: Callable[[str, str, Any], tuple[Any, str | None]] | None = None  # chosen on first use

    def get(self, provider: str, model: str, service_tier: Any) -> Any:
        return self.find(provider, model, service_tier)[0]

    def find(self, provider: str, model: str, service_tier: Any) -> tuple[Any, str | None]:
        """``get``'s price and, when there is none, why, when the catalog knows more than "no price for this
        model" (a tier billed at per-model rates it lacks): the reason the call's span would carry. One lookup
        of the catalog, which caches the two together; a ``price_lookup`` of the application's own says only
        whether it has a price (no reason)."""
        find = self._find
        if find is None:
            find = self._find = self._finder()
        return find(provider, model, tier_text(service_tier))

    def _finder(self) -> Callable[[str, str, Any], tuple[Any, str | None]]:
        from .. import pricing

        lookup = self._lookup
        if lookup in (None, default_price_lookup()):
            return pricing.current_price_and_reason
        return lambda provider, model, tier: (lookup(provider, model, service_tier=tier), None)


# ``aicost.tokens.count_request_input``, imported at the first count (not when the budget package is imported),
# then kept: an import statement in ``count_input`` ran the import machinery on every call.
_count_request_input: Callable[..., Any] | None = None


def _counter() -> Callable[..., Any]:
    global _count_request_input
    from ..tokens import count_request_input

    _count_request_input = count_request_input
    return count_request_input


def count_input(kwargs: Mapping[str, Any], model: str | None, provider: str, *,
                shape: RequestShape) -> tuple[int, bool]:
    """The request's input tokens and whether the count is exact. ``shape`` (the endpoint's ``RequestShape``,
    ``CallInfo.shape``) says where the request keeps its input: required, since a request read without it
    would count 0 tokens."""
    count_request_input = _count_request_input or _counter()
    count = count_request_input(dict(kwargs) if not isinstance(kwargs, dict) else kwargs, model, provider, shape)
    return count.tokens, count.exact


def worst_case(
    *,
    price: Any,
    kwargs: Mapping[str, Any],
    operation: str,
    input_tokens: int,
    input_exact: bool,
    default_max_output_tokens: int,
    estimate_margin: Decimal,
    shape: RequestShape,
) -> Estimate:
    """``shape`` (the endpoint's ``RequestShape``) reads the request's output cap, choices and billed characters:
    required, since a request read without it would have no cap (the model's maximum output would be reserved)."""
    kwargs = kwargs if isinstance(kwargs, dict) else dict(kwargs)
    if not input_exact:
        input_tokens = ceil_times(input_tokens, estimate_margin)  # exact, whatever the thread's decimal context
    if operation == "embeddings" or not shape.generates:
        output = 0
    else:
        output = shape.output_cap(kwargs) or _model_max_output(price) or default_max_output_tokens
        output *= shape.choices(kwargs)  # n completions, each up to the cap; the prompt is billed once
    if price is None:
        return Estimate(None, input_tokens, output, input_exact)
    if "input_characters" in (getattr(price, "rates", None) or {}):
        # Text to speech billed per character of its input (tts-1), and not by tokens: exact before the call.
        usage = Usage(input_characters=shape.input_characters(kwargs))
    else:
        usage = Usage(input_tokens=input_tokens, output_tokens=output, estimated=not input_exact)
    cost = price.cost(usage)
    if not getattr(cost, "known", True):
        return Estimate(None, input_tokens, output, input_exact, getattr(cost, "unknown_reason", None))
    return Estimate(cost.total, input_tokens, output, input_exact)


def _model_max_output(price: Any) -> int | None:
    value = getattr(price, "max_output_tokens", None)
    return value if isinstance(value, int) and value > 0 else None
