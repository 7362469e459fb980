"""``opentelemetry-instrument python app.py`` support: the ``opentelemetry_instrumentor`` entry point.

OpenTelemetry's auto-instrumentation loads every installed instrumentor through that entry point group and calls
``instrument(tracer_provider=..., meter_provider=...)``. aicost then behaves exactly as after
``aicost.instrument()`` with the providers the auto-instrumentation configured from the standard ``OTEL_*``
environment variables. ``opentelemetry-instrumentation`` is not a dependency of aicost: without it this module
still imports, and the class offers the same two methods.
"""

from __future__ import annotations

from typing import Any, Collection

from .instrumentation import instrument, uninstrument

try:  # pragma: no branch
    from opentelemetry.instrumentation.instrumentor import BaseInstrumentor as _Base
except ImportError:  # opentelemetry-instrumentation not installed: a minimal stand-in with the same surface
    class _Base:  # type: ignore[no-redef]
        def instrument(self, **kwargs: Any) -> None:
            self._instrument(**kwargs)

        def uninstrument(self, **kwargs: Any) -> None:
            self._uninstrument(**kwargs)


class AicostInstrumentor(_Base):  # type: ignore[misc, valid-type]
    def instrumentation_dependencies(self) -> Collection[str]:
        # Every SDK is optional: aicost patches whichever the application imports, so none is required here.
        return ()

    def _instrument(self, **kwargs: Any) -> None:
        instrument(tracer_provider=kwargs.get("tracer_provider"), meter_provider=kwargs.get("meter_provider"))

    def _uninstrument(self, **kwargs: Any) -> None:
        uninstrument()
