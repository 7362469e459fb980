"""One ledger row: what one priced call (or cache hit, or budget refusal) cost, and who caused it.

Why a plain dataclass of plain values: a row is written by one process and read by another (reports, BI tools,
the FOCUS export, forecasts), possibly years later and by another aicost version. It holds only what the schema
(:mod:`aicost.ledger.schema`) stores, with money as exact ``Decimal`` and never as a float.

Kinds of row (``kind``):

* ``call``: a billable vendor call. ``cost`` is its exact total, or ``None`` when the price is unknown
  (``price_known`` False): an unknown price is kept as a row with an unknown cost, never as $0.
* ``cache_hit``: a call the cache answered instead of the vendor. ``cost`` is 0 (nothing was spent) and
  ``saved_cost`` is what the original call cost.
* ``refusal``: a call a budget or policy refused before it was sent. ``cost`` is 0 and ``stopped_cost`` is the
  worst-case amount the budget would have had to reserve (``None`` for a policy refusal, which has no amount).

A :class:`FeatureRun` is one finished ``aicost.feature(...)`` unit of work with its outcome; call rows made inside
it carry its ``run_id`` (and, once the run has finished, its ``outcome``), so unit cost per feature run and per
successful outcome are sums over the ledger.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Mapping

from .._log import log_once
from ..pricing.money import format_usd
from ..semconv import MAX_OUTSIDE_TAGS, MAX_VALUE_LEN, TAG_NAME_RULE, bounded_tags, bounded_value, is_tag_name

__all__ = [
    "CALL",
    "CACHE_HIT",
    "REFUSAL",
    "KINDS",
    "TOKEN_FIELDS",
    "ATTRIBUTION_FIELDS",
    "SUCCEEDED",
    "LedgerRow",
    "FeatureRun",
    "decimal_text",
    "UNKNOWN_REASON_MAX",
    "unknown_reason_text",
    "DEFERRED_REASON",
    "within_bounds",
]

CALL = "call"
CACHE_HIT = "cache_hit"
REFUSAL = "refusal"
KINDS = (CALL, CACHE_HIT, REFUSAL)

SUCCEEDED = "succeeded"  # the outcome that counts as a success for "cost per successful outcome"

# Usage counts, named as :class:`aicost.usage.Usage` names them (the same subset rules: cache reads are part of
# input_tokens, reasoning part of output_tokens, ...). One column each in the ledger and in the rollups.
TOKEN_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "reasoning_tokens",
    "input_audio_tokens",
    "output_audio_tokens",
    "input_image_tokens",
    "output_image_tokens",
    "cache_read_image_tokens",
    "cache_read_audio_tokens",
    "input_characters",
    "web_search_requests",
)

# Attribution dimensions (aicost.team / .feature / .user / .customer); tags are a mapping besides these.
ATTRIBUTION_FIELDS = ("team", "feature", "user", "customer")


def decimal_text(value: Decimal | None) -> str | None:
    """An exact Decimal as aicost writes money everywhere (``"0.0002025"``, never ``"2.025E-4"``), or None."""
    if value is None:
        return None
    return format_usd(value)


# The longest reason a row keeps (``price_unknown_reason``). aicost's own sentences are at most about 300 characters
# (the longest name a catalog model or the hosted tools a call ran); a reason from elsewhere (an integration's
# ``ResponseMeta.unpriced``, a span another process exported, a hand-made row) is cut here, so no row holds unbounded
# text.
UNKNOWN_REASON_MAX = 512


def unknown_reason_text(reason: object) -> str | None:
    """Why a price is unknown, as a ledger row keeps it: text of at most :data:`UNKNOWN_REASON_MAX` characters (a
    longer one cut, ending with an ellipsis); None for anything that is no text or is empty. Both paths that make
    rows (the hooks' :mod:`~aicost.ledger.capture`, the span :mod:`~aicost.ledger.exporter`) keep it so, so the
    two ledgers agree."""
    if type(reason) is not str or not reason:
        return None
    if len(reason) > UNKNOWN_REASON_MAX:
        return reason[:UNKNOWN_REASON_MAX - 1] + "\u2026"
    return reason


# A deferred call's reason (``aicost.usage.deferred``: the vendor queued the work and the call reported no usage,
# so nothing is priced on it). The core writes no ``aicost.price.unknown_reason`` for it; both paths that make rows
# give its row this one.
DEFERRED_REASON = ("deferred: the vendor queued the work (a background response or interaction returned "
                   "unfinished); this call reported no usage to price")


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


@dataclass(slots=True)
class LedgerRow:
    """One row of the ledger. ``span_id`` is its identity: writing the same span id twice stores it once."""

    span_id: str  # the call's span id (16 hex digits), or another id unique to this event
    kind: str  # CALL, CACHE_HIT or REFUSAL
    time: datetime  # when the call started, timezone-aware UTC
    trace_id: str | None = None  # 32 hex digits
    provider: str | None = None  # gen_ai.provider.name
    operation: str | None = None  # gen_ai.operation.name
    endpoint: str | None = None  # aicost.endpoint, e.g. "openai.chat.completions.create"
    request_model: str | None = None
    response_model: str | None = None
    service_tier: str | None = None  # the tier the call was priced at
    # Usage (see TOKEN_FIELDS)
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0
    reasoning_tokens: int = 0
    input_audio_tokens: int = 0
    output_audio_tokens: int = 0
    input_image_tokens: int = 0
    output_image_tokens: int = 0
    cache_read_image_tokens: int = 0
    cache_read_audio_tokens: int = 0
    input_characters: int = 0
    web_search_requests: int = 0
    audio_seconds: float | None = None  # audio billed by duration (whisper-1), as the vendor reported it
    estimated: bool = False  # a count (hence the cost) was computed locally, not reported by the vendor
    # Money (USD, exact)
    cost: Decimal | None = None  # the total; None = unknown price (never $0)
    cost_parts: dict[str, Decimal] = field(default_factory=dict)  # per class, as aicost.cost.<class>_usd; sum = cost
    price_known: bool = True
    price_source: str | None = None  # catalog version, or "override"
    price_model: str | None = None  # the catalog entry the call was priced by
    saved_cost: Decimal | None = None  # CACHE_HIT: what the original call cost
    stopped_cost: Decimal | None = None  # REFUSAL: the worst-case amount the refused call could have cost
    cache_name: str | None = None  # CACHE_HIT: the cached function
    budget: str | None = None  # REFUSAL: the budget name or policy rule that refused it
    # Attribution
    team: str | None = None
    feature: str | None = None
    user: str | None = None
    customer: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    run_id: str | None = None  # the aicost.feature unit of work the call ran in
    outcome: str | None = None  # that run's outcome, once it finished
    error_type: str | None = None
    duration_s: float | None = None
    # The vendor account billed (schema v2; joins the row to the vendor's bill, see docs/reconcile.md)
    vendor_project: str | None = None  # the OpenAI project the client was configured with, if any
    api_key_fingerprint: str | None = None  # aicost.integrations.identity.key_fingerprint of the key: never the key
    # Why the price is unknown (schema v10): the span's aicost.price.unknown_reason (unknown_reason_text), or
    # DEFERRED_REASON for a call whose cost is not recorded (aicost.usage.deferred: the span gives none); None when
    # it is known
    price_unknown_reason: str | None = None
    # Not stored: the row was made by aicost's in-process capture, its values already within the bounds
    # (:func:`within_bounds`), so the store does not check them again. Never spilled: a row read back is checked.
    _bounded: bool = field(default=False, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.time = _utc(self.time)

    @property
    def model(self) -> str | None:
        """The model the call is charged to: the one that answered, else the one asked for."""
        return self.response_model or self.request_model

    def group_value(self, key: str) -> str | None:
        """This row's value for a report's group-by key (see :data:`aicost.ledger.query.GROUP_KEYS`)."""
        if key == "model":
            return self.model
        if key.startswith("tag:"):
            return self.tags.get(key[4:])
        if key == "day":
            return self.time.strftime("%Y-%m-%d")
        if key == "hour":
            return self.time.strftime("%Y-%m-%dT%H:00Z")
        return getattr(self, key)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: Decimals as exact strings, the time as ISO 8601 (used by the spill file and JSON output)."""
        out: dict[str, Any] = {}
        for f in _ROW_DATA:
            value = getattr(self, f.name)
            if isinstance(value, Decimal):
                value = decimal_text(value)
            elif isinstance(value, datetime):
                value = value.isoformat()
            elif f.name == "cost_parts":
                value = {k: decimal_text(v) for k, v in value.items()}
            elif f.name == "tags":
                value = dict(value)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "LedgerRow":
        values = dict(data)
        values["time"] = datetime.fromisoformat(values["time"])
        for name in ("cost", "saved_cost", "stopped_cost"):
            if values.get(name) is not None:
                values[name] = Decimal(values[name])
        values["cost_parts"] = {k: Decimal(v) for k, v in (values.get("cost_parts") or {}).items()}
        values["tags"] = dict(values.get("tags") or {})
        return cls(**{k: v for k, v in values.items() if k in _ROW_FIELDS})


_ROW_DATA = tuple(f for f in dataclasses.fields(LedgerRow) if f.name != "_bounded")
_ROW_FIELDS = frozenset(f.name for f in _ROW_DATA)


@dataclass(slots=True)
class FeatureRun:
    """One finished ``aicost.feature(name)`` unit of work. ``cost`` is the known cost of the calls inside it."""

    run_id: str  # the unit's span id (16 hex digits), or a random id of the same shape without a span
    feature: str
    time: datetime  # when the unit ended, timezone-aware UTC
    outcome: str  # "succeeded", "failed", or the application's own label (set_outcome)
    team: str | None = None
    user: str | None = None
    customer: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    calls: int = 0
    cost: Decimal = Decimal(0)
    trace_id: str | None = None
    duration_s: float | None = None
    _bounded: bool = field(default=False, init=False, repr=False, compare=False)  # as LedgerRow's

    def __post_init__(self) -> None:
        self.time = _utc(self.time)

    @property
    def succeeded(self) -> bool:
        return self.outcome == SUCCEEDED

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in _RUN_DATA}
        out["time"] = self.time.isoformat()
        out["cost"] = decimal_text(self.cost)
        out["tags"] = dict(self.tags)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "FeatureRun":
        values = {k: v for k, v in data.items() if k in _RUN_FIELDS}
        values["time"] = datetime.fromisoformat(values["time"])
        values["cost"] = Decimal(values.get("cost") or 0)
        values["tags"] = dict(values.get("tags") or {})
        return cls(**values)


_RUN_DATA = tuple(f for f in dataclasses.fields(FeatureRun) if f.name != "_bounded")
_RUN_FIELDS = frozenset(f.name for f in _RUN_DATA)

_TEXTS = ("team", "feature", "user", "customer", "run_id", "outcome")  # a row's attribution and run texts
_RUN_TEXTS = ("team", "user", "customer")  # a run's optional ones (its feature and outcome are required)
# Tag names found to follow the tag name rule: a ledger's rows repeat a few (env, region...), so a row from elsewhere
# costs a lookup for each, not a match. Forgotten wholesale past 4,096 names.
_tag_names: set[str] = set()


def within_bounds(item: LedgerRow | FeatureRun) -> LedgerRow | FeatureRun:
    """``item`` as the ledger stores it: within the bounds aicost's in-process path holds every row to. The store
    applies it to every row and run it writes (:meth:`aicost.ledger.store.LedgerStore.prepare`), so a row from the
    span exporter (another service's aicost, or anything else that wrote the span) or one made by hand is bounded
    as a row the hooks made; those (``_bounded``) are returned as they are, unchecked: their values were checked
    when the application set them, or bounded when they came from upstream baggage.

    The bounds are those of attribution, as upstream baggage is held to them (:mod:`aicost.semconv`, beside the tag
    name rule, which :mod:`aicost.attribution` takes them from): team, feature, user, customer, the run id and the
    outcome are each a str of at most 256 characters (:func:`~aicost.semconv.bounded_value`), else None; tags keep
    the first 16 whose name is a tag name and whose value is such a str (:func:`~aicost.semconv.bounded_tags`; a
    name left out is logged once, never a value). A run's feature and outcome, which it cannot be without, raise
    ValueError instead (the store refuses that run alone). The reason a price is unknown is
    :func:`unknown_reason_text` (512 characters). Returns ``item`` itself when nothing changes, else a copy: the
    caller's row is left as it was."""
    if item._bounded:
        return item
    # The common case, a row within the bounds, checked in as few steps as Python allows (a plain loop: map() and
    # max() over the texts cost twice as much); anything else is made again by _bounded_copy
    if isinstance(item, LedgerRow):
        for text in (item.team, item.feature, item.user, item.customer, item.run_id, item.outcome):
            if text is not None and (type(text) is not str or len(text) > MAX_VALUE_LEN):
                return _bounded_copy(item)
        reason = item.price_unknown_reason
        if reason is not None and (type(reason) is not str or not 0 < len(reason) <= UNKNOWN_REASON_MAX):
            return _bounded_copy(item)
    else:
        for text in (item.feature, item.outcome):  # required: _bounded_copy raises
            if type(text) is not str or len(text) > MAX_VALUE_LEN:
                return _bounded_copy(item)
        for text in (item.team, item.user, item.customer):
            if text is not None and (type(text) is not str or len(text) > MAX_VALUE_LEN):
                return _bounded_copy(item)
    tags = item.tags
    if not tags:
        return item
    if len(tags) > MAX_OUTSIDE_TAGS:
        return _bounded_copy(item)
    for name, value in tags.items():
        if type(value) is not str or len(value) > MAX_VALUE_LEN:
            return _bounded_copy(item)
        if name not in _tag_names:
            if not is_tag_name(name):
                return _bounded_copy(item)
            if len(_tag_names) >= 4096:
                _tag_names.clear()
            _tag_names.add(name)
    return item


def _bounded_copy(item: LedgerRow | FeatureRun) -> LedgerRow | FeatureRun:
    """:func:`within_bounds` of an item that is not within them (or whose tags were not seen): a copy."""
    changes: dict[str, Any] = {}
    if isinstance(item, LedgerRow):
        for name in _TEXTS:
            text = getattr(item, name)
            if text is not None and bounded_value(text) is None:
                changes[name] = None
        reason = item.price_unknown_reason
        if reason is not None and unknown_reason_text(reason) is not reason:
            changes["price_unknown_reason"] = unknown_reason_text(reason)
    else:
        for name in ("feature", "outcome"):
            if bounded_value(getattr(item, name)) is None:
                raise ValueError(f"a feature run whose {name} is no text of at most {MAX_VALUE_LEN} characters")
        for name in _RUN_TEXTS:
            text = getattr(item, name)
            if text is not None and bounded_value(text) is None:
                changes[name] = None
    if item.tags:
        tags = bounded_tags(item.tags)
        if tags is not None:
            for name in item.tags:
                if not is_tag_name(name):
                    tag_name_left_out(name)
            changes["tags"] = tags
    return dataclasses.replace(item, **changes) if changes else item


def tag_name_left_out(name: object) -> None:
    """Log, once per name, that a tag whose name breaks :data:`aicost.semconv.TAG_NAME_RULE` is left out of a row."""
    log_once(f"ledger:tag-name:{name!r:.80}", logging.WARNING, "aicost ledger: tag name %r left out of the row (a "
             "tag name is %s)", name, TAG_NAME_RULE)
