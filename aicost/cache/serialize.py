"""How shared stores turn an :class:`Entry` into bytes and back.

Entries are pickled, because an answer may be any object the function returned (an SDK response model, a list
of stream chunks). Unpickling runs code, so anyone who can write to a shared cache store could run code in every
process reading it: keep the store private, or give a ``secret`` so every entry is HMAC-SHA256 signed and an
unsigned or altered one is treated as a miss.

The signature covers the key the entry is stored under as well as the entry: a validly signed answer copied to
another key (by whoever can write to Redis or the database) would otherwise be served as the answer to a
different request. Every store passes the key through this one codec, so the binding holds for all of them.
Entries signed before the key was bound (tag ``s``) are refused like any bad signature: a miss, rewritten by the
next call.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import pickle

from .._log import log_once
from .checks import check
from .entry import Entry

_PLAIN = b"p"  # unsigned pickle
_KEYED = b"k"  # HMAC-SHA256 over (key, pickle); the older b"s" (pickle alone) is no longer accepted
_DOMAIN = b"aicost.cache.entry\x00"


class EntryCodec:
    def __init__(self, secret: bytes | str | None = None) -> None:
        check("secret=...", secret, "non-empty bytes or str (the HMAC key of the entries)",
              of_type=lambda s: isinstance(s, (bytes, str)), within=bool, or_none=True, private=True)
        if isinstance(secret, str):
            secret = secret.encode()
        self.secret = secret

    def dump(self, key: str, entry: Entry) -> bytes:
        payload = pickle.dumps(entry, protocol=pickle.HIGHEST_PROTOCOL)
        if self.secret is None:
            return _PLAIN + payload
        return _KEYED + _mac(self.secret, key, payload) + payload

    def load(self, key: str, raw: bytes) -> Entry | None:
        """The entry stored under ``key``, or None when it is not one this codec may trust there."""
        raw = bytes(raw)
        tag, body = raw[:1], raw[1:]
        if self.secret is not None:
            mac, payload = body[:32], body[32:]
            if tag != _KEYED or not hmac.compare_digest(mac, _mac(self.secret, key, payload)):
                log_once("cache:signature", logging.WARNING,
                         "aicost cache: an entry in a shared store failed its signature check (unsigned, altered, "
                         "moved from another key, or signed before signatures covered the key); treated as a miss")
                return None
            return pickle.loads(payload)
        if tag != _PLAIN:
            return None
        return pickle.loads(body)


def _mac(secret: bytes, key: str, payload: bytes) -> bytes:
    """HMAC of the length-prefixed key, then the pickle: no (key, payload) pair reads as another."""
    bound = key.encode("utf-8")
    return hmac.new(secret, _DOMAIN + len(bound).to_bytes(8, "big") + bound + payload, hashlib.sha256).digest()
