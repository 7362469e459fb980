"""The exceptions a guarded call can raise on purpose.

Everything else that goes wrong inside the guard is logged once and swallowed (the host app must not break
because of aicost); these refusals are the one deliberate exception to that rule, so they share a base class
an application can catch in one place.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from ..errors import CallRefused, ConfigurationError, ConfigurationTypeError
from ..pricing.money import format_usd

__all__ = ["BudgetExceeded", "BudgetStoreUnavailable", "CallRefused", "ConfigurationError", "PolicyViolation"]


class BudgetExceeded(CallRefused):
    """The call's worst-case cost does not fit in a budget's remaining allowance for the current window."""

    def __init__(
        self,
        *,
        budget: str,
        scope: str,
        scope_value: str | None,
        limit_usd: Decimal,
        spent_usd: Decimal,
        reserved_usd: Decimal,
        requested_usd: Decimal,
        resets_at: datetime,
        model: str | None = None,
    ) -> None:
        self.budget = budget
        self.scope = scope
        self.scope_value = scope_value
        self.limit_usd = limit_usd
        self.spent_usd = spent_usd
        self.reserved_usd = reserved_usd
        self.requested_usd = requested_usd
        self.resets_at = resets_at
        self.model = model
        where = scope if scope_value is None else f"{scope}={scope_value!r}"
        super().__init__(
            f"aicost budget {budget!r} ({where}) exceeded: limit ${format_usd(limit_usd)}, spent "
            f"${format_usd(spent_usd)}, reserved by calls in flight ${format_usd(reserved_usd)}, this call needs up to "
            f"${format_usd(requested_usd)}"
            f"{f' ({model})' if model else ''}; the window resets at {resets_at.isoformat().replace('+00:00', 'Z')}"
        )

    def __reduce__(self):  # keyword-only __init__: pickle (multiprocessing, task queues) needs the fields
        fields = ("budget", "scope", "scope_value", "limit_usd", "spent_usd", "reserved_usd", "requested_usd",
                  "resets_at", "model")
        return (_rebuild_budget_exceeded, ({f: getattr(self, f) for f in fields},))


def _rebuild_budget_exceeded(fields: dict) -> BudgetExceeded:
    return BudgetExceeded(**fields)


class PolicyViolation(CallRefused):
    """The call breaks a governance rule (model allow/deny list, input-token cap); ``rule`` names it."""

    def __init__(self, rule: str, message: str) -> None:
        self.rule = rule
        self.detail = message
        super().__init__(f"aicost policy {rule!r}: {message}")

    def __reduce__(self):
        return (PolicyViolation, (self.rule, self.detail))


class BudgetStoreUnavailable(CallRefused):
    """The budget store could not be reached and the guard is configured to fail closed."""
