"""Valuation and collateral: published worked examples and invariants (DESIGN §3.1)."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.margin.collateral import collateral_value_usd
from core.margin.params import CollateralRate, CollateralTier
from core.margin.pricing import (
    black76,
    black76_delta,
    inverse_pnl_coin,
    linear_pnl,
    vol_shock_scale,
)

D = Decimal


def test_linear_pnl_with_binance_pm_short_example_is_plus_600_usdt() -> None:
    # Binance PM Pro example: UM short 0.05 BTC, entry 52,000, mark 40,000 → +600 USDT.
    assert linear_pnl(D("-0.05"), D(52000), D(40000)) == D(600)


def test_linear_pnl_with_binance_pm_long_example_is_minus_414_usdt() -> None:
    # Same example: UM long 0.04 BTC, entry 52,350, mark 42,000 → −414 USDT.
    assert linear_pnl(D("0.04"), D(52350), D(42000)) == D(-414)


def test_inverse_pnl_with_binance_pm_coinm_example_is_minus_005_btc() -> None:
    # Same example: COIN-M long 10,000 USD face, entry 50,000, mark 40,000 → −0.05 BTC.
    assert inverse_pnl_coin(D(10000), D(50000), D(40000)) == D("-0.05")


def test_vol_shock_with_legacy_deribit_sqrt_rule_gives_56_6_percent_at_15_days() -> None:
    # Deribit legacy PM: "IV change of maximum SQRT(30/15) × 40 % = 56.6 %".
    scale = float(vol_shock_scale(15.0, power_short=0.5, power_long=0.5))
    assert round(0.40 * scale, 3) == 0.566


def test_vol_shock_with_design_powers_uses_030_below_30_days_and_013_above() -> None:
    short = float(vol_shock_scale(15.0, power_short=0.30, power_long=0.13))
    long = float(vol_shock_scale(60.0, power_short=0.30, power_long=0.13))
    assert short == pytest.approx(2.0**0.30)
    assert long == pytest.approx(0.5**0.13)
    assert float(vol_shock_scale(0.2, power_short=0.3, power_long=0.13)) == pytest.approx(30**0.3)


def test_black76_with_atm_textbook_case_matches_closed_form() -> None:
    # ATM, r = 0: C = F·(2N(σ√T/2) − 1); F = 100, σ = 20 %, T = 1 → 7.965567455405804.
    v = black76(
        np.array([100.0]), np.array([100.0]), np.array([1.0]), np.array([0.2]), np.array([True])
    )
    assert float(v[0]) == pytest.approx(7.965567455405804, rel=1e-12)


@given(
    f=st.floats(50, 200),
    k=st.floats(50, 200),
    t=st.floats(0.01, 3),
    s=st.floats(0.05, 2),
)
def test_black76_with_any_inputs_satisfies_put_call_parity_and_delta_bounds(
    f: float, k: float, t: float, s: float
) -> None:
    args = (np.array([f, f]), np.array([k, k]), np.array([t, t]), np.array([s, s]))
    call, put = black76(*args, np.array([True, False]))
    assert call - put == pytest.approx(f - k, abs=1e-9 * max(f, k))
    assert call >= max(f - k, 0.0) - 1e-9
    assert put >= max(k - f, 0.0) - 1e-9
    dc, dp = black76_delta(*args, np.array([True, False]))
    assert 0.0 <= dc <= 1.0
    assert -1.0 <= dp <= 0.0
    assert dc - dp == pytest.approx(1.0)


def _binance_tiers() -> CollateralRate:
    return CollateralRate(
        tiers=(
            CollateralTier(from_usd=D(0), to_usd=D(100_000_000), rate=D(1)),
            CollateralTier(from_usd=D(100_000_000), to_usd=D(120_000_000), rate=D("0.975")),
        )
    )


def test_collateral_with_binance_tiered_example_is_119_5_million() -> None:
    # Binance cross margin tiered collateral: 6,000 BTC at 20,000 → 119,500,000.
    assert collateral_value_usd(D(6000) * D(20000), _binance_tiers()) == D(119_500_000)


def test_collateral_with_binance_classic_haircut_counts_three_btc_as_2_85() -> None:
    # Binance classic example: 1 BTC in each of margin, UM and CM at collateral rate 0.95.
    rate = CollateralRate.flat("0.95")
    total = sum((collateral_value_usd(D(1), rate) for _ in range(3)), D(0))
    assert total == D("2.85")


def test_collateral_with_negative_net_counts_at_100_percent() -> None:
    assert collateral_value_usd(D(-1234.5), CollateralRate.flat("0.5")) == D(-1234.5)
    assert collateral_value_usd(D(-7), _binance_tiers()) == D(-7)


def test_collateral_with_value_beyond_last_tier_gets_no_credit_for_the_excess() -> None:
    assert collateral_value_usd(D(150_000_000), _binance_tiers()) == D(119_500_000)


@settings(max_examples=200)
@given(
    a=st.decimals(min_value=0, max_value=200_000_000, places=2),
    b=st.decimals(min_value=0, max_value=200_000_000, places=2),
)
def test_collateral_with_tiers_is_monotone_and_continuous(a: Decimal, b: Decimal) -> None:
    tiers = CollateralRate(
        tiers=(
            CollateralTier(from_usd=D(0), to_usd=D(20_000_000), rate=D("0.95")),
            CollateralTier(from_usd=D(20_000_000), to_usd=D(50_000_000), rate=D("0.925")),
            CollateralTier(from_usd=D(50_000_000), rate=D("0.9")),
        )
    )
    lo, hi = min(a, b), max(a, b)
    v_lo, v_hi = collateral_value_usd(lo, tiers), collateral_value_usd(hi, tiers)
    assert v_lo <= v_hi
    # Lipschitz with the top rate: a small step moves the value by at most rate × step.
    assert v_hi - v_lo <= D("0.95") * (hi - lo)
