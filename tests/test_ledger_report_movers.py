"""Top movers on real SQLite and PostgreSQL ledgers equal the plain computation from the rows written (each key's
costs summed in Python, every change ranked by size, ties by key as text), whichever way the store summed the
costs: SQLite's integer sums, or exact text where an amount has more than 12 decimals, is a refund or is over
$1 million; for a period that has ended and one under way, by a pair of keys (the pair cells), one key (the
rollups) and three (the raw rows). Written by a helper of the eighth session."""

from __future__ import annotations

import decimal
import random
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from aicost.ledger import CALL, LedgerRow, open_store
from aicost.ledger.report import Mover, Period, build_report, parse_period, render_table
from aicost.pricing.money import format_usd, sum_usd

from ledger_helpers import sum_all_pairs

DAY = datetime(2026, 11, 9, tzinfo=timezone.utc)  # the previous week; this week from DAY + 7 days
NOW = DAY + timedelta(days=13, hours=14, minutes=30)  # the last day of this week: `7d` is under way
# Whole numbers of pico-dollars under $1 million (SQLite's integer path), and amounts it cannot hold.
PLAIN = ["0.000123456789", "12.5", "3", "0.1", "7.000000000001", "41.25"]
ODD = ["0.0000000000001", "-0.5", "-2.000000000000001", "3.14159265358979323846"]


def _rows(odd: bool) -> list[LedgerRow]:
    """Two weeks and a day of calls by team, customer and user (each user one team and one customer): random
    costs (a user's week changes by less than $1,000), and changes made to rank: four large (a user who spent only
    in the previous week, one who spent only on the last day), seven of exactly $5,000 either way (ties across
    the limit of 5). ``odd``: amounts past 12 decimals, refunds, and amounts over $1 million among them."""
    rng = random.Random(15 if odd else 7)
    pool = PLAIN + ODD if odd else PLAIN
    spent: list[tuple[int, int, str, str, str, str]] = []  # (day, hour, team, customer, user, cost)
    for day in range(14):
        for user in range(12):
            for _ in range(rng.randrange(3)):
                spent.append((day, rng.randrange(24), f"t{user % 3}", f"c{user % 2}", f"u{user:02d}",
                              rng.choice(pool)))
    spent += [(1, 9, "t0", "c0", "gone", "30075.25"), (2, 9, "t0", "c0", "gone", "30075.25")]  # previous week only
    spent += [(2, 11, "t1", "c1", "shrank", "45050.5"), (9, 11, "t1", "c1", "shrank", "1")]
    spent += [(8, 11, "t1", "c1", "grew", "1500000" if odd else "90000"), (13, 10, "t1", "c1", "grew", "77.25")]
    spent += [(13, 9, "t0", "c1", "today", "2500000" if odd else "600000")]  # the last day only: not compared while it is under way
    for i, name in enumerate("abcdefg"):  # +5000 or -5000 each
        base = ["10000", "1234567.25" if odd else "20000.5", "5000.3", "-0.5" if odd else "6000", "7000", "8000",
                "9000"][i]
        spent.append((3, 10, "t2", "c0", f"tie-{name}", base))
        spent.append((10, 10, "t2", "c0", f"tie-{name}", str(Decimal(base) + (5000 if i % 2 else -5000))))
    return [LedgerRow(span_id=f"{i:016x}", kind=CALL, time=DAY + timedelta(days=d, hours=h, minutes=i % 60),
                      provider="openai", request_model="gpt-4o", cost=Decimal(cost), team=team, customer=customer,
                      user=user)
            for i, (d, h, team, customer, user, cost) in enumerate(spent)]


def _plain_movers(rows: list[LedgerRow], period: Period, keys: tuple[str, ...], limit: int = 5) -> list[Mover]:
    """Top movers computed the plain way from the rows written: the compared part's cost per key against the
    previous period's, every change ranked by its size, ties by the key as text."""
    def costs(p: Period) -> dict[tuple, Decimal]:
        found: dict[tuple, list[Decimal]] = {}
        for r in rows:
            if p.start <= r.time < p.end:
                found.setdefault(tuple(getattr(r, k) for k in keys), []).append(r.cost)
        return {k: sum_usd(v) for k, v in found.items()}

    before, now = costs(period.previous), costs(period.compared)
    movers = [Mover(dict(zip(keys, k)), before.get(k, Decimal(0)), now.get(k, Decimal(0)))
              for k in before.keys() | now.keys()]
    movers = [m for m in movers if m.change]
    movers.sort(key=lambda m: (-abs(m.change), str(m.key)))
    return movers[:limit]


@pytest.mark.parametrize("odd", [False, True], ids=["integer-sums", "odd-amounts"])
def test_top_movers_equal_the_plain_computation_from_the_rows(ledger_url, odd):
    rows = _rows(odd)
    with open_store(ledger_url) as store:
        store.write(rows)
        sum_all_pairs(store)  # the pair report reads cells (SQLite: their integer units)
        under_way = parse_period("7d", now=NOW)
        assert under_way.compared.end == DAY + timedelta(days=13) and under_way.end == DAY + timedelta(days=14)
        ended = Period(DAY + timedelta(days=7), DAY + timedelta(days=14))
        for keys in [("team", "user"), ("user",), ("team", "customer", "user")]:  # pair cells, rollups, raw rows
            for period in (under_way, ended):
                movers = build_report(store, period=period, group_by=keys).movers
                expected = _plain_movers(rows, period, keys)
                assert movers == expected, (keys, period)
                assert len(movers) == 5 and any(m.key["user"].startswith("tie-") for m in movers)
                # in one canonical form, as the costs of the table are
                assert all(str(v) == format_usd(v) for m in movers for v in (m.previous, m.current))
        # what the rows were made for: the last day counts once the week has ended; ties at the limit in key order
        users = {p.label: [m.key["user"] for m in build_report(store, period=p, group_by=("user",)).movers]
                 for p in (under_way, ended)}
        assert users == {"7d": ["grew", "gone", "shrank", "tie-a", "tie-b"],
                         "": ["today", "grew", "gone", "shrank", "tie-a"]}


def test_top_movers_do_not_depend_on_the_callers_decimal_context(ledger_url):
    """build_report is called from host code, whose thread may run a low-precision decimal context: each group's
    change, the compared part's cost (the table less the part not compared) and a Mover's change are exact all
    the same. At 4 digits, 1234567.25 - 1229567.25 came out as 1.235E+6 - 1.230E+6 = 5E+3 plus rounding."""
    rows = _rows(True)
    with open_store(ledger_url) as store:
        store.write(rows)
        sum_all_pairs(store)
        for period in (parse_period("7d", now=NOW), Period(DAY + timedelta(days=7), DAY + timedelta(days=14))):
            for keys in [("team", "user"), ("user",)]:
                expected = _plain_movers(rows, period, keys)
                with decimal.localcontext(decimal.Context(prec=4)):
                    movers = build_report(store, period=period, group_by=keys).movers
                    changes = [(m.change, m.change_pct) for m in movers]
                    table = render_table(report := build_report(store, period=period, group_by=keys))
                assert movers == expected, (keys, period)
                assert changes == [(m.change, m.change_pct) for m in expected]
                assert table == render_table(report)  # the shares and the movers' table as in the default context


def test_movers_ranked_and_shares_rounded_as_in_the_default_context(tmp_path):
    """Sizes of changes and the table's shares do not go through the thread's context either: at a host's 4
    digits abs() made 1234567.5, 1234567.25 and 1234566 one size (ranked by key instead), and format(share,
    ".1f") rounded by the thread's rounding (ROUND_DOWN wrote c's 19.99998...% as 19.9%)."""
    week = Period(DAY + timedelta(days=7), DAY + timedelta(days=14))
    rows = [LedgerRow(span_id=f"{i:016x}", kind=CALL, time=week.start + timedelta(hours=i), provider="openai",
                      request_model="gpt-4o", cost=Decimal(cost), user=user)
            for i, (user, cost) in enumerate([("a", "1234567.25"), ("b", "1234567.5"), ("c", "1234566"),
                                              ("d", "2469134")])]
    with open_store(f"sqlite:///{tmp_path / 'ledger.db'}") as store:
        store.write(rows)
        expected = render_table(build_report(store, period=week, group_by=("user",)))
        assert "40.0%" in expected and "19.9%" not in expected  # c: 1234566 of 6172834.75, 19.99998...%
        for context in (decimal.Context(prec=4), decimal.Context(rounding=decimal.ROUND_DOWN)):
            with decimal.localcontext(context):
                report = build_report(store, period=week, group_by=("user",))
                table = render_table(report)
            assert [m.key["user"] for m in report.movers] == ["d", "b", "a", "c"]
            assert table == expected
