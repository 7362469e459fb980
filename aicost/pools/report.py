"""``aicost report --pool NAME``: a pool's cost, utilisation, idle cost, cost per 1M tokens achieved, each team's
share, and optionally what the same tokens would have cost on a hosted model (``--compare provider/model``).

Final figures (closed intervals) make every total; the provisional figures the spans carried are shown on their
own line, labelled, and never added in.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any, Iterable

from ..pricing.money import RATIO, format_usd, percent
from .summary import PoolSummary, WhatIf

CENT = Decimal("0.01")


def _pct(value: Any) -> str:
    """A fraction as a percentage to 0.1, rounded in money's RATIO context (not format()'s: the thread's)."""
    return f"{percent(value):f} %"


def _money_column(values: list[Decimal]) -> list[str]:
    """``$`` amounts aligned on the decimal point."""
    texts = [format_usd(v) for v in values]
    whole = max(len(t.split(".")[0]) for t in texts)
    frac = max((len(t.split(".")[1]) + 1 if "." in t else 0) for t in texts)
    return ["$" + t.split(".")[0].rjust(whole) + ("." + t.split(".")[1] if "." in t else "").ljust(frac)
            for t in texts]


def render_table(summary: PoolSummary, label: str, compare: WhatIf | None = None) -> str:
    teams = [(team or "(unattributed)", cost) for team, cost in summary.by_team.items()]
    teams.append((f"idle: {summary.owner}", summary.idle))
    cost, used, idle, *team_costs = _money_column([summary.cost, summary.used, summary.idle, *(c for _, c in teams)])
    per_million = summary.cost_per_million_tokens
    lines = [
        f"Pool {summary.pool} (owner {summary.owner}), {label}: {summary.intervals} closed intervals, final figures",
        f"  {'Pool cost':<28}{cost}",
        f"  {'Used by calls':<28}{used}   utilisation {_pct(summary.utilisation)}",
        f"  {'Idle (' + summary.owner + ')':<28}{idle}",
        f"  {'Tokens served':<28}{summary.tokens:,} (input {summary.input_tokens:,}, output {summary.output_tokens:,}) "
        f"in {summary.calls:,} calls",
        f"  {'Cost per 1M tokens achieved':<28}"
        + (f"${format_usd(RATIO.quantize(per_million, CENT))} (rounded to the cent)" if per_million is not None
           else "n/a (no tokens)"),
    ]
    if (note := summary.estimate_note()) is not None:  # the team shares below are not all exact: said, never implied
        lines.append(f"  {'Estimated team shares':<28}{note}")
    lines += [
        "",
        f"  {'Team (final cost)':<28}{'':<{len(cost)}}   share of the pool",
    ]
    for (team, amount), text in zip(teams, team_costs):
        share = RATIO.divide(amount, summary.cost) if summary.cost else 0
        lines.append(f"  {team:<28}{text}   {_pct(share):>7}")
    lines.append("")
    lines.append(f"  Provisional, as the spans said at call time (not in the totals above): "
                 f"${format_usd(summary.provisional)} over {summary.provisional_calls:,} calls"
                 + (f"; {summary.calls - summary.provisional_calls:,} calls had no rate yet (unknown)"
                    if summary.calls > summary.provisional_calls else ""))
    if compare is not None:
        lines.append(f"  What-if: {compare.sentence()}")
    return "\n".join(line.rstrip() for line in lines) + "\n"


def render_json(summary: PoolSummary, label: str, compare: WhatIf | None = None) -> str:
    data: dict[str, Any] = {
        "pool": summary.pool, "owner": summary.owner, "period": label, "intervals": summary.intervals,
        "empty": False, "figures": "final",
        "cost": format_usd(summary.cost), "used": format_usd(summary.used), "idle": format_usd(summary.idle),
        "utilisation": format_usd(summary.utilisation), "calls": summary.calls, "input_tokens": summary.input_tokens,
        "output_tokens": summary.output_tokens,
        "cost_per_million_tokens": None if summary.cost_per_million_tokens is None
        else format_usd(summary.cost_per_million_tokens),
        "teams": {team or "": format_usd(cost) for team, cost in summary.by_team.items()},
        "provisional": {"cost": format_usd(summary.provisional), "calls": summary.provisional_calls,
                        "note": "what spans said at call time; not part of the final figures"},
        "estimated": {"intervals": summary.estimated_intervals, "reasons": list(summary.estimate_reasons)},
    }
    if compare is not None:
        data["what_if"] = {"provider": compare.provider, "model": compare.model, "cost": format_usd(compare.cost)}
    return json.dumps(data, indent=2) + "\n"


def render_empty(pool: str, label: str, pools: Iterable[str], fmt: str) -> str:
    """A period without closed intervals of ``pool``, in ``fmt`` (table or json): said so, as ``aicost report``
    says a period without rows, not an error. The table names the pools the ledger has (a name mistyped); the JSON
    is the pool, the period, no intervals and ``"empty": true`` (``false`` in a report with figures)."""
    if fmt == "json":
        return json.dumps({"pool": pool, "period": label, "intervals": 0, "empty": True}, indent=2) + "\n"
    return (f"Pool {pool}, {label}: no closed intervals in this period, so no figures "
            f"(pools in this ledger: {', '.join(pools) or 'none'}).\n")
