"""A self-hosted GPU pool, declared in the price file (``[pools.NAME]``) or with ``aicost.configure_pools``.

A pool is matched by the endpoint a call went to (``server.address:server.port`` of the client's base URL) and
the model asked for. Everything is checked at configure time, and a bad pool raises ConfigurationError naming
``pools.NAME.field``: a pool that could never match a call, or two pools that would both claim one call, is
refused rather than silently splitting or losing a GPU bill.
"""

from __future__ import annotations

import calendar
import importlib.util
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Mapping

from .._time import EPOCH  # intervals start at multiples of their length from it, as the ledger's days do
from ..errors import ConfigurationError
from ..pricing.money import RATIO, canonical

KEYS = ("tokens", "gpu_time")
QUANTUM = Decimal("0.000000001")  # allocations are whole nano-dollars, shared by cumulative rounding (allocate.py)
_FIELDS = {"gpu_hour", "gpus", "monthly", "endpoints", "models", "start", "until", "owner", "interval", "key",
           "input_weight", "output_weight", "capacity_per_hour", "max_concurrency", "metrics_url", "note"}



@dataclass(frozen=True)
class Pool:
    name: str
    endpoints: tuple[tuple[str, int | None], ...]  # (host, port); port None: any (a URL's default port is none)
    models: tuple[str, ...]
    owner: str  # who pays the idle cost
    key: str = "tokens"  # allocation key: "tokens" or "gpu_time"
    gpu_hour: Decimal | None = None
    gpus: int = 1
    monthly: Decimal | None = None
    start: datetime | None = None
    until: datetime | None = None
    interval: int = 3600  # seconds
    input_weight: Decimal = Decimal(1)
    output_weight: Decimal | None = None  # declared; with metrics_url only the fallback for the engine's figure
    capacity_per_hour: Decimal | None = None  # allocation units the pool serves in an hour at full load
    max_concurrency: int | None = None  # gpu_time key: request slots (vLLM --max-num-seqs) for utilisation
    metrics_url: str | None = None  # the engine's Prometheus /metrics

    def serves(self, host: str | None, port: int | None, model: str | None) -> bool:
        return model in self.models and any(h == host and (p is None or p == port) for h, p in self.endpoints)

    def covers(self, start: datetime, end: datetime) -> bool:
        """Whether the interval ``[start, end)`` is in the pool's period: whole, since start and until fall on
        interval boundaries (checked at configure time), so an interval is charged whole or not at all."""
        return (self.start is None or end > self.start) and (self.until is None or start < self.until)

    def interval_cost(self, start: datetime) -> Decimal:
        """What the pool costs over the interval that starts at ``start``, to the nano-dollar.

        Per GPU-hour: ``gpu_hour x gpus x interval/3600``. Monthly: the month's amount spread evenly over the
        seconds of the calendar month the interval starts in. Rounded once, half-even, to QUANTUM, and canonical
        (``10``, not ``10.000000000``: money's one form). In money's RATIO context, not the thread's (the meter's own
        thread, or the app's: a host may run a low precision)."""
        if self.gpu_hour is not None:
            exact = RATIO.divide(RATIO.multiply(RATIO.multiply(self.gpu_hour, self.gpus), self.interval), 3600)
        else:
            days = calendar.monthrange(start.year, start.month)[1]
            exact = RATIO.divide(RATIO.multiply(self.monthly, self.interval), days * 86400)  # type: ignore[arg-type]
        return canonical(RATIO.quantize(exact, QUANTUM))  # RATIO rounds half-even

    @property
    def weights_from_engine(self) -> bool:
        """Weights measured by the engine wherever it can be read: the gpu_time key always; the tokens key
        whenever metrics_url is given (a declared output_weight is then the fallback for an interval without
        engine data)."""
        return self.key == "gpu_time" or self.metrics_url is not None


class PoolError(ConfigurationError):
    """One problem with one pool's setting: ``pools.NAME.field: message`` (``table`` / ``field`` let a price file
    point at the line)."""

    def __init__(self, name: str, field: str, message: str) -> None:
        self.table = f"pools.{name}" if name else "pools"
        self.field = field
        super().__init__(f"{self.table}.{field}: {message}" if field else f"{self.table}: {message}")


def _err(name: str, field: str, message: str) -> PoolError:
    return PoolError(name, field, message)


def _decimal(name: str, field: str, value: Any, *, positive: bool = True) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, str, Decimal, float)):
        raise _err(name, field, f"must be a number or a decimal string, got {value!r}")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise _err(name, field, f"must be a number or a decimal string, got {value!r}") from None
    if not number.is_finite() or (positive and number <= 0) or number < 0:
        raise _err(name, field, f"must be a finite number {'> 0' if positive else '>= 0'}, got {value!r}")
    return number


def _int(name: str, field: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _err(name, field, f"must be a whole number >= 1, got {value!r}")
    return value


def _when(name: str, field: str, value: Any) -> datetime:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise _err(name, field, f"must be an ISO date or datetime, got {value!r}") from None
    if isinstance(value, date) and not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    if not isinstance(value, datetime):
        raise _err(name, field, f"must be an ISO date or datetime, got {value!r}")
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


_DEFAULT_PORTS = {"http": (80,), "https": (443,), "": (80, 443)}  # "": a bare host:port (no scheme)


def _endpoint(name: str, value: Any) -> tuple[str, int | None]:
    """``"10.0.0.5:8000"``, ``"http://vllm.internal:8000/v1"`` or ``"vllm.internal"`` -> (host, port).

    The scheme's default port (80 for http, 443 for https, either for a bare ``host:port``) is no port: the
    SDKs' URL object drops it, so a call to ``http://vllm-svc:80/v1`` is recorded with no ``server.port``, and a
    pool that kept the 80 would never match it (its whole cost booked idle)."""
    from urllib.parse import urlsplit

    if not isinstance(value, str) or not value.strip():
        raise _err(name, "endpoints", f"each endpoint is 'host:port' or a base URL, got {value!r}")
    text = value.strip()
    try:
        parts = urlsplit(text if "://" in text else f"//{text}")
        host, port = parts.hostname, parts.port
    except ValueError:
        host = None
    if not host:
        raise _err(name, "endpoints", f"each endpoint is 'host:port' or a base URL, got {value!r}")
    return host, None if port in _DEFAULT_PORTS.get(parts.scheme.lower(), ()) else port


def _off_boundary(when: datetime | None, interval: int) -> str | None:
    """Why ``when`` cannot start or end a pool's period with this interval (None: it can). Intervals run from
    midnight UTC and are charged whole (``Pool.covers``): a period edge inside one would charge all of it, and
    a part of one cannot be priced alone (its load, capacity and request slots are measured over the interval)."""
    if when is None:
        return None
    inside = (when - EPOCH) % timedelta(seconds=interval)
    if not inside:
        return None
    before = when - inside
    return (f"must fall on an interval boundary (the pool is charged by whole intervals of {interval} s from "
            f"midnight UTC), got {_utc(when)} UTC; the nearest are {_utc(before)} and "
            f"{_utc(before + timedelta(seconds=interval))} UTC (or give a shorter interval)")


def _utc(when: datetime) -> str:
    return f"{when:%Y-%m-%d %H:%M}" + (f":{when:%S}" if when.second else "") + (
        f".{when:%f}" if when.microsecond else "")


def pool_from_mapping(name: str, data: Mapping[str, Any]) -> Pool:
    """One pool, validated; raises its first problem (:func:`check_pools` gives them all)."""
    pool, problems = _pool(name, data)
    if problems:
        raise problems[0]
    return pool  # type: ignore[return-value]


def _pool(name: Any, data: Any) -> tuple[Pool | None, list[PoolError]]:
    """The pool and every problem with it (a person fixes all mistakes at once)."""
    if not isinstance(name, str) or not name.strip():
        return None, [PoolError("", "", f"a pool needs a non-empty name, got {name!r}")]
    if not isinstance(data, Mapping):
        return None, [_err(name, "", f"must be a table of settings, got {type(data).__name__}")]
    problems: list[PoolError] = []

    def take(fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except PoolError as exc:
            problems.append(exc)
            return None

    for field in sorted(set(data) - _FIELDS):
        problems.append(_err(name, field, f"unknown setting (accepted: {', '.join(sorted(_FIELDS))})"))
    gpu_hour = take(_decimal, name, "gpu_hour", data["gpu_hour"]) if "gpu_hour" in data else None
    monthly = take(_decimal, name, "monthly", data["monthly"]) if "monthly" in data else None
    if ("gpu_hour" in data) == ("monthly" in data):
        problems.append(_err(name, "gpu_hour", "give the cost as gpu_hour (with gpus) or as monthly, exactly one of them"))
    if "monthly" in data and "gpus" in data:
        problems.append(_err(name, "gpus", "gpus goes with gpu_hour, not with monthly"))
    endpoints = data.get("endpoints")
    if isinstance(endpoints, str):
        endpoints = [endpoints]
    if not isinstance(endpoints, (list, tuple)) or not endpoints:
        problems.append(_err(name, "endpoints", "the pool matches no call: give at least one 'host:port' or base URL"))
        endpoints = []
    parsed_endpoints = tuple(e for e in (take(_endpoint, name, e) for e in endpoints) if e is not None)
    models = data.get("models")
    if isinstance(models, str):
        models = [models]
    if not isinstance(models, (list, tuple)) or not models or not all(isinstance(m, str) and m for m in models):
        problems.append(_err(name, "models", "the pool matches no call: give the model names it serves (a list of "
                                             "strings)"))
        models = []
    owner = data.get("owner")
    if not isinstance(owner, str) or not owner.strip():
        problems.append(_err(name, "owner", "name who pays the idle cost (a team), e.g. owner = \"ml-platform\""))
        owner = ""
    key = data.get("key", "tokens")
    if key not in KEYS:
        problems.append(_err(name, "key", f"allocation key must be one of {', '.join(KEYS)}, got {key!r}"))
        key = "tokens"
    start = take(_when, name, "start", data["start"]) if "start" in data else None
    until = take(_when, name, "until", data["until"]) if "until" in data else None
    if start is not None and until is not None and until <= start:
        problems.append(_err(name, "until", f"the pool matches no call: its period is empty ({start:%Y-%m-%d} to "
                                            f"{until:%Y-%m-%d})"))
    interval = take(_int, name, "interval", data.get("interval", 3600))
    if interval is not None and 86400 % interval:
        problems.append(_err(name, "interval", f"must divide a day evenly (seconds: 3600 = 1 h, 900 = 15 min), got "
                                               f"{interval}"))
    elif interval is not None:
        problems.extend(_err(name, field, message) for field, message in
                        (("start", _off_boundary(start, interval)), ("until", _off_boundary(until, interval)))
                        if message)
    metrics_url = data.get("metrics_url")
    if metrics_url is not None and (not isinstance(metrics_url, str) or "://" not in metrics_url):
        problems.append(_err(name, "metrics_url", f"must be the engine's /metrics URL (http://host:port/metrics), got "
                                                  f"{metrics_url!r}"))
    elif metrics_url is not None and importlib.util.find_spec("prometheus_client") is None:
        problems.append(_err(name, "metrics_url", "reading the engine's metrics needs prometheus-client: "
                                                  "pip install 'aicost-otel[prometheus]'"))
    output_weight = take(_decimal, name, "output_weight", data["output_weight"]) if "output_weight" in data else None
    input_weight = take(_decimal, name, "input_weight", data.get("input_weight", 1))
    gpus = take(_int, name, "gpus", data.get("gpus", 1))
    capacity = take(_decimal, name, "capacity_per_hour", data["capacity_per_hour"]) if "capacity_per_hour" in data \
        else None
    max_concurrency = take(_int, name, "max_concurrency", data["max_concurrency"]) if "max_concurrency" in data \
        else None
    if "metrics_url" not in data and (key == "gpu_time" or "output_weight" not in data):
        what = "key = \"gpu_time\"" if key == "gpu_time" else "token weights without output_weight"
        problems.append(_err(name, "metrics_url", f"{what} reads the serving engine's metrics: give metrics_url "
                                                  "(or declare output_weight for the tokens key)"))
    if problems:
        return None, problems
    return Pool(
        name=name, endpoints=parsed_endpoints, models=tuple(models), owner=owner.strip(), key=key, gpu_hour=gpu_hour,
        gpus=gpus, monthly=monthly, start=start, until=until, interval=interval, input_weight=input_weight,
        output_weight=output_weight, capacity_per_hour=capacity, max_concurrency=max_concurrency,
        metrics_url=metrics_url,
    ), []


def pools_from_data(data: Mapping[str, Any]) -> tuple[Pool, ...]:
    """Every pool, validated; ConfigurationError with every problem found (its ``problems`` lists them)."""
    pools, problems = check_pools(data)
    raise_problems(problems)
    return pools


def raise_problems(problems: list[PoolError]) -> None:
    """Nothing if there are none; else one ConfigurationError with every problem (its ``problems`` lists them)."""
    if len(problems) == 1:
        raise problems[0]
    if problems:
        error = ConfigurationError(f"{len(problems)} problems:\n" + "\n".join(f"  {p}" for p in problems))
        error.problems = problems  # type: ignore[attr-defined]
        raise error


def check_pools(data: Any) -> tuple[tuple[Pool, ...], list[PoolError]]:
    """The one validator of pools (configure time, the price file, ``aicost prices --check``): the valid pools and
    every problem. Each pool on its own, then against each other: two pools that serve the same endpoint and
    model in overlapping periods are refused (a call would have two GPU bills)."""
    if not isinstance(data, Mapping):
        return (), [PoolError("", "", f"must be a table of pools {{name: settings}}, got {type(data).__name__}")]
    pools: list[Pool] = []
    problems: list[PoolError] = []
    for name, settings in data.items():
        pool, found = _pool(name, settings)
        problems.extend(found)
        if pool is not None:
            pools.append(pool)
    problems.extend(overlaps(pools))
    return tuple(pools), problems


def overlaps(pools: tuple[Pool, ...] | list[Pool]) -> list[PoolError]:
    """Pairs of pools that would both claim one call (same endpoint and model in overlapping periods): one call
    must never carry two GPU bills, however the pools were built."""
    far = datetime.max.replace(tzinfo=timezone.utc)
    near = datetime.min.replace(tzinfo=timezone.utc)
    problems: list[PoolError] = []
    for i, a in enumerate(pools):
        for b in pools[i + 1:]:
            shared = [(h, p, m) for h, p in a.endpoints for hb, pb in b.endpoints for m in a.models
                      if h == hb and (p is None or pb is None or p == pb) and m in b.models]
            if shared and (a.start or near) < (b.until or far) and (b.start or near) < (a.until or far):
                host, port, model = shared[0]
                problems.append(_err(b.name, "endpoints", f"overlaps pool {a.name!r}: both serve model {model!r} at "
                                                          f"{host}{'' if port is None else f':{port}'} in the same "
                                                          "period"))
    return problems
