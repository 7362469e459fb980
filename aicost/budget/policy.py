"""Governance rules checked before a call: which models a scope may use, and how long prompts and answers may be.

Policies refuse with :class:`PolicyViolation` naming the rule, before anything is sent. The output-token cap
is not a check but an edit: the endpoint's own max-tokens parameter is lowered (or set), so the vendor stops
generating at the cap and the cap also bounds the budget's worst-case reservation.
"""

from __future__ import annotations

import contextvars
from contextlib import contextmanager
from fnmatch import fnmatchcase
from typing import Iterator, Mapping, Sequence

from ..errors import ConfigurationError
from .config import Policy
from .errors import PolicyViolation

# 0: no opt-in; -1: caps lifted; n > 0: caps raised to n for calls in this context.
_long_context: contextvars.ContextVar[int] = contextvars.ContextVar("aicost_long_context", default=0)



@contextmanager
def allow_long_context(max_input_tokens: int | None = None) -> Iterator[None]:
    """Opt the calls made inside this block out of ``Policy.max_input_tokens`` (or raise it to a new cap).

    Long contexts are where a single call can cost dollars; making them explicit at the call site keeps that a
    decision rather than an accident. Works across ``await`` (a contextvar).
    """
    if max_input_tokens is not None and (
        isinstance(max_input_tokens, bool) or not isinstance(max_input_tokens, int) or max_input_tokens <= 0
    ):
        raise ConfigurationError(f"allow_long_context: max_input_tokens must be a positive int, got {max_input_tokens!r}")
    token = _long_context.set(-1 if max_input_tokens is None else max_input_tokens)
    try:
        yield
    finally:
        _long_context.reset(token)


def scope_value(scope: str, attribute: str | None, attrs: Mapping[str, str], model: str | None, provider: str) -> str | None:
    """The value a call has for a scope key; None when the call is outside that scope (e.g. no team set)."""
    if scope == "global":
        return ""
    if scope == "model":
        return model or None
    if scope == "provider":
        return provider or None
    return attrs.get(attribute) if attribute else None  # type: ignore[return-value]


def _matches(model: str, patterns: Sequence[str]) -> bool:
    return any(model == p or fnmatchcase(model, p) for p in patterns)


class PolicySet:
    """The configured policies, evaluated against one call's attribution and model."""

    def __init__(self, policies: Sequence[Policy]) -> None:
        self.policies = tuple(policies)
        self.has_model_rules = any(p.allow_models is not None or p.deny_models for p in self.policies)
        self.has_input_caps = any(p.max_input_tokens is not None for p in self.policies)
        self.has_output_caps = any(p.max_output_tokens is not None for p in self.policies)

    def _applicable(self, attrs: Mapping[str, str], model: str | None, provider: str) -> Iterator[tuple[Policy, str]]:
        for p in self.policies:
            value = scope_value(p.scope, p.attribute, attrs, model, provider)
            if value is None or (p.value is not None and value != p.value):
                continue
            if p.unless and any(
                scope_value(s, _attr(s), attrs, model, provider) in values for s, values in p.unless  # type: ignore[union-attr]
            ):
                continue
            yield p, value

    def check_model(self, model: str | None, attrs: Mapping[str, str], provider: str) -> None:
        if not self.has_model_rules:
            return
        name = model or ""
        for p, value in self._applicable(attrs, model, provider):
            where = _where(p, value)
            if p.deny_models and _matches(name, p.deny_models):
                raise PolicyViolation(p.name or where, f"model {name!r} is denied for {where} (deny_models={list(p.deny_models)})")
            if p.allow_models is not None and not _matches(name, p.allow_models):
                raise PolicyViolation(
                    p.name or where, f"model {name!r} is not allowed for {where} (allow_models={list(p.allow_models)})"
                )

    def model_allowed(self, model: str | None, attrs: Mapping[str, str], provider: str) -> bool:
        try:
            self.check_model(model, attrs, provider)
        except PolicyViolation:
            return False
        return True

    def input_cap(self, attrs: Mapping[str, str], model: str | None, provider: str) -> tuple[int, Policy] | None:
        """The tightest input-token cap that applies here, after any ``allow_long_context`` opt-in."""
        if not self.has_input_caps:
            return None
        opt_in = _long_context.get()
        if opt_in == -1:
            return None
        best: tuple[int, Policy] | None = None
        for p, _ in self._applicable(attrs, model, provider):
            if p.max_input_tokens is not None and (best is None or p.max_input_tokens < best[0]):
                best = (p.max_input_tokens, p)
        if best is not None and opt_in > best[0]:
            return (opt_in, best[1])
        return best

    def output_cap(self, attrs: Mapping[str, str], model: str | None, provider: str) -> tuple[int, Policy] | None:
        if not self.has_output_caps:
            return None
        best: tuple[int, Policy] | None = None
        for p, _ in self._applicable(attrs, model, provider):
            if p.max_output_tokens is not None and (best is None or p.max_output_tokens < best[0]):
                best = (p.max_output_tokens, p)
        return best


def _attr(scope: str) -> str | None:
    from .config import scope_attribute

    return scope_attribute(scope)


def _where(p: Policy, value: str) -> str:
    return "every call" if p.scope == "global" else f"{p.scope}={value!r}"
