"""``aicost reconcile``: the command-line face of :func:`aicost.reconcile.reconcile`."""

from __future__ import annotations

import argparse
import math
import os
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import TextIO

from ..errors import ConfigurationError
from ..pricing.files import read_config_file, repeated_keys
from ..pricing.money import format_usd
from .compare import Tolerances
from .errors import ReconcileError
from .render import render_csv, render_json, render_table
from .run import reconcile
from .vendors import APIS

__all__ = ["add_parser"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reconcile", help="compare the ledger with a vendor's bill; find unexplained (shadow) spend")
    p.add_argument("--vendor", required=True, help=f"one of: {', '.join(sorted(APIS))}")
    p.add_argument("--api", help="anthropic only: usage_report (default: the Admin API's usage and cost reports) "
                                 "or analytics (the beta Usage and Cost Analytics API)")
    p.add_argument("--period", default="last-month",
                   help="YYYY-MM (default: last-month), or any aicost report period (7d, this-month, YYYY-MM-DD)")
    p.add_argument("--ledger", help="ledger URL (default: $AICOST_LEDGER, else sqlite:///aicost-ledger.db)")
    p.add_argument("--admin-key-env", metavar="VAR",
                   help="environment variable holding the admin key (default: OPENAI_ADMIN_KEY / ANTHROPIC_ADMIN_KEY)")
    p.add_argument("--key", action="append", default=[], metavar="KEY_ID=VAR",
                   help="join the vendor's API key id KEY_ID to calls made with the key in environment variable "
                        "VAR (only its fingerprint is used; repeatable)")
    p.add_argument("--key-map", metavar="FILE",
                   help='JSON file {"<vendor key id>": "<aicost key fingerprint>", ...}')
    p.add_argument("--lag-hours", type=float, default=24.0,
                   help="days ending less than this long ago are provisional (default: 24)")
    p.add_argument("--money-tolerance", default="0.01", help="USD per day x model cell counted as rounding")
    p.add_argument("--alert-above", metavar="USD",
                   help="exit with status 3 and print an alert when unexplained spend exceeds this amount")
    p.add_argument("--webhook", action="append", metavar="URL",
                   help="needs --alert-above: also POST the alert (Slack-compatible JSON) here, once per vendor, "
                        "period and threshold (repeatable; the aicost alerts sink). The URL is a secret that "
                        "shows in ps and crontabs: prefer --webhook-file")
    p.add_argument("--webhook-file", action="append", metavar="PATH",
                   help="as --webhook, the URLs read from this file (whitespace-separated, # comment lines; "
                        "repeatable). $AICOST_ALERT_WEBHOOK is not read: it is aicost alerts' only")
    p.add_argument("--state", default=".aicost-alerts.db",
                   help="file remembering the alerts already sent (default .aicost-alerts.db, shared with aicost "
                        "alerts)")
    p.add_argument("--base-url", help="the vendor API's base URL (default: the vendor's own)")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    webhooks = [option for option, given in (("--webhook", args.webhook), ("--webhook-file", args.webhook_file))
                if given]
    if webhooks and args.alert_above is None:  # no amount raises the alert: the webhook would never get one
        print(f"aicost reconcile: {' and '.join(webhooks)} {'needs' if len(webhooks) == 1 else 'need'} "
              "--alert-above USD (the unexplained spend above which the alert is raised and delivered)", file=err)
        return 2
    alerts = []
    try:
        tolerances = Tolerances(money_usd=_decimal(args.money_tolerance, "--money-tolerance"),
                                lag=timedelta(hours=_hours(args.lag_hours, "--lag-hours")))
        threshold = None if args.alert_above is None else _decimal(args.alert_above, "--alert-above")
        alerter = _alerter(args.webhook, args.webhook_file, args.state)  # checked before anything is fetched
        result = reconcile(args.vendor, args.period, _ledger(args), key_map=_key_map(args.key_map),
                           keys=_keys(args.key), api=args.api, admin_key_env=args.admin_key_env, base_url=args.base_url,
                           tolerances=tolerances, alert_threshold=threshold, on_unexplained=alerts.append)
    except (ConfigurationError, ReconcileError) as exc:
        print(f"aicost reconcile: {exc}", file=err)
        return 2
    render = {"table": render_table, "csv": render_csv, "json": render_json}[args.format]
    out.write(render(result))
    if not alerts:
        return 0
    for alert in alerts:
        print(f"aicost reconcile: ALERT unexplained {alert.vendor} spend {format_usd(alert.amount)} USD exceeds "
              f"{format_usd(alert.threshold)} USD: {alert.summary}", file=err)
    if alerter is not None:
        _deliver(alerts, alerter, err)
    return 3


def _alerter(webhooks: list[str] | None, files: list[str] | None, state: str):
    """The aicost alerts sender for ``--webhook`` and ``--webhook-file`` (None without either): the URLs, the files
    (read as ``aicost alerts`` reads them) and the ``--state`` file are checked here, before the bill is fetched.
    ``$AICOST_ALERT_WEBHOOK`` is not read: set for ``aicost alerts``, it would turn this command's delivery on
    unasked."""
    if not webhooks and not files:
        return None
    from ..reports.alerts import Alerter, WebhookSink, webhook_file_urls

    sinks = [WebhookSink(url) for url in [*(webhooks or ()), *webhook_file_urls(files or ())]]
    try:
        return Alerter(sinks, state=state)
    except ConfigurationError as exc:
        raise ConfigurationError(f"--state: {exc}") from None


def _deliver(alerts: list, alerter, err: TextIO) -> None:
    """Through the aicost alerts sink, the run's alerts in one delivery pass (a webhook found unreachable is not
    tried again in it) and one summary line: each alert is sent once (the state file remembers what was sent).
    (``reconcile()`` reports at most one alert per run today.)"""
    from ..reports.alerts import Alert

    alerter.send([Alert(**alert.alert_fields()) for alert in alerts])
    s = alerter.stats
    print(f"aicost reconcile: alert {s.sent} sent, {s.suppressed} already sent before, {s.failed} failed "
          "deliveries", file=err)


def _decimal(text: str, option: str) -> Decimal:
    try:
        value = Decimal(str(text))
    except InvalidOperation:
        raise ConfigurationError(f"{option}: not a number: {text!r}") from None
    if not value.is_finite() or value < 0:
        raise ConfigurationError(f"{option}: must be a non-negative amount, got {text!r}")
    return value


def _hours(value: float, option: str) -> float:
    """A finite, non-negative number of hours (argparse accepts 'nan' and 'inf' as floats)."""
    if not math.isfinite(value) or value < 0:
        raise ConfigurationError(f"{option}: must be a non-negative number of hours, got {value!r}")
    return value


def _ledger(args: argparse.Namespace) -> str:
    """The ledger URL (opened by reconcile() after the cheaper checks)."""
    return args.ledger or os.environ.get("AICOST_LEDGER", "").strip() or "sqlite:///aicost-ledger.db"


def _keys(specs: list[str]) -> dict[str, str]:
    keys = {}
    for spec in specs:
        key_id, sep, var = spec.partition("=")
        if not sep or not key_id.strip() or not var.strip():
            raise ConfigurationError(f"--key: expected KEY_ID=ENV_VAR, got {spec!r}")
        value = os.environ.get(var.strip(), "").strip()
        if not value:
            raise ConfigurationError(f"--key {key_id}: environment variable {var.strip()} is not set")
        keys[key_id.strip()] = value
    return keys


def _key_map(path: str | None) -> dict[str, str]:
    """The ``--key-map`` file, read as files of money are (``pricing.files``): a key given twice would map a key
    to the last of two fingerprints silently, its spend to another team's, so it is refused."""
    if not path:
        return {}
    try:
        data, _ = read_config_file(path, "json", what="the key map")
    except ConfigurationError as exc:
        raise ConfigurationError(f"--key-map: {exc}") from None
    twice = next(repeated_keys(data), None)
    if twice is not None:
        raise ConfigurationError(f"--key-map: {path}: key {twice!r} given twice: which fingerprint is meant? (keep "
                                 "one)")
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise ConfigurationError('--key-map: expected a JSON object {"<key id>": "<fingerprint>", ...}')
    return data
