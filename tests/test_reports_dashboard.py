"""`aicost dashboard`: one offline HTML page, rendered by a real headless Chromium, whose totals are `aicost report`'s.

Chromium runs with every network path closed (no DNS, a dead proxy), so a chart that needed a CDN would not draw.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import tempfile
from html.parser import HTMLParser

import pytest

from aicost.cli import main
from reports_helpers import unpriced_rows, write_ledger
from servers import require_binary

pytest.importorskip("plotly")
pytest.importorskip("statsmodels")

PERIOD = ["--since", "2026-11-02", "--until", "2026-11-30"]
CHARTS = ("daily", "feature", "customer", "models", "unit", "forecast", "cache")


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def chromium_dom(path: str) -> str:
    """The page's DOM after its scripts ran, from headless Chromium with no network."""
    binary = require_binary("chromium")
    with tempfile.TemporaryDirectory(prefix="aicost-chromium-") as profile:
        proc = subprocess.run(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--host-resolver-rules=MAP * ~NOTFOUND",
             "--proxy-server=127.0.0.1:9", "--window-size=1400,2600", "--virtual-time-budget=20000",
             "--dump-dom", f"file://{path}"],
            capture_output=True, text=True, timeout=240,
        )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


class _Collector(HTMLParser):
    """Collects, per chart card, its SVG elements and drawn marks; and the page's data-total values."""

    def __init__(self) -> None:
        super().__init__()
        self.totals: dict[str, str] = {}
        self.chart_stack: list[tuple[str, int]] = []
        self.depth = 0
        self.svgs: dict[str, int] = {}
        self.marks: dict[str, int] = {}
        self.scripts_with_src: list[str] = []
        self._total_key: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag not in ("br", "meta", "img", "input", "link", "path", "rect", "line", "circle"):
            self.depth += 1
        if tag == "script" and a.get("src"):
            self.scripts_with_src.append(a["src"])
        if "data-chart" in a:
            self.chart_stack.append((a["data-chart"], self.depth))
        if "data-total" in a:
            self.totals[a["data-total"]] = a.get("data-exact", "")
        if self.chart_stack:
            name = self.chart_stack[-1][0]
            if tag == "svg":
                self.svgs[name] = self.svgs.get(name, 0) + 1
            cls = a.get("class") or ""
            # plotly draws a bar or a marker as g.point > path, a pie slice as path.surface, a line as path.js-line
            drawn = (tag == "g" and "point" in cls.split()) or (
                tag == "path" and a.get("d") and ("surface" in cls.split() or "js-line" in cls.split()))
            if drawn:
                self.marks[name] = self.marks.get(name, 0) + 1

    def handle_endtag(self, tag):
        if self.chart_stack and self.depth == self.chart_stack[-1][1] and tag == "div":
            self.chart_stack.pop()
        if tag not in ("br", "meta", "img", "input", "link", "path", "rect", "line", "circle"):
            self.depth -= 1


@pytest.fixture(scope="module")
def ledger(tmp_path_factory):
    return write_ledger(tmp_path_factory.mktemp("ledger") / "ledger.db")


def test_dashboard_renders_offline_in_chromium_with_the_report_totals(ledger, tmp_path):
    page = tmp_path / "spend.html"
    code, out, err = run_cli("dashboard", "--ledger", ledger, "--out", str(page), *PERIOD)
    assert code == 0, err
    assert "works offline" in out
    source = page.read_text()
    assert not re.search(r"<script[^>]+src=", source), "the page must not load scripts from anywhere"

    dom = chromium_dom(str(page))
    parsed = _Collector()
    parsed.feed(dom)
    # Every chart was drawn by plotly.js, in the browser, with data in it.
    for chart in CHARTS:
        assert parsed.svgs.get(chart, 0) >= 1, f"chart {chart!r} has no SVG: plotly.js did not run"
        assert parsed.marks.get(chart, 0) >= 1, f"chart {chart!r} drew no bars, slices or lines"
    # The daily chart has one bar per team per day (3 teams x 28 days).
    assert parsed.marks["daily"] >= 3 * 28

    # The totals on the page are exactly `aicost report`'s totals for the same period.
    code, report_json, err = run_cli("report", "--ledger", ledger, "--format", "json", *PERIOD)
    assert code == 0, err
    totals = json.loads(report_json)["totals"]
    assert parsed.totals["cost_usd"] == totals["cost_usd"]
    assert parsed.totals["calls"] == str(totals["calls"])
    assert parsed.totals["saved_usd"] == totals["saved_usd"]
    assert parsed.totals["cache_hits"] == str(totals["cache_hits"])
    assert parsed.totals["refusals"] == str(totals["refusals"])
    assert parsed.totals["stopped_usd"] == totals["stopped_usd"]
    assert parsed.totals["cost_per_success_usd"] == totals["cost_per_success_usd"]
    # The planted spike is listed with the calls that caused it.
    assert "Anomalies: spend spikes" in dom and "gpt-4.1" in dom and "globex" in dom


def test_dashboard_of_an_empty_period_says_so(ledger, tmp_path):
    page = tmp_path / "empty.html"
    code, out, err = run_cli("dashboard", "--ledger", ledger, "--out", str(page), "--since", "2025-01-01",
                             "--until", "2025-02-01")
    assert code == 0, err
    source = page.read_text()
    assert "No spend recorded" in source and 'data-total="cost_usd" data-exact="0"' in source


def test_dashboard_refuses_a_missing_ledger(tmp_path):
    code, out, err = run_cli("dashboard", "--ledger", str(tmp_path / "nope.db"), "--out", str(tmp_path / "x.html"))
    assert code == 2
    assert "--ledger" in err
    assert not (tmp_path / "x.html").exists()


def test_dashboard_refuses_an_output_it_cannot_write(ledger, tmp_path):
    """--out in a directory that does not exist was a FileNotFoundError traceback, exit status 1: refused, naming
    --out, exit status 2, as bad input is."""
    code, out, err = run_cli("dashboard", "--ledger", ledger, "--out", str(tmp_path / "no-such-dir" / "x.html"),
                             "--since", "2025-01-01", "--until", "2025-01-02")
    assert code == 2 and "--out: cannot write" in err, err


def test_names_from_the_ledger_cannot_inject_markup(tmp_path):
    """Attribution can come from upstream baggage: a team called like a tag is shown, never run."""
    from datetime import datetime, timezone
    from decimal import Decimal

    from aicost.ledger import CALL, LedgerRow, open_store

    evil = '<img src=x onerror="alert(1)"></script><script>alert(2)</script>'
    url = f"sqlite:///{tmp_path / 'evil.db'}"
    with open_store(url) as store:
        store.write([LedgerRow(span_id=f"{i:016x}", kind=CALL, time=datetime(2026, 11, 2 + i, tzinfo=timezone.utc),
                               request_model="gpt-4o", cost=Decimal("0.5"), team=evil, feature=evil, customer=evil)
                     for i in range(5)])
    page = tmp_path / "evil.html"
    code, out, err = run_cli("dashboard", "--ledger", url, "--out", str(page), "--since", "2026-11-01", "--until",
                             "2026-11-08")
    assert code == 0, err
    source = page.read_text()
    assert evil not in source
    assert "<img src=x" not in source and "<script>alert(2)" not in source


class _Attributes(HTMLParser):
    """Every link target and style of the elements of a DOM."""

    def __init__(self) -> None:
        super().__init__()
        self.values: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.values.extend(value or "" for name, value in attrs if name in ("href", "xlink:href", "style"))


def test_names_from_the_ledger_are_text_in_the_charts_never_links_or_styles(tmp_path):
    """plotly.js reads a subset of HTML in every label it draws (trace names, axis categories, pie labels): a
    feature (which upstream baggage may set, by default) called ``<a href="https://...">Review budget</a>`` was a
    link to that site in the dashboard's legends and axes, and ``<span style=...>`` restyled the page's text.
    Every name from the ledger is drawn as the text it is."""
    from datetime import datetime, timezone
    from decimal import Decimal

    from aicost.ledger import CALL, LedgerRow, open_store

    evil = '<a href="https://phish.example/login">Review <b>budget</b></a><span style="font-size:90px">x</span>'
    url = f"sqlite:///{tmp_path / 'evil.db'}"
    with open_store(url) as store:
        store.write([LedgerRow(span_id=f"{i:016x}", kind=CALL, time=datetime(2026, 11, 2 + i, tzinfo=timezone.utc),
                               request_model=evil if i % 2 else "gpt-4o", cost=Decimal("0.5"), team=evil,
                               feature=evil, customer=evil) for i in range(5)])
    page = tmp_path / "evil.html"
    code, out, err = run_cli("dashboard", "--ledger", url, "--out", str(page), "--since", "2026-11-01", "--until",
                             "2026-11-08")
    assert code == 0, err
    dom = chromium_dom(str(page))
    attributes = _Attributes()
    attributes.feed(dom)
    assert not [v for v in attributes.values if "phish.example" in v or "90px" in v]
    assert dom.count("Review &lt;b&gt;budget&lt;/b&gt;") >= 4  # the name, shown as written: legend, axes, pie


def test_calls_of_unknown_price_are_counted_apart_on_the_page_as_aicost_report_does(tmp_path):
    """The total stays report's priced total; the calls it leaves out are shown, never drawn as $0 of spend."""
    from aicost.ledger import open_store

    url = write_ledger(tmp_path / "ledger.db")
    with open_store(url) as store:
        store.write(unpriced_rows("labs", 28, 5))
    page = tmp_path / "spend.html"
    code, out, err = run_cli("dashboard", "--ledger", url, "--out", str(page), *PERIOD, "--as-of", "2026-11-20")
    assert code == 0, err
    assert "(140 with an unknown price, not in the total)" in out
    source = page.read_text()
    code, report_json, err = run_cli("report", "--ledger", url, "--format", "json", *PERIOD)
    report = json.loads(report_json)["totals"]
    totals = dict(re.findall(r'data-total="([a-z_]+)" data-exact="([^"]*)"', source))
    assert totals["cost_usd"] == report["cost_usd"] and totals["calls"] == str(report["calls"])
    assert totals["unknown_cost_calls"] == str(report["unknown_cost_calls"]) == "140"
    assert "+ 140 calls of unknown price, not in the total" in source
    assert "140 calls with an unknown price, not in the total nor in the charts" in source
    # labs' forecast row: $0 spent so far is a lower bound (Nov 2 .. Nov 20: 19 days x 5 calls)
    row = re.search(r"<tr><td>labs</td>(.*?)</tr>", source).group(1)
    assert "+ 95 calls of unknown price" in row and "at least" in row


# A name as upstream baggage may set it: a link, bold, a line break, an entity, a style, a plotly template variable.
MARKUP = ('<a href="https://phish.example/login">Review <b>budget</b></a><br>R&amp;D &#60;i&#62; <i>x</i> %{x} '
          '<span style="font-size:90px">y</span>')

# Run in the page once plotly.js drew it: per chart, the text of its legend entries, axis ticks, annotations and
# title, and of its hover labels (plotly.js draws them on a hover: Plotly.Fx.hover on each point, a mouseover on
# each pie slice), the links and styled spans in it, and the page's table cells: what a reader sees, as text.
_PROBE = """
window.addEventListener("load", function () {
  var sleep = function (ms) { return new Promise(function (r) { setTimeout(r, ms); }); };
  var texts = function (root, sel) {
    return Array.prototype.map.call(root.querySelectorAll(sel), function (n) { return n.textContent; });
  };
  var hovered = async function (gd, got) {
    await sleep(60);
    got.hover.push(texts(gd, ".hoverlayer .hovertext").join(" | "));
    got.links += gd.querySelectorAll(".hoverlayer a").length;
    got.styled = got.styled.concat(texts(gd, ".hoverlayer tspan[style]"));
  };
  (async function () {
    await sleep(500);
    var out = {charts: {}, cells: texts(document, "td"), notes: texts(document, "#unknown-price"),
               title: document.title, header: texts(document, "header > *"),
               header_elements: document.querySelectorAll("header *").length,
               tiles: Array.prototype.map.call(document.querySelectorAll(".kpi"), function (k) {
                 var v = k.querySelector(".value");
                 return {label: k.querySelector(".label").textContent, value: v.textContent,
                         exact: v.getAttribute("data-exact"), line: k.querySelector(".exact").textContent};
               }),
               cards: Array.prototype.map.call(document.querySelectorAll(".card"), function (c) {
                 var h = c.querySelector("h2");
                 return {title: h ? h.textContent : "", cells: texts(c, "td"), notes: texts(c, "p"),
                         pool: c.getAttribute("data-pool")};
               }),
               ran: document.body.getAttribute("data-ran"), images: document.images.length,
               scripts_run: Array.prototype.filter.call(document.scripts, function (s) {
                 return s.textContent.indexOf("document.body.setAttribute(") === 0;
               }).length};
    var plots = document.querySelectorAll(".js-plotly-plot");
    for (var k = 0; k < plots.length; k++) {
      var gd = plots[k];
      var got = {hover: [], legend: texts(gd, ".legendtext"), ticks: texts(gd, ".xtick text, .ytick text"),
                 annotations: texts(gd, ".annotation-text"), title: texts(gd, ".gtitle"),
                 links: gd.querySelectorAll("a").length, styled: texts(gd, "tspan[style]")};
      var slices = gd.querySelectorAll("g.slice");
      for (var s = 0; s < slices.length; s++) {
        slices[s].dispatchEvent(new MouseEvent("mouseover", {bubbles: true, clientX: 10, clientY: 10}));
        await hovered(gd.parentNode, got);
        slices[s].dispatchEvent(new MouseEvent("mouseout", {bubbles: true}));
      }
      for (var c = 0; !slices.length && c < gd._fullData.length; c++) {
        var n = (gd._fullData[c].x || []).length;
        var points = n <= 12 ? Array.from({length: n}, function (_, i) { return i; }) : [8];
        for (var p = 0; p < points.length; p++) {
          Plotly.Fx.hover(gd, [{curveNumber: c, pointNumber: points[p]}]);
          await hovered(gd, got);
          Plotly.Fx.unhover(gd);
        }
      }
      out.charts[gd.id] = got;
    }
    var pre = document.createElement("pre");
    pre.id = "probe";
    pre.textContent = JSON.stringify(out);
    document.body.appendChild(pre);
  })();
});
"""


def seen_in_chromium(page) -> tuple[dict, str]:
    """What headless Chromium shows of the page (see _PROBE), and its DOM."""
    import html

    probed = page.with_name(page.stem + "-probed.html")
    probed.write_text(page.read_text().replace("</body>", f"<script>{_PROBE}</script></body>"))
    dom = chromium_dom(str(probed))
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert found, "the probe did not run: plotly.js or the page's scripts failed"
    return json.loads(html.unescape(found.group(1))), dom


def _assert_text_only(seen: dict, dom: str) -> None:
    """No name became a link or a style anywhere on the page, in a chart or out of one."""
    attributes = _Attributes()
    attributes.feed(dom)
    assert not [v for v in attributes.values if "phish.example" in v or "90px" in v]
    for chart, got in seen["charts"].items():
        assert got["links"] == 0 and got["styled"] == [], (chart, got)


def _markup_ledger(url: str, name: str = MARKUP, owner: str = "platform", weights_from: str = "declared") -> None:
    """The report tests' ledger with a team, a feature, a customer and a model called MARKUP (the planted spike is
    that team's, customer's and model's), and two self-hosted pools: one called MARKUP, and "gpu", each shared by
    the team MARKUP and "ops" (``name``: another name than MARKUP; ``owner``: the pools' owner; ``weights_from``:
    where the intervals' weights came from, ``meter.DEFAULT_WEIGHTS`` making their shares estimates)."""
    from datetime import datetime, timedelta, timezone
    from decimal import Decimal

    from aicost.ledger import open_store
    from aicost.pools.ledger import write_interval
    from aicost.pools.meter import Allocation, ClosedInterval
    from reports_helpers import build_rows

    renamed = {"search": name, "answer": name, "globex": name, "gpt-4.1": name}
    rows, runs = build_rows()
    for record in (*rows, *runs):
        for field in ("team", "feature", "customer", "request_model", "response_model"):
            value = getattr(record, field, None)
            if value in renamed:
                setattr(record, field, renamed[value])
    start = datetime(2026, 11, 10, tzinfo=timezone.utc)
    with open_store(url) as store:
        store.write(rows, runs)
        for pool, tag in ((name, "a"), ("gpu", "b")):
            shares = (Allocation(tag * 16, name, "llama", 1000, 100, Decimal(1400), None, Decimal("1.5")),
                      Allocation(tag * 15 + "c", "ops", "llama", 1000, 100, Decimal(1400), None, Decimal("0.5")))
            write_interval(store, ClosedInterval(
                pool=pool, owner=owner, key="tokens", start=start, end=start + timedelta(hours=1),
                cost=Decimal("2.5"), used=Decimal("2"), idle=Decimal("0.5"), utilisation=Decimal("0.8"),
                input_weight=Decimal(1), output_weight=Decimal(4), weights_from=weights_from, allocations=shares))


@pytest.fixture(scope="module")
def markup_page(tmp_path_factory):
    """The dashboard of that ledger as Chromium shows it (see _PROBE), and its DOM: read once for the tests below."""
    folder = tmp_path_factory.mktemp("markup")
    url = f"sqlite:///{folder / 'markup.db'}"
    _markup_ledger(url)
    page = folder / "markup.html"
    code, out, err = run_cli("dashboard", "--ledger", url, "--out", str(page), *PERIOD)
    assert code == 0, err
    return seen_in_chromium(page)


TRUNCATED = '<a href="...'  # plotly.js cuts a trace's name in a hover label to 15 characters, any name


def test_a_name_with_markup_is_never_a_link_or_a_style_on_the_page(markup_page):
    """No name becomes a link or a style anywhere on the page, in a chart or out of one. Before, a pool called so
    wrote the page's own HTML: its name went raw into its chart's ``<div id="...">``, so the name's ``<span style>``
    was the page's (and the pool's chart was not drawn)."""
    _assert_text_only(*markup_page)


@pytest.mark.parametrize("place", ["daily", "feature", "customer", "forecast", "models", "unit", "pool named so",
                                   "pool of a team named so", "tables"])
def test_a_name_with_markup_shows_as_written_wherever_the_page_shows_it(markup_page, place):
    """Every place a name is on the page, read in Chromium: legends, axis categories, the spike annotation, the pie's
    legend, every hover label, a pool chart's title, and the forecast and spike tables. Before, a pool called so
    was not drawn at all (its name went raw into its chart's ``<div id="...">`` and the script finding it), and a
    pool's hover label pasted a team's name into plotly's template, so ``%{x}`` in the name showed the bar's
    value."""
    seen, _ = markup_page
    charts = seen["charts"]
    pools = [chart for chart in charts if chart.startswith("chart-pool-") and chart != "chart-pool-gpu"]
    if place in ("daily", "unit"):  # a trace called so: its legend entry and its hover label
        got = charts[f"chart-{place}"]
        assert MARKUP in got["legend"] and any(h.startswith(TRUNCATED) for h in got["hover"]), got
        if place == "daily":  # the team's spike
            assert f"spike: {MARKUP}" in got["annotations"], got["annotations"]
    elif place in ("feature", "customer", "forecast"):  # a horizontal bar's category: the axis, the hover label
        got = charts[f"chart-{place}"]
        assert MARKUP in got["ticks"] and any(f", {MARKUP})" in h for h in got["hover"]), got
    elif place == "models":  # the pie's legend, and its hover template's %{label}
        got = charts["chart-models"]
        assert MARKUP in got["legend"] and any(h.startswith(f"{MARKUP}: $30.00 (") for h in got["hover"]), got
    elif place == "pool named so":
        assert len(pools) == 1, sorted(charts)
        got = charts[pools[0]]
        assert got["title"] == [f"Pool {MARKUP}: final cost by team, idle included (USD)"], got["title"]
        assert MARKUP in got["ticks"], got["ticks"]
        assert MARKUP in got["legend"] and f"{MARKUP}: $1.5" in got["hover"], got
    elif place == "pool of a team named so":
        got = charts["chart-pool-gpu"]
        assert MARKUP in got["legend"], got["legend"]
        # The pool's name on its axis as it is, the dollars on the cost axis (before, "$gpu" and bare amounts)
        assert "gpu" in got["ticks"] and any(t.startswith("$") for t in got["ticks"]), got["ticks"]
        assert not any(t.startswith("$gpu") for t in got["ticks"]), got["ticks"]
        assert f"{MARKUP}: $1.5" in got["hover"] and "ops: $0.5" in got["hover"], got["hover"]
    else:  # the HTML tables: the forecast's row of that team, the spikes of that team, customer and model
        assert seen["cells"].count(MARKUP) >= 4, [cell for cell in seen["cells"] if "Review" in cell]


def test_a_trace_added_to_a_chart_is_escaped_without_being_asked(tmp_path, monkeypatch):
    """The escaping is the one path from a figure to the page, not a rule each chart must remember: a chart that
    gets a new trace, annotation, axis labels and title, all given a raw name, still shows the name as written."""
    import plotly.graph_objects as go

    from aicost.reports import dashboard

    drawn = dashboard._figures

    def with_a_new_trace(*args, **kwargs):
        figures = drawn(*args, **kwargs)
        fig = dict(figures)["cache"]
        fig.add_trace(go.Scatter(name=MARKUP, x=["2026-11-05", "2026-11-06"], y=[0.1, 0.12],
                                 mode="lines+markers+text", text=[MARKUP, "ok"], hovertext=[MARKUP, MARKUP],
                                 hoverinfo="text+name", legendgroup="new", legendgrouptitle={"text": MARKUP}))
        fig.add_annotation(x="2026-11-06", y=0.12, text=MARKUP)
        fig.update_layout(title={"text": MARKUP}, yaxis={"tickvals": [0.05], "ticktext": [MARKUP]})
        return figures

    monkeypatch.setattr(dashboard, "_figures", with_a_new_trace)
    page = tmp_path / "spend.html"
    code, out, err = run_cli("dashboard", "--ledger", write_ledger(tmp_path / "ledger.db"), "--out", str(page),
                             *PERIOD)
    assert code == 0, err
    seen, dom = seen_in_chromium(page)
    _assert_text_only(seen, dom)
    cache = seen["charts"]["chart-cache"]
    assert cache["title"] == [MARKUP] and cache["annotations"] == [MARKUP], cache
    assert MARKUP in cache["legend"] and MARKUP in cache["ticks"], cache  # (a legend group's title is a legendtext)
    # its hover label: the trace's name (cut to 15 characters by plotly.js, as any name) and the hovertext
    assert f'<a href="...{MARKUP}' in cache["hover"], cache["hover"]
    assert any(h.startswith("saved by the...(Nov") for h in cache["hover"]), cache["hover"]  # plain text: as was


# A name that, written raw into a table cell or a tile, ends the cell, the table and the card, and runs: an image's
# onerror and a script, each marking the page's body; and an entity, which stays as written.
RUNS = ("<img src=x onerror=\"document.body.setAttribute('data-ran','img')\"></td></tr></table></div>"
        "<script>document.body.setAttribute('data-ran','script')</script><b>R&amp;D</b>")


def test_every_value_in_a_table_or_tile_is_text_however_it_was_made(tmp_path, monkeypatch):
    """Tables, tiles, cards and the page's header are filled by one builder (``dashboard._fill``) that escapes every
    value, not by a rule each cell must remember. Every value made to be markup that runs: the names from the ledger
    (team, feature, customer, model: the forecast and spike tables), a pool's name and its owner's, a saved
    reconciliation's texts, the ledger's name (its file's path: the header) and the period's text (the header and
    the title), and the page's own amounts and notes (dollars, exact figures, the unknown-price texts, the reason a
    pool's team shares are estimates). Read in headless Chromium, nothing ran and no element was made, and each
    shows as written at every place. Before, names were escaped site by site, and the amounts not at all (trusted
    to be digits): an image and a script ran."""
    from aicost.ledger import open_store
    from aicost.ledger.report import Period
    from aicost.pools import meter
    from aicost.reports import dashboard

    path = tmp_path / f"{RUNS}.db"  # (its "/" are folders: the path, and so the ledger's name, ends with RUNS.db)
    path.parent.mkdir(parents=True)
    url = f"sqlite:///{path}"
    assert url.endswith(f"{RUNS}.db")
    # The pools' intervals weighed 1:1 by default, no engine figures: their team shares are estimates, said why
    _markup_ledger(url, name=RUNS, owner=RUNS, weights_from=meter.DEFAULT_WEIGHTS)
    with open_store(url) as store:
        store.write(unpriced_rows(RUNS, 28, 5))
    rec = tmp_path / "rec.json"
    rec.write_text(json.dumps({"vendor": RUNS, "period": {"label": RUNS}, "summary": RUNS,
                               "totals": {"bill_usd": "12", "ledger_usd": "10"},
                               "unexplained": [{"day": RUNS, "scope": RUNS, "key_id": RUNS, "model": RUNS,
                                                "usd": "2"}]}))
    for made in ("_usd", "_exact", "plus_unknown", "unknown_calls"):  # the page's own texts, made into markup
        monkeypatch.setattr(dashboard, made, lambda *args: RUNS)
    monkeypatch.setattr(Period, "describe", lambda self: RUNS)
    monkeypatch.setitem(meter._ESTIMATE_REASONS[meter.DEFAULT_WEIGHTS], "tokens", RUNS)
    page = tmp_path / "spend.html"
    code, out, err = run_cli("dashboard", "--ledger", url, "--out", str(page), *PERIOD, "--reconciliation", str(rec))
    assert code == 0, err
    seen, _ = seen_in_chromium(page)
    assert (seen["ran"], seen["images"], seen["scripts_run"]) == (None, 0, 0), seen  # nothing ran, nothing made

    tiles = [t for t in seen["tiles"] if t["label"] in ("Total spend", "Cache savings", "Stopped by budgets",
                                                         "USD per successful outcome")]
    assert len(tiles) == 4 and all(t["value"] == t["exact"] == t["line"] == RUNS for t in tiles), seen["tiles"]
    assert seen["notes"] and seen["notes"][0].startswith(f"{RUNS} nor in the charts"), seen["notes"]
    cards = {card["title"]: card for card in seen["cards"]}
    forecast = cards["Budgets against forecast"]["cells"]
    rows = [forecast[i:i + 7] for i in range(0, len(forecast), 7)]  # 7 columns
    row = next(row for row in rows if row[0] == RUNS)  # the team's: spent so far (+ unknown), projected, interval
    assert row[1:3] == [RUNS + RUNS, f"at least {RUNS}"] and row[4] == RUNS, row  # (no budget: _usd(None))
    assert row[3] in ("-", f"{RUNS} \u2013 {RUNS}") and rows[0][3] == f"{RUNS} \u2013 {RUNS}", rows
    spikes = cards["Anomalies: spend spikes"]["cells"]
    assert spikes.count(RUNS) >= 3, spikes  # by team, customer, model
    assert any(re.search(rf"\d\d:\d\d {re.escape(RUNS)} {re.escape(RUNS)} [0-9a-f]{{16}}", c) for c in spikes), spikes
    reconciliation = cards[f"Reconciliation with {RUNS}'s bill, {RUNS}"]
    assert reconciliation["notes"] == [RUNS], reconciliation
    assert reconciliation["cells"][:4] == ["billed", RUNS, "in the ledger", RUNS], reconciliation
    assert reconciliation["cells"][-5:] == [RUNS] * 5, reconciliation  # day, project, key, model, amount
    pool = [card for card in seen["cards"] if card["pool"] == RUNS]
    assert len(pool) == 1 and f"Pool cost ${RUNS} over 1 closed interval(s)" in pool[0]["notes"][0], seen["cards"]
    assert f"idle ${RUNS} (owner {RUNS})" in pool[0]["notes"][0], pool
    estimated = [card["pool"] for card in seen["cards"]
                 if card["pool"] and f" Estimated team shares: 1 of 1 interval: {RUNS}." in card["notes"][0]]
    assert sorted(estimated) == [RUNS, "gpu"], seen["cards"]
    assert seen["title"] == f"aicost spend: {RUNS}", seen["title"]
    assert seen["header_elements"] == 2 and seen["header"][0] == "aicost spend", seen["header"]  # h1, p: no more
    assert re.fullmatch(rf"{re.escape(RUNS)} \u00b7 ledger {re.escape(url)} \u00b7 generated [0-9: -]+ UTC",
                        seen["header"][1]), seen["header"]
    # wherever it shows, the name is whole: no part of it was read as markup
    texts = [*seen["cells"], *seen["notes"], *(t[k] for t in seen["tiles"] for k in ("value", "exact", "line")),
             *(note for card in seen["cards"] for note in card["notes"]), seen["title"], *seen["header"]]
    assert not [text for text in texts if "<" in text.replace(RUNS, "")], texts


def test_a_section_written_without_the_builder_is_text_on_the_page(tmp_path, monkeypatch):
    """The page is put together by the builder too: a section made by hand (an f-string with a name in it) shows its
    markup as text, it never becomes the page's."""
    from aicost.reports import dashboard

    monkeypatch.setattr(dashboard, "_anomaly_table", lambda anomalies: f"<table><tr><td>{RUNS}</td></tr></table>")
    page = tmp_path / "spend.html"
    code, out, err = run_cli("dashboard", "--ledger", write_ledger(tmp_path / "ledger.db"), "--out", str(page),
                             *PERIOD)
    assert code == 0, err
    source = page.read_text()
    assert "<img" not in source and "setAttribute('data-ran'" not in source
    assert "&lt;table&gt;&lt;tr&gt;&lt;td&gt;&lt;img src=x onerror=" in source


def test_raw_markup_is_written_only_from_literals_of_the_dashboard_module():
    """Markup reaches the page only as aicost's own: ``_markup`` is given string literals only (never a name, an
    f-string or a value), the builder's markup type is made by the builder's functions, a chart's and plotly.js's
    only, and text is escaped in one function (and in the charts' ``_as_text``)."""
    import ast
    import inspect

    from aicost.reports import dashboard

    makers = {"_markup", "_escaped", "_fill", "_join", "_chart", "_plotly_js"}
    wrong = []
    for top in ast.parse(inspect.getsource(dashboard)).body:
        where = top.name if isinstance(top, (ast.FunctionDef, ast.ClassDef)) else None
        for node in ast.walk(top):
            if not isinstance(node, ast.Call):
                continue
            called = ast.unparse(node.func)
            if called == "_markup" and not (len(node.args) == 1 and not node.keywords
                                            and isinstance(node.args[0], ast.Constant)
                                            and isinstance(node.args[0].value, str)):
                wrong.append(f"line {node.lineno}: _markup({ast.unparse(node)[8:-1][:60]}) is not a string literal")
            if called == "_Html" and where not in makers:
                wrong.append(f"line {node.lineno}: _Html(...) made in {where}")
            if called.endswith("escape") and where not in ("_escaped", "_as_text"):
                wrong.append(f"line {node.lineno}: {called}(...) in {where}")
    assert wrong == []
    assert f"font-family: {dashboard._FONT};" in dashboard._CSS  # the page's font is the charts'
