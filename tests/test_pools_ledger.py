"""Pool intervals and the ledger: a database that is down when an interval closes loses nothing (the ledger
writer's spill and replay), and replays write every row exactly once. A real PostgreSQL behind a proxy the test
switches off and on, as tests/test_ledger_writer.py does for call rows."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import aicost
from aicost.ledger import open_store
from aicost.pools import configure_pools, read_intervals
from aicost.pools.ledger import write_interval
from tests.pool_helpers import SimClock
from tests.vendor_server import openai_chat_reply, openai_client

from ledger_helpers import fresh_pg_database
from servers import OutageProxy

MODEL = "acme/llama-3.1-8b-support-ft"
T0 = datetime(2026, 12, 1, tzinfo=timezone.utc)
DAY = (T0, datetime(2026, 12, 2, tzinfo=timezone.utc))


def _counts(url: str) -> tuple[int, int]:
    with open_store(url) as store:
        cur = store._cursor()
        cur.execute("SELECT COUNT(*) FROM aicost_pool_interval")
        (intervals,) = cur.fetchone()
        cur.execute("SELECT COUNT(*), COUNT(DISTINCT span_id) FROM aicost_pool_allocation")
        allocations, distinct = cur.fetchone()
    assert allocations == distinct
    return intervals, allocations


def test_ledger_down_when_an_interval_closes_then_back_rows_appear_exactly_once(instrumented, replay_server, pg_server,
                                                                               spill_dir):
    url = fresh_pg_database(pg_server)
    port = int(url.split(":")[-1].split("/")[0])
    proxy = OutageProxy(port)
    via_proxy = url.replace(f":{port}/", f":{proxy.port}/")
    clock = SimClock(T0.timestamp())
    client = openai_client(replay_server)
    try:
        meter = configure_pools({"chat": {"gpu_hour": "2.50", "gpus": 2, "endpoints": [replay_server.url],
                                          "models": [MODEL], "owner": "ml-platform", "output_weight": 4}},
                                clock=clock, ledger=via_proxy)
        for team, prompt, completion in (("search", 1500, 300), ("support", 3000, 800), ("search", 10, 1)):
            replay_server.enqueue(openai_chat_reply(model=MODEL, prompt_tokens=prompt, completion_tokens=completion))
            with aicost.attribute(team=team):
                client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
        proxy.down()
        clock.now = T0.timestamp() + 3600
        [closed] = meter.close_due()  # the ledger is down as the interval closes
        meter.flush()
        [sink] = meter.sinks
        assert _counts(url) == (0, 0)
        assert list(spill_dir.glob("ledger-spill-*.jsonl"))  # kept on disk, not lost
        proxy.up = True
        meter.flush()  # back: the spill is replayed
        assert _counts(url) == (1, 3)
        assert not list(spill_dir.glob("ledger-spill-*.jsonl"))
        meter.flush()
        with open_store(url) as store:
            write_interval(store, closed)  # the same interval written again (a retried close): nothing doubles
            [stored] = read_intervals(store, "chat", *DAY)
        assert _counts(url) == (1, 3)
        assert (stored.cost, stored.used, stored.idle) == (Decimal(5), closed.used, closed.idle)
        assert sorted(a.final for a in stored.allocations) == sorted(a.final for a in closed.allocations)
        assert sum(a.final for a in stored.allocations) == stored.used == Decimal(5)
        assert sink is meter.sinks[0]
    finally:
        client.close()
        aicost.pools.disable()
        proxy.close()


def test_calls_without_a_span_keep_their_final_cost_in_the_ledger_once(tmp_path):
    from aicost.pools.meter import Allocation, ClosedInterval

    # no OpenTelemetry SDK: the calls have no span id; each still gets a row (POOL@START#N), written once
    allocations = tuple(Allocation("", team, "m", 100, 10, Decimal(140), None, Decimal(final))
                        for team, final in (("search", "1.25"), ("support", "1.25"), ("search", "0.5")))
    interval = ClosedInterval("chat", "ml", "tokens", T0, DAY[0].replace(hour=1), Decimal(5), Decimal(3), Decimal(2),
                              Decimal("0.6"), Decimal(1), Decimal(4), "declared", allocations,
                              utilisation_from="declared capacity")
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    with open_store(url) as store:
        write_interval(store, interval)
        write_interval(store, interval)  # a replay
        [stored] = read_intervals(store, "chat", *DAY)
    assert _counts(url) == (1, 3)
    start = int(T0.timestamp())
    assert sorted(a.span_id for a in stored.allocations) == [f"chat@{start}#{i}" for i in range(3)]
    assert sum(a.final for a in stored.allocations) == stored.used == Decimal(3)
    assert (stored.weights_from, stored.utilisation_from) == ("declared", "declared capacity")


def test_an_intervals_figures_that_are_not_money_are_written_in_the_one_canonical_form(tmp_path):
    """Money was written as canonical decimal text, but the allocation units and the weights with str(): ``150.0``
    for 150 units (the weights scaled back by a power of ten), ``2.5E-7`` for an engine's seconds per prompt token,
    ``0.0250``: one value, several texts in the ledger. And `aicost report --pool --format json` wrote the
    utilisation with str(): ``2E-10``, or ``0.60`` where it is 0.6. Each is written as money is: ``150``,
    ``0.00000025``, ``0.025``; an integral figure as an integer, as the ledger writes token counts."""
    import io
    import json

    from aicost.cli import main
    from aicost.pools.meter import Allocation, ClosedInterval

    allocations = (Allocation("00000000000000a1", "search", "m", 100, 10, Decimal("150.0"), None, Decimal("1E-9")),
                   Allocation("00000000000000a2", "search", "m", 200, 20, Decimal("0.0250"), None, Decimal(0)))
    interval = ClosedInterval("gpu", "ml", "gpu_time", T0, DAY[0].replace(hour=1), Decimal(5), Decimal("1E-9"),
                              Decimal("4.999999999"), Decimal("2E-10"), Decimal("2.5E-7"), Decimal("0.0250"),
                              "engine", allocations, utilisation_from="engine load, 60 samples")
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    with open_store(url) as store:
        write_interval(store, interval)
        units = sorted(u for (u,) in store._fetch("SELECT units FROM aicost_pool_allocation", []))
        [weights] = store._fetch("SELECT input_weight, output_weight FROM aicost_pool_interval", [])
        [stored] = read_intervals(store, "gpu", *DAY)
    assert units == ["0.025", "150"]
    assert tuple(weights) == ("0.00000025", "0.025")
    assert sorted(a.units for a in stored.allocations) == [Decimal("0.025"), Decimal(150)]
    out, err = io.StringIO(), io.StringIO()
    assert main(["report", "--ledger", url, "--pool", "gpu", "--since", "2026-12-01", "--until", "2026-12-02",
                 "--format", "json"], out=out, err=err) == 0, err.getvalue()
    assert json.loads(out.getvalue())["utilisation"] == "0.0000000002"
