"""Shared exact tier on Redis: many processes answer each other's repeated questions.

Entries are pickled (an answer may be an SDK response object) and expire through Redis' own TTL. A store-wide
``max_entries`` is kept with a sorted set of last-access times trimmed by a Lua script, so the bound holds
across processes without a read-modify-write race. Redis 7.0 (Debian) has no vector search: the semantic tier
needs :class:`~aicost.cache.PgVectorStore` or the in-memory index.

Security: entries are pickled (see :mod:`.serialize`): keep the cache Redis private, or pass ``secret=`` so
entries are HMAC-signed and unsigned or tampered ones are ignored.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from ..errors import ConfigurationError
from .checks import check, check_int, check_seconds, is_str
from .entry import Entry
from .serialize import EntryCodec

_PUT = """
redis.call('SET', KEYS[1], ARGV[1])
if tonumber(ARGV[2]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
redis.call('ZADD', KEYS[2], ARGV[3], KEYS[1])
local max = tonumber(ARGV[4])
local evicted = 0
if max > 0 then
  local excess = redis.call('ZCARD', KEYS[2]) - max
  if excess > 0 then
    local old = redis.call('ZRANGE', KEYS[2], 0, excess - 1)
    for _, k in ipairs(old) do redis.call('DEL', k) end
    redis.call('ZREMRANGEBYRANK', KEYS[2], 0, excess - 1)
    evicted = excess
  end
end
return evicted
"""


_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisStore:
    """Exact-tier store on Redis. ``url`` (``redis://127.0.0.1:6379/0``) or an existing ``client``."""

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Any = None,
        max_entries: int | None = None,
        secret: bytes | str | None = None,
        lru_key: str = "aicost:cache:__lru__",
        timeout_s: float = 0.5,
    ) -> None:
        if (url is None) == (client is None):
            raise ConfigurationError("RedisStore needs exactly one of url=... or client=...")
        check("RedisStore(client=...)", client, "a redis.Redis client", or_none=True,
              of_type=lambda c: callable(getattr(c, "register_script", None)))
        check_int("RedisStore(max_entries=...)", max_entries, minimum=1, or_none=True)
        check_seconds("RedisStore(timeout_s=...)", timeout_s, "seconds in (0, 60]", maximum=60)
        check("RedisStore(lru_key=...)", lru_key, "a non-empty str (the key of the recency index)", of_type=is_str,
              within=bool)
        self.codec = EntryCodec(secret)
        if client is None:
            try:
                import redis
                from redis.backoff import NoBackoff
                from redis.retry import Retry
            except ImportError as exc:  # pragma: no cover - depends on the environment
                raise ImportError("RedisStore needs the redis client: pip install 'aicost-otel[redis]'") from exc
            check("RedisStore(url=...)", url, "a redis://, rediss:// or unix:// URL", of_type=is_str,
                  within=lambda u: u.startswith(("redis://", "rediss://", "unix://")))
            # Short timeouts and no retries: a slow or hung cache must cost a miss within timeout_s, not hang the
            # application's request (redis-py's default retries a timeout 10 times with backoff: 6 s and more).
            client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                                          retry=Retry(NoBackoff(), 0))
        self.client = client
        self.max_entries = max_entries or 0
        self.lru_key = lru_key
        self._put = client.register_script(_PUT)
        self._unlock = client.register_script(_UNLOCK)
        self.retry_after_s = 5.0
        self._down_until = 0.0

    # --- availability -------------------------------------------------------------------------------------
    def _check_up(self) -> None:
        if time.monotonic() < self._down_until:  # an unreachable Redis must not add its timeout to every call
            raise ConnectionError("RedisStore: server unreachable, retrying shortly")

    def _went_down(self, exc: BaseException) -> None:
        try:
            import redis
        except ImportError:  # pragma: no cover
            return
        if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
            self._down_until = time.monotonic() + self.retry_after_s

    # --- Store protocol -----------------------------------------------------------------------------------
    def get(self, key: str) -> Entry | None:
        self._check_up()
        try:
            return self._get(key)
        except Exception as exc:
            self._went_down(exc)
            raise

    def put(self, key: str, entry: Entry, ttl: float | None) -> None:
        self._check_up()
        try:
            self._put_entry(key, entry, ttl)
        except Exception as exc:
            self._went_down(exc)
            raise

    def _get(self, key: str) -> Entry | None:
        pipe = self.client.pipeline(transaction=False)
        pipe.get(key)
        if self.max_entries:
            pipe.zadd(self.lru_key, {key: time.time()}, xx=True)
        raw = pipe.execute()[0]
        return None if raw is None else self.codec.load(key, raw)

    def _put_entry(self, key: str, entry: Entry, ttl: float | None) -> None:
        ttl_ms = 0 if ttl is None else max(1, int(ttl * 1000))
        if self.max_entries:
            self._put(keys=[key, self.lru_key],
                      args=[self.codec.dump(key, entry), ttl_ms, time.time(), self.max_entries])
        elif ttl_ms:
            self.client.set(key, self.codec.dump(key, entry), px=ttl_ms)
        else:
            self.client.set(key, self.codec.dump(key, entry))

    def delete(self, key: str) -> bool:
        pipe = self.client.pipeline(transaction=False)
        pipe.delete(key)
        pipe.zrem(self.lru_key, key)
        return bool(pipe.execute()[0])

    def clear(self, prefix: str = "aicost:cache:") -> int:
        removed = 0
        batch: list[Any] = []
        for key in self.client.scan_iter(match=_glob_escape(prefix) + "*", count=500):
            if key == self.lru_key.encode() or key.endswith(b":lock"):
                continue
            batch.append(key)
            if len(batch) >= 500:
                removed += self._drop(batch)
                batch = []
        if batch:
            removed += self._drop(batch)
        return removed

    def _drop(self, keys: list[Any]) -> int:
        pipe = self.client.pipeline(transaction=False)
        pipe.delete(*keys)
        pipe.zrem(self.lru_key, *keys)
        return int(pipe.execute()[0])

    # --- single flight across processes ---------------------------------------------------------------------
    def try_lock(self, key: str, timeout_s: float) -> str | None:
        """Claim the right to answer ``key``; None if another process holds it. Expires after ``timeout_s``."""
        self._check_up()
        token = secrets.token_hex(8)
        ok = self.client.set(key + ":lock", token, nx=True, px=max(1, int(timeout_s * 1000)))
        return token if ok else None

    def unlock(self, key: str, token: str) -> None:
        self._unlock(keys=[key + ":lock"], args=[token])

    def is_locked(self, key: str) -> bool:
        return bool(self.client.exists(key + ":lock"))

    def __len__(self) -> int:
        if self.max_entries:
            return int(self.client.zcard(self.lru_key))
        return sum(1 for _ in self.client.scan_iter(match="aicost:cache:*", count=500))


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
