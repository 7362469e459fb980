"""libpq settings aicost adds to a user's PostgreSQL connection, the user's own winning.

One place for the rule, so that every store that connects to PostgreSQL (the ledger, the pgvector cache) adds its
settings the same way: only those the installed libpq knows, and only those the user sets nowhere libpq reads
them. A keyword argument of ``psycopg.connect`` wins over all of those places, so aicost passes a setting only
when it finds it in none of them:

* the URL or DSN itself (``?keepalives_idle=60``);
* the setting's environment variable: of aicost's settings only ``connect_timeout`` has one,
  ``PGCONNECT_TIMEOUT`` (the keepalives and ``tcp_user_timeout`` have none); set but empty counts as unset;
* the connection service the URL names (``service=``, else ``PGSERVICE``): its entry in the per-user service
  file (``PGSERVICEFILE``, else ``~/.pg_service.conf``) or, when that file has no such entry, in the system-wide
  ``pg_service.conf`` of ``PGSYSCONFDIR``. libpq's built-in system directory, used when ``PGSYSCONFDIR`` is unset,
  is not known to Python and is not read.

A service file aicost cannot read or parse adds nothing (aicost's settings stay): libpq reads it again when it
connects and reports what is wrong with it. The settings are looked up once, when a store is configured.
"""

from __future__ import annotations

import os
import re
from typing import Any, Mapping

from .errors import ConfigurationError

# libpq's environment variables for the settings aicost adds (libpq docs, "Environment Variables")
_ENVIRONMENT = {"connect_timeout": "PGCONNECT_TIMEOUT"}
# The setting a refusal names: libpq's 'for connection option "port"', psycopg's 'bad value for connect_timeout'
_OPTION_NAMED = re.compile(r'option "(\w+)"|bad value for (\w+)')


def unless_set(defaults: Mapping[str, Any], url_params: Mapping[str, Any]) -> dict[str, Any]:
    """``defaults`` as keyword arguments of ``psycopg.connect`` (which win over every other source), less what
    the user sets (module docstring): in the URL (``url_params``, :func:`psycopg.conninfo.conninfo_to_dict`), in
    the environment, in the URL's service entry. Without ``tcp_user_timeout`` for a libpq older than 12, which
    refuses an option it does not know."""
    import psycopg

    given = set(url_params) | service_settings(url_params)
    given.update(key for key, variable in _ENVIRONMENT.items() if os.environ.get(variable))
    added = {key: value for key, value in defaults.items() if key not in given}
    if psycopg.pq.version() < 120000:
        added.pop("tcp_user_timeout", None)
    return added


def refuse_malformed(url_params: Mapping[str, Any], added: Mapping[str, Any], *, setting: str,
                     url_named: str) -> None:
    """Raise the :class:`ConfigurationError` of :func:`malformed` for a setting every connection with
    ``url_params`` and ``added`` (:func:`unless_set`) would be refused for before reaching any server, found
    without connecting: a ``connect_timeout`` psycopg cannot read (the URL's or ``PGCONNECT_TIMEOUT``; psycopg
    3.2+ reads it itself, before libpq). So a store that connects only when first used (the pgvector cache) is
    refused at configure time like one that connects at once (the ledger)."""
    import psycopg

    timeout_of = getattr(psycopg.conninfo, "timeout_from_conninfo", None)  # psycopg 3.2+
    if timeout_of is not None:
        try:
            timeout_of({**url_params, **added})  # what psycopg.connect(url, **added) reads
        except psycopg.ProgrammingError as exc:
            raise malformed(str(exc), url_params, setting=setting, url_named=url_named) from None


def malformed(message: str, url_params: Mapping[str, Any], *, setting: str, url_named: str) -> ConfigurationError:
    """libpq (or psycopg) refusing a setting before reaching any server (``message``, its first line quoted): the
    URL's (``url_named``: how the error names it, never with a password), or one the URL does not set (libpq's
    ``PG*`` environment variables, the service file), which the error says rather than blame the URL."""
    option = _OPTION_NAMED.search(message)
    name = option and (option.group(1) or option.group(2))
    if name and name not in url_params:
        where = (f"malformed PostgreSQL setting {name!r}, which the {url_named} does not set (it comes from libpq's "
                 "PG* environment variables or service file)")
    else:
        where = f"malformed PostgreSQL {url_named}"
    return ConfigurationError(f"{setting}: {where}: {message.strip().splitlines()[0]}")


def service_settings(url_params: Mapping[str, Any]) -> set[str]:
    """The keywords the entry of the connection service ``url_params`` names (or ``PGSERVICE``) sets, found as
    libpq finds it: in the per-user file (``servicefile=`` of a libpq that has it, ``PGSERVICEFILE``,
    ``~/.pg_service.conf``), else in ``PGSYSCONFDIR``'s ``pg_service.conf``. Empty without a service, or when no
    file aicost can read has its entry."""
    env = os.environ
    service = url_params.get("service") or env.get("PGSERVICE")
    if not service:
        return set()
    user_file = url_params.get("servicefile") or env.get("PGSERVICEFILE")
    files = [user_file if user_file is not None else os.path.join(os.path.expanduser("~"), ".pg_service.conf")]
    if env.get("PGSYSCONFDIR") is not None:
        files.append(os.path.join(env["PGSYSCONFDIR"], "pg_service.conf"))
    for path in files:
        keys = _entry(path, str(service))
        if keys is not None:  # the user's entry, if it has one, hides the system file's
            return keys
    return set()


def _entry(path: str, service: str) -> set[str] | None:
    """The keywords of the first ``[service]`` section of the INI file at ``path``, read as libpq reads it (a
    line is ``keyword=value`` as written, ``#`` begins a comment line); None if the file has no such section or
    cannot be read."""
    try:
        with open(path, encoding="utf-8", errors="replace") as file:
            text = file.read()
    except (OSError, ValueError):  # missing, unreadable, a directory, a NUL in the path
        return None
    keys: set[str] | None = None
    for line in text.split("\n"):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            if keys is not None:  # the end of the entry
                break
            if line.startswith(f"[{service}]"):
                keys = set()
        elif keys is not None:
            key, equals, _ = line.partition("=")
            if equals:
                keys.add(key)
    return keys
