"""Vendor integrations: one module per SDK, found here by looking, never listed by name.

A module of this package is an integration when it has ``INTEGRATION``: an ``aicost.vendor.Integration``
subclass whose ``sdk`` names the SDK's importable module (``openai``, ``google.genai``, ``botocore``).
``instrument()`` imports no SDK: it patches an SDK the application has imported already, and any other when the
application imports it (``aicost._import_hooks``). An integration that lives outside aicost (a package of its
own, or a test) is added with :func:`register`. Adding a vendor is adding a module (and its tests): nothing in
the core changes. See docs/concepts.md, "Adding a vendor".
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import sys
from typing import Any

from .. import _fork

_registered: list[type] = []
_lock = _fork.lock()


def register(integration: type) -> None:
    """Add an integration defined outside this package (an ``aicost.vendor.Integration`` subclass with ``sdk``).
    Registering the same class again changes nothing. If aicost is instrumented, its SDK is patched at once
    (or when imported); otherwise at the next ``instrument()``."""
    from ..vendor import Integration

    if not (isinstance(integration, type) and issubclass(integration, Integration) and integration.sdk):
        from ..errors import ConfigurationError

        raise ConfigurationError(f"register({integration!r}): give an aicost.vendor.Integration subclass whose "
                                 "sdk names the SDK's importable module")
    with _lock:
        if integration in _registered:
            return
        _registered.append(integration)
    instrumentation = sys.modules.get("aicost.instrumentation")
    if instrumentation is not None:
        instrumentation.watch_integration(integration)


def unregister(integration: type) -> None:
    """Forget an integration added with :func:`register` (what it patched stays patched until ``uninstrument()``)."""
    with _lock:
        if integration in _registered:
            _registered.remove(integration)


def classes() -> list[type]:
    """Every integration class: this package's modules in name order, then the registered ones. Imports no SDK
    and does not look whether one is installed."""
    from .._log import error_once

    found: list[type] = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        try:
            module = importlib.import_module(f"{__name__}.{info.name}")
        except Exception:
            error_once(f"load:{info.name}", "aicost: the %s integration could not be imported", info.name)
            continue
        cls = getattr(module, "INTEGRATION", None)
        if cls is not None:
            found.append(cls)
    with _lock:
        found.extend(c for c in _registered if c not in found)
    return found


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package that is missing or broken
        return False


def available() -> list[tuple[str, type]]:
    """(name, class) of every integration whose SDK is installed (looked up on disk, not imported)."""
    return [(cls.name or cls.__module__, cls) for cls in classes() if _installed(cls.sdk)]


def endpoint(key: str) -> Any:
    """The ``Endpoint`` whose key is ``key`` (``openai.chat.completions.create``), from any integration, installed
    SDK or not; None if no table has it. For tools and tests that describe a call by its key."""
    for cls in classes():
        for candidate in getattr(cls, "endpoints", ()) or ():
            if candidate.key == key:
                return candidate
    return None
