"""aicost reconcile over loopback: real SDK calls replayed into the ledger, the vendors' admin report APIs faked
from their documented schemas (tests/admin_api_server.py), and the comparison read back as a user would."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import decimal
import io
import itertools
import json
import threading
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import anthropic
import openai
import pytest

import aicost
from aicost.cli import main
from aicost.errors import ConfigurationError
from aicost.integrations.identity import key_fingerprint
from aicost.ledger import open_store
from aicost.ledger import writer as ledger_writer
from aicost.pricing.money import format_usd
from aicost.reconcile import AdminKeyMissing, AdminKeyRejected, BillFetchError, Tolerances, reconcile, render_table
from aicost.reconcile.render import render_csv, render_json
from tests.admin_api_server import ADMIN_KEY, FakeAdminAPI, Spend
from tests.vendor_server import Reply, _ssl_context, load_recording

UTC = timezone.utc
NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
OPENAI_KEY = "sk-proj-instrumented-0000000000000000000000"  # the key instrumented code uses
ANTHROPIC_KEY = "sk-ant-api03-instrumented-000000000000000000"
MESSAGES = [{"role": "user", "content": "hello"}]
OPENAI_RECORDINGS = ["openai-chat-nonstream-001", "openai-chat-nonstream-002", "openai-chat-nonstream-003"]
ANTHROPIC_RECORDINGS = ["anthropic-messages-nonstream-001", "anthropic-messages-nonstream-002"]


# -- filling the ledger by replaying recorded traffic through the real SDKs -----------------------------------------
def _replay(instrumented, replay_server, tmp_path, vendor, recordings, mutate=None, model=None):
    """The ledger rows the real SDK calls produce (instrument(ledger=...)), one per recording."""
    url = f"sqlite:///{tmp_path / f'replay-{vendor}-{len(recordings)}.db'}"
    aicost.instrument(tracer_provider=instrumented.tracer_provider, ledger=url)
    try:
        if vendor == "openai":
            client = openai.OpenAI(api_key=OPENAI_KEY, base_url=replay_server.openai_base_url, max_retries=0,
                                   http_client=openai.DefaultHttpx2Client(verify=_ssl_context()))
        else:
            client = anthropic.Anthropic(api_key=ANTHROPIC_KEY, base_url=replay_server.anthropic_base_url,
                                         max_retries=0, http_client=anthropic.DefaultHttpxClient(verify=_ssl_context()))
        for recording_id in recordings:
            recording = load_recording(recording_id)
            if mutate:
                mutate(recording)
            replay_server.enqueue(Reply.from_recording(recording))
            if vendor == "openai":
                client.chat.completions.create(model=model or "gpt-4o", messages=MESSAGES)
            else:
                client.messages.create(model=model or "claude-sonnet-4-6", max_tokens=64, messages=MESSAGES)
        assert ledger_writer.active().flush()
    finally:
        aicost.uninstrument()
    with open_store(url, create=False) as store:
        rows = list(store.rows(datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)))
    assert len(rows) == len(recordings)
    return rows


def _ledger(tmp_path, placed):
    """A ledger holding the replayed rows moved to the days the scenario needs."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    with open_store(url, create=True) as store:
        store.write(placed)
    return url


_ids = itertools.count(1)


def _at(rows, *times):
    """Copies of the rows, the i-th copy of row j at times[i] + j minutes (each with a new span id)."""
    out = []
    for t in times:
        for j, row in enumerate(rows):
            out.append(dataclasses.replace(row, time=t + timedelta(minutes=j), span_id=f"{next(_ids):016x}"))
    return out


def _truth(rows, *, scope, key_id, vendor="openai", cost_scale=Decimal(1)):
    """What the vendor bills for those calls: the same tokens and (scaled) money, as the vendor names them."""
    out = []
    for r in rows:
        uncached = r.input_tokens if vendor == "openai" else r.input_tokens - r.cache_read_tokens - r.cache_write_tokens
        out.append(Spend(r.time, r.model, scope, key_id, uncached, r.output_tokens, r.cache_read_tokens,
                         {k: v * cost_scale for k, v in r.cost_parts.items()}))
    return out


def _sum(rows):
    return sum((r.cost for r in rows), Decimal(0))


def _run(fake, url, vendor="openai", **kwargs):
    env = {"OPENAI_ADMIN_KEY": ADMIN_KEY, "ANTHROPIC_ADMIN_KEY": ADMIN_KEY}
    kwargs.setdefault("keys", {"key_main": OPENAI_KEY if vendor == "openai" else ANTHROPIC_KEY})
    kwargs.setdefault("period", "2026-11")
    return reconcile(vendor, kwargs.pop("period"), url, base_url=fake.url, now=NOW, environ=env,
                     sleep=kwargs.pop("sleep", lambda s: None), **kwargs)


NOV = [datetime(2026, 11, d, 9, 30, tzinfo=UTC) for d in (3, 12, 13, 14, 28)]


@pytest.fixture
def openai_rows(instrumented, replay_server, tmp_path):
    return _replay(instrumented, replay_server, tmp_path, "openai", OPENAI_RECORDINGS)


# -- scenarios -------------------------------------------------------------------------------------------------------
def test_exact_match_over_paginated_reports_with_empty_days(openai_rows, tmp_path):
    placed = _at(openai_rows, *NOV)
    url = _ledger(tmp_path, placed)
    truth = _truth(placed, scope="proj_main", key_id="key_main")
    with FakeAdminAPI("openai", truth, NOW, page_size=4) as fake:
        result = _run(fake, url)
    assert result.bill_total == result.ledger_total == _sum(placed) > 0
    assert result.matched == result.bill_total and result.explained_pct == Decimal("100.0")
    assert result.unexplained == result.over_attributed == result.drift == 0
    assert {c.status for c in result.cells} == {"matched"}
    assert {c.day for c in result.cells} == {"2026-11-03", "2026-11-12", "2026-11-13", "2026-11-14", "2026-11-28"}
    assert {(c.scope, c.key_id) for c in result.cells} == {("proj_main", "key_main")}
    # 30 daily buckets, 4 per page: every page of both reports was read (and empty days are just empty)
    pages = [q for path, q in fake.requests if path.endswith("/completions")]
    assert len(pages) == 8 and "page" not in pages[0] and all("page" in q for q in pages[1:])
    assert pages[0]["group_by"] == ["model", "project_id", "api_key_id"] and pages[0]["bucket_width"] == ["1d"]
    assert result.summary().startswith("your instrumented calls explain 100.0 % of OpenAI's bill for November 2026")


def test_shadow_spend_on_a_second_key_is_named_by_project_key_model_and_days(openai_rows, tmp_path):
    placed = _at(openai_rows, *NOV)
    url = _ledger(tmp_path, placed)
    shadow_rows = [r for r in _at(openai_rows[:1], *NOV[1:4])]  # gpt-4o calls on Nov 12-14 nobody instrumented
    truth = (_truth(placed, scope="proj_main", key_id="key_main")
             + _truth(shadow_rows, scope="proj_x", key_id="key_shadow7abc"))
    alerts = []
    with FakeAdminAPI("openai", truth, NOW) as fake:
        result = _run(fake, url, alert_threshold="0.00001", on_unexplained=alerts.append)
    shadow = _sum(shadow_rows)
    assert result.unexplained == shadow and result.over_attributed == 0 and result.drift == 0
    assert result.bill_total == _sum(placed) + shadow and result.matched == _sum(placed)
    sources = result.sources()
    assert {(s.scope, s.key_id, s.model) for s in sources} == {("proj_x", "key_shadow7abc", openai_rows[0].model)}
    assert sorted(s.day for s in sources) == ["2026-11-12", "2026-11-13", "2026-11-14"]
    pct = (_sum(placed) * 100 / (_sum(placed) + shadow)).quantize(Decimal("0.1"))
    summary = result.summary()
    assert f"explain {pct} % of OpenAI's bill for November 2026" in summary
    assert "came from project proj_x, API key key_…abc, model " + openai_rows[0].model in summary
    assert "mostly on Nov 12-14" in summary
    assert len(alerts) == 1 and alerts[0].amount == shadow and alerts[0].summary == summary
    fields = alerts[0].alert_fields()  # the shape of aicost.reports.alerts.Alert
    assert fields["key"] == "reconcile:openai:2026-11-01:0.00001" and fields["text"] == summary
    # the same threshold written otherwise (--alert-above 0.000010) is the same alert: sent once, not again
    from aicost.reconcile.run import UnexplainedSpendAlert
    assert UnexplainedSpendAlert(result, Decimal("0.000010")).alert_fields()["key"] == fields["key"]
    assert fields["fields"][0][0].startswith("2026-11-1") and "proj_x key_shadow7abc" in fields["fields"][0][0]


def test_a_missing_price_and_a_discount_the_catalog_lacks_are_price_drift_with_the_implied_rate(
        instrumented, replay_server, tmp_path, openai_rows):
    def unknown_model(recording):
        body = recording["response"]["body"]
        data = json.loads(body) if isinstance(body, str) else body
        data["model"] = "gpt-9-preview-2026-11-01"
        recording["response"]["body"] = json.dumps(data) if isinstance(body, str) else data

    unpriced = _replay(instrumented, replay_server, tmp_path, "openai", OPENAI_RECORDINGS[:1], mutate=unknown_model,
                       model="gpt-9-preview")
    assert unpriced[0].cost is None and not unpriced[0].price_known
    placed_unpriced = _at(unpriced, NOV[0])
    placed = _at(openai_rows, NOV[1])
    url = _ledger(tmp_path, placed_unpriced + placed)
    billed_unpriced = Decimal("0.0123")
    truth = (_truth(placed, scope="proj_main", key_id="key_main", cost_scale=Decimal("0.5"))  # a 50 % discount
             + [dataclasses.replace(s, cost_parts={"input": billed_unpriced})
                for s in _truth(placed_unpriced, scope="proj_main", key_id="key_main")])
    with FakeAdminAPI("openai", truth, NOW) as fake:
        # replayed calls cost fractions of a cent: a tolerance below the default cent, so the discount shows
        result = _run(fake, url, tolerances=Tolerances(money_usd=Decimal("0.000001")))
    drift = {c.day: c for c in result.cells if c.status == "price_drift"}
    tokens = unpriced[0].input_tokens + unpriced[0].output_tokens
    assert drift["2026-11-03"].implied_rate_per_mtok == billed_unpriced * 1_000_000 / tokens
    assert drift["2026-11-03"].ledger_unknown_price_calls == 1 and drift["2026-11-03"].implied_ratio is None
    discounted = [c for c in drift.values() if c.day == "2026-11-12"]
    assert discounted and all(c.implied_ratio == Decimal("0.5") for c in discounted)
    assert result.unexplained == result.over_attributed == 0
    assert "price drift" in result.summary() and "Price drift" in render_table(result)


def test_a_call_of_an_unknown_price_the_bill_lacks_is_over_attributed_never_matched_at_0():
    """The ledger's call has an unknown price and the vendor billed nothing for it: the ledger holds calls the
    bill does not, so the cell is over-attributed, as the same call with a known price is; it used to be 'matched',
    its unknown cost taken as $0 against the $0 bill. So too beside a priced part that equals the bill."""
    from aicost.ledger.row import LedgerRow
    from aicost.reconcile.compare import compare
    from aicost.reconcile.vendors import OPENAI, Bill, CostLine

    def call(span, cost):
        return LedgerRow(span_id=span * 16, kind="call", time=datetime(2026, 11, 3, 9, tzinfo=timezone.utc),
                         provider="openai", request_model="my-new-model", input_tokens=5_000_000,
                         output_tokens=400_000, cost=cost, price_known=cost is not None)

    for cost in (Decimal("12.50"), None):
        [cell] = compare(OPENAI, Bill(), [call("a", cost)], key_map=None, now=NOW, tolerances=Tolerances())
        assert cell.status == "over_attributed" and cell.ledger_unknown_price_calls == (cost is None)
    billed = Bill(costs=[CostLine(day="2026-11-03", model="my-new-model", scope=None, key_id=None,
                                  amount=Decimal("12.50"))])
    [cell] = compare(OPENAI, billed, [call("a", Decimal("12.50")), call("b", None)], key_map=None, now=NOW,
                     tolerances=Tolerances())
    assert cell.difference == 0 and cell.status == "over_attributed"


def test_a_cost_line_model_takes_a_snapshot_spelling_never_another_models():
    """The cost report may name a model without its snapshot suffix; it is joined to the one known model that
    adds only a snapshot (a date) to it, never to one that merely starts with it ('gpt-4o' is not
    'gpt-4o-mini-2024-07-18')."""
    from aicost.reconcile.compare import _canonical_models
    from aicost.reconcile.vendors import Bill, CostLine

    def renamed(cost_model, known):
        return _canonical_models(Bill(costs=[CostLine("2026-11-03", cost_model, None, None, Decimal(1))]), known)

    assert renamed("gpt-4o", {"gpt-4o-mini-2024-07-18"}) == {}
    assert renamed("gpt-4o", {"gpt-4o-2024-08-06", "gpt-4o-mini-2024-07-18"}) == {"gpt-4o": "gpt-4o-2024-08-06"}
    assert renamed("claude-sonnet-4-5", {"claude-sonnet-4-5-20250929"}) == {
        "claude-sonnet-4-5": "claude-sonnet-4-5-20250929"}
    assert renamed("gpt-4", {"gpt-4-0613", "gpt-4-turbo-2024-04-09"}) == {"gpt-4": "gpt-4-0613"}


def test_a_day_inside_the_report_lag_is_provisional_never_a_mismatch(openai_rows, tmp_path):
    settled = _at(openai_rows, datetime(2026, 12, 2, 10, tzinfo=UTC))
    recent = _at(openai_rows, datetime(2026, 12, 4, 9, tzinfo=UTC))  # 3 h before now
    url = _ledger(tmp_path, settled + recent)
    truth = _truth(settled + recent, scope="proj_main", key_id="key_main")
    with FakeAdminAPI("openai", truth, NOW, lag=timedelta(hours=6)) as fake:  # Dec 4 not reported yet
        result = _run(fake, url, period="2026-12")
    by_day = {c.day: c.status for c in result.cells}
    assert by_day == {"2026-12-02": "matched", "2026-12-04": "provisional"}
    assert result.over_attributed == 0 and result.unexplained == 0 and result.explained_pct == Decimal("100.0")
    assert result.provisional_days == ["2026-12-04"] and "provisional" in result.summary()
    assert result.end == NOW  # the current month is read up to now, never past it
    # A period starting mid-day (48h = from Dec 2 13:00) is read in whole UTC days, as the vendors bucket them
    with FakeAdminAPI("openai", truth, NOW) as fake:
        result = _run(fake, url, period="48h")
    assert result.start == datetime(2026, 12, 2, tzinfo=UTC)
    assert [q["start_time"] for p, q in fake.requests] == [[str(int(result.start.timestamp()))]] * 2


def test_anthropic_shadow_key_in_the_same_workspace_is_found_by_its_tokens(instrumented, replay_server, tmp_path):
    rows = _replay(instrumented, replay_server, tmp_path, "anthropic", ANTHROPIC_RECORDINGS)
    placed = _at(rows, *NOV[:3])
    url = _ledger(tmp_path, placed)
    shadow_rows = _at(rows[:1], NOV[2])
    truth = (_truth(placed, scope="wrkspc_01main", key_id="apikey_01main", vendor="anthropic")
             + _truth(shadow_rows, scope="wrkspc_01main", key_id="apikey_01shadowxyz", vendor="anthropic"))
    with FakeAdminAPI("anthropic", truth, NOW, page_size=5) as fake:
        result = _run(fake, url, vendor="anthropic", keys={"apikey_01main": ANTHROPIC_KEY})
    assert result.unexplained == _sum(shadow_rows) > 0
    assert [(s.scope, s.key_id, s.day) for s in result.sources()] == [("wrkspc_01main", "apikey_01shadowxyz",
                                                                        "2026-11-13")]
    assert result.matched == _sum(placed)
    usage = [q for path, q in fake.requests if path.endswith("/messages")]
    assert usage[0]["group_by[]"] == ["model", "workspace_id", "api_key_id"]
    assert usage[0]["starting_at"] == ["2026-11-01T00:00:00Z"] and usage[0]["ending_at"] == ["2026-12-01T00:00:00Z"]
    assert "workspace wrkspc_01main, API key apikey_…xyz" in result.summary()


def test_anthropic_analytics_api_costs_per_key_in_31_day_chunks_and_its_refresh_time(instrumented, replay_server,
                                                                                       tmp_path):
    rows = _replay(instrumented, replay_server, tmp_path, "anthropic", ANTHROPIC_RECORDINGS)
    placed = _at(rows, datetime(2026, 10, 25, 8, tzinfo=UTC), *NOV[:3])
    late = _at(rows, datetime(2026, 11, 30, 10, tzinfo=UTC))  # after the data's refresh time: not reported yet
    url = _ledger(tmp_path, placed + late)
    shadow_rows = _at(rows[:1], NOV[2])
    truth = (_truth(placed + late, scope="wrkspc_01main", key_id="apikey_01main", vendor="anthropic")
             + _truth(shadow_rows, scope="wrkspc_01main", key_id="apikey_01shadowxyz", vendor="anthropic"))
    with FakeAdminAPI("anthropic", truth, NOW, lag=timedelta(days=4, hours=6), page_size=3) as fake:
        result = _run(fake, url, vendor="anthropic", api="analytics", keys={"apikey_01main": ANTHROPIC_KEY},
                      period=(datetime(2026, 10, 20), datetime(2026, 12, 1)))
    assert result.unexplained == _sum(shadow_rows) > 0 and result.matched == _sum(placed)
    shadow_cells = [c for c in result.cells if c.status == "unexplained"]
    assert [(c.scope, c.key_id, c.day) for c in shadow_cells] == [("wrkspc_01main", "apikey_01shadowxyz",
                                                                   "2026-11-13")]  # the cost names the key itself
    assert {c.day: c.status for c in result.cells if c.day == "2026-11-30"} == {"2026-11-30": "provisional"}
    assert result.over_attributed == 0
    starts = sorted({q["starting_at"][0] for path, q in fake.requests if path.endswith("/analytics/usage")})
    assert starts == ["2026-10-20T00:00:00Z", "2026-11-20T00:00:00Z"]  # 42 days in two requests of <= 31 days
    with FakeAdminAPI("anthropic", truth, NOW) as fake:
        with pytest.raises(ConfigurationError, match="anthropic has no report API 'v2'; supported: usage_report, "
                                                     "analytics"):
            _run(fake, url, vendor="anthropic", api="v2")


def test_without_a_key_map_it_compares_per_day_and_model_and_still_names_the_vendors_keys(openai_rows, tmp_path):
    placed = _at(openai_rows, NOV[0])
    shadow = _at(openai_rows[:1], NOV[1])
    url = _ledger(tmp_path, placed)
    truth = _truth(placed, scope="proj_main", key_id="key_main") + _truth(shadow, scope="proj_x", key_id="key_x")
    with FakeAdminAPI("openai", truth, NOW) as fake:
        result = _run(fake, url, keys={})
    assert {(c.scope, c.key_id) for c in result.cells} == {(None, None)}
    assert result.unexplained == _sum(shadow)
    assert [(s.scope, s.key_id) for s in result.sources()] == [("proj_x", "key_x")]


# -- retries, partial fetches, bad input --------------------------------------------------------------------------
def test_429_waits_retry_after_and_5xx_is_retried(openai_rows, tmp_path):
    url = _ledger(tmp_path, _at(openai_rows, NOV[0]))
    waits = []
    with FakeAdminAPI("openai", _truth(_at(openai_rows, NOV[0]), scope="p", key_id="key_main"), NOW,
                      fail=[429, 503, 502], retry_after="7") as fake:
        result = _run(fake, url, sleep=waits.append)
    assert waits[0] == 7.0 and len(waits) == 3 and result.explained_pct == Decimal("100.0")


def test_a_response_cut_short_is_retried_and_a_cut_that_persists_is_an_error(openai_rows, tmp_path):
    """A page whose body stops short of its Content-Length (the connection cut) is retried like any connection
    error; it used to escape as http.client.IncompleteRead, a traceback rather than a ReconcileError."""
    placed = _at(openai_rows, NOV[0])
    url = _ledger(tmp_path, placed)
    waits = []
    with FakeAdminAPI("openai", _truth(placed, scope="p", key_id="key_main"), NOW, fail=["cut"]) as fake:
        result = _run(fake, url, sleep=waits.append)
    assert len(waits) == 1 and result.explained_pct == Decimal("100.0")
    with FakeAdminAPI("openai", [], NOW, fail=["cut"] * 5) as fake:
        with pytest.raises(BillFetchError, match="unreachable after retries"):
            _run(fake, url)


@pytest.mark.parametrize("vendor", ["openai", "anthropic"])
def test_a_redirect_is_not_followed_so_the_admin_key_goes_nowhere_else(openai_rows, tmp_path, vendor):
    """A --base-url (a proxy, a gateway) answering 3xx: urllib would follow it with the key's header
    (Authorization / x-api-key) to the address it names. It is an error instead; the other address sees
    nothing."""
    from http.server import BaseHTTPRequestHandler

    from servers import loopback_server

    seen = []

    class Elsewhere(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            seen.append(dict(self.headers))
            self.send_response(500)
            self.end_headers()

        def log_message(self, *args):
            pass

    url = _ledger(tmp_path, _at(openai_rows, NOV[0]))
    with loopback_server(Elsewhere) as elsewhere:
        with FakeAdminAPI(vendor, [], NOW, fail=[302],
                          redirect_to=f"http://localhost:{elsewhere.server_address[1]}/collect") as fake:
            with pytest.raises(BillFetchError, match=r"redirected \(HTTP 302\); a redirect is not followed") as e:
                _run(fake, url, vendor=vendor)
    assert seen == [] and ADMIN_KEY not in str(e.value)


def test_days_in_the_summary():
    from aicost.reconcile.result import _day_span

    assert _day_span(["2026-11-12", "2026-11-13", "2026-11-14"]) == "Nov 12-14"
    assert _day_span(["2026-11-03", "2026-11-28"]) == "Nov 3, Nov 28"
    assert _day_span(["2026-11-30", "2026-12-01"]) == "Nov 30-Dec 1"


def test_retry_after_as_seconds_or_http_date():
    from email.utils import format_datetime

    from aicost.reconcile.http import _retry_after

    assert _retry_after("3", 1) == 3.0 and _retry_after(None, 2) == 4.0 and _retry_after("soon", 1) == 2.0
    later = datetime.now(UTC) + timedelta(seconds=600)
    assert 0 < _retry_after(format_datetime(later, usegmt=True), 1) <= 600
    assert _retry_after(format_datetime(datetime.now(UTC) - timedelta(seconds=60), usegmt=True), 1) == 0


@pytest.mark.parametrize("fail", [[503] * 5, [429] * 9, [400]])
def test_a_report_that_cannot_be_fetched_completely_is_an_error_never_a_short_bill(openai_rows, tmp_path, fail):
    url = _ledger(tmp_path, _at(openai_rows, NOV[0]))
    with FakeAdminAPI("openai", [], NOW, fail=fail) as fake:
        with pytest.raises(BillFetchError, match="openai: /v1/organization/usage/completions failed with HTTP") as e:
            _run(fake, url)
    assert ADMIN_KEY not in str(e.value)


def test_has_more_without_a_cursor_is_an_error(openai_rows, tmp_path, monkeypatch):
    url = _ledger(tmp_path, _at(openai_rows, NOV[0]))
    with FakeAdminAPI("openai", [], NOW, page_size=3) as fake:
        original = fake._page
        monkeypatch.setattr(fake, "_page", lambda *a: {**original(*a), "next_page": None})
        with pytest.raises(BillFetchError, match="has_more without a next_page"):
            _run(fake, url)


@pytest.mark.parametrize("vendor", ["openai", "anthropic"])
@pytest.mark.parametrize("damage", ["no bucket times", "not an amount", "a result that is no object",
                                    "a token count as text", "a token count that is no whole number"])
def test_a_page_not_in_the_documented_shape_is_a_failed_fetch(vendor, damage, tmp_path, monkeypatch):
    """Valid JSON in another shape (a bucket without its times, an amount that is no number, a result that is no
    object, a token count that is no whole number) is a failed fetch, as invalid JSON is: BillFetchError, exit
    status 2. It was a KeyError or a decimal error: a traceback and exit status 1; a token count of "12" or 1.5 was
    read as 0, the vendor's tokens gone from the comparison."""
    url = _ledger(tmp_path, [])
    spends = [Spend(datetime(2026, 11, 3, 9, tzinfo=UTC), "gpt-4o-2024-08-06", "proj_a", "key_main", 100, 10,
                    cost_parts={"input": Decimal("0.01")})]
    with FakeAdminAPI(vendor, spends, NOW) as fake:
        original = fake._page

        def damaged(*a):
            page = original(*a)
            for bucket in page["data"]:
                if damage == "no bucket times":
                    for key in ("start_time", "starting_at"):
                        bucket.pop(key, None)
                for result in bucket.get("results") or ():
                    if damage == "not an amount":
                        if isinstance(result.get("amount"), dict):
                            result["amount"]["value"] = "n/a"
                        elif "amount" in result:
                            result["amount"] = "n/a"
                    for field in ("input_tokens", "uncached_input_tokens"):  # a usage result (either vendor)
                        if field in result and damage == "a token count as text":
                            result[field] = str(result[field])
                        elif field in result and damage == "a token count that is no whole number":
                            result[field] = result[field] + 0.5
                if damage == "a result that is no object" and bucket.get("results"):
                    bucket["results"] = ["oops"]
            return page

        monkeypatch.setattr(fake, "_page", damaged)
        with pytest.raises(BillFetchError, match=f"{vendor}: .* not in the shape documented"):
            _run(fake, url, vendor=vendor)
        monkeypatch.setenv("OPENAI_ADMIN_KEY", ADMIN_KEY)
        monkeypatch.setenv("ANTHROPIC_ADMIN_KEY", ADMIN_KEY)
        err = io.StringIO()
        assert main(["reconcile", "--vendor", vendor, "--period", "2026-11", "--ledger", url, "--base-url", fake.url],
                    out=io.StringIO(), err=err) == 2
        assert "not in the shape documented" in err.getvalue()


def test_cli_refuses_a_state_file_it_cannot_use_before_fetching(tmp_path, monkeypatch):
    """--webhook with a --state that cannot be used was a sqlite3 traceback (exit status 1) after the bill was
    fetched and the alert found: refused naming --state, exit status 2, before any request."""
    monkeypatch.setenv("OPENAI_ADMIN_KEY", ADMIN_KEY)
    url = _ledger(tmp_path, [])
    with FakeAdminAPI("openai", [], NOW) as fake:
        err = io.StringIO()
        assert main(["reconcile", "--vendor", "openai", "--period", "2026-11", "--ledger", url, "--base-url",
                     fake.url, "--alert-above", "0", "--webhook", "http://127.0.0.1:9/hook", "--state",
                     str(tmp_path / "no-such-dir" / "alerts.db")], out=io.StringIO(), err=err) == 2
        assert fake.requests == []
    assert "--state: cannot use the alert state file" in err.getvalue()


@pytest.mark.parametrize("content, named", [
    ('{"key_a": "0123456789abcdef", "key_a": "fedcba9876543210"}', "key 'key_a' given twice"),
    ('["key_a"]', "expected a JSON object"),
    ('{"key_a": ', "invalid JSON"),
])
def test_a_key_map_given_a_key_twice_or_malformed_is_refused_before_fetching(content, named, tmp_path,
                                                                             monkeypatch):
    """A key mapped twice to two fingerprints was read as the last one, silently: that key's spend compared
    against another team's calls. Refused naming --key-map, exit status 2, before any request."""
    monkeypatch.setenv("OPENAI_ADMIN_KEY", ADMIN_KEY)
    url = _ledger(tmp_path, [])
    key_map = tmp_path / "keys.json"
    key_map.write_text(content)
    with FakeAdminAPI("openai", [], NOW) as fake:
        err = io.StringIO()
        assert main(["reconcile", "--vendor", "openai", "--period", "2026-11", "--ledger", url, "--base-url",
                     fake.url, "--key-map", str(key_map)], out=io.StringIO(), err=err) == 2
        assert fake.requests == []
    assert "--key-map" in err.getvalue() and named in err.getvalue(), err.getvalue()


def test_bad_input_gets_a_clear_error(openai_rows, tmp_path):
    url = _ledger(tmp_path, _at(openai_rows, NOV[0]))
    with FakeAdminAPI("openai", [], NOW) as fake:
        with pytest.raises(AdminKeyMissing, match="OPENAI_ADMIN_KEY is not set"):
            reconcile("openai", "2026-11", url, base_url=fake.url, now=NOW, environ={})
        with pytest.raises(AdminKeyRejected, match="the key in OPENAI_ADMIN_KEY was refused \\(401.*admin key") as e:
            reconcile("openai", "2026-11", url, base_url=fake.url, now=NOW,
                      environ={"OPENAI_ADMIN_KEY": "sk-proj-not-an-admin-key-123"})
        assert "sk-proj-not-an-admin-key-123" not in str(e.value)
        with pytest.raises(ConfigurationError, match="period: January 2027 starts in the future"):
            _run(fake, url, period="2027-01")
    with pytest.raises(ConfigurationError, match="unknown vendor 'gemini'; supported: anthropic, openai"):
        reconcile("gemini", "2026-11", url, now=NOW, environ={})


@pytest.mark.parametrize("threshold", ["abc", float("nan"), "NaN", float("inf"), "-5", -5])
def test_an_alert_threshold_that_is_no_amount_is_refused_naming_it(threshold, tmp_path):
    """``reconcile(alert_threshold="abc")`` raised decimal's InvalidOperation, and NaN was taken (no amount exceeds
    it: the alert silently off), as was -5 (every run alerts): a ConfigurationError naming the argument, before
    anything is fetched, as the CLI refuses such an --alert-above."""
    url = _ledger(tmp_path, [])
    with FakeAdminAPI("openai", [], NOW) as fake:
        with pytest.raises(ConfigurationError, match="alert_threshold"):
            _run(fake, url, alert_threshold=threshold, on_unexplained=lambda alert: None)
        assert fake.requests == []


def test_money_that_agrees_while_the_tokens_do_not_is_never_matched():
    """docs/reconcile.md: a cell is matched when the money agrees *and* the tokens do, where the vendor reports
    them. A cell whose money agreed to the cent while its tokens did not (calls missing on one side, their cost made
    up by a price on the other) was "matched", and hidden from the cells that did not match. It is unexplained
    (more tokens on the bill, named as the vendor names them) or over-attributed (more in the ledger), for $0."""
    from aicost.ledger.row import LedgerRow
    from aicost.reconcile.compare import compare
    from aicost.reconcile.result import Reconciliation
    from aicost.reconcile.vendors import OPENAI, TOKEN_KEYS, Bill, CostLine, UsageLine

    day, amount = "2026-11-03", Decimal("12.50")
    call = LedgerRow(span_id="a" * 16, kind="call", time=datetime(2026, 11, 3, 9, tzinfo=UTC), provider="openai",
                     request_model="gpt-4o", input_tokens=1_000_000, output_tokens=0, cost=amount, price_known=True)

    def reconciled(bill_tokens):
        tokens = {**dict.fromkeys(TOKEN_KEYS, 0), "input_tokens": bill_tokens}
        bill = Bill(usage=[UsageLine(day, "gpt-4o", None, None, tokens)],
                    costs=[CostLine(day, "gpt-4o", None, None, amount)])
        cells = compare(OPENAI, bill, [call], key_map=None, now=NOW, tolerances=Tolerances())
        return Reconciliation(vendor="openai", start=datetime(2026, 11, 1, tzinfo=UTC),
                              end=datetime(2026, 12, 1, tzinfo=UTC), label="November 2026", cells=cells,
                              tolerances=Tolerances(), key_map_used=False, scope_name="project")

    [cell] = reconciled(1_000_000).cells  # the same money and the same tokens: matched
    assert cell.status == "matched"
    more_billed = reconciled(3_000_000)
    [cell] = more_billed.cells
    assert (cell.status, cell.difference) == ("unexplained", 0)
    [source] = more_billed.sources()
    assert (source.day, source.model, source.amount, source.surplus_tokens) == (day, "gpt-4o", 0, 2_000_000)
    assert "1 of 1" in render_table(more_billed) and more_billed.matched == amount
    [cell] = reconciled(400_000).cells
    assert (cell.status, cell.difference) == ("over_attributed", 0)


# -- the command line ----------------------------------------------------------------------------------------------
def test_cli_table_csv_json_and_the_alert_exit_status(openai_rows, tmp_path, monkeypatch):
    from aicost.cli import main

    placed = _at(openai_rows, *NOV[:2])
    url = _ledger(tmp_path, placed)
    shadow = _at(openai_rows[:1], NOV[1])
    truth = _truth(placed, scope="proj_main", key_id="key_main") + _truth(shadow, scope="proj_x", key_id="key_x")
    monkeypatch.setenv("OPENAI_ADMIN_KEY", ADMIN_KEY)
    monkeypatch.setenv("APP_KEY", OPENAI_KEY)
    outputs = {}
    with FakeAdminAPI("openai", truth, datetime.now(UTC)) as fake:
        for fmt in ("table", "csv", "json"):
            out, err = io.StringIO(), io.StringIO()
            code = main(["reconcile", "--vendor", "openai", "--period", "2026-11", "--ledger", url, "--key",
                         "key_main=APP_KEY", "--base-url", fake.url, "--format", fmt, "--alert-above", "0.000001"],
                        out=out, err=err)
            assert code == 3 and "ALERT unexplained openai spend" in err.getvalue(), err.getvalue()
            assert ADMIN_KEY not in out.getvalue() + err.getvalue() and OPENAI_KEY not in out.getvalue()
            outputs[fmt] = out.getvalue()
        # the alert line writes money in its one form (no exponent, no trailing zeros), in any decimal context
        with decimal.localcontext(decimal.Context(capitals=0)):
            err = io.StringIO()
            main(["reconcile", "--vendor", "openai", "--period", "2026-11", "--ledger", url, "--key",
                  "key_main=APP_KEY", "--base-url", fake.url, "--alert-above", "0.00000010"], out=io.StringIO(),
                 err=err)
    data = json.loads(outputs["json"])
    assert f"spend {format_usd(_sum(shadow))} USD exceeds 0.0000001 USD:" in err.getvalue(), err.getvalue()
    assert Decimal(data["totals"]["unexplained_usd"]) == _sum(shadow)
    assert data["unexplained"][0]["key_id"] == "key_x" and data["tolerances"]["day_boundaries"] == "UTC"
    assert outputs["csv"].splitlines()[0].startswith("day,model,scope,key_id,status,bill_usd")
    table = outputs["table"].splitlines()
    assert table[0] == data["summary"]
    assert len({len(line) for line in table[3:10]}) == 1  # the totals line up (money right-aligned)
    header = next(i for i, line in enumerate(table) if line.strip().startswith("day") and "status" in line)
    assert "did not match: 1 of 5" in table[header - 1]  # matched cells are left to CSV / JSON
    assert len(table[header]) == len(table[header + 1]) and "unexplained" in table[header + 1]


def _alert_setup(openai_rows, tmp_path, monkeypatch) -> tuple[str, list]:
    """A ledger of Nov 1's calls (proj_main, key_main) and a bill with them and one more call on Nov 2 (proj_x,
    key_x): spend the ledger does not explain; the admin and the app key in the environment. Returns the ledger's
    URL and the bill."""
    placed = _at(openai_rows, NOV[0])
    url = _ledger(tmp_path, placed)
    truth = (_truth(placed, scope="proj_main", key_id="key_main")
             + _truth(_at(openai_rows[:1], NOV[1]), scope="proj_x", key_id="key_x"))
    monkeypatch.setenv("OPENAI_ADMIN_KEY", ADMIN_KEY)
    monkeypatch.setenv("APP_KEY", OPENAI_KEY)
    return url, truth


def test_cli_alert_goes_through_the_alert_sink_once(openai_rows, tmp_path, monkeypatch):
    url, truth = _alert_setup(openai_rows, tmp_path, monkeypatch)
    with _webhook() as (hook_url, posts), FakeAdminAPI("openai", truth, datetime.now(UTC)) as fake:
        for _ in range(2):  # a daily cron: the second run does not notify again
            err = io.StringIO()
            code = main(["reconcile", "--vendor", "openai", "--period", "2026-11", "--ledger", url, "--key",
                         "key_main=APP_KEY", "--base-url", fake.url, "--alert-above", "0", "--webhook", hook_url,
                         "--state", str(tmp_path / "alerts.db")], out=io.StringIO(), err=err)
            assert code == 3
    assert len(posts) == 1 and "Unexplained openai spend" in posts[0]["text"] and "proj_x" in posts[0]["text"]
    assert "1 already sent before" in err.getvalue()


@contextlib.contextmanager
def _webhook():
    """A webhook receiver on 127.0.0.1 whose URL ends in a secret, as a Slack webhook's does; yields the URL and
    the JSON bodies POSTed to it."""
    import http.server

    from servers import loopback_server

    posts = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            posts.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    with loopback_server(Hook) as hook:
        yield f"http://127.0.0.1:{hook.server_address[1]}/services/T000/B000/s3cret", posts


def test_cli_alert_goes_to_the_webhooks_of_a_webhook_file_never_to_aicost_alerts_variable(openai_rows, tmp_path,
                                                                                         monkeypatch):
    """--webhook URL put the webhook's secret in `ps` and the crontab. --webhook-file PATH (as aicost alerts')
    reads it from a file; the URL is in no argument and no output. $AICOST_ALERT_WEBHOOK, set for aicost alerts,
    is not read: it would turn this command's delivery on unasked."""
    url, truth = _alert_setup(openai_rows, tmp_path, monkeypatch)
    with _webhook() as (hook_url, posts), _webhook() as (env_url, env_posts):
        monkeypatch.setenv("AICOST_ALERT_WEBHOOK", env_url)
        hooks = tmp_path / "hooks"
        hooks.write_text(f"# the finance channel\n  {hook_url}  \n")
        with FakeAdminAPI("openai", truth, datetime.now(UTC)) as fake:
            for _ in range(2):  # a daily cron: the second run does not notify again
                argv = ["reconcile", "--vendor", "openai", "--period", "2026-11", "--ledger", url, "--key",
                        "key_main=APP_KEY", "--base-url", fake.url, "--alert-above", "0", "--webhook-file",
                        str(hooks), "--state", str(tmp_path / "alerts.db")]
                out, err = io.StringIO(), io.StringIO()
                assert main(argv, out=out, err=err) == 3, err.getvalue()
                assert not any("s3cret" in arg for arg in argv)
                assert "s3cret" not in out.getvalue() + err.getvalue()
            # no --webhook nor --webhook-file: nothing is delivered, whatever the environment says
            argv = argv[:argv.index("--webhook-file")] + ["--state", str(tmp_path / "other.db")]
            assert main(argv, out=io.StringIO(), err=io.StringIO()) == 3
    assert len(posts) == 1 and "Unexplained openai spend" in posts[0]["text"] and "proj_x" in posts[0]["text"]
    assert "1 already sent before" in err.getvalue()
    assert env_posts == []


@pytest.mark.parametrize("content, message", [
    (None, "cannot read it (No such file or directory)"),
    ("# nothing yet\n", "no URL in it"),
    ("http://127.0.0.1:9/ok\nhtps://hooks.example/services/T000/B000/s3cret\n",
     "line 2: WebhookSink(url): expected an http:// or https:// URL"),
    ("url", "got a URL"),  # the URL given where the file's path belongs
], ids=["missing", "empty", "unsendable", "a-url"])
def test_cli_refuses_a_webhook_file_it_cannot_use_before_fetching_never_quoting_a_url(content, message, tmp_path,
                                                                                     monkeypatch):
    monkeypatch.setenv("OPENAI_ADMIN_KEY", ADMIN_KEY)
    path = str(tmp_path / "hooks")
    if content == "url":
        path = "https://hooks.example/services/T000/B000/s3cret"
    elif content is not None:
        (tmp_path / "hooks").write_text(content)
    with FakeAdminAPI("openai", [], NOW) as fake:
        out, err = io.StringIO(), io.StringIO()
        assert main(["reconcile", "--vendor", "openai", "--period", "2026-11", "--ledger", _ledger(tmp_path, []),
                     "--base-url", fake.url, "--alert-above", "0", "--webhook-file", path, "--state",
                     str(tmp_path / "alerts.db")], out=out, err=err) == 2
        assert fake.requests == []
    assert "aicost reconcile: --webhook-file" in err.getvalue() and message in err.getvalue(), err.getvalue()
    assert "s3cret" not in out.getvalue() + err.getvalue()


def test_cli_help_names_the_webhook_file_and_the_variable_it_does_not_read(capsys):
    with pytest.raises(SystemExit):
        main(["reconcile", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--webhook-file PATH" in text and "AICOST_ALERT_WEBHOOK is not read" in text


def test_the_dashboard_shows_a_reconciliation_section(openai_rows, tmp_path, monkeypatch):
    pytest.importorskip("plotly")
    pytest.importorskip("statsmodels")
    from aicost.cli import main

    placed = _at(openai_rows, NOV[0])
    url = _ledger(tmp_path, placed)
    truth = (_truth(placed, scope="proj_main", key_id="key_main")
             + _truth(_at(openai_rows[:1], NOV[1]), scope="proj_<b>x", key_id="key_x"))
    monkeypatch.setenv("OPENAI_ADMIN_KEY", ADMIN_KEY)
    monkeypatch.setenv("APP_KEY", OPENAI_KEY)
    out = io.StringIO()
    with FakeAdminAPI("openai", truth, datetime.now(UTC)) as fake:
        assert main(["reconcile", "--vendor", "openai", "--period", "2026-11", "--ledger", url, "--key",
                     "key_main=APP_KEY", "--base-url", fake.url, "--format", "json"], out=out) == 0
    (tmp_path / "rec.json").write_text(out.getvalue())
    page = tmp_path / "spend.html"
    assert main(["dashboard", "--ledger", url, "--period", "2026-11", "--out", str(page), "--reconciliation",
                 str(tmp_path / "rec.json")], out=io.StringIO(), err=io.StringIO()) == 0
    html = page.read_text()
    summary = json.loads(out.getvalue())["summary"]
    import html as html_lib

    assert "Reconciliation with openai&#x27;s bill, November 2026" in html and html_lib.escape(summary) in html
    assert "proj_&lt;b&gt;x" in html and "proj_<b>x" not in html  # vendor names are escaped
    assert "key_x" in html


def test_cli_refuses_unknown_vendor_and_missing_key(tmp_path, monkeypatch):
    from aicost.cli import main

    monkeypatch.delenv("ANTHROPIC_ADMIN_KEY", raising=False)
    err = io.StringIO()
    assert main(["reconcile", "--vendor", "bedrock"], out=io.StringIO(), err=err) == 2
    assert "supported: anthropic, openai" in err.getvalue()
    err = io.StringIO()
    assert main(["reconcile", "--vendor", "anthropic", "--period", "2026-11"], out=io.StringIO(), err=err) == 2
    assert "ANTHROPIC_ADMIN_KEY is not set" in err.getvalue()
    for lag in ("nan", "inf", "-1"):  # argparse takes 'nan' and 'inf' as floats; timedelta raised on them
        err = io.StringIO()
        assert main(["reconcile", "--vendor", "openai", "--lag-hours", lag], out=io.StringIO(), err=err) == 2
        assert "--lag-hours: must be a non-negative number of hours" in err.getvalue()


# -- tagging calls -------------------------------------------------------------------------------------------------
def test_calls_carry_the_project_and_a_key_fingerprint_never_the_key(instrumented, replay_server, tmp_path):
    url = f"sqlite:///{tmp_path / 'tagged.db'}"
    aicost.instrument(tracer_provider=instrumented.tracer_provider, ledger=url)
    try:
        client = openai.OpenAI(api_key=OPENAI_KEY, organization="org_acme", project="proj_main",
                               base_url=replay_server.openai_base_url, max_retries=0,
                               http_client=openai.DefaultHttpx2Client(verify=_ssl_context()))
        replay_server.enqueue(Reply.from_recording(load_recording(OPENAI_RECORDINGS[0])))
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        assert ledger_writer.active().flush()
    finally:
        aicost.uninstrument()
    span = instrumented.span_exporter.get_finished_spans()[-1]
    assert span.attributes["aicost.client.api_key.fingerprint"] == key_fingerprint(OPENAI_KEY)
    assert span.attributes["aicost.client.organization"] == "org_acme"
    assert span.attributes["aicost.client.project"] == "proj_main"
    assert OPENAI_KEY not in repr(dict(span.attributes))
    with open_store(url, create=False) as store:
        row, = store.rows(datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))
    assert (row.vendor_project, row.api_key_fingerprint) == ("proj_main", key_fingerprint(OPENAI_KEY))
    assert OPENAI_KEY not in json.dumps(row.to_dict())


def test_the_identity_follows_a_client_whose_key_organization_or_project_changes():
    # Remembered per client while the key, organization and project are the same objects: a client given another
    # key (openai refreshes one from a provider) is named by that key from its next call on.
    from types import SimpleNamespace

    from aicost.integrations.identity import client_identity

    client = SimpleNamespace(api_key="sk-one", organization="org_a", project=None)
    resource = SimpleNamespace(_client=client)
    first = client_identity(resource)
    assert first == {"aicost.client.api_key.fingerprint": key_fingerprint("sk-one"), "aicost.client.organization": "org_a"}
    first["aicost.budget.reserved_usd"] = "1"  # a budget adds to the call's own dict: never to the next call's
    assert client_identity(resource) == {"aicost.client.api_key.fingerprint": key_fingerprint("sk-one"),
                                         "aicost.client.organization": "org_a"}
    client.api_key = "sk-two"
    assert client_identity(resource)["aicost.client.api_key.fingerprint"] == key_fingerprint("sk-two")
    client.organization, client.project = None, "proj_b"
    assert client_identity(resource) == {"aicost.client.api_key.fingerprint": key_fingerprint("sk-two"),
                                         "aicost.client.project": "proj_b"}


def test_the_fingerprint_is_stable_and_documented():
    # HMAC-SHA256(key=b"aicost api-key fingerprint v1", msg=key)[:16 hex]: the same in every process and version
    import hashlib
    import hmac

    expected = hmac.new(b"aicost api-key fingerprint v1", b"sk-test", hashlib.sha256).hexdigest()[:16]
    assert key_fingerprint("sk-test") == expected == "1cead1394fb41f48"
    assert key_fingerprint("sk-test2") != expected


def test_csv_text_cells_never_start_a_formula():
    """A model, project or key id comes from the vendor's report: a CSV text cell a spreadsheet would run as a
    formula gets a leading '; the money, a negative difference included, stays a number."""
    from aicost.reconcile.compare import Cell
    from aicost.reconcile.render import render_csv
    from aicost.reconcile.result import Reconciliation

    cell = Cell(day="2026-11-02", model="=1+1", scope="@proj", key_id="-key", bill_cost=Decimal("1"),
                ledger_cost=Decimal("1.5"), difference=Decimal("-0.5"), status="over_attributed")
    r = Reconciliation("openai", datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC), "2026-11",
                       [cell], Tolerances(), True, "project")
    (line,) = csv.DictReader(io.StringIO(render_csv(r)))
    assert (line["day"], line["model"], line["scope"], line["key_id"]) == ("2026-11-02", "'=1+1", "'@proj", "'-key")
    assert (line["bill_usd"], line["ledger_usd"], line["difference_usd"]) == ("1", "1.5", "-0.5")


@pytest.mark.parametrize("context", [decimal.Context(prec=4), decimal.Context(rounding=decimal.ROUND_DOWN),
                                     decimal.Context(traps=[decimal.Inexact, decimal.InvalidOperation])],
                         ids=["prec=4", "ROUND_DOWN", "Inexact trapped"])
def test_the_reconciliation_reads_the_same_in_any_decimal_context_of_the_host(openai_rows, tmp_path, context):
    """reconcile() runs in host code, whose thread may run its own decimal context: its cells, totals, implied
    rates, sources of unexplained spend and every rendering are as in the default context. The bill here is dear
    (the ledger's calls at 1,234.5678 times their price, a shadow key at 987.654321 times). Before, at 4 digits
    the table could not round its amounts (InvalidOperation), ROUND_DOWN changed the cells' implied rates and
    ratios, and a trapped Inexact failed the reconciliation."""
    placed = _at(openai_rows, *NOV)
    url = _ledger(tmp_path, placed)
    shadow = _at(openai_rows, *NOV[1:4])
    truth = (_truth(placed, scope="proj_main", key_id="key_main", cost_scale=Decimal("1234.5678"))
             + _truth(shadow, scope="proj_x", key_id="key_x", cost_scale=Decimal("987.654321")))
    with FakeAdminAPI("openai", truth, NOW) as fake:
        def read():
            result = _run(fake, url, alert_threshold="1")
            return (result.cells, result.sources(), result.top("model"), result.bill_total, result.ledger_total,
                    result.matched, result.explained_pct, result.over_attributed, result.drift, result.unexplained,
                    render_table(result), render_json(result), render_csv(result))

        expected = read()
        with decimal.localcontext(context):
            assert read() == expected
    assert {c.status for c in expected[0]} == {"price_drift", "unexplained"} and len(expected[1]) == 6


# -- the vendor's API trickling its answer ---------------------------------------------------------------------------
@pytest.mark.parametrize("answer", [
    b"",
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 999\r\n\r\n",
    b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: 999\r\n\r\n"],
    ids=["no-status", "page-body", "error-body"])
def test_a_report_api_trickling_its_answer_is_cut_at_the_timeout_with_a_clear_error(answer):
    """``timeout_s`` bounded each read of the socket, not the request: a vendor API (or a proxy in front of it)
    sending a byte now and then, before its status line, in a page's body or in an error's body, held
    ``aicost reconcile`` for ever. It is each request's whole deadline: every try ends at it, the tries stay
    the documented few, and the fetch fails naming the deadline (never the key)."""
    from aicost.reconcile.http import Fetcher

    from servers import trickling_server

    with trickling_server(answer) as (url, connections):
        fetcher = Fetcher(headers={"Authorization": f"Bearer {ADMIN_KEY}"}, key_env="OPENAI_ADMIN_KEY",
                          vendor="openai", timeout_s=0.5, sleep=lambda s: None)
        outcome = []

        def fetch():
            try:
                list(fetcher.pages(f"{url}/v1/organization/costs", [("bucket_width", "1d")]))
            except Exception as exc:  # noqa: BLE001 - what the fetch ended with is the assertion
                outcome.append(exc)

        fetching = threading.Thread(target=fetch, daemon=True)
        fetching.start()
        fetching.join(60)  # generous: 5 tries of 0.5 s, on a busy machine
        assert not fetching.is_alive(), "the fetch outlived its timeout"
    assert len(outcome) == 1 and isinstance(outcome[0], BillFetchError), outcome
    message = str(outcome[0])
    assert "openai: /v1/organization/costs" in message and "no complete answer within 0.5 s" in message, message
    assert ADMIN_KEY not in message
    assert len(connections) == fetcher.max_retries + 1 == fetcher.requests


@pytest.mark.parametrize("given", [["--webhook"], ["--webhook-file"], ["--webhook", "--webhook-file"]])
def test_cli_refuses_a_webhook_without_alert_above_before_fetching(given, tmp_path, monkeypatch):
    """--webhook or --webhook-file without --alert-above was accepted, the bill fetched and compared, exit status 0,
    and nothing was ever sent: no amount raises the alert (docs/reconcile.md names no default threshold). Refused,
    naming the options, exit status 2, before any request; the webhook's URL is not quoted."""
    monkeypatch.setenv("OPENAI_ADMIN_KEY", ADMIN_KEY)
    hooks = tmp_path / "hooks"
    hooks.write_text("http://127.0.0.1:9/services/T000/B000/s3cret\n")
    values = {"--webhook": "http://127.0.0.1:9/services/T000/B000/s3cret", "--webhook-file": str(hooks)}
    with FakeAdminAPI("openai", [], NOW) as fake:
        out, err = io.StringIO(), io.StringIO()
        argv = ["reconcile", "--vendor", "openai", "--period", "2026-11", "--ledger", _ledger(tmp_path, []),
                "--base-url", fake.url, "--state", str(tmp_path / "alerts.db")]
        for option in given:
            argv += [option, values[option]]
        assert main(argv, out=out, err=err) == 2
        assert fake.requests == []
    assert out.getvalue() == ""
    assert err.getvalue().startswith(f"aicost reconcile: {' and '.join(given)} "), err.getvalue()
    assert "--alert-above USD" in err.getvalue() and "s3cret" not in err.getvalue()
    assert not (tmp_path / "alerts.db").exists()  # refused before the state file is made


@pytest.mark.parametrize("amount", ["", " ", "five"])
def test_cli_refuses_an_alert_above_that_is_no_amount_before_fetching(amount, tmp_path, monkeypatch):
    """``--alert-above ""`` (an unset shell variable: ``--alert-above "$LIMIT"``) turned the alert off without a
    word, the run exiting 0 however much spend was unexplained; a text that is no amount is refused, naming the
    option, exit status 2, before any request."""
    monkeypatch.setenv("OPENAI_ADMIN_KEY", ADMIN_KEY)
    with FakeAdminAPI("openai", [], NOW) as fake:
        out, err = io.StringIO(), io.StringIO()
        argv = ["reconcile", "--vendor", "openai", "--period", "2026-11", "--ledger", _ledger(tmp_path, []),
                "--base-url", fake.url, "--alert-above", amount]
        assert main(argv, out=out, err=err) == 2
        assert fake.requests == []
    assert "--alert-above: not a number" in err.getvalue(), err.getvalue()
