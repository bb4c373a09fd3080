"""Binance payloads (as ccxt returns them in ``info``) → pmr domain reports.

Every mapping from venue data to domain types lives here, one named function per payload
shape (STYLE rule 3). They read the raw Binance fields rather than ccxt's unified structure
because the unified one drops what margin needs (PM's split into cross-margin/UM/CM wallets,
borrowed and interest, the hedge-mode side of a position). Unknown enum values raise; nothing
is defaulted silently.

Negative balances and loans are kept apart: a futures or PM wallet balance below zero
(``walletBalance``, ``umWalletBalance``, ``cmWalletBalance``, ``totalWalletBalance``) is booked
as a negative ``amount``; only ``crossMarginBorrowed`` / ``crossMarginInterest`` (and
``borrowed`` / ``interest`` of the margin account) are ``loan`` and ``interest``, the only
liabilities Binance's uniMMR charges loan MM on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from core.clock import ns_to_datetime
from core.domain import (
    Asset,
    Balance,
    Instrument,
    MarkPrice,
    Position,
    PositionSide,
    WalletKind,
    to_decimal,
)
from core.errors import DataError, UnknownAssetError
from core.params import Bracket
from core.venues.reports import (
    IndexPriceReport,
    PositionReport,
    TransferHistoryRow,
    VenueTransferStatus,
)
from core.venues.wallets import parse_binance_transfer_type

__all__ = [
    "parse_funding_balances",
    "parse_funding_rates",
    "parse_futures_balances",
    "parse_leverage_brackets",
    "parse_margin_balances",
    "parse_options_balances",
    "parse_pm_balances",
    "parse_positions",
    "parse_premium_index",
    "parse_price_index",
    "parse_spot_balances",
    "parse_transfer_rows",
    "parse_transfer_status",
    "positions_to_domain",
]

Raw = Mapping[str, Any]


def _d(raw: Raw, key: str, where: str) -> Decimal:
    if key not in raw:
        raise DataError("venue payload lacks a field", field=key, where=where)
    value = to_decimal(raw[key], key, where=where)
    return value if value != 0 else Decimal(0)  # "0.00000000" → 0, not Decimal('0E-8')


def _position_side(raw: Raw, where: str) -> PositionSide:
    """Binance ``positionSide`` (BOTH / LONG / SHORT) → ``PositionSide``; anything else raises."""
    if "positionSide" not in raw:
        raise DataError("venue payload lacks a field", field="positionSide", where=where)
    match raw["positionSide"]:
        case "BOTH":
            return PositionSide.BOTH
        case "LONG":
            return PositionSide.LONG
        case "SHORT":
            return PositionSide.SHORT
        case other:
            raise DataError("unknown Binance positionSide", value=repr(other), where=where)


def parse_spot_balances(venue: str, info: Raw) -> tuple[Balance, ...]:
    """GET /api/v3/account → spot balances (free + locked), zero lines dropped."""
    where = f"{venue} /api/v3/account"
    out = []
    for row in info.get("balances", ()):
        amount = _d(row, "free", where) + _d(row, "locked", where)
        if amount != 0:
            out.append(Balance(venue, WalletKind.SPOT, Asset(row["asset"]), amount))
    return tuple(out)


def parse_funding_balances(venue: str, info: Sequence[Raw]) -> tuple[Balance, ...]:
    """POST /sapi/v1/asset/get-funding-asset → funding-wallet balances."""
    where = f"{venue} /sapi/v1/asset/get-funding-asset"
    out = []
    for row in info:
        amount = _d(row, "free", where) + _d(row, "locked", where) + _d(row, "freeze", where)
        if amount != 0:
            out.append(Balance(venue, WalletKind.FUNDING, Asset(row["asset"]), amount))
    return tuple(out)


def parse_margin_balances(venue: str, info: Raw) -> tuple[Balance, ...]:
    """GET /sapi/v1/margin/account → cross-margin balances with loans and interest."""
    where = f"{venue} /sapi/v1/margin/account"
    out = []
    for row in info.get("userAssets", ()):
        amount = _d(row, "free", where) + _d(row, "locked", where)
        loan = _d(row, "borrowed", where)
        interest = _d(row, "interest", where)
        if amount or loan or interest:
            out.append(
                Balance(venue, WalletKind.MARGIN, Asset(row["asset"]), amount, loan, interest)
            )
    return tuple(out)


def parse_futures_balances(venue: str, wallet: WalletKind, info: Raw) -> tuple[Balance, ...]:
    """GET /fapi/v3/account or /dapi/v1/account → wallet balances (unrealised PnL excluded).

    ``walletBalance`` is the booked collateral; unrealised PnL belongs to positions (DESIGN §3.1).
    It can be negative (realised losses, funding): booked as a negative amount, never a loan;
    in multi-assets mode a negative USDT wallet sits next to the coins that collateralise it.
    """
    match wallet:
        case WalletKind.UM | WalletKind.CM:
            pass
        case _:
            raise DataError("futures balances are for um or cm wallets", wallet=str(wallet))
    where = f"{venue} {wallet} account"
    out = []
    for row in info.get("assets", ()):
        bal = _d(row, "walletBalance", where)
        if bal != 0:
            out.append(Balance(venue, wallet, Asset(row["asset"]), bal))
    return tuple(out)


def parse_pm_balances(venue: str, wallet: WalletKind, info: Sequence[Raw]) -> tuple[Balance, ...]:
    """GET /papi/v1/balance → one wallet of a Binance Portfolio Margin account.

    ``margin`` is the cross-margin part (with loans and interest), ``um``/``cm`` the futures
    wallets, and ``pm`` the account total per asset (``totalWalletBalance`` = cross-margin
    asset + UM + CM wallet) with its loans. A negative UM/CM/total wallet balance is a negative
    amount with no loan: Binance PM charges loan MM on margin loans only.
    """
    where = f"{venue} /papi/v1/balance"
    out = []
    for row in info:
        asset = row["asset"]
        match wallet:
            case WalletKind.MARGIN:
                amount = _d(row, "crossMarginFree", where) + _d(row, "crossMarginLocked", where)
                loan = _d(row, "crossMarginBorrowed", where)
                interest = _d(row, "crossMarginInterest", where)
                if amount or loan or interest:
                    out.append(Balance(venue, wallet, Asset(asset), amount, loan, interest))
            case WalletKind.UM | WalletKind.CM:
                key = "umWalletBalance" if wallet is WalletKind.UM else "cmWalletBalance"
                bal = _d(row, key, where)
                if bal != 0:
                    out.append(Balance(venue, wallet, Asset(asset), bal))
            case WalletKind.PM:
                total = _d(row, "totalWalletBalance", where)
                loan = _d(row, "crossMarginBorrowed", where)
                interest = _d(row, "crossMarginInterest", where)
                if total or loan or interest:
                    out.append(Balance(venue, wallet, Asset(asset), total, loan, interest))
            case _:
                raise DataError(
                    "a portfolio-margin account has no such wallet", wallet=str(wallet), where=where
                )
    return tuple(out)


def parse_options_balances(venue: str, info: Raw) -> tuple[Balance, ...]:
    """GET /eapi/v1/marginAccount → options wallet balances (``marginBalance`` per asset)."""
    where = f"{venue} /eapi/v1/marginAccount"
    out = []
    for row in info.get("asset", ()):
        bal = _d(row, "marginBalance", where)
        if bal != 0:
            out.append(Balance(venue, WalletKind.OPTIONS, Asset(row["asset"]), bal))
    return tuple(out)


def parse_positions(
    venue: str, wallet: WalletKind, rows: Sequence[Raw], margin_asset_of: Mapping[str, str]
) -> tuple[PositionReport, ...]:
    """positionRisk rows (fapi, dapi, papi um/cm) → open positions; flat ones are dropped.

    In hedge mode Binance returns one row per leg (``positionSide`` LONG and SHORT, the SHORT
    leg's ``positionAmt`` negative); each becomes its own report with its ``side``.
    """
    where = f"{venue} {wallet} positionRisk"
    out = []
    for row in rows:
        qty = _d(row, "positionAmt", where)
        if qty == 0:
            continue
        symbol = row["symbol"]
        margin_asset = row.get("marginAsset") or margin_asset_of.get(symbol)
        if margin_asset is None:
            raise DataError(
                "cannot tell the margin asset of a position", symbol=symbol, where=where
            )
        out.append(
            PositionReport(
                venue=venue,
                wallet=wallet,
                symbol=symbol,
                qty=qty,
                entry_price=_d(row, "entryPrice", where),
                mark_price=_d(row, "markPrice", where),
                unrealized_pnl=_d(row, "unRealizedProfit", where),
                margin_asset=Asset(margin_asset),
                side=_position_side(row, f"{where} {symbol}"),
            )
        )
    return tuple(out)


def parse_premium_index(venue: str, rows: Sequence[Raw] | Raw) -> tuple[MarkPrice, ...]:
    """GET /fapi/v1/premiumIndex or /dapi/v1/premiumIndex → marks with index and time."""
    where = f"{venue} premiumIndex"
    items = [rows] if isinstance(rows, Mapping) else list(rows)
    out = []
    for row in items:
        at_ms = int(row["time"])
        index = row.get("indexPrice")
        out.append(
            MarkPrice(
                symbol=row["symbol"],
                mark=_d(row, "markPrice", where),
                at=ns_to_datetime(at_ms * 1_000_000),
                index=to_decimal(index, "indexPrice", where=where)
                if index not in (None, "")
                else None,
            )
        )
    return tuple(out)


def parse_price_index(venue: str, base: Asset, quote: Asset, raw: Raw) -> IndexPriceReport:
    """GET /sapi/v1/margin/priceIndex → the price of ``base`` in ``quote`` at ``calcTime``.

    The answer must be for the pair asked (``symbol``), and the price > 0.
    """
    where = f"{venue} /sapi/v1/margin/priceIndex"
    pair = base.code + quote.code
    if raw.get("symbol") != pair:
        raise DataError("price index for another symbol", asked=pair, got=raw.get("symbol"))
    price = _d(raw, "price", where)
    if price <= 0:
        raise DataError("price index must be > 0", symbol=pair, value=price, where=where)
    if "calcTime" not in raw:
        raise DataError("venue payload lacks a field", field="calcTime", where=where)
    at = ns_to_datetime(int(raw["calcTime"]) * 1_000_000)
    return IndexPriceReport(venue, base, quote, price, at)


def parse_funding_rates(rows: Sequence[Raw] | Raw) -> dict[str, Decimal]:
    """premiumIndex → last funding rate per symbol (fraction per funding interval)."""
    items = [rows] if isinstance(rows, Mapping) else list(rows)
    return {
        row["symbol"]: to_decimal(row["lastFundingRate"], "lastFundingRate", where="premiumIndex")
        for row in items
        if row.get("lastFundingRate") not in (None, "")
    }


def parse_leverage_brackets(rows: Sequence[Raw]) -> dict[str, tuple[Bracket, ...]]:
    """GET /fapi/v1/leverageBracket → per-symbol notional brackets (USD), ``cum`` kept."""
    out: dict[str, tuple[Bracket, ...]] = {}
    for row in rows:
        table = []
        for b in row["brackets"]:
            cap = Decimal(str(b["notionalCap"]))
            table.append(
                Bracket(
                    floor_usd=Decimal(str(b["notionalFloor"])),
                    cap_usd=None if cap >= Decimal(2**62) else cap,
                    mmr=Decimal(str(b["maintMarginRatio"])),
                    cum_usd=Decimal(str(b["cum"])),
                    max_leverage=int(b["initialLeverage"]),
                )
            )
        out[row["symbol"]] = tuple(table)
    return out


def parse_transfer_status(raw: str) -> VenueTransferStatus:
    """Binance universal-transfer status → ours (no default: an unknown status raises)."""
    match raw:
        case "CONFIRMED":
            return VenueTransferStatus.CONFIRMED
        case "PENDING":
            return VenueTransferStatus.PENDING
        case "FAILED":
            return VenueTransferStatus.FAILED
        case _:
            raise DataError("unknown Binance transfer status", field="status", value=raw)


def parse_transfer_rows(rows: Sequence[Raw]) -> tuple[TransferHistoryRow, ...]:
    """GET /sapi/v1/asset/transfer ``rows`` → history rows for lookup-by-key matching."""
    out = []
    for row in rows:
        src, dst = parse_binance_transfer_type(row["type"])
        out.append(
            TransferHistoryRow(
                venue_transfer_id=str(row["tranId"]),
                asset=Asset(row["asset"]),
                amount=to_decimal(row["amount"], "amount", where="transfer history"),
                from_wallet=src,
                to_wallet=dst,
                ts_ns=int(row["timestamp"]) * 1_000_000,
                status=parse_transfer_status(row["status"]),
            )
        )
    return tuple(out)


def positions_to_domain(
    reports: Sequence[PositionReport], instruments: Mapping[str, Instrument]
) -> tuple[Position, ...]:
    """Venue position reports → domain ``Position``s, using the desk's instrument definitions.

    Raises
    ------
    UnknownAssetError
        The venue holds a position in a symbol the desk never declared (margin would be wrong
        without it, so it is refused rather than skipped).
    """
    out = []
    for r in reports:
        inst = instruments.get(r.symbol)
        if inst is None:
            raise UnknownAssetError(
                "venue reports a position in an undeclared instrument",
                symbol=r.symbol,
                venue=r.venue,
                wallet=str(r.wallet),
            )
        out.append(Position(r.venue, r.wallet, inst, r.qty, r.entry_price, r.side))
    return tuple(out)
