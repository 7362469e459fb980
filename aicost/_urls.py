"""Database URLs as aicost shows them: in logs, errors, reports and the dashboard, never with a password.

One place for the rule, so that every store that names its server (the ledger's SQLite / PostgreSQL URL, the
budget store's Redis URL) hides the same secrets the same way.
"""

from __future__ import annotations

import re

# The URI query parameters that carry a secret: libpq's (both) and redis-py's (``password``).
_SECRET_PARAMETERS = frozenset({"password", "sslpassword"})


def redact_url(url: str) -> str:
    """``url`` with every secret libpq or redis-py would read from it replaced by ``***``: the password of its
    userinfo (``user:secret@host``, the user may be empty) and the ``password`` / ``sslpassword`` query parameters
    (``?password=secret``; names percent-decoded, as libpq decodes them). For what is shown (the report's "ledger:"
    line, the dashboard, logs, errors), never for connecting. The userinfo runs to the last ``@`` before the
    query: a password with an unencoded ``@`` or ``/`` is hidden whole (at worst more than the password is)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    location, question, query = rest.partition("?")
    userinfo, at, hosts = location.rpartition("@")
    if at and ":" in userinfo:
        location = f"{userinfo.partition(':')[0]}:***@{hosts}"
    if question:
        query = "&".join(_redacted_parameter(parameter) for parameter in query.split("&"))
    return f"{scheme}{sep}{location}{question}{query}"


def redact_secrets(text: str, url: str) -> str:
    """``text`` (a driver's message about ``url``) with every secret of ``url`` replaced by ``***``: libpq's message
    about a URL it cannot parse quotes the bad token (``invalid percent-encoded token: "s3cr%zzet"``) or the whole
    URI, and one about a host quotes what it took for the host (a password's part after an unencoded ``@``). Each
    secret :func:`redact_url` hides is replaced as written and percent-decoded, and so is each part of it between
    ``@`` and ``/`` (three characters or more: shorter ones would garble the message more than they reveal)."""
    from urllib.parse import unquote

    scheme, sep, rest = url.partition("://")
    location, _, query = rest.partition("?")
    userinfo, at, _ = location.rpartition("@")
    secrets = [userinfo.partition(":")[2]] if sep and at and ":" in userinfo else []
    for parameter in query.split("&") if sep else ():
        name, equals, value = parameter.partition("=")
        if equals and unquote(name) in _SECRET_PARAMETERS:
            secrets.append(value)
    found = set()
    for secret in secrets:
        for form in (secret, unquote(secret)):
            if form:
                found.add(form)
                found.update(part for part in re.split(r"[@/]", form) if len(part) >= 3)
    for secret in sorted(found, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def _redacted_parameter(parameter: str) -> str:
    from urllib.parse import unquote

    name, equals, _ = parameter.partition("=")
    return f"{name}=***" if equals and unquote(name) in _SECRET_PARAMETERS else parameter
