"""The ledger's storage on real SQLite and a real PostgreSQL server: schema and versions, idempotent writes, and
spend queries from the rollups that agree to the last digit with sums over the raw rows."""

from __future__ import annotations

import random
import sqlite3
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from aicost._log import forget
from aicost.errors import ConfigurationError
from aicost.ledger import (CALL, FeatureRun, LedgerRow, LedgerSchemaError, LedgerStore, UnknownGroupKey, open_store,
                           spend, totals)
from aicost.ledger import store as store_module
from aicost.ledger.row import CACHE_HIT, REFUSAL, TOKEN_FIELDS
from aicost.ledger.schema import SCHEMA_VERSION
from aicost.ledger.synthetic import Profile, fill

from servers import libpq_settings, pg_service_file, tcp_limits
from ledger_helpers import (DROP_PAIRS, DROP_UNKNOWN_REASON, python_sums, run_sql, sample_periods, spend_sums,
                            sum_all_pairs)


T0 = datetime(2026, 11, 2, 9, 17, 23, tzinfo=timezone.utc)


def _row(i: int, **overrides) -> LedgerRow:
    values = dict(span_id=f"{i:016x}", kind=CALL, time=T0 + timedelta(minutes=7 * i), provider="openai",
                  request_model="gpt-4o-mini", response_model="gpt-4o-mini-2024-07-18", input_tokens=1000 + i,
                  output_tokens=50, cache_read_tokens=256, cost=Decimal("0.000123456789012345") * (i + 1),
                  cost_parts={"input": Decimal("0.0001"), "output": Decimal("0.000023456789012345") * (i + 1)},
                  team=["search", "support", None][i % 3], feature="answer", customer=f"c{i % 5}",
                  tags={"env": "prod"} if i % 2 else {})
    values.update(overrides)
    return LedgerRow(**values)


def test_rows_round_trip_exactly_and_rewrites_are_no_ops(ledger_url):
    store = open_store(ledger_url)
    rows = [_row(i) for i in range(50)]
    rows.append(_row(50, kind=CACHE_HIT, cost=Decimal(0), saved_cost=Decimal("0.0042"), cache_name="faq"))
    rows.append(_row(51, kind=REFUSAL, cost=Decimal(0), stopped_cost=Decimal("1.25"), budget="daily"))
    rows.append(_row(52, cost=None, price_known=False, cost_parts={}, response_model="ft:custom"))
    runs = [FeatureRun(run_id="r1", feature="answer", time=T0 + timedelta(hours=1), outcome="succeeded", team="search")]
    rows[0].run_id = "r1"
    assert store.write(rows, runs) == len(rows)
    assert store.write(rows, runs) == 0  # replay: nothing new, rollups unchanged
    assert store.write(rows[:10] + rows[:10]) == 0
    back = list(store.rows(T0, T0 + timedelta(days=2)))
    assert [r.span_id for r in back] == [r.span_id for r in rows]
    for original, stored in zip(rows, back):
        assert stored.cost == original.cost and stored.cost_parts == original.cost_parts
        assert stored.tags == original.tags and stored.team == original.team and stored.time == original.time
        assert all(getattr(stored, f) == getattr(original, f) for f in TOKEN_FIELDS)
    assert back[0].outcome == "succeeded"  # the run's outcome reached its call
    assert back[52].cost is None and back[52].price_known is False  # unknown stays unknown, never $0
    total = totals(store, T0, T0 + timedelta(days=2))
    assert total.cost == sum(r.cost for r in rows[:50])
    assert total.calls == 51 and total.unknown_cost_calls == 1
    assert (total.cache_hits, total.saved_cost, total.refusals, total.stopped_cost) == (1, Decimal("0.0042"), 1,
                                                                                      Decimal("1.25"))
    assert (total.runs, total.succeeded_runs) == (1, 1)
    store.close()


def _raw(store, start, end, key):
    out = {}
    for r in store.rows(start, end):
        if r.kind != CALL or r.cost is None:
            continue
        value = r.group_value(key) if key != "tag:env" else r.tags.get("env")
        if key == "tag:env" and value is None:
            continue
        out[value] = out.get(value, Decimal(0)) + r.cost
    return out


@pytest.mark.parametrize("key", ["team", "customer", "model", "user", "tag:env", "day"])
def test_rollup_answers_equal_raw_sums_for_any_period(ledger_url, key):
    store = open_store(ledger_url)
    fill(store, Profile(days=4, teams=6, customers=20, calls=3000, seed=3))
    first, last = store.time_range()
    rng = random.Random(5)
    periods = [(first, last + timedelta(seconds=1))]
    for _ in range(4):  # periods with edges anywhere: minutes, whole hours, whole days
        a = first + timedelta(seconds=rng.randrange(0, 4 * 86400))
        b = a + timedelta(seconds=rng.randrange(1, 3 * 86400))
        periods.append((a, b))
    periods.append((first.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1),
                    first.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=3)))
    for start, end in periods:
        got = {g.key[key]: g.cost for g in spend(store, start, end, [key])}
        expected = _raw(store, start, end, key)
        assert {k: v for k, v in got.items() if v} == {k: v for k, v in expected.items() if v}, (start, end)
    store.close()


def test_group_by_two_keys_and_filters_agree_with_single_key(ledger_url):
    store = open_store(ledger_url)
    fill(store, Profile(days=2, teams=4, customers=10, calls=800, seed=9))
    first, last = store.time_range()
    end = last + timedelta(seconds=1)
    by_team = {g.key["team"]: g for g in spend(store, first, end, ["team"])}
    by_pair = spend(store, first, end, ["team", "model"])
    for team, group in by_team.items():
        assert sum(g.cost for g in by_pair if g.key["team"] == team) == group.cost
        (filtered,) = spend(store, first, end, ["team"], where={"team": team})
        assert filtered.cost == group.cost and filtered.runs == group.runs
    daily = spend(store, first, end, ["day", "team"])
    assert sum(g.cost for g in daily) == totals(store, first, end).cost
    store.close()


def test_a_filter_on_one_tag_applies_when_grouping_by_another(ledger_url):
    """Two different tag keys (group by ``tag:team``, filter ``tag:env``) cannot come from the tag rollups, which
    hold one cell per name=value: over whole days as over minute edges, only the filtered rows are summed."""
    store = open_store(ledger_url)
    day = datetime(2026, 11, 2, tzinfo=timezone.utc)
    store.write([_row(i, time=day + timedelta(hours=3 + i), tags={"team": f"t{i % 2}", "env": ["prod", "dev"][i // 2]})
                 for i in range(4)], [])  # t0/prod, t1/prod, t0/dev, t1/dev
    for start, end in [(day, day + timedelta(days=1)), (day + timedelta(minutes=1), day + timedelta(hours=23))]:
        for group_by in (["tag:team"], ["tag"]):
            groups = spend(store, start, end, group_by, where={"tag:env": "prod"})
            assert sum(g.calls for g in groups) == (2 if group_by == ["tag:team"] else 4), (start, group_by, groups)
        (prod,) = spend(store, start, end, ["tag:env"], where={"tag:env": "prod"})
        assert prod.calls == 2
    store.close()


def test_a_tag_name_the_rollups_would_misread_is_left_out_of_the_row(ledger_url, caplog, monkeypatch):
    """A tag is kept in the rollups as 'name=value': a row tagged 'env=x' = 'y' (a span from elsewhere, through
    the span exporter, can carry any name) was counted by a report by ``tag:env`` over whole hours (the cells
    'env=...') as env 'x=y', and not over minute edges (raw rows, by name). A name with a '"' (SQLite reads it as
    a JSON path label) was never found by a filter. Such a tag is left out of the row, logged; the row is kept."""
    monkeypatch.setattr(store_module, "_tags_seen", {})  # tag sets encoded already (the other dialect's) are not
    for name in ("env=x", 'q"x'):                         # checked again
        forget(f"ledger:tag-name:{name!r}")
    store = open_store(ledger_url)
    day = datetime(2026, 11, 2, tzinfo=timezone.utc)
    store.write([_row(0, time=day + timedelta(hours=3), tags={"env": "prod"}),
                 _row(1, time=day + timedelta(hours=4), tags={"env=x": "y", "region": "eu"}),
                 _row(2, time=day + timedelta(hours=5), tags={'q"x': "v"})], [])
    for start, end in [(day, day + timedelta(days=1)), (day + timedelta(minutes=1), day + timedelta(hours=23))]:
        groups = spend(store, start, end, ["tag:env"])
        assert {g.key["tag:env"]: g.calls for g in groups} == {"prod": 1}, (start, groups)
        assert spend(store, start, end, ["team"], where={'tag:q"x': "v"}) == []
        assert sum(g.calls for g in spend(store, start, end, [])) == 3
    assert [r.tags for r in store.rows(day, day + timedelta(days=1))] == [{"env": "prod"}, {"region": "eu"}, {}]
    assert "'env=x'" in caplog.text and """'q"x'""" in caplog.text
    store.close()


def test_a_nul_character_in_a_text_is_stored_as_u_fffd_and_never_fails_or_merges(ledger_url, monkeypatch):
    """A span from elsewhere (the span exporter) can carry a NUL in any text. PostgreSQL cannot store one: the
    whole batch failed, good rows too, again at every retry. SQLite's JSON and string functions end a text at
    one: the rollups summed tag values 'p\\0q' and 'p\\0r' as one value 'p'. Such a NUL is stored as U+FFFD."""
    monkeypatch.setattr(store_module, "_tags_seen", {})
    day = datetime(2026, 11, 2, tzinfo=timezone.utc)
    store = open_store(ledger_url)
    store.write([_row(0, time=day + timedelta(hours=3), team="a\0b", tags={"env": "p\0q"}),
                 _row(1, time=day + timedelta(hours=4), tags={"env": "p\0r"}, response_model="m\0"),
                 _row(2, time=day + timedelta(hours=5))],
                [FeatureRun(run_id="r\0", feature="f\0", time=day + timedelta(hours=6), outcome="succeeded")])
    end = day + timedelta(days=1)
    nul = "\ufffd" if store.dialect == "postgresql" else "\0"  # SQLite holds a NUL but in tags (JSON)
    assert [(r.team, r.tags, r.model) for r in store.rows(day, end)] == [
        (f"a{nul}b", {"env": "p\ufffdq"}, "gpt-4o-mini-2024-07-18"), ("support", {"env": "p\ufffdr"}, f"m{nul}"),
        (None, {}, "gpt-4o-mini-2024-07-18")]
    assert [(r.run_id, r.feature) for r in store.runs(day, end)] == [(f"r{nul}", f"f{nul}")]
    for keys in (["tag:env"], ["tag"], ["team"]):
        assert spend_sums(store, day, end, keys) == python_sums(store, day, end, keys), keys
    assert set(spend_sums(store, day, end, ["tag:env"])) == {("p\ufffdq",), ("p\ufffdr",)}
    store.close()


def test_a_hand_made_row_is_stored_within_the_bounds_of_the_rows_aicost_makes(ledger_url):
    """A LedgerRow made by hand was stored as given: a price-unknown reason of 10,000 characters (aicost keeps one
    to 512 where it makes rows), a user id of 10,000 (an attribution value is at most 256 characters). The store
    holds every row it writes to those bounds; the caller's row is left as it was."""
    day = datetime(2026, 11, 2, tzinfo=timezone.utc)
    reason = "why " * 2_500
    made = _row(0, time=day + timedelta(hours=3), cost=None, price_known=False, cost_parts={},
                price_unknown_reason=reason, user="u" * 10_000)
    store = open_store(ledger_url)
    assert store.write([made]) == 1
    (stored,) = store.rows(day, day + timedelta(days=1))
    assert stored.price_unknown_reason == reason[:511] + "\u2026"
    assert (stored.user, stored.customer, stored.feature) == (None, "c0", "answer")
    assert {g.key["user"] for g in spend(store, day, day + timedelta(days=1), ["user"])} == {None}
    assert (made.price_unknown_reason, made.user) == (reason, "u" * 10_000)
    store.close()


def test_hand_made_ids_past_the_bounds_are_stored_as_digests_that_keep_a_run_and_its_calls_together(ledger_url):
    """A hand-made FeatureRun's run id (the primary key of aicost_runs) and trace id were stored as given, 10,000
    characters each, while a call row's run id past 256 characters was left out (NULL): the call lost its run,
    and the run's outcome. Now every id past the bounds is stored as its SHA-256 digest, the same on the run and on
    its calls, so the call is still filed under its run (and takes its outcome); a trace id likewise. The row's kind,
    which it cannot be without, refuses that row alone when it is no text of at most 256 characters."""
    import hashlib

    from aicost.ledger.store import LedgerRefused

    def digest(text: str) -> str:
        return "sha256:" + hashlib.sha256(text.encode()).hexdigest()

    day = datetime(2026, 11, 2, tzinfo=timezone.utc)
    run_id, trace_id = "r" * 10_000, "t" * 10_000
    run = FeatureRun(run_id=run_id, feature="answer", time=day + timedelta(hours=4), outcome="succeeded",
                     trace_id=trace_id, calls=1, cost=Decimal("0.000123456789012345"))
    call = _row(0, time=day + timedelta(hours=3), run_id=run_id, trace_id=trace_id, span_id="s" * 300)
    store = open_store(ledger_url)
    assert store.write([call], [run]) == 1
    assert store.write([call], [run]) == 0  # written again (a replay): stored once
    (stored_run,) = store.runs(day, day + timedelta(days=1))
    (stored,) = store.rows(day, day + timedelta(days=1))
    assert (stored_run.run_id, stored_run.trace_id) == (digest(run_id), digest(trace_id))
    assert (stored.span_id, stored.run_id, stored.trace_id) == (digest("s" * 300), digest(run_id), digest(trace_id))
    assert stored.outcome == "succeeded"
    assert (call.run_id, run.run_id, call.span_id) == (run_id, run_id, "s" * 300)  # the caller's, as they were
    with pytest.raises(LedgerRefused, match="kind"):
        store.write([_row(1, time=day, kind="k" * 257)])
    store.close()


@pytest.mark.parametrize("kind", [LedgerRow, FeatureRun])
def test_no_text_field_of_a_row_or_run_escapes_the_bounds(kind):
    """Every text field of a LedgerRow and a FeatureRun (any field a str may fill: a new one included), set to a
    megabyte, comes out of within_bounds at most 512 characters long, or None, or refuses the item (what it cannot
    be without): none is stored as it came. Only names, the model and other texts of a call were left unbounded."""
    import dataclasses

    from aicost.ledger.row import within_bounds

    made = {LedgerRow: lambda **kw: _row(0, **kw),
            FeatureRun: lambda **kw: FeatureRun(**{**dict(run_id="00f067aa0ba902b7", feature="f", time=T0,
                                                          outcome="succeeded"), **kw})}[kind]
    texts = [f.name for f in dataclasses.fields(kind) if "str |" in str(f.type) or str(f.type) == "str"]
    assert len(texts) >= (21 if kind is LedgerRow else 7), texts
    for name in texts:
        try:
            bounded = within_bounds(made(**{name: "x" * 1_000_000}))
        except ValueError:
            assert name in ("kind", "feature", "outcome"), name
            continue
        value = getattr(bounded, name)
        assert value is None or len(value) <= 512, name


def test_a_text_with_a_lone_surrogate_is_stored_with_a_replacement_not_dropped_with_its_spend(ledger_url):
    """A lone surrogate (JSON's "\\ud800" read into a model name, a tag value, a team decoded with surrogateescape)
    cannot be encoded as UTF-8: the database refused the row, and the writer dropped it, its spend with it. It is
    stored with U+FFFD in the surrogate's place, the rest of its batch as it was; the caller's row is left as is."""
    day = datetime(2026, 11, 2, tzinfo=timezone.utc)
    made = [_row(0, time=day + timedelta(hours=1)),
            _row(1, time=day + timedelta(hours=2), request_model="gpt\ud800x", team="t\udc80",
                 tags={"env": "p\udfffq"}),
            _row(2, time=day + timedelta(hours=3))]
    store = open_store(ledger_url)
    assert store.write(made) == 3
    stored = {row.span_id: row for row in store.rows(day, day + timedelta(days=1))}
    odd = stored[made[1].span_id]
    assert (odd.request_model, odd.team, odd.tags) == ("gpt\ufffdx", "t\ufffd", {"env": "p\ufffdq"})
    assert sum(row.cost for row in stored.values()) == sum(row.cost for row in made)
    assert made[1].request_model == "gpt\ud800x"
    store.close()


def test_unknown_group_key_lists_the_valid_ones(ledger_url):
    store = open_store(ledger_url)
    with pytest.raises(UnknownGroupKey, match="valid keys: team, feature, customer, user, model, provider, tag"):
        spend(store, T0, T0 + timedelta(days=1), ["teem"])
    assert spend(store, T0, T0 + timedelta(days=1), ["team"]) == []  # an empty period: no groups
    store.close()


def test_sqlite_url_errors_name_the_setting(tmp_path):
    with pytest.raises(ConfigurationError, match="AICOST_LEDGER.*unsupported ledger URL"):
        open_store("mysql://x/y", setting="AICOST_LEDGER")
    with pytest.raises(ConfigurationError, match="malformed SQLite ledger URL"):
        open_store("sqlite://relative.db")
    with pytest.raises(ConfigurationError, match="--ledger: the directory .* does not exist"):
        open_store(f"sqlite:///{tmp_path}/missing/ledger.db", setting="--ledger")
    with pytest.raises(ConfigurationError, match="no ledger at"):
        open_store(f"sqlite:///{tmp_path}/none.db", create=False)
    (tmp_path / "junk.db").write_bytes(b"not a database at all" * 100)
    with pytest.raises(ConfigurationError, match="cannot open the SQLite ledger .*file is not a database"):
        open_store(f"sqlite:///{tmp_path}/junk.db")


def test_postgres_missing_database_is_a_configuration_error(pg_server):
    missing = pg_server.rsplit("/", 1)[0] + "/no_such_db"
    with pytest.raises(ConfigurationError, match='instrument.*"no_such_db" does not exist'):
        open_store(missing)
    with pytest.raises(ConfigurationError, match="malformed PostgreSQL ledger URL"):
        open_store("postgresql://host:notaport/db")


@pytest.mark.parametrize("option", ["sslmode=bogus", "port=99999", "keepalives=abc", "hostaddr=bogus",
                                    "target_session_attrs=any-primary", "host=a,b&port=1,2,3"])
def test_a_postgres_url_libpq_cannot_use_is_malformed_not_a_ledger_down(option):
    """An option libpq refuses before reaching any server was an outage (LedgerUnavailable, not naming the
    setting: the writer spilled and retried for ever); it is a configuration error, at configure time."""
    pytest.importorskip("psycopg")
    with pytest.raises(ConfigurationError, match="^instrument.*malformed PostgreSQL ledger URL"):
        open_store(f"postgresql://ledger@127.0.0.1:1/aicost?{option}")


def test_an_in_memory_sqlite_ledger_is_refused(tmp_path, monkeypatch):
    """sqlite:///:memory: opened a database of the writer's connection alone: every row lost at exit, unseen by
    any report, and no error."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigurationError, match="^instrument.*in-memory SQLite ledger"):
        open_store("sqlite:///:memory:")
    assert list(tmp_path.iterdir()) == []


def test_a_newer_schema_is_refused_with_its_version(ledger_url):
    open_store(ledger_url).close()
    newer = SCHEMA_VERSION + 1
    if ledger_url.startswith("sqlite"):
        conn = sqlite3.connect(ledger_url[len("sqlite:///"):])
        conn.execute(f"INSERT INTO aicost_schema VALUES ({newer}, '2030-01-01', '9.0')")
        conn.commit()
        conn.close()
    else:
        import psycopg

        with psycopg.connect(ledger_url, autocommit=True) as conn:
            conn.execute(f"INSERT INTO aicost_schema VALUES ({newer}, now(), '9.0')")
    with pytest.raises(LedgerSchemaError,
                       match=f"schema version {newer}, newer than this aicost reads \\(version {SCHEMA_VERSION}\\)"):
        open_store(ledger_url)


def _opened_connections(monkeypatch, dialect: str, read=None) -> list:
    """Every connection the ledger store opens from now on (sqlite3's or psycopg's connect, wrapped); with
    ``read``, what ``read(connection)`` said of each as it was opened instead."""
    opened: list = []
    if dialect == "sqlite":
        module, connect = store_module.sqlite3, store_module.sqlite3.connect
    else:
        import psycopg

        module, connect = psycopg, psycopg.connect

    def recording(*args, **kwargs):
        conn = connect(*args, **kwargs)
        opened.append(conn if read is None else read(conn))
        return conn

    monkeypatch.setattr(module, "connect", recording)
    return opened


def _backends(ledger_url: str) -> int:
    """How many server processes serve the database of ``ledger_url`` (this query's own left out)."""
    import psycopg

    with psycopg.connect(ledger_url, autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                            "AND backend_type = 'client backend' AND pid <> pg_backend_pid()").fetchone()[0]


def _backends_within(ledger_url: str, at_most: int, seconds: float = 5.0) -> int:
    """:func:`_backends` once it is ``at_most`` or fewer, or after ``seconds``: a backend the client closed ends
    on the server shortly after, not at once (a single read saw a closed connection's backend still there)."""
    deadline = time.monotonic() + seconds
    while (count := _backends(ledger_url)) > at_most and time.monotonic() < deadline:
        time.sleep(0.05)
    return count


def _settled_backends(ledger_url: str) -> int:
    """:func:`_backends` once the count held still for half a second (earlier tests' backends ending)."""
    count, since = _backends(ledger_url), time.monotonic()
    deadline = since + 5.0
    while time.monotonic() - since < 0.5 and time.monotonic() < deadline:
        time.sleep(0.05)
        if (now := _backends(ledger_url)) != count:
            count, since = now, time.monotonic()
    return count


def test_a_store_that_refuses_a_newer_schema_closes_its_connection(ledger_url, monkeypatch):
    """The refusal raised from the constructor left its connection open: a SQLite file handle, a PostgreSQL backend
    the server kept (pg_stat_activity) for as long as the exception, or a process retrying, held the store."""
    test_a_newer_schema_is_refused_with_its_version(ledger_url)  # a ledger a newer aicost migrated
    dialect = "sqlite" if ledger_url.startswith("sqlite") else "postgresql"
    before = 0 if dialect == "sqlite" else _settled_backends(ledger_url)
    opened = _opened_connections(monkeypatch, dialect)
    for create in (True, False):
        with pytest.raises(LedgerSchemaError) as refused:
            open_store(ledger_url, create=create)
        assert opened and all(_closed(conn) for conn in opened)
        if dialect == "postgresql":
            # (the exception, and its store, still held here: an open connection's backend never ends)
            assert _backends_within(ledger_url, before) == before, refused


def _closed(conn) -> bool:
    if isinstance(conn, sqlite3.Connection):
        try:
            conn.execute("SELECT 1")
        except sqlite3.ProgrammingError:  # "Cannot operate on a closed database."
            return True
        return False
    return conn.closed


def test_a_sqlite_file_that_is_no_database_is_refused_with_its_connection_closed(tmp_path, monkeypatch):
    """A database error just after connecting (a file that is not a database) raised without closing."""
    path = tmp_path / "ledger.db"
    path.write_bytes(b"not a database, whatever its name says" * 100)
    opened = _opened_connections(monkeypatch, "sqlite")
    for create in (True, False):
        with pytest.raises(ConfigurationError, match="cannot open the SQLite ledger"):
            open_store(f"sqlite:///{path}", create=create)
    assert len(opened) == 2 and all(_closed(conn) for conn in opened)


def test_opening_an_up_to_date_ledger_does_not_wait_for_a_writer(ledger_url):
    """A report opens the ledger while a writer is in a batch: the schema is current, so opening takes no lock
    (it used to wait for the writer's lock, the migration's, and a reader that may not write could not open it)."""
    import threading

    with open_store(ledger_url) as store:
        store.write([_row(i) for i in range(3)])
    if ledger_url.startswith("sqlite"):
        holder = sqlite3.connect(ledger_url[len("sqlite:///"):], isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # what a writer's batch holds
        release = lambda: holder.execute("ROLLBACK")  # noqa: E731
    else:
        import psycopg

        from aicost.ledger.store import _ADVISORY_LOCK

        holder = psycopg.connect(ledger_url)
        holder.execute("SELECT pg_advisory_xact_lock(%s)", (_ADVISORY_LOCK,))  # what a writer's batch holds
        release = holder.rollback
    opened = []
    opener = threading.Thread(target=lambda: opened.append(open_store(ledger_url, create=False)), daemon=True)
    try:
        opener.start()
        opener.join(20)  # on the old code: until the lock is released (or SQLite's busy timeout gives up)
        assert opened, "opening the ledger waited for a writer's lock"
        assert [r.span_id for r in opened[0].rows(T0, T0 + timedelta(days=1))] == [_row(i).span_id for i in range(3)]
    finally:
        release()
        holder.close()
        opener.join(60)
        for store in opened:
            store.close()


def test_every_usage_count_has_a_ledger_column():
    """The ledger's columns are a stable schema, so they are listed, not derived from Usage. A count Usage gains
    must get a column (and a schema migration) too, or the ledger would silently drop it."""
    from dataclasses import fields

    from aicost.usage import Usage

    counts = tuple(f.name for f in fields(Usage) if f.type in ("int", int))
    assert counts == TOKEN_FIELDS


# -- the rollups, summed in SQL at write time, against an independent sum of the raw rows in Python ------------
@pytest.mark.parametrize("key", ["team", "user", "customer", "model", "provider", "tag", "day"])
def test_every_rollup_measure_equals_the_raw_rows_summed_in_python(ledger_url, key):
    store = open_store(ledger_url)
    fill(store, Profile(days=3, teams=5, customers=12, calls=1500, seed=11), batch=400)
    first, _ = store.time_range()
    for start, end in sample_periods(first, 3, random.Random(key), n=4, shortest=1):
        assert spend_sums(store, start, end, (key,)) == python_sums(store, start, end, (key,)), (key, start, end)
    store.close()


def test_a_replayed_or_overlapping_batch_is_counted_once(ledger_url):
    """Batches that repeat stored rows and runs (a spill replayed after a half-finished write) add only what
    they actually inserted to the rollups, the cube and the pair cells."""
    from aicost.ledger.synthetic import generate

    items = list(generate(Profile(days=1, teams=4, customers=6, calls=600, seed=4)))
    rows = [i for i in items if isinstance(i, LedgerRow)]
    runs = [i for i in items if isinstance(i, FeatureRun)]
    store = open_store(ledger_url)
    assert store.write(rows[:300], runs[:120]) == 300
    assert store.write(rows[200:], runs[100:]) == len(rows) - 300  # 100 rows and 20 runs already stored
    assert store.write(rows, runs) == 0
    assert store.write(rows[:50] + rows[:50], runs[:10] + runs[:10]) == 0
    first, last = store.time_range()
    end = last + timedelta(seconds=1)
    for key in ("team", "user", "tag"):
        assert spend_sums(store, first, end, (key,)) == python_sums(store, first, end, (key,))
    total = totals(store, first, end)
    assert total.calls == sum(r.kind == CALL for r in rows) and total.runs == len(runs)
    assert total.cost == sum(r.cost for r in rows if r.kind == CALL and r.cost is not None)
    # The cube's cells, and the pair cells summed from what was stored, count each row once too.
    start, end = first.replace(minute=0, second=0, microsecond=0), last + timedelta(hours=1)
    sum_all_pairs(store, until=end)
    for keys in (("team", "feature"), ("model", "provider"), ("day", "team", "model"), ("team", "customer")):
        assert spend_sums(store, start, end, keys) == python_sums(store, start, end, keys)
    store.close()


def test_new_rows_with_an_already_stored_run_count_the_run_once(ledger_url):
    """A batch whose rows are all new but whose feature run is already stored (the run's first batch was written,
    then a spill replays it with the run's later calls): the rows count, the run does not count again, and the new
    rows get the stored run's outcome. On SQLite this is the staged insert undone and redone by id."""
    run = FeatureRun(run_id="r1", feature="answer", time=T0, outcome="succeeded", team="search")
    store = open_store(ledger_url)
    assert store.write([_row(0, run_id="r1", team="search")], [run]) == 1
    assert store.write([_row(1, run_id="r1", team="search"), _row(2, team="search")], [run]) == 2
    total = totals(store, T0, T0 + timedelta(days=1))
    assert (total.calls, total.runs, total.succeeded_runs) == (3, 1, 1)
    assert total.cost == sum(_row(i).cost for i in range(3))
    assert [r.outcome for r in store.rows(T0, T0 + timedelta(days=1))] == ["succeeded", "succeeded", None]
    store.close()


def test_money_sums_stay_exact_past_double_and_default_decimal_precision(ledger_url):
    store = open_store(ledger_url)
    amounts = [Decimal("0.000000000000000001"), Decimal("123456789.123456789123456789"), Decimal("0.1"),
               Decimal("0.2"), Decimal("1E-24"), Decimal("7.000000000000000000000000001")]
    rows = [_row(i, cost=a, cost_parts={"input": a}, team="t", tags={}) for i, a in enumerate(amounts)]
    store.write(rows[:3])
    store.write(rows[3:])
    from aicost.pricing.money import sum_usd

    expected = sum_usd(amounts)
    assert len(expected.as_tuple().digits) > 28  # more digits than the default decimal context keeps
    end = T0 + timedelta(days=2)
    (group,) = spend(store, T0.replace(minute=0, second=0), end, ["team"])  # hour rollups + edge rows
    assert group.cost == expected
    (group,) = spend(store, T0.replace(hour=0, minute=0, second=0), end, ["day"])  # day rollups
    assert group.cost == expected
    assert totals(store, T0, end).cost == expected  # edges summed from raw rows in SQL
    store.close()


def test_rows_and_runs_read_back_money_in_its_one_canonical_form(ledger_url):
    """Money written as any Decimal of its value (0.10, 1E+1: a span attribute's text, a row a caller made) reads
    back from rows() and runs() in the one canonical form, as SQLite's text always did: PostgreSQL's NUMERIC
    keeps the scale it is given, and rows() there gave Decimal('0.10') beside its part's Decimal('0.1')."""
    from aicost.pricing.money import canonical

    amounts = [Decimal("0.10"), Decimal("1E+1"), Decimal("0.0000010"), Decimal("-0.50"), Decimal("0E-7")]
    kinds = [CALL, CACHE_HIT, REFUSAL, CALL, CACHE_HIT]
    rows = [_row(i, kind=kind, cost=a, cost_parts={"input": a}, saved_cost=a if kind == CACHE_HIT else None,
                 stopped_cost=a if kind == REFUSAL else None) for i, (kind, a) in enumerate(zip(kinds, amounts))]
    runs = [FeatureRun(run_id=f"r{i}", feature="answer", time=T0, outcome="succeeded", cost=a)
            for i, a in enumerate(amounts)]
    with open_store(ledger_url) as store:
        store.write(rows, runs)
        back = list(store.rows(T0 - timedelta(hours=1), T0 + timedelta(days=2)))
        runs_back = list(store.runs(T0 - timedelta(hours=1), T0 + timedelta(days=2)))
    read = [m for r in back for m in (r.cost, r.saved_cost, r.stopped_cost, *r.cost_parts.values()) if m is not None]
    read += [r.cost for r in runs_back]
    assert len(read) == 5 + 5 + 2 + 1 + 5  # the rows' costs and parts, 2 saved, 1 stopped, the runs' costs
    assert [m.as_tuple() for m in read] == [canonical(m).as_tuple() for m in read]  # digits and exponent alike
    assert sorted(map(str, (r.cost for r in runs_back))) == sorted(["0.1", "10", "0.000001", "-0.5", "0"])


def test_a_version_3_ledger_is_migrated_and_its_user_hours_backfilled(ledger_url):
    """Schema 4 gave the user dimension hour buckets; a ledger written at version 3 has none. Opening it
    migrates it (the version recorded) and sums the hour cells of the rows already stored."""
    store = open_store(ledger_url)
    fill(store, Profile(days=2, teams=4, customers=8, calls=700, seed=6))
    first, last = store.time_range()
    store.close()
    # Make it what version 3 wrote: no user hour cells, and version 3 the highest applied.
    statements = ["DELETE FROM aicost_rollup WHERE dim = 'user' AND grain = 'hour'",
                  "DROP TABLE aicost_rollup_cube", "DROP TABLE aicost_rollup_cube_folded", *DROP_PAIRS,
                  DROP_UNKNOWN_REASON, "DELETE FROM aicost_schema WHERE version >= 4"]
    run_sql(ledger_url, statements)
    store = open_store(ledger_url)
    assert store.schema_version() == SCHEMA_VERSION == 10
    cells = store._fetch("SELECT COUNT(*) FROM aicost_rollup WHERE dim = 'user' AND grain = 'hour'", [])[0][0]
    assert cells > 0
    start = first.replace(minute=0, second=0, microsecond=0) + timedelta(hours=2)
    for end in (start + timedelta(hours=9), last):  # whole hours, and hours then minutes
        assert spend_sums(store, start, end, ("user",)) == python_sums(store, start, end, ("user",))
    store.close()


def test_a_version_9_ledger_is_migrated_and_keeps_why_a_price_is_unknown_from_then_on(ledger_url):
    """Schema 10 added ``price_unknown_reason``. A ledger written at version 9 (no such column) is migrated when
    opened: the column is added, the rows already stored have NULL there (and are otherwise as they were), and rows
    written from then on keep their reason, exactly, on SQLite and PostgreSQL; a known price keeps none."""
    no_price = "no price for this model from this provider (and tier) in the catalog or price overrides"
    store = open_store(ledger_url)
    store.write([_row(0), _row(1, cost=None, cost_parts={}, price_known=False, response_model="mystery")])
    store.close()
    run_sql(ledger_url, [DROP_UNKNOWN_REASON, "DELETE FROM aicost_schema WHERE version >= 10"])  # what 9 wrote
    store = open_store(ledger_url)
    assert store.schema_version() == SCHEMA_VERSION == 10
    assert [v for (v,) in store._fetch("SELECT version FROM aicost_schema ORDER BY version", [])] == list(range(1, 11))
    window = (T0 - timedelta(days=1), T0 + timedelta(days=1))
    before = list(store.rows(*window))
    assert [(r.span_id, r.price_known, r.price_unknown_reason) for r in before] == [
        (f"{0:016x}", True, None), (f"{1:016x}", False, None)]  # stored before: no reason was kept
    assert before[0] == _row(0) and before[1].cost is None
    unicode = "the price of \u00e9-model on openai has no input rate \u2014 \U0001f4b8"
    assert store.write([_row(2, cost=None, cost_parts={}, price_known=False, price_unknown_reason=no_price),
                        _row(3, cost=None, cost_parts={}, price_known=False, price_unknown_reason=unicode)]) == 2
    rows = {r.span_id: r for r in store.rows(*window)}
    assert rows[f"{2:016x}"].price_unknown_reason == no_price and rows[f"{3:016x}"].price_unknown_reason == unicode
    assert rows[f"{2:016x}"] == _row(2, cost=None, cost_parts={}, price_known=False, price_unknown_reason=no_price)
    t = totals(store, *window)
    assert (t.calls, t.unknown_cost_calls, t.cost) == (4, 3, _row(0).cost)
    store.close()


def test_the_synthetic_copies_are_rows_and_rollups_the_writer_would_have_made(ledger_url):
    from aicost.ledger.synthetic import fill_copies

    store = open_store(ledger_url)
    total = fill_copies(store, Profile(teams=4, customers=8, calls=300, seed=8), days=3)
    first, last = store.time_range()
    assert total == len(list(store.rows(first, last + timedelta(seconds=1))))
    assert (last - first).days == 2
    rng = random.Random(3)
    for key in ("team", "user", "day"):
        for start, end in sample_periods(first, 3, rng, n=2, shortest=1):
            assert spend_sums(store, start, end, (key,)) == python_sums(store, start, end, (key,))
    store.close()


def test_integer_money_path_and_its_decimal_fallback_sum_the_same_cells_exactly(ledger_url):
    """SQLite sums a batch's money as integer pico-dollars when every amount is a whole number of them and the
    batch adds up to under $9 million, and with the Decimal aggregate otherwise; batches of both kinds land in
    the same rollup cells and the sums stay exact (PostgreSQL sums NUMERIC either way)."""
    from aicost.ledger.rollup import fits_units
    from aicost.pricing.money import sum_usd

    batches = [
        [Decimal("0.000000000001"), Decimal("1.500000000000000"), Decimal("4999999.999999999999")],  # integers
        [Decimal("4999999.999999999999"), Decimal("4000000.000000000001")],  # adds up past the integer bound
        [Decimal("0.0000000000001")],  # a digit below the pico-dollar
        [Decimal("-0.25"), Decimal("0.75"), Decimal("0")],  # a credit: negative amounts are integers too
    ]
    assert [fits_units([_row(0, cost=a) for a in batch]) for batch in batches] == [True, False, False, True]
    amounts = {"1.0000000000001": False, "0.1000000000000": True, "-1.5E-11": True, "1E+3": True, "NaN": False,
               "-Infinity": False, "2.5E-13": False, "-0.000000000002": True, "7": True}
    assert {a: fits_units([_row(0, cost=Decimal(a))]) for a in amounts} == amounts
    store = open_store(ledger_url)
    i = 0
    for batch in batches:
        rows = []
        for amount in batch:
            rows.append(_row(i, cost=amount, cost_parts={"input": amount}, team="t", tags={}))
            i += 1
        store.write(rows)
    hit = _row(i, kind=CACHE_HIT, cost=Decimal(0), saved_cost=Decimal("0.123456789012"), team="t")
    refusal = _row(i + 1, kind=REFUSAL, cost=Decimal(0), stopped_cost=Decimal("2.5"), team="t")
    store.write([hit, refusal])
    expected = sum_usd(a for batch in batches for a in batch)
    end = T0 + timedelta(days=3)
    for key in ("team", "day"):
        (group,) = spend(store, T0.replace(hour=0, minute=0, second=0), end, [key])  # rollup cells only
        assert (group.cost, group.saved_cost, group.stopped_cost) == (expected, Decimal("0.123456789012"),
                                                                      Decimal("2.5")), key
    assert totals(store, T0 + timedelta(minutes=1), end).cost == expected - batches[0][0]  # an edge: raw rows
    store.close()


def test_the_integer_money_path_is_chosen_exactly_whatever_the_threads_decimal_context(tmp_path):
    """Whether a batch may be summed as integers is decided in the writing thread: the app's (``write``), or the
    writer's, whose context is a copy of decimal.DefaultContext. A low precision there must not make a batch
    look smaller than it is: at 4 digits $8,999,000 and a thousand $400.50 ($9,399,500) added up to $8,999,000,
    under the integer path's bound, and SQLite's integer sum overflowed (the write failed, every row with it)."""
    import decimal

    from aicost.ledger.rollup import fits_units

    one_cell = dict(time=T0, team="t", customer="c", tags={}, cost_parts={})  # summed together
    rows = [_row(0, cost=Decimal("8999000"), **one_cell)]
    rows += [_row(i, cost=Decimal("400.5"), **one_cell) for i in range(1, 1001)]
    store = open_store(f"sqlite:///{tmp_path / 'ledger.db'}")
    with decimal.localcontext(decimal.Context(prec=4)):
        assert not fits_units(rows)
        store.write(rows)
    assert totals(store, T0, T0 + timedelta(days=30)).cost == Decimal("9399500")
    store.close()


def test_a_synthetic_ledger_is_the_same_whatever_the_threads_decimal_context():
    """The demo and benchmark ledgers are made in aicost's contexts: one seed, one ledger. Before, a feature run's
    cost was its calls' costs added in the thread's context: at 4 digits rounding down, another ledger."""
    import decimal

    from aicost.ledger.synthetic import generate

    def ledger() -> list[dict]:
        return [item.to_dict() for item in generate(Profile(days=1, teams=3, customers=5, calls=300, seed=3))]

    expected = ledger()
    with decimal.localcontext(decimal.Context(prec=4, rounding=decimal.ROUND_DOWN)):
        assert ledger() == expected


def test_an_outcome_reaches_calls_of_earlier_batches_and_never_replaces_one(ledger_url):
    store = open_store(ledger_url)
    early = _row(0, run_id="r1")
    own = _row(1, run_id="r1", outcome="failed")  # already labelled (an exporter's row): kept as it is
    store.write([early, own])
    late = _row(2, run_id="r1")
    store.write([late], [FeatureRun(run_id="r1", feature="answer", time=T0 + timedelta(hours=1), outcome="succeeded")])
    back = {r.span_id: r.outcome for r in store.rows(T0, T0 + timedelta(days=2))}
    assert back == {early.span_id: "succeeded", own.span_id: "failed", late.span_id: "succeeded"}
    (group,) = spend(store, T0.replace(hour=0, minute=0, second=0), T0 + timedelta(days=2), ["feature"])
    assert (group.calls, group.runs, group.succeeded_runs) == (3, 1, 1)
    store.close()


@pytest.mark.parametrize("odd", ['q"uote', "back\\slash", "NULL", "a,b", "{brace}", " sp ", "\u00fcn\u00ef", "'"])
def test_ids_and_outcomes_of_any_text_are_matched_exactly(ledger_url, odd):
    """Ids and outcomes go to PostgreSQL as one array literal the store writes itself: a quote, a backslash,
    a comma, a brace or the word NULL in them is one element, matched as it is (idempotency, outcomes, rollups)."""
    store = open_store(ledger_url)
    run = FeatureRun(run_id=f"run {odd}", feature="answer", time=T0 + timedelta(hours=1), outcome=f"done {odd}")
    early = _row(0, span_id=f"span {odd}", run_id=run.run_id)
    plain = _row(1, run_id="NULL")
    assert store.write([early, plain]) == 2
    late = _row(2, span_id=f"late {odd}", run_id=run.run_id)
    assert store.write([late, early], [run]) == 1  # early is stored already: the by-id path
    assert store.write([early, late, plain], [run]) == 0
    back = {r.span_id: r.outcome for r in store.rows(T0, T0 + timedelta(days=2))}
    assert back == {early.span_id: run.outcome, plain.span_id: None, late.span_id: run.outcome}
    total = totals(store, T0.replace(hour=0, minute=0, second=0), T0 + timedelta(days=2))
    assert (total.calls, total.runs, total.cost) == (3, 1, early.cost + plain.cost + late.cost)
    store.close()


def _rollup_table(store) -> list[tuple]:
    return store._fetch("SELECT * FROM aicost_rollup ORDER BY grain, dim, bucket, value", [])


@pytest.fixture
def ledger_pair(request, ledger_url, tmp_path):
    """Two empty ledgers of the same kind (SQLite files, or databases on the PostgreSQL server)."""
    if ledger_url.startswith("sqlite"):
        return ledger_url, f"sqlite:///{tmp_path / 'other.db'}"
    from ledger_helpers import fresh_pg_database

    return ledger_url, fresh_pg_database(request.getfixturevalue("pg_server"))


def test_a_staged_batch_makes_the_same_rows_and_rollups_as_an_unstaged_one(ledger_pair, monkeypatch):
    """A batch none of which is stored yet is written from what was staged while preparing it (SQLite: its rows
    bound into an in-memory image, copied in and summed there by SQL; PostgreSQL: its COPY data, formatted
    ahead); otherwise row by row and summed by id. Both leave identical rows and rollup tables, cell by cell,
    a batch for SQLite's Decimal aggregate included."""
    from aicost.ledger import store as store_module
    from aicost.ledger.synthetic import generate

    items = list(generate(Profile(days=1, teams=4, customers=6, calls=900, seed=7)))
    rows = [i for i in items if isinstance(i, LedgerRow)]
    runs = [i for i in items if isinstance(i, FeatureRun)]
    rows[5] = _row(10_000, cost=Decimal("12345678.0000000000001"))  # a batch for the Decimal aggregate
    batches = [(rows[i:i + 250], runs[i // 3:(i + 250) // 3]) for i in range(0, len(rows), 250)]
    staged = open_store(ledger_pair[0])
    for batch_rows, batch_runs in batches:
        prepared = staged.prepare(batch_rows, batch_runs)
        assert prepared.staged is not None
        staged.write_prepared(prepared)
    monkeypatch.setattr(store_module, "can_stage", lambda: False)
    monkeypatch.setattr(store_module.PostgresStore, "_stage", lambda *args: None)
    by_id = open_store(ledger_pair[1])
    for batch_rows, batch_runs in batches:
        assert by_id.prepare(batch_rows, batch_runs).staged is None
        by_id.write(batch_rows, batch_runs)
    assert _rollup_table(staged) == _rollup_table(by_id)
    columns = "SELECT * FROM aicost_ledger ORDER BY span_id"
    assert staged._fetch(columns, []) == by_id._fetch(columns, [])
    staged.close()
    by_id.close()


def test_a_replayed_batch_is_written_from_what_was_prepared_and_counted_once(ledger_pair, monkeypatch):
    """A batch some of which is stored already (a spill replayed after an outage, a repeated span id) writes its
    new rows from what was prepared: nothing is encoded again, and SQLite inserts them from its stage, PostgreSQL
    sends its staged COPY lines. Only a new row that took the outcome of a run in the batch that is stored
    already is encoded again (without it; the stored run's outcome is written back). Rows and rollup tables
    equal, cell by cell, those of the same batches written row by row and summed by id; nothing counts twice."""
    import psycopg

    from aicost.ledger import store as store_module
    from aicost.ledger.synthetic import generate

    items = list(generate(Profile(days=1, teams=4, customers=6, calls=300, seed=7)))
    rows = [i for i in items if isinstance(i, LedgerRow)]
    runs = [i for i in items if isinstance(i, FeatureRun)]
    runs_of = lambda part: [r for r in runs if r.run_id in {x.run_id for x in part}]  # noqa: E731
    first_runs = runs_of(rows[:120])
    late = _row(9000, run_id=first_runs[0].run_id, time=rows[-1].time)  # a new call of a stored run
    batches = [
        (rows[:120], first_runs),  # all new
        (rows[60:200], [r for r in runs_of(rows[120:200]) if r not in first_runs]),  # half replayed, runs new
        (rows[180:] + [late], runs),  # replayed rows and runs, and a new row of a stored run: encoded again
        (rows, runs),  # all replayed
    ]
    staged = open_store(ledger_pair[0])
    encoded, row_writes, statements = [], [], []
    if staged.dialect == "sqlite":
        staged._conn.set_trace_callback(statements.append)
    else:
        write_row = psycopg.Copy.write_row
        monkeypatch.setattr(psycopg.Copy, "write_row",
                            lambda copy, values: row_writes.append(values) or write_row(copy, values))
    written = []
    for batch_rows, batch_runs in batches:
        prepared = staged.prepare(batch_rows, batch_runs)
        assert prepared.staged is not None
        del encoded[:], row_writes[:], statements[:]
        staged.row_params = lambda row, outcome=None: encoded.append(row.span_id) or LedgerStore.row_params(
            staged, row, outcome)
        written.append(staged.write_prepared(prepared))
        del staged.row_params
        assert encoded == ([late.span_id] if late in batch_rows else [])
        if late not in batch_rows:  # written from the stage: never row by row
            assert not row_writes and not any(s.startswith("INSERT INTO aicost_ledger (") for s in statements)
    if staged.dialect == "sqlite":
        staged._conn.set_trace_callback(None)
    monkeypatch.undo()
    monkeypatch.setattr(store_module, "can_stage", lambda: False)
    monkeypatch.setattr(store_module.PostgresStore, "_stage", lambda *args: None)
    by_id = open_store(ledger_pair[1])
    assert [by_id.write(batch_rows, batch_runs) for batch_rows, batch_runs in batches] == written == [
        120, 80, len(rows) - 200 + 1, 0]
    assert _rollup_table(staged) == _rollup_table(by_id)
    columns = "SELECT * FROM aicost_ledger ORDER BY span_id"
    assert staged._fetch(columns, []) == by_id._fetch(columns, [])
    first, last = staged.time_range()
    back = {r.span_id: r.outcome for r in staged.rows(first, last + timedelta(seconds=1))}
    assert back[late.span_id] == first_runs[0].outcome
    total = totals(staged, first, last + timedelta(seconds=1))
    assert (total.calls, total.runs) == (sum(r.kind == CALL for r in rows) + 1, len(runs))
    staged.close()
    by_id.close()


def test_sqlite_detaches_the_staged_image_when_its_write_is_done(tmp_path, monkeypatch):
    """The staged image is attached for its write only: after it, committed or failed, the stage is no longer a
    database of the connection and SQLite's memory holds the image no more (not until the next write)."""
    import ctypes
    import _sqlite3

    from aicost.ledger.staging import STAGE

    try:
        memory_used = ctypes.CDLL(_sqlite3.__file__).sqlite3_memory_used
        memory_used.restype = ctypes.c_int64
    except (OSError, AttributeError):  # SQLite linked in without its symbols: the database list is checked
        memory_used = None
    store = open_store(f"sqlite:///{tmp_path / 'stage.db'}")
    databases = lambda: {name for _, name, _ in store._fetch("PRAGMA database_list", [])}  # noqa: E731
    at_commit: list[int] = []
    store._conn.set_trace_callback(lambda sql: memory_used and sql == "COMMIT" and at_commit.append(memory_used()))
    prepared = store.prepare([_row(i) for i in range(2000)])
    assert store.write_prepared(prepared) == 2000
    assert STAGE not in databases()
    if memory_used is not None and at_commit[0]:  # SQLITE_DEFAULT_MEMSTATUS: SQLite counts its memory
        assert at_commit[0] - memory_used() >= len(prepared.staged)  # the image, freed
    monkeypatch.setattr(store, "_set_outcomes", lambda *args: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        store.write([_row(i) for i in range(2000, 2100)])
    assert STAGE not in databases()
    monkeypatch.undo()
    assert store.write([_row(2100)]) == 1 and STAGE not in databases()
    store.close()


def test_sqlite_adds_and_writes_money_in_sql_exactly_as_decimal_does(tmp_path):
    """The folds add two rollup amounts as integers in SQL when both fit (at most 12 decimals, under $1 million),
    and the integer sums come back as aicost's canonical decimal text: equal, digit for digit, to Decimal."""
    from hypothesis import given, settings, strategies as st

    from aicost.ledger.rollup import SQLITE
    from aicost.pricing.money import format_usd

    store = open_store(tmp_path / "m.db")
    add = f"SELECT {SQLITE.money_add(':a', ':b')}"
    text = f"SELECT {SQLITE.from_units(':n')}"
    amounts = st.one_of(st.decimals(min_value=-2_000_000, max_value=2_000_000, places=12, allow_nan=False),
                        st.decimals(min_value=-10**9, max_value=10**9, places=15, allow_nan=False),
                        st.sampled_from([Decimal("0"), Decimal("999999.999999999999"), Decimal("-0.5"),
                                         Decimal("1000000"), Decimal("10"), Decimal("0.000000000001")]))

    @settings(max_examples=400, deadline=None)
    @given(amounts, amounts)
    def check(a, b):
        a_text, b_text = format_usd(a), format_usd(b)
        assert store._fetch(add, {"a": a_text, "b": b_text}) == [(format_usd(a + b),)]
        if abs(a) < 9_000_000 and a == a.quantize(Decimal("1E-12")):  # a 64-bit integer of pico-dollars
            units = int(a.scaleb(12))
            assert store._fetch(text, {"n": units}) == [(a_text,)]

    check()
    store.close()


def test_copy_data_staged_on_a_utf8_session_is_not_sent_over_a_later_session_that_is_not(pg_server, monkeypatch):
    """COPY data is formatted while preparing, as UTF-8; a batch prepared before a reconnect whose session speaks
    another encoding is written from its rows instead (its UTF-8 bytes would be read as that encoding)."""
    from ledger_helpers import fresh_pg_database

    url = fresh_pg_database(pg_server)
    store = open_store(url)
    batch = store.prepare([_row(1, team="équipe", customer="Zoë")])
    assert batch.staged is not None
    store.close()  # as after an outage: the next write reconnects, here to a LATIN1 session
    monkeypatch.setenv("PGCLIENTENCODING", "LATIN1")
    assert store.write_prepared(batch) == 1 and store._conn.info.encoding != "utf-8"
    store.close()
    monkeypatch.delenv("PGCLIENTENCODING")
    with open_store(url, create=False) as again:
        (row,) = again.rows(T0 - timedelta(days=1), T0 + timedelta(days=1))
    assert (row.team, row.customer) == ("équipe", "Zoë")


@pytest.mark.parametrize("url, shown", [
    ("postgresql://ledger:s3cret@db:5432/aicost", "postgresql://ledger:***@db:5432/aicost"),
    ("postgresql://:s3cret@db/aicost", "postgresql://:***@db/aicost"),
    ("postgresql://ledger:s3@cr/et@db/aicost", "postgresql://ledger:***@db/aicost"),
    ("postgresql://ledger@db/aicost?password=s3cret&sslmode=require",
     "postgresql://ledger@db/aicost?password=***&sslmode=require"),
    ("postgres://db/aicost?sslmode=verify-full&sslpassword=s3cret",
     "postgres://db/aicost?sslmode=verify-full&sslpassword=***"),
    ("postgresql://db/aicost?pass%77ord=s3cret", "postgresql://db/aicost?pass%77ord=***"),
    ("postgresql://ledger@db/aicost?application_name=r", "postgresql://ledger@db/aicost?application_name=r"),
])
def test_redact_url_hides_every_password_libpq_would_read(url, shown):
    from aicost.ledger.store import redact_url

    assert redact_url(url) == shown


@pytest.mark.parametrize("url", [
    "postgresql://ledger:s3cr%zzet@127.0.0.1:1/aicost",  # libpq: invalid percent-encoded token: "s3cr%zzet"
    "postgresql://ledger@127.0.0.1:1/aicost?password=s3cr%zzet",
    "postgresql://ledger:s3cret@[::1/aicost",  # libpq quotes the whole URI
    "postgresql://ledger:s3cret@[::1/aicost?sslpassword=s3cret",
    "postgresql://ledger:pa@s3cret@127.0.0.1:1/aicost",  # an unencoded @: libpq's host is "s3cret@127.0.0.1"
])
def test_a_malformed_postgres_url_is_refused_without_showing_its_password(url, spill_dir):
    """libpq's message about a URL it cannot parse quotes the bad token, or the whole URI: the password (or a part
    of it) was in the ConfigurationError, or in the writer's outage log, which docs/ledger.md promises never
    show it."""
    from aicost.ledger.store import LedgerUnavailable

    with pytest.raises((ConfigurationError, LedgerUnavailable)) as refused:
        open_store(url)
    assert "s3cr" not in str(refused.value) and "***" in str(refused.value), str(refused.value)


def test_a_postgres_password_given_as_a_query_parameter_is_never_shown(pg_server, tmp_path, spill_dir, caplog):
    """libpq reads ``?password=`` (and ``?sslpassword=``) as well as ``user:password@``; only the latter was hidden,
    so the report's "ledger:" line, the dashboard's header and the JSON report printed the password. The writer's
    outage log printed the URL as given, ``user:password@`` included."""
    import io

    from aicost._log import forget
    from aicost.cli import main
    from aicost.ledger.report import build_report, render_json, render_table
    from aicost.ledger.writer import LedgerWriter

    from ledger_helpers import fresh_pg_database

    url = f"{fresh_pg_database(pg_server)}?password=s3cret&sslmode=disable"
    with open_store(url) as store:
        store.write([_row(1)], [])
        assert store.url.endswith("?password=***&sslmode=disable")
        report = build_report(store, T0 - timedelta(days=1), T0 + timedelta(days=1))
    assert "ledger: postgresql://" in render_table(report)
    out, err = io.StringIO(), io.StringIO()
    assert main(["report", "--ledger", url, "--since", "2026-11-01", "--until", "2026-12-01"], out=out, err=err) == 0
    assert report.ledger == store.url  # the dashboard's header shows it too
    for shown in (render_table(report), render_json(report), out.getvalue()):
        assert "s3cret" not in shown and "password=***" in shown
    assert err.getvalue() == ""
    forget("ledger:down:unreachable")
    writer = LedgerWriter("postgresql://ledger:s3cret@127.0.0.1:1/aicost?sslpassword=s3cret")  # nothing listens
    try:
        assert writer.stats()["outages"] == 1 and "s3cret" not in repr(writer)
    finally:
        writer.close(timeout_s=1)
    logged = [r.getMessage() for r in caplog.records if "cannot reach the ledger" in r.getMessage()]
    assert logged and not any("s3cret" in m for m in logged)
    assert "ledger:***@127.0.0.1:1/aicost?sslpassword=***" in logged[0]


@pytest.mark.skipif(not hasattr(__import__("socket"), "TCP_USER_TIMEOUT"), reason="Linux socket options")
def test_a_postgres_ledger_finds_a_silent_server_within_seconds_unless_its_url_says_otherwise(pg_server, monkeypatch):
    """A server gone silent mid-session (no RST ever comes) held a cron report, or the writer thread, until the
    kernel gave up (many minutes): the store's connections, its own and a stream's, now have TCP keepalives
    (a dead idle peer found in about 30 s) and a tcp_user_timeout (unacknowledged data given up after 30 s). What
    the URL sets itself wins."""
    from ledger_helpers import fresh_pg_database

    url = fresh_pg_database(pg_server)
    opened = _opened_connections(monkeypatch, "postgresql", tcp_limits)
    store = open_store(url)
    store.write([_row(1)])
    assert list(store.rows(T0, T0 + timedelta(days=1)))  # a stream: its own connection
    store.close()
    assert len(opened) == 2
    assert opened == [(True, 10, 5, 4, 30_000)] * 2
    opened.clear()
    own = open_store(f"{url}?keepalives_idle=60&tcp_user_timeout=120000")
    own.close()
    assert opened == [(True, 60, 5, 4, 120_000)]


@pytest.mark.skipif(not hasattr(__import__("socket"), "TCP_USER_TIMEOUT"), reason="Linux socket options")
def test_a_postgres_ledger_leaves_to_libpq_what_the_user_sets(pg_server, tmp_path, monkeypatch):
    """The store passed connect_timeout=5 to every connection, over the URL's own and PGCONNECT_TIMEOUT, and its
    keepalives over those of the pg_service.conf entry the URL names. Each of aicost's settings now yields to the
    user's wherever libpq reads it, for the store's own connection and a stream's alike."""
    from ledger_helpers import fresh_pg_database

    for variable in ("PGCONNECT_TIMEOUT", "PGSERVICE", "PGSERVICEFILE", "PGSYSCONFDIR"):
        monkeypatch.delenv(variable, raising=False)
    url = fresh_pg_database(pg_server)
    opened = _opened_connections(monkeypatch, "postgresql", libpq_settings)

    def use(ledger_url: str) -> list:
        opened.clear()
        store = open_store(ledger_url)
        store.write([_row(1)])
        assert list(store.rows(T0, T0 + timedelta(days=1)))  # a stream: its own connection
        store.close()
        return opened

    assert use(url) == [("5", (True, 10, 5, 4, 30_000))] * 2
    assert use(f"{url}?connect_timeout=8") == [("8", (True, 10, 5, 4, 30_000))] * 2
    monkeypatch.setenv("PGCONNECT_TIMEOUT", "9")
    assert use(url) == [("9", (True, 10, 5, 4, 30_000))] * 2
    monkeypatch.delenv("PGCONNECT_TIMEOUT")

    services = pg_service_file(tmp_path / "pg_service.conf", "aicost_ledger", url,
                               "connect_timeout=7\nkeepalives_idle=60\ntcp_user_timeout=120000\n")
    monkeypatch.setenv("PGSERVICEFILE", services)
    assert use("postgresql://?service=aicost_ledger") == [("7", (True, 60, 5, 4, 120_000))] * 2


@pytest.mark.parametrize("variable, option, value", [("PGCONNECT_TIMEOUT", "connect_timeout", "abc"),
                                                    ("PGCONNECT_TIMEOUT", "connect_timeout", ""),
                                                    ("PGPORT", "port", "abc")])
def test_a_malformed_libpq_variable_is_a_configuration_error_naming_it_not_the_url(monkeypatch, variable, option,
                                                                                  value):
    """A setting the URL does not make, malformed in libpq's environment: refused at configure time naming the
    setting and where it comes from. Before, PGCONNECT_TIMEOUT=abc escaped as psycopg's ProgrammingError (aicost's
    own connect_timeout used to hide the variable), and PGPORT=abc was called a malformed URL. PGCONNECT_TIMEOUT=""
    is set, as psycopg reads it (it refuses every connection for it: test_cache_pgvector.py checks that on the real
    server); aicost took it for unset and added its own connect_timeout, which hid it."""
    pytest.importorskip("psycopg")
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError) as caught:
        open_store("postgresql://ledger@127.0.0.1/aicost")
    message = str(caught.value)
    assert message.startswith("instrument(ledger=...)"), message
    assert f"malformed PostgreSQL setting '{option}'" in message and "environment variables" in message, message
    assert "malformed PostgreSQL ledger URL" not in message


def test_a_service_file_libpq_refuses_is_a_configuration_error_naming_its_path_and_line(pg_server, tmp_path,
                                                                                       monkeypatch):
    """A syntax error in the entry of the service the URL names made libpq refuse every connection, which the
    ledger took for an outage (LedgerUnavailable; the writer spilled and retried for ever). It is a
    ConfigurationError at configure time naming the file and the line, never the entry's password. A line libpq
    does not read (another entry's) is no error: the ledger opens."""
    from psycopg.conninfo import conninfo_to_dict
    from ledger_helpers import fresh_pg_database

    from aicost.ledger.store import LedgerUnavailable

    for variable in ("PGCONNECT_TIMEOUT", "PGSERVICE", "PGSERVICEFILE", "PGSYSCONFDIR"):
        monkeypatch.delenv(variable, raising=False)
    where = conninfo_to_dict(fresh_pg_database(pg_server))
    entry = "".join(f"{key}={where[key]}\n" for key in ("host", "port", "user", "dbname")) + "password=s3cr3t-pw\n"
    services = tmp_path / "pg_service.conf"
    monkeypatch.setenv("PGSERVICEFILE", str(services))
    services.write_text("[other]\nnot a setting\n[aicost_ledger]\n" + entry)
    open_store("postgresql://?service=aicost_ledger").close()
    services.write_text("# ours\n[aicost_ledger]\n" + entry + "connect_timeout = 7\n")
    with pytest.raises(ConfigurationError) as caught:
        open_store("postgresql://?service=aicost_ledger")
    message = str(caught.value)
    assert message.startswith("instrument(ledger=...)") and "libpq refuses every connection" in message, message
    assert repr(str(services)) in message and "line 8" in message and "'aicost_ledger'" in message, message
    assert "s3cr3t" not in message
    with pytest.raises(LedgerUnavailable):  # the writer's reopen (the URL was accepted before): the ledger lost
        open_store("postgresql://?service=aicost_ledger", reopen=True)


def test_an_empty_pgservice_is_a_configuration_error_naming_it(pg_server, tmp_path, monkeypatch):
    """PGSERVICE="" names the service "" to libpq, which (with no entry "[]") refuses every connection; aicost took
    the variable for unset and the ledger for an outage (LedgerUnavailable: the writer spilled and retried for
    ever). It is a ConfigurationError at configure time naming PGSERVICE; with an entry "[]" the ledger opens."""
    from ledger_helpers import fresh_pg_database

    for variable in ("PGCONNECT_TIMEOUT", "PGSERVICE", "PGSERVICEFILE", "PGSYSCONFDIR"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.pg_service.conf yet
    url = fresh_pg_database(pg_server)
    monkeypatch.setenv("PGSERVICE", "")
    with pytest.raises(ConfigurationError) as caught:
        open_store(url)
    message = str(caught.value)
    assert message.startswith("instrument(ledger=...)") and "libpq refuses every connection" in message, message
    assert "PGSERVICE is set but empty" in message, message
    pg_service_file(tmp_path / ".pg_service.conf", "", url, "keepalives_idle=60\n")
    open_store(url).close()


def test_a_pgservicefile_libpq_cannot_open_is_a_configuration_error_naming_it(pg_server, tmp_path, monkeypatch):
    """A PGSERVICEFILE that is not there makes libpq refuse every connection naming a service ('service file "..."
    not found'), even with the service's entry in PGSYSCONFDIR's file; aicost took it for a file that adds nothing,
    and the ledger for an outage. It is a ConfigurationError at configure time naming PGSERVICEFILE and the path,
    never the entry's password; a directory (libpq reads it as empty) is no error, the system file's entry is used."""
    from ledger_helpers import fresh_pg_database

    for variable in ("PGCONNECT_TIMEOUT", "PGSERVICE", "PGSERVICEFILE", "PGSYSCONFDIR"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    system = tmp_path / "etc"
    system.mkdir()
    pg_service_file(system / "pg_service.conf", "aicost_ledger", fresh_pg_database(pg_server), "password=s3cr3t-pw\n")
    monkeypatch.setenv("PGSYSCONFDIR", str(system))
    missing = tmp_path / "missing" / "pg_service.conf"
    monkeypatch.setenv("PGSERVICEFILE", str(missing))
    with pytest.raises(ConfigurationError) as caught:
        open_store("postgresql://?service=aicost_ledger")
    message = str(caught.value)
    assert message.startswith("instrument(ledger=...)") and "libpq refuses every connection" in message, message
    assert "PGSERVICEFILE" in message and repr(str(missing)) in message, message
    assert "s3cr3t" not in message
    monkeypatch.setenv("PGSERVICEFILE", str(tmp_path))  # a directory: empty to libpq, the system file's entry
    open_store("postgresql://?service=aicost_ledger").close()
