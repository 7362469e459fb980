"""Configure-time checks of the cache's configuration objects (``Semantic``, ``Guards``, verifiers, embedders,
indexes, stores).

Bad input must fail where it is written, not as a wrong hit later: ``Guards(numbers="false")`` would otherwise keep
the guard on (a non-empty string is truthy). Every refusal names the argument and what it accepts, and is the
error the rest of aicost's configuration raises: :class:`~aicost.errors.ConfigurationTypeError` for a value of
the wrong type, :class:`~aicost.errors.ConfigurationError` for a value of the right type out of range.
"""

from __future__ import annotations

import math
from typing import Any

from ..errors import ConfigurationError, ConfigurationTypeError


def refuse(argument: str, accepted: str, got: Any, *, wrong_type: bool) -> None:
    """Raise for ``argument`` (``"Semantic(threshold=...)"``)."""
    error = ConfigurationTypeError if wrong_type else ConfigurationError
    raise error(f"{argument} must be {accepted}, got {got!r}")


def check_bool(argument: str, value: Any) -> bool:
    if not isinstance(value, bool):
        refuse(argument, "True or False", value, wrong_type=True)
    return value


def check_int(argument: str, value: Any, *, minimum: int) -> int:
    """An int (never a bool) >= ``minimum``."""
    accepted = "a positive int" if minimum == 1 else f"an int >= {minimum}"
    if isinstance(value, bool) or not isinstance(value, int):
        refuse(argument, accepted, value, wrong_type=True)
    if value < minimum:
        refuse(argument, accepted, value, wrong_type=False)
    return value


def check_fraction(argument: str, value: Any, accepted: str) -> float:
    """A real number (never a bool) in (0, 1]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        refuse(argument, accepted, value, wrong_type=True)
    if not 0.0 < value <= 1.0:
        refuse(argument, accepted, value, wrong_type=False)
    return float(value)


def check_finite(argument: str, value: Any, *, minimum: float) -> float:
    """A finite real number (never a bool) >= ``minimum``."""
    accepted = f"a finite number >= {minimum:g}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        refuse(argument, accepted, value, wrong_type=True)
    if not (math.isfinite(value) and value >= minimum):
        refuse(argument, accepted, value, wrong_type=False)
    return float(value)
