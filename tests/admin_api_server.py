"""Loopback fakes of the vendors' admin usage / cost report APIs, for the reconciliation tests.

Built from the documented schemas and the real examples (docs/reconcile.md, "What is read"):

* OpenAI ``GET /v1/organization/usage/completions`` and ``GET /v1/organization/costs``: ``Authorization: Bearer``
  admin key; ``start_time`` (required, Unix s) / ``end_time``; ``bucket_width=1d``; ``group_by`` repeated;
  ``limit`` (usage 1d: max 31; costs: max 180); ``page`` = the previous ``next_page``. Pages are
  ``{"object": "page", "data": [buckets], "has_more", "next_page"}``; a bucket is ``{"object": "bucket",
  "start_time", "end_time", "results": [...]}``; days without traffic are buckets with ``results: []`` and the last
  bucket ends at "now" (as in the OpenAI cookbook's real output). Costs ``amount.value`` is a JSON number.
* Anthropic ``GET /v1/organizations/usage_report/messages`` and ``GET /v1/organizations/cost_report``:
  ``x-api-key`` admin key + ``anthropic-version``; RFC 3339 ``starting_at`` / ``ending_at``; ``group_by[]``;
  ``limit`` max 31; ``page`` cursor. Usage results carry ``uncached_input_tokens``, ``cache_read_input_tokens``,
  ``cache_creation.ephemeral_{5m,1h}_input_tokens``, ``output_tokens``; cost ``amount`` is a decimal string in
  cents, with ``model`` / ``token_type`` / ``cost_type`` when grouped by ``description``.

The truth is a list of :class:`Spend` events; each report aggregates them per UTC day and the requested groups.
Knobs: ``lag`` (events newer than now - lag are not reported yet), ``fail`` (a list of statuses to answer before
serving, e.g. [429, 503]; "cut": a 200 whose body stops short of its Content-Length; a 3xx redirects to
``redirect_to``), ``retry_after``; every request is recorded.
"""

from __future__ import annotations

import base64
import json
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

ADMIN_KEY = "sk-admin-fake-0123456789"


@dataclass
class Spend:
    """One call as the vendor saw it."""

    time: datetime
    model: str
    scope: str | None  # OpenAI project id / Anthropic workspace id
    key_id: str
    input_tokens: int  # uncached input (Anthropic) / all input incl. cached (OpenAI), as the vendor reports it
    output_tokens: int
    cache_read_tokens: int = 0
    cost_parts: dict[str, Decimal] = field(default_factory=dict)  # "input" / "output" / "cache_read" -> USD


_ANTHROPIC_TOKEN_TYPE = {"input": "uncached_input_tokens", "output": "output_tokens",
                         "cache_read": "cache_read_input_tokens",
                         "cache_write": "cache_creation.ephemeral_5m_input_tokens"}


_CUT = -1  # handle()'s status for a response cut short


class FakeAdminAPI:
    def __init__(self, vendor: str, spend: list[Spend], now: datetime, *, lag: timedelta = timedelta(0),
                 fail: list[int | str] | None = None, retry_after: str = "0", page_size: int | None = None,
                 admin_key: str = ADMIN_KEY, redirect_to: str = "") -> None:
        self.vendor = vendor
        self.spend = spend
        self.now = now
        self.lag = lag
        self.fail = list(fail or [])
        self.retry_after = retry_after
        self.redirect_to = redirect_to
        self.page_size = page_size  # caps limit, to force pagination
        self.admin_key = admin_key
        self.requests: list[tuple[str, dict[str, list[str]]]] = []
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                status, body, headers = fake.handle(self.path, self.headers)
                data = json.dumps(body, default=_json_default).encode()
                cut = status == _CUT
                self.send_response(200 if cut else status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data[:len(data) // 2] if cut else data)
                self.close_connection = cut

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeAdminAPI":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)

    # -- request handling ----------------------------------------------------------------------------------------
    def handle(self, path: str, headers: Any) -> tuple[int, dict, dict]:
        url = urlsplit(path)
        query = parse_qs(url.query)
        with self._lock:
            self.requests.append((url.path, query))
            if self.fail:
                status = self.fail.pop(0)
                if status == "cut":
                    return _CUT, {"data": [], "has_more": False}, {}
                extra = ({"Retry-After": self.retry_after} if status == 429
                         else {"Location": self.redirect_to} if 300 <= status < 400 else {})
                return status, {"error": {"type": "fake", "message": f"injected {status}"}}, extra
        if self.vendor == "openai":
            if headers.get("Authorization") != f"Bearer {self.admin_key}":
                return 401, {"error": {"message": "Invalid authorization header",
                                       "type": "invalid_request_error"}}, {}
            routes = {"/v1/organization/usage/completions": self._openai_usage,
                      "/v1/organization/costs": self._openai_costs}
        else:
            if headers.get("x-api-key") != self.admin_key:
                return 401, {"type": "error",
                             "error": {"type": "authentication_error", "message": "invalid x-api-key"}}, {}
            if not headers.get("anthropic-version"):
                return 400, {"type": "error", "error": {"message": "anthropic-version header is required"}}, {}
            routes = {"/v1/organizations/usage_report/messages": self._anthropic_usage,
                      "/v1/organizations/cost_report": self._anthropic_costs,
                      "/v1/organizations/analytics/usage": self._analytics_usage,
                      "/v1/organizations/analytics/cost": self._analytics_cost}
            beta = headers.get("anthropic-beta") or ""
            if "/analytics/" in url.path and "analytics-usage-cost-2026-08-24" not in beta:
                return 400, {"type": "error", "error": {"message": "this endpoint needs the analytics beta header"}}, {}
        handler = routes.get(url.path)
        if handler is None:
            return 404, {"error": {"message": f"no route {url.path}"}}, {}
        try:
            return 200, handler(query), {}
        except ValueError as e:
            return 400, {"error": {"message": str(e)}}, {}

    def _reported(self) -> list[Spend]:
        cutoff = self.now - self.lag
        return [s for s in self.spend if s.time < cutoff]

    def _days(self, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
        """Daily buckets from start to min(end, now); the first starts at start, the last may end at now."""
        end = min(end, self.now)
        out, t = [], start
        while t < end:
            nxt = min(t.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1), end)
            out.append((t, nxt))
            t = nxt
        return out

    def _page(self, query: dict, buckets: list[dict], default: int, maximum: int) -> dict:
        limit = int(query.get("limit", [default])[0])
        if not 1 <= limit <= maximum:
            raise ValueError(f"limit must be between 1 and {maximum}")
        if self.page_size:
            limit = min(limit, self.page_size)
        offset = int(base64.b64decode(query["page"][0][5:]).decode()) if "page" in query else 0
        chunk = buckets[offset:offset + limit]
        more = offset + limit < len(buckets)
        token = "page_" + base64.b64encode(str(offset + limit).encode()).decode() if more else None
        return {"data": chunk, "has_more": more, "next_page": token}

    @staticmethod
    def _group(spends: list[Spend], start: datetime, end: datetime, key) -> dict[tuple, list[Spend]]:
        groups: dict[tuple, list[Spend]] = defaultdict(list)
        for s in spends:
            if start <= s.time < end:
                groups[key(s)].append(s)
        return groups

    # -- OpenAI --------------------------------------------------------------------------------------------------
    def _openai_range(self, query: dict) -> tuple[datetime, datetime]:
        if "start_time" not in query:
            raise ValueError("start_time is required")
        if query.get("bucket_width", ["1d"])[0] != "1d":
            raise ValueError("only bucket_width=1d is served by this fake")
        start = datetime.fromtimestamp(int(query["start_time"][0]), timezone.utc)
        end = datetime.fromtimestamp(int(query["end_time"][0]), timezone.utc) if "end_time" in query else self.now
        return start, end

    def _openai_usage(self, query: dict) -> dict:
        start, end = self._openai_range(query)
        by = set(query.get("group_by", []))
        bad = by - {"project_id", "user_id", "api_key_id", "model", "batch", "service_tier"}
        if bad:
            raise ValueError(f"invalid group_by {sorted(bad)}")
        buckets = []
        for b_start, b_end in self._days(start, end):
            groups = self._group(self._reported(), b_start, b_end, lambda s: (
                s.model if "model" in by else None, s.scope if "project_id" in by else None,
                s.key_id if "api_key_id" in by else None))
            results = [{"object": "organization.usage.completions.result",
                        "input_tokens": sum(s.input_tokens for s in ss),
                        "output_tokens": sum(s.output_tokens for s in ss),
                        "num_model_requests": len(ss), "input_cached_tokens": sum(s.cache_read_tokens for s in ss),
                        "input_audio_tokens": 0, "output_audio_tokens": 0, "project_id": project, "user_id": None,
                        "api_key_id": key, "model": model, "batch": None}
                       for (model, project, key), ss in groups.items()]
            buckets.append({"object": "bucket", "start_time": int(b_start.timestamp()),
                            "end_time": int(b_end.timestamp()), "results": results})
        page = self._page(query, buckets, 7, 31)
        return {"object": "page", **page}

    def _openai_costs(self, query: dict) -> dict:
        start, end = self._openai_range(query)
        by = set(query.get("group_by", []))
        if by - {"project_id", "line_item", "api_key_id"}:
            raise ValueError("invalid group_by")
        buckets = []
        for b_start, b_end in self._days(start, end):
            amounts: dict[tuple, Decimal] = defaultdict(Decimal)
            for s in self._reported():
                if b_start <= s.time < b_end:
                    for part, usd in s.cost_parts.items():
                        line = f"{s.model}, {part}" if "line_item" in by else None
                        amounts[(line, s.scope if "project_id" in by else None,
                                 s.key_id if "api_key_id" in by else None)] += usd
            results = [{"object": "organization.costs.result", "amount": {"value": float(usd), "currency": "usd"},
                        "line_item": line, "project_id": project, "api_key_id": key, "quantity": None}
                       for (line, project, key), usd in amounts.items()]
            buckets.append({"object": "bucket", "start_time": int(b_start.timestamp()),
                            "end_time": int(b_end.timestamp()), "results": results})
        return {"object": "page", **self._page(query, buckets, 7, 180)}

    # -- Anthropic -----------------------------------------------------------------------------------------------
    def _anthropic_range(self, query: dict) -> tuple[datetime, datetime]:
        if "starting_at" not in query:
            raise ValueError("starting_at is required")
        start = _rfc3339(query["starting_at"][0]).replace(hour=0, minute=0, second=0)  # snapped to the day
        end = _rfc3339(query["ending_at"][0]) if "ending_at" in query else self.now
        return start, end

    def _anthropic_usage(self, query: dict) -> dict:
        start, end = self._anthropic_range(query)
        by = set(query.get("group_by[]", []))
        if by - {"api_key_id", "workspace_id", "model", "service_tier", "context_window", "inference_geo"}:
            raise ValueError("invalid group_by[]")
        buckets = []
        for b_start, b_end in self._days(start, end):
            groups = self._group(self._reported(), b_start, b_end, lambda s: (
                s.model if "model" in by else None, s.scope if "workspace_id" in by else None,
                s.key_id if "api_key_id" in by else None))
            results = [{"api_key_id": key, "workspace_id": workspace, "model": model, "service_tier": None,
                        "context_window": None, "uncached_input_tokens": sum(s.input_tokens for s in ss),
                        "cache_read_input_tokens": sum(s.cache_read_tokens for s in ss),
                        "cache_creation": {"ephemeral_1h_input_tokens": 0, "ephemeral_5m_input_tokens": 0},
                        "output_tokens": sum(s.output_tokens for s in ss),
                        "server_tool_use": {"web_search_requests": 0}}
                       for (model, workspace, key), ss in groups.items()]
            buckets.append({"starting_at": _iso(b_start), "ending_at": _iso(b_end), "results": results})
        return self._page(query, buckets, 7, 31)

    def _anthropic_costs(self, query: dict) -> dict:
        start, end = self._anthropic_range(query)
        by = set(query.get("group_by[]", []))
        if by - {"workspace_id", "description"}:
            raise ValueError("invalid group_by[]")
        buckets = []
        for b_start, b_end in self._days(start, end):
            amounts: dict[tuple, Decimal] = defaultdict(Decimal)
            for s in self._reported():
                if b_start <= s.time < b_end:
                    for part, usd in s.cost_parts.items():
                        described = "description" in by
                        amounts[(s.model if described else None, _ANTHROPIC_TOKEN_TYPE[part] if described else None,
                                 s.scope if "workspace_id" in by else None)] += usd
            results = [{"currency": "USD", "amount": str(usd * 100), "workspace_id": workspace,
                        "description": f"{model} {token_type}" if model else None,
                        "cost_type": "tokens" if model else None, "context_window": "0-200k" if model else None,
                        "model": model, "service_tier": "standard" if model else None, "token_type": token_type}
                       for (model, token_type, workspace), usd in amounts.items()]
            buckets.append({"starting_at": _iso(b_start), "ending_at": _iso(b_end), "results": results})
        return self._page(query, buckets, 7, 31)


    # -- Anthropic Usage and Cost Analytics API (beta) ---------------------------------------------------------
    def _analytics(self, query: dict, kind: str) -> dict:
        start, end = _rfc3339(query["starting_at"][0]), _rfc3339(query["ending_at"][0])
        if end - start > timedelta(days=31):
            raise ValueError("the range may span at most 31 days")
        if query.get("time_bucket_width", [None])[0] != "1d":
            raise ValueError("this fake serves time_bucket_width=1d")
        by = query.get("group_by[]", [])
        if len(by) > 5 or set(by) - {"model", "workspace_id", "api_key_id", "product", "service_tier"}:
            raise ValueError("invalid group_by[]")
        rows = []
        for b_start, b_end in self._days(start, end):
            groups = self._group(self._reported(), b_start, b_end, lambda s: (
                s.model if "model" in by else None, s.scope if "workspace_id" in by else None,
                s.key_id if "api_key_id" in by else None))
            for (model, workspace, key), ss in groups.items():  # only combinations with usage, as documented
                group = {"model": model, "workspace_id": workspace, "api_key_id": key, "product": None}
                if kind == "usage":
                    usage = {"uncached_input_tokens": sum(s.input_tokens for s in ss),
                             "cache_read_input_tokens": sum(s.cache_read_tokens for s in ss),
                             "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
                             "output_tokens": sum(s.output_tokens for s in ss), "requests": len(ss),
                             "server_tool_use": {"web_search_requests": 0},
                             "total_tokens": sum(s.input_tokens + s.output_tokens for s in ss)}
                    rows.append({"starting_at": _iso(b_start), "ending_at": _iso(b_end), "group": group,
                                 "usage": usage})
                else:
                    cents = sum((usd for s in ss for usd in s.cost_parts.values()), Decimal(0)) * 100
                    rows.append({"starting_at": _iso(b_start), "ending_at": _iso(b_end), "group": group,
                                 "cost": {"amount": str(cents), "list_amount": str(cents), "currency": "USD",
                                          "requests": len(ss)}})
        page = self._page(query, rows, 20, 1000)
        return {**page, "data_refreshed_at": _iso(self.now - self.lag)}

    def _analytics_usage(self, query: dict) -> dict:
        return self._analytics(query, "usage")

    def _analytics_cost(self, query: dict) -> dict:
        return self._analytics(query, "cost")


def _rfc3339(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc)


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(type(value))
