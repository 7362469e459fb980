"""Redis budget store: one server-side Lua script per reserve and per settle, shared by every process.

Amounts cross into the scripts as decimal strings and are added with HINCRBY; the scripts never pass a Lua
number back to Redis (number-to-string conversion may switch to exponent notation for large values).

Each bucket is a hash ``{spent, reserved, fired, r:<reservation id> -> amount}`` plus a sorted set of
reservation ids scored by lease end (ms). The reserve script first drops expired leases, then checks every
enforced bucket and holds the amount in all of them, or in none: Redis runs a script atomically, so two
processes can never both see the same headroom. All keys share the hash tag ``{aicost-budget}`` so one script
may touch them together (a Redis Cluster keeps them on one shard).

A reservation settled with ``SETTLE_ONCE`` (see :mod:`.base`) leaves a marker key ``once:<reservation id>`` until
its lease ends (at least ten minutes; a reservation never sent has no lease): the reserve script checks it first,
so a reserve that reaches a stalled server after its call was settled holds nothing.

Reachability is bounded: every command has a socket timeout, there are no client-side retries, and after a
failure the store is skipped (the guard's fail-open / fail-closed policy applies) for ``retry_interval_s``
instead of making every call wait for the timeout again. Replies are flat arrays of integers: redis-py parses a
nested reply at a visible cost per call.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

from ... import _fork
from ..._urls import redact_secrets, redact_url
from ...errors import ConfigurationError
from .base import ONCE_MARKER_MIN_SECONDS, SETTLE, Charge, ReserveOutcome, SettleOutcome, StoreUnavailable

_MARKER_MIN_MS = int(ONCE_MARKER_MIN_SECONDS * 1000)

# KEYS: per charge the bucket hash and its lease set, then the reservation's SETTLE_ONCE marker.
_RESERVE = """
if redis.call('EXISTS', KEYS[#KEYS]) == 1 then
  return {2, -1}  -- this reservation was already settled (it reached the store late): hold nothing
end
local id = ARGV[1]
local amount = ARGV[2]
local amount_n = tonumber(amount)
local now = tonumber(ARGV[3])
local lease_until = ARGV[4]
local n = tonumber(ARGV[5])
local states = {0, -1}  -- the reply, flat (cheaper to parse): ok, failed index, then spent, reserved per charge
for i = 1, n do
  local h = KEYS[2 * i - 1]
  local z = KEYS[2 * i]
  local expired = redis.call('ZRANGEBYSCORE', z, '-inf', ARGV[3])
  if #expired > 0 then
    for _, rid in ipairs(expired) do
      local held = redis.call('HGET', h, 'r:' .. rid)
      if held then
        redis.call('HDEL', h, 'r:' .. rid)
        if held ~= '0' then redis.call('HINCRBY', h, 'reserved', '-' .. held) end
      end
    end
    redis.call('ZREMRANGEBYSCORE', z, '-inf', ARGV[3])
  end
  local v = redis.call('HMGET', h, 'spent', 'reserved')
  local spent = tonumber(v[1] or '0')
  local reserved = tonumber(v[2] or '0')
  states[#states + 1] = spent
  states[#states + 1] = reserved
  local base = 5 + 3 * (i - 1)
  if ARGV[base + 2] == '1' and spent + reserved + amount_n > tonumber(ARGV[base + 1]) then
    states[2] = i - 1
    return states
  end
end
for i = 1, n do
  local h = KEYS[2 * i - 1]
  local z = KEYS[2 * i]
  local expire_at = ARGV[5 + 3 * (i - 1) + 3]
  redis.call('HINCRBY', h, 'reserved', amount)
  redis.call('HSET', h, 'r:' .. id, amount)
  redis.call('ZADD', z, lease_until, id)
  redis.call('PEXPIREAT', h, expire_at)
  redis.call('PEXPIREAT', z, expire_at)
end
states[1] = 1
return states
"""

# ARGV: id, actual, n, mode (see stores.base), now (ms), lease end (ms), marker expiry (ms), then per charge
# the thresholds ("t1,t2") and the bucket's expiry (ms).
_SETTLE = """
local id = ARGV[1]
local actual = ARGV[2]
local n = tonumber(ARGV[3])
local mode = ARGV[4]
local lease_ended = tonumber(ARGV[5]) >= tonumber(ARGV[6])
local apply = true
if mode == '2' then
  local marker = KEYS[#KEYS]
  apply = redis.call('EXISTS', marker) == 0
  redis.call('SET', marker, '1')
  redis.call('PEXPIREAT', marker, ARGV[7])
end
local out = {}
for i = 1, n do
  local h = KEYS[2 * i - 1]
  local z = KEYS[2 * i]
  local base = 7 + 2 * (i - 1)
  local held = redis.call('HGET', h, 'r:' .. id)
  if held then
    redis.call('HDEL', h, 'r:' .. id)
    if held ~= '0' then redis.call('HINCRBY', h, 'reserved', '-' .. held) end
    redis.call('ZREM', z, id)
  end
  local spent
  if apply and actual ~= '0' and (mode ~= '1' or held or lease_ended) then
    spent = redis.call('HINCRBY', h, 'spent', actual)
  else
    spent = tonumber(redis.call('HGET', h, 'spent') or '0')
  end
  local fired = tonumber(redis.call('HGET', h, 'fired') or '0')
  local level = 0
  local j = 0
  for t in string.gmatch(ARGV[base + 1], '%d+') do
    j = j + 1
    if spent >= tonumber(t) then level = j end
  end
  local after = fired
  if level > fired then
    redis.call('HSET', h, 'fired', tostring(level))
    after = level
  end
  redis.call('PEXPIREAT', h, ARGV[base + 2])
  out[#out + 1] = spent
  out[#out + 1] = fired
  out[#out + 1] = after
end
return out
"""

# KEYS: the bucket hash and its lease set; ARGV: now (ms). What status() shows. Read only: a hold whose lease has
# ended no longer blocks anything (the next reserve drops it), so it is left out of 'reserved', as the memory store
# leaves it out, instead of being reported as still in flight until some call happens to reserve in the bucket.
_USAGE = """
local v = redis.call('HMGET', KEYS[1], 'spent', 'reserved')
local reserved = tonumber(v[2] or '0')
for _, rid in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])) do
  local held = redis.call('HGET', KEYS[1], 'r:' .. rid)
  if held then reserved = reserved - tonumber(held) end
end
return {tonumber(v[1] or '0'), reserved}
"""


class RedisStore:
    """Budgets shared by every process that points at the same Redis server (and ``prefix``).

    ``timeout_s`` bounds connect and each command; with no client-side retries a call waits at most about
    that long for the store before the guard's ``on_store_error`` policy applies.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "aicost",
        timeout_s: float = 0.25,
        retry_interval_s: float = 1.0,
        client: Any = None,
    ) -> None:
        if not isinstance(prefix, str) or not prefix or "{" in prefix or "}" in prefix:
            raise ConfigurationError(f"store prefix must be a non-empty str without braces, got {prefix!r}")
        if not isinstance(timeout_s, (int, float)) or isinstance(timeout_s, bool) or not 0 < timeout_s <= 30:
            raise ConfigurationError(f"store timeout_s must be in (0, 30] seconds, got {timeout_s!r}")
        if (not isinstance(retry_interval_s, (int, float)) or isinstance(retry_interval_s, bool)
                or not 0 <= retry_interval_s <= 3600):
            raise ConfigurationError(f"store retry_interval_s must be in [0, 3600] seconds, got {retry_interval_s!r}")
        if client is None:
            try:
                import redis
                from redis.backoff import NoBackoff
                from redis.retry import Retry
            except ImportError:
                raise ImportError('RedisStore needs the redis client: pip install "aicost-otel[redis]"') from None
            if not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://")):
                raise ConfigurationError(f"store: expected a redis://, rediss:// or unix:// URL, got "
                                         f"{redact_url(url) if isinstance(url, str) else url!r}")
            try:
                client = redis.Redis.from_url(
                    url,
                    socket_timeout=timeout_s,
                    socket_connect_timeout=timeout_s,
                    retry=Retry(NoBackoff(), 0),
                    health_check_interval=0,
                )
            except ValueError as exc:  # e.g. a database that is not a number
                raise ConfigurationError(f"store: invalid Redis URL {redact_url(url)!r}: "
                                         f"{redact_secrets(str(exc), url)}") from None
        # Shown in warnings and errors, so never with a password; the identity (compared, never shown) keeps it.
        self.url = redact_url(url) if isinstance(url, str) else url
        self.identity = ("redis", url, prefix)  # stores with equal identities hold the same spend
        self._client = client
        self._prefix = f"{prefix}:{{aicost-budget}}:"
        from redis.exceptions import NoScriptError

        self._no_script = NoScriptError
        self._reserve = client.register_script(_RESERVE)
        self._settle = client.register_script(_SETTLE)
        self._usage = client.register_script(_USAGE)
        self._retry_interval_s = retry_interval_s
        self._down_until = 0.0
        self._lock = _fork.lock()

    def _keys(self, charges: Sequence[Charge], reservation_id: str) -> list[str]:
        prefix = self._prefix
        keys = []
        for c in charges:
            keys.append(f"{prefix}b:{c.key}")
            keys.append(f"{prefix}l:{c.key}")
        keys.append(f"{prefix}once:{reservation_id}")
        return keys

    def _eval(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        """EVALSHA, loading the script if the server does not have it (first use, or after a restart). Direct, not
        through redis-py's Script.__call__, which imports two modules and copies the arguments on every call."""
        try:
            return self._client.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
        except self._no_script:
            script.sha = self._client.script_load(script.script)
            return self._client.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)

    def skipping(self) -> bool:
        """True while the store is marked down after a failure: commands fail at once, without being sent."""
        return bool(self._down_until) and time.monotonic() < self._down_until

    def _run(self, command: Any, *args: Any, **kwargs: Any) -> Any:
        if self._down_until and time.monotonic() < self._down_until:
            raise StoreUnavailable(f"budget store {self.url} marked unreachable; retrying shortly", maybe_applied=False)
        try:
            result = command(*args, **kwargs)
        except Exception as exc:  # redis.ConnectionError, TimeoutError, ResponseError (e.g. OOM), ...
            with self._lock:
                self._down_until = time.monotonic() + self._retry_interval_s
            raise StoreUnavailable(f"budget store {self.url}: {type(exc).__name__}: {exc}") from exc
        self._down_until = 0.0
        return result

    def reserve(
        self, reservation_id: str, charges: Sequence[Charge], amount: int, now: float, lease_until: float
    ) -> ReserveOutcome:
        args: list[Any] = [reservation_id, amount, int(now * 1000), int(lease_until * 1000), len(charges)]
        for c in charges:
            args += [c.limit, 1 if c.enforce else 0, int(c.expires_at * 1000)]
        flat = self._run(self._eval, self._reserve, self._keys(charges, reservation_id), args)
        states = tuple((int(flat[i]), int(flat[i + 1])) for i in range(2, len(flat), 2))
        return ReserveOutcome(flat[0] != 0, states, int(flat[1]))  # 2: already settled once, nothing to hold  # 2: already settled once, nothing to hold

    def _settle_args(self, reservation_id: str, charges: Sequence[Charge], actual: int, now: float, mode: int,
                     lease_until: float) -> tuple[list[str], list[Any]]:
        now_ms = int(now * 1000)
        lease_ms = int(lease_until * 1000)
        args: list[Any] = [reservation_id, actual, len(charges), mode, now_ms, lease_ms,
                           max(lease_ms, now_ms + _MARKER_MIN_MS)]
        for c in charges:
            args += [",".join(map(str, c.thresholds)), int(c.expires_at * 1000)]
        return self._keys(charges, reservation_id), args

    @staticmethod
    def _outcomes(flat: Any) -> list[SettleOutcome]:
        return [SettleOutcome(int(flat[i]), int(flat[i + 1]), int(flat[i + 2])) for i in range(0, len(flat), 3)]

    def settle(self, reservation_id: str, charges: Sequence[Charge], actual: int, now: float,
               mode: int = SETTLE, lease_until: float = 0.0) -> list[SettleOutcome]:
        keys, args = self._settle_args(reservation_id, charges, actual, now, mode, lease_until)
        return self._outcomes(self._run(self._eval, self._settle, keys, args))

    def settle_many(self, settlements: Sequence[tuple[str, Sequence[Charge], int, int, float]],
                    now: float) -> list[list[SettleOutcome] | None]:
        """Several ``(reservation id, charges, actual, mode, lease end)`` settlements in one pipeline (one round
        trip, plus one to load the script after a restart). None for a settlement the server rejected."""
        def run() -> list[Any]:
            pipe = self._client.pipeline(transaction=False)
            for rid, charges, actual, mode, lease_until in settlements:
                keys, args = self._settle_args(rid, charges, actual, now, mode, lease_until)
                self._settle(keys=keys, args=args, client=pipe)
            return pipe.execute(raise_on_error=False)

        return [None if isinstance(r, Exception) else self._outcomes(r) for r in self._run(run)]

    def usage(self, key: str, now: float) -> tuple[int, int]:
        """(spent, reserved) of one bucket, without the holds whose lease has ended by ``now``."""
        keys = [f"{self._prefix}b:{key}", f"{self._prefix}l:{key}"]
        spent, reserved = self._run(self._eval, self._usage, keys, [int(now * 1000)])
        return (int(spent), int(reserved))

    def check(self) -> list[str]:
        """Reach the server once, when budgets are configured.

        Raises :class:`ConfigurationError` for a setting that can never work (a database the server does not
        have, a refused login), :class:`StoreUnavailable` when the server cannot be reached now. Returns
        warnings about server settings that lose or evict spend (no append-only file, one synced when the OS
        chooses, an eviction policy).
        """
        import redis

        try:
            self._client.ping()
        except (redis.AuthenticationError, redis.ResponseError) as exc:
            raise ConfigurationError(f"store: Redis at {self.url} refused the connection: {exc}") from None
        except Exception as exc:
            raise StoreUnavailable(f"budget store {self.url}: {type(exc).__name__}: {exc}") from exc
        warnings = []
        try:
            persistence = self._client.info("persistence")
            save = self._client.config_get("save").get("save", "")
            fsync = self._client.config_get("appendfsync").get("appendfsync", "everysec")
            memory = self._client.config_get("maxmemory*")
        except Exception:  # CONFIG is often disabled on managed Redis: nothing more to check
            return warnings
        if not int(persistence.get("aof_enabled", 0)):  # RDB alone goes back to a snapshot: not enough either
            lost = (f"keeps RDB snapshots only (save \"{save}\", appendonly no): if it restarts, it goes back to the "
                    "last snapshot and the budgets' spend since is forgotten" if save else
                    "has no persistence (appendonly no, save \"\"): if it restarts, every budget's spend in the "
                    "current windows is forgotten")
            warnings.append(f"Redis at {self.url} {lost}; set appendonly yes (see docs/budgets.md)")
        elif fsync not in ("everysec", "always"):  # the file is written when the OS chooses: ~30 s on Linux
            warnings.append(f"Redis at {self.url} syncs its append-only file when the OS chooses (appendfsync "
                            f"{fsync}): if the machine loses power, the budgets' last seconds of spend are "
                            "forgotten; set appendfsync everysec or always (see docs/budgets.md)")
        policy = memory.get("maxmemory-policy", "noeviction")
        if int(memory.get("maxmemory", 0) or 0) and policy != "noeviction":
            warnings.append(
                f"Redis at {self.url} evicts keys under memory pressure (maxmemory-policy {policy}): budget "
                "buckets can be evicted and their spend forgotten; use noeviction"
            )
        return warnings

    def reset(self) -> None:
        """Delete every bucket under this store's prefix (tests, or a deliberate budget reset)."""
        for key in self._client.scan_iter(match=f"{self._prefix}*", count=500):
            self._client.delete(key)

    def close(self) -> None:
        try:
            self._client.close()
        except Exception:
            pass
