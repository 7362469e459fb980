"""How shared stores turn an :class:`Entry` into bytes and back.

Entries are pickled, because an answer may be any object the function returned (an SDK response model, a list
of stream chunks). Unpickling runs code, so anyone who can write to a shared cache store could run code in every
process reading it: keep the store private, or give a ``secret`` so every entry is HMAC-SHA256 signed and an
unsigned or altered one is treated as a miss.
"""

from __future__ import annotations

import hashlib
import hmac
import pickle

from ..errors import ConfigurationError
from .entry import Entry


class EntryCodec:
    def __init__(self, secret: bytes | str | None = None) -> None:
        if isinstance(secret, str):
            secret = secret.encode()
        if secret is not None and (not isinstance(secret, bytes) or not secret):
            raise ConfigurationError("secret=... must be non-empty bytes or str (the HMAC key of the entries)")
        self.secret = secret

    def dump(self, entry: Entry) -> bytes:
        payload = pickle.dumps(entry, protocol=pickle.HIGHEST_PROTOCOL)
        if self.secret is None:
            return b"p" + payload
        return b"s" + hmac.new(self.secret, payload, hashlib.sha256).digest() + payload

    def load(self, raw: bytes) -> Entry | None:
        raw = bytes(raw)
        tag, body = raw[:1], raw[1:]
        if self.secret is not None:
            if tag != b"s":
                return None
            mac, payload = body[:32], body[32:]
            if not hmac.compare_digest(mac, hmac.new(self.secret, payload, hashlib.sha256).digest()):
                return None
            return pickle.loads(payload)
        if tag != b"p":
            return None
        return pickle.loads(body)
