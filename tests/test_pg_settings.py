"""The rule by which aicost adds its libpq settings (aicost._pg.unless_set): each only where the user sets it nowhere
libpq reads it: the URL, the environment, the URL's connection service entry. The effect on real connections is
tested with the stores (test_ledger_store.py, test_cache_pgvector.py)."""

from __future__ import annotations

import pytest

psycopg = pytest.importorskip("psycopg")

from aicost import _pg  # noqa: E402

DEFAULTS = {"connect_timeout": 5, "keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5,
            "keepalives_count": 4, "tcp_user_timeout": 30_000}
_LIBPQ_ENVIRONMENT = ("PGCONNECT_TIMEOUT", "PGSERVICE", "PGSERVICEFILE", "PGSYSCONFDIR")


@pytest.fixture(autouse=True)
def _private_libpq_environment(tmp_path, monkeypatch):
    """No libpq variable of the machine's, and a home of this test's own (libpq 18 reads ``HOME`` too)."""
    for variable in _LIBPQ_ENVIRONMENT:
        monkeypatch.delenv(variable, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


def _added(url: str) -> set[str]:
    return set(_pg.unless_set(DEFAULTS, psycopg.conninfo.conninfo_to_dict(url)))


def test_pgconnect_timeout_wins_over_aicosts_connect_timeout(monkeypatch):
    """The rule looked at the URL only: a PGCONNECT_TIMEOUT (libpq's variable for connect_timeout; the keepalives
    and tcp_user_timeout have none) was overridden by the stores' connect_timeout."""
    monkeypatch.setenv("PGCONNECT_TIMEOUT", "20")
    assert _added("postgresql://u@127.0.0.1/db") == set(DEFAULTS) - {"connect_timeout"}
    assert _added("postgresql://u@127.0.0.1/db?keepalives_idle=60") == set(DEFAULTS) - {"connect_timeout",
                                                                                        "keepalives_idle"}
    monkeypatch.setenv("PGCONNECT_TIMEOUT", "")  # set but empty: set (psycopg refuses it, refuse_malformed)
    assert _added("postgresql://u@127.0.0.1/db") == set(DEFAULTS) - {"connect_timeout"}


def test_the_entry_of_the_service_the_url_names_wins(tmp_path, monkeypatch, _private_libpq_environment):
    """A pg_service.conf entry's keepalives or connect_timeout were overridden: the rule looked at the URL's
    parameters only. The entry is found where libpq finds it: the per-user file (PGSERVICEFILE, else
    ~/.pg_service.conf), else PGSYSCONFDIR's pg_service.conf; the service is the URL's, else PGSERVICE."""
    home = _private_libpq_environment
    (home / ".pg_service.conf").write_text("# mine\n[ledger]\nkeepalives_idle=60\n")
    assert _added("postgresql:///?service=ledger") == set(DEFAULTS) - {"keepalives_idle"}
    assert _added("service=ledger") == set(DEFAULTS) - {"keepalives_idle"}  # a DSN too
    assert _added("postgresql:///?service=other") == set(DEFAULTS)  # no such entry
    assert _added("postgresql://u@127.0.0.1/db") == set(DEFAULTS)  # no service named
    monkeypatch.setenv("PGSERVICE", "ledger")
    assert _added("postgresql://u@127.0.0.1/db") == set(DEFAULTS) - {"keepalives_idle"}
    monkeypatch.delenv("PGSERVICE")

    chosen = tmp_path / "services.conf"
    chosen.write_text("[ledger]\ntcp_user_timeout=120000\nconnect_timeout=7\n")
    monkeypatch.setenv("PGSERVICEFILE", str(chosen))  # instead of ~/.pg_service.conf
    assert _added("postgresql:///?service=ledger") == set(DEFAULTS) - {"tcp_user_timeout", "connect_timeout"}

    system = tmp_path / "etc"
    system.mkdir()
    (system / "pg_service.conf").write_text("[ledger]\nkeepalives_count=9\n[shared]\nkeepalives=0\n")
    monkeypatch.setenv("PGSYSCONFDIR", str(system))
    # the user's entry hides the system file's; a service the user's file lacks is the system file's
    assert _added("postgresql:///?service=ledger") == set(DEFAULTS) - {"tcp_user_timeout", "connect_timeout"}
    assert _added("postgresql:///?service=shared") == set(DEFAULTS) - {"keepalives"}


@pytest.mark.parametrize("text, keys", [
    ("[a]\nkeepalives_idle=1\n[svc]\nkeepalives_count=2\n[b]\nkeepalives_interval=3\n", {"keepalives_count"}),
    ("  [svc]   # a comment after the header\n\n   keepalives_idle=60   \n#connect_timeout=1\n", {"keepalives_idle"}),
    ("[svc]\nkeepalives=1\n[svc]\ntcp_user_timeout=9\n", {"keepalives"}),  # the first entry only
    ("[svcx]\nkeepalives=1\n[svc]\nkeepalives_idle=2\n[xsvc]\nkeepalives_count=3\n", {"keepalives_idle"}),
    ("[svc]\r\nkeepalives_interval=7\r\n", {"keepalives_interval"}),
])
def test_a_service_entry_is_read_as_libpq_reads_it(text, keys, tmp_path, monkeypatch):
    """What the rule finds in a service file is what libpq itself takes from it (PQconndefaults, which reads
    PGSERVICE's entry)."""
    (tmp_path / "services.conf").write_text(text, newline="")
    monkeypatch.setenv("PGSERVICEFILE", str(tmp_path / "services.conf"))
    monkeypatch.setenv("PGSERVICE", "svc")
    libpq = {option.keyword.decode() for option in psycopg.pq.Conninfo.get_defaults()
             if option.keyword.decode() in DEFAULTS and option.val is not None}
    assert libpq == keys
    assert _added("postgresql://u@127.0.0.1/db") == set(DEFAULTS) - keys


def test_a_service_file_that_reads_as_empty_adds_nothing_and_raises_nothing(tmp_path, monkeypatch):
    """The settings are found as before with a service file libpq reads as empty or skips: a directory (libpq's
    fopen() opens it, fgets() reads nothing), bytes that are not UTF-8, a line without ``=`` (which the stores
    refuse, _pg.refuse_malformed, not this rule). A readable entry is still found: the system file's, when the
    user's file is a directory. (A PGSERVICEFILE that cannot be opened is refused:
    test_a_service_file_libpq_cannot_open_is_refused_where_libpq_refuses_it.)"""
    system = tmp_path / "etc"
    system.mkdir()
    (system / "pg_service.conf").write_text("[svc]\nkeepalives_idle=60\n")
    monkeypatch.setenv("PGSYSCONFDIR", str(system))
    monkeypatch.setenv("PGSERVICEFILE", str(tmp_path))  # a directory
    assert _added("postgresql:///?service=svc") == set(DEFAULTS) - {"keepalives_idle"}
    assert _pg.service_refusal({"service": "svc"}) is None
    monkeypatch.delenv("PGSYSCONFDIR")
    assert _added("postgresql:///?service=svc") == set(DEFAULTS)
    bad = tmp_path / "bad.conf"
    bad.write_bytes(b"[svc]\n\xff\xfe not a setting\nkeepalives_count=\xff2\n")
    monkeypatch.setenv("PGSERVICEFILE", str(bad))
    assert _added("postgresql:///?service=svc") == set(DEFAULTS) - {"keepalives_count"}


def _socket_file(path):
    """A Unix socket bound at ``path``: there for stat(), but open() fails (ENXIO), even for root."""
    import socket

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    return sock


@pytest.mark.parametrize("where, make, refused", [
    ("PGSERVICEFILE", "missing", True),
    ("PGSERVICEFILE", "empty", True),
    ("PGSERVICEFILE", "through a file", True),
    ("PGSERVICEFILE", "symlink loop", True),
    ("PGSERVICEFILE", "socket", True),
    ("PGSERVICEFILE", "directory", False),  # empty to libpq: the system file's entry is used
    ("PGSYSCONFDIR", "socket", True),
    ("PGSYSCONFDIR", "directory", False),
    ("PGSYSCONFDIR", "missing", False),  # skipped; the service is then not found, left to libpq
    ("PGSYSCONFDIR", "symlink loop", False),  # skipped by libpq 13+, refused by an older one: left to libpq
    ("HOME", "socket", False),  # refused by libpq, but left to it: before 18 libpq's home is not HOME's
    ("HOME", "missing", False),
])
@pytest.mark.server("postgres")
def test_a_service_file_libpq_cannot_open_is_refused_where_libpq_refuses_it(
        pg_server, tmp_path, monkeypatch, _private_libpq_environment, where, make, refused):
    """A PGSERVICEFILE that cannot be opened was taken for one that adds nothing (aicost went on to the system
    file), while libpq refuses every connection that names a service ('service file "..." not found'), even with
    the entry in the system file. service_refusal now says so, naming the variable and the path; aicost never
    refuses what libpq takes (checked against libpq itself, on the real server). A file libpq stat()s first
    (~/.pg_service.conf, PGSYSCONFDIR's) is refused only when it is there but cannot be opened, and only the system
    file's (module docstring of aicost._pg)."""
    from servers import pg_service_file

    home = _private_libpq_environment
    system = tmp_path / "etc"
    system.mkdir()
    target = {"PGSERVICEFILE": tmp_path / "services.conf", "PGSYSCONFDIR": tmp_path / "sys" / "pg_service.conf",
              "HOME": home / ".pg_service.conf"}[where]
    target.parent.mkdir(exist_ok=True)
    held = None
    if make == "empty":
        target = ""
    elif make == "through a file":
        (tmp_path / "plain").write_text("")
        target = tmp_path / "plain" / "services.conf"
    elif make == "symlink loop":
        target.symlink_to(target)
    elif make == "socket":
        held = _socket_file(target)
    elif make == "directory":
        target.mkdir()
    try:
        if where == "PGSERVICEFILE":
            monkeypatch.setenv("PGSERVICEFILE", str(target))
            pg_service_file(system / "pg_service.conf", "svc", pg_server, "")  # the entry, where libpq may go on
            monkeypatch.setenv("PGSYSCONFDIR", str(system))
        elif where == "PGSYSCONFDIR":
            monkeypatch.setenv("PGSYSCONFDIR", str(target.parent))
            if make == "directory":  # libpq reads it as empty: the user's file then has the entry
                pg_service_file(home / ".pg_service.conf", "other", pg_server, "")
        libpq = libpq_refusal("service=svc")
        refusal = _pg.service_refusal({"service": "svc"})
        if refused:
            assert libpq is not None and f'service file "{target}" not found' in libpq, libpq
            assert refusal is not None and repr(str(target)) in refusal and where in refusal, refusal
            assert "cannot be opened" in refusal, refusal
            assert _pg.service_refusal({}) is None  # no service named: libpq opens no service file
            assert libpq_refusal(pg_server) is None
        else:
            assert refusal is None, (refusal, libpq)
            if where == "PGSERVICEFILE":
                assert libpq is None, libpq
    finally:
        if held is not None:
            held.close()


def libpq_refusal(url: str) -> str | None:
    """What libpq says when it refuses to connect with ``url`` (a URL or a conninfo string), on the real server;
    None when it connects."""
    try:
        psycopg.connect(url, connect_timeout=10).close()
        return None
    except psycopg.OperationalError as exc:
        return str(exc)


_LONG = "#" + "x" * 1021 + "\n"  # 1023 bytes with its newline: one more than libpq reads into its line buffer


@pytest.mark.parametrize("name, text, line", [
    ("a line without '=' before any entry", "not a setting\n[svc]\n{good}", None),
    ("a line without '=' in another entry", "[other]\nnot a setting\n[svc]\n{good}", None),
    ("a line without '=' in an entry after", "[svc]\n{good}[other]\nnot a setting\n", None),
    ("an unknown keyword in another entry", "[other]\nbogus=1\n[svc]\n{good}", None),
    ("an unterminated header of another entry", "[other\nnot a setting\n[svc]\n{good}", None),
    ("a header with text after its ]", "[svc] # ours\n{good}", None),
    ("a long line after the entry", "[svc]\n{good}[other]\n" + _LONG, None),
    ("a line of 1022 bytes", "#" + "x" * 1020 + "\n[svc]\n{good}", None),
    ("a line without '=' in the entry", "[svc]\n{good}not a setting\n", 6),
    ("an unknown keyword in the entry", "[svc]\n{good}bogus=1\n", 6),
    ("a keyword with a space before '='", "[svc]\n{good}connect_timeout =7\n", 6),
    ("an empty keyword", "[svc]\n{good}=7\n", 6),
    ("a nested service", "[svc]\n{good}service=other\n", 6),
    ("a long line before the entry", _LONG + "[svc]\n{good}", 1),
    ("a long line in the entry", "[svc]\n{good}" + _LONG, 6),
    ("the first of two errors", "# top\n[svc]\nnot a setting\n{good}bogus=1\n", 3),
])
@pytest.mark.server("postgres")
def test_a_service_file_is_refused_where_libpq_refuses_it(pg_server, tmp_path, monkeypatch, _private_libpq_environment,
                                                         name, text, line):
    """A service file with a syntax error was found by libpq at every connection (the ledger an outage, the cache a
    miss at each call). aicost now tells, before connecting, what libpq refuses for every connection to the
    service: a syntax error in the service's own entry, a line too long before it ends (never a line libpq does not
    read: another entry's, or one after the service's). Checked against libpq itself on the real server."""
    where = psycopg.conninfo.conninfo_to_dict(pg_server)
    good = "".join(f"{key}={where[key]}\n" for key in ("host", "port", "user", "dbname"))
    path = tmp_path / "services.conf"
    path.write_text(text.replace("{good}", good))
    monkeypatch.setenv("PGSERVICEFILE", str(path))
    libpq = libpq_refusal("service=svc")
    refusal = _pg.service_refusal({"service": "svc"})
    if line is None:
        assert libpq is None and refusal is None, (libpq, refusal)
    else:
        assert libpq is not None and f"service file \"{path}\"" in libpq, libpq
        assert f"line {line}" in libpq, libpq
        assert refusal is not None and repr(str(path)) in refusal and f"line {line}" in refusal, refusal
    monkeypatch.delenv("PGSERVICEFILE")
    monkeypatch.setenv("PGSERVICE", "svc")  # the service PGSERVICE names, in ~/.pg_service.conf: the same verdict
    (_private_libpq_environment / ".pg_service.conf").write_text(text.replace("{good}", good))
    assert (_pg.service_refusal({}) is None) == (line is None)


@pytest.mark.server("postgres")
def test_an_empty_service_name_is_a_service_name(pg_server, tmp_path, monkeypatch, _private_libpq_environment):
    """PGSERVICE="" (or a URL's empty service=) was taken for no service at all. libpq takes it for the name of a
    service: an entry headed ``[]`` (the URL's wins over PGSERVICE even when empty), whose settings win over
    aicost's; without one libpq refuses every connection ('definition of service "" not found'), which
    service_refusal now says (stores refuse it at configure time). Checked against libpq on the real server."""
    from servers import pg_service_file

    monkeypatch.setenv("PGSERVICE", "")
    assert 'definition of service "" not found' in (libpq_refusal(pg_server) or "")
    refusal = _pg.service_refusal(psycopg.conninfo.conninfo_to_dict(pg_server))
    assert refusal is not None and "PGSERVICE is set but empty" in refusal, refusal
    assert _added(pg_server) == set(DEFAULTS)

    pg_service_file(_private_libpq_environment / ".pg_service.conf", "", pg_server, "keepalives_idle=60\n")
    assert libpq_refusal(pg_server) is None  # the entry "[]" is the empty name's
    assert _pg.service_refusal(psycopg.conninfo.conninfo_to_dict(pg_server)) is None
    assert _added(pg_server) == set(DEFAULTS) - {"keepalives_idle"}
    system = tmp_path / "etc"
    system.mkdir()
    (_private_libpq_environment / ".pg_service.conf").rename(system / "pg_service.conf")
    monkeypatch.setenv("PGSYSCONFDIR", str(system))  # the system file's "[]" too
    assert libpq_refusal(pg_server) is None
    assert _added(pg_server) == set(DEFAULTS) - {"keepalives_idle"}
    monkeypatch.delenv("PGSYSCONFDIR")

    pg_service_file(_private_libpq_environment / ".pg_service.conf", "svc", pg_server, "keepalives_idle=60\n")
    monkeypatch.setenv("PGSERVICE", "svc")
    url = pg_server + "?service="  # the URL's empty service= wins over PGSERVICE's
    assert 'definition of service "" not found' in (libpq_refusal(url) or "")
    refusal = _pg.service_refusal(psycopg.conninfo.conninfo_to_dict(url))
    assert refusal is not None and "service= is empty" in refusal, refusal
    assert _added(url) == set(DEFAULTS)
    assert libpq_refusal(pg_server) is None and _added(pg_server) == set(DEFAULTS) - {"keepalives_idle"}


@pytest.mark.server("postgres")
def test_a_service_name_that_is_no_utf_8_is_looked_up_as_its_bytes(pg_server, monkeypatch,
                                                                    _private_libpq_environment):
    """PGSERVICE holding a byte that is no UTF-8 (Python's os.environ has it as a lone surrogate) made aicost's
    look-up of the entry raise UnicodeEncodeError from every store's configure, for a setting libpq accepts: libpq
    compares the name's bytes with the header's. Looked up as those bytes now. Checked against libpq."""
    from psycopg.conninfo import conninfo_to_dict

    where = conninfo_to_dict(pg_server)
    entry = "".join(f"{key}={where[key]}\n" for key in ("host", "port", "user", "dbname")) + "keepalives_idle=60\n"
    (_private_libpq_environment / ".pg_service.conf").write_bytes(b"[\xff]\n" + entry.encode())
    monkeypatch.setenv("PGSERVICE", "\udcff")  # the byte 0xff, as os.environ decodes it
    url = f"postgresql://{where['host']}:{where['port']}/{where['dbname']}"
    assert libpq_refusal(url) is None  # libpq finds the entry (else: service not found)
    assert _pg.service_refusal(conninfo_to_dict(url)) is None
    assert _added(url) == set(DEFAULTS) - {"keepalives_idle"}


def test_an_empty_pgsysconfdir_is_the_root_directory(tmp_path, monkeypatch):
    """PGSYSCONFDIR="" makes libpq read /pg_service.conf ("" + "/pg_service.conf"); aicost read pg_service.conf in
    the working directory instead, which libpq never reads (PQconndefaults: what libpq takes for PGSERVICE)."""
    (tmp_path / "pg_service.conf").write_text("[svc]\nkeepalives_idle=60\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PGSYSCONFDIR", "")
    monkeypatch.setenv("PGSERVICE", "svc")
    libpq = {option.keyword.decode() for option in psycopg.pq.Conninfo.get_defaults()
             if option.keyword.decode() in DEFAULTS and option.val is not None}
    assert libpq == set()
    assert _added("postgresql://u@127.0.0.1/db") == set(DEFAULTS)
    assert _added("postgresql:///?service=svc") == set(DEFAULTS)
