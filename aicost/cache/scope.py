"""Tenancy: which attribution attributes partition the cache.

A hit served to another customer is a data leak, so every entry is keyed by the attribution in force when it
was written (``aicost.attribution.current_attributes()``): by default customer, user and team. A cache is shared
across those scopes only when the application says so (``shared=True``). When the attribution module is absent
the scope is empty, which is only safe for single-tenant code: that is why the docs tell multi-tenant apps to
set attribution (or pass the tenant as an argument, which is part of the key anyway).
"""

from __future__ import annotations

import logging
from typing import Iterable

from .. import semconv
from ..errors import ConfigurationError
from .checks import check, check_bool, is_str

logger = logging.getLogger("aicost")

SCOPE_ATTRIBUTES = {
    "customer": semconv.AICOST_CUSTOMER,
    "user": semconv.AICOST_USER,
    "team": semconv.AICOST_TEAM,
    "feature": semconv.AICOST_FEATURE,
}
DEFAULT_SCOPE = ("customer", "user", "team")

_warned = False  # the "attribution module absent" notice is logged once


def parse_scope(scope: Iterable[str] | str | None, shared: bool) -> tuple[str, ...]:
    """Validate ``scope`` at decoration time; returns the attribute names to key on (empty when shared)."""
    accepted = (f"None, or one or a list of {sorted(SCOPE_ATTRIBUTES)} (or their 'aicost.' attribute names) and "
                f"'tag:<name>' (a tag name: {semconv.TAG_NAME_RULE})")
    check_bool("aicost.cache(shared=...)", shared)
    if shared:
        if scope is not None:
            raise ConfigurationError(
                "aicost.cache(scope=...) and aicost.cache(shared=True) contradict each other: pick one")
        return ()
    if scope is None:
        scope = DEFAULT_SCOPE
    if isinstance(scope, str):
        scope = (scope,)
    check("aicost.cache(scope=...)", scope, accepted, of_type=lambda s: isinstance(s, Iterable))
    names = []
    for item in scope:
        check("aicost.cache(scope=...)", item, accepted, of_type=is_str,
              within=lambda name: _attribute(name) is not None)
        names.append(_attribute(item))
    if not names:
        raise ConfigurationError(
            "aicost.cache(scope=()) would share entries across tenants; say shared=True if that is intended")
    return tuple(dict.fromkeys(names))


def _attribute(item: str) -> str | None:
    """The attribution attribute a scope item names, or None. Only attributes ``aicost.attribute()`` can set: a
    misspelt one ('aicost.custmer') or a tag name no call can carry would be '' for every caller, one scope shared
    by all tenants."""
    if item in SCOPE_ATTRIBUTES:
        return SCOPE_ATTRIBUTES[item]
    if item in SCOPE_ATTRIBUTES.values():
        return item
    for prefix in ("tag:", "tag.", semconv.AICOST_TAG_PREFIX):
        if item.startswith(prefix) and semconv.is_tag_name(item[len(prefix):]):
            return semconv.AICOST_TAG_PREFIX + item[len(prefix):]
    return None


def current_scope(attributes: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """The (attribute, value) pairs of the current attribution for ``attributes``; missing ones are ''.

    Attribution from upstream baggage counts only for the keys the application trusts (see
    ``aicost.attribution.configure_propagation``). A trusted key whose value overflowed the distinct-value cap
    reads "other", which names no tenant: such a call is not cached rather than share one bucket with others."""
    if not attributes:
        return ()
    current = _current_attributes()
    overflowed = current.get(semconv.AICOST_ATTRIBUTION_UPSTREAM_OVERFLOW)
    if overflowed and any(name in overflowed.split(",") for name in attributes):
        from .keys import Uncacheable

        raise Uncacheable("the tenant came from upstream baggage past its distinct-value cap")
    return tuple((name, str(current.get(name, ""))) for name in attributes)


def _current_attributes():
    global _warned
    try:
        from ..attribution import current_attributes
    except ImportError:
        if not _warned:
            _warned = True
            logger.debug("aicost.attribution is not available: cache entries are scoped to the process only")
        return {}
    try:
        return current_attributes() or {}
    except Exception as exc:  # an unknown tenant must not fall into the shared scope: skip the cache instead
        from .keys import Uncacheable

        raise Uncacheable(f"reading attribution failed: {type(exc).__name__}") from exc
