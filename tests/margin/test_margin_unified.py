"""The ``unified`` model (Binance Portfolio Margin) and the report around it."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from margin_factories import AT, bal, inverse, linear, pool, portfolio, pos, px

from core.margin.api import evaluate_portfolio
from core.margin.params import Bracket, CollateralRate, MarginParams, Thresholds, VenueLevels
from core.margin.portfolio_file import load_portfolio_file
from core.margin.report import (
    DeskLevel,
    MarginReport,
    VenueBand,
    desk_level_for,
    venue_band_for,
)

D = Decimal
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "portfolio.json"


def _params(**kw: object) -> MarginParams:
    base: dict[str, object] = {
        "collateral_rates": {
            "USDT": CollateralRate.flat(1),
            "BTC": CollateralRate.flat("0.95"),
            "ETH": CollateralRate.flat("0.95"),
        },
        "brackets": {
            s: (Bracket(floor_usd=D(0), mmr=D("0.005")),)
            for s in ("BTCUSDT", "BTCUSDT_Q", "BTCUSD_PERP")
        },
    }
    base.update(kw)
    return MarginParams.model_validate(base)


def _binance_example() -> MarginReport:
    """The Binance PM Pro worked example (FAQ "maintenance margin ratio calculation")."""
    pf = portfolio(
        [
            bal("USDT", 1000, "margin"),
            bal("BTC", "0.1", "margin", loan="0.04"),
            bal("ETH", 20, "margin", loan=15),
            bal("USDT", 5000, "um"),
            bal("BTC", "0.1", "cm"),
        ],
        [
            pos(linear("BTCUSDT"), "-0.05", 52000, "um"),
            pos(linear("BTCUSDT_Q", expiry_days=90), "0.04", 52350, "um"),
            pos(inverse("BTCUSD_PERP"), 100, 50000, "cm"),
        ],
        [
            px("BTC", 40000),
            px("ETH", 3000),
            px("USDT", 1),
            px("BTCUSDT", 40000),
            px("BTCUSDT_Q", 42000),
            px("BTCUSD_PERP", 40000),
        ],
    )
    return evaluate_portfolio(pf, pool(("margin", "um", "cm")), _params())


def test_unified_with_binance_example_reproduces_every_sub_result() -> None:
    r = _binance_example()
    mm = {c.key: c.mm_usd for c in r.contributions}
    # Loans at 3x (MMR 10 %): 0.04 BTC → 0.004 BTC; 15 ETH → 1.5 ETH (published).
    assert mm["loan:BTC"] == D("0.004") * 40000
    assert mm["loan:ETH"] == D("1.5") * 3000
    # Futures MM = |notional × 0.5 %|: 0.05 × 40,000; 0.04 × 42,000; 10,000 USD face.
    assert mm["v/um/BTCUSDT"] == D(10)
    assert mm["v/um/BTCUSDT_Q"] == D("8.4")
    assert mm["v/cm/BTCUSD_PERP"] == D(50)
    nets = {a.asset: a.net for a in r.assets}
    assert nets["USDT"] == D(1000 + 5000 + 600 - 414)
    assert nets["BTC"] == D("0.1") - D("0.04") + D("0.1") - D("0.05")
    assert nets["ETH"] == D(5)


def test_unified_with_binance_example_gives_unimmr_equity_over_mm() -> None:
    r = _binance_example()
    assert r.equity_usd == D(6186) + D("0.11") * 40000 + 5 * 3000
    assert r.adjusted_equity_usd == D(6186) + D("0.95") * (D("0.11") * 40000 + 5 * 3000)
    assert r.mm_usd == D("4728.4")
    assert r.ratio == (r.adjusted_equity_usd / r.mm_usd).quantize(D("1e-9"))
    assert r.venue_band is VenueBand.NORMAL
    assert r.desk_level is DeskLevel.OK
    assert r.max_withdraw_usd == r.adjusted_equity_usd - D("1.2") * r.mm_usd


def test_unified_with_example_file_matches_the_in_code_example() -> None:
    f = load_portfolio_file(EXAMPLE)
    r = evaluate_portfolio(f.to_portfolio(), f.pool_spec(), f.params)
    assert r.adjusted_equity_usd == D(24616)
    assert r.mm_usd == D("4728.4")


def test_unified_with_negative_um_wallet_charges_no_loan_mm() -> None:
    # Binance PM: cross margin 10,000 USDT free, UM wallet −8,000 USDT with no margin loan,
    # BTCUSDT long 5 at 60,000 (mark 60,000, MMR 0.5 %). uniMMR charges loan MM only on margin
    # loans: E = 2,000, MM = 1,500, ratio 1.333, max withdraw 2,000 − 1.2 × 1,500 = 200.
    pf = portfolio(
        [bal("USDT", 10_000, "margin"), bal("USDT", -8_000, "um")],
        [pos(linear(), 5, 60_000, "um")],
        [px("BTC", 60_000), px("USDT", 1), px("BTCUSDT", 60_000)],
    )
    r = evaluate_portfolio(pf, pool(("margin", "um", "cm")), _params())
    assert (r.adjusted_equity_usd, r.mm_usd) == (D(2000), D(1500))
    assert r.ratio == D("1.333333333")
    assert r.max_withdraw_usd == D(200)
    assert r.venue_band is VenueBand.MARGIN_CALL
    assert not [c for c in r.contributions if c.key.startswith("loan:")]
    # the same 8,000 as a real margin loan in the cross-margin wallet is charged 10 %
    loan = portfolio(
        [bal("USDT", 10_000, "margin", loan=8_000)],
        [pos(linear(), 5, 60_000, "um")],
        [px("BTC", 60_000), px("USDT", 1), px("BTCUSDT", 60_000)],
    )
    r_loan = evaluate_portfolio(loan, pool(("margin", "um", "cm")), _params())
    assert r_loan.adjusted_equity_usd == D(2000)
    assert r_loan.mm_usd == D(1500) + D(800)


def test_standard_silo_with_negative_um_wallet_counts_it_at_100_percent_without_loan_mm() -> None:
    pf = portfolio(
        [bal("USDT", -8_000, "um"), bal("BTC", "0.2", "um")],
        [pos(linear(), 5, 60_000, "um")],
        [px("BTC", 60_000), px("USDT", 1), px("BTCUSDT", 60_000)],
    )
    r = evaluate_portfolio(pf, pool(("um",), "standard"), _params())
    (silo,) = r.silos
    assert silo.adjusted_equity_usd == D(-8000) + D("0.2") * 60_000 * D("0.95")  # 3,400
    assert silo.mm_usd == D(1500)


def test_unified_with_bracket_crossing_uses_cum_for_continuity() -> None:
    brackets = (
        Bracket(floor_usd=D(0), cap_usd=D(300_000), mmr=D("0.004")),
        Bracket(floor_usd=D(300_000), cap_usd=D(3_000_000), mmr=D("0.005")),
        Bracket(floor_usd=D(3_000_000), mmr=D("0.01")),
    )
    params = _params(brackets={"BTCUSDT": brackets})

    def mm_at(qty: str) -> Decimal:
        pf = portfolio(
            [bal("USDT", 10_000_000)],
            [pos(linear(), qty, 100_000)],
            [px("BTC", 100_000), px("USDT", 1), px("BTCUSDT", 100_000)],
        )
        return evaluate_portfolio(pf, pool(), params).mm_usd

    assert mm_at("-3") == D(300_000) * D("0.004")  # exactly at the cap: still bracket 1's MM
    assert mm_at("3.00001") == D("300001.000") * D("0.005") - D(300)
    assert mm_at("95") == D(9_500_000) * D("0.01") - D(15_300)


def test_unified_with_more_cash_never_lowers_the_ratio() -> None:
    def ratio(cash: int) -> Decimal:
        pf = portfolio(
            [bal("USDT", cash)],
            [pos(linear(), 2, 90_000)],
            [px("BTC", 95_000), px("USDT", 1), px("BTCUSDT", 95_000)],
        )
        r = evaluate_portfolio(pf, pool(), _params())
        assert r.ratio is not None
        return r.ratio

    assert ratio(1_000) < ratio(2_000) < ratio(50_000)


@pytest.mark.parametrize(
    ("ratio", "band"),
    [
        ("1.5000001", VenueBand.NORMAL),
        ("1.5", VenueBand.MARGIN_CALL),
        ("1.2000001", VenueBand.MARGIN_CALL),
        ("1.2", VenueBand.REDUCE_ONLY),
        ("1.05", VenueBand.LIQUIDATION),
        ("1.0000001", VenueBand.LIQUIDATION),
        ("1.0", VenueBand.BANKRUPT),
        ("0.3", VenueBand.BANKRUPT),
    ],
)
def test_venue_band_with_binance_pm_pro_boundaries_is_upper_inclusive(
    ratio: str, band: VenueBand
) -> None:
    # Binance: "120 % < uniMMR ≤ 150 %" margin call … "uniMMR ≤ 100 %" bankrupt.
    assert venue_band_for(D(ratio), D(1), VenueLevels()) is band


@pytest.mark.parametrize(
    ("ratio", "level"),
    [
        ("2.0000001", DeskLevel.OK),
        ("2.0", DeskLevel.WARN),
        ("1.6000001", DeskLevel.WARN),
        ("1.6", DeskLevel.CALL),
        ("1.3000001", DeskLevel.CALL),
        ("1.3", DeskLevel.REDUCE_ONLY),
        ("1.1", DeskLevel.LIQUIDATION),
        ("0.4", DeskLevel.LIQUIDATION),
    ],
)
def test_desk_level_with_pool_thresholds_is_upper_inclusive_and_independent_of_venue(
    ratio: str, level: DeskLevel
) -> None:
    desk = Thresholds(warn=2.0, call=1.6, reduce_only=1.3, liquidation=1.1, target=2.0)
    assert desk_level_for(D(ratio), D(1), desk) is level
    assert level.needs_margin_call is (level in {"call", "reduce_only", "liquidation"})


def test_report_with_desk_call_above_venue_margin_call_calls_while_venue_is_normal() -> None:
    # E/MM = 24,616 / 4,728.4 = 5.206: with a desk call at 6 the desk calls, the venue is calm.
    desk = Thresholds(warn=7.0, call=6.0, reduce_only=5.0, liquidation=4.0, target=7.0)
    f = load_portfolio_file(EXAMPLE)
    params = f.params.model_copy(update={"thresholds": desk})
    r = evaluate_portfolio(f.to_portfolio(), f.pool_spec(), params)
    assert r.venue_band is VenueBand.NORMAL
    assert r.desk_level is DeskLevel.CALL
    assert r.margin_call_due
    # Max withdraw is the venue's rule (E − 1.2·MM), not the desk's call level.
    assert r.max_withdraw_usd == D(24616) - D("1.2") * D("4728.4")


def test_deficit_with_target_is_target_times_mm_minus_equity_floored_at_zero() -> None:
    r = _binance_example()
    assert r.deficit(1.5) == D(0)
    assert r.deficit(10) == D(10) * D("4728.4") - r.adjusted_equity_usd


def test_report_with_json_round_trip_is_identical() -> None:
    r = _binance_example()
    again = MarginReport.from_json(r.to_json())
    assert again == r
    assert again.deficit(10) == r.deficit(10)


def test_report_with_no_positions_has_no_ratio_and_is_normal() -> None:
    pf = portfolio([bal("USDT", 100)], [], [px("USDT", 1)], AT)
    r = evaluate_portfolio(pf, pool(), _params())
    assert r.mm_usd == 0
    assert r.ratio is None
    assert r.venue_band is VenueBand.NORMAL
    assert r.desk_level is DeskLevel.OK
    assert r.deficit(1.5) == 0
