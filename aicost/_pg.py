"""libpq settings aicost adds to a user's PostgreSQL URL, the user's own winning.

One place for the rule, so that every store that connects to PostgreSQL (the ledger, the pgvector cache) adds its
settings the same way: only those the URL leaves out, and only those the installed libpq knows.
"""

from __future__ import annotations

from typing import Any, Mapping


def unless_set(defaults: Mapping[str, Any], url_params: Mapping[str, Any]) -> dict[str, Any]:
    """``defaults`` as keyword arguments of ``psycopg.connect`` (which win over the URL's), less what the URL
    (``url_params``, :func:`psycopg.conninfo.conninfo_to_dict`) sets itself. Without ``tcp_user_timeout`` for a
    libpq older than 12, which refuses an option it does not know."""
    import psycopg

    added = {key: value for key, value in defaults.items() if key not in url_params}
    if psycopg.pq.version() < 120000:
        added.pop("tcp_user_timeout", None)
    return added
