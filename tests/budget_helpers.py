"""Helpers for the budget tests: a tiny exact price table and CallInfo / CallResult builders.

The price stub is deliberately simple (a per-token input and output rate, optional max output) so each test
can compute the worst case by hand; the end-to-end tests use the real catalog instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from aicost import integrations
from aicost.hooks import CallInfo, CallResult
from aicost.usage import Usage
from aicost.vendor import DEFAULT_SHAPE

MTOK = Decimal(1_000_000)


@dataclass(frozen=True)
class StubCost:
    known: bool
    total: Decimal | None


@dataclass(frozen=True)
class StubPrice:
    input_per_mtok: Decimal
    output_per_mtok: Decimal
    max_output_tokens: int | None = None

    def cost(self, usage: Usage) -> StubCost:
        return StubCost(True, usage.input_tokens * self.input_per_mtok / MTOK + usage.output_tokens * self.output_per_mtok / MTOK)


# $ per million tokens. Input is free for "flat-*" so a call's worst case is exactly max_tokens x output rate.
PRICES = {
    "flat-big": StubPrice(Decimal(0), Decimal(1), 8000),  # $0.001 per 1,000 output tokens
    "flat-small": StubPrice(Decimal(0), Decimal("0.1"), 8000),
    "gpt-4o": StubPrice(Decimal("2.5"), Decimal(10), 16384),
    "gpt-4o-mini": StubPrice(Decimal("0.15"), Decimal("0.6"), 16384),
}


def price_lookup(provider: str, model: str, *, service_tier: str | None = None) -> StubPrice | None:
    return PRICES.get(model)


def chat_info(model: str = "flat-big", max_tokens: int | None = 1000, *, text: str = "hi",
              provider: str = "openai", endpoint: str = "openai.chat.completions.create",
              operation: str = "chat", **extra: Any) -> CallInfo:
    kwargs: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": text}], **extra}
    if max_tokens is not None:
        kwargs["max_tokens"] = max_tokens
    table = integrations.endpoint(endpoint)  # the endpoint's RequestShape: how its request sets the output cap
    return CallInfo(provider=provider, operation=operation, endpoint=endpoint, request_model=model,
                    kwargs=kwargs, stream=False, is_async=False, shape=table.shape if table else DEFAULT_SHAPE,
                    resumes=table.resumes if table else False)  # as the core builds it, from the endpoint's table


def result(info: CallInfo, cost_usd: Decimal | None, *, usage: Usage | None = None,
           error_type: str | None = None) -> CallResult:
    if usage is None and cost_usd is not None:
        usage = Usage(input_tokens=1, output_tokens=1)
    cost = None if cost_usd is None else StubCost(True, cost_usd)
    return CallResult(info=info, usage=usage, cost=cost, response_model=info.request_model,
                      error_type=error_type, duration_s=0.0)


class Clock:
    """An injectable wall clock (epoch seconds)."""

    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def redis_worker(url: str, prefix: str, limit: str, calls: int, barrier: Any, results: Any) -> None:
    """One process of the multi-process race: ``calls`` calls of $0.001 worst case (and actual) each.

    Puts on ``results`` the number of calls let through and, for each refusal, (spent, reserved, requested,
    limit) as the atomic reservation saw them. Module-level so a spawned process can import it.
    """
    import time

    from aicost.budget import BudgetExceeded, BudgetGuard
    from aicost.budget.config import Budget
    from aicost.budget.stores.redis import RedisStore
    guard = BudgetGuard([Budget(limit_usd=limit, window="day")], store=RedisStore(url, prefix=prefix, timeout_s=2.0),
                        on_store_error="closed", price_lookup=price_lookup)
    barrier.wait(timeout=60)  # every process starts calling at the same moment
    ok = 0
    refusals = []
    for _ in range(calls):
        info = chat_info(text="")  # empty prompt: no tokenizer to load in each process (input is free anyway)
        try:
            ticket = guard.before_call(info)
        except BudgetExceeded as e:
            refusals.append((str(e.spent_usd), str(e.reserved_usd), str(e.requested_usd), str(e.limit_usd)))
            continue
        time.sleep(0.0005)
        ticket.after_call(result(info, Decimal("0.001")))
        ok += 1
    guard.close()
    results.put((ok, refusals))


class FlakyStore:
    """A memory store that can be 'down' (refuses before sending) or 'lose replies' (applies, then times out)."""

    def __init__(self) -> None:
        from aicost.budget.stores.memory import MemoryStore

        self.inner = MemoryStore()
        self.down = False
        self.lose_replies = False

    def _gate(self, apply):
        from aicost.budget.stores.base import StoreUnavailable

        if self.down:
            raise StoreUnavailable("down", maybe_applied=False)
        out = apply()
        if self.lose_replies:
            raise StoreUnavailable("timeout after sending")
        return out

    def reserve(self, *args):
        return self._gate(lambda: self.inner.reserve(*args))

    def settle(self, *args):
        return self._gate(lambda: self.inner.settle(*args))

    def usage(self, key, now):
        return self.inner.usage(key, now)
