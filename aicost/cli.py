"""The ``aicost`` command. Subcommands register in ``build_parser``; each is a small function.

``aicost prices MODEL [--provider P] [--tier T] [--at DATE] [--price-file F]``  resolved price table
``aicost prices --list [--provider P]``                                          models in the catalog
``aicost prices --check FILE``                                                   validate a price file
``aicost prices --unknown [FILE]``                                               models seen without a price
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime, timezone
from typing import Callable, Sequence, TextIO


def _parse_at(value: str) -> datetime:
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date/time: {value!r}") from None
    return at if at.tzinfo else at.replace(tzinfo=timezone.utc)


def _prices(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from . import pricing
    from .pricing import engine

    if args.check:
        try:
            loaded = pricing.check_price_file(args.check)
        except pricing.PriceFileError as exc:
            print(f"invalid: {exc}", file=err)
            return 1
        print(f"ok: {args.check}: {len(loaded.rules)} model price(s), {len(loaded.discounts)} discount(s)", file=out)
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
        for item in seen:
            print(f"{item.get('provider') or '-':18s} {item.get('model')!s:40s} first seen {item.get('first_seen')}",
                  file=out)
        return 0
    if args.list:
        from .pricing import catalog, names

        current = catalog.current()
        wanted = names.provider_id(args.provider) or args.provider if args.provider else None
        if wanted and wanted not in current.providers:
            print(f"no price table for provider {args.provider!r}", file=err)
            return 1
        print(f"catalog {current.version}", file=out)
        for table in current.providers.values():
            if wanted and table.id != wanted:
                continue
            for model in table.models:
                flag = "  (retired)" if model.deprecated else ""
                print(f"{table.id:12s} {model.id}{flag}", file=out)
        return 0
    if not args.model:
        print("usage: aicost prices MODEL [--provider P] | --list | --check FILE | --unknown [FILE]", file=err)
        return 2
    if args.price_file:
        try:
            pricing.load_price_file(args.price_file)
        except pricing.PriceFileError as exc:
            print(f"invalid: {exc}", file=err)
            return 1
    price = pricing.resolve(args.provider, args.model, at=args.at, service_tier=args.tier)
    if price is None:
        print(f"unknown model {args.model!r} (provider {args.provider or 'any'}): no price in catalog "
              f"{pricing.catalog_version()} or overrides", file=err)
        return 1
    when = (args.at or datetime.now(timezone.utc)).date().isoformat()
    print(f"{args.model} -> {price.provider}/{price.model}", file=out)
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
    print(f"  {'rate':16s} {'applies':34s} {'USD':>12s}", file=out)
    for name, band, usd in price.table():
        print(f"  {name:16s} {band:34s} {usd:>12s}", file=out)
    return 0


def _add_prices(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prices", help="show the resolved price of a model, or validate a price file")
    p.add_argument("model", nargs="?", help="model name as the vendor reports it (e.g. gpt-4o-2024-08-06)")
    p.add_argument("--provider", help="gen_ai.provider.name: openai, anthropic, azure.ai.openai, aws.bedrock, ...")
    p.add_argument("--tier", help="service tier: standard, batch, flex, priority")
    p.add_argument("--at", type=_parse_at, help="price at this date/time (ISO 8601, UTC if no offset)")
    p.add_argument("--price-file", help="apply this TOML/JSON override file first")
    p.add_argument("--check", metavar="FILE", help="validate a price override file and exit")
    p.add_argument("--list", action="store_true", help="list the catalog's models (of --provider, if given)")
    p.add_argument("--unknown", nargs="?", const="", metavar="FILE",
                   help="list models recorded without a price (default file: $AICOST_UNKNOWN_MODELS_FILE)")
    p.set_defaults(handler=_prices)


# Subcommand registrars: other areas append theirs here (one line each).
SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_prices]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aicost", description="aicost: LLM cost tooling")
    sub = parser.add_subparsers(dest="command")
    for register in SUBCOMMANDS:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    parser = build_parser()
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


if __name__ == "__main__":
    raise SystemExit(main())
