"""Which vendor account a call is billed to: the one place aicost reads a client's identity.

The vendors' usage and cost reports (see docs/reconcile.md) are broken down by organization / project (OpenAI),
workspace and API key id (Anthropic). To join those reports back to per-call records, each call carries:

* ``aicost.client.organization`` / ``aicost.client.project``: what the client was configured with (the OpenAI
  SDK's ``organization=`` / ``project=``, i.e. the ``OpenAI-Organization`` / ``OpenAI-Project`` headers), when set;
* ``aicost.client.api_key.fingerprint``: a stable, non-reversible fingerprint of the API key (never the key).

The fingerprint is HMAC-SHA256 keyed with a fixed public domain string, truncated to 16 hex digits (64 bits). HMAC
is one-way: from the fingerprint one can only confirm a guess of the whole key, and API keys are random secrets of
100+ bits, so guessing is hopeless. The same key gives the same fingerprint in every process and aicost version, so
``aicost reconcile`` can fingerprint a key it is given and find its calls. Vendors report key *ids* (``key_...``,
``apikey_...``), not keys: the id -> fingerprint mapping is made once by whoever holds both (see docs/reconcile.md).
"""

from __future__ import annotations

import hashlib
import hmac
from functools import lru_cache
from typing import Any

from .. import semconv

__all__ = ["FINGERPRINT_DOMAIN", "ORGANIZATION", "PROJECT", "KEY_FINGERPRINT", "key_fingerprint", "client_identity"]

FINGERPRINT_DOMAIN = b"aicost api-key fingerprint v1"
ORGANIZATION = semconv.AICOST_CLIENT_ORGANIZATION
PROJECT = semconv.AICOST_CLIENT_PROJECT
KEY_FINGERPRINT = semconv.AICOST_CLIENT_KEY_FINGERPRINT


@lru_cache(maxsize=64)
def key_fingerprint(api_key: str) -> str:
    """16 hex digits identifying ``api_key`` without revealing it (HMAC-SHA256, fixed domain, truncated)."""
    return hmac.new(FINGERPRINT_DOMAIN, api_key.encode("utf-8"), hashlib.sha256).hexdigest()[:16]


# id(client) -> (api key, organization, project, the attributes they give): a call reads the three (a client may
# be given another key: openai 3.x refreshes a key from a provider per request) and reuses the attributes while each
# is the very object they were made from. The entry holds those objects, so an id reused by another client can only
# match that client's own identical ones. Bounded like the SDK's own caches: cleared when full.
_remembered: dict[int, tuple[Any, Any, Any, dict[str, str]]] = {}
_MAX_REMEMBERED = 256


def client_identity(resource: Any) -> dict[str, str]:
    """The span attributes naming the account behind an SDK resource (``resource._client``); {} if unknown. A new
    dict each call (the call's ``CallInfo.span_attributes``, which budgets and pools add to)."""
    try:
        client = resource._client
        key = client.api_key
        organization = getattr(client, "organization", None)
        project = getattr(client, "project", None)
    except Exception:  # not a Stainless client (or a property that fails): no identity, the call goes on
        return {}
    hit = _remembered.get(id(client))
    if hit is not None and hit[0] is key and hit[1] is organization and hit[2] is project:
        return hit[3].copy()
    out: dict[str, str] = {}
    if isinstance(key, str) and key:
        out[KEY_FINGERPRINT] = key_fingerprint(key)
    if isinstance(organization, str) and organization:
        out[ORGANIZATION] = organization
    if isinstance(project, str) and project:
        out[PROJECT] = project
    if len(_remembered) >= _MAX_REMEMBERED:
        _remembered.clear()
    _remembered[id(client)] = (key, organization, project, out)
    return out.copy()
