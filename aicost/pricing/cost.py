"""Usage x resolved rates -> exact Decimal cost, split by token class.

Why it is shaped like this: pricing sits on every call's hot path, so all the thinking (tier bands, fallbacks
such as "no cache-read rate means the input rate", per-million -> per-token scaling, discounts) happens once
when a :class:`ModelPrice` is built; :meth:`ModelPrice.cost` only multiplies integers by ready Decimals.
Arithmetic uses a private Decimal context that traps ``Inexact``, so a host app that lowered its own
thread's precision cannot round our money, and a result that would need rounding fails loudly instead.
"""

from __future__ import annotations

import dataclasses
import decimal
import logging
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Callable, Mapping

from .._log import log_once
from ..usage import Usage
from .money import canonical, canonicalize_parts, format_usd, private_context
from .names import normalise_tier

# Token classes priced per million tokens, then per-unit items priced per thousand.
TOKEN_RATES = (
    "input",
    "cache_read",
    "cache_read_image",
    "cache_read_audio",
    "cache_write",
    "cache_write_1h",
    "output",
    "reasoning",
    "input_audio",
    "output_audio",
    "input_image",
    "output_image",
    "input_characters",  # not tokens, but priced per million too (text to speech: tts-1)
)
# ``web_search_preview``: OpenAI's preview search tool on non-reasoning models ($25/1K vs $10/1K); the part is
# still reported as ``web_search``.
UNIT_RATES = ("web_search", "web_search_preview", "request")
RATE_NAMES = TOKEN_RATES + UNIT_RATES

# A rate a model does not list falls back to the rate the vendor bills instead (OpenAI cache writes are
# plain input; reasoning is output; a model without a separate audio rate bills audio as text). A token class
# with no rate even so (an embedding model's output, an input-only override's) has no price: see ``_Band``.
FALLBACKS: Mapping[str, tuple[str, ...]] = {
    "cache_read": ("input",),
    "cache_read_image": ("cache_read", "input"),
    "cache_read_audio": ("cache_read", "input"),
    "cache_write": ("input",),
    "cache_write_1h": ("cache_write", "input"),
    "reasoning": ("output",),
    "input_audio": ("input",),
    "output_audio": ("output",),
    "input_image": ("input",),
    "output_image": ("output",),
}

# Why a long-context band was or was not applied to a call whose input crossed its threshold (``Cost.tier_reason``).
TIER_INPUT_OVER_THRESHOLD = "input_over_threshold"  # one request's input exceeded it: the whole call at the band
# The model bills the band only to a request that enabled its long context (Anthropic's 1M-context beta); this
# one did not, so no single request could exceed the 200K window: the reported input is summed over the steps
# of a server-side tool loop (web search, pause_turn) or compaction, each billed at base rates.
TIER_LONG_CONTEXT_NOT_ENABLED = "long_context_not_enabled"
# The call ran several sampling steps (a server-side tool loop, compaction) and the vendor bills each step by its
# own input. With each step's usage known (``steps``): the steps whose own input exceeded the threshold are at the
# band, the rest at base rates (``Cost.tier`` names the band when a step was at it) ...
TIER_STEP_INPUT_OVER_THRESHOLD = "step_input_over_threshold"
TIER_STEPS_UNDER_THRESHOLD = "steps_under_threshold"  # ... or only their sum exceeded it: all at base rates.
# Several steps whose sizes the vendor did not report: base rates (the least it can cost), ``Cost.estimated``.
TIER_STEP_INPUTS_UNKNOWN = "step_inputs_unknown"

MONEY = private_context(60, traps=[decimal.InvalidOperation, decimal.Inexact])
ZERO = Decimal(0)
_EMPTY: Mapping[str, Decimal] = MappingProxyType({})
_MILLION_EXP = -6
_THOUSAND_EXP = -3


@dataclass(frozen=True)
class Cost:
    """What one call cost. ``total`` is None (never $0) when the model's price is unknown."""

    known: bool
    total: Decimal | None
    parts: Mapping[str, Decimal] = field(default_factory=lambda: _EMPTY)
    currency: str = "USD"
    model: str | None = None
    provider: str | None = None
    service_tier: str | None = None
    source: str = ""
    estimated: bool = False
    # A long-context band: ``tier`` names the band that priced the call (``"input>200000"``), None for base rates;
    # ``tier_reason`` says why a band was or was not applied when the input crossed a threshold (TIER_* below).
    tier: str | None = None
    tier_reason: str | None = None
    # Why the price is unknown, when pricing knows more than "no price for this model": a tier the vendor bills
    # at per-model rates the catalog does not list (a null ``tier_factor``), or something the call billed that its
    # price has no rate for (``ModelPrice._unpriced``). None otherwise.
    unknown_reason: str | None = None

    def __post_init__(self) -> None:
        """Built by hand (tests, callers): the same canonical amounts as the priced path gives."""
        if self.total is not None:
            object.__setattr__(self, "total", canonical(self.total))
        object.__setattr__(self, "parts", MappingProxyType({k: canonical(v) for k, v in self.parts.items()}))

    @property
    def total_usd(self) -> float | None:
        """For metrics and span attributes, which only take floats. Sum Decimals, never these."""
        return None if self.total is None else float(self.total)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        """Picklable and deep-copyable (results cross process pools and caches) despite the read-only parts."""
        return _restore_cost, (self.known, self.total, dict(self.parts), self.model, self.provider,
                               self.service_tier, self.source, self.estimated, self.tier, self.tier_reason,
                               self.unknown_reason)


_new = object.__new__
_set_attribute = object.__setattr__


def _make_cost(known: bool, total: Decimal | None, parts: Mapping[str, Decimal], model: str | None,
               provider: str | None, service_tier: str | None, source: str, estimated: bool,
               tier: str | None = None, tier_reason: str | None = None, total_canonical: bool = False,
               unknown_reason: str | None = None) -> Cost:
    """Cost without the frozen-dataclass ``__init__`` (nine ``object.__setattr__`` calls, ~2 us): the hot path.

    A fresh ``dict`` of parts is made canonical in place (``0.0000950`` -> ``0.000095``) and wrapped read-only;
    a read-only mapping is taken as it is (already canonical); so is the total when ``total_canonical``."""
    if total is not None and not total_canonical:
        total = canonical(total)
    if type(parts) is dict:
        canonicalize_parts(parts)
        parts = MappingProxyType(parts)
    cost = _new(Cost)
    _set_attribute(cost, "__dict__", {  # one call, not an update() with keywords
        "known": known, "total": total, "parts": parts, "currency": "USD", "model": model, "provider": provider,
        "service_tier": service_tier, "source": source, "estimated": estimated, "tier": tier,
        "tier_reason": tier_reason, "unknown_reason": unknown_reason,
    })
    return cost


def _restore_cost(known: bool, total: Decimal | None, parts: dict[str, Decimal], model: str | None,
                  provider: str | None, service_tier: str | None, source: str, estimated: bool,
                  tier: str | None = None, tier_reason: str | None = None,
                  unknown_reason: str | None = None) -> Cost:
    return _make_cost(known, total, parts, model, provider, service_tier, source, estimated, tier, tier_reason,
                      unknown_reason=unknown_reason)


def unknown_cost(provider: str | None, model: str | None, service_tier: str | None, usage: Usage | None,
                 reason: str | None = None) -> Cost:
    """A call that was billed but cannot be priced (``total`` None, never $0); ``reason``: why, when known. The
    tier as every cost names it (``names.normalise_tier``: OpenAI's 'default' is 'standard'; not text, None)."""
    return _make_cost(False, None, _EMPTY, model, provider, normalise_tier(service_tier), "unknown",
                      bool(getattr(usage, "estimated", False)), unknown_reason=reason)


def with_sub_inferences(main: Cost, subs: "list[tuple[str, Cost | None]]") -> Cost:
    """One call's cost when the vendor ran part of it on another model and billed that part at that model's
    rates (Anthropic's advisor tool): the total includes every part, and each kind of sub-inference is one part
    (``parts["advisor"]``), so the parts still add up to the total.

    A sub-inference whose price is unknown makes the whole call's cost unknown, naming that model and keeping its
    ``unknown_reason``: a total that silently left it out would look exact and be low.
    """
    if not subs or not main.known or main.total is None:
        return main
    total = main.total
    parts = dict(main.parts)
    estimated = main.estimated
    for kind, sub in subs:
        if sub is None or not sub.known or sub.total is None:  # None: it could not be priced at all
            return _make_cost(False, None, _EMPTY, None if sub is None else sub.model, main.provider,
                              main.service_tier, "unknown", estimated or (sub is not None and sub.estimated),
                              unknown_reason=None if sub is None else sub.unknown_reason)  # e.g. its tier's
        total = MONEY.add(total, sub.total)
        parts[kind] = MONEY.add(parts.get(kind, ZERO), sub.total)
        estimated = estimated or sub.estimated
    return _make_cost(True, total, parts, main.model, main.provider, main.service_tier, main.source, estimated,
                      main.tier, main.tier_reason)


class _Band:
    """Per-token rates for one long-context band, every fallback already applied."""

    __slots__ = ("threshold", "name", "per_mtok", "input", "cache_read", "cache_read_image", "cache_read_audio",
                 "cache_write", "cache_write_1h", "output", "reasoning", "input_audio", "output_audio", "input_image",
                 "output_image", "input_characters", "web_search", "web_search_preview", "request", "no_rate",
                 "input_form", "output_form")

    def __init__(self, threshold: int, per_mtok: Mapping[str, Decimal]) -> None:
        self.threshold = threshold
        self.name = f"input>{threshold}" if threshold >= 0 else None  # ``Cost.tier``; None for the base rates
        self.per_mtok = MappingProxyType(dict(per_mtok))
        # The token classes this band has no rate for, even by fallback: an embedding model's output, an input-only
        # override's; every token of a model billed by characters alone (tts-1). A call with such tokens has no
        # price, not a $0 part (``ModelPrice._priced``). A model with no rates at all (the moderation models, a
        # vendor's free models) is one the vendor gives away: its tokens are free, so no class lacks a rate.
        self.no_rate = frozenset(
            name for name in TOKEN_RATES if name != "input_characters" and _with_fallback(per_mtok, name) is None
        ) if per_mtok else frozenset()
        for name in TOKEN_RATES:
            rate = _with_fallback(per_mtok, name)
            setattr(self, name, rate.scaleb(_MILLION_EXP, MONEY) if rate else ZERO)
        for name in UNIT_RATES:
            rate = per_mtok.get(name)
            if rate is None and name == "web_search_preview":
                rate = per_mtok.get("web_search")
            # No request fee listed is none to pay; no web search rate is no price for a search (None), not a free
            # one: many models list none, and a call that reports searches there is cost-unknown (``_priced``).
            setattr(self, name, rate.scaleb(_THOUSAND_EXP, MONEY) if rate is not None else
                    ZERO if name == "request" else None)
        self.input_form = _form(self.input)
        self.output_form = _form(self.output)


def _form(rate: Decimal) -> tuple[int, int] | None:
    """(coefficient, exponent) of a positive per-token rate with a non-positive exponent (``8E-7`` -> (8, -7)),
    else None.

    ``rate * n`` is then ``(coefficient * n) E exponent`` exactly, which is already canonical (``pricing.money``)
    unless ``coefficient * n`` ends in a 0; so is a sum of such amounts whose integer coefficient does not. A plain
    call's amounts are known canonical from integer tests, without the two Decimal operations that make an amount
    canonical (~2 k instructions each)."""
    sign, digits, exponent = rate.as_tuple()
    if sign or not isinstance(exponent, int) or exponent > 0 or not rate:
        return None
    return int("".join(map(str, digits))), exponent


def _with_fallback(rates: Mapping[str, Decimal], name: str) -> Decimal | None:
    rate = rates.get(name)
    if rate is not None:
        return rate
    for alternative in FALLBACKS.get(name, ()):
        rate = rates.get(alternative)
        if rate is not None:
            return rate
    return None


class ModelPrice:
    """The rates one model is billed at for one provider, service tier and period.

    ``rates`` are USD per million tokens (``web_search`` and ``request``: per thousand), as listed, before
    fallbacks. ``tiers`` lists long-context bands as ``(threshold, rates)``: when a request's input tokens
    (cache reads and writes included) exceed ``threshold``, the whole request is billed at that band.
    ``long_context_opt_in``: the vendor bills the bands only to a request that enabled the long context
    (Anthropic's ``context-1m`` beta); see :meth:`cost`.
    """

    __slots__ = ("provider", "model", "service_tier", "source", "effective_from", "effective_until",
                 "rates", "tiers", "context_window", "max_output_tokens", "deprecated", "long_context_opt_in",
                 "_bands", "_base")

    def __init__(
        self,
        *,
        provider: str | None,
        model: str,
        rates: Mapping[str, Decimal],
        tiers: tuple[tuple[int, Mapping[str, Decimal]], ...] = (),
        service_tier: str | None = None,
        source: str = "",
        effective_from: date | None = None,
        effective_until: date | None = None,
        context_window: int | None = None,
        max_output_tokens: int | None = None,
        deprecated: bool = False,
        long_context_opt_in: bool = False,
    ) -> None:
        for name, value in rates.items():
            _check_rate(name, value)
        for threshold, band in tiers:
            for name, value in band.items():
                _check_rate(name, value)
        self.provider = provider
        self.model = model
        self.service_tier = service_tier
        self.source = source
        self.effective_from = effective_from
        self.effective_until = effective_until
        self.rates = MappingProxyType(dict(rates))
        self.tiers = tuple((int(t), MappingProxyType(dict(b))) for t, b in sorted(tiers, key=lambda tb: tb[0]))
        self.context_window = context_window
        self.max_output_tokens = max_output_tokens
        self.deprecated = deprecated
        self.long_context_opt_in = long_context_opt_in
        self._base = _Band(-1, self.rates)
        # Highest threshold first, so the first band whose threshold the input exceeds is the one that applies.
        self._bands = tuple(_Band(t, b) for t, b in reversed(self.tiers))

    def __repr__(self) -> str:
        rates = ", ".join(f"{k}={v}" for k, v in self.rates.items())
        tier = f", service_tier={self.service_tier!r}" if self.service_tier else ""
        return f"ModelPrice({self.provider}/{self.model}{tier}: {rates}{' +tiers' if self.tiers else ''})"

    def band_for(self, input_tokens: int) -> _Band:
        for band in self._bands:
            if input_tokens > band.threshold:
                return band
        return self._base

    def cost(self, usage: Usage, *, web_search_tool: str | None = None,
             long_context: bool | Callable[[], bool | None] | None = None,
             steps: tuple[Usage, ...] | None = None) -> Cost:
        """Price one call. Each token is priced once: subsets are subtracted from their parent bucket.

        ``web_search_tool="web_search_preview"`` selects the preview tool's per-call rate where it differs.
        ``long_context``: whether the request enabled the model's long context (Anthropic: the ``context-1m``
        beta). For a model whose bands need it (``long_context_opt_in``), ``False`` keeps base rates whatever the
        reported input: without the opt-in no single request can exceed the base window, so a larger figure is
        a sum over a server-side tool loop. ``None`` (not known) prices the reported input as one request. A
        zero-argument callable giving one of those is asked only when the input crosses a threshold (reading the
        request's headers would otherwise cost every call, and nearly no call is that large).
        ``steps``: the call ran several sampling steps, each billed by its own input (a server-side tool loop):
        their usages, which add up to ``usage``, or ``()`` when their sizes are unknown (see :meth:`_by_step`).
        None: one request. Consulted only when the call's input crosses a threshold.
        """
        input_tokens = usage.input_tokens
        for candidate in self._bands:
            if input_tokens > candidate.threshold:
                if self.long_context_opt_in and (long_context() if callable(long_context) else long_context) is False:
                    return self._priced(self._base, usage, web_search_tool, None, TIER_LONG_CONTEXT_NOT_ENABLED)
                if steps is not None:
                    return self._by_step(usage, steps, web_search_tool)
                return self._priced(candidate, usage, web_search_tool, candidate.name, TIER_INPUT_OVER_THRESHOLD)
        return self._priced(self._base, usage, web_search_tool)

    def _by_step(self, usage: Usage, steps: tuple[Usage, ...], web_search_tool: str | None) -> Cost:
        """A call of several sampling steps whose summed input crossed a threshold, priced as the vendor bills
        it: each step by its own input. The steps at a band are priced there; what is left of ``usage`` (the
        other steps, and what only the call reports, such as searches and per-request fees) at base rates.

        Steps whose sizes are unknown (``()``), or that do not fit in ``usage``, cannot say which were over:
        base rates, the least the call can have cost, marked estimated (at most every step was over, which the
        long-context price of the whole call would be).
        """
        at_band: dict[_Band, Usage] = {}
        for step in steps:
            band = self.band_for(step.input_tokens)
            if band is not self._base:
                seen = at_band.get(band)
                at_band[band] = step if seen is None else seen + step
        rest = usage
        for part in at_band.values():
            rest = _without(rest, part)
            if rest is None:
                break
        if not steps or rest is None:
            return self._priced(self._base, usage, web_search_tool, None, TIER_STEP_INPUTS_UNKNOWN, estimated=True)
        if not at_band:
            return self._priced(self._base, usage, web_search_tool, None, TIER_STEPS_UNDER_THRESHOLD)
        total = ZERO
        parts: dict[str, Decimal] = {}
        priced = [self._priced(self._base, rest, web_search_tool)]
        priced += [self._priced(band, part, web_search_tool, per_request=False) for band, part in at_band.items()]
        for cost in priced:
            if not cost.known or cost.total is None:
                return cost
            total = MONEY.add(total, cost.total)
            for name, value in cost.parts.items():
                parts[name] = MONEY.add(parts.get(name, ZERO), value)
        top = max(at_band, key=lambda band: band.threshold)
        return _make_cost(True, total, parts, self.model, self.provider, self.service_tier, self.source,
                          usage.estimated, top.name, TIER_STEP_INPUT_OVER_THRESHOLD)

    def _priced(self, band: _Band, usage: Usage, web_search_tool: str | None, tier: str | None = None,
                tier_reason: str | None = None, estimated: bool = False, per_request: bool = True) -> Cost:
        """``usage`` at one band's rates. ``per_request=False`` leaves out the per-request fee (a part of a call
        priced at another band than the rest, which carries the fee once). The common call has no
        cache/audio/image/reasoning tokens, so those branches are skipped as a group."""
        input_tokens = usage.input_tokens
        mul = MONEY.multiply
        add = MONEY.add
        parts: dict[str, Decimal] = {}
        total = ZERO
        # Every part canonical already (see _form), and the total's integer coefficient and exponent while it is.
        plain, coefficient, exponent = True, 0, 0
        cache_read = usage.cache_read_tokens
        cache_write = usage.cache_write_tokens
        input_audio = usage.input_audio_tokens
        input_image = usage.input_image_tokens
        if cache_read or cache_write or input_audio or input_image:
            plain = False
            text_input = input_tokens - cache_read - cache_write - input_audio - input_image
            if text_input > 0:
                parts["input"] = value = mul(band.input, text_input)
                total = add(total, value)
            cache_write_1h = usage.cache_write_1h_tokens
            if cache_read > 0:
                # Image and realtime audio models list their own rates for cached image / audio tokens.
                cached_image = min(usage.cache_read_image_tokens, cache_read)
                cached_audio = min(usage.cache_read_audio_tokens, cache_read - cached_image)
                cached_text = cache_read - cached_image - cached_audio
                if cached_text > 0:
                    parts["cache_read"] = value = mul(band.cache_read, cached_text)
                    total = add(total, value)
                if cached_image > 0:
                    parts["cache_read_image"] = value = mul(band.cache_read_image, cached_image)
                    total = add(total, value)
                if cached_audio > 0:
                    parts["cache_read_audio"] = value = mul(band.cache_read_audio, cached_audio)
                    total = add(total, value)
            if cache_write > cache_write_1h:
                parts["cache_write"] = value = mul(band.cache_write, cache_write - cache_write_1h)
                total = add(total, value)
            if cache_write_1h > 0:
                parts["cache_write_1h"] = value = mul(band.cache_write_1h, min(cache_write_1h, cache_write))
                total = add(total, value)
            if input_audio > 0:
                parts["input_audio"] = value = mul(band.input_audio, input_audio)
                total = add(total, value)
            if input_image > 0:
                parts["input_image"] = value = mul(band.input_image, input_image)
                total = add(total, value)
        elif input_tokens > 0:
            parts["input"] = total = mul(band.input, input_tokens)
            form = band.input_form
            if form is not None and form[0] * input_tokens % 10:
                coefficient, exponent = form[0] * input_tokens, form[1]
            else:
                plain = False
        output_tokens = usage.output_tokens
        reasoning = usage.reasoning_tokens
        output_audio = usage.output_audio_tokens
        output_image = usage.output_image_tokens
        if reasoning or output_audio or output_image:
            plain = False
            reasoning = min(reasoning, max(0, output_tokens - output_audio - output_image))
            text_output = output_tokens - output_audio - output_image - reasoning
            if text_output > 0:
                parts["output"] = value = mul(band.output, text_output)
                total = add(total, value)
            if reasoning > 0:
                parts["reasoning"] = value = mul(band.reasoning, reasoning)
                total = add(total, value)
            if output_audio > 0:
                parts["output_audio"] = value = mul(band.output_audio, output_audio)
                total = add(total, value)
            if output_image > 0:
                parts["output_image"] = value = mul(band.output_image, output_image)
                total = add(total, value)
        elif output_tokens > 0:
            parts["output"] = value = mul(band.output, output_tokens)
            total = add(total, value)
            form = band.output_form
            if plain and form is not None and form[0] * output_tokens % 10:
                low = min(exponent, form[1])
                coefficient = (coefficient * 10 ** (exponent - low) + form[0] * output_tokens * 10 ** (form[1] - low))
                exponent = low
            else:
                plain = False
        if usage.input_characters > 0:
            if "input_characters" not in band.per_mtok:  # a model not billed per character: no $0 part, no price
                return self._unpriced("input_characters", usage)
            parts["input_characters"] = value = mul(band.input_characters, usage.input_characters)
            total = add(total, value)
            plain = False
        if usage.web_search_requests > 0:
            search = band.web_search_preview if web_search_tool == "web_search_preview" else band.web_search
            if search is None:
                return self._unpriced("web_search", usage)
            if search:
                parts["web_search"] = value = mul(search, usage.web_search_requests)
                total = add(total, value)
                plain = False
        if usage.hosted_tools:
            return self._unpriced_tools(usage)
        if band.request and per_request:
            parts["request"] = band.request
            total = add(total, band.request)
            plain = False
        if band.no_rate:  # a part of a class the band has no rate for (a part is there only for tokens > 0)?
            for name in parts:  # a loop, not a generator: one would make the band a cell on every call
                if name in band.no_rate:
                    return self._unpriced(name, usage)
        if plain:  # parts canonical; the total too unless its coefficient ends in 0 (1.5 + 0.5 = 2.0)
            return _make_cost(True, total, MappingProxyType(parts), self.model, self.provider, self.service_tier,
                              self.source, usage.estimated or estimated, tier, tier_reason, coefficient % 10 != 0)
        return _make_cost(
            True, total, parts, self.model, self.provider, self.service_tier, self.source,
            usage.estimated or estimated, tier, tier_reason,
        )

    def _unpriced(self, name: str, usage: Usage) -> Cost:
        """The cost of a call that billed ``name`` (a token class, characters, web searches) which this price has no
        rate for, even by fallback: unknown, with the reason naming the rate, never a $0 part."""
        rates = " or ".join((name, *FALLBACKS.get(name, ())))
        where = f" on {self.provider}" if self.provider else ""
        what = _BILLED_AS.get(name, f"{name} tokens")
        return self._unknown(f"the price of {self.model}{where} has no {rates} rate, so the call's {what} cannot be "
                             "priced (a price override with that rate prices them)", usage)

    def _unpriced_tools(self, usage: Usage) -> Cost:
        """The cost of a call that ran hosted tools billed per call or session (``Usage.hosted_tools``), which aicost
        cannot price from the response (no price lists a rate, or the billed count is not in it: free allowances):
        unknown, naming them, never its tokens alone as if they were all it cost."""
        tools = ", ".join(usage.hosted_tools)
        where = f" on {self.provider}" if self.provider else ""
        return self._unknown(f"the call ran hosted tools billed per call or session ({tools}){where}, which aicost "
                             "cannot price from the response, so its cost is not its tokens' alone and cannot be "
                             "priced", usage)

    def _unknown(self, reason: str, usage: Usage) -> Cost:
        """The unknown cost of a call this price cannot price, for ``reason``: said once per reason, never $0."""
        log_once("pricing:unknown:" + reason, logging.WARNING, "aicost: %s; such calls are marked cost-unknown, not "
                 "priced at $0", reason)
        return unknown_cost(self.provider, self.model, self.service_tier, usage, reason)

    def upper_bound(self, input_tokens: int, output_tokens: int) -> Decimal | None:
        """Worst-case cost of a request (for budget reservations): every token at its dearest class. None where the
        price has no input rate for input tokens, or no output rate for output tokens (even by fallback: an
        embedding model that may generate output): such a call's cost is unknown (:meth:`cost`), and no bound is
        one that counts those tokens as free."""
        band = self.band_for(input_tokens)
        if input_tokens > 0 and "input" in band.no_rate or output_tokens > 0 and "output" in band.no_rate:
            return None
        dearest_in = max(band.input, band.cache_write, band.cache_write_1h, band.input_audio, band.input_image)
        dearest_out = max(band.output, band.reasoning, band.output_audio, band.output_image)
        total = MONEY.add(
            MONEY.multiply(dearest_in, max(0, input_tokens)), MONEY.multiply(dearest_out, max(0, output_tokens))
        )
        return MONEY.add(total, band.request)

    def with_discount(self, factor: Decimal, source: str) -> "ModelPrice":
        """The same price list with every rate multiplied by ``factor`` (e.g. 0.85 for 15 % off)."""
        def scaled(rates: Mapping[str, Decimal]) -> dict[str, Decimal]:
            return {k: MONEY.multiply(v, factor) for k, v in rates.items()}

        return ModelPrice(
            provider=self.provider,
            model=self.model,
            rates=scaled(self.rates),
            tiers=tuple((t, scaled(b)) for t, b in self.tiers),
            service_tier=self.service_tier,
            source=source,
            effective_from=self.effective_from,
            effective_until=self.effective_until,
            context_window=self.context_window,
            max_output_tokens=self.max_output_tokens,
            deprecated=self.deprecated,
            long_context_opt_in=self.long_context_opt_in,
        )

    def table(self) -> list[tuple[str, str, str]]:
        """Rows (rate, band, USD) for display: what the CLI prints."""
        rows = []
        for name in RATE_NAMES:
            value = self.rates.get(name)
            unit = ("per 1K" if name in UNIT_RATES else "per 1M characters" if name == "input_characters"
                    else "per 1M tokens")
            if value is not None:
                rows.append((name, f"base ({unit})", format_usd(value)))
            for threshold, band in self.tiers:
                if name in band and band[name] != value:
                    beta = ", 1M-context beta" if self.long_context_opt_in else ""
                    rows.append((name, f"input > {threshold:,}{beta} ({unit})", format_usd(band[name])))
        return rows


# What ``ModelPrice._unpriced`` calls what a call billed, where it is not "<class> tokens".
_BILLED_AS: Mapping[str, str] = {"input_characters": "input characters", "web_search": "web searches"}


# What a sampling step reports (Anthropic's ``usage.iterations`` entries): the counts :func:`_without` takes away.
_STEP_COUNTS = ("input_tokens", "cache_read_tokens", "cache_write_tokens", "cache_write_1h_tokens", "output_tokens")


def _without(usage: Usage, part: Usage) -> Usage | None:
    """``usage`` less the step counts of ``part`` (what only the call reports, such as searches, stays whole);
    None if ``part`` does not fit in it. Thinking tokens the removed steps generated stay counted in
    ``reasoning_tokens``, which the price clamps to what is left of the output."""
    left = {name: getattr(usage, name) - getattr(part, name) for name in _STEP_COUNTS}
    if min(left.values()) < 0:
        return None
    rest = dataclasses.replace(usage, **left)
    if (rest.cache_read_tokens + rest.cache_write_tokens + rest.input_audio_tokens + rest.input_image_tokens
            > rest.input_tokens or rest.cache_write_1h_tokens > rest.cache_write_tokens
            or rest.cache_read_image_tokens + rest.cache_read_audio_tokens > rest.cache_read_tokens):
        return None
    return rest


def _check_rate(name: str, value: object) -> None:
    if name not in RATE_NAMES:
        raise ValueError(f"unknown rate {name!r}; expected one of {', '.join(RATE_NAMES)}")
    if not isinstance(value, Decimal) or not value.is_finite() or value < 0:
        raise ValueError(f"rate {name!r} must be a finite non-negative Decimal, got {value!r}")
