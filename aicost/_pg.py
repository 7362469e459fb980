"""libpq settings aicost adds to a user's PostgreSQL connection, the user's own winning.

One place for the rule, so that every store that connects to PostgreSQL (the ledger, the pgvector cache) adds its
settings the same way: only those the installed libpq knows, and only those the user sets nowhere libpq reads
them. A keyword argument of ``psycopg.connect`` wins over all of those places, so aicost passes a setting only
when it finds it in none of them:

* the URL or DSN itself (``?keepalives_idle=60``);
* the setting's environment variable: of aicost's settings only ``connect_timeout`` has one,
  ``PGCONNECT_TIMEOUT`` (the keepalives and ``tcp_user_timeout`` have none); set but empty is set, as psycopg
  reads it (and refuses it: :func:`refuse_malformed`);
* the connection service the URL names (``service=``, else ``PGSERVICE``; set but empty, either names the
  service "", whose entry is headed ``[]``): its entry in the per-user service
  file (``PGSERVICEFILE``, else ``~/.pg_service.conf``) or, when that file has no such entry, in the system-wide
  ``pg_service.conf`` of ``PGSYSCONFDIR``. libpq's built-in system directory, used when ``PGSYSCONFDIR`` is unset,
  is not known to Python and is not read.

A service file libpq reads as empty (a directory) adds nothing, and one libpq skips (a ``~/.pg_service.conf`` or
system file that is not there) adds nothing. One libpq refuses for every connection that names a service (a
``PGSERVICEFILE`` it cannot open, a syntax error in the service's entry, an empty service name without its entry:
:func:`service_refusal`) is a :class:`ConfigurationError` when a store is configured (:func:`refuse_malformed`).
The settings are looked up once, when a store is configured.
"""

from __future__ import annotations

import functools
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
    given.update(key for key, variable in _ENVIRONMENT.items() if variable in os.environ)  # "" too
    added = {key: value for key, value in defaults.items() if key not in given}
    if psycopg.pq.version() < 120000:
        added.pop("tcp_user_timeout", None)
    return added


def refuse_malformed(url_params: Mapping[str, Any], added: Mapping[str, Any], *, setting: str,
                     url_named: str) -> None:
    """Raise the :class:`ConfigurationError` of :func:`malformed` for a setting every connection with
    ``url_params`` and ``added`` (:func:`unless_set`) would be refused for before reaching any server, found
    without connecting: a ``connect_timeout`` psycopg cannot read (the URL's or ``PGCONNECT_TIMEOUT``, empty
    included; psycopg 3.2+ reads it itself, before libpq), a service file libpq refuses (:func:`service_refusal`).
    So a store that connects only when first used (the pgvector cache) is refused at configure time like one that
    connects at once (the ledger)."""
    import psycopg

    timeout_of = getattr(psycopg.conninfo, "timeout_from_conninfo", None)  # psycopg 3.2+
    if timeout_of is not None:
        try:
            timeout_of({**url_params, **added})  # what psycopg.connect(url, **added) reads
        except psycopg.ProgrammingError as exc:
            raise malformed(str(exc), url_params, setting=setting, url_named=url_named) from None
    refusal = service_refusal(url_params)
    if refusal is not None:
        raise ConfigurationError(f"{setting}: libpq refuses every connection to the {url_named}: {refusal}")


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
    return _service_entry(url_params)[0]


def service_refusal(url_params: Mapping[str, Any]) -> str | None:
    """What libpq says when it refuses every connection with ``url_params`` for the service file it reads, as
    :func:`service_settings` finds it: a syntax error in the entry of the service (a line without ``=``, one whose
    text before ``=`` is not a libpq keyword as written, a nested ``service=``), or a line of 1023 bytes or more
    before the entry ends (libpq reads a line into 1024 bytes). None if libpq takes the file (a line libpq does
    not read, in another entry or after the service's, is never an error), or when aicost cannot tell: an ``ldap``
    line (libpq asks the LDAP server), a service whose entry it does not find (it may be in libpq's built-in system
    directory), unless its name is empty (``PGSERVICE=""``, an empty ``service=``: libpq's entry ``[]``, refused
    when aicost does not find it, :func:`_service_entry` says why). A service file libpq cannot open
    (:func:`_open_refusal`): the one ``PGSERVICEFILE`` (or ``servicefile=``) names, which libpq opens without
    looking first, when it is not there, not a file (a directory reads as empty: no error) or not readable;
    ``PGSYSCONFDIR``'s when it is there (``stat()`` finds it) but cannot be opened. Names the variable and the
    file's path and the line, never a line's text."""
    return _service_entry(url_params)[1]


def _service_entry(url_params: Mapping[str, Any]) -> tuple[set[str], str | None]:
    env = os.environ
    # As libpq: the URL's service= if it has one, else PGSERVICE; either one set but empty names the service ""
    service = str(url_params["service"]) if "service" in url_params else env.get("PGSERVICE")
    if service is None:
        return set(), None
    user_file = url_params.get("servicefile") or env.get("PGSERVICEFILE")
    named = "servicefile=" if url_params.get("servicefile") else "PGSERVICEFILE"
    # (path, how an error names it, whether libpq opens it without stat() first)
    files = [(user_file, named, True) if user_file is not None
             else (os.path.join(os.path.expanduser("~"), ".pg_service.conf"), "~/.pg_service.conf", False)]
    if env.get("PGSYSCONFDIR") is not None:  # libpq's "%s/pg_service.conf": an empty PGSYSCONFDIR is "/"
        files.append((f"{env['PGSYSCONFDIR']}/pg_service.conf", "PGSYSCONFDIR", False))
    for path, variable, opened in files:
        try:
            keys, refusal = _entry(path, service)
        except OSError as exc:
            refusal = _open_refusal(path, exc, opened=opened, named=variable)
            if refusal is None:
                continue  # libpq skips it, or aicost cannot tell
            return set(), f"{refusal} (the file libpq reads for the service {service!r})"
        if keys is not None or refusal is not None:  # the user's entry, if it has one, hides the system file's
            return keys or set(), refusal and f"{refusal} (the file libpq reads for the service {service!r})"
    if not service:
        # The empty name is a service's name to libpq: an entry headed "[]", which nobody writes on purpose, while
        # an empty variable is a common slip (export PGSERVICE=) that makes libpq refuse every connection. So,
        # unlike a named service (which may well be in libpq's built-in system directory, unknown to Python), it
        # is refused when no file aicost reads has it.
        named = "service= is empty" if "service" in url_params else "PGSERVICE is set but empty"
        return set(), (f'{named}, which libpq takes for the name of a service, "": no service file aicost reads '
                       'has its entry ("[]"), and libpq refuses every connection without one (definition of '
                       'service "" not found); name a service or leave it unset')
    return set(), None


# libpq reads a line with fgets() into 1024 bytes: a line of 1023 bytes or more (its newline counted) is refused
_LINE_BYTES = 1023


# libpq copies a service file's path into MAXPGPATH (1024) bytes, cutting a longer one: not a path aicost opens
_MAXPGPATH = 1024


def _open_refusal(path: str, error: OSError, *, opened: bool, named: str) -> str | None:
    """libpq's refusal of a service file it cannot open (``error``: aicost's own open's), or None where libpq
    skips it or aicost cannot tell. libpq opens the file ``PGSERVICEFILE`` names (``opened``) without looking
    first: one not there, not readable, or a path through a file or a symlink loop is refused ('service file
    "..." not found'), in libpq 18 as in the older sources read (9.0 on). The user's ``~/.pg_service.conf`` and
    ``PGSYSCONFDIR``'s file it ``stat()``-s first and skips when that fails (not there, a symlink loop: libpq 18;
    whether every older libpq skips more than a file that is not there was not checked, so a failing ``stat()`` is
    left to libpq). One it finds but cannot open (not readable, a socket) is refused by every libpq read: aicost
    refuses it for the system file, and leaves it to libpq for ``~/.pg_service.conf``, which a libpq before 18 may
    look for in the password database's home directory rather than ``HOME``'s."""
    if len(os.fsencode(path)) >= _MAXPGPATH:  # libpq opens the first 1023 bytes of it: left to libpq
        return None
    if not opened:
        if named != "PGSYSCONFDIR":
            return None
        try:
            os.stat(path)
        except (OSError, ValueError):
            return None
    reason = error.strerror or type(error).__name__
    where = "PGSYSCONFDIR's pg_service.conf" if named == "PGSYSCONFDIR" else f"the file {named} names"
    return (f"service file {path!r} ({where}) cannot be opened ({reason}): libpq refuses every connection that "
            f"names a service (service file \"...\" not found)")


def _entry(path: str, service: str) -> tuple[set[str] | None, str | None]:
    """The keywords of the first ``[service]`` section of the INI file at ``path``, read as libpq reads it (a
    line is ``keyword=value`` as written, ``#`` begins a comment line), or None if the file has no such section or
    is a directory (libpq's ``fopen()`` opens one, which reads as empty) or aicost cannot tell (a NUL in the path);
    and libpq's refusal of the file, if any (:func:`service_refusal`), the first it meets. Raises the
    :class:`OSError` of a file that cannot be opened (:func:`_open_refusal`)."""
    try:
        file = open(path, "rb")
    except (IsADirectoryError, ValueError):
        return None, None
    try:
        with file:
            data = file.read()
    except OSError:  # opened, as libpq opens it, but not read: libpq's fgets() fails too, an empty file to it
        return None, None
    known = _libpq_keywords()
    name = service.encode("utf-8", "surrogateescape")  # the bytes libpq compares (os.environ decodes so)
    keys: set[str] | None = None
    refusal: str | None = None
    number, position = 0, 0
    while position < len(data):
        end = data.find(b"\n", position, position + _LINE_BYTES)  # a line as fgets() reads it
        chunk = data[position:end + 1] if end != -1 else data[position:position + _LINE_BYTES]
        position += len(chunk)
        number += 1
        raw = chunk.split(b"\0", 1)[0]  # libpq's strlen()
        if len(raw) >= _LINE_BYTES and refusal is None:
            refusal = f"line {number} too long in service file {path!r} (libpq reads 1022 bytes a line at most)"
            if keys is None:
                return None, refusal
        line = raw.strip()  # C isspace(): space, \t, \n, \v, \f, \r
        if not line or line.startswith(b"#"):
            continue
        if line.startswith(b"["):
            if keys is not None:  # the end of the entry
                break
            if line[1:].startswith(name) and line[1 + len(name):2 + len(name)] == b"]":
                keys = set()
        elif keys is not None:
            if line.startswith(b"ldap"):  # libpq's LDAP lookup: its outcome is the LDAP server's, not the file's
                refusal = refusal or ""
                continue
            key, equals, _ = line.partition(b"=")
            if equals:
                keys.add(key.decode("utf-8", "replace"))
            if refusal is not None:
                continue
            if not equals:
                refusal = f"syntax error in service file {path!r}, line {number}: no '=' in the service's entry"
            elif key == b"service":
                refusal = f"nested service specifications not supported in service file {path!r}, line {number}"
            elif key.decode("utf-8", "replace") not in known:
                refusal = (f"syntax error in service file {path!r}, line {number}: the text before '=' is not a "
                           "libpq keyword (as written: no spaces)")
    return keys, refusal or None


@functools.lru_cache(maxsize=None)
def _libpq_keywords() -> frozenset[str]:
    """The connection keywords of the installed libpq, which a service file's entry may set."""
    import psycopg

    return frozenset(option.keyword.decode() for option in psycopg.pq.Conninfo.parse(b""))
