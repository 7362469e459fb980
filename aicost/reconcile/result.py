"""A reconciliation's result: the money cells, the totals by status, and the one-line answer."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from ..pricing.cost import MONEY
from ..pricing.money import RATIO, percent, subtract_usd, sum_usd
from .compare import DRIFT, MATCHED, OVER, PROVISIONAL, UNEXPLAINED, Cell, Source, Tolerances

__all__ = ["Reconciliation", "money"]


def money(value: Decimal | None) -> str:
    """$1,812.40 style, exact to the cent for display (the JSON keeps every digit). Rounded in money's RATIO
    context: the thread's may be a host's, too narrow for the cents of a large bill."""
    if value is None:
        return "-"
    sign = "-" if value < 0 else ""
    magnitude = value.copy_abs()
    if magnitude and magnitude < _CENT:  # fractions of a cent stay visible (to 1e-6)
        return f"{sign}${RATIO.quantize(magnitude, _MICRO)}"
    return f"{sign}${RATIO.quantize(magnitude, _CENT):,}"


_CENT, _MICRO, _ZERO = Decimal("0.01"), Decimal("0.000001"), Decimal(0)


# Totals are exact sums (sum_usd), whatever the decimal context of the host thread that reads them.
def _sum(cells: list[Cell], status: str, attr: str = "difference") -> Decimal:
    return sum_usd(getattr(c, attr) for c in cells if c.status == status)


@dataclass
class Reconciliation:
    vendor: str
    start: datetime
    end: datetime  # exclusive; clipped to "now" for the current month
    label: str
    cells: list[Cell]
    tolerances: Tolerances
    key_map_used: bool
    scope_name: str
    requests: int = 0  # HTTP requests made to the vendor
    checked_at: datetime | None = None  # the "now" the lag was measured from

    # -- totals (settled days only, except the provisional ones) ---------------------------------------------
    @property
    def settled(self) -> list[Cell]:
        return [c for c in self.cells if c.status != PROVISIONAL]

    @property
    def bill_total(self) -> Decimal:
        return sum_usd(c.bill_cost for c in self.settled)

    @property
    def ledger_total(self) -> Decimal:
        return sum_usd(c.ledger_cost for c in self.settled)

    @property
    def unexplained(self) -> Decimal:
        return _sum(self.cells, UNEXPLAINED)

    @property
    def over_attributed(self) -> Decimal:
        return subtract_usd(_ZERO, _sum(self.cells, OVER))

    @property
    def drift(self) -> Decimal:
        return _sum(self.cells, DRIFT)

    @property
    def matched(self) -> Decimal:
        """Bill money the ledger's calls account for at the ledger's own price (tokens and money agree, or the
        ledger's part of a cell with extra or missing calls)."""
        out = []
        for c in self.settled:
            if c.status == MATCHED:
                out.append(c.bill_cost)
            elif c.status == UNEXPLAINED:
                out.append(c.ledger_cost)
            elif c.status == OVER:
                out.append(c.bill_cost)
        return sum_usd(out)

    @property
    def explained(self) -> Decimal:
        """Bill money instrumented calls explain: matched, plus price-drift cells (the calls are there, the price
        is what differs)."""
        return sum_usd([self.matched, *(c.bill_cost for c in self.settled if c.status == DRIFT)])

    @property
    def explained_pct(self) -> Decimal | None:
        if not self.bill_total:
            return None
        return percent(self.explained, self.bill_total)

    @property
    def provisional_bill(self) -> Decimal:
        return sum_usd(c.bill_cost for c in self.cells if c.status == PROVISIONAL)

    @property
    def provisional_days(self) -> list[str]:
        return sorted({c.day for c in self.cells if c.status == PROVISIONAL})

    def sources(self) -> list[Source]:
        """Unexplained spend as the vendor names it, largest first."""
        out = [s for c in self.cells if c.status == UNEXPLAINED for s in c.sources]
        return sorted(out, key=lambda s: (s.amount.copy_negate(), s.day))

    def top(self, attr: str) -> list[tuple[Any, Decimal]]:
        """Unexplained spend per value of one source attribute (scope / key_id / model / day), largest first."""
        totals: dict[Any, Decimal] = defaultdict(Decimal)
        for s in self.sources():
            totals[getattr(s, attr)] = MONEY.add(totals[getattr(s, attr)], s.amount)
        return sorted(totals.items(), key=lambda kv: kv[1].copy_negate())

    # -- the one line ------------------------------------------------------------------------------------------
    def summary(self) -> str:
        vendor = {"openai": "OpenAI", "anthropic": "Anthropic"}.get(self.vendor, self.vendor)
        if not self.settled:
            line = f"nothing settled yet on {vendor}'s bill for {self.label}"
        elif self.explained_pct is None:
            line = f"{vendor}'s bill for {self.label} is empty"
            if self.ledger_total:
                line += f"; the ledger holds {money(self.ledger_total)} the bill does not"
        else:
            line = (f"your instrumented calls explain {self.explained_pct} % of {vendor}'s bill for {self.label} "
                    f"({money(self.explained)} of {money(self.bill_total)})")
            if self.unexplained > 0:
                line += f"; the remaining {money(self.unexplained)} came from " + self._where()
            if self.drift:
                line += f"; {money(self.drift)} is price drift (calls match, price differs)"
            if self.over_attributed > 0:
                line += f"; {money(self.over_attributed)} in the ledger is not on the bill"
        if self.provisional_days:
            days = self.provisional_days
            span = days[0] if len(days) == 1 else f"{days[0]} to {days[-1]}"
            line += f" ({span} provisional: {money(self.provisional_bill)} billed so far, inside the report lag)"
        return line + "."

    def _where(self) -> str:
        parts = []
        for attr, label in (("scope", self.scope_name), ("key_id", "API key"), ("model", "model")):
            top = [(v, a) for v, a in self.top(attr) if v is not None]
            if top:
                value, amount = top[0]
                share = "" if amount == self.unexplained else f" ({money(amount)})"
                parts.append(f"{label} {_short_key(value) if attr == 'key_id' else value}{share}")
        days = self.top("day")
        if days:
            # the days within half of the worst
            biggest = sorted(d for d, a in days if MONEY.multiply(a, 2) >= days[0][1])
            parts.append(("on " if len(days) == 1 else "mostly on ") + _day_span(biggest))
        return ", ".join(parts) if parts else "no identifiable source"


def _short_key(key_id: str) -> str:
    """Key ids are not secrets, but long: ``key_abcdef123`` -> ``key_…123``."""
    head, _, tail = key_id.rpartition("_")
    return f"{head}_…{tail[-3:]}" if head and len(tail) > 6 else key_id


def _day_span(days: list[str]) -> str:
    """``Nov 12-14`` for consecutive days, else ``Nov 3, Nov 28`` (at most three, then "..."). """
    if not days:
        return ""
    dates = [datetime.strptime(d, "%Y-%m-%d") for d in days]
    first, last = dates[0], dates[-1]
    if (last - first).days != len(dates) - 1:
        text = ", ".join(d.strftime("%b %-d") for d in dates[:3])
        return text + (", ..." if len(dates) > 3 else "")
    if first == last:
        return first.strftime("%b %-d")
    if first.month == last.month:
        return f"{first.strftime('%b %-d')}-{last.day}"
    return f"{first.strftime('%b %-d')}-{last.strftime('%b %-d')}"
