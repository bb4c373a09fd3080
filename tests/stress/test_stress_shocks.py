"""Shocked portfolios: prices move exactly, options re-price, nothing else changes."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.config import load_desk
from core.errors import DataError
from core.margin import evaluate_pool
from core.stress.shocks import shock_portfolio

DESK = load_desk(Path(__file__).resolve().parents[2] / "examples" / "desk.toml")
AT = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
STATE = DESK.initial_portfolio(AT)
INSTRUMENTS = DESK.instrument_map()


def test_shock_with_btc_move_scales_btc_prices_exactly_and_leaves_others() -> None:
    s = shock_portfolio(STATE, INSTRUMENTS, {"BTC": 0.12})
    assert s.prices["BTC"].mark == Decimal("95000") * Decimal("1.12")
    assert s.prices["BTCUSDT"].mark == Decimal("95040") * Decimal("1.12")
    assert s.prices["BTCUSD_PERP"].index == Decimal("95000") * Decimal("1.12")
    assert s.prices["ETH"] == STATE.prices["ETH"]
    assert s.prices["ETHUSDT"] == STATE.prices["ETHUSDT"]
    assert s.balances == STATE.balances
    assert s.positions == STATE.positions


def test_shock_with_btc_up_raises_calls_and_lowers_puts() -> None:
    s = shock_portfolio(STATE, INSTRUMENTS, {"BTC": 0.10})
    call, put = "BTC-270326-100000-C", "BTC-270326-80000-P"
    assert s.prices[call].mark > STATE.prices[call].mark
    assert s.prices[put].mark < STATE.prices[put].mark
    assert s.prices[call].iv == STATE.prices[call].iv


def test_shock_with_vol_up_only_raises_every_option_mark() -> None:
    s = shock_portfolio(STATE, INSTRUMENTS, {"BTC": 0.0, "ETH": 0.0}, vol_up_frac=0.5)
    for sym, inst in INSTRUMENTS.items():
        if inst.is_option:
            assert s.prices[sym].mark > STATE.prices[sym].mark
            assert s.prices[sym].iv == STATE.prices[sym].iv * Decimal("1.5")  # type: ignore[operator]


def test_shock_with_stablecoin_depeg_moves_only_that_asset() -> None:
    s = shock_portfolio(STATE, INSTRUMENTS, {"USDC": -0.35})
    assert s.prices["USDC"].mark == Decimal("0.9998") * Decimal("0.65")
    assert s.prices["USDT"] == STATE.prices["USDT"]
    before = evaluate_pool(DESK, "sim-a.pm", STATE)
    after = evaluate_pool(DESK, "sim-a.pm", s)
    assert after.adjusted_equity_usd < before.adjusted_equity_usd


@pytest.mark.parametrize("move", [-1.0, -1.5, 10.0, float("nan")])
def test_shock_with_impossible_move_raises_naming_the_asset(move: float) -> None:
    with pytest.raises(DataError, match="asset=BTC"):
        shock_portfolio(STATE, INSTRUMENTS, {"BTC": move})


@settings(max_examples=25, deadline=None)
@given(st.floats(min_value=-0.5, max_value=0.5))
def test_unified_pool_equity_moves_monotonically_with_eth(move: float) -> None:
    # sim-a.pm is net long ETH (1,800 ETHUSDT + 60 ETH held): equity rises with ETH.
    lo = evaluate_pool(DESK, "sim-a.pm", shock_portfolio(STATE, INSTRUMENTS, {"ETH": move}))
    hi = evaluate_pool(DESK, "sim-a.pm", shock_portfolio(STATE, INSTRUMENTS, {"ETH": move + 0.01}))
    assert hi.equity_usd > lo.equity_usd
