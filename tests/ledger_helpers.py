"""Helpers for the ledger tests: ledgers on real SQLite and PostgreSQL, and a FOCUS 1.3 validator.

The validator is written from the FOCUS specification's column requirements (Cost and Usage dataset), not from
aicost's exporter: which columns must be present, their data types and formats, where null is not allowed, the
allowed values, and the cross-column rules that apply to usage charges. It checks a CSV or Parquet file and returns
every violation found, so a failing test says exactly which rule broke.
"""

from __future__ import annotations

import csv
import decimal
import io
import itertools
import json
import re
import sqlite3
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

# --- FOCUS 1.3 Cost and Usage: the columns a usage-only data generator with price lists, SKUs and tags provides
MANDATORY = {  # column: nullable
    "BilledCost": False, "BillingAccountId": False, "BillingAccountName": True, "BillingCurrency": False,
    "BillingPeriodEnd": False, "BillingPeriodStart": False, "ChargeCategory": False, "ChargeClass": True,
    "ChargeDescription": True, "ChargePeriodEnd": False, "ChargePeriodStart": False, "ContractedCost": False,
    "EffectiveCost": False, "HostProviderName": False, "InvoiceIssuerName": False, "ListCost": False,
    "ProviderName": False, "PublisherName": False, "ServiceCategory": False, "ServiceName": False,
    "ServiceProviderName": False,
}
# Conditional / recommended columns that apply when the provider measures usage, publishes prices, SKUs and tags.
CONDITIONAL = {
    "BillingAccountType": True, "ChargeFrequency": True, "ConsumedQuantity": True, "ConsumedUnit": True,
    "ContractedUnitPrice": True, "ListUnitPrice": True, "PricingCategory": True, "PricingCurrency": True,
    "PricingQuantity": True, "PricingUnit": True, "ServiceSubcategory": False, "SkuId": True, "SkuMeter": True,
    "SkuPriceDetails": True, "SkuPriceId": True, "Tags": True,
}
TYPES = {
    **{c: "decimal" for c in ("BilledCost", "ContractedCost", "EffectiveCost", "ListCost", "ConsumedQuantity",
                              "ContractedUnitPrice", "ListUnitPrice", "PricingQuantity")},
    **{c: "datetime" for c in ("BillingPeriodEnd", "BillingPeriodStart", "ChargePeriodEnd", "ChargePeriodStart")},
    **{c: "json" for c in ("SkuPriceDetails", "Tags")},
}
ALLOWED = {
    "ChargeCategory": {"Usage", "Purchase", "Tax", "Credit", "Adjustment"},
    "ChargeClass": {"Correction"},
    "ChargeFrequency": {"One-Time", "Recurring", "Usage-Based"},
    "PricingCategory": {"Standard", "Dynamic", "Committed", "Other"},
    "ServiceCategory": {"AI and Machine Learning", "Analytics", "Business Applications", "Compute", "Databases",
                        "Developer Tools", "Multicloud", "Identity", "Integration", "Internet of Things",
                        "Management and Governance", "Media", "Migration", "Mobile", "Networking", "Security",
                        "Storage", "Web", "Other"},
}
AI_SUBCATEGORIES = {"AI Platforms", "Bots", "Generative AI", "Machine Learning", "Natural Language Processing",
                    "Other (AI and Machine Learning)"}
SKU_PRICE_PROPERTIES = {"CoreCount", "DiskMaxIops", "DiskSpace", "DiskType", "GpuCount", "InstanceType",
                        "InstanceSeries", "MemorySize", "NetworkMaxIops", "NetworkMaxThroughput", "OperatingSystem",
                        "Redundancy", "StorageClass"}
_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")  # NumericFormat: no thousands separators, symbols or exponents
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")  # DateTimeFormat: ISO 8601, UTC, "Z"
_CURRENCY = re.compile(r"^[A-Z]{3}$")  # CurrencyCodeFormat: ISO 4217
# Products checked exactly: at the default 28 digits, a 60-digit unit price x quantity rounds back to the cost.
_EXACT = decimal.Context(prec=1000)


def _read(path: Path) -> tuple[list[str], list[dict[str, Any]], str]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        for field in table.schema:
            kind = TYPES.get(field.name)
            text = str(field.type)
            if kind == "decimal" and not text.startswith("decimal"):
                raise AssertionError(f"{field.name}: Parquet type {text}, FOCUS Decimal expected")
            if kind == "datetime" and not (text.startswith("timestamp") and "UTC" in text):
                raise AssertionError(f"{field.name}: Parquet type {text}, FOCUS DateTime (UTC) expected")
        return table.column_names, table.to_pylist(), "parquet"
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        rows = [{k: (v if v != "" else None) for k, v in row.items()} for row in reader]
        return list(reader.fieldnames or []), rows, "csv"


def _decimal(value: Any) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if not isinstance(value, str) or not _NUMBER.match(value):
        raise ValueError(f"not a FOCUS decimal: {value!r}")
    return Decimal(value)


def _datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        if value.utcoffset() is None or value.utcoffset().total_seconds() != 0:
            raise ValueError(f"not UTC: {value!r}")
        return value
    if not isinstance(value, str) or not _DATETIME.match(value):
        raise ValueError(f"not a FOCUS date/time: {value!r}")
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


def _json_object(value: Any) -> dict:
    parsed = json.loads(value) if isinstance(value, str) else value
    if not isinstance(parsed, dict):
        raise ValueError(f"not a JSON object: {value!r}")
    return parsed


def validate_focus(path: str | Path) -> list[str]:
    """Every FOCUS rule the file breaks (empty list: conformant for the columns above)."""
    path = Path(path)
    columns, rows, kind = _read(path)
    problems: list[str] = []
    for name in [*MANDATORY, *CONDITIONAL]:
        if name not in columns:
            problems.append(f"missing column {name}")
    custom_seen = False
    for name in columns:
        if name.startswith("x_"):
            custom_seen = True
        elif name not in MANDATORY and name not in CONDITIONAL:
            problems.append(f"column {name}: not a FOCUS column and not prefixed x_")
        elif custom_seen:
            problems.append(f"column {name}: FOCUS columns must come before custom x_ columns")
    for n, row in enumerate(rows, start=1):
        where = f"row {n}"
        parsed: dict[str, Any] = {}
        for name, nullable in {**MANDATORY, **CONDITIONAL}.items():
            if name not in row:
                continue
            value = row[name]
            if value is None:
                if not nullable:
                    problems.append(f"{where}: {name} must not be null")
                continue
            try:
                t = TYPES.get(name)
                parsed[name] = (_decimal(value) if t == "decimal" else _datetime(value) if t == "datetime"
                                else _json_object(value) if t == "json" else value)
            except (ValueError, InvalidOperation, json.JSONDecodeError) as exc:
                problems.append(f"{where}: {name}: {exc}")
                continue
            if t is None and not isinstance(value, str):
                problems.append(f"{where}: {name} must be a string, got {type(value).__name__}")
            allowed = ALLOWED.get(name)
            if allowed is not None and value not in allowed:
                problems.append(f"{where}: {name} {value!r} is not an allowed value")
        for name in ("BillingCurrency", "PricingCurrency"):
            if row.get(name) is not None and not _CURRENCY.match(str(row[name])):
                problems.append(f"{where}: {name} {row[name]!r} is not an ISO 4217 code")
        if row.get("ServiceSubcategory") is not None and row.get("ServiceCategory") == "AI and Machine Learning" \
                and row["ServiceSubcategory"] not in AI_SUBCATEGORIES:
            problems.append(f"{where}: ServiceSubcategory {row['ServiceSubcategory']!r} is not under its category")
        start, end = parsed.get("ChargePeriodStart"), parsed.get("ChargePeriodEnd")
        if start and end and not end > start:
            problems.append(f"{where}: ChargePeriodEnd must be after ChargePeriodStart")
        b_start, b_end = parsed.get("BillingPeriodStart"), parsed.get("BillingPeriodEnd")
        if b_start and b_end and start and end and not (b_start <= start and end <= b_end):
            problems.append(f"{where}: the charge period must lie within the billing period")
        usage = row.get("ChargeCategory") == "Usage" and row.get("ChargeClass") != "Correction"
        if usage:
            for name in ("ConsumedQuantity", "ConsumedUnit", "PricingQuantity", "PricingUnit", "ListUnitPrice",
                         "ContractedUnitPrice", "PricingCategory", "SkuId", "SkuPriceId"):
                if name in columns and row.get(name) is None:
                    problems.append(f"{where}: {name} must not be null for a Usage charge")
        q = parsed.get("PricingQuantity")
        for unit_price, cost in (("ListUnitPrice", "ListCost"), ("ContractedUnitPrice", "ContractedCost")):
            if q is not None and parsed.get(unit_price) is not None and cost in parsed:
                if _EXACT.multiply(parsed[unit_price], q) != parsed[cost]:
                    problems.append(f"{where}: {cost} must equal {unit_price} x PricingQuantity")
        if row.get("SkuPriceId") is None and row.get("SkuPriceDetails") is not None:
            problems.append(f"{where}: SkuPriceDetails must be null when SkuPriceId is null")
        for key in (parsed.get("SkuPriceDetails") or {}):
            if key not in SKU_PRICE_PROPERTIES and not key.startswith("x_"):
                problems.append(f"{where}: SkuPriceDetails key {key!r} is neither FOCUS-defined nor x_-prefixed")
        if len(problems) > 50:
            problems.append("... (stopped after 50 problems)")
            break
    return problems


# ------------------------------------------------------------------------------------------------ ledgers
def fresh_pg_database(server_url: str) -> str:
    """A new, empty database on the test server (each test its own ledger)."""
    import uuid

    import psycopg

    name = f"ledger_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True) as conn:  # the server fixture waited until it accepts
        conn.execute(f"CREATE DATABASE {name}")
    return server_url.rsplit("/", 1)[0] + "/" + name


# -- an independent sum of ledger rows in Python, that the tests compare the SQL rollups and the cube with --------
def new_sums() -> dict:
    """Every measure of a group at zero, by the names :func:`add_row`, :func:`add_run` and :func:`group_sums` use."""
    from aicost.ledger.row import TOKEN_FIELDS

    return {"cost": Decimal(0), "calls": 0, "unknown": 0, "estimated": 0, "errors": 0,
            "tokens": {f: 0 for f in TOKEN_FIELDS}, "hits": 0, "saved": Decimal(0), "refusals": 0,
            "stopped": Decimal(0), "runs": 0, "succeeded": 0}


def add_row(sums: dict, row: Any) -> None:
    """What one ledger row adds: a call its count, cost and tokens; a cache hit what it saved; a refusal what it
    stopped."""
    from aicost.ledger import CACHE_HIT, CALL, REFUSAL
    from aicost.ledger.row import TOKEN_FIELDS

    if row.kind == CALL:
        sums["calls"] += 1
        sums["unknown"] += row.cost is None
        sums["cost"] += row.cost or 0
        sums["estimated"] += row.estimated
        sums["errors"] += bool(row.error_type)
        for f in TOKEN_FIELDS:
            sums["tokens"][f] += getattr(row, f)
    elif row.kind == CACHE_HIT:
        sums["hits"] += 1
        sums["saved"] += row.saved_cost or 0
    elif row.kind == REFUSAL:
        sums["refusals"] += 1
        sums["stopped"] += row.stopped_cost or 0


def add_run(sums: dict, run: Any) -> None:
    sums["runs"] += 1
    sums["succeeded"] += run.outcome == "succeeded"


def group_sums(group: Any) -> dict:
    """A report group's measures by the names of :func:`new_sums`."""
    return {"cost": group.cost, "calls": group.calls, "unknown": group.unknown_cost_calls,
            "estimated": group.estimated_calls, "errors": group.error_calls, "tokens": group.tokens,
            "hits": group.cache_hits, "saved": group.saved_cost, "refusals": group.refusals,
            "stopped": group.stopped_cost, "runs": group.runs, "succeeded": group.succeeded_runs}


# --- reports against the raw rows, summed in Python (the cube's and the pairs' tests)
# What a ledger of schema 5 lacks (with its aicost_schema rows of version 6 and later deleted, it is one; the
# migrations to 6 and 7 then make these tables again)
DROP_PAIRS = ("DROP TABLE aicost_rollup_pair", "DROP TABLE aicost_rollup_pair_mark")
# What a ledger of schema 9 or before lacks (the migration to 10 adds it again, empty)
DROP_UNKNOWN_REASON = "ALTER TABLE aicost_ledger DROP COLUMN price_unknown_reason"


def item_values(item, key):
    """The groups of ``key`` a row or run is in: one, but for a tag: ``tag``, one per ``name=value`` of its tags
    (none without tags); ``tag:<name>``, that tag's value (none without it)."""
    if key == "day":
        return [item.time.strftime("%Y-%m-%d")]
    if key == "hour":
        return [item.time.strftime("%Y-%m-%dT%H:00Z")]
    if key == "tag":
        return [f"{name}={value}" for name, value in (item.tags or {}).items()]
    if key.startswith("tag:"):
        return [item.tags[key[4:]] or None] if key[4:] in (item.tags or {}) else []
    return [getattr(item, key, None) or None]  # a run has no model or provider


def python_sums(store, start, end, keys, where=None):
    """Every measure per group of ``keys``, summed in Python from the rows and runs read back. Runs count only
    when neither model nor provider is grouped or filtered on (a run has neither), as in every report."""
    where = where or {}
    out = {}
    for r in store.rows(start, end, where=where):
        for group in itertools.product(*(item_values(r, k) for k in keys)):
            add_row(out.setdefault(group, new_sums()), r)
    if not {"model", "provider"} & {*keys, *where}:
        for run in store.runs(start, end, where=where):
            for group in itertools.product(*(item_values(run, k) for k in keys)):
                add_run(out.setdefault(group, new_sums()), run)
    return out


def spend_sums(store, start, end, keys, where=None):
    from aicost.ledger import spend

    return {tuple(g.key[k] for k in keys): group_sums(g) for g in spend(store, start, end, keys, where)}


def sample_periods(first, days, rng, n=2, shortest=3700):
    """Periods over a ledger of ``days`` days from ``first``: whole days, whole hours, and ``n`` random ones of at
    least ``shortest`` seconds (edges inside hours; under an hour, both edges inside one)."""
    midnight = first.replace(hour=0, minute=0, second=0, microsecond=0)
    periods = [(midnight, midnight + timedelta(days=days)),  # whole days
               (midnight + timedelta(hours=5), midnight + timedelta(days=days - 1, hours=7))]  # whole hours
    for _ in range(n):  # minutes inside hours at both edges
        a = first + timedelta(seconds=rng.randrange(0, days * 86400))
        periods.append((a, a + timedelta(seconds=rng.randrange(shortest, 2 * 86400))))
    return periods


class Reads:
    """The SQL (and parameters) of every query a store runs for a report (both dialects fetch sums through
    ``_fetch``)."""

    def __init__(self, store, monkeypatch):
        self.sql: list[str] = []
        self.params: list = []
        fetch = store._fetch

        def recording(sql, params):
            self.sql.append(sql)
            self.params.extend(params)
            return fetch(sql, params)

        monkeypatch.setattr(store, "_fetch", recording)

    def tables(self) -> set[str]:
        text = " ".join(self.sql)
        return {t for t in ("aicost_rollup_cube", "aicost_rollup ", "aicost_ledger", "aicost_runs") if t in text}


def run_sql(url, statements):
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url[len("sqlite:///"):])
        for s in statements:
            conn.execute(s)
        conn.commit()
        conn.close()
    else:
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            for s in statements:
                conn.execute(s)


def waiting_for_the_write_lock(url, probe, store):
    """Wait until ``store`` waits for the ledger's write lock held by another transaction. PostgreSQL: its
    session is seen waiting for the advisory lock (no guess at timing). SQLite: no such view; a moment."""
    if url.startswith("sqlite"):
        time.sleep(0.3)
        return
    pid = store._conn.info.backend_pid
    for _ in range(2000):
        if probe._fetch("SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND pid = %s",
                        [pid])[0][0]:
            return
        time.sleep(0.005)
    raise AssertionError("the second writer never waited for the write lock")


def answers(monkeypatch, method):
    """Whether each call of ``LedgerStore.<method>`` (a path that may decline: ``_sum_joined``, ``_sum_added``)
    answered (True) or returned None (its caller then sums as usual), in call order."""
    from aicost.ledger import store as store_module

    answered = []
    real = getattr(store_module.LedgerStore, method)

    def spy(self, *args, **kwargs):
        found = real(self, *args, **kwargs)
        answered.append(found is not None)
        return found

    monkeypatch.setattr(store_module.LedgerStore, method, spy)
    return answered


def sum_all_pairs(store, max_rows=None, until=None):
    """Sum every stored row into the pair cells (to ``until``, by default the summing's own end), chunk by chunk as
    the writer does: one ``compact_pairs`` sums at most to the next midnight."""
    while store.compact_pairs(max_rows=max_rows, until=until):
        pass


def assert_cell_sets_nest(store):
    """The invariant the pair join rests on (``store._sum_joined`` gives a set no arm of its own where an earlier
    set holds it): every pair cell set holding an earlier part of another set's rows (``store._holds_before``: a
    window prefix and a shorter one from the same day, a day's cells and its hour prefixes, two hour prefixes of a
    day) holds none of the other's pairs that the other lacks. Summing, copies, late rows and replays only add
    cells; a pair in the shorter set and not in the longer would be left out of every report reading both."""
    from aicost.ledger.schema import PAIR_TABLE
    from aicost.ledger.store import _holds_before, parse_ts

    pairs: dict[tuple[int, datetime], set] = {}
    for days, bucket, *pair in store._fetch(f"SELECT days, bucket, dim_a, dim_b, value_a, value_b FROM {PAIR_TABLE}",
                                            []):
        pairs.setdefault((days, parse_ts(bucket)), set()).add(tuple(pair))
    nested = [(longer, shorter) for longer in pairs for shorter in pairs if _holds_before(longer, shorter)]
    for longer, shorter in nested:
        missing = pairs[shorter] - pairs[longer]
        assert not missing, (longer, shorter, sorted(missing)[:3])
    return len(nested)


def failed_on_one_line(argv: list[str], ledger: str) -> str:
    """Run ``aicost <argv[0]> --ledger <ledger> <argv[1:]>`` in-process, which must fail as a ledger it cannot read
    fails: exit status 2, nothing on stdout, one line on stderr, returned for the caller's own checks."""
    from aicost.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = main([argv[0], "--ledger", ledger, *argv[1:]], out=out, err=err)
    message = err.getvalue()
    assert code == 2, message
    assert out.getvalue() == ""
    assert message.count("\n") == 1 and message.endswith("\n"), message
    return message
