"""The one written form of an exact amount of money: no trailing zeros, never exponent notation.

Why one function: the same cost reaches people through span attributes, rollups, metrics, the CLI, API results
and ``Cost`` objects. Decimal keeps the exponent of the arithmetic that produced a value, so the same 3.06e-5
USD came out as ``'0.00003060'``, ``0.0000306`` or ``Decimal('3.060E-5')`` depending on the path. Every write site
calls :func:`canonical` (a Decimal) or :func:`format_usd` (its text); equal amounts then look the same, and a
string compare of two exported costs is a value compare.

``Decimal.normalize()`` alone is not enough: it rounds to the *thread's* context precision (a host app may have
lowered it) and turns integers with trailing zeros into exponents (``10`` -> ``1E+1``, ``0E-7`` stays odd). Here
the precision is private and wide enough never to round an amount aicost produces (an ``Inexact`` would raise).
"""

from __future__ import annotations

import decimal
import math
from decimal import Decimal
from functools import reduce
from typing import Iterable

from ..errors import ConfigurationError, ConfigurationTypeError


def private_context(prec: int, traps: Iterable[type[decimal.DecimalException]], *, emax: int = 999_999,
                    emin: int = -999_999) -> decimal.Context:
    """A decimal context of aicost's own, every field given: ``prec`` digits, rounding half-even, exponents within
    ``[emin, emax]`` and never clamped, a capital ``E``, only ``traps`` trapped. ``decimal.Context(...)`` copies each
    field it is not given from ``decimal.DefaultContext`` as it is at that moment, which a host may have changed
    before it imported aicost (``DefaultContext.Emax = 9``, ``.clamp = 1``, a trapped ``FloatOperation``): every
    context aicost computes money in is made here, so none of them takes anything from the host."""
    return decimal.Context(prec=prec, rounding=decimal.ROUND_HALF_EVEN, Emax=emax, Emin=emin, capitals=1, clamp=0,
                           flags=[], traps=list(traps))


# Amounts are made in the 60-digit money context (pricing.cost.MONEY); sums of many of them stay far below this.
_CANONICAL = private_context(120, traps=[decimal.InvalidOperation, decimal.Inexact])
_ZERO = Decimal(0)
_TEN = Decimal(10)
_normalize = _CANONICAL.normalize
_add = _CANONICAL.add
# str(value), but always with a capital E: str() writes the exponent as the thread's context says (capitals=0:
# '1e-7', which a check for 'E' takes for plain notation, and SQLite's integer sums read as 1 dollar). No rounding.
# Everything aicost writes a Decimal as text with goes through it (format_usd, the span's cost, unit costs).
sci_text = _CANONICAL.to_sci_string


def canonicalize_parts(parts: dict[str, Decimal]) -> None:
    """:func:`canonical` applied in place to every amount of ``parts`` (the per-call path: no call per value)."""
    normalize, add, zero, ten = _normalize, _add, _ZERO, _TEN
    for name, value in parts.items():
        value = normalize(value)
        parts[name] = value if zero < value < ten else add(value, zero)  # see canonical()


def canonical(value: Decimal) -> Decimal:
    """``value`` with no trailing fractional zeros and a non-positive exponent: ``0.8400000`` -> ``0.84``,
    ``1E+1`` -> ``10``, ``0E-7`` and ``-0`` -> ``0``. The value itself never changes."""
    # normalize() strips trailing zeros (and may leave a positive exponent); adding an exponent-0 zero brings
    # the exponent back to 0 at most, which also turns -0 into 0. Between 0 and 10 (exclusive: a call's amounts
    # are nearly always there) normalize() cannot leave a positive exponent, nor a sign, and the add is skipped.
    value = _normalize(value)
    return value if _ZERO < value < _TEN else _add(value, _ZERO)


def usd_amount(value: object, owner: str) -> Decimal:
    """An amount in USD a user gives (a budget's limit, a spike's minimum): a ``Decimal``, int, str or float, as the
    exact ``Decimal`` it means. A float is read by its shortest repr (``0.1`` is ``Decimal("0.1")``, not
    ``Decimal(0.1)``, 0.1000000000000000055...: a limit, or a threshold a figure is compared with, is what was
    written), which also mixes no float into a ``Decimal`` for a host that traps ``FloatOperation``. Not finite,
    not a number or of another type: ConfigurationError (ConfigurationTypeError), naming ``owner``."""
    if isinstance(value, bool) or not isinstance(value, (Decimal, int, float, str)):
        raise ConfigurationTypeError(f"{owner} must be a Decimal, int, str or float amount in USD, got {type(value).__name__}")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigurationError(f"{owner} must be finite, got {value!r}")
        value = repr(value)
    try:
        amount = Decimal(value)  # type: ignore[arg-type]
    except decimal.InvalidOperation:
        raise ConfigurationError(f"{owner}: not a number: {value!r}") from None
    if not amount.is_finite():
        raise ConfigurationError(f"{owner} must be finite, got {value!r}")
    return amount


def format_usd(value: Decimal) -> str:
    """The text of an amount as aicost writes it everywhere: ``'0.0000306'``, ``'10'``, ``'0'``."""
    # Most amounts are canonical already (read back from canonical text): their str() is the answer, several
    # times cheaper than normalizing (a report prints hundreds of thousands). str() is plain notation unless the
    # exponent is positive or the value tiny ('E'); a fraction ending in 0 or a '-0' is not canonical.
    text = sci_text(value)
    if "E" in text or text[-1] not in _DIGITS or (text[-1] == "0" and "." in text) or text == "-0":
        return format(canonical(value), "f")
    return text


_DIGITS = frozenset("0123456789")


# ``a - b`` exactly, whatever the thread's decimal context (a host may run at a low precision): a bound method, so
# reports map it over whole columns in C. Not canonical: canonical() the result where it is written.
subtract_usd = _CANONICAL.subtract


def sum_usd(values: "Iterable[Decimal]") -> Decimal:
    """The exact sum of amounts, canonical, independent of the thread's decimal context."""
    return _add(_normalize(reduce(_add, values, _ZERO)), _ZERO)  # the loop in C: reports sum 60,000 at a time


# Figures made from money that are not amounts to add up: a percentage, a share, a ratio, a rate per million tokens,
# a projection rounded to 6 places, an amount rounded to the cent for a person to read. They are divided, multiplied
# and rounded (``RATIO.divide``, ``RATIO.quantize``) as Python's default context does, 28 digits half-even, so they
# read as they always did whatever the calling thread's context (a host may run at prec=4, round down, or trap
# Inexact). Amounts themselves are added and subtracted exactly (:func:`sum_usd`, :data:`subtract_usd`), never here.
RATIO = private_context(28, traps=[decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow])


_TENTH = Decimal("0.1")


def percent(part: Decimal, whole: Decimal | int = 1, quantum: Decimal = _TENTH) -> Decimal:
    """``part`` as a percentage of ``whole`` (a fraction of 1 when ``whole`` is not given), rounded half-even to
    ``quantum`` (0.1 unless told: ``Decimal(1)`` for whole percents), in :data:`RATIO`: what a report, an alert or
    a pool's utilisation prints, the same whatever the calling thread's decimal context."""
    return RATIO.quantize(RATIO.divide(RATIO.multiply(part, 100), whole), quantum)
