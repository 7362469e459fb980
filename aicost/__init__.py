"""aicost: LLM spend made visible, attributable and controllable from inside the application.

``import aicost; aicost.instrument()`` turns every OpenAI / Anthropic SDK call into an OpenTelemetry span with
its token counts, model and exact cost. Importing aicost is cheap and has no side effects: nothing is patched,
no vendor SDK is imported and nothing is fetched until ``instrument()`` is called.
"""

from __future__ import annotations

from ._lazy import lazy_names as _lazy_names
from .usage import Usage

__version__ = "0.1.0"

# Public names resolved on first use, so ``import aicost`` stays cheap and optional parts (budgets, cache)
# cost nothing until used. name -> module that defines it.
_LAZY: dict[str, str] = {
    "instrument": "aicost.instrumentation",
    "uninstrument": "aicost.instrumentation",
    "is_instrumented": "aicost.instrumentation",
    "Cost": "aicost.pricing",
    "price_call": "aicost.pricing",
    "set_price": "aicost.pricing",
    "add_discount": "aicost.pricing",
    "load_price_file": "aicost.instrumentation",  # pricing's, with the features' sections of the file read
    "clear_overrides": "aicost.pricing",
    "unknown_models": "aicost.pricing",
    "PriceFileError": "aicost.pricing",
    "CallRefused": "aicost.errors",
    "ConfigurationError": "aicost.errors",
    "collect_calls": "aicost.hooks",
    "CallInfo": "aicost.hooks",
    "CallResult": "aicost.hooks",
    "cache": "aicost.cache",
    "attribute": "aicost.attribution",
    "feature": "aicost.attribution",
    "set_outcome": "aicost.attribution",
    "Budget": "aicost.budget",
    "Policy": "aicost.budget",
    "BudgetExceeded": "aicost.budget",
    "PolicyViolation": "aicost.budget",
    "BudgetStoreUnavailable": "aicost.budget",
    "configure_budgets": "aicost.budget",
    "disable_budgets": "aicost.budget",
    "allow_long_context": "aicost.budget",
    "configure_pools": "aicost.pools",
}

__all__ = ["Usage", "__version__", *_LAZY]
__getattr__, __dir__ = _lazy_names(__name__, _LAZY)
