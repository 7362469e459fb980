"""Fetching every page of a vendor's admin report, politely and completely.

Why stdlib ``urllib``: two GET endpoints with JSON answers do not earn a dependency, and aicost's core installs
none. Rules: 429 waits ``Retry-After`` (bounded), 5xx and connection errors are retried a bounded number of
times with exponential backoff (a response cut short too, and a try not over within ``timeout_s``: the whole
exchange's deadline, so a server sending a byte now and then cannot hold the fetch), 401/403 is :class:`AdminKeyRejected`, anything else
(or a page that says ``has_more`` without a cursor) is :class:`BillFetchError`. A partial fetch is always an error,
never a short bill. The key travels only in the request header, to the address asked: a redirect is not followed
(urllib would send the key's header on to wherever it points), and no message, log line or exception ever
contains it.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Callable, Iterator, Mapping, Sequence

from .._http import open_url_within
from .errors import AdminKeyRejected, BillFetchError

__all__ = ["Fetcher"]

_MAX_PAGES = 10_000  # a cursor that never ends is a vendor bug, not a bill
_ERROR_BODY_BYTES = 65_536  # what is read of an error's body: its message is cut to 200 characters anyway


@dataclass
class Fetcher:
    headers: Mapping[str, str]  # includes the admin key; never printed
    key_env: str  # the variable the key came from, for messages
    vendor: str
    timeout_s: float = 60.0  # each request's deadline, the whole exchange (not each read), per try
    max_retries: int = 4  # 5xx / connection errors, per page
    max_rate_limit_waits: int = 8  # 429s, per page
    max_wait_s: float = 120.0  # the longest Retry-After honoured
    sleep: Callable[[float], None] = time.sleep
    requests: int = 0  # made so far (for the report)

    def pages(self, url: str, params: Sequence[tuple[str, str]]) -> Iterator[dict[str, Any]]:
        """Every page of a cursor-paginated report (``has_more`` / ``next_page`` -> ``page=``)."""
        cursor: str | None = None
        seen: set[str] = set()
        for _ in range(_MAX_PAGES):
            query = list(params) + ([("page", cursor)] if cursor else [])
            page = self._get(f"{url}?{urllib.parse.urlencode(query)}")
            yield page
            if not page.get("has_more"):
                return
            cursor = page.get("next_page")
            if not cursor or not isinstance(cursor, str):
                raise BillFetchError(f"{self.vendor}: {url} said has_more without a next_page cursor; the report "
                                     "would be incomplete, so nothing is reconciled")
            if cursor in seen:
                raise BillFetchError(f"{self.vendor}: {url} returned the same next_page cursor twice")
            seen.add(cursor)
        raise BillFetchError(f"{self.vendor}: {url} had more than {_MAX_PAGES} pages")

    def _get(self, url: str) -> dict[str, Any]:
        path = urllib.parse.urlsplit(url).path
        failures = waits = 0
        while True:
            self.requests += 1
            request = urllib.request.Request(url, headers=dict(self.headers), method="GET")
            try:
                # timeout_s is the whole exchange's deadline, an error's body included: bounding each read only,
                # it let a server (or a proxy) sending a byte now and then hold the fetch for ever.
                with open_url_within(request, self.timeout_s, any_status=True) as response:
                    status, headers = response.status, response.headers
                    body = response.read() if 200 <= status < 300 else _error_body(response)
            except (urllib.error.URLError, OSError, http.client.HTTPException) as e:  # a response cut short too
                if failures < self.max_retries:
                    failures += 1
                    self.sleep(min(2.0 ** failures, self.max_wait_s))
                    continue
                reason = getattr(e, "reason", e)
                raise BillFetchError(f"{self.vendor}: {path} unreachable after retries: {reason}") from None
            if 200 <= status < 300:
                try:
                    page = json.loads(body, parse_float=Decimal)  # amounts stay exact decimals
                except ValueError:
                    raise BillFetchError(f"{self.vendor}: {path} answered with invalid JSON") from None
                if not isinstance(page, dict) or not isinstance(page.get("data"), list):
                    raise BillFetchError(f"{self.vendor}: {path} answered without a 'data' list")
                return page
            detail = _error_text(body)
            if status in (401, 403):
                raise AdminKeyRejected(
                    f"{self.vendor}: the key in {self.key_env} was refused ({status}{detail}): it must be an "
                    "organization admin key with access to usage and cost reports")
            if status == 429 and waits < self.max_rate_limit_waits:
                waits += 1
                self.sleep(min(_retry_after(headers.get("Retry-After"), waits), self.max_wait_s))
                continue
            if status >= 500 and failures < self.max_retries:
                failures += 1
                self.sleep(min(2.0 ** failures, self.max_wait_s))
                continue
            if 300 <= status < 400:
                raise BillFetchError(f"{self.vendor}: {path} redirected (HTTP {status}); a redirect is not "
                                     "followed, so the admin key goes nowhere else: point --base-url at the "
                                     "address that answers")
            raise BillFetchError(f"{self.vendor}: {path} failed with HTTP {status}{detail}"
                                 + (" after retries" if status == 429 or status >= 500 else ""))


def _retry_after(value: str | None, attempt: int) -> float:
    """Seconds to wait: ``Retry-After`` as seconds or as an HTTP date (RFC 9110), else exponential."""
    if value is None:
        return 2.0 ** attempt
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return 2.0 ** attempt
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def _error_body(response: Any) -> bytes:
    """The start of an error's body, for its message: a body cut short is no reason to lose the status (a cut
    that is the deadline's is still a timeout: :func:`open_url_within` says so after the block)."""
    try:
        return response.read(_ERROR_BODY_BYTES)
    except (OSError, http.client.HTTPException):
        return b""


def _error_text(body: bytes) -> str:
    """The vendor's own error message (``{"error": {"message": ...}}``) in an error's ``body``, short; never
    headers."""
    try:
        data = json.loads(body or b"{}")
        message = data.get("error", {}).get("message") if isinstance(data, dict) else None
    except Exception:
        message = None
    return f": {str(message)[:200]}" if message else ""
