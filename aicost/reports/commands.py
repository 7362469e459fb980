"""The ``aicost forecast``, ``aicost anomalies``, ``aicost dashboard`` and ``aicost alerts`` subcommands.

Thin: each parses its arguments, opens the ledger the way ``aicost report`` does, and calls the functions of
:mod:`aicost.reports`. ``add_NAME`` registers command NAME; :data:`aicost.cli.SUBCOMMANDS` names them (this
module is imported only when one of them runs).
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, TextIO

from ..cli import whole_number
from ..pricing.money import percent, usd_amount
from ._format import plus_unknown, unknown_calls, usd_column as _money

__all__ = ["add_alerts", "add_anomalies", "add_dashboard", "add_forecast"]


def _single_threaded_blas() -> None:
    """Small model fits are slower with a BLAS thread pool than without it (threads spin on a busy machine, up
    to 5x): the CLI asks for one thread unless the user chose. Only effective before numpy is first imported."""
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, "1")


# What each command needs of the `reports` extra, which aicost's core does not install (statsmodels brings numpy
# and needs pandas; the dashboard draws with plotly).
_MODELS = ("pandas", "statsmodels")
_CHARTS = (*_MODELS, "plotly")


def _needing(modules: tuple[str, ...], handler: Any) -> Any:
    """``handler``, run once ``modules`` import. Without them the command says what to install (exit status 2), as
    `aicost export` does of pyarrow, before it does anything, rather than an ImportError traceback."""

    def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
        _single_threaded_blas()  # the check may import numpy
        missing = []
        for name in modules:
            try:
                importlib.import_module(name)
            except ImportError:
                missing.append(name)
        if missing:
            print(f"aicost {args.command}: needs {', '.join(missing)}, from the reports extra: "
                  "pip install 'aicost-otel[reports]'", file=err)
            return 2
        return handler(args, out, err)

    return run


_WHOLE = Decimal(1)


def _align(rows: list[list[str]], left: int) -> str:
    from ..ledger.report import aligned  # the same column layout as `aicost report`

    header, body = rows[0], rows[1:]
    return "\n".join(aligned(header, [[r[i] for r in body] for i in range(len(header))], left)) + "\n"


def _parse_day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date (YYYY-MM-DD): {value!r}") from None


def _parse_usd(value: str) -> Decimal:
    """An argparse type: an amount in USD >= 0, read as every amount a user gives (``pricing.money.usd_amount``)."""
    try:
        amount = usd_amount(value, "amount")
    except ValueError:
        amount = None
    if amount is None or amount < 0:
        raise argparse.ArgumentTypeError(f"must be a finite amount in USD >= 0, got {value!r}")
    return amount


def _finite_number(value: str) -> float:
    """An argparse type: a finite number >= 0 (``nan`` fails every comparison, so it would silently turn a
    threshold off)."""
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or number < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {value!r}")
    return number


def _load_budgets(path: str | None) -> list[Any]:
    if not path:
        return []
    from ..budget.config import parse_config

    return list(parse_config(path)["budgets"])


def _open(args: argparse.Namespace, err: TextIO) -> Any:
    from ..cli import _open_store

    return _open_store(args, err)


# --------------------------------------------------------------------------------------------------- forecast
def _forecast(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    _single_threaded_blas()
    from ..errors import ConfigurationError
    from .data import check_dimension
    from .forecast import default_as_of, forecast_budgets, forecast_ledger

    try:
        by = check_dimension(args.by)
        budgets = _load_budgets(args.budgets)
    except (ValueError, TypeError, OSError) as exc:
        print(f"aicost forecast: {exc}", file=err)
        return 2
    if not 0 < args.level < 1:
        print(f"aicost forecast: --level must be between 0 and 1 (e.g. 0.8), got {args.level}", file=err)
        return 2
    if budgets and not any(budget.window == "month" for budget in budgets):
        print("aicost forecast: no monthly budget in the file (only window = \"month\" has a month-end)", file=err)
        return 2
    store = _open(args, err)
    if store is None:
        return 2
    with store:
        as_of = args.as_of or default_as_of(store)
        if as_of is None:
            print("aicost forecast: the ledger is empty: nothing to forecast", file=out)
            return 0
        try:
            if budgets:  # none forecast: no spend in the budgets' scopes, said below as for the groups
                forecasts = forecast_budgets(store, budgets, as_of=as_of, level=args.level, per_value_limit=args.top)
            else:
                forecasts = forecast_ledger(store, by=by, as_of=as_of, level=args.level, limit=args.top)
        except ConfigurationError as exc:
            print(f"aicost forecast: {exc}", file=err)
            return 2
    if not any(f.actual or f.projected or f.unknown_cost_calls for f in forecasts):
        print(f"aicost forecast: no spend in the ledger in the 8 weeks up to {as_of}: nothing to forecast", file=out)
        if args.as_of is None:
            print(f"(forecasts use complete days, up to yesterday; --as-of {as_of + timedelta(days=1)} counts today "
                  "as one)", file=out)
        return 0
    if args.format == "json":
        json.dump([_forecast_dict(f) for f in forecasts], out, indent=2)
        out.write("\n")
        return 0
    month_start = forecasts[0].period_start
    days = (forecasts[0].period_end - month_start).days + 1
    actual_days = (as_of - month_start).days + 1
    out.write(f"aicost forecast: month-end spend for {month_start:%Y-%m}, as of {as_of} ({actual_days} of {days} days "
              f"actual), {args.level:.0%} interval\n")
    # The "unpriced" column of `aicost report`, where some group has calls of unknown price.
    unpriced = any(f.unknown_cost_calls for f in forecasts)
    header = ["budget" if budgets else by, "spent USD", *(["unpriced"] if unpriced else []), "projected USD",
              "interval USD", "budget USD", "of budget", "method"]
    rows = [header]
    for f in forecasts:
        interval = "-" if f.low is None else f"{_money(f.low)} - {_money(f.high)}"
        share = "-"
        if f.budget:  # rounded in money's RATIO context, not by format() in the thread's
            share = f"{percent(f.projected, f.budget, _WHOLE):f}%"
            share += " OVER" if f.over_budget else ""
        rows.append([f.group, _money(f.actual), *([f"{f.unknown_cost_calls:,}"] if unpriced else []),
                     _money(f.projected), interval, _money(f.budget), share, f.method])
    out.write(_align(rows, 1))
    for f in forecasts:
        if f.unknown_cost_calls:
            out.write(f"{f.group}: {f.unknown_cost_calls:,} with an unknown price, not in the total: its spent and "
                      "projected USD are lower bounds\n")
    return 0


def _forecast_dict(f: Any) -> dict[str, Any]:
    from ..ledger.row import decimal_text as text  # exact decimals as plain strings, as `aicost report` writes them

    return {"group": f.group, "period_start": f.period_start.isoformat(), "period_end": f.period_end.isoformat(),
            "as_of": f.as_of.isoformat(), "actual_usd": text(f.actual), "projected_usd": text(f.projected),
            "low_usd": text(f.low), "high_usd": text(f.high), "level": f.level, "budget_usd": text(f.budget),
            "over_budget": f.over_budget, "method": f.method, "history_days": f.history_days,
            "unknown_cost_calls": f.unknown_cost_calls}


def add_forecast(sub: argparse._SubParsersAction) -> None:
    from .data import DIMENSIONS

    p = sub.add_parser("forecast", help="month-end spend projection with an interval, per group or per budget")
    p.add_argument("--ledger", help="ledger URL (default: $AICOST_LEDGER, else ./aicost-ledger.db)")
    p.add_argument("--by", default="team", help=f"group: {', '.join(DIMENSIONS)}, tag:NAME or global (default team)")
    p.add_argument("--budgets", metavar="FILE", help="a budgets TOML/JSON file: forecast each monthly budget instead")
    p.add_argument("--as-of", type=_parse_day, help="last day counted as actual (default: yesterday, or the "
                                                    "ledger's last day)")
    p.add_argument("--level", type=float, default=0.8, help="interval coverage (default 0.8)")
    p.add_argument("--top", type=whole_number(1), default=20,
                   help="largest groups (or values of a per-team budget) to forecast, by spend this month (default 20)")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(handler=_needing(_MODELS, _forecast))


# ------------------------------------------------------------------------------------------------- anomalies
def _anomalies(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    _single_threaded_blas()
    from ..ledger.report import PeriodError, parse_period
    from ..ledger.row import decimal_text
    from .anomalies import scan_ledger
    from .data import DIMENSIONS, check_dimension

    try:
        dims = [check_dimension(d.strip()) for d in args.by.split(",") if d.strip()]
        period = parse_period(args.period, since=args.since, until=args.until)
    except (ValueError, PeriodError) as exc:
        print(f"aicost anomalies: {exc}", file=err)
        return 2
    if not dims:  # scanning nothing would report "No spikes"
        print(f"aicost anomalies: --by names no dimension; give one or more of {', '.join(DIMENSIONS)}, tag:<name>, "
              "global (comma-separated)", file=err)
        return 2
    store = _open(args, err)
    if store is None:
        return 2
    with store:
        until = period.elapsed or period.end  # a period under way: its hours ahead are no spend yet, not zeros
        found = scan_ledger(store, period.start, until, dimensions=dims, granularity=args.granularity,
                            calls=args.calls, z=args.z, min_ratio=args.min_ratio, min_usd=args.min_usd)
        from ..ledger import totals

        period_totals = totals(store, period.start, period.end)
        empty = not period_totals.calls
    if args.format == "json":
        json.dump([_anomaly_dict(a) for a in found], out, indent=2)
        out.write("\n")
        return 0
    out.write(f"aicost anomalies: {period.describe()}, per {args.granularity}, by {', '.join(dims)}\n")
    if period_totals.unknown_cost_calls:  # as `aicost report` says it; a spike is judged on priced spend only
        out.write(f"{unknown_calls(period_totals.unknown_cost_calls)}: spikes are "
                  "found in priced spend, and a spike's spend is a lower bound where it had some\n")
    if empty:
        out.write(f"No spend recorded between {period.start.isoformat()} and {period.end.isoformat()}: the ledger "
                  "has no calls in this period.\n")
        return 0
    if not found:
        out.write("No spikes: every group stayed within its baseline.\n")
        return 0
    for a in found:
        ratio = "new" if a.baseline <= 0 else f"{a.ratio:.1f}x"
        unknown = plus_unknown(a.unknown_cost_calls)
        out.write(f"\n{a.dimension} {a.group}  {a.start}  spent {_money(a.actual)} USD{unknown} against a baseline of "
                  f"{_money(a.baseline)} ({ratio}, z {min(a.score, 999):.1f}, {a.method})\n")
        if a.calls:
            rows = [["  time (UTC)", "model", "team", "feature", "customer", "tokens in/out", "cost USD", "span"]]
            for c in a.calls:
                rows.append([f"  {c.time:%Y-%m-%d %H:%M:%S}", c.model or "-", c.team or "-", c.feature or "-",
                             c.customer or "-", f"{c.input_tokens:,}/{c.output_tokens:,}", decimal_text(c.cost) or "-",
                             c.span_id])
            out.write(_align(rows, 5))
    return 0


def _anomaly_dict(a: Any) -> dict[str, Any]:
    from ..ledger.row import decimal_text as text

    return {"dimension": a.dimension, "group": a.group, "start": a.start.isoformat(), "end": a.end.isoformat(),
            "actual_usd": text(a.actual), "unknown_cost_calls": a.unknown_cost_calls, "baseline_usd": text(a.baseline),
            "score": min(a.score, 1e9), "method": a.method,
            "calls": [{"span_id": c.span_id, "trace_id": c.trace_id, "time": c.time.isoformat(), "model": c.model,
                       "team": c.team, "feature": c.feature, "customer": c.customer, "user": c.user,
                       "input_tokens": c.input_tokens, "output_tokens": c.output_tokens, "cost_usd": text(c.cost)}
                      for c in a.calls]}


def add_anomalies(sub: argparse._SubParsersAction) -> None:
    from .anomalies import DEFAULT_MIN_RATIO, DEFAULT_MIN_USD, DEFAULT_Z

    p = sub.add_parser("anomalies", help="spend spikes per team / feature / model / customer, with their calls")
    p.add_argument("--ledger", help="ledger URL (default: $AICOST_LEDGER, else ./aicost-ledger.db)")
    p.add_argument("--period", help="period to scan: 7d (default), yesterday, this-month, YYYY-MM, ...")
    p.add_argument("--since", help="start (ISO date or time)")
    p.add_argument("--until", help="end, exclusive (ISO date or time)")
    p.add_argument("--by", default="team,feature,model,customer", help="dimensions, comma-separated")
    p.add_argument("--granularity", choices=("day", "hour"), default="day")
    p.add_argument("--z", type=_finite_number, default=DEFAULT_Z,
                   help=f"robust z-score threshold (default {DEFAULT_Z})")
    p.add_argument("--min-ratio", type=_finite_number, default=DEFAULT_MIN_RATIO,
                   help=f"spend / baseline at least (default {DEFAULT_MIN_RATIO})")
    p.add_argument("--min-usd", type=_parse_usd, default=DEFAULT_MIN_USD,
                   help=f"excess over baseline at least (USD, default {DEFAULT_MIN_USD})")
    p.add_argument("--calls", type=whole_number(0), default=5,
                   help="costliest calls to show per spike (default 5)")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(handler=_needing(_MODELS, _anomalies))


# ------------------------------------------------------------------------------------------------- dashboard
def _load_json(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, dict) or "totals" not in data:
        raise ValueError(f"--reconciliation {path}: not the JSON of aicost reconcile --format json")
    return data


def _dashboard(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    _single_threaded_blas()
    from ..ledger.report import PeriodError, parse_period
    from .dashboard import build_dashboard

    try:
        period = parse_period(args.period or (None if args.since or args.until else "30d"), since=args.since,
                              until=args.until)
        budgets = _load_budgets(args.budgets)
        reconciliations = [_load_json(path) for path in args.reconciliation or ()]
    except (ValueError, TypeError, OSError, PeriodError) as exc:
        print(f"aicost dashboard: {exc}", file=err)
        return 2
    store = _open(args, err)
    if store is None:
        return 2
    with store:
        html, summary = build_dashboard(store, period, budgets=budgets, as_of=args.as_of,
                                        reconciliations=reconciliations)
    try:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(html)
    except OSError as exc:  # a directory that does not exist, a file that cannot be written
        print(f"aicost dashboard: --out: cannot write {args.out!r}: {exc.strerror or exc}", file=err)
        return 2
    print(f"wrote {args.out} ({len(html) / 1e6:.1f} MB, works offline): {summary}", file=out)
    return 0


def add_dashboard(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dashboard", help="one self-contained HTML page of charts (works offline)")
    p.add_argument("--out", "-o", default="spend.html", help="HTML file to write (default spend.html)")
    p.add_argument("--ledger", help="ledger URL (default: $AICOST_LEDGER, else ./aicost-ledger.db)")
    p.add_argument("--period", help="30d (default), this-month, last-month, YYYY-MM, 7d, ...")
    p.add_argument("--since", help="start (ISO date or time)")
    p.add_argument("--until", help="end, exclusive (ISO date or time)")
    p.add_argument("--budgets", metavar="FILE", help="budgets TOML/JSON: monthly budgets drawn against forecast")
    p.add_argument("--as-of", type=_parse_day, help="last day counted as actual by the forecasts (default: "
                                                    "yesterday, or the last day of the ledger or the period)")
    p.add_argument("--reconciliation", action="append", metavar="FILE",
                   help="a reconciliation with the vendor's bill (aicost reconcile --format json > FILE) shown as a "
                        "section (repeatable)")
    p.set_defaults(handler=_needing(_CHARTS, _dashboard))


# ---------------------------------------------------------------------------------------------------- alerts
def _alerts(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    _single_threaded_blas()
    from ..errors import ConfigurationError
    from .alerts import Alerter, CallbackSink, WebhookSink, evaluate_ledger

    try:
        budgets = _load_budgets(args.budgets)
        sinks: list[Any] = [WebhookSink(url) for url in _webhook_urls(args)]
    except (ValueError, TypeError, OSError, ConfigurationError) as exc:
        print(f"aicost alerts: {exc}", file=err)
        return 2
    now = args.at or datetime.now(timezone.utc)
    if not sinks:  # no webhook: printing them is the delivery (and what is remembered as sent)
        sinks.append(CallbackSink(lambda a: None, name="stdout"))
    # Only real deliveries count: a webhook that failed leaves its alert unsent, to be retried by the next run.
    try:
        alerter = Alerter(sinks, state=args.state)
    except ConfigurationError as exc:
        print(f"aicost alerts: --state: {exc}", file=err)
        return 2
    store = _open(args, err)
    if store is None:
        return 2
    with store:
        alerts = evaluate_ledger(store, budgets, now=now, anomaly_days=args.anomaly_days)
    for a in alerter.send(alerts):
        print(f"[{a.kind}] {a.title}: {a.text}", file=out)
    s = alerter.stats
    print(f"{len(alerts)} alert(s): {s.sent} sent, {s.suppressed} already sent before, {s.failed} failed "
          f"deliveries", file=out)
    return 1 if s.failed else 0


WEBHOOK_ENV = "AICOST_ALERT_WEBHOOK"


def _webhook_urls(args: argparse.Namespace) -> list[str]:
    """The webhooks to POST to: ``--webhook`` URLs and those in ``--webhook-file`` files (read as
    ``aicost reconcile`` reads them: :func:`aicost.reports.alerts.webhook_file_urls`), else
    ``$AICOST_ALERT_WEBHOOK`` (as ``--ledger`` and ``$AICOST_LEDGER``). A webhook's URL is its secret: on the
    command line it shows in ``ps`` and in crontabs, in a file or the environment it does not. The variable holds
    URLs separated by whitespace (a URL cannot contain any). Errors name the file or the variable, never a URL."""
    from .alerts import webhook_file_urls

    urls = list(args.webhook or ()) + webhook_file_urls(args.webhook_file or ())
    if not args.webhook and not args.webhook_file:
        urls += os.environ.get(WEBHOOK_ENV, "").split()
    return urls


def add_alerts(sub: argparse._SubParsersAction) -> None:
    from ..cli import _parse_at  # `aicost prices --at`'s: ISO date or time, UTC without an offset

    p = sub.add_parser("alerts", help="send budget, forecast and spike alerts (to a webhook), each once",
                       description="Send budget, forecast and spike alerts, each once. Webhooks: --webhook and "
                                   "--webhook-file, else $" + WEBHOOK_ENV + " (whitespace-separated URLs); "
                                   "without any, the alerts are printed.")
    p.add_argument("--ledger", help="ledger URL (default: $AICOST_LEDGER, else ./aicost-ledger.db)")
    p.add_argument("--budgets", metavar="FILE", help="budgets TOML/JSON: thresholds and monthly limits to check")
    p.add_argument("--webhook", action="append", metavar="URL",
                   help="POST Slack-compatible JSON here (repeatable); the alerts delivered are also printed. The "
                        "URL is a secret that shows in ps and crontabs: prefer --webhook-file or $" + WEBHOOK_ENV)
    p.add_argument("--webhook-file", action="append", metavar="PATH",
                   help="read webhook URLs from this file (whitespace-separated, # comment lines; repeatable)")
    p.add_argument("--state", default=".aicost-alerts.db",
                   help="file remembering the alerts already sent (default .aicost-alerts.db)")
    p.add_argument("--anomaly-days", type=whole_number(1), default=2,
                   help="scan the last N days for spikes (default 2)")
    p.add_argument("--at", type=_parse_at, help="evaluate as if it were this time (ISO, UTC without an offset; "
                                                "default now): replay a past ledger")
    p.set_defaults(handler=_needing(_MODELS, _alerts))


