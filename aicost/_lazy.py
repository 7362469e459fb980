"""Names a package offers but imports on first use (PEP 562).

Why: ``import aicost`` must stay cheap for an app that only calls ``instrument()``, the cache's optional back
ends must not import their clients until asked for, and ``aicost report`` reads ``aicost.pricing.money`` without
loading the catalog and the price engine. Each of those packages lists its names once, in a table of
``name -> module``, and takes its ``__getattr__`` / ``__dir__`` from here.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any, Callable, Mapping

__all__ = ["lazy_names"]


def lazy_names(package: str, table: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module-level ``__getattr__`` and ``__dir__`` of ``package`` for the names in ``table`` (a module name,
    absolute or relative to ``package``). A name is imported once, then kept in the package's namespace."""

    def __getattr__(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(table))

    return __getattr__, __dir__
