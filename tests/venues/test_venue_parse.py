"""``core.venues.parse`` on hand-written Binance payloads (shapes as recorded by ccxt's tests).

Negative futures wallets stay negative amounts (never loans); hedge-mode legs keep their side.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from core.domain import Asset, Instrument, InstrumentKind, PositionSide, WalletKind
from core.errors import DataError
from core.venues import parse

D = Decimal


def _papi_row(asset: str, **fields: str) -> dict[str, Any]:
    """A ``/papi/v1/balance`` row with every field Binance sends, zero unless given."""
    row = {
        "asset": asset,
        "totalWalletBalance": "0.0",
        "crossMarginAsset": "0.0",
        "crossMarginBorrowed": "0.0",
        "crossMarginFree": "0.0",
        "crossMarginInterest": "0.0",
        "crossMarginLocked": "0.0",
        "umWalletBalance": "0.0",
        "umUnrealizedPNL": "0.0",
        "cmWalletBalance": "0.0",
        "cmUnrealizedPNL": "0.0",
        "updateTime": "1708064880778",
        "negativeBalance": "0.0",
    }
    row.update(fields)
    return row


def _risk_row(side: str, amt: str, entry: str, **extra: str) -> dict[str, Any]:
    """A ``/fapi/v3/positionRisk`` row (hedge mode: one per ``positionSide``)."""
    return {
        "symbol": "BTCUSDT",
        "positionSide": side,
        "positionAmt": amt,
        "entryPrice": entry,
        "markPrice": "61000",
        "unRealizedProfit": str(D(amt) * (D(61000) - D(entry))),
        "marginAsset": "USDT",
        **extra,
    }


def test_parse_pm_balances_with_negative_um_wallet_books_a_negative_amount_not_a_loan() -> None:
    raw = [
        _papi_row(
            "USDT",
            totalWalletBalance="2000.0",
            crossMarginAsset="10000.0",
            crossMarginFree="10000.0",
            umWalletBalance="-8000.0",
        ),
        _papi_row("BTC", totalWalletBalance="-0.01", cmWalletBalance="-0.01"),
    ]
    um = parse.parse_pm_balances("b", WalletKind.UM, raw)
    assert [(b.asset.code, b.amount, b.loan, b.interest) for b in um] == [("USDT", D(-8000), 0, 0)]
    cm = parse.parse_pm_balances("b", WalletKind.CM, raw)
    assert [(b.asset.code, b.amount, b.loan) for b in cm] == [("BTC", D("-0.01"), 0)]
    margin = parse.parse_pm_balances("b", WalletKind.MARGIN, raw)
    assert [(b.asset.code, b.amount, b.loan) for b in margin] == [("USDT", D(10000), 0)]
    total = {b.asset.code: b for b in parse.parse_pm_balances("b", WalletKind.PM, raw)}
    assert (total["USDT"].amount, total["USDT"].loan, total["USDT"].net) == (D(2000), 0, D(2000))
    assert (total["BTC"].amount, total["BTC"].loan) == (D("-0.01"), 0)


def test_parse_pm_balances_with_a_margin_loan_keeps_it_apart_from_the_wallet_balance() -> None:
    raw = [
        _papi_row(
            "USDT",
            totalWalletBalance="-7000.0",
            crossMarginAsset="1000.0",
            crossMarginFree="1000.0",
            crossMarginBorrowed="500.0",
            crossMarginInterest="1.5",
            umWalletBalance="-8000.0",
        )
    ]
    (margin,) = parse.parse_pm_balances("b", WalletKind.MARGIN, raw)
    (um,) = parse.parse_pm_balances("b", WalletKind.UM, raw)
    (total,) = parse.parse_pm_balances("b", WalletKind.PM, raw)
    assert (margin.amount, margin.loan, margin.interest) == (D(1000), D(500), D("1.5"))
    assert (um.amount, um.loan) == (D(-8000), 0)
    assert (total.amount, total.loan, total.interest) == (D(-7000), D(500), D("1.5"))


def test_parse_futures_and_options_balances_with_negative_wallet_keep_the_sign() -> None:
    account = {
        "assets": [
            {"asset": "USDT", "walletBalance": "-8000.00000000"},
            {"asset": "BTC", "walletBalance": "0.20000000"},
        ]
    }
    out = parse.parse_futures_balances("b", WalletKind.UM, account)
    assert [(b.asset.code, b.amount, b.loan) for b in out] == [
        ("USDT", D(-8000), 0),
        ("BTC", D("0.2"), 0),
    ]
    opts = parse.parse_options_balances("b", {"asset": [{"asset": "USDT", "marginBalance": "-5"}]})
    assert [(b.wallet, b.amount, b.loan) for b in opts] == [(WalletKind.OPTIONS, D(-5), 0)]


def test_parse_positions_with_hedge_mode_rows_keeps_one_report_per_side() -> None:
    rows = [
        _risk_row("LONG", "0.5", "60000"),
        _risk_row("SHORT", "-0.3", "62000"),
        _risk_row("LONG", "0", "0"),  # a flat leg: dropped
    ]
    out = parse.parse_positions("b", WalletKind.UM, rows, {})
    assert [(r.side, r.qty, r.entry_price, r.unrealized_pnl) for r in out] == [
        (PositionSide.LONG, D("0.5"), D(60000), D(500)),
        (PositionSide.SHORT, D("-0.3"), D(62000), D(300)),
    ]
    assert sum(r.unrealized_pnl for r in out) == D(800)
    assert all(r.margin_asset == Asset("USDT") for r in out)
    one_way = parse.parse_positions("b", WalletKind.UM, [_risk_row("BOTH", "0.2", "60000")], {})
    assert one_way[0].side is PositionSide.BOTH


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (_risk_row("BOTHWAYS", "0.5", "60000"), "unknown Binance positionSide"),
        ({k: v for k, v in _risk_row("LONG", "0.5", "60000").items() if k != "positionSide"},
         "lacks a field.*positionSide"),
    ],
)  # fmt: skip
def test_parse_positions_with_unknown_or_missing_side_raises(
    row: dict[str, Any], message: str
) -> None:
    with pytest.raises(DataError, match=message):
        parse.parse_positions("b", WalletKind.UM, [row], {})


def test_positions_to_domain_with_a_leg_contradicting_its_sign_raises_naming_it() -> None:
    perp = Instrument("BTCUSDT", InstrumentKind.LINEAR_PERP, Asset("BTC"), Asset("USDT"))
    reports = parse.parse_positions("b", WalletKind.UM, [_risk_row("LONG", "-0.5", "60000")], {})
    with pytest.raises(DataError, match=r"a long leg cannot hold qty -0.5.*b/um/BTCUSDT"):
        parse.positions_to_domain(reports, {"BTCUSDT": perp})
