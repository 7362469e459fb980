"""``aicost dashboard``: one self-contained HTML page of the ledger's spend, readable offline.

The charts are plotly.js figures built with plotly's Python API; the ``plotly`` package ships ``plotly.min.js``,
which is inlined once into the page's ``<head>``, so the file opens from disk, from an e-mail or on an air-gapped
machine, with no CDN and no network request. Everything on it is read through the ledger's query API:

* headline totals: the very figures ``aicost report`` prints for the same period (same function,
  :func:`aicost.ledger.report.build_report`), exact decimals, each tagged ``data-total="..."`` for checks;
* spend per day stacked by team; top features and customers; the model mix; unit cost per feature run per
  day; cache savings and budget refusals per day;
* month-end forecasts against budgets (or, without budgets, for the whole ledger and its largest teams), with
  their intervals (:mod:`aicost.reports.forecast`);
* the period's spend spikes with the calls behind them (:mod:`aicost.reports.anomalies`).

Calls whose price is unknown have no cost (never $0): the charts draw priced spend, and the page says how many
calls are not in it, as ``aicost report`` does: under the total, above the charts, and against each forecast or
spike that had some (its amount is then a lower bound).
"""

from __future__ import annotations

import html
import re
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Sequence

from ..ledger.row import decimal_text
from ..pricing.cost import MONEY
from ..pricing.money import RATIO, percent, subtract_usd, sum_usd
from ._format import plus_unknown, unknown_calls
from ._format import usd as _usd
from .data import label

TOP = 10  # bars in the top-features / top-customers charts
STACKED_TEAMS = 12  # teams drawn separately in the stacked chart; the rest are summed as "other"
UNIT_COST_FEATURES = 6
_ZERO, _CENT = Decimal(0), Decimal("0.01")
FORECAST_TEAMS = 6  # without budgets: the whole ledger and this many teams; a per-team budget: this many teams
_FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif"
_PALETTE = ["#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#EECA3B", "#B279A2", "#FF9DA6", "#9D755D",
            "#BAB0AC", "#2F4B7C", "#A05195", "#79706E"]


def _exact(value: Decimal | None) -> str:
    """Money as ``aicost report --format json`` writes it: exact, plain notation."""
    return decimal_text(value) or "0"


# ------------------------------------------------------------------------------------------------------ HTML
class _Html(str):
    """Text that is HTML already: aicost's own markup (:func:`_markup`), or what :func:`_fill` and :func:`_join` made
    of it, every other value in it escaped; and a chart (:func:`_chart`) and plotly.js itself (:func:`_plotly_js`).
    Made nowhere else (``tests/test_reports_dashboard.py`` reads this module to hold it to that). A ``str`` joined
    to one with ``+`` is a plain ``str`` again: escaped where it then goes, so a page that forgot the builder shows
    markup as text rather than running it."""

    __slots__ = ()


def _markup(constant: str) -> _Html:
    """aicost's own markup, written as is: the one way raw HTML reaches the page's tables, tiles and text. Given a
    string literal only, never a name or a value (the tests read this module to hold it to that): a name, a number,
    a Decimal or a date goes into the markup through :func:`_fill`, which escapes it."""
    return _Html(constant)


def _escaped(value: Any) -> _Html:
    """A value as text of the page: markup (:class:`_Html`) as it is, anything else (a name, a Decimal, an int, a
    date, a plain ``str`` however made) escaped, quotes included, so it is text in an element or an attribute."""
    return value if isinstance(value, _Html) else _Html(html.escape(str(value), quote=True))


def _fill(template: _Html, *values: Any) -> _Html:
    """``template`` (aicost's markup, from :func:`_markup`) with its ``{}`` fields, in order, filled with ``values``,
    each escaped by :func:`_escaped`: a table's row, a tile, a card. No format specs: a number is formatted to its
    text first (``f"{calls:,}"``), and that text is escaped like any."""
    if not isinstance(template, _Html):
        raise TypeError("a template is aicost's own markup: _markup('...')")
    return _Html(template.format(*map(_escaped, values)))


def _join(parts: Any, separator: _Html | str = "") -> _Html:
    """``parts`` one after the other (with ``separator`` between them), each escaped by :func:`_escaped`."""
    return _Html(_escaped(separator).join(_escaped(part) for part in parts))


# Plotly's templates that aicost writes: the only strings of a figure plotly.js reads as markup (``<extra>``) that
# are not escaped. Constants: a name reaches a template only through a ``%{...}`` variable, i.e. from a data field
# that :func:`_as_text` escaped. A template not listed here is escaped like any text.
_PIE_HOVER = "%{label}: $%{value:,.2f} (%{percent})<extra></extra>"
_POOL_HOVER = "%{fullData.name}: $%{customdata}<extra></extra>"
_TEMPLATES = frozenset((_PIE_HOVER, _POOL_HOVER))
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9-]")


def _as_text(value: Any, key: str = "") -> Any:
    """A figure's JSON (``fig.to_dict()``) with every string in it escaped for plotly.js, which reads a subset of HTML
    in each text it draws: trace names (legend, hover), axis categories and tick texts, pie labels, text and
    hovertext, customdata and meta (shown through templates), titles and annotations (``<a href>`` links,
    ``<span style>``, ``<b>``, ``<br>``). Names from the ledger may come from upstream baggage; escaped, each is drawn
    as the text it is (plotly.js decodes ``&lt; &gt; &amp;``, not ``&quot;``, so quotes are left as they are).

    Every string, whatever its attribute, so a new chart or a new attribute cannot be missed: aicost's own texts are
    plain (escaping leaves them as they are), as are colours, fonts, modes and ISO dates. Left alone: the templates
    in :data:`_TEMPLATES` (a ``*template`` key: plotly's ``layout.template`` theme too, which holds no data) and d3
    format specifiers (a ``*format`` key: ``<`` aligns there), which are never drawn as text."""
    if isinstance(value, str):
        if key.endswith("format") or (key.endswith("template") and value in _TEMPLATES):
            return value
        return html.escape(value, quote=False)
    if isinstance(value, dict):
        if key == "template":  # plotly's theme (layout.template): colours and defaults, no data
            return value
        return {k: _as_text(v, k) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_as_text(v, key) for v in value]
    if getattr(value, "dtype", None) is not None and value.dtype.kind in "OUS":  # a numpy array of text
        return [_as_text(v, key) for v in value.tolist()]
    return value


def _chart(fig: Any, key: str, config: dict[str, Any]) -> _Html:
    """The one way a figure reaches the page: its strings escaped (:func:`_as_text`), in a ``<div id="chart-KEY">``
    (any character of ``KEY`` but letters, digits and ``-`` written as ``_hex_``, so a pool's name can neither end
    the attribute nor the script that finds the div, and two names never share an id)."""
    import plotly.io as pio

    spec = _as_text(fig.to_dict())
    div_id = "chart-" + _ID_UNSAFE.sub(lambda m: f"_{ord(m.group()):x}_", key)
    return _Html(pio.to_html(spec, include_plotlyjs=False, full_html=False, config=config, div_id=div_id,
                             default_height=f"{fig.layout.height}px", validate=False))


def _plotly_js() -> _Html:
    """plotly.js, the script the plotly package ships, inlined as is."""
    import plotly.offline

    return _Html(plotly.offline.get_plotlyjs())


def _layout(title: str, **extra: Any) -> dict[str, Any]:
    layout = {"title": {"text": title, "x": 0.01, "font": {"size": 15}}, "margin": {"l": 60, "r": 20, "t": 44, "b": 40},
              "font": {"family": _FONT, "size": 12}, "paper_bgcolor": "white", "plot_bgcolor": "white",
              "colorway": _PALETTE, "height": 340, "legend": {"orientation": "h", "y": -0.18},
              "yaxis": {"gridcolor": "#eee", "tickprefix": "$"}, "xaxis": {"gridcolor": "#eee"}}
    layout.update(extra)
    return layout


# ------------------------------------------------------------------------------------------------------ data
def _days(start: datetime, end: datetime) -> list[str]:
    first = start.date()
    last = (end - timedelta(microseconds=1)).date()
    return [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]


def _figures(store: Any, period: Any, report: Any, forecasts: Sequence[Any], anomalies: Sequence[Any]
             ) -> list[tuple[str, Any]]:
    import plotly.graph_objects as go

    from ..ledger import spend

    start, end = period.start, period.end
    days = _days(start, end)
    figs: list[tuple[str, Any]] = []

    # Spend per day, stacked by team
    per_team: dict[str, dict[str, float]] = {}
    team_total: dict[str, Decimal] = {}
    for g in spend(store, start, end, ("day", "team")):
        team = label(g.key["team"])
        per_team.setdefault(team, {})[g.key["day"]] = float(g.cost)
        team_total[team] = MONEY.add(team_total.get(team, _ZERO), g.cost)  # exact, any thread's context
    ranked = sorted(team_total, key=lambda t: (team_total[t].copy_negate(), t))
    shown, rest = ranked[:STACKED_TEAMS], ranked[STACKED_TEAMS:]
    fig = go.Figure(layout=_layout("Spend per day by team (USD)", barmode="stack"))
    for team in shown:
        fig.add_bar(name=team, x=days, y=[per_team[team].get(d, 0.0) for d in days])
    if rest:
        fig.add_bar(name=f"{len(rest)} other teams", x=days,
                    y=[sum(per_team[t].get(d, 0.0) for t in rest) for d in days], marker_color="#BAB0AC")
    for a in anomalies:  # mark team spikes above the day's bar
        if a.dimension == "team" and isinstance(a.start, date):
            day = a.start.isoformat()
            top = sum(per_team[t].get(day, 0.0) for t in per_team)
            fig.add_annotation(x=day, y=top, text=f"spike: {a.group}", showarrow=True, ax=0, ay=-28,
                               font={"color": "#c0392b", "size": 12}, arrowcolor="#c0392b", bgcolor="white")
    figs.append(("daily", fig))

    # Top features, top customers
    for key, title in (("feature", "Top features (USD)"), ("customer", "Top customers (USD)")):
        groups = [g for g in spend(store, start, end, (key,)) if g.cost][:TOP]
        labels = [label(g.key[key]) for g in groups][::-1]
        fig = go.Figure(layout=_layout(title, height=340, yaxis={"automargin": True},
                                       xaxis={"gridcolor": "#eee", "tickprefix": "$"}, showlegend=False))
        fig.add_bar(x=[float(g.cost) for g in groups][::-1], y=labels, orientation="h",
                    text=[_usd(g.cost) for g in groups][::-1], textposition="auto",
                    marker_color=_PALETTE[0] if key == "feature" else _PALETTE[1])
        figs.append((key, fig))

    # Model mix
    models = spend(store, start, end, ("model",))
    top_models, other = models[:8], models[8:]
    labels = [label(g.key["model"]) for g in top_models] + ([f"{len(other)} other models"] if other else [])
    values = [float(g.cost) for g in top_models] + ([float(sum_usd(g.cost for g in other))] if other else [])
    fig = go.Figure(layout=_layout("Model mix (share of spend)", showlegend=True,
                                   legend={"orientation": "v", "x": 1.0, "y": 0.5}))
    fig.add_pie(labels=labels, values=values, hole=0.45, sort=False, textinfo="percent",
                hovertemplate=_PIE_HOVER)
    figs.append(("models", fig))

    # Unit cost trends: cost per feature run, per day, for the largest features (cost per call without runs)
    top_features = [g.key["feature"] for g in spend(store, start, end, ("feature",))[:UNIT_COST_FEATURES]
                    if g.key["feature"] is not None]
    by_day_feature: dict[str, dict[str, Any]] = {}
    for g in spend(store, start, end, ("day", "feature")):
        if g.key["feature"] in top_features:
            by_day_feature.setdefault(g.key["feature"], {})[g.key["day"]] = g
    fig = go.Figure(layout=_layout("Unit cost: USD per feature run (per call where no runs)"))
    for feature in top_features:
        points = by_day_feature.get(feature, {})
        ys = []
        for d in days:
            g = points.get(d)
            unit = None if g is None else (g.cost_per_run if g.runs
                                           else RATIO.divide(g.cost, g.calls) if g.calls else None)
            ys.append(None if unit is None else float(unit))
        fig.add_scatter(name=feature, x=days, y=ys, mode="lines+markers", connectgaps=False)
    figs.append(("unit", fig))

    # Cache savings and refusals per day
    per_day = {g.key["day"]: g for g in spend(store, start, end, ("day",))}
    fig = go.Figure(layout=_layout(f"Cache savings {_usd(report.totals.saved_cost)} and refused spend "
                                   f"{_usd(report.totals.stopped_cost)} (USD per day)", barmode="group"))
    fig.add_bar(name="saved by the cache", x=days,
                y=[float(per_day[d].saved_cost) if d in per_day else 0.0 for d in days], marker_color=_PALETTE[2])
    fig.add_bar(name="stopped by budgets", x=days,
                y=[float(per_day[d].stopped_cost) if d in per_day else 0.0 for d in days], marker_color=_PALETTE[3])
    figs.append(("cache", fig))

    # Budgets against forecast
    if forecasts:
        names = [f.group for f in forecasts][::-1]
        fig = go.Figure(layout=_layout(f"Month-end forecast, {forecasts[0].period_start:%B %Y} (as of "
                                       f"{forecasts[0].as_of}; {forecasts[0].level:.0%} interval)",
                                       barmode="overlay", height=max(260, 60 + 48 * len(forecasts)),
                                       yaxis={"automargin": True}, xaxis={"gridcolor": "#eee", "tickprefix": "$"}))
        fig.add_bar(name="projected", y=names, x=[float(f.projected) for f in forecasts][::-1], orientation="h",
                    marker_color="#9ecae9",
                    error_x={"type": "data", "symmetric": False,
                             "array": [float(subtract_usd(f.high, f.projected)) if f.high is not None else 0
                                       for f in forecasts][::-1],
                             "arrayminus": [float(subtract_usd(f.projected, f.low)) if f.low is not None else 0
                                            for f in forecasts][::-1], "color": "#555"})
        fig.add_bar(name="spent so far", y=names, x=[float(f.actual) for f in forecasts][::-1], orientation="h",
                    marker_color=_PALETTE[0], width=0.4)
        with_budget = [f for f in forecasts if f.budget is not None]
        if with_budget:
            fig.add_scatter(name="budget", y=[f.group for f in with_budget], x=[float(f.budget) for f in with_budget],
                            mode="markers", marker={"symbol": "line-ns-open", "size": 26, "line": {"width": 3},
                                                    "color": "#c0392b"})
        figs.append(("forecast", fig))
    return figs


# ------------------------------------------------------------------------------------------------------ page
_CSS = _markup("\nbody { font-family: system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; margin: 0; "
               """background: #f5f6f8; color: #1f2328; }
header { background: #1f2a44; color: white; padding: 18px 28px; }
header h1 { margin: 0; font-size: 22px; font-weight: 600; }
header p { margin: 4px 0 0; opacity: .8; font-size: 13px; }
main { padding: 18px 28px 40px; max-width: 1500px; margin: 0 auto; }
.kpis { display: grid; grid-template-columns: repeat(auto-fit, minmax(180px, 1fr)); gap: 12px; margin-bottom: 16px; }
.kpi { background: white; border-radius: 8px; padding: 12px 16px; box-shadow: 0 1px 2px rgba(0,0,0,.08); }
.kpi .label { font-size: 12px; color: #57606a; text-transform: uppercase; letter-spacing: .04em; }
.kpi .value { font-size: 24px; font-weight: 600; margin-top: 4px; font-variant-numeric: tabular-nums; }
.kpi .exact { font-size: 11px; color: #57606a; font-variant-numeric: tabular-nums; }
.unknown { color: #9a4d00; }
.kpi .unknown { font-size: 12px; margin-top: 2px; }
.grid { display: grid; grid-template-columns: 1fr 1fr; gap: 14px; }
.card { background: white; border-radius: 8px; padding: 8px; box-shadow: 0 1px 2px rgba(0,0,0,.08); min-width: 0; }
.wide { grid-column: 1 / -1; }
table { border-collapse: collapse; width: 100%; font-size: 13px; font-variant-numeric: tabular-nums; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid #eee; vertical-align: top; }
td.num, th.num { text-align: right; }
h2 { font-size: 15px; margin: 8px 8px 10px; font-weight: 600; }
.note { font-size: 12px; color: #57606a; margin: 6px 8px; }
.over { color: #c0392b; font-weight: 600; }
@media (max-width: 1000px) { .grid { grid-template-columns: 1fr; } }
""")  # (the font is _FONT, the charts' font; a literal here: _markup takes literals only)
_NOTHING = _markup("")

# The page's markup: aicost's own constants, each ``{}`` a value that _fill escapes (a name, an amount, a count).
_TILE = _markup('<div class="kpi"><div class="label">{}</div><div class="value" data-total="{}" data-exact="{}">{}'
                '</div><div class="exact">{}</div>{}</div>')
_FORECAST_ROW = _markup("<tr><td>{}</td><td class=num>{}{}</td><td class=num>{}{}</td><td class=num>{}</td>"
                        '<td class=num>{}</td><td class="{}">{}</td><td>{}</td></tr>')
_SPIKE_ROW = _markup("<tr><td>{}</td><td>{}</td><td>{}</td><td class=num>{}{}</td><td class=num>{}</td>"
                     "<td class=num>{}</td><td>{}</td></tr>")
_SPIKE_CALL = _markup("{} {} {} <code>{}</code>")
_AMOUNT_ROW = _markup("<tr><td>{}</td><td class=num>{}</td></tr>")
_UNEXPLAINED_ROW = _markup("<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=num>{}</td></tr>")


def _kpis(report: Any) -> _Html:
    t = report.totals
    tiles = [
        ("Total spend", _usd(t.cost), "cost_usd", _exact(t.cost)),
        ("Calls", f"{t.calls:,}", "calls", str(t.calls)),
        ("Cache savings", _usd(t.saved_cost), "saved_usd", _exact(t.saved_cost)),
        ("Cache hits", f"{t.cache_hits:,}", "cache_hits", str(t.cache_hits)),
        ("Refused calls", f"{t.refusals:,}", "refusals", str(t.refusals)),
        ("Stopped by budgets", _usd(t.stopped_cost), "stopped_usd", _exact(t.stopped_cost)),
        ("USD per successful outcome", _usd(t.cost_per_success), "cost_per_success_usd",
         _exact(t.cost_per_success) if t.cost_per_success is not None else ""),
    ]
    cells = (_fill(_TILE, title, key, exact, shown, exact,  # (not ``label``: the module's function of that name)
                   _unknown_total(t.unknown_cost_calls) if key == "cost_usd" else _NOTHING)
             for title, shown, key, exact in tiles)
    return _fill(_markup('<section class="kpis">{}</section>'), _join(cells))


def _unknown_total(calls: int) -> _Html:
    """Under the total spend: the calls it leaves out because their price is unknown (nothing without any), so a
    total of priced spend never reads as all of it."""
    if not calls:
        return _NOTHING
    return _fill(_markup('<div class="unknown" data-total="unknown_cost_calls" data-exact="{}">+ {} calls of '
                         "unknown price, not in the total</div>"), calls, f"{calls:,}")


def _unknown_note(calls: int) -> _Html:
    """Above the charts: they draw priced spend only."""
    if not calls:
        return _NOTHING
    return _fill(_markup('<p class="note unknown wide" id="unknown-price">{} '
                         "nor in the charts: their spend is unknown, not $0 (<code>aicost report --by model</code> "
                         "names the models, column <i>unpriced</i>). Forecasts and spikes that had some say so; their "
                         "amounts are lower bounds.</p>"), unknown_calls(calls))


def _plus_unknown(calls: int) -> _Html:
    """A table cell's suffix for an amount that leaves calls of unknown price out."""
    if not calls:
        return _NOTHING
    return _fill(_markup('<br><span class="unknown">{}</span>'), plus_unknown(calls).lstrip())


def _forecast_table(forecasts: Sequence[Any], as_of: date, with_budgets: bool) -> _Html:
    title = _markup("<h2>Budgets against forecast</h2>")
    if not forecasts:
        return _fill(_markup('<div class="card wide">{}<p class="note">No month-end forecast: no spend in the eight '
                             "weeks up to {} (forecasts count complete days only).</p></div>"), title, as_of)
    if not with_budgets:
        title = _join((title, _markup('<p class="note">No budgets file given (<code>--budgets FILE</code>): '
                                      "forecasts shown for the whole ledger and its largest teams.</p>")))
    rows = _join(
        _fill(_FORECAST_ROW, f.group, _usd(f.actual), _plus_unknown(f.unknown_cost_calls),
              "at least " if f.unknown_cost_calls else "", _usd(f.projected),
              "-" if f.low is None else _fill(_markup("{} &ndash; {}"), _usd(f.low), _usd(f.high)),
              _usd(f.budget), "num over" if f.over_budget else "num",
              "-" if not f.budget else f"{f.projected * 100 / f.budget:.0f}%", f.method)
        for f in forecasts)
    return _fill(_markup('<div class="card wide">{}<table><tr><th>budget / group</th>'
                         "<th class=num>spent so far</th><th class=num>projected month-end</th>"
                         "<th class=num>interval</th><th class=num>budget</th><th class=num>of budget</th>"
                         "<th>method</th></tr>{}</table></div>"), title, rows)


def _anomaly_table(anomalies: Sequence[Any]) -> _Html:
    if not anomalies:
        body = _markup('<p class="note">No spend spikes in this period: every team, feature, model and customer '
                       "stayed within its own baseline.</p>")
    else:
        rows = _join(
            _fill(_SPIKE_ROW, a.dimension, a.group, a.start, _usd(a.actual), _plus_unknown(a.unknown_cost_calls),
                  _usd(a.baseline), "new" if a.baseline <= 0 else f"{a.ratio:.1f}x",
                  _join((_fill(_SPIKE_CALL, c.time.strftime("%H:%M"), c.model or "-", _usd(c.cost), c.span_id)
                         for c in a.calls[:3]), _markup("<br>")))
            for a in anomalies[:25])
        body = _fill(_markup("<table><tr><th>by</th><th>group</th><th>day</th><th class=num>spent</th>"
                             "<th class=num>baseline</th><th class=num>ratio</th><th>costliest calls</th></tr>{}"
                             "</table>"), rows)
    return _fill(_markup('<div class="card wide" id="anomalies"><h2>Anomalies: spend spikes</h2>{}</div>'), body)


def _pool_cards(store: Any, period: Any, config: dict[str, Any]) -> _Html:
    """Self-hosted GPU pools (docs/self-hosted.md): per pool, its final cost split by team plus idle, and the
    figures ``aicost report --pool`` prints. Final figures only (closed intervals); nothing when no pool."""
    import plotly.graph_objects as go

    from ..pools import read_intervals, summarise
    from ..pools.ledger import pools_in

    cards = []
    for name in pools_in(store):
        intervals = list(read_intervals(store, name, period.start, period.end))
        if not intervals:
            continue
        summary = summarise(intervals)
        bars = [(label(team), cost) for team, cost in summary.by_team.items()] + [(f"idle ({summary.owner})",
                                                                                    summary.idle)]
        fig = go.Figure(layout=_layout(f"Pool {name}: final cost by team, idle included (USD)", barmode="stack",
                                       yaxis={"automargin": True}, xaxis={"gridcolor": "#eee", "tickprefix": "$"}))
        for who, cost in bars:
            fig.add_trace(go.Bar(name=who, x=[float(cost)], y=[name], orientation="h", customdata=[_exact(cost)],
                                 hovertemplate=_POOL_HOVER))
        fig.update_layout(height=220)
        per_million = summary.cost_per_million_tokens
        note = summary.estimate_note()
        cards.append(_fill(
            _markup('<div class="card wide" data-pool="{}">{}<p class="note">Pool cost <b data-total="pool-cost">${}'
                    "</b> over {} closed interval(s); utilisation {} %; idle ${} (owner {}); cost per 1M tokens "
                    "achieved {}. Provisional figures the spans carried (${}) are not in these totals.{}</p></div>"),
            name, _chart(fig, f"pool-{name}", config), _exact(summary.cost), summary.intervals,
            f"{percent(summary.utilisation):f}", _exact(summary.idle), summary.owner,
            "$" + _exact(RATIO.quantize(per_million, _CENT)) if per_million is not None else "n/a",
            _exact(summary.provisional), f" Estimated team shares: {note}." if note is not None else ""))
    return _join(cards)


def _reconciliation_card(rec: Any) -> _Html:
    """A card from ``aicost reconcile --format json`` output: the one line, the totals, the unexplained spend."""
    totals = rec.get("totals") or {}

    def money(key: str) -> str:
        value = totals.get(key)
        return _usd(Decimal(value)) if value is not None else "-"

    kpis = _join(_fill(_AMOUNT_ROW, name, money(key)) for name, key in (
        ("billed", "bill_usd"), ("in the ledger", "ledger_usd"), ("matched", "matched_usd"),
        ("unexplained (shadow)", "unexplained_usd"), ("over-attributed", "over_attributed_usd"),
        ("price drift", "price_drift_usd"), ("provisional (report lag)", "provisional_bill_usd")))
    sources = _join(
        _fill(_UNEXPLAINED_ROW, s.get("day"), s.get("scope") or "-", s.get("key_id") or "-", s.get("model") or "-",
              _usd(Decimal(s.get("usd") or "0")))
        for s in (rec.get("unexplained") or [])[:25])
    table = _fill(_markup("<table><tr><th>day</th><th>project / workspace</th><th>API key</th><th>model</th>"
                          "<th class=num>unexplained</th></tr>{}</table>"), sources) if sources else _NOTHING
    title = f"Reconciliation with {rec.get('vendor', '?')}'s bill, {(rec.get('period') or {}).get('label', '')}"
    return _fill(_markup('<div class="card wide reconciliation"><h2>{}</h2><p>{}</p><table>{}</table>{}</div>'),
                 title, rec.get("summary", ""), kpis, table)


def build_dashboard(store: Any, period: Any, *, budgets: Sequence[Any] = (), as_of: date | None = None,
                    reconciliations: Sequence[Any] = ()) -> tuple[str, str]:
    """The page's HTML and a one-line summary. ``period`` is an :class:`aicost.ledger.report.Period`;
    ``reconciliations``: parsed ``aicost reconcile --format json`` outputs, one card each.

    The page is put together by :func:`_fill` and :func:`_join` only: every value in it (a name, an amount, a
    date) is escaped, and markup is aicost's own (:func:`_markup`), a chart (:func:`_chart`) or plotly.js."""
    from ..ledger.report import build_report
    from .anomalies import scan_ledger
    from .forecast import default_as_of, forecast_budgets, forecast_ledger

    report = build_report(store, period=period, group_by=("team",), movers=0)
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    head = _fill(_markup('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>aicost spend: {}</title>'
                         '<meta name="viewport" content="width=device-width, initial-scale=1"><style>{}</style>'
                         "<script>{}</script></head><body><header><h1>aicost spend</h1><p>{} &middot; ledger {} "
                         "&middot; generated {}</p></header><main>"),
                 period.describe(), _CSS, _plotly_js(), period.describe(), report.ledger, generated)
    end = _markup("</main></body></html>")
    if report.empty:
        body = _fill(_markup('<div class="card"><h2>No spend recorded</h2><p class="note" id="empty">The ledger has '
                             "no rows between {} and {}.</p></div>"), period.start.isoformat(), period.end.isoformat())
        return str(_join((head, _kpis(report), body, end))), "empty period"

    last_day = (period.end - timedelta(microseconds=1)).date()
    if as_of is None:
        as_of = default_as_of(store)
        as_of = min(as_of, last_day) if as_of else last_day
    if budgets:
        forecasts = forecast_budgets(store, budgets, as_of=as_of, per_value_limit=FORECAST_TEAMS)
    else:
        forecasts = forecast_ledger(store, by="global", as_of=as_of) + forecast_ledger(
            store, by="team", as_of=as_of, limit=FORECAST_TEAMS)
    anomalies = scan_ledger(store, period.start, period.elapsed or period.end, calls=3)  # not the hours ahead
    figures = _figures(store, period, report, forecasts, anomalies)
    config = {"displayModeBar": False, "responsive": True}
    charts = {name: _chart(fig, name, config) for name, fig in figures}

    def card(name: str, wide: bool = False) -> _Html:
        if name not in charts:
            return _NOTHING
        return _fill(_markup('<div class="{}" data-chart="{}">{}</div>'), "card wide" if wide else "card", name,
                     charts[name])

    body = _join((
        _kpis(report), _markup('<section class="grid">'), _unknown_note(report.totals.unknown_cost_calls),
        card("daily", wide=True), card("feature"), card("customer"), card("models"), card("unit"),
        card("forecast", wide=True), _forecast_table(forecasts, as_of, bool(budgets)), _anomaly_table(anomalies),
        card("cache", wide=True), _pool_cards(store, period, config),
        _join(_reconciliation_card(r) for r in reconciliations), _markup("</section>")))
    unknown = report.totals.unknown_cost_calls
    summary = (f"{_usd(report.totals.cost)} over {report.totals.calls:,} calls"
               + (f" ({unknown:,} with an unknown price, not in the total)" if unknown else "")
               + f", {len(forecasts)} forecast(s), {len(anomalies)} spike(s)")
    return str(_join((head, body, end))), summary
