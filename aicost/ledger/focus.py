"""The ledger as a FOCUS dataset (FinOps Open Cost and Usage Specification 1.3, Cost and Usage), CSV or Parquet.

So that FinOps tools that ingest FOCUS (the cloud bills of AWS, Azure and Google Cloud already come in it) can load
LLM spend next to the cloud bill. One FOCUS row per ledger call and **token class**: a chat call with input,
cached input and output tokens is three charges, each with its exact cost, quantity and unit price, as a cloud bill
itemises each meter. Mapping (docs/ledger.md has the full table):

* ``BilledCost`` = ``EffectiveCost`` = ``ListCost`` = ``ContractedCost``: the exact cost of that class of the
  call (aicost prices at list price, or at your own contracted price from a price file; it has no separate
  invoice to reconcile against, so the four are one number).
* ``ConsumedQuantity`` / ``ConsumedUnit``: the tokens of that class ("Tokens"; "Characters" for per-character
  speech, "Requests" for per-request items); ``PricingQuantity`` / ``PricingUnit`` the same, and
  ``ListUnitPrice`` = ``ContractedUnitPrice`` the exact per-unit rate (cost / quantity), so ``ListCost =
  ListUnitPrice x PricingQuantity`` exactly. A class billed at more than one rate (a step-priced call with a step
  over a long-context band) has their average; when that is not exact in 24 decimals, it is one request at its cost
  (``PricingQuantity`` 1, ``PricingUnit`` "Requests"; its ``SkuPriceId`` ends in ``/per-request``): the ledger
  keeps each class's sum, not its split by rate, and a rounded rate would break the identity.
* ``ChargePeriodStart`` / ``End``: the UTC hour of the call; ``BillingPeriodStart`` / ``End``: its UTC month.
* ``ServiceCategory`` "AI and Machine Learning", ``ServiceSubcategory`` "Generative AI", ``ServiceName`` and
  ``ServiceProviderName`` from the provider (OpenAI, Anthropic, Azure OpenAI, Azure AI Foundry, Amazon Bedrock,
  Vertex AI, Gemini API).
* ``SkuId`` provider/model, ``SkuPriceId`` provider/model/tier/class, ``SkuMeter`` the class, and
  ``SkuPriceDetails`` {x_Model, x_TokenClass, x_ServiceTier}.
* ``Tags``: the attribution (team, feature, user, customer and every aicost tag), user-defined keys.
* ``x_`` columns for what FOCUS lacks: x_Provider, x_Model, x_RequestModel, x_TokenClass, x_ServiceTier,
  x_Estimated, x_PriceSource, x_Operation, x_RunId, x_Outcome, x_TraceId, x_SpanId.

A CSV's string cells that a spreadsheet would run as a formula get a leading ``'`` (:mod:`.csvtext`); numbers never.
The file is written under a temporary name and renamed once complete: a failed export leaves no partial file.

Not exported, and counted in the result and said in its summary (the command's output): calls whose price is
unknown (FOCUS cost columns cannot be null and an unknown price is never $0; ``aicost report`` counts them), cache
hits and refusals (no money was billed), and calls that billed nothing (a rejected request: no charge). So the
ledger's ``price_unknown_reason`` has no ``x_`` column: every charge exported has a known price, and the column
would always be empty (the reasons are in the ledger, for the calls the summary says are left out).
"""

from __future__ import annotations

import contextlib
import csv
import decimal
import functools
import json
import os
import secrets
import sys
import time
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Callable, Iterator, TextIO

from ..errors import ConfigurationError
from ..pricing.cost import MONEY
from ..pricing.money import private_context
from .csvtext import csv_text
from .days import HOUR, month_of
from .row import CALL, LedgerRow, decimal_text
from .store import LedgerStore

__all__ = ["FOCUS_VERSION", "COLUMNS", "ExportResult", "focus_rows", "export_focus"]

FOCUS_VERSION = "1.3"

# (column, type) in output order: FOCUS columns first, then custom x_ columns (the spec's ordering rule).
# Types: decimal, datetime, string, json, bool.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("BilledCost", "decimal"),
    ("BillingAccountId", "string"),
    ("BillingAccountName", "string"),
    ("BillingAccountType", "string"),
    ("BillingCurrency", "string"),
    ("BillingPeriodEnd", "datetime"),
    ("BillingPeriodStart", "datetime"),
    ("ChargeCategory", "string"),
    ("ChargeClass", "string"),
    ("ChargeDescription", "string"),
    ("ChargeFrequency", "string"),
    ("ChargePeriodEnd", "datetime"),
    ("ChargePeriodStart", "datetime"),
    ("ConsumedQuantity", "decimal"),
    ("ConsumedUnit", "string"),
    ("ContractedCost", "decimal"),
    ("ContractedUnitPrice", "decimal"),
    ("EffectiveCost", "decimal"),
    ("HostProviderName", "string"),
    ("InvoiceIssuerName", "string"),
    ("ListCost", "decimal"),
    ("ListUnitPrice", "decimal"),
    ("PricingCategory", "string"),
    ("PricingCurrency", "string"),
    ("PricingQuantity", "decimal"),
    ("PricingUnit", "string"),
    ("ProviderName", "string"),  # deprecated in 1.3 (ServiceProviderName), still required
    ("PublisherName", "string"),  # deprecated in 1.3, kept for 1.0-1.2 consumers
    ("ServiceCategory", "string"),
    ("ServiceName", "string"),
    ("ServiceProviderName", "string"),
    ("ServiceSubcategory", "string"),
    ("SkuId", "string"),
    ("SkuMeter", "string"),
    ("SkuPriceDetails", "json"),
    ("SkuPriceId", "string"),
    ("Tags", "json"),
    ("x_Provider", "string"),
    ("x_Model", "string"),
    ("x_RequestModel", "string"),
    ("x_TokenClass", "string"),
    ("x_ServiceTier", "string"),
    ("x_Estimated", "bool"),
    ("x_PriceSource", "string"),
    ("x_Operation", "string"),
    ("x_RunId", "string"),
    ("x_Outcome", "string"),
    ("x_TraceId", "string"),
    ("x_SpanId", "string"),
)
COLUMN_NAMES = tuple(name for name, _ in COLUMNS)
# The decimal columns that count units (tokens, characters, requests), not dollars: an error names them so.
_QUANTITIES = frozenset({"ConsumedQuantity", "PricingQuantity"})

# gen_ai.provider.name -> (ServiceProviderName, ServiceName, HostProviderName)
_PROVIDERS = {
    "openai": ("OpenAI", "OpenAI API", "OpenAI"),
    "anthropic": ("Anthropic", "Claude API", "Anthropic"),
    "azure.ai.openai": ("Microsoft", "Azure OpenAI", "Microsoft"),
    "azure.ai.inference": ("Microsoft", "Azure AI Foundry", "Microsoft"),
    "aws.bedrock": ("Amazon Web Services", "Amazon Bedrock", "Amazon Web Services"),
    "gcp.vertex_ai": ("Google Cloud", "Vertex AI", "Google Cloud"),
    "gcp.gemini": ("Google", "Gemini API", "Google"),
}

# Cost part -> (ConsumedUnit, description); quantities come from _quantity.
_UNITS = {
    "input_characters": ("Characters", "input characters"),
    "web_search": ("Requests", "web search requests"),
    "request": ("Requests", "requests"),
}
_SUB_INFERENCE = ("advisor", "image_generation", "svg")  # parts priced at another model: one request each


def _quantity(row: LedgerRow, part: str) -> int:
    """The units of ``part`` in the call, by the subset rules of aicost.usage (each token counted once)."""
    if part == "input":
        return max(0, row.input_tokens - row.cache_read_tokens - row.cache_write_tokens - row.input_audio_tokens
                   - row.input_image_tokens)
    if part == "cache_read":
        return max(0, row.cache_read_tokens - row.cache_read_image_tokens - row.cache_read_audio_tokens)
    if part == "cache_write":
        return max(0, row.cache_write_tokens - row.cache_write_1h_tokens)
    if part == "output":
        return max(0, row.output_tokens - row.output_audio_tokens - row.output_image_tokens - row.reasoning_tokens)
    if part == "web_search":
        return row.web_search_requests
    if part in ("request", *_SUB_INFERENCE):
        return 1
    return int(getattr(row, f"{part}_tokens", 0) or getattr(row, part, 0) or 0)



# A unit price is the part's cost divided by its units, exactly or not at all (MONEY traps Inexact), and held to the
# decimals Parquet's decimal128(38, 24) keeps, so the CSV and the Parquet file of a ledger carry the same charges.
_PLACES = 24
_QUANTUM = Decimal(f"1E-{_PLACES}")  # from text: no context rounds it, the importing thread's neither
# The Parquet file's amounts are quantized to those decimals in a context of aicost's own that rounds (Inexact not
# trapped): an amount with more decimals is then aicost's own error below, whatever the host's contexts trap.
_PARQUET = private_context(60, traps=[decimal.InvalidOperation])
_PARQUET_BOUND = Decimal("1E14")  # decimal128(38, 24): 38 digits, 24 of them decimals, so amounts below 10^14
PER_REQUEST = "per-request"  # the last segment of the SkuPriceId of a part with no exact unit rate (_unit_price)
_JSON = json.JSONEncoder(separators=(",", ":"), sort_keys=True, ensure_ascii=False)


@functools.lru_cache(maxsize=4096)
def _sku_details(model: str, tier: str, part: str) -> str:
    return _JSON.encode({"x_Model": model, "x_ServiceTier": tier, "x_TokenClass": part})


@functools.lru_cache(maxsize=4096)
def _datetime_text(value: datetime) -> str:
    """FOCUS date/time text; charges share their hour and month, so each is formatted once."""
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def _unit_price(cost: Decimal, quantity: int) -> Decimal | None:
    """``cost / quantity`` when that is exact in at most 24 decimals, so ``ListUnitPrice x PricingQuantity =
    ListCost`` holds exactly; else None. A part priced at one rate always divides (its cost is quantity x rate); one
    billed at more than one rate may not: a step-priced call with one step over a long-context band bills its
    ``input`` tokens partly at $3/M and partly at $6/M, and 1.260027 / 210,008 has no end. (The ledger keeps each
    part's sum, not its split by rate, so the rates cannot be itemised.)"""
    try:
        price = MONEY.divide(cost, quantity)
        MONEY.quantize(price, _QUANTUM)  # past 24 decimals: Inexact (trapped), caught below
        return price
    except (decimal.Inexact, decimal.InvalidOperation):
        return None


def focus_rows(row: LedgerRow, *, billing_account: str | None = None) -> list[dict[str, Any]]:
    """The FOCUS charges of one ledger row (none for a cache hit, a refusal, an unknown price, or $0)."""
    if row.kind != CALL or row.cost is None or not row.price_known:
        return []
    provider = row.provider or "unknown"
    service_provider, service_name, host = _PROVIDERS.get(provider, (provider, provider, provider))
    model = row.model or "unknown"
    tier = row.service_tier or "standard"
    charge_start = row.time.replace(minute=0, second=0, microsecond=0)
    period_start, period_end = month_of(row.time)
    tags: dict[str, Any] = {k: v for k, v in (("team", row.team), ("feature", row.feature), ("user", row.user),
                                                 ("customer", row.customer)) if v is not None}
    tags.update(row.tags)
    tags_json = _JSON.encode(tags) if tags else None
    parts = row.cost_parts or ({"input": row.cost} if row.cost else {})
    out = []
    for part, cost in parts.items():
        if not cost:
            continue
        unit, what = _UNITS.get(part) or (("Requests", f"{part} requests") if part in _SUB_INFERENCE
                                          else ("Tokens", f"{part.replace('_', ' ')} tokens"))
        quantity = _quantity(row, part)
        if quantity <= 0:
            quantity, unit = 1, "Requests"  # a charge whose units the ledger does not hold: one request
        unit_price = _unit_price(cost, quantity)
        pricing_quantity, pricing_unit, description = quantity, unit, f"{model}: {what} ({tier} tier)"
        sku_price_id = f"{provider}/{model}/{tier}/{part}"
        if unit_price is None:
            # No exact unit rate (billed at more than one rate, which the ledger does not itemise, or at a rate
            # finer than 24 decimals): one request at its exact cost (FOCUS needs a unit price on a usage charge,
            # and the identity with ListCost), its tokens still the consumed quantity; never a rounded rate. Said
            # in the description and the price id.
            pricing_quantity, pricing_unit, unit_price = 1, "Requests", cost
            description = f"{model}: {what} ({tier} tier; no exact unit rate, priced per request)"
            sku_price_id = f"{sku_price_id}/{PER_REQUEST}"
        out.append({
            "BilledCost": cost,
            "BillingAccountId": billing_account or provider,
            "BillingAccountName": billing_account or service_provider,
            "BillingAccountType": "Billing Account",
            "BillingCurrency": "USD",
            "BillingPeriodEnd": period_end,
            "BillingPeriodStart": period_start,
            "ChargeCategory": "Usage",
            "ChargeClass": None,
            "ChargeDescription": description,
            "ChargeFrequency": "Usage-Based",
            "ChargePeriodEnd": charge_start + HOUR,
            "ChargePeriodStart": charge_start,
            "ConsumedQuantity": Decimal(quantity),
            "ConsumedUnit": unit,
            "ContractedCost": cost,
            "ContractedUnitPrice": unit_price,
            "EffectiveCost": cost,
            "HostProviderName": host,
            "InvoiceIssuerName": service_provider,
            "ListCost": cost,
            "ListUnitPrice": unit_price,
            "PricingCategory": "Standard",
            "PricingCurrency": "USD",
            "PricingQuantity": Decimal(pricing_quantity),
            "PricingUnit": pricing_unit,
            "ProviderName": service_provider,
            "PublisherName": service_provider,
            "ServiceCategory": "AI and Machine Learning",
            "ServiceName": service_name,
            "ServiceProviderName": service_provider,
            "ServiceSubcategory": "Generative AI",
            "SkuId": f"{provider}/{model}",
            "SkuMeter": what,
            "SkuPriceDetails": _sku_details(model, tier, part),
            "SkuPriceId": sku_price_id,
            "Tags": tags_json,
            "x_Provider": provider,
            "x_Model": model,
            "x_RequestModel": row.request_model,
            "x_TokenClass": part,
            "x_ServiceTier": tier,
            "x_Estimated": bool(row.estimated),
            "x_PriceSource": row.price_source,
            "x_Operation": row.operation,
            "x_RunId": row.run_id,
            "x_Outcome": row.outcome,
            "x_TraceId": row.trace_id,
            "x_SpanId": row.span_id,
        })
    return out


@dataclass
class ExportResult:
    path: str
    file_format: str
    charges: int = 0  # FOCUS rows written
    calls: int = 0  # ledger call rows exported
    unknown_price_calls: int = 0  # left out: FOCUS has no null cost, and an unknown price is never $0
    skipped_rows: int = 0  # cache hits and refusals: no money billed
    free_calls: int = 0  # calls that billed nothing (a rejected request): no charge
    total: Decimal = field(default_factory=lambda: Decimal(0))  # sum of BilledCost, exact

    def summary(self) -> str:
        """One line: what was written, then every ledger row that is not in the file and why, so that a file with
        fewer calls than ``aicost report`` counts is never a surprise (docs/ledger.md promises it here)."""
        text = (f"wrote {self.charges:,} FOCUS {FOCUS_VERSION} charges ({self.calls:,} calls, "
                f"{decimal_text(self.total)} USD) to {self.path}")
        if self.unknown_price_calls:
            text += (f"; {self.unknown_price_calls:,} calls with an unknown price are not in it "
                     "(see aicost report)")
        unbilled = [f"{count:,} {what}" for count, what in ((self.skipped_rows, "cache hits and refusals"),
                                                              (self.free_calls, "calls that billed nothing"))
                    if count]
        if unbilled:
            text += f"; {' and '.join(unbilled)} are not in it (no money was billed)"
        return text


def _csv_value(value: Any, kind: str) -> str:
    if value is None:
        return ""
    if kind == "decimal":
        return decimal_text(value) or "0"
    if kind == "datetime":
        return _datetime_text(value)
    if kind == "bool":
        return "true" if value else "false"
    if kind == "string":  # never a formula: a model name is the caller's (JSON cells are objects, '{...}')
        return csv_text(str(value))
    return str(value)


class _Progress:
    """'exported N / M rows' on stderr, redrawn at most 5 times a second; only when asked or on a terminal."""

    def __init__(self, total: int, enabled: bool | None, stream: TextIO | None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = enabled if enabled is not None else bool(getattr(self.stream, "isatty", lambda: False)())
        self.total = total
        self.last = 0.0

    def update(self, done: int, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self.last < 0.2:
            return
        self.last = now
        share = f" ({100 * done // self.total}%)" if self.total else ""
        self.stream.write(f"\rexporting FOCUS: {done:,} / {self.total:,} ledger rows{share}")
        self.stream.flush()

    def done(self, done: int) -> None:
        if self.enabled:
            self.update(done, force=True)
            self.stream.write("\n")
            self.stream.flush()


def _arrow_schema() -> Any:
    import pyarrow as pa

    types = {"decimal": pa.decimal128(38, 24), "datetime": pa.timestamp("us", tz="UTC"), "string": pa.string(),
             "json": pa.string(), "bool": pa.bool_()}
    return pa.schema([pa.field(name, types[kind], nullable=True) for name, kind in COLUMNS],
                     metadata={b"focus_version": FOCUS_VERSION.encode(), b"data_generator": b"aicost"})


def export_focus(store: LedgerStore, start: datetime | date, end: datetime | date, path: str | os.PathLike[str],
                 *, file_format: str | None = None, billing_account: str | None = None,
                 progress: bool | None = None, progress_stream: TextIO | None = None,
                 where: dict[str, str] | None = None) -> ExportResult:
    """Write the FOCUS charges of ``[start, end)`` to ``path`` (``.csv`` or ``.parquet``, or ``file_format``).

    Streams: memory stays flat however many rows; time is linear in the rows (benchmarks/ledger_focus.py).
    ``progress``: None = on when ``progress_stream`` (stderr) is a terminal."""
    from .query import _utc, totals

    start, end = _utc(start), _utc(end)
    target = os.fspath(path)
    kind = (file_format or ("parquet" if target.endswith(".parquet") else "csv")).lower()
    if kind not in ("csv", "parquet"):
        raise ValueError(f"unknown FOCUS file format {kind!r}; use csv or parquet")
    summary = totals(store, start, end, where)
    expected = summary.calls + summary.cache_hits + summary.refusals
    bar = _Progress(expected, progress, progress_stream)
    result = ExportResult(path=target, file_format=kind)
    seen = 0

    def charges() -> Iterator[dict[str, Any]]:
        nonlocal seen
        for row in store.rows(start, end, where=where):
            seen += 1
            if seen % 1000 == 0:
                bar.update(seen)
            if row.kind != CALL:
                result.skipped_rows += 1
                continue
            if row.cost is None or not row.price_known:
                result.unknown_price_calls += 1
                continue
            made = focus_rows(row, billing_account=billing_account)
            if made:
                result.calls += 1
            else:
                result.free_calls += 1  # its cost (every part) is $0: no charge to write
            for charge in made:
                result.charges += 1
                result.total = MONEY.add(result.total, charge["BilledCost"])  # exact, any thread's context
                yield charge

    write = _write_csv if kind == "csv" else _write_parquet
    _write_whole(target, lambda path: write(path, charges()))
    bar.done(seen)
    return result


def _write_whole(target: str, write: Callable[[str], None]) -> None:
    """``write`` the file to a temporary name beside ``target``, renamed over it once complete: an export that
    fails midway (a cost Parquet cannot hold, a database error, Ctrl-C) leaves no partial file that a FinOps tool
    would load as the period's charges, and a previous export at ``target`` stays as it was. A target that is no
    regular file (``/dev/stdout``, a pipe) cannot be replaced: it is written directly."""
    if os.path.exists(target) and not os.path.isfile(target):
        write(target)
        return
    final = os.path.realpath(target)  # a symlink's file is replaced, not the link
    directory, name = os.path.split(final)
    temporary = os.path.join(directory, f".{name}.{os.getpid()}-{secrets.token_hex(4)}.part")
    try:
        write(temporary)
        os.replace(temporary, final)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        raise


def _write_csv(target: str, charges: Iterator[dict[str, Any]]) -> None:
    with open(target, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMN_NAMES)
        for charge in charges:
            writer.writerow([_csv_value(charge[name], kind) for name, kind in COLUMNS])


def _write_parquet(target: str, charges: Iterator[dict[str, Any]], batch: int = 50_000) -> None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:  # only the ledger extra installs it: a configuration error, which the CLI reports
        raise ConfigurationError("Parquet export needs pyarrow: pip install 'aicost-otel[ledger]'") from exc
    schema = _arrow_schema()
    with pq.ParquetWriter(target, schema) as writer:
        columns: dict[str, list] = {name: [] for name in COLUMN_NAMES}
        count = 0

        def flush() -> None:
            writer.write_table(pa.table(columns, schema=schema))
            for values in columns.values():
                values.clear()

        for charge in charges:
            for name, kind in COLUMNS:
                value = charge[name]
                if kind == "decimal" and value is not None:
                    value = _parquet_decimal(name, value, charge["x_SpanId"])
                columns[name].append(value)
            count += 1
            if count % batch == 0:
                flush()
        if count % batch or not count:
            flush()


def _parquet_decimal(column: str, value: Decimal, span_id: str) -> Decimal:
    """``value`` as Parquet's ``decimal128(38, 24)`` holds it, or a ValueError in one line naming the column, the
    amount, the ledger row and what is accepted: never rounded, and never pyarrow's own words ("Decimal type with
    precision 39 does not fit...", which name none of them). Checked before quantizing: past 10^36 that raised
    ``decimal.InvalidOperation``, no ValueError, and the CLI's traceback. ``copy_abs``: ``abs()`` rounds to the
    thread's context, and $99,999,999,999,999.99...9 (24 nines) would be $10^14. A quantity's (tokens: the ledger
    takes counts up to 2**53) is said as a quantity, not in dollars."""
    exact = _PARQUET.quantize(value, _QUANTUM) if value.copy_abs() < _PARQUET_BOUND else None  # (abs() rounds)
    if exact == value:
        return exact
    dollars, what, one = ("", "quantities", "quantity") if column in _QUANTITIES else ("$", "amounts", "amount")
    problem = f"more than {_PLACES} decimal places" if exact is not None else f"a size of {dollars}10^14 or more"
    # the span id quoted: one from a span elsewhere may hold a newline, which would break the line and forge another
    raise ValueError(f"{column} {decimal_text(value)} has {problem} (ledger row {span_id!r}): Parquet's "
                     f"decimal128(38, {_PLACES}) holds {what} below {dollars}10^14 with at most {_PLACES} decimal "
                     f"places; export as CSV (--file-format csv), which holds every {one} exactly")
