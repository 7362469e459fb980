"""Alerts: budget thresholds, forecast-over-budget and spend spikes, sent to a callback or a webhook.

An :class:`Alert` has a ``key`` that names *what* it is about (``budget:team/month:search:month:2026-12:0.8``).
An :class:`Alerter` sends each key once to each sink: the keys already sent are kept in a state file (SQLite, one
table), so repeated runs of ``aicost alerts`` from cron, or several processes, notify once per threshold per window,
once per forecast overrun per month and once per spike. Claiming a key is one ``INSERT OR IGNORE``, atomic across
processes. The claim is per alert *and sink*: a sink whose delivery failed has its claim released, so the next run
tries that sink again, alone, and a sink that delivered never gets the alert twice.

Sinks: :class:`CallbackSink` (any Python callable) and :class:`WebhookSink`, which POSTs a Slack-compatible JSON
body ``{"text": ..., "blocks": [...]}`` (Slack incoming webhooks, and the many tools that accept that shape). A
sink that fails never raises into the caller: the failure is counted in :attr:`Alerter.stats` and logged (once
per sink and kind of error, on logger ``aicost``). A sink that cannot be reached (timeout, refused connection) is
not tried again for the rest of the delivery pass (one :meth:`Alerter.send`; in the app, one batch of the sender
thread): its remaining alerts count as failed and are left unclaimed for the next pass.

Inside an application, :meth:`Alerter.budget_callback` gives an ``on_threshold`` / ``on_exceed`` callback for
:func:`aicost.configure_budgets`. Budget callbacks run on the calling thread, so that one only queues the alert;
a daemon thread, started at the first alert (never at interpreter exit), delivers it. The queue is bounded: a
full queue drops the alert and counts it. The app has no next run to send again what failed: the sender thread
tries a failed delivery again itself, after :attr:`Alerter.RETRY_DELAYS_S` (a few attempts over minutes), for at
most :attr:`Alerter.RETRY_LIMIT` alerts at a time, and counts in ``stats.given_up`` what it gave up on, and in
``stats.lost_at_exit`` (logged once per alerter) what was still queued, never tried, or waiting for a retry when
the interpreter exited. Retried: a sink that could not be reached, an HTTP 5xx, 408 or 429, a callback that
raised; not an HTTP 4xx or a redirect (the webhook refuses that alert; sending it again would be refused again).
"""

from __future__ import annotations

import atexit
import json
import logging
import math
import queue
import sqlite3
import sys
import threading
import time
import urllib.error
import urllib.request
import weakref
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Callable, Iterable, Iterator, Mapping, Protocol, Sequence
from urllib.parse import urlsplit

from .. import _fork
from .._http import open_url_within
from .._log import log_once
from ..pricing.cost import MONEY
from ..pricing.money import format_usd, percent
from ._format import plus_unknown, unknown_calls
from ._format import usd as _usd

logger = logging.getLogger("aicost")

BUDGET_THRESHOLD = "budget_threshold"
FORECAST_OVER_BUDGET = "forecast_over_budget"
ANOMALY = "anomaly"


@dataclass(frozen=True)
class Alert:
    kind: str  # BUDGET_THRESHOLD, FORECAST_OVER_BUDGET or ANOMALY
    key: str  # what it is about; the same key is sent once
    title: str
    text: str
    fields: tuple[tuple[str, str], ...] = ()

    def slack_payload(self) -> dict[str, Any]:
        """The Slack incoming-webhook body: ``text`` (the notification line) and Block Kit ``blocks``.

        Names in an alert come from the ledger, i.e. from attribution that may have arrived in upstream baggage:
        ``&``, ``<`` and ``>`` are escaped as Slack asks, so a team called ``<!channel>`` cannot ping anyone."""
        blocks: list[dict[str, Any]] = [
            {"type": "header", "text": {"type": "plain_text", "text": _cut(self.title, 150)}},
            {"type": "section", "text": {"type": "mrkdwn", "text": _cut(_escape(self.text), 3000)}},
        ]
        if self.fields:
            blocks.append({"type": "section", "fields": [
                {"type": "mrkdwn", "text": _cut(f"*{_escape(name)}*\n{_escape(value)}", 2000)}
                for name, value in self.fields[:10]]})
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"aicost {self.kind}"}]})
        return {"text": _cut(_escape(f"{self.title}: {self.text}"), 3000), "blocks": blocks}


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _escape(text: str) -> str:
    """Slack's three control characters in message text (its formatting docs: "Escaping text")."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# ---------------------------------------------------------------------------------------------------------------
# Alerts from what the reports find


def _unknown_note(calls: int) -> str:
    """What ``aicost report`` says of calls whose price is unknown, for an alert's text ("" without any)."""
    return f"; {unknown_calls(calls)}" if calls else ""


_WHOLE = Decimal(1)  # a threshold is shown in whole percents


def _unknown_field(calls: int) -> tuple[tuple[str, str], ...]:
    return (("unknown price", f"{calls:,} calls, not in the total"),) if calls else ()


def budget_alert(budget: str, scope_value: str | None, window: str, threshold: Decimal, limit: Decimal,
                 spent: Decimal, unknown_cost_calls: int = 0) -> Alert:
    """``spent`` is the priced spend; ``unknown_cost_calls`` the window's calls whose price is unknown (named in
    the alert: with them, the spend is more than it says)."""
    who = f" ({scope_value})" if scope_value else ""
    # percentages rounded in money's RATIO context: format's own rounding, and the arithmetic, are the thread's
    pct = f"{percent(threshold, quantum=_WHOLE):f}%"
    spent_pct = percent(spent, limit)
    return Alert(
        # The threshold in its one written form: Decimal("0.80") in the app and a budgets file's 0.8 (0.80 in
        # TOML is a float) are one threshold, and an app and a cron run sharing the state file send it once.
        BUDGET_THRESHOLD, f"budget:{budget}:{scope_value or ''}:{window}:{format_usd(threshold)}",
        f"Budget {budget}{who} passed {pct}",
        f"{_usd(spent)} of {_usd(limit)} spent in {window} ({spent_pct:f}%)"
        f"{_unknown_note(unknown_cost_calls)}.",
        (("budget", budget), ("scope", scope_value or "global"), ("window", window), ("threshold", pct),
         ("spent", _usd(spent)), ("limit", _usd(limit)), *_unknown_field(unknown_cost_calls)),
    )


def alert_from_budget_event(event: Any) -> Alert:
    """An :class:`aicost.budget.BudgetEvent` (threshold crossed, or a call refused) as an alert."""
    if event.kind == "threshold" and event.threshold is not None:
        return budget_alert(event.budget.name, event.scope_value, event.window, event.threshold, event.limit_usd,
                            event.spent_usd)
    who = f" ({event.scope_value})" if event.scope_value else ""
    return Alert(
        BUDGET_THRESHOLD, f"budget:{event.budget.name}:{event.scope_value or ''}:{event.window}:exceeded",
        f"Budget {event.budget.name}{who} exceeded",
        f"A {event.model or 'call'} costing up to {_usd(event.requested_usd)} did not fit: {_usd(event.spent_usd)} "
        f"of {_usd(event.limit_usd)} spent in {event.window}, {_usd(event.reserved_usd)} held by calls in flight.",
        (("budget", event.budget.name), ("scope", event.scope_value or "global"), ("window", event.window),
         ("spent", _usd(event.spent_usd)), ("limit", _usd(event.limit_usd))),
    )


def forecast_alerts(forecasts: Iterable[Any]) -> list[Alert]:
    """One alert per forecast whose expected month-end total is over its budget. The key carries the month and
    whether the overrun is merely expected or already likely (the interval's low end is over), so a forecast
    that worsens from one to the other alerts again, once."""
    out = []
    for f in forecasts:
        if not f.over_budget:
            continue
        level = "likely" if f.over_budget_likely else "expected"
        interval = "" if f.low is None else f" ({f.level:.0%} interval {_usd(f.low)} to {_usd(f.high)})"
        out.append(Alert(
            FORECAST_OVER_BUDGET, f"forecast:{f.group}:{f.period_start:%Y-%m}:{level}",
            f"Forecast over budget: {f.group}",
            f"Projected {_usd(f.projected)} by {f.period_end} against a budget of {_usd(f.budget)}{interval}; "
            f"{_usd(f.actual)} spent by {f.as_of}{_unknown_note(f.unknown_cost_calls)}.",
            (("budget", f.group), ("projected", _usd(f.projected)), ("budget limit", _usd(f.budget)),
             ("spent so far", _usd(f.actual)), ("overrun", level), ("method", f.method),
             *_unknown_field(f.unknown_cost_calls)),
        ))
    return out


def anomaly_alerts(anomalies: Iterable[Any]) -> list[Alert]:
    out = []
    for a in anomalies:
        ratio = "new spend" if a.baseline <= 0 else f"{a.ratio:.1f}x"
        calls = "; ".join(f"{c.model} {_usd(c.cost)} ({c.time:%H:%M} UTC, span {c.span_id})" for c in a.calls[:3])
        unknown = a.unknown_cost_calls
        plus = plus_unknown(unknown)
        out.append(Alert(
            ANOMALY, f"anomaly:{a.dimension}:{a.group}:{a.start.isoformat()}",
            f"Spend spike: {a.dimension} {a.group}",
            f"{_usd(a.actual)}{plus} on {a.start} against a baseline of {_usd(a.baseline)} ({ratio})."
            + (f" Costliest calls: {calls}." if calls else ""),
            ((a.dimension, a.group), ("bucket", str(a.start)), ("spent", _usd(a.actual)),
             ("baseline", _usd(a.baseline)), ("ratio", ratio), *_unknown_field(unknown)),
        ))
    return out


def current_window(window: str, now: datetime) -> tuple[datetime, datetime, str]:
    """(start, end, label) of the calendar window containing ``now``, as the budget guard has it
    (:func:`aicost.budget.windows.window_at`: the same window, the same label)."""
    from ..budget.windows import window_at

    span = window_at(window, now.timestamp())
    return (datetime.fromtimestamp(span.start, tz=timezone.utc), datetime.fromtimestamp(span.end, tz=timezone.utc),
            span.key)


def budget_threshold_alerts(store: Any, budgets: Iterable[Any], *, now: datetime) -> list[Alert]:
    """For each budget with ``thresholds``, the highest one its ledger spend has crossed in the current window
    (per scope value for a per-value budget). Thresholds crossed in earlier windows are not reported. The spend is
    the priced spend: calls of unknown price cannot cross a threshold, and the alert names them."""
    from ..ledger import spend, totals
    from .data import UNATTRIBUTED, label
    from .forecast import budget_scope

    out = []
    for budget in budgets:
        if not budget.thresholds:
            continue
        start, end, window = current_window(budget.window, now)
        end = min(end, now)  # replaying a past ledger: spend after "now" has not happened yet
        dimension, value = budget_scope(budget)
        if dimension == "global":
            spent = {None: totals(store, start, end)}
        elif value is not None:
            spent = {value: totals(store, start, end, where={dimension: value})}
        else:
            spent = {label(g.key[dimension]): g for g in spend(store, start, end, (dimension,))}
            spent.pop(UNATTRIBUTED, None)
        for scope_value, group in sorted(spent.items(), key=lambda kv: str(kv[0])):
            crossed = [t for t in budget.thresholds if group.cost >= MONEY.multiply(budget.limit_usd, t)]  # exact
            if crossed:
                out.append(budget_alert(budget.name, scope_value, window, max(crossed), budget.limit_usd, group.cost,
                                        group.unknown_cost_calls))
    return out


# ---------------------------------------------------------------------------------------------------------------
# Sinks


class Sink(Protocol):
    name: str

    def send(self, alert: Alert) -> None:
        """Deliver ``alert``; raise on failure (the :class:`Alerter` counts and logs it)."""


class CallbackSink:
    def __init__(self, fn: Callable[[Alert], Any], name: str | None = None) -> None:
        if not callable(fn):
            raise TypeError("CallbackSink needs a callable taking an Alert")
        self.fn = fn
        self.name = name or getattr(fn, "__qualname__", "callback")

    def send(self, alert: Alert) -> None:
        self.fn(alert)


class WebhookSink:
    """POST the alert's Slack-compatible JSON to ``url``. Any 2xx is delivered; anything else, a redirect
    included (never followed), raises: the delivery failed and is retried by the next run. ``timeout_s`` bounds the
    whole delivery, not each read: a receiver answering a byte at a time must not hold the sender for ever."""

    def __init__(self, url: str, *, timeout_s: float = 5.0, headers: Mapping[str, str] | None = None) -> None:
        self.url = _sendable_url(url)
        self.timeout_s = _timeout_seconds(timeout_s)
        self.headers = {"Content-Type": "application/json", **_sendable_headers(headers or {})}
        # The URL of a Slack webhook is its secret: logs name the host (and port) only, never a query or fragment
        # that follows it without a path (https://host?token=...). No credentials: _sendable_url refused them.
        self.name = "webhook " + urlsplit(self.url).netloc

    def send(self, alert: Alert) -> None:
        body = json.dumps(alert.slack_payload()).encode()
        request = urllib.request.Request(self.url, data=body, headers=self.headers, method="POST")
        with open_url_within(request, self.timeout_s) as response:
            response.read()
            if not 200 <= response.status < 300:
                raise urllib.error.HTTPError(self.url, response.status, "not delivered", response.headers, None)


def _timeout_seconds(value: object) -> float:
    """``timeout_s``: a number (a bool is not one) greater than 0 that the delivery's deadline timer and socket
    take. inf, nan or an enormous number were accepted, and then every delivery failed, the timer thread printing an
    OverflowError traceback on the app's stderr each time."""
    from ..errors import ConfigurationError, ConfigurationTypeError

    accepted = (f"WebhookSink(timeout_s): must be a number of seconds greater than 0 and at most "
                f"{threading.TIMEOUT_MAX:g}, got {value!r}")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationTypeError(accepted)
    if not (math.isfinite(value) and 0 < value <= threading.TIMEOUT_MAX):
        raise ConfigurationError(accepted)
    return float(value)


def _sendable_url(url: object) -> str:
    """``url`` if urllib can POST to it, else the :class:`ConfigurationError` saying why, never quoting the URL: a
    webhook's URL is its secret, and a URL urllib cannot send fails at every delivery with an error that quotes it
    (``nonnumeric port: 'secret@host'``, ``URL can't contain control characters. '/services/...'``) into the log."""
    from ..errors import ConfigurationError

    def refuse(problem: str) -> ConfigurationError:
        return ConfigurationError(f"WebhookSink(url): {problem} (the URL is not shown: a webhook's URL is its secret)")

    if not isinstance(url, str):
        raise ConfigurationError(f"WebhookSink(url): expected an http:// or https:// URL (a str), got "
                                 f"{type(url).__name__}")
    url = url.strip()  # as urllib takes it
    if not url.startswith(("http://", "https://")):
        raise refuse("expected an http:// or https:// URL")
    if any(c.isspace() or not c.isprintable() for c in url):
        raise refuse("the URL contains whitespace or a control character; percent-encode it (%20)")
    parts = urlsplit(url)
    if "@" in parts.netloc:
        raise refuse("credentials in the URL (user:password@host) are never sent by urllib; pass them as "
                     "headers={'Authorization': ...}")
    if not parts.hostname:
        raise refuse("the URL has no host")
    try:
        parts.port
    except ValueError:
        raise refuse("the URL's port is not a number from 0 to 65535") from None
    return url


def webhook_file_urls(paths: Iterable[str]) -> list[str]:
    """The webhook URLs in the files ``paths`` (``--webhook-file`` of ``aicost alerts`` and ``aicost reconcile``),
    each one a :class:`WebhookSink` can send to. A webhook's URL is its secret: on the command line it shows in
    ``ps`` and in crontabs, in a file it does not. A file holds URLs separated by whitespace (a URL cannot contain
    any); ``#`` starts a comment line. A file that cannot be read or holds no URL, a URL that cannot be sent, or a
    URL given where the file's path belongs, is a :class:`ConfigurationError` naming ``--webhook-file``, the file
    and the line, never quoting a URL."""
    from ..errors import ConfigurationError

    urls: list[str] = []
    for path in paths:
        if "://" in str(path):
            raise ConfigurationError("--webhook-file: expected the path of a file holding the webhook's URL, got a "
                                     "URL (not shown: a webhook's URL is its secret; put it in a file)")
        try:
            with open(path, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            raise ConfigurationError(f"--webhook-file {path}: cannot read it ({why})") from None
        found = 0
        for number, line in enumerate(lines, 1):
            if line.lstrip().startswith("#"):
                continue
            for url in line.split():
                try:
                    urls.append(_sendable_url(url))
                except ConfigurationError as exc:
                    raise ConfigurationError(f"--webhook-file {path}, line {number}: {exc}") from None
                found += 1
        if not found:
            raise ConfigurationError(f"--webhook-file {path}: no URL in it")
    return urls


def _sendable_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """``headers`` if http.client can send them, else the :class:`ConfigurationError` naming the header, never its
    value (an ``Authorization`` token): http.client's own refusal, at every delivery, quotes the value."""
    from ..errors import ConfigurationError

    out = {}
    for name, value in dict(headers).items():
        if not isinstance(name, str) or not name or any(c.isspace() or c == ":" or not c.isprintable() for c in name):
            raise ConfigurationError("WebhookSink(headers): a header name must be a non-empty str without "
                                     "whitespace, ':' or control characters")
        if not isinstance(value, str) or any(c in "\r\n\0" for c in value):
            raise ConfigurationError(f"WebhookSink(headers[{name!r}]): the value must be a str without CR, LF or "
                                     "NUL (the value is not shown)")
        out[name] = value
    return out


# ---------------------------------------------------------------------------------------------------------------
# Deduplication state


class SentState:
    """The keys already sent. ``path=None``: in memory (one process); else a SQLite file shared by processes."""

    def __init__(self, path: str | None = None) -> None:
        self.path = path
        self._memory: dict[str, float] = {}
        self._lock = _fork.lock()
        if path is not None:
            try:
                with self._connect() as db:
                    db.execute("CREATE TABLE IF NOT EXISTS aicost_alerts_sent "
                               "(key TEXT PRIMARY KEY, sent_at REAL NOT NULL)")
            except sqlite3.Error as exc:  # a directory that does not exist, a file that is no database
                from ..errors import ConfigurationError

                raise ConfigurationError(f"cannot use the alert state file {path!r}: {exc}") from None

    @contextmanager
    def _connect(self, wait_s: float = 5.0) -> Iterator[sqlite3.Connection]:
        """One short-lived connection per operation (autocommit), closed after it: cron runs and processes share
        the file without holding it open."""
        db = sqlite3.connect(self.path, timeout=wait_s, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            yield db
        finally:
            db.close()

    def known_sent(self, keys: Sequence[str]) -> list[bool]:
        """Which of ``keys`` this process knows to be marked sent, without waiting for anything: in memory, exactly;
        with a state file, none (the file is not read: at interpreter exit, a read could wait for another process's
        lock)."""
        if self.path is not None:
            return [False] * len(keys)
        with self._lock:
            return [key in self._memory for key in keys]

    def claim_each(self, keys: Sequence[str], *, unless: str | None = None) -> list[bool]:
        """For each of ``keys``: True if it was not sent before (it is now marked sent), False if it was; all in
        one transaction, so an interrupt (Ctrl-C) leaves all of them or none. All False, none claimed, if
        ``unless`` is marked sent (an alert's bare key, as state files written before claims were per sink hold
        it)."""
        now = time.time()
        if self.path is None:
            with self._lock:
                if unless is not None and unless in self._memory:
                    return [False] * len(keys)
                claimed = [key not in self._memory for key in keys]
                self._memory.update((key, now) for key in keys if key not in self._memory)
                return claimed
        with self._connect() as db:
            # One transaction: Ctrl-C between two autocommitted claims left the first (no delivery had begun, so
            # nothing released it), and every later run took the alert as sent to that sink. Interrupted before
            # its COMMIT, the transaction is rolled back when the connection closes.
            db.execute("BEGIN IMMEDIATE")
            if unless is not None and db.execute("SELECT 1 FROM aicost_alerts_sent WHERE key = ?",
                                                 (unless,)).fetchone() is not None:
                claimed = [False] * len(keys)
            else:
                claimed = [db.execute("INSERT OR IGNORE INTO aicost_alerts_sent (key, sent_at) VALUES (?, ?)",
                                      (key, now)).rowcount == 1 for key in keys]
            db.execute("COMMIT")
            return claimed

    def release(self, key: str, *, wait_s: float = 5.0) -> None:
        """Forget ``key`` (its delivery failed), so it is tried again. ``wait_s``: how long to wait for another
        process's lock on the file."""
        if self.path is None:
            with self._lock:
                self._memory.pop(key, None)
            return
        with self._connect(wait_s) as db:
            db.execute("DELETE FROM aicost_alerts_sent WHERE key = ?", (key,))

    def forget_before(self, cutoff: datetime) -> int:
        """Drop keys sent before ``cutoff`` (keeps the file small; old windows never recur)."""
        ts = cutoff.timestamp()
        if self.path is None:
            with self._lock:
                old = [k for k, t in self._memory.items() if t < ts]
                for k in old:
                    del self._memory[k]
                return len(old)
        with self._connect() as db:
            return db.execute("DELETE FROM aicost_alerts_sent WHERE sent_at < ?", (ts,)).rowcount


# ---------------------------------------------------------------------------------------------------------------
# The alerter


@dataclass
class AlertStats:
    sent: int = 0  # alerts delivered to at least one sink
    suppressed: int = 0  # repeats of a key every sink already had
    failed: int = 0  # sink deliveries that raised or were skipped, the sink unreachable (one alert to two failing
    # sinks counts 2; in the app, each attempt counts, retries included)
    dropped: int = 0  # in-app alerts dropped: the delivery queue was full, or the interpreter finalizing
    given_up: int = 0  # in-app sink deliveries that failed and are not tried again: after the last retry, a failure
    # not worth retrying (HTTP 4xx, a redirect), or RETRY_LIMIT alerts already waiting (each also counted in failed)
    lost_at_exit: int = 0  # in-app sink deliveries not made because the interpreter exited: an alert still queued
    # (or taken up by the sender thread and not tried yet) when the exit began, to each sink, each key once (never
    # tried: not in failed); a delivery waiting for a retry then, or failing, worth a retry, after the exit began
    # (also counted in failed); a delivery the exit stopped before it was tried (its claims released); each key and
    # sink once (an alert queued again by a later exit handler is no second loss). An alert being delivered when
    # the exit began decides for its copies (queued, waiting for a retry): lost to a sink it failed or the exit
    # stopped, not to one it delivered to. Not ``dropped``: those alerts were refused when submitted (submit()
    # returned False); these were accepted
    failures_by_sink: dict[str, int] = field(default_factory=dict)


@dataclass
class _Retry:
    """An in-app alert waiting for the sender thread to try it again, for the sinks in ``sinks`` (by index)."""
    alert: Alert
    sinks: set[int]
    attempts: int  # made so far
    due: float  # time.monotonic()
    sent: bool  # delivered to another sink already (counted in stats.sent)


def _unreachable(exc: BaseException) -> bool:
    """Whether a sink's failure says the sink cannot be reached now (a timeout, a refused or reset connection, a
    host that does not resolve), rather than that it refused this one alert (an HTTP error status)."""
    if isinstance(exc, urllib.error.HTTPError):
        return False
    if isinstance(exc, urllib.error.URLError):  # urllib wraps the socket's error
        return isinstance(exc.reason, OSError)
    return isinstance(exc, (TimeoutError, ConnectionError))


def _worth_retrying(exc: BaseException) -> bool:
    """Whether the in-app sender tries a failed delivery again later: yes for a sink that could not be reached, a
    server error (5xx), a request timeout (408) or too many requests (429), and a callback's exception (that may
    pass too: its kind says nothing); no for another HTTP status, a 4xx or a redirect, which the webhook would
    answer again (a revoked or mistyped URL, a body it refuses)."""
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code >= 500 or exc.code in (408, 429)
    return True


def _sink_ids(sinks: Sequence[Sink]) -> list[str]:
    """Each sink's name in the dedup state. A repeated name (two webhooks on one host, two unnamed lambdas) gets
    its rank among the sinks of that name (``webhook hooks.slack.com#2``): sinks sharing a claim would let the
    first to deliver mark the alert sent for the other."""
    seen: dict[str, int] = {}
    out = []
    for sink in sinks:
        seen[sink.name] = rank = seen.get(sink.name, 0) + 1
        out.append(sink.name if rank == 1 else f"{sink.name}#{rank}")
    return out


class Alerter:
    """Send alerts to ``sinks`` once per key and sink. ``state``: a SQLite file path for dedup across runs and processes
    (default: in memory, per process)."""

    QUEUE_SIZE = 1000
    # In the app, a delivery that failed is tried again after each of these delays in turn (seconds; then given
    # up), for at most RETRY_LIMIT alerts at a time: a webhook down for a few minutes still gets its alerts.
    RETRY_DELAYS_S: tuple[float, ...] = (10.0, 30.0, 90.0, 270.0)
    RETRY_LIMIT = 100

    def __init__(self, sinks: Sequence[Sink] | Sink | Callable[[Alert], Any], *, state: str | None = None) -> None:
        if callable(sinks) and not hasattr(sinks, "send"):
            sinks = [CallbackSink(sinks)]
        elif hasattr(sinks, "send"):
            sinks = [sinks]  # type: ignore[list-item]
        self.sinks = list(sinks)  # type: ignore[arg-type]
        if not self.sinks:
            raise ValueError("Alerter needs at least one sink")
        self._sink_ids = _sink_ids(self.sinks)
        self.state = SentState(state)
        self.stats = AlertStats()
        self._stats_lock = _fork.lock()
        self._queue: queue.Queue[Alert] | None = None
        self._thread: threading.Thread | None = None
        self._thread_lock = _fork.lock()
        self._retries: dict[str, _Retry] = {}  # by alert key: the sender thread's, and the exit's (under the lock)
        self._retries_lock = _fork.lock()
        self._retries_closed = False  # the exit counted the retries waiting as lost: none is tried or kept since
        # The alerts of the sender thread's batch not tried yet (under _retries_lock): the exit counts them lost
        self._untried: deque[Alert] = deque()
        # The key of the alert the sender thread is delivering (under _retries_lock), until its outcome is decided
        # (_retry_later): the exit leaves that key, its waiting retry and queued copies, to that outcome
        self._delivering: str | None = None
        self._lost: dict[str, set[int]] = {}  # the sinks (by index) counted lost at exit, by alert key (same lock)
        # Claims taken by the delivery under way and not yet delivered: released at exit (_release_at_exit).
        self._in_flight: set[str] = set()
        self._exiting = False
        self._in_flight_lock = _fork.lock()
        _fork.reset_in_child(self)

    def _after_fork_in_child(self) -> None:
        """The alerts queued in the parent are the parent's to deliver (its thread does); the child queues its own
        and starts its own thread at its first. (Keys already sent stay known: the child does not send them
        again.)"""
        self._queue = None
        self._thread = None
        self._in_flight = set()  # the parent's deliveries
        self._retries = {}  # the parent's too
        self._retries_closed = False
        self._untried = deque()
        self._delivering = None
        self._lost = {}
        self._exiting = False

    def send(self, alerts: Alert | Iterable[Alert]) -> list[Alert]:
        """Deliver each alert to every sink that has not had it; return those delivered (to at least one sink).
        Never raises for a sink's failure.

        Each sink claims the alert for itself (``key -> sink``): one sink failing while another delivers must
        leave the failed one to be retried by the next run, and that retry must not send the alert again to the
        sink that already has it."""
        if isinstance(alerts, Alert):
            alerts = [alerts]
        delivered = []
        unreachable: set[int] = set()  # sinks (by index) that timed out or refused in this pass: not tried again
        for alert in alerts:
            outcome = self._send_alert(alert, range(len(self.sinks)), unreachable)
            if outcome is None:
                with self._stats_lock:
                    self.stats.suppressed += 1
            elif outcome[0]:
                with self._stats_lock:
                    self.stats.sent += 1
                delivered.append(alert)
        return delivered

    def _send_alert(self, alert: Alert, sinks: Iterable[int],
                    unreachable: set[int]) -> tuple[list[int], dict[int, bool]] | None:
        """Deliver ``alert`` to those of ``sinks`` (indices) that have not had it: None if every one of them has,
        else (the sinks delivered to, {each sink that failed: whether the failure is worth retrying}). A failed
        sink's claim is released. Nothing is claimed or tried once the app is exiting: each sink not tried then is
        in the failed ones, worth retrying (so lost at exit, :meth:`_retry_later`), though never counted failed."""
        claims = self._claims(alert)
        wanted = sorted(sinks)
        with self._in_flight_lock:  # the exit has begun: a claim taken now and released at once would stay in the
            exiting = self._exiting  # state file, marked sent, if the exit ended before the release
        if exiting:  # (_release_at_exit); the sinks known to have the alert lose nothing
            had = self.state.known_sent([claims[i] for i in wanted])
            return [], {i: True for i, known in zip(wanted, had) if not known}
        pending = [(i, claims[i]) for i, mine in zip(wanted, self._claim([claims[i] for i in wanted], alert.key))
                   if mine]
        if not pending:
            return None
        done: list[int] = []
        failed: dict[int, bool] = {}
        undelivered = [claim for _, claim in pending]
        with self._in_flight_lock:
            exiting = self._exiting
            if not exiting:
                self._in_flight.update(undelivered)
        if exiting:  # the app is exiting (in-app sender): no delivery is started, the claims are let go
            for claim in undelivered:
                self._release(claim)
            return done, {i: True for i, _ in pending}
        try:
            for i, claim in pending:
                sink = self.sinks[i]
                if i in unreachable:
                    self._count_failure(sink)
                    self._release(claim)  # not tried: the next pass tries it
                    failed[i] = True
                else:
                    error = self._deliver(sink, alert, unreachable, i)
                    if error is None:
                        done.append(i)
                        undelivered.remove(claim)
                    else:
                        self._release(claim)  # this sink's claim only: the next run tries it again
                        failed[i] = _worth_retrying(error)
                with self._in_flight_lock:
                    self._in_flight.discard(claim)
                    exiting = self._exiting
                if exiting:  # the exit released the claims of the sinks left (_release_at_exit): never tried
                    failed.update((j, True) for j, _ in pending if j not in failed and j not in done)
                    break
        except BaseException:
            # Ctrl-C (or an exit) in the middle of a delivery: the claims of the sinks not delivered to would
            # stay, and every later run would take the alert as sent to them. Released, the next run sends it.
            for claim in undelivered:
                self._release(claim)
            raise
        finally:
            with self._in_flight_lock:
                self._in_flight.difference_update(undelivered)
        return done, failed

    def _release(self, claim: str, wait_s: float = 5.0) -> None:
        try:
            self.state.release(claim, wait_s=wait_s)
        except sqlite3.Error:  # an unusable state file: the claim stays (logged when claiming)
            pass

    def _release_at_exit(self) -> None:
        """At interpreter exit (atexit, before daemon threads stop): the sender thread may be in the middle of a
        delivery, which the exit cuts short. Its claims would stay in the state file and every later run sharing
        it would take the alert as sent; they are released instead (a delivery that completes all the same is sent
        once more by a later run: a repeat, never a loss), and the thread starts no other delivery. Waits at most
        about a second per claim for a locked state file: the exit is not held up. Without a state file the
        claims end with the process: nothing to release, and the thread goes on as long as the exit lets it."""
        if self.state.path is None:
            return
        with self._in_flight_lock:
            self._exiting = True
            claims = list(self._in_flight)
            self._in_flight.clear()
        for claim in claims:
            self._release(claim, wait_s=1.0)

    def _retries_at_exit(self) -> None:
        """At interpreter exit (atexit, before :meth:`_release_at_exit`): the deliveries waiting for a retry never
        get it, the process ending first, and the alerts still queued, or taken up by the sender thread and not
        tried yet, never get their first attempt. They are counted (``stats.lost_at_exit``: per sink, an alert key
        queued twice, or also waiting for a retry, once; a sink known to have it, not; the key the thread is
        delivering, its waiting retry and queued copies, not: that delivery's outcome decides, in
        :meth:`_retry_later`) and logged once, and the sender thread, running on while the exit lasts, neither tries
        them nor keeps another retry: each is lost, decided once (with a state file they hold no claim, so a later
        ``aicost alerts`` run sends an alert the ledger still warrants). An alert queued after this (by a later exit
        handler) is the thread's: tried while the exit lasts, or lost and counted by the thread if the exit stopped
        deliveries (:meth:`_send_alert`)."""
        untried: list[Alert] = []
        with self._retries_lock:
            self._retries_closed = True
            # The key the thread is delivering: lost or not is that delivery's outcome (delivered, or failed and
            # counted by _retry_later), so its waiting retry is left to it and its queued copies are no loss
            mine = self._delivering
            waiting = [(key, r.sinks) for key, r in self._retries.items() if key != mine]
            keys = {*self._retries, mine}
            self._retries = {key: r for key, r in self._retries.items() if key == mine}
            untried += self._untried  # the thread's batch: it calls task_done for these
            self._untried.clear()
        if self._queue is not None:
            while True:  # never blocks: what is queued now is taken out, so the thread cannot take it up too
                try:
                    untried.append(self._queue.get_nowait())
                except queue.Empty:
                    break
                self._queue.task_done()  # handled (decided lost): flush() in a later exit handler does not wait
        for alert in untried:
            if alert.key in keys:  # a copy queued behind the first, or behind its waiting retry: no second loss
                continue
            keys.add(alert.key)
            waiting.append((alert.key, [i for i, had in enumerate(self.state.known_sent(self._claims(alert)))
                                        if not had]))
        self._lose_at_exit(waiting)

    def _lose_at_exit(self, sinks: Iterable[tuple[str, Iterable[int]]]) -> None:
        """Count (and log once for this alerter) the deliveries lost at exit, ``sinks`` holding for each alert key
        its sink indices: each key and sink once (a copy queued again by a later exit handler failing again, or
        stopped again, is no second loss). Logged once per alerter, not per process: with several alerters the first
        one's line left the others' losses unsaid. (A loss the sender thread counts later in the exit is not logged
        again.)"""
        lost = []
        with self._retries_lock:
            for key, group in sinks:
                counted = self._lost.setdefault(key, set())
                lost += [self.sinks[i].name for i in set(group) - counted]
                counted.update(group)
        if not lost:
            return
        with self._stats_lock:
            self.stats.lost_at_exit += len(lost)
        later = ("" if self.state.path is None else
                 "; a later aicost alerts run sharing the state file sends those the ledger still warrants")
        log_once(f"alerts:lost_at_exit:{id(self)}", logging.WARNING, "aicost alerts: %d deliveries (to %s) were still "
                 "queued or waiting for a retry at exit and are not made: counted in this alerter's "
                 "stats.lost_at_exit (not logged again)%s", len(lost), ", ".join(sorted(set(lost))), later)

    def _claims(self, alert: Alert) -> list[str]:
        """The alert's dedup key for each sink, in the order of :attr:`sinks`."""
        return [f"{alert.key} -> {sink_id}" for sink_id in self._sink_ids]

    def _claim(self, claims: list[str], bare: str) -> list[bool]:
        """Which of the alert's ``claims`` (one per sink) this run takes: none if a state file written before
        claims were per sink holds its ``bare`` key (it was delivered then; sending it again after an upgrade would
        repeat every alert of the current windows)."""
        try:
            return self.state.claim_each(claims, unless=bare)
        except sqlite3.Error as exc:  # an unreadable state file must not stop the alert
            log_once(f"alerts:state:{self.state.path}", logging.WARNING,
                     "aicost alerts: dedup state %s unusable (%s); sending without dedup", self.state.path, exc)
            return [True] * len(claims)

    def _deliver(self, sink: Sink, alert: Alert, unreachable: set[int], index: int) -> Exception | None:
        """Send ``alert`` to ``sink``; the exception (counted, logged) if it raised, else None. A sink that could not
        be reached (timed out, refused the connection) joins ``unreachable``: the rest of the pass skips it rather
        than wait out its timeout once per alert (a dead webhook held ``aicost alerts`` 5 s per alert)."""
        try:
            sink.send(alert)
            return None
        except Exception as exc:  # noqa: BLE001 - a sink's failure is counted, never raised
            self._count_failure(sink)
            log_once(f"alerts:sink:{sink.name}:{type(exc).__name__}", logging.WARNING,
                     "aicost alerts: %s failed to deliver an alert (%s: %s); counted, not marked sent (the next "
                     "run, or in the app a retry, tries it again)", sink.name, type(exc).__name__, exc)
            if _unreachable(exc):
                unreachable.add(index)
                log_once(f"alerts:unreachable:{sink.name}", logging.WARNING,
                         "aicost alerts: %s unreachable; its other alerts of this delivery pass are not tried "
                         "(counted as failed, retried by the next pass)", sink.name)
            return exc

    def _count_failure(self, sink: Sink) -> None:
        with self._stats_lock:
            self.stats.failed += 1
            self.stats.failures_by_sink[sink.name] = self.stats.failures_by_sink.get(sink.name, 0) + 1

    # -- in-app: budget callbacks ------------------------------------------------------------------------------
    def budget_callback(self) -> Callable[[Any], None]:
        """An ``on_threshold`` / ``on_exceed`` callback for budgets: queues the alert, returns at once."""

        def on_budget_event(event: Any) -> None:
            try:
                self.submit(alert_from_budget_event(event))
            except Exception:  # noqa: BLE001 - a callback must never break the guarded call
                log_once("alerts:budget_callback", logging.WARNING, "aicost alerts: budget event not queued",
                         exc_info=True)

        return on_budget_event

    def submit(self, alert: Alert) -> bool:
        """Queue ``alert`` for the background sender; False (counted) if the queue is full or the interpreter is
        shutting down (no thread is started then)."""
        if sys.is_finalizing():  # counted, not logged: logging may be torn down by now
            self._count_dropped()
            return False
        self._ensure_thread()
        assert self._queue is not None
        try:
            self._queue.put_nowait(alert)
            return True
        except queue.Full:
            self._count_dropped()
            log_once("alerts:queue_full", logging.WARNING, "aicost alerts: delivery queue full; alerts dropped")
            return False

    def _count_dropped(self) -> None:
        with self._stats_lock:
            self.stats.dropped += 1

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Wait until every queued alert was handled (tried once, or at interpreter exit counted lost); True if the
        queue drained in time. A failed delivery waiting for its retry is not waited for."""
        if self._queue is None:
            return True
        deadline = time.monotonic() + timeout_s
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._thread_lock:
            if self._thread is not None and self._thread.is_alive():
                return
            if self._queue is None:
                self._queue = queue.Queue(self.QUEUE_SIZE)
            self._thread = threading.Thread(target=self._run, name="aicost-alerts", daemon=True)
            self._thread.start()
            _release_claims_at_exit(self)

    def _run(self) -> None:
        """Deliver what is queued, a batch at a time: the alert waited for and all queued behind it, with the failed
        deliveries whose retry is due. One batch is one delivery pass (a sink found unreachable is skipped for the
        rest of the batch, not for the life of the app: the next batch tries it again). Waiting for an alert, the
        thread wakes for the next retry due."""
        assert self._queue is not None
        while True:
            batch = []
            try:
                batch.append(self._queue.get(timeout=self._next_retry_in()))
            except queue.Empty:  # a retry is due
                pass
            while len(batch) < self.QUEUE_SIZE:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self._pass(batch)
            except Exception:  # noqa: BLE001
                log_once("alerts:worker", logging.WARNING, "aicost alerts: sending failed", exc_info=True)
            finally:
                with self._retries_lock:
                    self._delivering = None
                for _ in batch:
                    self._queue.task_done()

    def _next_retry_in(self) -> float | None:
        """Seconds until the first retry is due (0 if one is); None without any."""
        with self._retries_lock:
            if not self._retries:
                return None
            first = min(r.due for r in self._retries.values())
        return max(0.0, first - time.monotonic())

    def _pass(self, batch: list[Alert]) -> None:
        """One delivery pass of the sender thread: the retries due, then ``batch``. Each failed delivery worth
        retrying waits for its next attempt; the others are given up. A retry goes only to the sinks that failed,
        and claims the alert for them again: a sink that has it (delivered the first time, or since by a cron run
        sharing the state file) never gets it twice."""
        unreachable: set[int] = set()
        now = time.monotonic()
        with self._retries_lock:  # the batch is untried from now on: an exit during a retry's delivery counts it
            self._untried.extend(batch)
            due = [r for r in self._retries.values() if r.due <= now]
        for retry in due:
            with self._retries_lock:
                if self._retries.get(retry.alert.key) is not retry:  # the exit counted it lost: decided, not tried
                    continue
                del self._retries[retry.alert.key]
                self._delivering = retry.alert.key
            # None: every sink it was owed has it, delivered by another pass or process
            delivered, failed = self._send_alert(retry.alert, retry.sinks, unreachable) or ([], {})
            if delivered and not retry.sent:
                with self._stats_lock:
                    self.stats.sent += 1
            self._retry_later(retry.alert, failed, retry.attempts + 1, retry.sent or bool(delivered))
        while True:
            with self._retries_lock:  # the exit takes what is left, counted lost: decided once, not tried
                if not self._untried:
                    break
                alert = self._untried.popleft()
                self._delivering = alert.key
            outcome = self._send_alert(alert, range(len(self.sinks)), unreachable)
            if outcome is None:
                with self._stats_lock:
                    self.stats.suppressed += 1
            delivered, failed = outcome or ([], {})
            # The same alert waiting for a retry (queued again meanwhile): counted sent once, as a retry counts it,
            # and what it delivers now is the retry's no more (a retry with nothing left no longer waits)
            with self._retries_lock:
                waiting = self._retries.get(alert.key)
                sent_before = waiting is not None and waiting.sent
                if waiting is not None:
                    waiting.sent = sent_before or bool(delivered)
                    waiting.sinks.difference_update(delivered)
                    if not waiting.sinks:
                        del self._retries[alert.key]
            if delivered and not sent_before:
                with self._stats_lock:
                    self.stats.sent += 1
            self._retry_later(alert, failed, 1, sent_before or bool(delivered))

    def _retry_later(self, alert: Alert, failed: Mapping[int, bool], attempts: int, sent: bool) -> None:
        """Keep ``alert`` for another attempt to the sinks that ``failed`` worth retrying, after its next delay;
        give up (count, log once) the failures not worth it, and every one after the last delay or when
        RETRY_LIMIT alerts are already waiting. An alert already waiting (queued again while its retry waits, as
        a budget's ``exceeded`` is at each refused call) keeps its place and adds these sinks."""
        retry = {i for i, worth in failed.items() if worth}
        given_up = len(failed) - len(retry)
        why = "the webhook refused it (HTTP 4xx or a redirect)"
        lost: set[int] = set()
        with self._retries_lock:
            self._delivering = None  # decided: an exit from now on counts what is left of it
            waiting = self._retries.get(alert.key)
            if self._retries_closed:  # the exit has begun: no retry would come, to these sinks or the waiting ones
                self._retries.pop(alert.key, None)  # (what they failed is in retry; the others have it)
                lost = retry
            elif retry and waiting is not None:
                waiting.sinks |= retry
                waiting.sent = waiting.sent or sent
            elif retry and attempts > len(self.RETRY_DELAYS_S):
                given_up += len(retry)
                why = f"{attempts} attempts failed"
            elif retry and len(self._retries) >= self.RETRY_LIMIT:
                given_up += len(retry)
                why = f"{self.RETRY_LIMIT} alerts were already waiting for a retry"
            elif retry:
                self._retries[alert.key] = _Retry(alert, retry, attempts,
                                                  time.monotonic() + self.RETRY_DELAYS_S[attempts - 1], sent)
        self._lose_at_exit([(alert.key, lost)])
        if given_up:
            with self._stats_lock:
                self.stats.given_up += given_up
            log_once("alerts:given_up", logging.WARNING, "aicost alerts: gave up delivering an alert: %s; counted in "
                     "stats.given_up (not logged again)", why)


_SENDING: "weakref.WeakSet[Alerter]" = weakref.WeakSet()  # alerters whose sender thread was started
_AT_EXIT = False


def _release_claims_at_exit(alerter: Alerter) -> None:
    """Have ``alerter``'s in-flight claims released at exit (one atexit hook for all alerters, added at the first
    sender thread; weak: an alerter dropped by the app is not kept alive for it)."""
    global _AT_EXIT
    _SENDING.add(alerter)
    if not _AT_EXIT:
        _AT_EXIT = True
        atexit.register(_at_exit)


def _at_exit() -> None:
    for alerter in list(_SENDING):
        for step in (alerter._retries_at_exit, alerter._release_at_exit):
            try:
                step()
            except Exception:  # noqa: BLE001 - never in the way of the exit
                pass


# ---------------------------------------------------------------------------------------------------------------
# One evaluation over the ledger (what `aicost alerts` runs)


def evaluate_ledger(store: Any, budgets: Sequence[Any], *, now: datetime | None = None,
                    anomaly_days: int = 2, dimensions: Sequence[str] | None = None) -> list[Alert]:
    """Every alert the ledger warrants now: budget thresholds in the current windows, monthly budgets whose
    month-end forecast is over, and spend spikes in the last ``anomaly_days`` days."""
    from .anomalies import DEFAULT_DIMENSIONS, scan_ledger
    from .forecast import default_as_of, forecast_budgets

    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    alerts = budget_threshold_alerts(store, budgets, now=now)
    as_of = default_as_of(store, today=now.date())
    if as_of is not None:
        alerts += forecast_alerts(forecast_budgets(store, budgets, as_of=as_of))
        today = now.date()
        # Up to now, not to the end of today: replaying a past ledger (`aicost alerts --at`), its spend after "now"
        # has not happened yet.
        end = min(datetime(today.year, today.month, today.day, tzinfo=timezone.utc) + timedelta(days=1), now)
        alerts += anomaly_alerts(scan_ledger(store, today - timedelta(days=anomaly_days - 1), end,
                                             dimensions=dimensions or DEFAULT_DIMENSIONS, calls=3))
    return alerts
