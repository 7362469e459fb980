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
import hashlib
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Mapping

from .._log import log_once
from ..pricing.money import format_usd
from ..semconv import (MAX_ID_LEN, MAX_NAME_LEN, MAX_OUTSIDE_TAGS, MAX_REASON_LEN, MAX_VALUE_LEN, TAG_NAME_RULE,
                       bounded_tags, bounded_value, is_tag_name)

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
    "bounded_id",
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


# The longest reason a row keeps (``price_unknown_reason``: aicost.semconv.MAX_REASON_LEN). aicost's own sentences are
# at most about 300 characters (the longest name a catalog model or the hosted tools a call ran); a reason from
# elsewhere (an integration's ``ResponseMeta.unpriced``, a span another process exported, a hand-made row) is cut
# here, so no row holds unbounded text.
UNKNOWN_REASON_MAX = MAX_REASON_LEN


def _cut(text: str, limit: int) -> str:
    """``text`` if it is at most ``limit`` characters, else its first ``limit - 1`` and an ellipsis."""
    return text if len(text) <= limit else text[:limit - 1] + "\u2026"


def unknown_reason_text(reason: object) -> str | None:
    """Why a price is unknown, as a ledger row keeps it: text of at most :data:`UNKNOWN_REASON_MAX` characters (a
    longer one cut, ending with an ellipsis); None for anything that is no text or is empty. Both paths that make
    rows (the hooks' :mod:`~aicost.ledger.capture`, the span :mod:`~aicost.ledger.exporter`) keep it so, so the
    two ledgers agree."""
    if type(reason) is not str or not reason:
        return None
    return _cut(reason, UNKNOWN_REASON_MAX)


def bounded_id(value: object) -> object:
    """An id (a row's span or record id, a run id, a trace id) as a ledger row keeps it: a str of at most
    :data:`~aicost.semconv.MAX_ID_LEN` characters as it is; a longer one replaced by ``"sha256:"`` and the
    SHA-256 of its UTF-8 (64 hex digits): the same id always gives the same one, so a row written again (a span
    exported twice, a spill replayed) is still stored once, and two ids that share their first characters stay
    two rows, which a cut would have merged. Anything that is no str is returned as it is (the caller decides)."""
    if type(value) is not str or len(value) <= MAX_ID_LEN:
        return value
    return "sha256:" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


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
    # Not stored: the row was made by aicost's in-process capture, its attribution already within the bounds and its
    # other texts the application's own call's (:func:`within_bounds`), so the store does not check them again.
    # Never spilled: a row read back is checked.
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

# A row's texts by what happens past their bound (within_bounds says why)
_TEXTS = ("team", "feature", "user", "customer", "outcome")  # attribution and outcome: MAX_VALUE_LEN, else None
_NAMES = ("provider", "operation", "endpoint", "request_model", "response_model", "service_tier", "price_source",
          "price_model", "cache_name", "budget", "vendor_project", "api_key_fingerprint")  # MAX_NAME_LEN, else None
_IDS = ("span_id", "trace_id", "run_id")  # MAX_ID_LEN, else the digest (bounded_id)
# What within_bounds' quick check holds every text of a row to: one comparison a text (the bounds are equal today);
# a text past it but within its own bound is then found so by _bounded_copy, which changes nothing
_SHORTEST = min(MAX_VALUE_LEN, MAX_NAME_LEN, MAX_ID_LEN)
_RUN_TEXTS = ("team", "user", "customer")  # a run's optional ones (its feature and outcome are required)
# Tag names found to follow the tag name rule: a ledger's rows repeat a few (env, region...), so a row from elsewhere
# costs a lookup for each, not a match. Forgotten wholesale past 4,096 names.
_tag_names: set[str] = set()


def within_bounds(item: LedgerRow | FeatureRun) -> LedgerRow | FeatureRun:
    """``item`` as the ledger stores it: every text column within its bound (:mod:`aicost.semconv` defines them).
    The store applies it to every row and run it writes (:meth:`aicost.ledger.store.LedgerStore.prepare`), so a row
    from the span exporter (another service's aicost, or anything else that wrote the span) or one made by hand
    holds no unbounded text; those the hooks made (``_bounded``) are returned as they are, unchecked: their
    attribution was checked when the application set it, or bounded when it came from upstream baggage, and their
    other texts are the application's own call (the model it asked for, its client's project, its cache and budget
    names, aicost's endpoint and error type names) and what its vendor answered, kept as they are, as its own tags.

    What over-long means depends on what the column is for:

    * Attribution and outcome (team, feature, user, customer, outcome): a str of at most
      :data:`~aicost.semconv.MAX_VALUE_LEN` (256) characters (:func:`~aicost.semconv.bounded_value`), else None,
      as upstream baggage is held to them. Reports group by them: a cut value would be another team, or merge two.
    * Names (provider, operation, endpoint, request and response model, service tier, price source and model,
      cache name, budget, vendor project, key fingerprint): a str of at most :data:`~aicost.semconv.MAX_NAME_LEN`
      (256), else None, for the same reason: reports group by the model and provider, join by the project and
      fingerprint (reconcile), and a cut name would be one no catalog, vendor bill or budget knows. None is "not
      known", which every report shows as such; the spend stays. (The ``model`` column, the response model else
      the request model, then falls back as it does for a row without one.)
    * The error type: cut at :data:`~aicost.semconv.MAX_NAME_LEN`, ending with an ellipsis; None when it is no
      text. Its presence is what the rollups count as an error call: None would count a failed call as a
      success, while the cut text still says which error it began with.
    * The reason a price is unknown: :func:`unknown_reason_text` (cut at 512 characters, as aicost cuts its own).
    * Ids (the span or record id, the primary key; the run id; the trace id): a str of at most
      :data:`~aicost.semconv.MAX_ID_LEN` (256) as it is, a longer one replaced by its digest (:func:`bounded_id`).
      Not cut: a cut could make two rows one (two batch results whose record ids share their first 256
      characters, the second skipped as already stored) and not None: a row cannot be without its id, and a
      call's run id is what files it under its run (the run's id is digested the same way, so they still match)
      and gives it the run's outcome. The digest of the same id is always the same: the same span exported twice,
      or a spilled row replayed, is stored once. A run or trace id that is no text is None; a span id that is no
      text is left to the database, as before.
    * Tags: the first :data:`~aicost.semconv.MAX_OUTSIDE_TAGS` (16) whose name is a tag name and whose value is an
      attribution value (:func:`~aicost.semconv.bounded_tags`; a name left out is logged once, never a value).
    * What a row or run cannot be without (a row's kind, a run's feature and outcome) raises ValueError when it is
      no str within its bound (:data:`~aicost.semconv.MAX_NAME_LEN`, :data:`~aicost.semconv.MAX_VALUE_LEN`): the
      store refuses that row or run alone.

    Returns ``item`` itself when nothing changes, else a copy: the caller's row is left as it was."""
    if item._bounded:
        return item
    # The common case, a row within the bounds, checked in as few steps as Python allows (a plain loop over a tuple
    # of the attributes: map() and max() over them cost twice as much, operator.attrgetter half as much again);
    # anything else is made again by _bounded_copy
    if isinstance(item, LedgerRow):
        for text in (item.team, item.feature, item.user, item.customer, item.outcome, item.provider, item.operation,
                     item.endpoint, item.request_model, item.response_model, item.service_tier, item.price_source,
                     item.price_model, item.cache_name, item.budget, item.vendor_project, item.api_key_fingerprint,
                     item.error_type, item.span_id, item.trace_id, item.run_id):
            if text is not None and (type(text) is not str or len(text) > _SHORTEST):
                return _bounded_copy(item)
        text = item.kind
        if type(text) is not str or len(text) > MAX_NAME_LEN:
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
        for text in (item.run_id, item.trace_id):
            if text is not None and (type(text) is not str or len(text) > MAX_ID_LEN):
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
        if type(item.kind) is not str or len(item.kind) > MAX_NAME_LEN:
            raise ValueError(f"a row whose kind is no text of at most {MAX_NAME_LEN} characters")
        for name in _TEXTS:
            text = getattr(item, name)
            if text is not None and bounded_value(text) is None:
                changes[name] = None
        for name in _NAMES:
            text = getattr(item, name)
            if text is not None and (type(text) is not str or len(text) > MAX_NAME_LEN):
                changes[name] = None
        text = item.error_type
        if text is not None:
            bounded = _cut(text, MAX_NAME_LEN) if type(text) is str else None
            if bounded is not text:
                changes["error_type"] = bounded
        reason = item.price_unknown_reason
        if reason is not None and unknown_reason_text(reason) is not reason:
            changes["price_unknown_reason"] = unknown_reason_text(reason)
        ids = _IDS
    else:
        for name in ("feature", "outcome"):
            if bounded_value(getattr(item, name)) is None:
                raise ValueError(f"a feature run whose {name} is no text of at most {MAX_VALUE_LEN} characters")
        for name in _RUN_TEXTS:
            text = getattr(item, name)
            if text is not None and bounded_value(text) is None:
                changes[name] = None
        ids = ("run_id", "trace_id")
    for name in ids:
        text = getattr(item, name)
        bounded = bounded_id(text)
        if type(bounded) is not str and name != ids[0] and bounded is not None:  # the key itself stays as it is
            bounded = None
        if bounded is not text:
            changes[name] = bounded
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
