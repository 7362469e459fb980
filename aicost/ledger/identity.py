"""Which ledger a URL names, as one text however the URL spells it: the background writer names its spill files
after it, so a process that spelt the URL otherwise (and a later version of the app that does) adopts and replays
the rows an earlier one spilled, and no two ledgers share a spill file.

A SQLite ledger is its file. A PostgreSQL ledger is the server, the database and the role whose tables it is
(the default ``search_path`` begins with the role's own schema), resolved as libpq resolves them: the ``PG*``
environment variables, then libpq's defaults (port 5432, the OS user, a database named after the role), so
``postgresql://u@127.0.0.1:5432/db`` and ``postgresql://u:secret@localhost/db?sslmode=disable`` are one ledger.
What only changes how the connection is made (a password, TLS settings, timeouts, ``application_name``) is left
out, a password above all: the identity is hashed into a file name, but it must not hold a secret in any case.
Host names are not resolved: a DNS lookup could hold up the app's start, and a name's addresses change (a
failover); the loopback names are one host, as the spill files are on this host. ``options`` (which can set a
``search_path``) and ``service`` (a ``pg_service.conf`` entry) are kept as written: two ledgers must never share
a spill, while two spellings that are not merged only keep separate files, each replayed by writers of its
spelling, as every URL's were before."""

from __future__ import annotations

import getpass
import os

__all__ = ["ledger_identity"]

_SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
_POSTGRES_SCHEMES = ("postgresql://", "postgres://", "postgresql+psycopg://")
_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1", "[::1]", "localhost.localdomain"})


def ledger_identity(url: str | os.PathLike[str]) -> str:
    """The ledger ``url`` names, as one text however it is spelt: for SQLite, ``sqlite:///`` and the file's absolute
    path (a relative path names another file in each working directory; ``x.db`` and ``sqlite:///x.db`` are the
    same file); for PostgreSQL, ``postgresql://ROLE@HOST:PORT/DATABASE`` as libpq resolves them (module docstring),
    never a password; else the URL."""
    text = (os.fspath(url) if isinstance(url, os.PathLike) else str(url)).strip()
    lowered = text.lower()
    if lowered.startswith("sqlite:///"):
        path = text[len("sqlite:///"):]
    elif "://" not in text and lowered.endswith(_SQLITE_SUFFIXES):
        path = text
    elif lowered.startswith(_POSTGRES_SCHEMES):
        return _postgres_identity(text)
    else:
        return text
    return f"sqlite:///{os.path.realpath(path)}"


def _postgres_identity(url: str) -> str:
    try:
        from psycopg.conninfo import conninfo_to_dict

        params = conninfo_to_dict(url.replace("postgresql+psycopg://", "postgresql://", 1))
    except Exception:  # no psycopg, or a URL libpq cannot parse: the store refuses it; its words, never its password
        from .._urls import redact_url

        return redact_url(url)
    env = os.environ

    def given(key: str, variable: str) -> str:
        return str(params.get(key) or env.get(variable) or "")

    role = given("user", "PGUSER") or _os_user()
    hosts = given("hostaddr", "PGHOSTADDR") or given("host", "PGHOST")
    host = ",".join(_host(name) for name in hosts.split(","))
    port = given("port", "PGPORT") or "5432"
    database = given("dbname", "PGDATABASE") or role
    identity = f"postgresql://{role}@{host}:{port}/{database}"
    extras = [f"{key}={value}" for key, value in (("options", given("options", "PGOPTIONS")),
                                                 ("service", given("service", "PGSERVICE"))) if value]
    return identity + ("?" + "&".join(extras) if extras else "")


def _host(name: str) -> str:
    """A host as libpq would reach it: a name in lowercase without a trailing dot, the loopback names as one, a
    Unix socket directory as its path (an empty name: libpq's default socket directory)."""
    name = name.strip()
    if name.startswith("/"):
        return os.path.normpath(name)
    name = name.lower().rstrip(".")
    return "localhost" if name in _LOOPBACK else name


def _os_user() -> str:
    """libpq's default role: the OS user's name."""
    try:
        return getpass.getuser()
    except Exception:  # no name for this uid (a container): the same for every URL of this process
        return ""
