"""Configure-time checks of the cache's arguments: ``aicost.cache(...)``, its configuration objects (``Semantic``,
``Guards``, verifiers, embedders, indexes) and its stores.

Bad input must fail where it is written, not as a wrong hit later: ``Guards(numbers="false")`` would otherwise keep
the guard on (a non-empty string is truthy). Every refusal names the argument and what it accepts, and is the
error the rest of aicost's configuration raises: :class:`~aicost.errors.ConfigurationTypeError` for a value of
the wrong type, :class:`~aicost.errors.ConfigurationError` for a value of the right type out of range. Which of the
two it is is decided here, once, by :func:`check`: a call site says what type it takes and what range, never
which error to raise.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from ..errors import ConfigurationError, ConfigurationTypeError


def refuse(argument: str, accepted: str, got: Any, *, wrong_type: bool, private: bool = False) -> None:
    """Raise for ``argument`` (``"Semantic(threshold=...)"``). A ``private`` value (a key) is named by its type
    only: an error message ends up in logs."""
    error = ConfigurationTypeError if wrong_type else ConfigurationError
    shown = f"a {type(got).__name__}" if private else repr(got)
    raise error(f"{argument} must be {accepted}, got {shown}")


def check(argument: str, value: Any, accepted: str, *, of_type: Callable[[Any], bool],
          within: Callable[[Any], bool] | None = None, or_none: bool = False, private: bool = False) -> Any:
    """``value`` if ``of_type(value)`` and ``within(value)``; else refuse it, naming ``argument`` and ``accepted``.

    A value ``of_type`` refuses is of the wrong type (ConfigurationTypeError, also a TypeError); one of the right
    type that ``within`` refuses is out of range (ConfigurationError, a ValueError). With ``or_none`` None is
    accepted as is (an option left unset). A ``private`` value is named by its type only (see :func:`refuse`)."""
    if or_none and value is None:
        return None
    if not of_type(value):
        refuse(argument, accepted, value, wrong_type=True, private=private)
    if within is not None and not within(value):
        refuse(argument, accepted, value, wrong_type=False, private=private)
    return value


def is_number(value: Any) -> bool:
    """An int or float, never a bool (``True`` is an int to Python, never a count or seconds to a user)."""
    return not isinstance(value, bool) and isinstance(value, (int, float))


def is_int(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int)


def is_str(value: Any) -> bool:
    return isinstance(value, str)


def check_bool(argument: str, value: Any) -> bool:
    return check(argument, value, "True or False", of_type=lambda v: isinstance(v, bool))


def check_int(argument: str, value: Any, *, minimum: int, maximum: int | None = None, or_none: bool = False) -> Any:
    """An int (never a bool) in [``minimum``, ``maximum``]; or None with ``or_none``."""
    if maximum is not None:
        accepted = f"an int in [{minimum}, {maximum}]"
    else:
        accepted = "a positive int" if minimum == 1 else f"an int >= {minimum}"
    if or_none:
        accepted += " or None"
    return check(argument, value, accepted, of_type=is_int, or_none=or_none,
                 within=lambda v: minimum <= v and (maximum is None or v <= maximum))


def check_seconds(argument: str, value: Any, accepted: str, *, maximum: float = math.inf,
                  or_none: bool = False) -> float | None:
    """A number of seconds (never a bool) in (0, ``maximum``]; or None with ``or_none``."""
    seconds = check(argument, value, accepted, of_type=is_number,
                    within=lambda v: 0 < v <= maximum and math.isfinite(v), or_none=or_none)
    return None if seconds is None else float(seconds)


def check_fraction(argument: str, value: Any, accepted: str) -> float:
    """A real number (never a bool) in (0, 1]."""
    return float(check(argument, value, accepted, of_type=is_number, within=lambda v: 0.0 < v <= 1.0))


def check_finite(argument: str, value: Any, *, minimum: float) -> float:
    """A finite real number (never a bool) >= ``minimum``."""
    return float(check(argument, value, f"a finite number >= {minimum:g}", of_type=is_number,
                       within=lambda v: math.isfinite(v) and v >= minimum))
