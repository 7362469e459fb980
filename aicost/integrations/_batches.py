"""Batch APIs (OpenAI ``batches``, Anthropic ``messages.batches``): what the two integrations share.

A batch is billed from its results, hours after the code that submitted it has moved on, and often read by
another process. So the attribution in force at submission travels with the batch:

* in the batch's own ``metadata`` where the vendor keeps one (OpenAI: up to 16 keys of at most 64 characters,
  values of at most 512): one key, ``aicost``, holding compact JSON (team, feature, user, customer, tags, the
  feature run). It never displaces the caller's metadata: a caller who sets ``aicost`` keeps theirs, and when the
  vendor's limits leave no room the batch goes without it (said once in the log);
* in this process's memory where it keeps none (Anthropic's Message Batches have no metadata, and each request's
  ``custom_id`` is the caller's key, which aicost does not rewrite): results read in the process that created the
  batch are attributed to the submitter; elsewhere, to the scope that reads them.

See docs/batches.md.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any, Mapping

from .. import _fork
from .. import semconv as s
from .._log import warn_once
from ..vendor import ResponseMeta

METADATA_KEY = "aicost"
# OpenAI's documented metadata limits (every object that takes ``metadata``).
MAX_KEYS, MAX_VALUE_LEN = 16, 512

_PREFIX = "aicost."
_FIELDS = ("team", "feature", "user", "customer")
_TAG = re.compile(r"tag\.[A-Za-z][A-Za-z0-9_.\-]{0,63}")
_RUN = re.compile(r"[0-9a-f]{16}")
_MAX_ENTRIES = 32  # 4 fields and at most 16 tags fit in 512 characters anyway; anything beyond is not ours
_MAX_VALUE = 256  # aicost.attribute's own limit


def encode(attribution: Mapping[str, str], run_id: str | None) -> str | None:
    """The ``aicost`` metadata value for an attribution and feature run, or None when there is nothing to carry."""
    data: dict[str, str] = {}
    for key, value in attribution.items():
        short = key[len(_PREFIX):] if key.startswith(_PREFIX) else None
        if short is not None and (short in _FIELDS or _TAG.fullmatch(short)) and isinstance(value, str):
            data[short] = value
    if run_id:
        data["run"] = run_id
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False) if data else None


def decode(value: Any) -> tuple[dict[str, str], str | None] | None:
    """(attribution as span attributes, feature run) from an ``aicost`` metadata value; None if it is not one.

    The value is read back from the vendor, and anyone with the account's key can write a batch's metadata: only
    the fields aicost writes are taken, bounded as ``aicost.attribute`` bounds them."""
    if not isinstance(value, str) or len(value) > MAX_VALUE_LEN:
        return None
    try:
        data = json.loads(value)
    except ValueError:
        return None
    if not isinstance(data, dict) or len(data) > _MAX_ENTRIES:
        return None
    attribution: dict[str, str] = {}
    run_id = None
    for key, item in data.items():
        if not isinstance(item, str) or not item or len(item) > _MAX_VALUE or not item.isprintable():
            continue
        if key == "run":
            run_id = item if _RUN.fullmatch(item) else None
        elif key in _FIELDS or _TAG.fullmatch(key):
            attribution[_PREFIX + key] = item
    return attribution, run_id


def with_attribution(metadata: Any, attribution: Mapping[str, str], run_id: str | None,
                     where: str) -> dict[str, str] | None:
    """The metadata to send instead of ``metadata`` (None: send it unchanged). The caller's keys always stay."""
    value = encode(attribution, run_id)
    if value is None:
        return None
    if metadata is None or type(metadata).__name__ in ("Omit", "NotGiven"):  # the SDK's "not given"
        metadata = {}
    elif not isinstance(metadata, Mapping):  # something the vendor will refuse: the caller's error, not ours
        return None
    if METADATA_KEY in metadata:  # the caller's own (a batch resubmitted with its original attribution): theirs wins
        return None
    if len(metadata) >= MAX_KEYS or len(value) > MAX_VALUE_LEN:  # the vendor would refuse the whole batch
        warn_once(f"batch:metadata-full:{where}",
                  "aicost: a %s batch's metadata has no room for aicost's attribution (%d of %d keys used, or the "
                  "attribution is longer than %d characters): its results will be attributed to the code that "
                  "reads them", where, len(metadata), MAX_KEYS, MAX_VALUE_LEN)
        return None
    return {**metadata, METADATA_KEY: value}


@dataclass(frozen=True, slots=True)
class BatchInfo:
    """What aicost knows of a batch when its results are read."""

    batch_id: str
    attribution: Mapping[str, str] | None  # None: unknown (the results are attributed where they are read)
    run_id: str | None
    source: str  # "metadata", "submitter" or "reader": where the attribution comes from (aicost.batch.attribution)
    endpoint: str | None = None  # the vendor's endpoint every request of the batch went to (OpenAI)
    done_ns: int = 0  # when the vendor finished the batch, if known

    def span_attributes(self) -> dict[str, Any]:
        return {s.AICOST_BATCH_ID: self.batch_id, s.AICOST_BATCH_ATTRIBUTION: self.source}


class Registry:
    """Batches this process has seen (created, looked up, listed), by batch id and by result file id. Bounded:
    the oldest are forgotten first (a forgotten batch's results are attributed where they are read)."""

    def __init__(self, limit: int = 4096) -> None:
        self._items: dict[str, Any] = {}
        self._limit = limit
        self._lock = _fork.lock()

    def put(self, key: str, value: Any) -> None:
        with self._lock:
            self._items.pop(key, None)
            if len(self._items) >= self._limit:
                del self._items[next(iter(self._items))]
            self._items[key] = value

    def get(self, key: Any) -> Any:
        return self._items.get(key) if isinstance(key, str) else None

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


def billed_at_batch_rates(meta: ResponseMeta) -> ResponseMeta:
    """A succeeded result as the core prices it: at the batch tier, and with an unknown cost (never an estimate:
    the request that would anchor one is in the batch's input, which aicost does not read) when its usage is
    missing or fails validation."""
    if meta.usage is None or meta.usage.invalid is not None:
        meta.unpriced = "the batch result's usage is missing or failed validation"
    meta.service_tier = "batch"
    return meta


def result_key(*parts: str) -> str:
    """A result's identity (16 hex digits, the ledger's row id): the same parts give the same key in any process."""
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:16]
