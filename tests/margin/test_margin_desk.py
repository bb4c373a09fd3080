"""Margin of the example desk's pools through ``evaluate_pool`` (the API other parts call)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from core.config import DeskConfig, load_desk
from core.domain import Portfolio
from core.errors import ConfigError
from core.margin import DeskLevel, VenueBand, evaluate_pool, params_for_pool
from core.margin.params import CollateralRate

DESK = Path(__file__).resolve().parents[2] / "examples" / "desk.toml"
AT = datetime(2026, 11, 27, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def desk() -> DeskConfig:
    return load_desk(DESK)


def _state(desk: DeskConfig) -> Portfolio:
    return desk.initial_portfolio(AT)


def test_every_pool_of_the_example_desk_gets_a_report_with_its_own_model(desk: DeskConfig) -> None:
    state = _state(desk)
    for cfg in desk.pools:
        report = evaluate_pool(desk, cfg.id, state)
        assert report.pool_id == cfg.id
        assert report.model == cfg.model
        assert report.mm_usd > 0
        assert report.standard_mm_usd is not None


def test_pm_pool_selects_only_its_wallets_and_counts_the_usdt_loan(desk: DeskConfig) -> None:
    report = evaluate_pool(desk, "sim-a.pm", _state(desk))
    keys = {c.key for c in report.contributions}
    assert "loan:USDT" in keys
    assert all(not k.startswith("sim-b/") for k in keys)
    # spot/funding wallets of sim-a are not in the pool: 8 BTC in spot are not counted
    btc = next(a for a in report.assets if a.asset == "BTC")
    cm_pnl = Decimal(60000 * 100) * (Decimal(1) / 91800 - Decimal(1) / 95020)
    assert btc.net == Decimal("4") + Decimal("1.5") + cm_pnl
    loan = next(c for c in report.contributions if c.key == "loan:USDT")
    assert loan.mm_usd == (Decimal("500182.35") * Decimal("0.1")).quantize(Decimal("1e-8"))
    assert report.venue_band is VenueBand.NORMAL
    assert report.desk_level is DeskLevel.OK


def test_params_for_pool_with_pool_rate_overrides_the_desk_rate(desk: DeskConfig) -> None:
    pool = desk.pool("sim-a.pm").model_copy(
        update={"collateral_rates": {"BTC": CollateralRate.flat("0.5")}}
    )
    custom = desk.model_copy(update={"pools": (pool, *desk.pools[1:])})
    assert params_for_pool(custom, "sim-a.pm").collateral_rate("BTC").rate == Decimal("0.5")
    assert params_for_pool(custom, "sim-b.um").collateral_rate("BTC").tiers is not None


def test_unknown_pool_is_a_config_error_listing_the_known_ones(desk: DeskConfig) -> None:
    with pytest.raises(ConfigError, match=r"sim-a\.pm"):
        evaluate_pool(desk, "nope", _state(desk))
