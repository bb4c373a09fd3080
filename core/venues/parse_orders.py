"""Binance order payloads (as ccxt returns them in ``info``) → pmr order reports.

Kept apart from :mod:`core.venues.parse` (balances, positions, transfers) so order mapping
grows on its own. Field names are Binance's: "Margin Account New Order (TRADE)" and "Query
Margin Account's Order (USER_DATA)", for ``/sapi/v1/margin/order`` and the Portfolio Margin
``/papi/v1/margin/order`` alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from core.clock import ns_to_datetime
from core.domain import Asset, to_decimal
from core.errors import DataError
from core.venues.reports import MarginOrderResult, VenueTransferStatus

__all__ = ["parse_margin_order", "parse_order_status"]


def parse_margin_order(
    venue: str, key: str, info: Mapping[str, Any], from_asset: Asset, to_asset: Asset
) -> MarginOrderResult:
    """Map a margin order answer (new order or query) to a :class:`MarginOrderResult`.

    A SELL spends ``executedQty`` of the base and receives ``cummulativeQuoteQty`` of the quote;
    a BUY the other way round. The time is ``transactTime`` (new order) or ``updateTime``
    (query).

    Examples
    --------
    >>> r = parse_margin_order("sim-a", "k1", {"symbol": "DOGEUSDT", "orderId": 7, "side": "SELL",
    ...     "status": "FILLED", "executedQty": "1000", "cummulativeQuoteQty": "249.8",
    ...     "transactTime": 1767225600000}, Asset("DOGE"), Asset("USDT"))
    >>> (r.from_amount, r.to_amount, r.side)
    (Decimal('1000'), Decimal('249.8'), 'SELL')
    """
    where = f"margin order {key} on {venue}"
    side: Literal["BUY", "SELL"]
    match info.get("side"):
        case "SELL":
            side = "SELL"
            spent_field, got_field = "executedQty", "cummulativeQuoteQty"
        case "BUY":
            side = "BUY"
            spent_field, got_field = "cummulativeQuoteQty", "executedQty"
        case other:
            raise DataError("unknown order side", field="side", value=other, where=where)
    ts_ms = info.get("transactTime", info.get("updateTime"))
    if ts_ms is None:
        raise DataError("order answer has no time", where=where)
    return MarginOrderResult(
        venue=venue,
        key=key,
        order_id=str(info["orderId"]),
        symbol=str(info["symbol"]),
        side=side,
        status=str(info["status"]),
        from_asset=from_asset,
        to_asset=to_asset,
        from_amount=to_decimal(info[spent_field], spent_field, where=where),
        to_amount=to_decimal(info[got_field], got_field, where=where),
        at=ns_to_datetime(int(ts_ms) * 1_000_000),
    )


def parse_order_status(info: Mapping[str, Any]) -> VenueTransferStatus:
    """What a margin order's Binance ``status`` means for the conversion it carries.

    A MARKET order is final once ``FILLED``, or ``EXPIRED`` / ``CANCELED`` (the unfilled rest
    expired): ``confirmed`` if anything filled (the result carries the filled amounts),
    ``failed`` if nothing did; ``REJECTED`` is ``failed``; ``NEW``, ``PARTIALLY_FILLED``,
    ``PENDING_NEW`` and ``PENDING_CANCEL`` are still ``pending``. Binance spot/margin "ENUM
    definitions", order status. Unknown statuses raise.

    >>> parse_order_status({"status": "EXPIRED", "executedQty": "0.00000000"}).value
    'failed'
    """
    match info.get("status"):
        case "NEW" | "PARTIALLY_FILLED" | "PENDING_NEW" | "PENDING_CANCEL":
            return VenueTransferStatus.PENDING
        case "FILLED" | "EXPIRED" | "CANCELED" | "EXPIRED_IN_MATCH":
            filled = to_decimal(info.get("executedQty", "0"), "executedQty", where="order status")
            return VenueTransferStatus.CONFIRMED if filled > 0 else VenueTransferStatus.FAILED
        case "REJECTED":
            return VenueTransferStatus.FAILED
        case other:
            raise DataError("unknown Binance order status", field="status", value=other)
