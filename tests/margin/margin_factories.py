"""Factories for margin tests: instruments, prices, balances and pools with real-looking values."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from core.domain import (
    Asset,
    Balance,
    Instrument,
    InstrumentKind,
    MarginModelKind,
    MarkPrice,
    OptionRight,
    Pool,
    Portfolio,
    Position,
    Settlement,
    WalletKind,
)

AT = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
VENUE = "v"


def D(x: object) -> Decimal:  # noqa: N802 - reads like the Decimal it builds
    return Decimal(str(x))


def linear(
    symbol: str = "BTCUSDT",
    underlying: str = "BTC",
    quote: str = "USDT",
    *,
    expiry_days: float | None = None,
    contract_size: object = 1,
) -> Instrument:
    kind = InstrumentKind.LINEAR_PERP if expiry_days is None else InstrumentKind.LINEAR_FUTURE
    expiry = None if expiry_days is None else AT + timedelta(days=expiry_days)
    return Instrument(symbol, kind, Asset(underlying), Asset(quote), D(contract_size), expiry)


def inverse(
    symbol: str = "BTCUSD_PERP",
    underlying: str = "BTC",
    *,
    face_usd: object = 100,
    expiry_days: float | None = None,
) -> Instrument:
    kind = InstrumentKind.INVERSE_PERP if expiry_days is None else InstrumentKind.INVERSE_FUTURE
    expiry = None if expiry_days is None else AT + timedelta(days=expiry_days)
    return Instrument(symbol, kind, Asset(underlying), Asset("USD"), D(face_usd), expiry)


def spot(symbol: str = "BTC/USDT", underlying: str = "BTC", quote: str = "USDT") -> Instrument:
    return Instrument(symbol, InstrumentKind.SPOT, Asset(underlying), Asset(quote))


def option(
    strike: object,
    right: str = "call",
    *,
    underlying: str = "BTC",
    days: float = 30.0,
    settlement: str = "linear",
    quote: str = "USDT",
    symbol: str | None = None,
    contract_size: object = 1,
) -> Instrument:
    expiry = AT + timedelta(days=days)
    sym = symbol or f"{underlying}-{days:g}D-{strike}-{right[0].upper()}-{settlement[0]}"
    return Instrument(
        sym,
        InstrumentKind.OPTION,
        Asset(underlying),
        Asset("USD" if settlement == "inverse" else quote),
        D(contract_size),
        expiry,
        D(strike),
        OptionRight(right),
        Settlement(settlement),
    )


def pos(inst: Instrument, qty: object, entry: object, wallet: str = "um") -> Position:
    return Position(VENUE, WalletKind(wallet), inst, D(qty), D(entry))


def bal(
    asset: str, amount: object, wallet: str = "um", loan: object = 0, interest: object = 0
) -> Balance:
    return Balance(VENUE, WalletKind(wallet), Asset(asset), D(amount), D(loan), D(interest))


def px(
    symbol: str,
    mark: object,
    *,
    iv: object | None = None,
    index: object | None = None,
    at: datetime = AT,
) -> MarkPrice:
    return MarkPrice(
        symbol, D(mark), at, None if index is None else D(index), None if iv is None else D(iv)
    )


def portfolio(
    balances: Iterable[Balance],
    positions: Iterable[Position],
    prices: Iterable[MarkPrice],
    as_of: datetime = AT,
) -> Portfolio:
    return Portfolio.of(balances, positions, prices, as_of)


def pool(
    wallets: Iterable[str] = ("um",),
    model: str = "unified",
    margin_currency: str = "USDT",
    pool_id: str = "p",
) -> Pool:
    return Pool(
        pool_id,
        VENUE,
        frozenset(WalletKind(w) for w in wallets),
        MarginModelKind(model),
        Asset(margin_currency),
    )
