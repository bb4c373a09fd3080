"""The ``standard`` model: siloed rule-based margin, Bybit options rule, Deribit size scaling."""

from __future__ import annotations

from decimal import Decimal

import pytest
from margin_factories import bal, linear, option, pool, portfolio, pos, px

from core.errors import ConfigError
from core.margin.api import evaluate_portfolio
from core.margin.book import build_book
from core.margin.models import StandardModel
from core.margin.params import (
    Bracket,
    CollateralRate,
    MarginParams,
    SizeScaledFutureParams,
    StandardParams,
)

D = Decimal
RATES = {"USDT": CollateralRate.flat(1), "USDC": CollateralRate.flat(1)}
BRACKETS = {"BTCUSDT": (Bracket(floor_usd=D(0), mmr=D("0.005"), max_leverage=125),)}


def _params(**kw: object) -> MarginParams:
    base: dict[str, object] = {"collateral_rates": RATES, "brackets": BRACKETS}
    base.update(kw)
    return MarginParams.model_validate(base)


def test_short_call_with_bybit_example_1_has_mm_1260_usdc() -> None:
    # Bybit "Initial and Maintenance Margin Calculation (Options)", example 1: sell 1 BTC
    # BTC-31JUN22-31000-C, index 30,000, mark 300 → MM = (max(900, 9) + 300 + 60) × 1 = 1,260.
    c = option(31000, "call", days=20, quote="USDC", symbol="BTC-31000-C")
    pf = portfolio(
        [bal("USDC", 10_000, "options")],
        [pos(c, -1, 300, "options")],
        [px("BTC", 30_000), px("USDC", 1), px("BTC-31000-C", 300, iv="0.6", index=30_000)],
    )
    r = evaluate_portfolio(pf, pool(("options",), "standard", "USDC"), _params())
    assert r.mm_usd == D(1260)
    # IM = max(max(0.15·S − OTM, 0.10·S) + max(entry, mark), MM) = 3,500 + 300.
    assert r.im_usd == D(3800)
    # Equity counts the short option at its mark: 10,000 − 300; the ratio is equity / MM.
    assert r.ratio == (D(9700) / D(1260)).quantize(D("1e-9"))


def test_long_option_with_standard_rule_needs_no_margin() -> None:
    c = option(31000, "call", days=20, quote="USDC", symbol="BTC-31000-C")
    pf = portfolio(
        [bal("USDC", 10_000, "options")],
        [pos(c, 3, 300, "options")],
        [px("BTC", 30_000), px("USDC", 1), px("BTC-31000-C", 300, iv="0.6")],
    )
    r = evaluate_portfolio(pf, pool(("options",), "standard", "USDC"), _params())
    assert r.mm_usd == 0
    assert r.im_usd == 0
    # the long option's market value counts in equity: 10,000 + 3 × 300
    assert r.equity_usd == D(10_900)


def test_size_scaled_with_deribit_btc_rule_grows_with_size() -> None:
    # Deribit BTC linear perp: IM = 2 % + 0.005 % × size, MM = 1 % + 0.005 % × size (BTC).
    std = StandardParams(
        futures_mode="size_scaled",
        size_scaled={
            "BTC": SizeScaledFutureParams(
                im_base_frac=0.02,
                im_per_unit_frac=0.00005,
                mm_base_frac=0.01,
                mm_per_unit_frac=0.00005,
            )
        },
    )
    pf = portfolio(
        [bal("USDT", 2_000_000)],
        [pos(linear(), -100, 95_000)],
        [px("BTC", 95_000), px("USDT", 1), px("BTCUSDT", 95_000)],
    )
    r = evaluate_portfolio(pf, pool(model="standard"), _params(standard=std))
    assert r.im_usd == D(9_500_000) * D("0.025")
    assert r.mm_usd == D(9_500_000) * D("0.015")


def test_size_scaled_with_deribit_sol_rule_uses_sol_coefficients() -> None:
    # SOL: IM 4 % + 0.0005 % × size in SOL, MM 2 % + 0.0005 % × size.
    std = StandardParams(
        futures_mode="size_scaled",
        size_scaled={
            "SOL": SizeScaledFutureParams(
                im_base_frac=0.04,
                im_per_unit_frac=0.000005,
                mm_base_frac=0.02,
                mm_per_unit_frac=0.000005,
            )
        },
    )
    sol = linear("SOLUSDT", "SOL")
    pf = portfolio(
        [bal("USDT", 1_000_000)],
        [pos(sol, 10_000, 175)],
        [px("SOL", 180), px("USDT", 1), px("SOLUSDT", 180)],
    )
    r = evaluate_portfolio(pf, pool(model="standard"), _params(standard=std))
    assert r.im_usd == D(1_800_000) * D("0.09")
    assert r.mm_usd == D(1_800_000) * D("0.07")


def test_size_scaled_without_parameters_for_the_underlying_is_a_config_error() -> None:
    std = StandardParams(futures_mode="size_scaled")
    pf = portfolio(
        [bal("USDT", 1_000_000)],
        [pos(linear(), 1, 95_000)],
        [px("BTC", 95_000), px("USDT", 1), px("BTCUSDT", 95_000)],
    )
    with pytest.raises(ConfigError, match="BTC"):
        evaluate_portfolio(pf, pool(model="standard"), _params(standard=std))


def test_silos_with_cash_in_another_wallet_do_not_help_the_futures_silo() -> None:
    pf = portfolio(
        [bal("USDT", 3_000, "um"), bal("USDT", 1_000_000, "margin")],
        [pos(linear(), 10, 95_000, "um")],
        [px("BTC", 95_000), px("USDT", 1), px("BTCUSDT", 95_000)],
    )
    wallets = ("um", "margin")
    std = evaluate_portfolio(pf, pool(wallets, "standard"), _params())
    uni = evaluate_portfolio(pf, pool(wallets, "unified"), _params())
    um = next(s for s in std.silos if s.wallet == "um")
    assert um.mm_usd == D(4750)  # 950,000 × 0.5 %
    assert std.ratio == (D(3000) / D(4750)).quantize(D("1e-9"))
    assert std.deficit(D("1.5")) == D("1.5") * 4750 - 3000  # only the um silo is short
    assert uni.ratio is not None
    assert std.ratio is not None
    assert uni.ratio > std.ratio  # the unified pool shares the margin wallet's cash
    assert uni.capital_efficiency == D(1)  # same futures MM, offsets only in collateral


def test_standard_im_with_max_leverage_is_notional_over_leverage() -> None:
    pf = portfolio(
        [bal("USDT", 100_000)],
        [pos(linear(), 1, 95_000)],
        [px("BTC", 100_000), px("USDT", 1), px("BTCUSDT", 100_000)],
    )
    params = _params()
    book = build_book(pf, pool(model="standard"), params)
    margin = StandardModel().position_margin(book.positions[0], params)
    assert margin.im_usd == D(800)  # 100,000 / 125
    assert margin.mm_usd == D(500)
