"""Vendor integrations: one module per SDK, found here by looking, never listed by name.

A module of this package is an integration when it has ``INTEGRATION``: an ``aicost.vendor.Integration``
subclass whose ``sdk`` names the SDK's importable module (``openai``, ``google.genai``, ``botocore``). It is loaded
only when that SDK is installed. Adding a vendor is adding a module (and its tests): nothing in the core changes.
See docs/concepts.md, "Adding a vendor".
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from typing import Any, Callable


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package that is missing or broken
        return False


def available() -> list[tuple[str, Callable[[], Any]]]:
    """(name, factory) of every integration whose SDK is installed, in module-name order."""
    from .._log import error_once

    found: list[tuple[str, Callable[[], Any]]] = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        try:
            module = importlib.import_module(f"{__name__}.{info.name}")
        except Exception:
            error_once(f"load:{info.name}", "aicost: the %s integration could not be imported", info.name)
            continue
        cls = getattr(module, "INTEGRATION", None)
        if cls is not None and _installed(cls.sdk):
            found.append((cls.name or info.name, cls))
    return found


def endpoint(key: str) -> Any:
    """The ``Endpoint`` whose key is ``key`` (``openai.chat.completions.create``), from any integration module,
    installed SDK or not; None if no table has it. For tools and tests that describe a call by its key."""
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        try:
            module = importlib.import_module(f"{__name__}.{info.name}")
        except Exception:
            continue
        cls = getattr(module, "INTEGRATION", None)
        for candidate in getattr(cls, "endpoints", ()) or ():
            if candidate.key == key:
                return candidate
    return None
