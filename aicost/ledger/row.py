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
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Mapping

from ..pricing.money import format_usd

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
# ``ResponseMeta.unpriced``, a span another process exported) is cut here, so no row holds unbounded text.
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
    # Why the price is unknown (schema v10): the span's aicost.price.unknown_reason (unknown_reason_text); None
    # when it is known, and for a call whose cost is not recorded (aicost.usage.deferred: the span gives none)
    price_unknown_reason: str | None = None

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
        for f in dataclasses.fields(self):
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


_ROW_FIELDS = frozenset(f.name for f in dataclasses.fields(LedgerRow))


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

    def __post_init__(self) -> None:
        self.time = _utc(self.time)

    @property
    def succeeded(self) -> bool:
        return self.outcome == SUCCEEDED

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
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


_RUN_FIELDS = frozenset(f.name for f in dataclasses.fields(FeatureRun))
