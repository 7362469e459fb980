"""The ``aicost`` command. Subcommands register in ``build_parser``; each is a small function.

``aicost prices MODEL [--provider P] [--tier T] [--at DATE] [--price-file F]``  resolved price table
``aicost prices --list [--provider P]``                                          models in the catalog
``aicost prices --check FILE``                                                   validate a price file
``aicost prices --unknown [FILE]``                                               models seen without a price
``aicost report [--period 7d] [--by team,model] [--format table|csv|json]``     spend from the ledger
``aicost report --pool NAME [--compare PROVIDER/MODEL]``                         a self-hosted pool's cost
``aicost export --format focus [--output FILE.csv|.parquet] [--period P]``      the ledger as a FOCUS dataset
``aicost forecast [--by team | --budgets FILE]``                                   month-end projection, interval
``aicost anomalies [--period 7d] [--by team,feature,model,customer]``              spend spikes and their calls
``aicost dashboard --out spend.html [--period 30d]``                               offline HTML charts
``aicost alerts --budgets FILE [--webhook-file PATH]``                             budget/forecast/spike alerts
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from datetime import datetime, timezone
from typing import Any, Callable, Sequence, TextIO

from .errors import AicostError


def _parse_at(value: str) -> datetime:
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date/time: {value!r}") from None
    return at if at.tzinfo else at.replace(tzinfo=timezone.utc)


def _table(rows: Sequence[Sequence[str]], out: TextIO, *, header: Sequence[str] | None = None,
           decimal_columns: Sequence[int] = (), indent: str = "") -> None:
    """Print columns that line up whatever their content: widths from the widest cell, and amounts aligned on
    their decimal point (``2.5`` over ``1.25`` over ``10``)."""
    rows = [list(r) for r in rows]
    for column in decimal_columns:
        cells = [r[column] for r in rows]
        whole = max((len(c.partition(".")[0]) for c in cells), default=0)
        frac = max((len(c.partition(".")[2]) for c in cells), default=0)
        for r in rows:
            head, dot, tail = r[column].partition(".")
            r[column] = head.rjust(whole) + (dot + tail.ljust(frac) if frac else "") + (" " if frac and not dot else "")
    table = ([list(header)] if header else []) + rows
    if not table:
        return
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    for r in table:
        cells = [c.rjust(widths[i]) if i in decimal_columns else c.ljust(widths[i]) for i, c in enumerate(r)]
        print((indent + "  ".join(cells)).rstrip(), file=out)


def _provider_problem(provider: str | None) -> str | None:
    """None if price rules would accept ``provider`` (a vendor aicost knows, with a price table or not: OpenRouter
    prices by resale, vLLM only by overrides; or one of the user's own, a gateway or ``vllm2``): a lookup then
    answers whether it prices the model. Else, a misspelling of a known name, the message."""
    from .pricing.overrides import known_providers, misspelt_provider

    close = None if provider is None else misspelt_provider(provider)
    if close is None:
        return None
    return (f"unknown provider {provider!r}: did you mean {close!r}? Use one of {', '.join(known_providers())} (or "
            "a catalog id such as 'aws'), or a provider of your own whose name is not this close to one of them")


def _prices(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from . import pricing
    from .pricing import engine, names

    if args.check:
        try:
            from .instrumentation import PRICE_FILE_SECTIONS

            loaded = pricing.check_price_file(args.check, sections=PRICE_FILE_SECTIONS)
        except pricing.PriceFileError as exc:
            problems = exc.problems
            print(f"invalid: {args.check}: {len(problems)} problem{'s' if len(problems) > 1 else ''}", file=err)
            for problem in problems:
                print(f"  {problem}", file=err)
            return 1
        print(f"ok: {args.check}: {len(loaded.rules)} model price(s), {len(loaded.discounts)} discount(s), "
              f"{len(loaded.sections.get('pools', ()))} pool(s)", file=out)
        return 0
    if args.unknown is not None:
        path = args.unknown or os.environ.get(engine.UNKNOWN_FILE_ENV)
        if not path:
            print(f"give a file, or set {engine.UNKNOWN_FILE_ENV} in the instrumented app so it records unknown "
                  "models there", file=err)
            return 2
        try:
            seen = engine.read_unknown_file(path)
        except FileNotFoundError:
            print(f"no unknown models recorded yet ({path} does not exist)", file=out)
            return 0
        except ValueError as exc:
            print(f"cannot read {path}: {exc}", file=err)
            return 1
        if not seen:
            print("no unknown models recorded", file=out)
        _table([[str(item.get("provider") or "-"), str(item.get("model")), f"first seen {item.get('first_seen')}"]
                for item in seen], out)
        return 0
    if args.list:
        from .pricing import catalog

        current = catalog.current()
        wanted = names.provider_id(args.provider) or args.provider if args.provider else None
        if wanted and wanted not in current.providers:
            print(_provider_problem(args.provider) or f"no price table for provider {args.provider!r}", file=err)
            return 1
        print(f"catalog {current.version}", file=out)
        rows = [[names.provider_name(table.id) or table.id, model.id, "(retired)" if model.deprecated else ""]
                for table in current.providers.values() if not wanted or table.id == wanted for model in table.models]
        _table(rows, out, header=["provider", "model", ""])
        return 0
    if not args.model:
        print("usage: aicost prices MODEL [--provider P] | --list | --check FILE | --unknown [FILE]", file=err)
        return 2
    if args.price_file:
        try:
            from .instrumentation import load_price_file

            load_price_file(args.price_file)  # the features' sections read as instrument(price_file=...) reads them
        except pricing.PriceFileError as exc:
            print(f"invalid: {exc}", file=err)
            return 1
    problem = _provider_problem(args.provider)
    if problem:
        print(problem, file=err)
        return 2
    price = pricing.resolve(args.provider, args.model, at=args.at, service_tier=args.tier)
    if price is None:
        print(f"unknown model {args.model!r} (provider {args.provider or 'any'}): no price in catalog "
              f"{pricing.catalog_version()} or overrides", file=err)
        return 1
    when = (args.at or datetime.now(timezone.utc)).date().isoformat()
    provider = names.provider_name(price.provider)
    print(f"{args.model} -> {provider}/{price.model}" if provider else f"{args.model} -> {price.model} (any provider)",
          file=out)
    print(f"  source {price.source}; priced at {when}; tier {price.service_tier or 'standard'}", file=out)
    if price.effective_from or price.effective_until:
        print(f"  effective {price.effective_from or '...'} to {price.effective_until or 'now'}", file=out)
    limits = []
    if price.context_window:
        limits.append(f"context window {price.context_window:,}")
    if price.max_output_tokens:
        limits.append(f"max output {price.max_output_tokens:,}")
    if price.deprecated:
        limits.append("retired/deprecated")
    if limits:
        print("  " + "; ".join(limits), file=out)
    _table(price.table(), out, header=["rate", "applies", "USD"], decimal_columns=(2,), indent="  ")
    return 0


def _add_prices(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prices", help="show the resolved price of a model, or validate a price file")
    p.add_argument("model", nargs="?", help="model name as the vendor reports it (e.g. gpt-4o-2024-08-06)")
    p.add_argument("--provider", help="gen_ai.provider.name as --list shows it: openai, anthropic, azure.ai.openai, "
                                      "aws.bedrock, gcp.gen_ai, x_ai, ... (catalog ids such as aws also work)")
    p.add_argument("--tier", help="service tier: standard, batch, flex, priority")
    p.add_argument("--at", type=_parse_at, help="price at this date/time (ISO 8601, UTC if no offset)")
    p.add_argument("--price-file", help="apply this TOML/JSON override file first")
    p.add_argument("--check", metavar="FILE", help="validate a price override file and exit")
    p.add_argument("--list", action="store_true", help="list the catalog's models (of --provider, if given)")
    p.add_argument("--unknown", nargs="?", const="", metavar="FILE",
                   help="list models recorded without a price (default file: $AICOST_UNKNOWN_MODELS_FILE)")
    p.set_defaults(handler=_prices)


def _ledger_url(args: argparse.Namespace) -> tuple[str, str]:
    """The ledger to read: --ledger, else $AICOST_LEDGER, else ./aicost-ledger.db; and the setting it came from."""
    if args.ledger:
        return args.ledger, "--ledger"
    env = os.environ.get("AICOST_LEDGER", "").strip()
    if env:
        return env, "AICOST_LEDGER"
    return "sqlite:///aicost-ledger.db", "--ledger (default ./aicost-ledger.db)"


def _where(items: Sequence[str] | None) -> dict[str, str]:
    out = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value:
            raise ValueError(f"--where {item!r}: use KEY=VALUE, e.g. team=search or tag:env=prod")
        out[key.strip()] = value
    return out


def _ledger_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ledger", help="ledger URL: sqlite:///path.db or postgresql://... (default: $AICOST_LEDGER, "
                                    "else ./aicost-ledger.db)")
    p.add_argument("--period", help="today, yesterday, 7d (default), 30d, Nd (N whole UTC days through today), Nh "
                                    "(the last N hours), this-month, last-month, YYYY-MM, YYYY-MM-DD")
    p.add_argument("--since", help="start (ISO date or time, UTC unless an offset is given)")
    p.add_argument("--until", help="end, exclusive (ISO date or time)")
    p.add_argument("--where", action="append", metavar="KEY=VALUE",
                   help="only rows with this team / feature / user / customer / model / provider / tag:NAME "
                        "(repeatable)")


def _open_store(args: argparse.Namespace, err: TextIO) -> Any:
    """The existing ledger the command's ``--ledger`` (or $AICOST_LEDGER) names, or None after printing why: a
    ledger that cannot be used (a malformed URL, a missing file) or cannot be reached now (a PostgreSQL server
    down: :class:`~aicost.ledger.store.LedgerUnavailable`, whose sentence names the ledger without its password
    and says what failed: cannot reach it, its database missing, its file damaged).
    Each command exits with status 2 on None, as for its other failures to read the ledger."""
    from .errors import ConfigurationError
    from .ledger import LedgerUnavailable, open_store

    url, setting = _ledger_url(args)
    try:
        return open_store(url, create=False, setting=setting)
    except ConfigurationError as exc:
        print(f"aicost {args.command}: {exc}", file=err)
    except LedgerUnavailable as exc:
        print(f"aicost {args.command}: {setting}: {exc.sentence()}", file=err)
    return None


def _open_ledger(args: argparse.Namespace, err: TextIO) -> "tuple[object, object] | None":
    """The ledger and the command's period, or None after printing why."""
    from .ledger.report import PeriodError, parse_period

    try:
        period = parse_period(args.period, since=args.since, until=args.until)
    except PeriodError as exc:
        print(f"aicost {args.command}: {exc}", file=err)
        return None
    store = _open_store(args, err)
    return None if store is None else (store, period)


# ``aicost report --movers``'s default. The option's own default is None, so that `--pool`, which compares no
# periods, and `--format csv`, which has no movers, can tell a `--movers` given from none and refuse it.
_DEFAULT_MOVERS = 5
_TABLE_ROWS = 50  # aicost.ledger.report.TABLE_ROWS, not imported: --help is made without importing the ledger


def whole_number(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number >= ``minimum``, for every command's counts. argparse names the option in its
    error and exits 2, as for any bad input: ``--top 0`` must not read as "no spend", nor ``--movers -1`` slice the
    movers from the wrong end (every group but one shown as a mover)."""

    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            number = None
        if number is None or number < minimum:
            raise argparse.ArgumentTypeError(f"must be a whole number >= {minimum}, got {value!r}")
        return number

    return parse


def _report(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.pool is not None:
        return _pool_report(args, out, err)
    if args.compare is not None:  # a pool's what-if: without --pool it would be ignored, the comparison missing
        print("aicost report: --compare needs --pool NAME (what a self-hosted pool's tokens would have cost)",
              file=err)
        return 2
    if args.top is not None and args.format != "table":  # they carry every group: a limit would be ignored
        print(f"aicost report: --top limits the table; --format {args.format} carries every group", file=err)
        return 2
    if args.format == "csv" and args.movers:  # the CSV is the groups alone: the movers asked for would be missing
        print("aicost report: --format csv has no top movers; use --format table or json for --movers", file=err)
        return 2
    from .ledger import UnknownGroupKey, check_group_by
    from .ledger.report import FORMAT_MEASURES, build_report, write_report

    try:
        keys = check_group_by(args.by)
        where = _where(args.where)
    except (UnknownGroupKey, ValueError) as exc:
        print(f"aicost report: {exc}", file=err)
        return 2
    opened = _open_ledger(args, err)
    if opened is None:
        return 2
    store, period = opened
    # A month by day and user allocates millions of tuples and strings, none in a reference cycle: the cyclic
    # collector would only walk them again and again (~0.1 s of the command). On again when the report is out.
    collecting = gc.isenabled()
    gc.disable()
    try:
        try:
            movers = _DEFAULT_MOVERS if args.movers is None else args.movers
            report = build_report(store, period=period, group_by=keys, where=where,
                                  movers=movers if args.format != "csv" else 0,  # CSV has no movers (see above)
                                  measures=FORMAT_MEASURES[args.format],  # only what the format shows
                                  lines=args.format if args.format != "table" else None)  # PostgreSQL writes them
        except ValueError as exc:
            print(f"aicost report: {exc}", file=err)
            return 2
        write_report(report, args.format, out, **({"rows": args.top} if args.top is not None else {}))
        if report.empty and args.format != "table":
            print(f"aicost report: no ledger rows between {period.start.isoformat()} and {period.end.isoformat()}",
                  file=err)
        return 0
    finally:
        if collecting:
            gc.enable()
        store.close()


def _pool_report(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``--pool NAME``: a self-hosted pool's closed intervals (aicost.pools; docs/self-hosted.md)."""
    from .errors import ConfigurationError
    from .pools import read_intervals, summarise, what_if
    from .pools.summary import check_comparable
    from .pools.ledger import pools_in
    from .pools.report import render_empty, render_json, render_table

    if args.format == "csv":
        print("aicost report --pool: --format table or json", file=err)
        return 2
    if args.where or args.by != "team":  # the pool's figures are whole, by team: never shown as if filtered
        print("aicost report --pool: shows the whole pool, by team; --where and --by do not apply", file=err)
        return 2
    if args.movers is not None:  # it has no previous period to compare with (--compare is a hosted model's what-if)
        print("aicost report --pool: compares no periods; --movers does not apply", file=err)
        return 2
    if args.top is not None:  # a pool's table is its teams, every one of them
        print("aicost report --pool: shows every team of the pool; --top does not apply", file=err)
        return 2
    provider, _, model = (args.compare or "").partition("/")
    if args.compare is not None:  # checked before the ledger is read: refused with figures or without
        if not model:
            print("aicost report --compare: give PROVIDER/MODEL, e.g. openai/gpt-4o-mini", file=err)
            return 2
        try:
            check_comparable(provider, model)
        except ConfigurationError as exc:
            print(f"aicost report --compare: {exc}", file=err)
            return 2
    opened = _open_ledger(args, err)
    if opened is None:
        return 2
    store, period = opened
    try:
        label = f"{period.start:%Y-%m-%d %H:%M} to {period.end:%Y-%m-%d %H:%M} UTC"
        intervals = list(read_intervals(store, args.pool, period.start, period.end))
        if not intervals:  # as `aicost report` over a period without rows: it says so, and that is no error
            out.write(render_empty(args.pool, label, pools_in(store), args.format))
            if args.format != "table":
                print(f"aicost report --pool: no closed intervals of pool {args.pool!r} between "
                      f"{period.start.isoformat()} and {period.end.isoformat()}", file=err)
            return 0
        summary = summarise(intervals)
        compare = None if args.compare is None else what_if(summary, provider, model)
        render = render_json if args.format == "json" else render_table
        out.write(render(summary, label, compare))
        return 0
    finally:
        store.close()


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="spend from the ledger over a period, grouped (table, CSV or JSON)")
    _ledger_common(p)
    p.add_argument("--by", default="team",
                   help="comma-separated group-by keys: team, feature, customer, user, model, provider, tag, "
                        "tag:NAME, day, hour (default: team; '' for totals only)")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.add_argument("--movers", type=whole_number(0), help=f"top movers against the previous period to show (default "
                                                 f"{_DEFAULT_MOVERS}; 0: none; not with --pool or --format csv)")
    p.add_argument("--top", type=whole_number(0), metavar="N",
                   help=f"groups the table shows, largest first, the others summed in one line (default "
                        f"{_TABLE_ROWS}; 0: all; CSV and JSON carry every group)")
    p.add_argument("--pool", metavar="NAME", help="a self-hosted GPU pool: cost, utilisation, idle cost, cost per 1M "
                                                  "tokens, each team's share (docs/self-hosted.md)")
    p.add_argument("--compare", metavar="PROVIDER/MODEL", help="with --pool: what the same tokens would have cost on "
                                                               "this catalog model")
    p.set_defaults(handler=_report)


def _export(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from .ledger.focus import export_focus

    try:
        where = _where(args.where)
    except ValueError as exc:
        print(f"aicost export: {exc}", file=err)
        return 2
    opened = _open_ledger(args, err)
    if opened is None:
        return 2
    store, period = opened
    target = args.output or f"aicost-focus-{period.start:%Y%m%d}-{period.end:%Y%m%d}.{args.file_format or 'csv'}"
    try:
        result = export_focus(store, period.start, period.end, target, file_format=args.file_format,
                              billing_account=args.billing_account, progress=True if args.progress else None,
                              progress_stream=err, where=where)
    except (ValueError, OSError) as exc:  # a bad amount, an unwritable output, no pyarrow (a ConfigurationError)
        print(f"aicost export: {exc}", file=err)
        return 2
    finally:
        store.close()
    print(result.summary(), file=out)
    return 0


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="the ledger's rows over a period as a FOCUS dataset (CSV or Parquet)")
    _ledger_common(p)
    p.add_argument("--format", choices=("focus",), default="focus", help="dataset format (FOCUS 1.3)")
    p.add_argument("--output", "-o", help="file to write (.csv or .parquet; default aicost-focus-START-END.csv)")
    p.add_argument("--file-format", choices=("csv", "parquet"), help="file format (default: from --output)")
    p.add_argument("--billing-account", help="BillingAccountId / Name to write (default: the provider)")
    p.add_argument("--progress", action="store_true", help="show progress on stderr (default: only on a terminal)")
    p.set_defaults(handler=_export)


def _sum_pairs(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    store = _open_store(args, err)
    if store is None:
        return 2
    try:  # (a ledger gone since it was opened: LedgerUnavailable, which main() tells as every command's)
        before = store.pairs_summed_before()
        while store.compact_pairs():
            print(f"summed up to {store.pairs_summed_before():%Y-%m-%d %H:%M:%S} UTC", file=err)
        after = store.pairs_summed_before()
    finally:
        store.close()
    print(f"pair cells summed up to {after:%Y-%m-%d %H:%M:%S} UTC" if after > before else
          f"nothing to sum: the pair cells are summed up to {after:%Y-%m-%d %H:%M:%S} UTC", file=out)
    return 0


def _add_sum_pairs(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sum-pairs", help="sum the ledger rows not summed yet into the pair cells (team x customer "
                                         "reports); a long-running writer does it on its own")
    p.add_argument("--ledger", help="ledger URL (default: $AICOST_LEDGER, else ./aicost-ledger.db)")
    p.set_defaults(handler=_sum_pairs)


def _registrar(module: str, name: str) -> Callable[[argparse._SubParsersAction], None]:
    """A registrar that imports its module only when called: a feature's command costs nothing to the others."""
    def register(sub: argparse._SubParsersAction) -> None:
        import importlib

        getattr(importlib.import_module(module, __package__), name)(sub)

    return register


# Subcommand registrars, by command name: other areas add theirs here (one line each). Only the command being run
# is registered (its module imported), so `aicost report` never imports reconcile or the forecasting libraries.
SUBCOMMANDS: dict[str, Callable[[argparse._SubParsersAction], None]] = {
    "prices": _add_prices,
    "report": _add_report,
    "export": _add_export,
    "sum-pairs": _add_sum_pairs,
    "reconcile": _registrar(".reconcile.cli", "add_parser"),
    "forecast": _registrar(".reports.commands", "add_forecast"),
    "anomalies": _registrar(".reports.commands", "add_anomalies"),
    "dashboard": _registrar(".reports.commands", "add_dashboard"),
    "alerts": _registrar(".reports.commands", "add_alerts"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every subcommand, or of ``command`` alone (the one on the command line: parsing it is the
    same, and the other commands' modules are not imported)."""
    parser = argparse.ArgumentParser(prog="aicost", description="aicost: LLM cost tooling")
    sub = parser.add_subparsers(dest="command")
    for name, register in SUBCOMMANDS.items():
        if command is None or name == command:
            register(sub)
    return parser


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv[0] if argv and argv[0] in SUBCOMMANDS else None)
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(out)
        return 2
    try:
        return handler(args, out, err)
    except BrokenPipeError:  # `aicost prices --list | head`: the reader left; not an error
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the interpreter's flush at exit
        except OSError:
            pass
        return 0
    except AicostError as exc:
        # Every command's answer to a ledger lost after it was opened (a PostgreSQL server stopped, a connection
        # dropped mid-report, a SQLite file damaged under it: the store's reads raise LedgerUnavailable): one line
        # naming the ledger without its password and what failed (LedgerUnavailable.sentence), exit status 2, as for
        # a ledger that cannot be reached at open. Any other error
        # is raised as it is.
        from .ledger.store import LedgerUnavailable  # imported already: only a store raises it

        if not isinstance(exc, LedgerUnavailable):
            raise
        print(f"aicost {args.command}: {exc.sentence()}", file=err)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
