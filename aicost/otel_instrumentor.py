"""``opentelemetry-instrument python app.py`` support: the ``opentelemetry_instrumentor`` entry point.

OpenTelemetry's auto-instrumentation loads every installed instrumentor through that entry point group and calls
``instrument(skip_dep_check=True)`` on it (a distro may add keywords of its own). aicost then behaves exactly as
after ``aicost.instrument()``, with the global providers the auto-instrumentation configured from the standard
``OTEL_*`` environment variables; called in code, ``AicostInstrumentor().instrument(...)`` takes every argument of
``aicost.instrument()`` too. ``opentelemetry-instrumentation`` is not a dependency of aicost: without it this module
still imports, and the class offers the same two methods.
"""

from __future__ import annotations

from typing import Any, Collection

from ._log import warn_once
from .instrumentation import instrument, is_instrumented, misspelt_arguments, uninstrument

try:  # pragma: no branch
    from opentelemetry.instrumentation.instrumentor import BaseInstrumentor as _Base
except ImportError:  # opentelemetry-instrumentation not installed: a minimal stand-in with the same surface
    class _Base:  # type: ignore[no-redef]
        def instrument(self, **kwargs: Any) -> None:
            self._instrument(**kwargs)

        def uninstrument(self, **kwargs: Any) -> None:
            self._uninstrument(**kwargs)

# OpenTelemetry's own keywords, not aicost's: those ``BaseInstrumentor.instrument()`` reads (the auto-instrumentation
# passes ``skip_dep_check=True`` to every instrumentor; they reach ``_instrument`` when aicost is instrumented
# already, see ``instrument`` below), and the providers of the signals aicost does not emit, which instrumentors take
# as they take ``tracer_provider`` and ``meter_provider`` (those two are aicost's arguments as well).
OPENTELEMETRY_KEYWORDS = frozenset({"skip_dep_check", "raise_exception_on_conflict", "logger_provider",
                                    "event_logger_provider"})
_WHERE = "AicostInstrumentor().instrument"


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
        """aicost's arguments go to ``aicost.instrument()``, which checks them; OpenTelemetry's own are not aicost's.
        A misspelling of one of aicost's (``ledgr=``) raises ``ConfigurationError`` naming it and the accepted ones:
        dropped, it would leave the ledger off with no word said. Any other keyword is a distro's, passed to every
        instrumentor (contrib instrumentors ignore what they do not take): refusing it would stop the
        auto-instrumentation of every instrumentor after aicost, so it is left, and said once."""
        given = [name for name in kwargs if name not in OPENTELEMETRY_KEYWORDS]
        others = misspelt_arguments(given, _WHERE, f"OpenTelemetry's {', '.join(sorted(OPENTELEMETRY_KEYWORDS))}")
        if others:
            warn_once(f"otel-instrumentor:ignored:{','.join(sorted(others))}", "aicost: %s ignored %s: neither "
                      "aicost.instrument()'s arguments nor OpenTelemetry's own", _WHERE, ", ".join(sorted(others)))
        instrument(**{name: kwargs[name] for name in given if name not in others})

    def _uninstrument(self, **kwargs: Any) -> None:
        uninstrument()
