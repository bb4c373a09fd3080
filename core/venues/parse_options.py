"""Binance European options payloads (``eapi``, as ccxt returns them in ``info``) → reports.

One named function per payload (STYLE rule 3), reading the raw Binance fields:

- ``GET /eapi/v1/position`` → :func:`parse_option_positions`. Binance documents ``quantity``
  as signed (short < 0) next to ``side`` LONG / SHORT; the two must agree or the row is refused.
  (ccxt 4.5.90's ``parse_option_position`` negates the quantity of every non-LONG row, so its
  ``contracts`` for a short is positive: the raw field is what is read here.)
- ``GET /eapi/v1/mark`` + ``GET /eapi/v1/index`` → :func:`parse_option_marks`: the mark has no
  time of its own; it is stamped with its underlying index's ``time``, from which Binance
  computes it, so a stale index makes every mark on it stale.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from core.clock import ns_to_datetime
from core.domain import Asset, PositionSide, WalletKind, to_decimal
from core.errors import DataError
from core.venues.reports import OptionMarkReport, PositionReport

__all__ = [
    "BINANCE_OPTION_ID",
    "BINANCE_OPTION_QUOTE",
    "binance_option_underlying",
    "parse_option_index",
    "parse_option_marks",
    "parse_option_positions",
]

Raw = Mapping[str, Any]

# Binance European option id: BASE-YYMMDD-STRIKE-C|P (e.g. BTC-270326-100000-C).
BINANCE_OPTION_ID = re.compile(r"^([A-Z0-9]{2,15})-(\d{6})-(\d+(?:\.\d+)?)-([CP])$")
# Every Binance European option is quoted and settled in USDT; its underlying index is BASEUSDT.
BINANCE_OPTION_QUOTE = "USDT"


def _d(raw: Raw, key: str, where: str) -> Decimal:
    if key not in raw or raw[key] in (None, ""):
        raise DataError("venue payload lacks a field", field=key, where=where)
    value = to_decimal(raw[key], key, where=where)
    return value if value != 0 else Decimal(0)


def binance_option_underlying(symbol: str) -> str:
    """The ``/eapi/v1/index`` underlying of a Binance option id.

    >>> binance_option_underlying("BTC-270326-100000-C")
    'BTCUSDT'
    """
    m = BINANCE_OPTION_ID.match(symbol)
    if m is None:
        raise DataError("not a Binance option id BASE-YYMMDD-STRIKE-C|P", symbol=symbol)
    return m.group(1) + BINANCE_OPTION_QUOTE


def parse_option_positions(venue: str, rows: Sequence[Raw]) -> tuple[PositionReport, ...]:
    """GET /eapi/v1/position rows → option positions (flat rows dropped), ``qty`` signed."""
    where = f"{venue} /eapi/v1/position"
    out = []
    for row in rows:
        symbol = row.get("symbol")
        if not isinstance(symbol, str) or not symbol:
            raise DataError("venue payload lacks a field", field="symbol", where=where)
        here = f"{where} {symbol}"
        qty = _d(row, "quantity", here)
        match row.get("side"):
            case "LONG":
                wrong = qty < 0
            case "SHORT":
                wrong = qty > 0
            case other:
                raise DataError("unknown Binance option side", value=repr(other), where=here)
        if wrong:
            raise DataError(
                "option quantity and side disagree", side=row["side"], quantity=qty, where=here
            )
        if qty == 0:
            continue
        quote = row.get("quoteAsset")
        if not quote:
            raise DataError("venue payload lacks a field", field="quoteAsset", where=here)
        out.append(
            PositionReport(
                venue=venue,
                wallet=WalletKind.OPTIONS,
                symbol=symbol,
                qty=qty,
                entry_price=_d(row, "entryPrice", here),
                mark_price=_d(row, "markPrice", here),
                unrealized_pnl=_d(row, "unrealizedPNL", here),
                margin_asset=Asset(quote),
                side=PositionSide.BOTH,
            )
        )
    return tuple(out)


def parse_option_index(venue: str, underlying: str, raw: Raw) -> tuple[Decimal, datetime]:
    """GET /eapi/v1/index?underlying= → (index price, its time on the venue's clock)."""
    where = f"{venue} /eapi/v1/index {underlying}"
    price = _d(raw, "indexPrice", where)
    if price <= 0:
        raise DataError("index price must be > 0", value=price, where=where)
    if "time" not in raw:
        raise DataError("venue payload lacks a field", field="time", where=where)
    return price, ns_to_datetime(int(raw["time"]) * 1_000_000)


def _iv_side(raw: Raw, key: str, where: str) -> Decimal | None:
    """A bid/ask IV, or ``None`` where Binance sends −1 (no order on that side)."""
    if raw.get(key) in (None, ""):
        return None
    value = to_decimal(raw[key], key, where=where)
    return None if value < 0 else value


def parse_option_marks(
    venue: str, rows: Sequence[Raw], index: Mapping[str, tuple[Decimal, datetime]]
) -> tuple[OptionMarkReport, ...]:
    """GET /eapi/v1/mark rows + their underlyings' indices (by ``BTCUSDT``) → option marks.

    Raises ``DataError`` for a row whose underlying index is missing: a mark without its
    forward cannot be priced by the margin models.
    """
    where = f"{venue} /eapi/v1/mark"
    out = []
    for row in rows:
        symbol = str(row.get("symbol") or "")
        here = f"{where} {symbol}"
        underlying = binance_option_underlying(symbol)
        if underlying not in index:
            raise DataError(
                "no index for the option's underlying", underlying=underlying, where=here
            )
        forward, at = index[underlying]
        out.append(
            OptionMarkReport(
                venue=venue,
                symbol=symbol,
                mark=_d(row, "markPrice", here),
                index=forward,
                mark_iv=_d(row, "markIV", here),
                bid_iv=_iv_side(row, "bidIV", here),
                ask_iv=_iv_side(row, "askIV", here),
                delta=_d(row, "delta", here),
                gamma=_d(row, "gamma", here),
                theta=_d(row, "theta", here),
                vega=_d(row, "vega", here),
                at=at,
            )
        )
    return tuple(out)
