"""A reconciliation as an aligned table, CSV or JSON. Money in JSON / CSV is exact decimal text."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal
from typing import Any, Sequence

from ..ledger.csvtext import csv_text
from ..ledger.row import decimal_text
from ..pricing.money import RATIO
from .compare import DRIFT, MATCHED, Cell
from .result import Reconciliation, money

__all__ = ["render_table", "render_csv", "render_json"]

_COLUMNS = ("day", "model", "scope", "key_id", "status", "bill_usd", "ledger_usd", "difference_usd",
            "bill_tokens", "ledger_tokens", "ledger_calls", "unknown_price_calls", "implied_usd_per_mtok",
            "implied_ratio")
_TEXT_COLUMNS = frozenset(("day", "model", "scope", "key_id", "status"))  # the rest are numbers, never escaped


def _tokens(tokens: dict[str, int] | None) -> int | None:
    return None if tokens is None else tokens["input_tokens"] + tokens["output_tokens"]


def _cell_values(c: Cell) -> dict[str, Any]:
    return {
        "day": c.day, "model": c.model, "scope": c.scope, "key_id": c.key_id, "status": c.status,
        "bill_usd": decimal_text(c.bill_cost), "ledger_usd": decimal_text(c.ledger_cost),
        "difference_usd": decimal_text(c.difference), "bill_tokens": _tokens(c.bill_tokens),
        "ledger_tokens": _tokens(c.ledger_tokens), "ledger_calls": c.ledger_calls,
        "unknown_price_calls": c.ledger_unknown_price_calls,
        "implied_usd_per_mtok": decimal_text(c.implied_rate_per_mtok),
        "implied_ratio": decimal_text(c.implied_ratio),
    }


def _totals(r: Reconciliation) -> dict[str, Any]:
    return {
        "bill_usd": decimal_text(r.bill_total), "ledger_usd": decimal_text(r.ledger_total),
        "matched_usd": decimal_text(r.matched), "explained_usd": decimal_text(r.explained),
        "explained_pct": decimal_text(r.explained_pct), "unexplained_usd": decimal_text(r.unexplained),
        "over_attributed_usd": decimal_text(r.over_attributed), "price_drift_usd": decimal_text(r.drift),
        "provisional_bill_usd": decimal_text(r.provisional_bill), "provisional_days": r.provisional_days,
    }


def _tolerances(r: Reconciliation) -> dict[str, Any]:
    t = r.tolerances
    return {"money_usd_per_cell": decimal_text(t.money_usd), "tokens_ratio_per_cell": decimal_text(t.tokens_ratio),
            "lag_hours": t.lag.total_seconds() / 3600, "day_boundaries": "UTC",
            "key_map": r.key_map_used}


def render_json(r: Reconciliation) -> str:
    return json.dumps({
        "vendor": r.vendor, "period": {"label": r.label, "start": r.start.isoformat(), "end": r.end.isoformat()},
        "checked_at": r.checked_at.isoformat() if r.checked_at else None, "vendor_requests": r.requests,
        "summary": r.summary(), "totals": _totals(r), "tolerances": _tolerances(r), "scope_name": r.scope_name,
        "unexplained": [{"day": s.day, "model": s.model, "scope": s.scope, "key_id": s.key_id,
                         "usd": decimal_text(s.amount), "surplus_tokens": s.surplus_tokens} for s in r.sources()],
        "cells": [_cell_values(c) for c in r.cells],
    }, indent=2)


def render_csv(r: Reconciliation) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for c in r.cells:
        writer.writerow({k: "" if v is None else csv_text(v) if k in _TEXT_COLUMNS else v
                         for k, v in _cell_values(c).items()})
    return out.getvalue()


def _align(rows: Sequence[Sequence[str]], right: set[int]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths)))
            .rstrip() for row in rows]


def _n(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def render_table(r: Reconciliation) -> str:
    t = r.tolerances
    lines = [r.summary(), "",
             f"{r.vendor} bill, {r.label} ({r.start:%Y-%m-%d} to {r.end:%Y-%m-%d %H:%M} UTC), settled days:"]
    totals = [("billed", money(r.bill_total)), ("in the ledger", money(r.ledger_total)),
              ("matched", money(r.matched)), ("unexplained (on the bill, not in the ledger)", money(r.unexplained)),
              ("over-attributed (in the ledger, not on the bill)", money(r.over_attributed)),
              ("price drift (tokens match, money differs)", money(r.drift)),
              ("provisional (inside the report lag, not compared)", money(r.provisional_bill))]
    lines += ["  " + line for line in _align([(k, v) for k, v in totals], {1})]
    sources = r.sources()
    if sources:
        lines += ["", f"Unexplained spend by {r.scope_name} / API key / model / day:"]
        rows = [("day", r.scope_name, "API key", "model", "usd", "extra tokens")]
        rows += [(s.day, s.scope or "-", s.key_id or "-", s.model or "-", money(s.amount), _n(s.surplus_tokens))
                 for s in sources]
        lines += ["  " + line for line in _align(rows, {4, 5})]
    drift = [c for c in r.cells if c.status == DRIFT]
    if drift:
        lines += ["", "Price drift (the bill's implied rate):"]
        rows = [("day", "model", "billed", "ledger", "tokens", "$ / 1M tokens", "bill / ledger")]
        rows += [(c.day, c.model or "-", money(c.bill_cost),
                  money(c.ledger_cost) + (f" (+{c.ledger_unknown_price_calls} unpriced)"
                                          if c.ledger_unknown_price_calls else ""),
                  _n(_tokens(c.bill_tokens)), decimal_text(_round(c.implied_rate_per_mtok)) or "-",
                  decimal_text(_round(c.implied_ratio)) or "-") for c in drift]
        lines += ["  " + line for line in _align(rows, {2, 3, 4, 5, 6})]
    shown = [c for c in r.cells if c.status != MATCHED]  # a month of matched cells is thousands of lines
    dims = "day x model" + (f" x {r.scope_name} x API key" if r.key_map_used else "")
    lines += ["", f"Cells ({dims}) that did not match: {len(shown)} of {len(r.cells)}"
              + (" (--format csv / json list every cell)" if len(shown) < len(r.cells) else "")
              + (":" if shown else "")]
    if shown:
        rows = [("day", "model", r.scope_name, "API key", "status", "billed", "ledger", "difference", "bill tokens",
                 "ledger tokens")]
        rows += [(c.day, c.model or "-", c.scope or "-", c.key_id or "-", c.status, money(c.bill_cost),
                  money(c.ledger_cost), money(c.difference), _n(_tokens(c.bill_tokens)),
                  _n(_tokens(c.ledger_tokens))) for c in shown]
        lines += ["  " + line for line in _align(rows, {5, 6, 7, 8, 9})]
    lines += ["", f"Tolerances: ${decimal_text(t.money_usd)} per cell (vendor rounding), tokens within "
                  f"{RATIO.multiply(t.tokens_ratio, 100):g} %, days in UTC, "
                  f"the last {t.lag.total_seconds() / 3600:g} h "
                  "provisional (report lag)."
              + ("" if r.key_map_used else " No API key map: compared per day x model only.")]
    return "\n".join(lines) + "\n"


def _round(value: Decimal | None) -> Decimal | None:
    return None if value is None else RATIO.quantize(value, Decimal("0.0001"))  # any thread's context
