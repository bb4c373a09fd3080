"""Column types that behave the same on SQLite and PostgreSQL.

Why custom types: SQLAlchemy's ``Numeric`` on SQLite goes through ``float`` (SQLite has no
decimal type), which would silently book ``0.1`` as ``0.1000000000000000055511``; and SQLite
forgets time zones, so an aware timestamp would come back naive. These decorators keep the
PostgreSQL DDL honest (``NUMERIC(38, 18)``, ``TIMESTAMP WITH TIME ZONE``, ``JSONB``) while
storing exact text / UTC on SQLite, so both backends return identical Python values.

Why ``NUMERIC(38, 18)``: 18 fractional digits hold the smallest on-chain unit we book (ETH wei,
1e-18) and 20 integer digits hold any desk balance; a value that does not fit is refused with a
``DataError`` instead of being rounded (see ``fit_decimal``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Context, Decimal
from enum import Enum
from typing import Any

from sqlalchemy import JSON, DateTime, Numeric, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

from core.errors import DataError

__all__ = [
    "MONEY_PRECISION",
    "MONEY_SCALE",
    "JsonPayload",
    "Money",
    "UtcDateTime",
    "fit_decimal",
    "plain_json",
    "tidy_decimal",
]

MONEY_PRECISION = 38
MONEY_SCALE = 18
_QUANTUM = Decimal(1).scaleb(-MONEY_SCALE)
_MAX_ABS = Decimal(10) ** (MONEY_PRECISION - MONEY_SCALE)
# The default context keeps 28 significant digits; a 38-digit column needs more, or quantize()
# raises InvalidOperation and normalize() silently rounds.
_WIDE = Context(prec=MONEY_PRECISION + 4)


def fit_decimal(value: Decimal, field: str, *, where: str = "") -> Decimal:
    """Return ``value`` quantised to 18 places, or raise if that would change it.

    Parameters
    ----------
    value
        A finite booked amount.
    field, where
        Named in the error so the operator knows which column of which row did not fit.

    Raises
    ------
    DataError
        ``value`` is not finite, has more than 18 fractional digits, or ``|value| >= 1e20``.
    """
    ctx: dict[str, object] = {"field": field, "value": value}
    if where:
        ctx["where"] = where
    if not isinstance(value, Decimal) or not value.is_finite():
        raise DataError("amount must be a finite Decimal", **ctx)
    if value.copy_abs() >= _MAX_ABS:  # abs() would round to 28 digits first
        raise DataError(
            f"amount does not fit NUMERIC({MONEY_PRECISION}, {MONEY_SCALE}): |value| >= 1e20",
            **ctx,
        )
    quantised = value.quantize(_QUANTUM, context=_WIDE)
    if quantised != value:
        raise DataError(
            f"amount has more than {MONEY_SCALE} decimal places; round it before booking",
            **ctx,
        )
    return quantised


def tidy_decimal(value: Decimal) -> Decimal:
    """Drop trailing zeros without switching to exponent notation (``100`` stays ``100``).

    Examples
    --------
    >>> tidy_decimal(Decimal("1.500000000000000000")), tidy_decimal(Decimal("100.000"))
    (Decimal('1.5'), Decimal('100'))
    """
    if value == value.to_integral_value():
        return value.quantize(Decimal(1), context=_WIDE)
    return value.normalize(context=_WIDE)


class Money(TypeDecorator[Decimal]):
    """``NUMERIC(38, 18)`` on PostgreSQL, exact text on SQLite; always returns a tidy Decimal."""

    impl = Numeric(MONEY_PRECISION, MONEY_SCALE)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(Numeric(MONEY_PRECISION, MONEY_SCALE, asdecimal=True))
        # 1 sign + 20 integer digits + point + 18 fraction digits = 40 characters at most.
        return dialect.type_descriptor(String(MONEY_PRECISION + 2))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        fitted = fit_decimal(Decimal(value), "money column")
        return fitted if dialect.name == "postgresql" else str(fitted)

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return tidy_decimal(Decimal(value) if not isinstance(value, Decimal) else value)


class UtcDateTime(TypeDecorator[datetime]):
    """``TIMESTAMP WITH TIME ZONE``; refuses naive datetimes and always returns aware UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise DataError("timestamp must be timezone-aware", value=value.isoformat())
        utc = value.astimezone(UTC)
        # SQLite stores the text without an offset; we always store UTC there.
        return utc if dialect.name == "postgresql" else utc.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def plain_json(value: Any, *, path: str = "$") -> Any:
    """Return ``value`` with ``Decimal`` → str, aware datetime → ISO-8601, enum → value.

    Raises
    ------
    DataError
        A NaN/infinite float (PostgreSQL JSON has no such number), a naive datetime, a
        non-string key, or an object JSON cannot hold; the error names the path.
    """
    if value is None or isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise DataError("JSON cannot hold NaN or infinity", path=path)
        return value
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise DataError("JSON cannot hold NaN or infinity", path=path)
        return str(value)
    if isinstance(value, Enum):
        return plain_json(value.value, path=path)
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise DataError("timestamp must be timezone-aware", path=path)
        return value.astimezone(UTC).isoformat()
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise DataError("JSON keys must be strings", path=path, key=repr(key))
            out[key] = plain_json(item, path=f"{path}.{key}")
        return out
    if isinstance(value, list | tuple):
        return [plain_json(item, path=f"{path}[{i}]") for i, item in enumerate(value)]
    raise DataError(f"cannot store {type(value).__name__} as JSON", path=path)


class JsonPayload(TypeDecorator[Any]):
    """``JSONB`` on PostgreSQL (indexable, queryable in views), ``JSON`` text elsewhere.

    Decimals are stored as strings (exact), datetimes as ISO-8601 UTC (see ``plain_json``).
    """

    impl = JSON(none_as_null=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        return None if value is None else plain_json(value)

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(JSONB(none_as_null=True))
        return dialect.type_descriptor(JSON(none_as_null=True))
