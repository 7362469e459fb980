"""The vendors' admin reports, read into one shape: daily usage lines (tokens) and daily cost lines (money).

OpenAI: ``GET /v1/organization/usage/completions`` and ``GET /v1/organization/costs`` (admin key, ``Authorization:
Bearer``), Unix-second ``start_time`` / ``end_time``, ``bucket_width=1d``, ``group_by`` repeated, cursor pages.
Anthropic: the Admin API's ``GET /v1/organizations/usage_report/messages`` and ``GET /v1/organizations/cost_report``
(``x-api-key`` admin key, RFC 3339 ``starting_at`` / ``ending_at``, ``group_by[]``). Anthropic labels these two
"legacy" in favour of the beta Usage and Cost Analytics API; every organization with an admin key has them today,
so they are the default; ``api="analytics"`` reads the beta API instead (its cost is broken down by API key too,
and it says how fresh its data is).

Field facts and which are documented or inferred: docs/reconcile.md ("What is read").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from ..pricing.cost import MONEY
from .errors import BillFetchError
from .http import Fetcher

__all__ = ["UsageLine", "CostLine", "Bill", "Vendor", "APIS", "OPENAI", "ANTHROPIC",
           "ANTHROPIC_ANALYTICS"]

TOKEN_KEYS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")


@dataclass
class UsageLine:
    """Tokens the vendor counted for one day x model x scope (project / workspace) x API key id."""

    day: str  # YYYY-MM-DD (UTC)
    model: str | None
    scope: str | None  # OpenAI project id, Anthropic workspace id (None = default workspace / not reported)
    key_id: str | None
    tokens: dict[str, int]  # TOKEN_KEYS; input_tokens includes cache reads and writes, as in the ledger
    requests: int | None = None


@dataclass
class CostLine:
    """Money the vendor charged for one day x (model) x scope x (key id), exact, in USD."""

    day: str
    model: str | None  # None when the line is not a model's (e.g. OpenAI "Image models" without a model name)
    scope: str | None
    key_id: str | None
    amount: Decimal
    label: str | None = None  # the vendor's line item / description


@dataclass
class Bill:
    usage: list[UsageLine] = field(default_factory=list)
    costs: list[CostLine] = field(default_factory=list)
    partial_days: set[str] = field(default_factory=set)  # days whose bucket did not cover the whole day
    requests: int = 0


def _day_of(start: datetime) -> str:
    return start.astimezone(timezone.utc).strftime("%Y-%m-%d")


def _int(value: Any) -> int:
    """A token (or request) count on a report page: 0 when absent (``null`` or no field: the vendors leave out
    classes a line has none of), else a whole number >= 0 (``12`` or ``12.0``). Anything else (``"12"``, ``1.5``,
    ``-3``, ``true``) raises ValueError: a page not in the documented shape, a failed fetch (``run._fetch``), as an
    amount that is no number is. It was read as 0: the vendor's tokens vanished from the comparison."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)) or value != int(value) or value < 0:
        raise ValueError(f"a token count that is not a whole number >= 0: {value!r}")
    return int(value)


class Vendor:
    name = ""
    key_env = ""
    base_url = ""
    providers: tuple[str, ...] = ()  # ledger rows' provider values billed by this vendor
    cost_has_key = False  # the cost report breaks money down by API key id
    scope_name = "scope"

    def headers(self, key: str) -> dict[str, str]:
        raise NotImplementedError

    def fetch(self, fetcher: Fetcher, base_url: str, start: datetime, end: datetime) -> Bill:
        raise NotImplementedError


def _mark_partial(bill: Bill, day: str, b_start: datetime, b_end: datetime) -> None:
    midnight = b_start.replace(hour=0, minute=0, second=0, microsecond=0)
    if b_start != midnight or b_end - b_start < timedelta(days=1):
        bill.partial_days.add(day)


class OpenAIVendor(Vendor):
    name = "openai"
    key_env = "OPENAI_ADMIN_KEY"
    base_url = "https://api.openai.com"
    providers = ("openai",)
    cost_has_key = True
    scope_name = "project"

    def headers(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}", "Accept": "application/json"}

    def fetch(self, fetcher: Fetcher, base_url: str, start: datetime, end: datetime) -> Bill:
        bill = Bill()
        times = [("start_time", str(int(start.timestamp()))), ("end_time", str(int(end.timestamp()))),
                 ("bucket_width", "1d"), ("limit", "31")]
        usage_params = times + [("group_by", g) for g in ("model", "project_id", "api_key_id")]
        for page in fetcher.pages(f"{base_url}/v1/organization/usage/completions", usage_params):
            for bucket in page["data"]:
                day = self._day(bucket, bill)
                for r in bucket.get("results") or ():
                    tokens = {
                        "input_tokens": _int(r.get("input_tokens")),
                        "output_tokens": _int(r.get("output_tokens")),
                        "cache_read_tokens": _int(r.get("input_cached_tokens")),
                        "cache_write_tokens": _int(r.get("input_cache_write_tokens"))
                        + _int(r.get("input_cache_write_12h_tokens")),
                    }
                    bill.usage.append(UsageLine(day, r.get("model"), r.get("project_id"), r.get("api_key_id"),
                                                tokens, _int(r.get("num_model_requests"))))
        cost_params = times + [("group_by", g) for g in ("project_id", "api_key_id", "line_item")]
        for page in fetcher.pages(f"{base_url}/v1/organization/costs", cost_params):
            for bucket in page["data"]:
                day = self._day(bucket, bill)
                for r in bucket.get("results") or ():
                    amount = r.get("amount") or {}
                    currency = str(amount.get("currency") or "usd").lower()
                    if currency != "usd":
                        raise BillFetchError(f"openai: cost in {currency!r}; aicost reconciles USD only")
                    line_item = r.get("line_item")
                    bill.costs.append(CostLine(day, _line_item_model(line_item), r.get("project_id"),
                                               r.get("api_key_id"), Decimal(str(amount.get("value") or 0)),
                                               line_item))
        bill.requests = fetcher.requests
        return bill

    @staticmethod
    def _day(bucket: dict[str, Any], bill: Bill) -> str:
        b_start = datetime.fromtimestamp(int(bucket["start_time"]), timezone.utc)
        b_end = datetime.fromtimestamp(int(bucket["end_time"]), timezone.utc)
        day = _day_of(b_start)
        _mark_partial(bill, day, b_start, b_end)
        return day


def _line_item_model(line_item: Any) -> str | None:
    """``"gpt-4o-2024-08-06, input"`` -> ``"gpt-4o-2024-08-06"`` (the format is inferred, not documented)."""
    if not isinstance(line_item, str) or ", " not in line_item:
        return None
    return line_item.rsplit(", ", 1)[0].strip() or None


class AnthropicVendor(Vendor):
    name = "anthropic"
    key_env = "ANTHROPIC_ADMIN_KEY"
    base_url = "https://api.anthropic.com"
    providers = ("anthropic",)
    cost_has_key = False  # cost_report groups by workspace_id and description only
    scope_name = "workspace"

    def headers(self, key: str) -> dict[str, str]:
        return {"x-api-key": key, "anthropic-version": "2023-06-01", "Accept": "application/json"}

    def fetch(self, fetcher: Fetcher, base_url: str, start: datetime, end: datetime) -> Bill:
        bill = Bill()
        fmt = "%Y-%m-%dT%H:%M:%SZ"
        times = [("starting_at", start.strftime(fmt)), ("ending_at", end.strftime(fmt)), ("bucket_width", "1d"),
                 ("limit", "31")]
        usage_params = times + [("group_by[]", g) for g in ("model", "workspace_id", "api_key_id")]
        for page in fetcher.pages(f"{base_url}/v1/organizations/usage_report/messages", usage_params):
            for bucket in page["data"]:
                day = self._day(bucket, bill)
                for r in bucket.get("results") or ():
                    bill.usage.append(UsageLine(day, r.get("model"), r.get("workspace_id"), r.get("api_key_id"),
                                                _usage_tokens(r)))
        cost_params = times + [("group_by[]", g) for g in ("workspace_id", "description")]
        for page in fetcher.pages(f"{base_url}/v1/organizations/cost_report", cost_params):
            for bucket in page["data"]:
                day = self._day(bucket, bill)
                for r in bucket.get("results") or ():
                    currency = str(r.get("currency") or "USD").upper()
                    if currency != "USD":
                        raise BillFetchError(f"anthropic: cost in {currency!r}; aicost reconciles USD only")
                    cents = Decimal(str(r.get("amount") or "0"))  # a decimal string in cents
                    bill.costs.append(CostLine(day, r.get("model"), r.get("workspace_id"), None,
                                               MONEY.divide(cents, 100), r.get("description")))  # exact
        bill.requests = fetcher.requests
        return bill

    @staticmethod
    def _day(bucket: dict[str, Any], bill: Bill) -> str:
        b_start = _rfc3339(bucket["starting_at"])
        day = _day_of(b_start)
        _mark_partial(bill, day, b_start, _rfc3339(bucket["ending_at"]))
        return day


def _rfc3339(text: str) -> datetime:
    return datetime.fromisoformat(str(text).replace("Z", "+00:00")).astimezone(timezone.utc)


def _usage_tokens(r: dict[str, Any]) -> dict[str, int]:
    """Anthropic usage fields (both APIs name them alike) -> the ledger's token classes."""
    creation = r.get("cache_creation") or {}
    write = _int(creation.get("ephemeral_5m_input_tokens")) + _int(creation.get("ephemeral_1h_input_tokens"))
    read = _int(r.get("cache_read_input_tokens"))
    return {"input_tokens": _int(r.get("uncached_input_tokens")) + read + write,
            "output_tokens": _int(r.get("output_tokens")), "cache_read_tokens": read, "cache_write_tokens": write}


class AnthropicAnalyticsVendor(AnthropicVendor):
    """Anthropic's Usage and Cost Analytics API (beta ``analytics-usage-cost-2026-08-24``), ``--api analytics``.

    Rows instead of buckets: ``{starting_at, ending_at, group: {model, workspace_id, api_key_id, ...}, usage | cost}``;
    cost ``amount`` (post-discount, pre-credit) and ``list_amount`` are decimal strings in fractional cents. Cost
    is broken down by API key too. ``ending_at`` is required with ``time_bucket_width`` and a request spans at most
    31 days, so longer periods are read in 31-day chunks. ``data_refreshed_at`` on each page says how fresh the
    data is: days after it are provisional. Data starts at 2026-01-01.
    """

    cost_has_key = True
    beta = "analytics-usage-cost-2026-08-24"

    def headers(self, key: str) -> dict[str, str]:
        return {**super().headers(key), "anthropic-beta": self.beta}

    def fetch(self, fetcher: Fetcher, base_url: str, start: datetime, end: datetime) -> Bill:
        bill = Bill()
        fmt = "%Y-%m-%dT%H:%M:%SZ"
        group = [("group_by[]", g) for g in ("model", "workspace_id", "api_key_id")]
        refreshed: datetime | None = None
        chunk_start = start
        while chunk_start < end:
            chunk_end = min(chunk_start + timedelta(days=31), end)
            params = [("starting_at", chunk_start.strftime(fmt)), ("ending_at", chunk_end.strftime(fmt)),
                      ("time_bucket_width", "1d"), ("limit", "1000"), *group]
            for kind in ("usage", "cost"):
                for page in fetcher.pages(f"{base_url}/v1/organizations/analytics/{kind}", params):
                    if page.get("data_refreshed_at"):
                        at = _rfc3339(page["data_refreshed_at"])
                        refreshed = at if refreshed is None else min(refreshed, at)
                    for row in page["data"]:
                        self._row(kind, row, bill)
            chunk_start = chunk_end
        if refreshed is not None:  # the data stops at data_refreshed_at: its day and later ones are incomplete
            day = refreshed.replace(hour=0, minute=0, second=0, microsecond=0)
            while day < end:
                bill.partial_days.add(_day_of(day))
                day += timedelta(days=1)
        bill.requests = fetcher.requests
        return bill

    @staticmethod
    def _row(kind: str, row: dict[str, Any], bill: Bill) -> None:
        b_start, b_end = _rfc3339(row["starting_at"]), _rfc3339(row["ending_at"])
        day = _day_of(b_start)
        _mark_partial(bill, day, b_start, b_end)
        g = row.get("group") or {}
        if kind == "usage":
            u = row.get("usage") or {}
            bill.usage.append(UsageLine(day, g.get("model"), g.get("workspace_id"), g.get("api_key_id"),
                                        _usage_tokens(u), u.get("requests")))
            return
        cost = row.get("cost") or {}
        currency = str(cost.get("currency") or "USD").upper()
        if currency != "USD":
            raise BillFetchError(f"anthropic: cost in {currency!r}; aicost reconciles USD only")
        bill.costs.append(CostLine(day, g.get("model"), g.get("workspace_id"), g.get("api_key_id"),
                                   MONEY.divide(Decimal(str(cost.get("amount") or "0")), 100),  # cents, exact
                                   g.get("product")))


OPENAI = OpenAIVendor()
ANTHROPIC = AnthropicVendor()
ANTHROPIC_ANALYTICS = AnthropicAnalyticsVendor()
# Which report API to read, per vendor (the first is the default).
APIS: dict[str, dict[str, Vendor]] = {
    "openai": {"usage": OPENAI},
    "anthropic": {"usage_report": ANTHROPIC, "analytics": ANTHROPIC_ANALYTICS},
}
