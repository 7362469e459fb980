"""Drive aicost.hooks the way the instrumentation core does, without a vendor call.

Why: scope, rollup and metric arithmetic must be provable on their own, with exact hand-picked costs, while the
end-to-end tests (real SDK over loopback HTTP) prove the core wires them in. ``SimulatedCall`` follows the core's
contract from ``aicost/hooks.py``: attribution and active collectors are captured when the call *starts*, the
result is delivered to those collectors when it *finishes* (which, for a stream, may be later and elsewhere).
"""

from __future__ import annotations

from decimal import Decimal

from aicost import hooks
from aicost.attribution import current_attributes
from aicost.usage import Usage
from aicost.vendor import DEFAULT_SHAPE

try:
    from aicost.pricing import Cost
except Exception:  # pricing not importable: the hooks only read the contract's ``known`` and ``total``
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Cost:  # type: ignore[no-redef]
        known: bool
        total: Decimal | None


class SimulatedCall:
    def __init__(self, provider: str = "openai", model: str = "gpt-4o-mini", operation: str = "chat") -> None:
        self.info = hooks.CallInfo(provider=provider, operation=operation, endpoint=f"{provider}.test",
                                   request_model=model, kwargs={}, stream=False, is_async=False,
                                   shape=DEFAULT_SHAPE)
        self.attributes = dict(current_attributes())
        self.collectors = hooks.active_collectors()

    def finish(self, input_tokens: int = 10, output_tokens: int = 5, cost: Decimal | str | None = "0.001",
               error_type: str | None = None, duration_s: float = 0.25, response_model: str | None = None,
               **usage_fields: int) -> hooks.CallResult:
        usage = Usage(input_tokens=input_tokens, output_tokens=output_tokens, **usage_fields)
        if cost is None:
            priced = Cost(known=False, total=None)
        else:
            priced = Cost(known=True, total=Decimal(cost))
        result = hooks.CallResult(info=self.info, usage=usage, cost=priced,
                                  response_model=response_model or self.info.request_model,
                                  error_type=error_type, duration_s=duration_s)
        for collector in self.collectors:
            collector.add(result)
        return result


def call(**kwargs: object) -> hooks.CallResult:
    """A call that starts and finishes here."""
    return SimulatedCall().finish(**kwargs)  # type: ignore[arg-type]
