"""The comparison: the vendor's bill against the ledger, per day x model (x scope x API key id where known).

Two granularities, because the vendors report tokens finer than money:

* **token cells**: day x model x scope (OpenAI project / Anthropic workspace) x API key id, from the usage report;
* **money cells**: the cost report's own breakdown (OpenAI: day x model x project x key; Anthropic: day x model x
  workspace). Each money cell also sums the token cells inside it, so it can tell a price problem (tokens agree,
  money does not) from missing or extra calls (tokens disagree).

The ledger knows a call's API key only by its fingerprint; ``key_map`` (vendor key id -> fingerprint) joins the
two. Without it, key and scope are left out on both sides and the comparison is per day x model. A key id's scope
is taken from the usage report (a key belongs to one project / workspace), else from the call's configured project.

Classification of a money cell (``status``), bill amount B, ledger amount L, tolerances from :class:`Tolerances`:

* ``provisional``: the day is inside the report lag (or the vendor's bucket was partial): shown, never a mismatch;
* ``matched``: |B - L| <= money tolerance, and tokens agree where the vendor reports them;
* ``price_drift``: tokens agree within the token tolerance but money does not (or the ledger's price is unknown):
  the implied rate is reported;
* ``unexplained``: B > L and tokens do not agree (or the ledger has no call): B - L is shadow spend; also B = L
  with more tokens on the bill (money that agrees by coincidence is not calls that agree: $0 of it, the surplus
  tokens named as the vendor names them);
* ``over_attributed``: L > B and tokens do not agree: the ledger holds spend the bill does not (also L = B
  with calls of an unknown price in L: their cost is not $0, so L is the higher; and L = B with more tokens in
  the ledger).
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Iterable, Mapping

from ..pricing.cost import MONEY
from ..pricing.money import RATIO, subtract_usd
from .vendors import TOKEN_KEYS, Bill, Vendor

__all__ = ["Tolerances", "Cell", "Source", "compare"]

MATCHED, DRIFT, UNEXPLAINED = "matched", "price_drift", "unexplained"
OVER, PROVISIONAL = "over_attributed", "provisional"
_MILLION = Decimal(1_000_000)
_MICRO = Decimal("0.000001")
# Amounts are added and subtracted exactly (MONEY, subtract_usd) and rates, ratios and shares divided in money's
# RATIO context: reconcile() runs in host code, whose thread's decimal context may be at a low precision.


@dataclass(frozen=True)
class Tolerances:
    """What counts as agreement. Stated in every report (docs/reconcile.md explains each)."""

    money_usd: Decimal = Decimal("0.01")  # per money cell: vendors round (OpenAI floats, Anthropic cents)
    tokens_ratio: Decimal = Decimal("0.005")  # per money cell, on input + output tokens
    lag: timedelta = timedelta(hours=24)  # days ending less than this before now are provisional


@dataclass
class Source:
    """Where unexplained money came from, as the vendor names it (by surplus tokens when the cost lacks keys)."""

    day: str
    model: str | None
    scope: str | None
    key_id: str | None
    amount: Decimal
    surplus_tokens: int = 0


@dataclass
class Cell:
    day: str
    model: str | None
    scope: str | None
    key_id: str | None
    bill_cost: Decimal = Decimal(0)
    ledger_cost: Decimal = Decimal(0)
    ledger_calls: int = 0
    ledger_unknown_price_calls: int = 0
    bill_tokens: dict[str, int] | None = None  # None: the vendor reported no usage for this cell
    ledger_tokens: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TOKEN_KEYS, 0))
    status: str = MATCHED
    difference: Decimal = Decimal(0)  # bill - ledger
    implied_rate_per_mtok: Decimal | None = None  # price_drift: bill dollars per million (input + output) tokens
    implied_ratio: Decimal | None = None  # price_drift: bill / ledger, when the ledger priced the calls
    sources: list[Source] = field(default_factory=list)  # unexplained: the vendor's breakdown


def _add(into: dict[str, int], tokens: Mapping[str, int]) -> None:
    for k in TOKEN_KEYS:
        into[k] = into.get(k, 0) + int(tokens.get(k, 0))


def _total(tokens: Mapping[str, int] | None) -> int:
    return 0 if not tokens else tokens.get("input_tokens", 0) + tokens.get("output_tokens", 0)


# A snapshot suffix: a date (gpt-4o-2024-08-06, claude-sonnet-4-5-20250929) or a month-day (gpt-4-0613)
_SNAPSHOT = re.compile(r"\d{4}-\d{2}-\d{2}|\d{8}|\d{4}")


def _canonical_models(bill: Bill, ledger_models: set[str]) -> dict[str, str]:
    """Cost-line model names -> the usage / ledger spelling when they differ only by a snapshot suffix (so
    'gpt-4o' may be 'gpt-4o-2024-08-06', never 'gpt-4o-mini-2024-07-18', another model)."""
    known = {u.model for u in bill.usage if u.model} | ledger_models
    out = {}
    for c in bill.costs:
        if c.model and c.model not in known:
            prefix = c.model + "-"
            longer = [m for m in known if m.startswith(prefix) and _SNAPSHOT.fullmatch(m[len(prefix):])]
            if len(longer) == 1:
                out[c.model] = longer[0]
    return out


def compare(vendor: Vendor, bill: Bill, rows: Iterable[Any], *, key_map: Mapping[str, str] | None,
            now: datetime, tolerances: Tolerances) -> list[Cell]:
    """Money cells, sorted by day, then by the size of the difference."""
    fingerprint_to_id = {fp: key_id for key_id, fp in (key_map or {}).items()}
    use_keys = bool(fingerprint_to_id)
    key_scope = {u.key_id: u.scope for u in bill.usage if u.key_id}

    # The ledger, summed per token cell.
    ledger: dict[tuple, dict[str, Any]] = defaultdict(lambda: {"cost": Decimal(0), "calls": 0, "unknown": 0,
                                                              "tokens": dict.fromkeys(TOKEN_KEYS, 0)})
    ledger_models = set()
    for row in rows:
        if row.provider not in vendor.providers:
            continue
        day = row.time.astimezone(timezone.utc).strftime("%Y-%m-%d")
        model = row.model
        if model:
            ledger_models.add(model)
        key_id = scope = None
        if use_keys:
            key_id = fingerprint_to_id.get(row.api_key_fingerprint or "")
            scope = key_scope.get(key_id) if key_id else None
            scope = scope if scope is not None else row.vendor_project
        entry = ledger[(day, model, scope, key_id)]
        entry["calls"] += 1
        if row.cost is None:
            entry["unknown"] += 1
        else:
            entry["cost"] = MONEY.add(entry["cost"], row.cost)
        _add(entry["tokens"], {k: getattr(row, k) for k in TOKEN_KEYS})

    rename = _canonical_models(bill, ledger_models)
    money_dims = (True, use_keys, use_keys and vendor.cost_has_key)  # model, scope, key

    def money_key(day: str, model: str | None, scope: str | None, key_id: str | None) -> tuple:
        return (day, model, scope if money_dims[1] else None, key_id if money_dims[2] else None)

    cells: dict[tuple, Cell] = {}

    def cell(key: tuple) -> Cell:
        if key not in cells:
            cells[key] = Cell(*key)
        return cells[key]

    bill_fine: dict[tuple, dict[str, int]] = defaultdict(lambda: dict.fromkeys(TOKEN_KEYS, 0))
    for u in bill.usage:
        fine = (u.day, u.model, u.scope, u.key_id)  # kept whole: unexplained spend is named as the vendor names it
        _add(bill_fine[fine], u.tokens)
        c = cell(money_key(*fine))
        if c.bill_tokens is None:
            c.bill_tokens = dict.fromkeys(TOKEN_KEYS, 0)
        _add(c.bill_tokens, u.tokens)
    for line in bill.costs:
        model = rename.get(line.model, line.model)
        c = cell(money_key(line.day, model, line.scope, line.key_id))
        c.bill_cost = MONEY.add(c.bill_cost, line.amount)
    for fine, entry in ledger.items():
        c = cell(money_key(*fine))
        c.ledger_cost = MONEY.add(c.ledger_cost, entry["cost"])
        c.ledger_calls += entry["calls"]
        c.ledger_unknown_price_calls += entry["unknown"]
        _add(c.ledger_tokens, entry["tokens"])

    settled_before = now - tolerances.lag
    for c in cells.values():
        c.difference = subtract_usd(c.bill_cost, c.ledger_cost)
        day_end = datetime.strptime(c.day, "%Y-%m-%d").replace(tzinfo=timezone.utc) + timedelta(days=1)
        if day_end > settled_before or c.day in bill.partial_days:
            c.status = PROVISIONAL
            continue
        tokens_agree = c.bill_tokens is not None and _tokens_agree(c.bill_tokens, c.ledger_tokens, tolerances)
        money_agrees = c.difference.copy_abs() <= tolerances.money_usd and not c.ledger_unknown_price_calls
        if money_agrees and (c.bill_tokens is None or tokens_agree or c.ledger_calls == 0 and not c.bill_cost):
            c.status = MATCHED
        elif tokens_agree and c.ledger_calls:
            c.status = DRIFT
            billed = _total(c.bill_tokens)
            if billed:
                c.implied_rate_per_mtok = RATIO.divide(RATIO.multiply(c.bill_cost, _MILLION), billed)
            if c.ledger_cost and not c.ledger_unknown_price_calls:
                c.implied_ratio = RATIO.divide(c.bill_cost, c.ledger_cost)
        elif c.difference > 0 or (c.ledger_unknown_price_calls and c.bill_cost > c.ledger_cost):
            c.status = UNEXPLAINED
            c.sources = _sources(c, bill_fine, ledger, money_key)
        elif c.difference < 0 or c.ledger_unknown_price_calls:  # calls of an unknown price add to L: never $0
            c.status = OVER
        elif _total(c.bill_tokens) > _total(c.ledger_tokens):  # the same money, not the same calls: never matched
            c.status = UNEXPLAINED  # the bill's extra tokens, named as the vendor names them (its amount is $0)
            c.sources = _sources(c, bill_fine, ledger, money_key)
        else:
            c.status = OVER  # the ledger's extra tokens
    return sorted(cells.values(), key=lambda c: (c.day, c.difference.copy_abs().copy_negate(), str(c.model),
                                                 str(c.scope), str(c.key_id)))


def _tokens_agree(bill: Mapping[str, int], ledger: Mapping[str, int], tolerances: Tolerances) -> bool:
    b, l = _total(bill), _total(ledger)
    if b == l:
        return True
    return abs(b - l) <= RATIO.multiply(tolerances.tokens_ratio, max(b, l))


def _sources(c: Cell, bill_fine: Mapping[tuple, Mapping[str, int]], ledger: Mapping[tuple, Mapping[str, Any]],
             money_key) -> list[Source]:
    """The unexplained amount of a money cell split over its token cells by surplus tokens (bill - ledger)."""
    surplus = []
    for fine, tokens in bill_fine.items():
        if money_key(*fine) != (c.day, c.model, c.scope, c.key_id):
            continue
        # Without a key map the ledger's cells have no scope / key: the bill's lines share by their tokens.
        extra = _total(tokens) - _total(ledger[fine]["tokens"] if fine in ledger else None)
        if extra > 0:
            surplus.append((fine, extra))
    amount = c.difference
    if not surplus:
        return [Source(c.day, c.model, c.scope, c.key_id, amount)]
    surplus.sort(key=lambda s: -s[1])
    total = sum(extra for _, extra in surplus)
    out, left = [], amount
    for i, (fine, extra) in enumerate(surplus):
        share = left if i == len(surplus) - 1 else RATIO.quantize(RATIO.divide(RATIO.multiply(amount, extra), total),
                                                                  _MICRO)  # half-even
        left = subtract_usd(left, share)
        out.append(Source(fine[0], fine[1], fine[2], fine[3], share, extra))
    return out
