"""aicost's exception types.

Only one family of exceptions ever leaves aicost during a vendor call: :class:`CallRefused`, raised on purpose
by a budget or a policy *before* any money is spent. Every other error inside aicost is logged once and
swallowed, so the application sees exactly what it would see without aicost.
"""

from __future__ import annotations


class AicostError(Exception):
    """Base class of aicost's own errors."""


class ConfigurationError(AicostError, ValueError):
    """Bad configuration (unknown model in an override, negative budget, malformed price file, ...).

    Raised at configure time, never in the middle of a request. Subclasses ValueError so that generic
    validation handlers catch it.
    """


class ConfigurationTypeError(ConfigurationError, TypeError):
    """A configuration value of the wrong type: a ConfigurationError, and a TypeError as it always was."""


class CallRefused(AicostError):
    """A call was refused before it was sent. Budgets and policies raise subclasses of this.

    The instrumentation core lets exactly these exceptions through from interceptors; anything else an
    interceptor raises is treated as an aicost bug: logged and swallowed.
    """


class NeverSent(AicostError):
    """What a call that was prepared but never sent ended with: a stream manager (Anthropic's ``messages.stream()``)
    dropped without its ``with`` block being entered. Never raised: it is that call's ``error.type`` (span, metrics,
    ``CallResult.error_type``), and such a call is finished like any other, settled at $0."""


class NeverStarted(AicostError):
    """What a unit of work (``aicost.feature``) ended with when its body never ran: a plain function under
    ``@aicost.feature`` (a decorator of the application's own in between, an object with ``async def __call__``)
    returned the coroutine or generator that was to run it, and that was dropped without ever being awaited or
    iterated (a forgotten ``await``, a task cancelled before it started). Never raised: it is that unit's
    ``error.type``, and its outcome is ``never_started``."""
