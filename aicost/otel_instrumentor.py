"""``opentelemetry-instrument python app.py`` support: the ``opentelemetry_instrumentor`` entry point.

OpenTelemetry's auto-instrumentation loads every installed instrumentor through that entry point group and calls
``instrument(tracer_provider=..., meter_provider=...)``. aicost then behaves exactly as after
``aicost.instrument()`` with the providers the auto-instrumentation configured from the standard ``OTEL_*``
environment variables, and any other argument of ``aicost.instrument()`` given here. ``opentelemetry-instrumentation``
is not a dependency of aicost: without it this module still imports, and the class offers the same two methods.
"""

from __future__ import annotations

import inspect
from typing import Any, Collection

from .instrumentation import instrument, is_instrumented, uninstrument

try:  # pragma: no branch
    from opentelemetry.instrumentation.instrumentor import BaseInstrumentor as _Base
except ImportError:  # opentelemetry-instrumentation not installed: a minimal stand-in with the same surface
    class _Base:  # type: ignore[no-redef]
        def instrument(self, **kwargs: Any) -> None:
            self._instrument(**kwargs)

        def uninstrument(self, **kwargs: Any) -> None:
            self._uninstrument(**kwargs)

# What ``instrument()`` accepts; OpenTelemetry's own keywords (``skip_dep_check``...) are not aicost's.
_ARGUMENTS = frozenset(inspect.signature(instrument).parameters)


class AicostInstrumentor(_Base):  # type: ignore[misc, valid-type]
    def instrumentation_dependencies(self) -> Collection[str]:
        # Every SDK is optional: aicost patches whichever the application imports, so none is required here.
        return ()

    # BaseInstrumentor keeps its own flag, which skips instrument() while set and uninstrument() while not. aicost
    # has one state whichever way it was instrumented: this flag reads it, so that after aicost.uninstrument()
    # instrument() here patches again, and after aicost.instrument() uninstrument() here restores everything.
    @property
    def _is_instrumented_by_opentelemetry(self) -> bool:
        return is_instrumented()

    @_is_instrumented_by_opentelemetry.setter
    def _is_instrumented_by_opentelemetry(self, value: bool) -> None:
        pass  # set by instrument() / uninstrument() themselves

    def instrument(self, **kwargs: Any) -> Any:
        """As ``aicost.instrument()``: idempotent, each call with its own arguments. ``BaseInstrumentor.instrument()``
        returns at once while instrumented (a warning, the arguments dropped), so a second call goes straight to
        aicost, which patches nothing twice and takes (or refuses) the arguments."""
        if is_instrumented():
            return self._instrument(**kwargs)
        return super().instrument(**kwargs)

    def _instrument(self, **kwargs: Any) -> None:
        instrument(**{k: v for k, v in kwargs.items() if k in _ARGUMENTS})

    def _uninstrument(self, **kwargs: Any) -> None:
        uninstrument()
