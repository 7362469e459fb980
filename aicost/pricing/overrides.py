"""User prices: custom, fine-tuned and self-hosted models, committed-use rates and negotiated discounts.

Why strict: a price file is money. A typo (``ouput = 12``) silently ignored means every report is wrong, so a
file is validated completely when it is loaded, and any problem is rejected with the file, line and field
named. Files are data only (TOML or JSON, parsed by the standard library): no expressions, no imports, no
regular expressions (model patterns allow one trailing ``*`` and nothing else).

File shape (TOML; JSON uses the same keys, ``{"model": [{...}], "discount": [{...}]}``)::

    [[model]]                     # custom / fine-tuned model, or your own rates for a catalog model
    model = "ft:gpt-4o-mini-2024-07-18:acme::*"
    provider = "openai"           # optional: any provider when omitted
    input = "0.30"                # USD per million tokens (strings keep exact decimals)
    output = "1.20"
    cache_read = "0.15"

    [[model]]                     # self-hosted: priced from its share of GPU time
    model = "llama-3.1-70b"
    gpu_hour = "2.40"             # USD per GPU-hour
    gpus = 2
    tokens_per_second = 1800      # sustained output throughput of the deployment
    input_tokens_per_second = 12000   # optional prefill throughput (default: tokens_per_second)

    [[commitment]]                # committed-use rate for a period: replaces catalog rates inside it
    provider = "anthropic"
    model = "claude-sonnet-4-5*"
    input = "2.40"
    output = "12"
    from = 2026-01-01
    until = 2027-01-01

    [[discount]]                  # percent off catalog prices (most specific active one applies)
    provider = "openai"
    model = "gpt-4o*"             # optional
    percent = "15"
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, DivisionByZero, InvalidOperation, Overflow, localcontext
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from . import names
from .cost import MONEY, RATE_NAMES
from .files import ConfigFileError, duplicates_of, entry_lines, field_line, read_config_file, repeated_keys
from .money import private_context

_ONE_HUNDRED = Decimal(100)
# Bounds that keep every later multiplication exact in the 60-digit money context: below a billion dollars per
# unit, at most 18 decimal places (a nano-dollar per million tokens has 15).
_MAX_NUMBER = Decimal(1_000_000_000)
_MAX_PLACES = 18
_SECONDS_PER_HOUR = Decimal(3600)
_MILLION = Decimal(1_000_000)
# GPU-hour rates divide by throughput, which rarely terminates: the derived per-million rate is rounded once,
# at load, to this many significant digits (sub-nano-dollar per token); per-call arithmetic stays exact.
_DERIVED_DIGITS = 12

_RULE_FIELDS = {
    "model", "provider", "service_tier", "from", "until", "context_window", "max_output_tokens", "long_context",
    "gpu_hour", "gpus", "tokens_per_second", "input_tokens_per_second", "note", *RATE_NAMES,
}
_DISCOUNT_FIELDS = {"provider", "model", "percent", "from", "until", "note"}
_SECTIONS = {"model", "commitment", "discount"}
_TOP_LEVEL = _SECTIONS | {"version"}  # and the sections whose readers ``load_file`` is given (features' own)


class PriceFileError(ConfigFileError):
    """A price file or override that aicost refuses: says where (file, line) and which field. A
    ``ConfigurationError`` (so a ``ValueError``), like every other configure-time refusal."""


@dataclass(frozen=True, slots=True)
class Pattern:
    """Exact model name, or a prefix when written with one trailing ``*``. Case-insensitive."""

    text: str

    @property
    def is_prefix(self) -> bool:
        return self.text.endswith("*")

    def matches(self, ref: str) -> bool:
        if self.is_prefix:
            return ref.startswith(self.text[:-1])
        return ref == self.text

    @property
    def specificity(self) -> tuple[int, int]:
        return (0 if self.is_prefix else 1, len(self.text))


@dataclass(frozen=True, slots=True)
class PriceRule:
    """Your own rates for models matching ``pattern`` (USD per million tokens) between ``start`` and ``until``."""

    pattern: Pattern
    provider: str | None
    rates: Mapping[str, Decimal]
    tiers: tuple[tuple[int, Mapping[str, Decimal]], ...] = ()
    service_tier: str | None = None
    start: date | None = None
    until: date | None = None
    context_window: int | None = None
    max_output_tokens: int | None = None
    origin: str = "set_price()"

    def active(self, day: date) -> bool:
        return (self.start is None or day >= self.start) and (self.until is None or day < self.until)

    def applies(self, provider: str | None, ref: str) -> bool:
        return (self.provider is None or self.provider == provider) and self.pattern.matches(ref)


@dataclass(frozen=True, slots=True)
class Discount:
    """``percent`` off catalog prices for a provider and/or model pattern (all models when both omitted)."""

    percent: Decimal
    provider: str | None = None
    pattern: Pattern | None = None
    start: date | None = None
    until: date | None = None
    origin: str = "add_discount()"

    @property
    def factor(self) -> Decimal:
        # MONEY for both steps: an operator would use the host thread's context (a precision of 3 rounded 87.655)
        return MONEY.divide(MONEY.subtract(_ONE_HUNDRED, self.percent), _ONE_HUNDRED)

    def active(self, day: date) -> bool:
        return (self.start is None or day >= self.start) and (self.until is None or day < self.until)

    def applies(self, provider: str | None, ref: str) -> bool:
        if self.provider is not None and self.provider != provider:
            return False
        return self.pattern is None or self.pattern.matches(ref)

    @property
    def specificity(self) -> tuple[int, tuple[int, int], int]:
        by_name = self.pattern.specificity if self.pattern else (0, 0)
        return (1 if self.pattern else 0, by_name, 1 if self.provider else 0)


@dataclass(frozen=True)
class Overrides:
    rules: tuple[PriceRule, ...] = ()
    discounts: tuple[Discount, ...] = ()
    sources: tuple[str, ...] = field(default=())
    # Features' own sections of the file, as their readers returned them (``load_file(sections=...)``): name ->
    # what the reader parsed. The pricing layer neither reads nor applies them.
    sections: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def merged(self, other: "Overrides") -> "Overrides":
        sections = {**self.sections, **other.sections}
        for name in self.sections.keys() & other.sections.keys():  # a section is a table of names: merged by name
            mine, theirs = self.sections[name], other.sections[name]
            if isinstance(mine, Mapping) and isinstance(theirs, Mapping):
                sections[name] = {**mine, **theirs}
        combined = Overrides(self.rules + other.rules, self.discounts + other.discounts, self.sources + other.sources,
                             sections)
        check_contradictions(combined)
        return combined


# --- building rules from plain mappings (files and the Python API share this) ---------------------------


class _Where:
    """Turns (field) into a line number for error messages; the Python API has no lines."""

    def __init__(self, path: str | None, lines: Mapping[str, int] | None, origin: str) -> None:
        self.path, self.lines, self.origin = path, lines or {}, origin
        self.problems: list[PriceFileError] = []  # noted by check() / note(), raised together

    def error(self, message: str, field_name: str | None = None) -> PriceFileError:
        line = field_line(self.lines, field_name)
        return PriceFileError(message, path=self.path or self.origin, line=line, field=field_name)

    def check(self, parse: Any, *args: Any, **kwargs: Any) -> Any:
        """``parse(*args, **kwargs)``, or None with its error noted: checking goes on to the next field."""
        try:
            return parse(*args, **kwargs)
        except PriceFileError as exc:
            self.problems.extend(exc.problems)
            return None

    def note(self, message: str, field_name: str | None = None) -> None:
        self.problems.append(self.error(message, field_name))

    def raise_problems(self) -> None:
        if self.problems:
            raise PriceFileError.combine(self.problems)


def _decimal(value: Any, name: str, where: _Where, *, positive: bool = False) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (str, int, float, Decimal)):
        raise where.error(f"must be a number or a decimal string, got {type(value).__name__}", name)
    try:
        number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    except (InvalidOperation, ValueError):
        raise where.error(f"is not a decimal number: {value!r}", name) from None
    if not number.is_finite() or number < 0:
        raise where.error(f"must be a finite non-negative number, got {value!r}", name)
    if number >= _MAX_NUMBER:
        raise where.error(f"must be below {_MAX_NUMBER:,}, got {value!r}", name)
    if number and number.as_tuple().exponent < -_MAX_PLACES:  # type: ignore[operator]  # finite: an int
        raise where.error(f"has more than {_MAX_PLACES} decimal places: {value!r}", name)
    if positive and number == 0:
        raise where.error("must be greater than zero", name)
    return number


def _int(value: Any, name: str, where: _Where, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise where.error(f"must be an integer >= {minimum}, got {value!r}", name)
    return value


def _date(value: Any, name: str, where: _Where) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise where.error(f"must be a date YYYY-MM-DD, got {value!r}", name)


def _pattern(value: Any, name: str, where: _Where) -> Pattern:
    if not isinstance(value, str) or not value.strip():
        raise where.error("must be a non-empty model name", name)
    text = names.clean_model(value)
    if "*" in text[:-1]:
        raise where.error("only one trailing '*' is allowed in a model pattern", name)
    if text == "*":
        raise where.error("a bare '*' would reprice every model; name a model or a prefix", name)
    return Pattern(text)


# How alike (difflib's ratio) a provider name aicost does not know and one it knows must be to be taken for a
# misspelling: 'opanai', 'antropic', 'vertex-ai', 'together' are refused; 'litellm', 'my-vllm', 'toyai' are not.
_NEAR_MISS = 0.8
# What follows a known name whole in a deployment of one's own ('vllm2', 'vllm-eu', 'openai-proxy'): a digit, or a
# separator and more. Such a name is the server it runs, not a misspelling of it.
_OWN_SUFFIX = re.compile(r"\d.*|[-_.][a-z0-9].*")


def _misspelt(word: str, known: list[str]) -> str | None:
    """The known provider ``word`` is taken for a misspelling of, or None. The closest known name, if close enough,
    unless ``word`` is that very name with a suffix of one's own (``vllm2``): ``aws.bedrok`` is still
    ``aws.bedrock`` misspelt, though it starts with ``aws``."""
    if word in known:
        return None
    close = difflib.get_close_matches(word, known, n=1, cutoff=_NEAR_MISS)
    if not close or (word.startswith(close[0]) and _OWN_SUFFIX.fullmatch(word[len(close[0]):])):
        return None
    return close[0]


def _provider(value: Any, name: str, where: _Where) -> str | None:
    """The provider a rule or discount applies to: the catalog id of a name aicost knows, else the name itself,
    lower-cased. A provider of one's own (a gateway, a self-hosted server, an integration's vendor) is legitimate,
    so an unknown name is kept, unless it is a near-miss of a known one: a rule for 'opanai' would never apply,
    and every 'openai' call would go on at the catalog's price, silently. A known name with a suffix of one's own
    ('vllm2', 'openai-eu': a second server, a gateway) is kept too. Price files and ``set_price`` /
    ``add_discount`` all come through here."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise where.error("must be a provider name such as 'openai' or 'aws.bedrock'", name)
    close = misspelt_provider(value)
    if close:
        raise where.error(
            f"unknown provider {value!r}: did you mean {close!r}? A price for a misspelt provider never "
            f"applies. Known providers: {', '.join(known_providers())} (and spellings such as 'bedrock', 'xai'); a "
            "provider of your own (a gateway, a self-hosted server) is accepted when its name is not this "
            "close to one of them, or is one of them with a suffix of its own ('vllm2', 'openai-eu')", name)
    word = value.strip().lower()
    return names.provider_id(word) or word


def misspelt_provider(value: str) -> str | None:
    """The known provider ``value`` is taken for a misspelling of (``opanai`` -> ``openai``), or None: a name aicost
    knows, or a provider of one's own (a gateway, ``vllm2``). The one rule by which a price rule refuses its
    provider, and ``aicost prices --provider`` says "unknown provider" rather than "no price from it"."""
    word = value.strip().lower()
    if names.provider_id(word) is not None:
        return None
    from . import catalog  # the catalog is loaded on first use, not when overrides are imported

    tables = catalog.current().providers  # a catalog file's own ids are known too
    return _misspelt(word, sorted(set(names.PROVIDER_ALIASES) | names.VENDORS_WITHOUT_TABLE | set(tables)))


def known_providers() -> list[str]:
    """The provider names shown when one is refused: each catalog table's (as spans carry it), and the vendors
    aicost knows without a table."""
    from . import catalog

    tables = catalog.current().providers
    return sorted({names.provider_name(table) or table for table in tables} | names.VENDORS_WITHOUT_TABLE)


def _check_fields(data: Mapping[str, Any], allowed: set[str], where: _Where, section: str) -> None:
    if not isinstance(data, Mapping):
        raise where.error(f"each [[{section}]] entry must be a table/object, got {type(data).__name__}")
    _duplicates(data, where)
    for key in data:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), sorted(allowed), n=1)
            hint = f"did you mean {close[0]!r}?" if close else "allowed: " + ", ".join(sorted(allowed))
            where.note(f"unknown field in [[{section}]] ({hint})", str(key))


def _dates(data: Mapping[str, Any], where: _Where) -> tuple[date | None, date | None]:
    start = _date(data["from"], "from", where) if data.get("from") is not None else None
    until = _date(data["until"], "until", where) if data.get("until") is not None else None
    if start is not None and until is not None and until <= start:
        raise where.error(f"'until' ({until}) must be after 'from' ({start})", "until")
    return start, until


def _known_tiers() -> frozenset[str]:
    """The tiers a rule may name: the words vendors report (``names.SERVICE_TIERS``, normalised) and every tier the
    active catalog has rates or a vendor-wide rule for (AWS's ``latency_optimized``)."""
    from . import catalog  # the catalog is loaded on first use, not when overrides are imported

    return frozenset(names.SERVICE_TIERS.values()) | catalog.current().tiers


def rule_from_mapping(data: Mapping[str, Any], *, section: str = "model", path: str | None = None,
                      lines: Mapping[str, int] | None = None, origin: str = "set_price()") -> PriceRule:
    """A rule from one ``[[model]]`` / ``[[commitment]]`` entry; every problem in it is reported at once."""
    where = _Where(path, lines, origin)
    _check_fields(data, _RULE_FIELDS, where, section)
    pattern = None
    if "model" not in data:
        where.note(f"[[{section}]] needs a model name", "model")
    else:
        pattern = where.check(_pattern, data["model"], "model", where)
    provider = where.check(_provider, data.get("provider"), "provider", where)
    start, until = where.check(_dates, data, where) or (None, None)
    if section == "commitment" and start is None and data.get("from") is None:
        where.note("a committed-use rate needs the date it starts", "from")
    tier = data.get("service_tier")
    if tier is not None and (not isinstance(tier, str) or names.normalise_tier(tier) not in _known_tiers()):
        # a typo ('prority') would make a rule that never applies: every call at the catalog's rate, silently
        where.note(f"must be a service tier, one of {', '.join(sorted(_known_tiers()))}; got {tier!r}",
                   "service_tier")
        tier = None
    rates: dict[str, Decimal] = {}
    for name in RATE_NAMES:
        if name in data:
            value = where.check(_decimal, data[name], name, where)
            if value is not None:
                rates[name] = value
    gpu_fields = [k for k in ("gpu_hour", "gpus", "tokens_per_second", "input_tokens_per_second") if k in data]
    if gpu_fields:
        where.check(_gpu_rates, data, rates, where)
    misspelt = any(key not in _RULE_FIELDS for key in data)  # "ouput = 12" is reported as that, not as no rate
    if not any(name in data for name in ("input", "output", "input_characters")) and not gpu_fields and not misspelt:
        where.note("needs at least an input or output rate (or gpu_hour pricing, or input_characters for "
                   "text to speech billed per character)", "input")
    bands = data.get("long_context")
    tiers = where.check(_long_context, () if bands is None else bands, rates, where) or ()
    context_window = where.check(_int, data["context_window"], "context_window", where) if "context_window" in data \
        else None
    max_output = (where.check(_int, data["max_output_tokens"], "max_output_tokens", where)
                  if "max_output_tokens" in data else None)
    where.raise_problems()
    assert pattern is not None
    return PriceRule(
        pattern=pattern,
        provider=provider,
        rates=rates,
        tiers=tiers,
        service_tier=names.normalise_tier(tier),
        start=start,
        until=until,
        context_window=context_window,
        max_output_tokens=max_output,
        origin=f"{path}:{where.lines.get('')}" if path else origin,
    )


def _gpu_rates(data: Mapping[str, Any], rates: dict[str, Decimal], where: _Where) -> None:
    """GPU-hour pricing -> per-token input and output rates, added to ``rates``."""
    token_rates = [k for k in rates if k not in ("request", "web_search")]
    if token_rates:
        raise where.error(f"gives both per-token rates ({', '.join(token_rates)}) and GPU-hour pricing: choose one",
                          token_rates[0])
    for required in ("gpu_hour", "tokens_per_second"):
        if required not in data:
            raise where.error("GPU-hour pricing needs gpu_hour and tokens_per_second", required)
    gpu_hour = _decimal(data["gpu_hour"], "gpu_hour", where, positive=True)
    gpus = _int(data.get("gpus", 1), "gpus", where)
    tps = _decimal(data["tokens_per_second"], "tokens_per_second", where, positive=True)
    in_tps = _decimal(data.get("input_tokens_per_second", tps), "input_tokens_per_second", where, positive=True)
    rates["output"] = _gpu_rate(gpu_hour, gpus, tps)
    rates["input"] = _gpu_rate(gpu_hour, gpus, in_tps)


def _long_context(bands: Any, rates: Mapping[str, Decimal],
                  where: _Where) -> tuple[tuple[int, dict[str, Decimal]], ...]:
    if not isinstance(bands, (list, tuple)):
        raise where.error(f"must be a list of tables such as [{{above = 200000, input = \"6\"}}], got "
                          f"{type(bands).__name__}", "long_context")
    tiers: list[tuple[int, dict[str, Decimal]]] = []
    for i, band in enumerate(bands):
        if not isinstance(band, Mapping) or "above" not in band:
            raise where.error(f"long_context[{i}] must be a table with 'above' and rates", "long_context")
        unknown = [k for k in band if k != "above" and k not in RATE_NAMES]
        if unknown:
            raise where.error(f"long_context[{i}] has unknown field {unknown[0]!r}", "long_context")
        threshold = _int(band["above"], "long_context", where, minimum=1)
        band_rates = dict(rates)
        band_rates.update({k: _decimal(v, "long_context", where) for k, v in band.items() if k != "above"})
        tiers.append((threshold, band_rates))
    if len({t for t, _ in tiers}) != len(tiers):
        raise where.error("two long_context bands share a threshold", "long_context")
    return tuple(tiers)


# Of aicost's own, not the thread's nor DefaultContext's (a host's that trapped Inexact failed every GPU-hour price
# that does not divide exactly).
_GPU_RATE = private_context(40, traps=[InvalidOperation, DivisionByZero, Overflow])


def _gpu_rate(gpu_hour: Decimal, gpus: int, tokens_per_second: Decimal) -> Decimal:
    """USD per million tokens from a GPU-hour price and sustained throughput (rounded once, here)."""
    with localcontext(_GPU_RATE) as ctx:  # never the host thread's context
        exact = gpu_hour * gpus * _MILLION / _SECONDS_PER_HOUR / tokens_per_second
        return exact.quantize(Decimal(1).scaleb(exact.adjusted() - _DERIVED_DIGITS + 1), context=ctx)


def discount_from_mapping(data: Mapping[str, Any], *, path: str | None = None,
                          lines: Mapping[str, int] | None = None, origin: str = "add_discount()") -> Discount:
    """A discount from one ``[[discount]]`` entry; every problem in it is reported at once."""
    where = _Where(path, lines, origin)
    _check_fields(data, _DISCOUNT_FIELDS, where, "discount")
    percent = None
    if "percent" not in data:
        where.note("a discount needs a percent", "percent")
    else:
        percent = where.check(_decimal, data["percent"], "percent", where, positive=True)
        if percent is not None and percent > _ONE_HUNDRED:
            where.note(f"percent must be at most 100, got {percent}", "percent")
    start, until = where.check(_dates, data, where) or (None, None)
    pattern = where.check(_pattern, data["model"], "model", where) if data.get("model") is not None else None
    provider = where.check(_provider, data.get("provider"), "provider", where)
    where.raise_problems()
    assert percent is not None
    return Discount(
        percent=percent,
        provider=provider,
        pattern=pattern,
        start=start,
        until=until,
        origin=f"{path}:{where.lines.get('')}" if path else origin,
    )


def _overlap(a_start: date | None, a_until: date | None, b_start: date | None, b_until: date | None) -> bool:
    lo = max(a_start or date.min, b_start or date.min)
    hi = min(a_until or date.max, b_until or date.max)
    return lo < hi


def check_contradictions(overrides: Overrides) -> None:
    """Two rules for the same model, provider and tier whose dates overlap: which price is right? Refuse."""
    rules = overrides.rules
    for i, a in enumerate(rules):
        for b in rules[i + 1 :]:
            if (a.pattern, a.provider, a.service_tier) == (b.pattern, b.provider, b.service_tier) and _overlap(
                a.start, a.until, b.start, b.until
            ):
                raise PriceFileError(
                    f"contradicts {a.origin}: two prices for model {a.pattern.text!r} overlap in time",
                    path=b.origin.rsplit(":", 1)[0] if ":" in b.origin else b.origin,
                    line=_line_of(b.origin),
                    field="model",
                )
    discounts = overrides.discounts
    for i, a in enumerate(discounts):
        for b in discounts[i + 1 :]:
            if (a.pattern, a.provider) == (b.pattern, b.provider) and _overlap(a.start, a.until, b.start, b.until):
                raise PriceFileError(
                    f"contradicts {a.origin}: two discounts for the same scope overlap in time",
                    path=b.origin.rsplit(":", 1)[0] if ":" in b.origin else b.origin,
                    line=_line_of(b.origin),
                    field="percent",
                )


def _line_of(origin: str) -> int | None:
    tail = origin.rsplit(":", 1)[-1]
    return int(tail) if tail.isdigit() else None


# --- files --------------------------------------------------------------------------------------------------


# A feature's own section of the price file is read by the feature, once: given the section as written, its reader
# returns what it parsed and every problem (ConfigurationErrors; ``table`` / ``field`` attributes, when set, point
# at the line). The pricing layer only places the problems in the file and keeps what was parsed
# (``Overrides.sections``); it names no feature.
SectionReader = Callable[[Any], "tuple[Any, Iterable[Exception]]"]


def load_file(path: str | Path, *, sections: Mapping[str, SectionReader] | None = None) -> Overrides:
    """Parse and validate a TOML or JSON price file; raises PriceFileError naming line and field, with every
    problem of the file (``sections``' readers included). ``sections``: name -> reader of the features' own
    sections the file may have; any other section is refused as unknown."""
    if not isinstance(path, (str, os.PathLike)) or not str(path).strip():
        raise PriceFileError(f"price_file must be a path to a .toml or .json file, got {path!r}")
    path = Path(path)
    label = str(path)
    kind = path.suffix.lower()[1:]
    if kind not in ("json", "toml"):
        raise PriceFileError("price files must end in .toml or .json", path=label)
    data, text = read_config_file(path, kind, what="price file", error=PriceFileError)
    lines = entry_lines(kind, text, data, _SECTIONS)
    return overrides_from_data(data, path=label, lines=lines, sections=sections)


def overrides_from_data(data: Any, *, path: str | None = None,
                        lines: Mapping[tuple[str, int], Mapping[str, int]] | None = None,
                        sections: Mapping[str, SectionReader] | None = None) -> Overrides:
    """Every entry of a parsed file, validated; all problems in the file are raised together."""
    lines = lines or {}
    if not isinstance(data, Mapping):
        raise PriceFileError("the top level must be a table/object", path=path, line=1)
    top = lines.get(("", 0), {})
    problems: list[PriceFileError] = []
    sections = sections or {}
    allowed = _TOP_LEVEL | set(sections)
    for key in data:
        if key not in allowed:
            problems.append(PriceFileError(f"unknown section (allowed: {', '.join(sorted(allowed))})", path=path,
                                           line=top.get(key), field=str(key)))
    for key in duplicates_of(data):
        problems.append(PriceFileError("given twice at the top level: the first would be ignored (keep one)",
                                       path=path, line=top.get(key), field=key))
    if "version" in data and data["version"] != 1:
        problems.append(PriceFileError("unsupported price file version (this aicost reads version 1)", path=path,
                                       line=top.get("version"), field="version"))
    rules: list[PriceRule] = []
    discounts: list[Discount] = []
    for section in ("model", "commitment", "discount"):
        entries = data.get(section, [])
        if not isinstance(entries, list):
            problems.append(PriceFileError(f"'{section}' must be an array of tables ([[{section}]])", path=path,
                                           line=top.get(section), field=section))
            continue
        for index, entry in enumerate(entries):
            where_lines = lines.get((section, index))
            try:
                if section == "discount":
                    discounts.append(discount_from_mapping(entry, path=path, lines=where_lines))
                else:
                    rules.append(rule_from_mapping(entry, section=section, path=path, lines=where_lines))
            except PriceFileError as exc:
                problems.extend(exc.problems)
    read: dict[str, Any] = {}
    for section, reader in sections.items():
        if section in data:  # present but empty or not a table: its reader says what it must be
            for key_path in repeated_keys(data[section]):  # json keeps the last of two values silently
                problems.append(PriceFileError("given twice: which value is meant? (keep one)", path=path,
                                               line=top.get(section), field=f"{section}.{key_path}"))
            read[section], found = reader(data[section])
            for problem in found:
                table, field = getattr(problem, "table", section), getattr(problem, "field", None)
                where = lines.get((table, -1), {})
                line = where.get(field) if field else None
                problems.append(PriceFileError(str(problem), path=path,
                                               line=line or where.get("") or top.get(section)))
    result = Overrides(tuple(rules), tuple(discounts), (path,) if path else (), read)
    try:
        check_contradictions(result)
    except PriceFileError as exc:
        problems.extend(exc.problems)
    if problems:
        problems.sort(key=lambda p: p.line if p.line is not None else 0)
        raise PriceFileError.combine(problems)
    return result


def _duplicates(data: Any, where: "_Where") -> None:
    """Note each key a JSON object gave twice, in the entry or in a table inside it (a ``long_context`` band):
    which of two prices did the file mean?"""
    for key_path in repeated_keys(data):
        line = field_line(where.lines, re.split(r"[.\[]", key_path, maxsplit=1)[0])
        where.problems.append(PriceFileError("given twice in one entry: which value is meant? (keep one)",
                                             path=where.path or where.origin, line=line, field=key_path))
