"""Regenerate ``data/catalog.json`` from the ``genai-prices`` package's bundled data (maintainer tool).

Why a generator and not a runtime dependency: genai-prices keeps a well-curated, dated, tiered price history
(MIT licensed, Pydantic Services Inc.), but its engine costs ~300 us per call and pulls in pydantic. aicost
copies the *data* for the providers its users route to into its own small JSON file (keeping the license
notice in the file) and prices calls with its own Decimal engine. Run this when genai-prices publishes new
prices, review the diff, bump nothing by hand: the catalog version records the genai-prices version and date.

    .venv/bin/python -m aicost.pricing.build_catalog            # rewrite data/catalog.json
    .venv/bin/python -m aicost.pricing.build_catalog --check    # exit 1 if the file is stale

Never imported by aicost at runtime.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
from decimal import Decimal
from pathlib import Path

DATA_FILE = Path(__file__).with_name("data") / "catalog.json"

# genai-prices provider ids copied into the catalog (the ones OpenTelemetry provider names map to, plus the
# providers Azure falls back to).
PROVIDERS = (
    "openai", "anthropic", "azure", "aws", "google", "mistral", "deepseek", "x-ai", "groq", "cohere",
    "moonshotai", "perplexity",
)

# genai-prices price key -> (aicost rate name, unit size). Token rates are USD per million tokens; request-like
# rates are USD per thousand. Keys aicost's Usage cannot express (audio hours, pages, video, characters,
# file-search storage) are dropped and listed by --check so the loss is visible.
PRICE_KEYS = {
    "input_mtok": "input",
    "cache_read_mtok": "cache_read",
    "cache_image_read_mtok": "cache_read_image",
    "cache_audio_read_mtok": "cache_read_audio",
    "cache_write_mtok": "cache_write",
    "cache_write_1h_mtok": "cache_write_1h",
    "output_mtok": "output",
    "output_reasoning_mtok": "reasoning",
    "input_audio_mtok": "input_audio",
    "output_audio_mtok": "output_audio",
    "input_image_mtok": "input_image",
    "output_image_mtok": "output_image",
    "input_mchars": "input_characters",
    "web_searches_kcount": "web_search",
    "requests_kcount": "request",
}

# PriceVariant.when -> aicost's normalised service tier.
VARIANT_TIERS = {
    ("processing", "batch"): "batch",
    ("service_tier", "priority"): "priority",
    ("service_tier", "flex"): "flex",
    ("service_tier", "fast"): "fast",
    ("speed", "fast"): "fast",
}

LICENSE_NOTICE = (
    "Price data derived from genai-prices (https://github.com/pydantic/genai-prices), "
    "The MIT License (MIT), Copyright (c) Pydantic Services Inc. 2025 to present. Permission is hereby granted, "
    "free of charge, to any person obtaining a copy of this software and associated documentation files (the "
    "\"Software\"), to deal in the Software without restriction, including without limitation the rights to use, "
    "copy, modify, merge, publish, distribute, sublicense, and/or sell copies of the Software, and to permit "
    "persons to whom the Software is furnished to do so, subject to the following conditions: The above copyright "
    "notice and this permission notice shall be included in all copies or substantial portions of the Software. "
    "THE SOFTWARE IS PROVIDED \"AS IS\", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING BUT NOT "
    "LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO "
    "EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER IN "
    "AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE "
    "OR OTHER DEALINGS IN THE SOFTWARE."
)


def _dec(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return text


def _clause(match) -> dict:
    from genai_prices import types as t

    if isinstance(match, t.ClauseEquals):
        return {"equals": match.equals.lower()}
    if isinstance(match, t.ClauseStartsWith):
        return {"starts_with": match.starts_with.lower()}
    if isinstance(match, t.ClauseEndsWith):
        return {"ends_with": match.ends_with.lower()}
    if isinstance(match, t.ClauseContains):
        return {"contains": match.contains.lower()}
    if isinstance(match, t.ClauseRegex):
        return {"regex": match.regex}
    if isinstance(match, t.ClauseOr):
        return {"or": [_clause(c) for c in match.or_]}
    if isinstance(match, t.ClauseAnd):
        return {"and": [_clause(c) for c in match.and_]}
    raise TypeError(f"unsupported match clause {match!r}")


def _rates(model_price, dropped: set[str]) -> dict:
    from genai_prices import types as t

    out: dict = {}
    for key, value in model_price.__dict__.items():
        if key.startswith("_") or value is None:
            continue
        name = PRICE_KEYS.get(key)
        if name is None:
            dropped.add(key)
            continue
        if isinstance(value, t.TieredPrices):
            out[name] = {"base": _dec(value.base), "tiers": [[tier.start, _dec(tier.price)] for tier in value.tiers]}
        else:
            out[name] = _dec(value)
    return out


def _constraint(constraint) -> dict:
    from genai_prices import types as t

    if constraint is None:
        return {}
    if isinstance(constraint, t.StartDateConstraint):
        return {"from": constraint.start_date.isoformat()}
    if isinstance(constraint, t.TimeOfDateConstraint):
        def hhmm(value: _dt.time) -> str:
            if value.tzinfo is not None:
                value = _dt.datetime.combine(_dt.date(2000, 1, 1), value).astimezone(_dt.timezone.utc).time()
            return value.strftime("%H:%M")

        return {"utc_time": [hhmm(constraint.start_time), hhmm(constraint.end_time)]}
    raise TypeError(f"unsupported constraint {constraint!r}")


def _period(conditional, dropped: set[str]) -> dict:
    """One dated price list. ``unpriced`` names units aicost cannot bill (per minute, per page, per character):
    a call in such a period is reported cost-unknown rather than $0."""
    lost: set[str] = set()
    period = {**_constraint(conditional.constraint), "rates": _rates(conditional.prices, lost)}
    if lost:
        period["unpriced"] = sorted(lost)
        dropped.update(lost)
    return period


def build(*, use_snapshot: bool = False) -> tuple[dict, set[str]]:
    """The catalog dict from genai-prices' bundled data (or, with ``use_snapshot``, from its current snapshot,
    which is newer only if the user ran genai-prices' own opt-in ``UpdatePrices``)."""
    import genai_prices
    from genai_prices import types as t

    if use_snapshot:
        from genai_prices.data_snapshot import get_snapshot

        providers = get_snapshot().providers
    else:
        from genai_prices.data import providers

    dropped: set[str] = set()
    out_providers = []
    for provider in providers:
        if provider.id not in PROVIDERS:
            continue
        models = []
        for model in provider.models:
            prices = model.prices if isinstance(model.prices, list) else [t.ConditionalPrice(prices=model.prices)]
            periods = [_period(p, dropped) for p in prices]
            variants = []
            for variant in model.price_variants or ():
                items = tuple(variant.when.items())
                if items == (("service_tier", "default"),):
                    continue  # the standard price: nothing to override
                if len(items) != 1 or items[0] not in VARIANT_TIERS:
                    dropped.add(f"variant:{dict(items)}")
                    continue
                rates = _rates(variant.prices, dropped)
                if not rates:
                    continue  # "service_tier=default" carries no override
                variants.append({"tier": VARIANT_TIERS[items[0]], **_constraint(variant.constraint), "rates": rates})
            entry = {"id": model.id, "match": _clause(model.match)}
            if model.name:
                entry["name"] = model.name
            if model.context_window:
                entry["context_window"] = model.context_window
            if model.deprecated:
                entry["deprecated"] = True
            entry["prices"] = periods
            if variants:
                entry["variants"] = variants
            models.append(entry)
        out_providers.append(
            {
                "id": provider.id,
                "name": provider.name,
                "pricing_urls": provider.pricing_urls or [],
                "model_match": _clause(provider.model_match) if provider.model_match else None,
                "fallback": [p for p in (provider.fallback_model_providers or []) if p in PROVIDERS],
                "models": models,
            }
        )
    catalog = {
        "schema": 1,
        "catalog_version": f"genai-prices-{genai_prices.__version__}",
        "license_notice": LICENSE_NOTICE,
        "units": "token rates in USD per million tokens; web_search and request in USD per thousand",
        "providers": out_providers,
    }
    return catalog, dropped


def render(catalog: dict) -> str:
    return json.dumps(catalog, indent=1, sort_keys=False, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if data/catalog.json differs from a rebuild")
    args = parser.parse_args(argv)
    catalog, dropped = build()
    text = render(catalog)
    if args.check:
        current = DATA_FILE.read_text(encoding="utf-8") if DATA_FILE.exists() else ""
        if current != text:
            print(f"{DATA_FILE} is stale: rerun python -m aicost.pricing.build_catalog", file=sys.stderr)
            return 1
        print("catalog up to date")
    else:
        DATA_FILE.write_text(text, encoding="utf-8")
        n = sum(len(p["models"]) for p in catalog["providers"])
        print(f"wrote {DATA_FILE} ({n} models, {catalog['catalog_version']})")
    if dropped:
        print("not representable (dropped): " + ", ".join(sorted(dropped)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
