"""Range checks for every number of a routing input, each error naming the field and where.

One bound per kind of number, so no value can reach the solver or the Decimal plan arithmetic
and come back as a traceback (a ``deficit_usd`` of 1e20 used to end in
``decimal.InvalidOperation``):

* money (USD amounts, fees, limits) is below ``core.domain.MAX_ABS_AMOUNT`` (1e18), the store's
  limit, which leaves room for 8+ decimals in Decimal's 28 digits;
* rates per USD (credit, cost, origin debit) are fractions in [0, 1], a credit at least
  ``MIN_CREDIT_PER_USD``;
* seconds are at most ``MAX_SECONDS`` (≈ 31.7 years), request rates at most ``MAX_RATE_PER_S``,
  API weights and budgets at most ``MAX_WEIGHT``, ratios at most ``MAX_RATIO``.

Numbers may be given as ``int``, ``float``, ``Decimal`` or a numeric string (the problem JSON
accepts ``"1029.80"`` as well as ``1029.8``); booleans are refused.
"""

from __future__ import annotations

import math
from decimal import Decimal, InvalidOperation

from core.domain import MAX_ABS_AMOUNT
from core.errors import DataError

__all__ = [
    "MAX_MONEY_USD",
    "MAX_RATE_PER_S",
    "MAX_RATIO",
    "MAX_SECONDS",
    "MAX_WEIGHT",
    "MIN_CREDIT_PER_USD",
    "SMALLEST_USD",
    "fraction",
    "in_range",
    "money",
    "number",
    "optional_positive_money",
]

MAX_MONEY_USD = float(MAX_ABS_AMOUNT)
# Plans book amounts to 1e-8 USD; a venue step or per-request cap below it is a typo.
SMALLEST_USD = 1e-8
# A segment crediting less than a millionth of a USD per USD moved is worth nothing; it would
# need amounts a million times the deficit, and cost per credit beyond any float.
MIN_CREDIT_PER_USD = 1e-6
MAX_SECONDS = 1e9
MAX_RATE_PER_S = 1e6
MAX_WEIGHT = 1e12
MAX_RATIO = 1e6


def number(value: object, field_name: str, where: str) -> float:
    """``value`` as a finite float, or a ``DataError`` naming ``field_name`` and ``where``."""
    if type(value) is float and math.isfinite(value):  # the common case, checked first
        return value
    if isinstance(value, str):
        try:
            parsed = Decimal(value.strip())
        except InvalidOperation:
            raise DataError(
                f"{field_name} is not a number", source=where, field=field_name, value=repr(value)
            ) from None
        value = parsed
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise DataError(
                f"{field_name} is NaN or infinite", source=where, field=field_name, value=value
            )
        if value.copy_abs() >= MAX_ABS_AMOUNT * MAX_ABS_AMOUNT:
            # beyond every bound below; float() of it would overflow to inf
            raise DataError(
                f"{field_name} is implausibly large", source=where, field=field_name, value=value
            )
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DataError(
            f"{field_name} must be a number, got {type(value).__name__}",
            source=where,
            field=field_name,
            value=repr(value),
        )
    try:
        result = float(value)
    except OverflowError:  # an int too large for a float
        raise DataError(
            f"{field_name} is implausibly large", source=where, field=field_name, value=value
        ) from None
    if not math.isfinite(result):
        raise DataError(
            f"{field_name} is NaN or infinite", source=where, field=field_name, value=value
        )
    return result


def in_range(
    value: object,
    field_name: str,
    where: str,
    *,
    low: float,
    high: float,
    low_open: bool = False,
    high_open: bool = False,
    unit: str = "",
) -> float:
    """``value`` checked to lie in the interval ``low``..``high`` (open or closed ends)."""
    result = number(value, field_name, where)
    below = result <= low if low_open else result < low
    above = result >= high if high_open else result > high
    if below or above:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        suffix = f" {unit}" if unit else ""
        raise DataError(
            f"{field_name} must be in {left}{low:g}, {high:g}{right}{suffix}",
            source=where,
            field=field_name,
            value=result,
        )
    return result


def money(value: object, field_name: str, where: str, *, positive: bool = False) -> float:
    """A USD amount: ≥ 0 and below the store's limit of 1e18; with ``positive``, at least
    ``SMALLEST_USD`` (a width, step or cap below the booking resolution is a typo)."""
    result = number(value, field_name, where)
    if result < 0 or (positive and result == 0):
        sign = "> 0" if positive else ">= 0"
        raise DataError(
            f"{field_name} must be {sign}", source=where, field=field_name, value=result
        )
    if positive and result < SMALLEST_USD:
        raise DataError(
            f"{field_name} must be at least {SMALLEST_USD:g} USD (the booking resolution)",
            source=where,
            field=field_name,
            value=result,
        )
    if result >= MAX_MONEY_USD:
        raise DataError(
            f"{field_name} must be below 1e18 USD (the store's limit for money)",
            source=where,
            field=field_name,
            value=result,
        )
    return result


def optional_positive_money(value: object | None, field_name: str, where: str) -> float | None:
    """``None`` (no limit) or a positive USD amount below 1e18."""
    return None if value is None else money(value, field_name, where, positive=True)


def fraction(value: object, field_name: str, where: str, *, low_open: bool = False) -> float:
    """A rate per USD in [0, 1] (or (0, 1] with ``low_open``)."""
    return in_range(value, field_name, where, low=0.0, high=1.0, low_open=low_open)
