"""``reconcile()``: fetch a vendor's bill for a period, read the ledger for the same period, compare."""

from __future__ import annotations

import os
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any, Callable, Mapping

from ..errors import AicostError, ConfigurationError
from ..integrations.identity import key_fingerprint
from ..pricing.money import format_usd, usd_amount
from .compare import Tolerances, compare
from .errors import AdminKeyMissing, BillFetchError, ReconcileError
from .http import Fetcher
from .result import Reconciliation, money
from .vendors import APIS, Bill, Vendor

__all__ = ["reconcile", "vendor_named", "UnexplainedSpendAlert"]


class UnexplainedSpendAlert:
    """What an ``on_unexplained`` callback receives when unexplained spend passes the threshold."""

    __slots__ = ("vendor", "period", "amount", "threshold", "summary", "result")

    def __init__(self, result: Reconciliation, threshold: Decimal) -> None:
        self.vendor = result.vendor
        self.period = result.label
        self.amount = result.unexplained
        self.threshold = threshold
        self.summary = result.summary()
        self.result = result

    def alert_fields(self) -> dict[str, Any]:
        """The fields of an alert in the shape of ``aicost.reports.alerts.Alert`` (kind, key, title, text,
        fields), so an alert sink can send it: ``Alerter(sink).send(Alert(**a.alert_fields()))``. The key names
        the vendor, period and threshold: an alerter that sends each key once notifies once per month."""
        top = self.result.sources()[:3]
        return {
            "kind": "unexplained_spend",
            "key": f"reconcile:{self.vendor}:{self.result.start:%Y-%m-%d}:{format_usd(self.threshold)}",  # 50 = 50.0
            "title": f"Unexplained {self.vendor} spend: {money(self.amount)} in {self.period}",
            "text": self.summary,
            "fields": tuple((f"{s.day} {s.scope or '-'} {s.key_id or '-'}", f"{money(s.amount)} {s.model or ''}")
                            for s in top),
        }

    def __repr__(self) -> str:
        return f"UnexplainedSpendAlert({self.vendor} {self.period}: {self.amount} > {self.threshold})"


def vendor_named(name: str, api: str | None = None) -> Vendor:
    """The report reader for a vendor (and, for Anthropic, ``api="usage_report"`` (default) or ``"analytics"``)."""
    key = str(name).strip().lower()
    if key not in APIS:
        raise ConfigurationError(f"vendor: unknown vendor {name!r}; supported: {', '.join(sorted(APIS))}")
    apis = APIS[key]
    if api is None:
        return next(iter(apis.values()))
    reader = apis.get(str(api).strip().lower())
    if reader is None:
        raise ConfigurationError(f"api: {key} has no report API {api!r}; supported: {', '.join(apis)}")
    return reader


def _period(period: Any, now: datetime):
    from ..ledger.report import PeriodError, parse_period

    if isinstance(period, tuple):
        start, end = (_utc(x) for x in period)
        label = f"{start:%Y-%m-%d} to {end:%Y-%m-%d}"
    else:
        try:
            p = parse_period(str(period), now=now)
        except PeriodError as e:
            raise ConfigurationError(f"period: {e}") from None
        start, end, label = p.start, p.end, (p.label if p.label != "custom" else str(period))
        if len(str(period)) == 7:  # YYYY-MM: the month's name reads better
            label = start.strftime("%B %Y")
    # Whole UTC days: the vendors bucket by day (Anthropic snaps starting_at to the day's start), so a period
    # starting mid-day would compare a whole billed day with part of the ledger's.
    start = start.replace(hour=0, minute=0, second=0, microsecond=0)
    if start >= now:
        raise ConfigurationError(f"period: {label} starts in the future ({start:%Y-%m-%d %H:%M} UTC); "
                                 "there is no bill for it yet")
    return start, min(end, now), label


def _utc(value: datetime | date) -> datetime:
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def reconcile(vendor: str, period: Any, ledger: Any, *, key_map: Mapping[str, str] | None = None,
              keys: Mapping[str, str] | None = None, api: str | None = None, admin_key_env: str | None = None,
              base_url: str | None = None, tolerances: Tolerances | None = None, now: datetime | None = None,
              alert_threshold: Decimal | str | None = None,
              on_unexplained: Callable[[UnexplainedSpendAlert], None] | None = None,
              environ: Mapping[str, str] | None = None, sleep: Callable[[float], None] | None = None,
              ) -> Reconciliation:
    """Compare ``vendor``'s usage and cost reports for ``period`` with the ledger.

    ``period``: ``"2026-11"`` (or any ``aicost report`` period word), or a ``(start, end)`` pair. ``ledger``: an
    open ledger store or a ledger URL. ``key_map``: vendor API key id -> fingerprint (see
    :func:`aicost.integrations.identity.key_fingerprint`); ``keys``: vendor API key id -> the key itself, whose
    fingerprint is computed here and never stored. ``api``: Anthropic's ``"usage_report"`` (default, the Admin
    API's usage and cost reports) or ``"analytics"`` (the beta Usage and Cost Analytics API). The admin key is
    read from ``admin_key_env`` (default ``OPENAI_ADMIN_KEY`` / ``ANTHROPIC_ADMIN_KEY``). When unexplained spend exceeds ``alert_threshold`` (USD),
    ``on_unexplained`` is called once with an :class:`UnexplainedSpendAlert`.
    Raises ConfigurationError (bad vendor / period / missing key, a ledger that cannot be opened), AdminKeyRejected,
    BillFetchError, and :class:`~aicost.ledger.LedgerUnavailable` when the ledger cannot be reached.
    """
    v = vendor_named(vendor, api)
    tolerances = tolerances or Tolerances()
    now = _utc(now) if now is not None else datetime.now(timezone.utc)
    start, end, label = _period(period, now)
    threshold = _threshold(alert_threshold)
    environ = os.environ if environ is None else environ
    env = admin_key_env or v.key_env
    admin_key = (environ.get(env) or "").strip()
    if not admin_key:
        raise AdminKeyMissing(f"{env} is not set: reconciling with {v.name} needs an organization admin key "
                              f"in the environment variable {env}")
    fingerprints = dict(key_map or {})
    for key_id, key in (keys or {}).items():
        fingerprints[key_id] = key_fingerprint(key)

    store, close = _store(ledger)
    fetcher = Fetcher(headers=v.headers(admin_key), key_env=env, vendor=v.name)
    if sleep is not None:
        fetcher.sleep = sleep
    try:
        bill = _fetch(v, fetcher, (base_url or v.base_url).rstrip("/"), start, end)
        cells = compare(v, bill, store.rows(start, end, kinds=("call",)), key_map=fingerprints, now=now,
                        tolerances=tolerances)
    finally:
        if close:
            store.close()
    result = Reconciliation(vendor=v.name, start=start, end=end, label=label, cells=cells,
                            tolerances=tolerances, key_map_used=bool(fingerprints),
                            scope_name=v.scope_name, requests=bill.requests, checked_at=now)
    if threshold is not None and on_unexplained is not None and result.unexplained > threshold:
        on_unexplained(UnexplainedSpendAlert(result, threshold))
    return result


def _threshold(value: Decimal | str | float | int | None) -> Decimal | None:
    """``alert_threshold`` as the amount in USD it means, or None: one that is no finite amount >= 0 (``"abc"``,
    NaN, -5) is a ConfigurationError naming the argument, before anything is fetched (``"abc"`` was a raw decimal
    error; -5 would alert on every run)."""
    if value is None:
        return None
    amount = usd_amount(value, "alert_threshold")
    if amount < 0:
        raise ConfigurationError(f"alert_threshold must be an amount in USD >= 0, got {value!r}")
    return amount


def _fetch(v: Vendor, fetcher: Fetcher, base_url: str, start: datetime, end: datetime) -> Bill:
    """The vendor's bill; a page in another shape than the documented one (a bucket without its times, an amount
    that is no number, a token count that is no whole number) is a failed fetch like invalid JSON
    (:class:`BillFetchError`), never a traceback."""
    try:
        return v.fetch(fetcher, base_url, start, end)
    except (ReconcileError, AicostError):
        raise
    except (LookupError, TypeError, ValueError, AttributeError, ArithmeticError) as exc:
        raise BillFetchError(f"{v.name}: a report page is not in the shape documented ({type(exc).__name__}: "
                             f"{str(exc)[:200]}); a partial bill is never reconciled") from None


def _store(ledger: Any):
    if isinstance(ledger, str):
        from ..ledger import open_store

        return open_store(ledger, create=False, setting="ledger"), True
    return ledger, False
