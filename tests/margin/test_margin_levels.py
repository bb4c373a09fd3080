"""Breach detection and desk collateral totals: the core functions the demo, the summary and the
monitor call (``core.margin.levels``, ``core.margin.collateral``)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from core.config import DeskConfig, load_desk
from core.domain import Asset, Balance, WalletKind
from core.errors import ConfigError, UnknownAssetError
from core.margin.api import evaluate_pool
from core.margin.collateral import desk_collateral_usd
from core.margin.levels import (
    DeskLevel,
    VenueBand,
    desk_level_for,
    margin_calls_due,
    target_ratio,
    venue_band_for,
)
from core.margin.report import MarginReport
from core.params import Thresholds, VenueLevels
from core.stress.shocks import shock_portfolio

D = Decimal
AT = datetime(2026, 11, 27, 12, tzinfo=UTC)
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "desk.toml"


@pytest.fixture(scope="module")
def desk() -> DeskConfig:
    return load_desk(EXAMPLE)


@pytest.mark.parametrize(
    ("ratio", "level"),
    [
        ("1.6", DeskLevel.WARN),  # exactly at warn: upper-inclusive, so warn
        ("1.600000001", DeskLevel.OK),
        ("1.2", DeskLevel.CALL),
        # 1.2 + 1e-17 is above call: as a float it is 1.2 exactly and would read "call"
        ("1.20000000000000001", DeskLevel.WARN),
        ("1.05", DeskLevel.REDUCE_ONLY),
        ("1.0", DeskLevel.LIQUIDATION),
        ("0.2", DeskLevel.LIQUIDATION),
    ],
)
def test_desk_level_with_ratio_at_and_around_each_threshold_compares_decimals(
    ratio: str, level: DeskLevel
) -> None:
    thresholds = Thresholds(warn=1.6, call=1.2, reduce_only=1.05, liquidation=1.0)
    assert desk_level_for(D(ratio), D(1), thresholds) is level


def test_venue_band_with_ratio_just_above_a_level_is_the_band_above() -> None:
    levels = VenueLevels()  # Binance PM Pro: 1.5 / 1.2 / 1.05 / 1.0
    assert venue_band_for(D("1.5"), D(1), levels) is VenueBand.MARGIN_CALL
    assert venue_band_for(D("1.50000000000000001"), D(1), levels) is VenueBand.NORMAL
    assert venue_band_for(None, D(-1), levels) is VenueBand.BANKRUPT


def _shocked_reports(desk: DeskConfig) -> dict[str, MarginReport]:
    state = desk.initial_portfolio(AT)
    shocked = shock_portfolio(
        state, desk.instrument_map(), {"ETH": -0.26, "BTC": 0.08}, vol_up_frac=0.3
    )
    return {p.id: evaluate_pool(desk, p.id, shocked) for p in desk.pools}


def test_margin_calls_due_with_the_demo_shock_names_the_called_pools_and_their_deficits(
    desk: DeskConfig,
) -> None:
    reports = _shocked_reports(desk)
    due = margin_calls_due(desk, reports)
    assert [d.pool_id for d in due] == ["sim-a.pm", "sim-b.opt"]
    pm = due[0]
    # target 2.0 with a 2 % buffer: restore 2.04 × MM
    assert (pm.call_ratio, pm.target_ratio) == (D("1.6"), D("2.040"))
    r = reports["sim-a.pm"]
    assert pm.deficit_usd == D("2.040") * r.mm_usd - r.adjusted_equity_usd
    assert pm.deficit_usd > 0
    assert (pm.ratio, pm.desk_level) == (r.ratio, r.desk_level)
    assert reports["sim-b.um"].desk_level is DeskLevel.OK  # not called


def test_margin_calls_due_with_a_foreign_or_rethresholded_report_refuses_it(
    desk: DeskConfig,
) -> None:
    reports = _shocked_reports(desk)
    with pytest.raises(ConfigError, match="does not declare"):
        margin_calls_due(desk, {"sim-z.pm": reports["sim-a.pm"]})
    other = replace(reports["sim-a.pm"], thresholds=Thresholds())
    with pytest.raises(ConfigError, match="other thresholds"):
        margin_calls_due(desk, {"sim-a.pm": other})
    assert margin_calls_due(desk, {}) == ()
    assert target_ratio(Thresholds(target=1.5, buffer_frac=0)) == D("1.5")


def test_desk_collateral_with_the_example_desk_totals_pools_and_free_wallets(
    desk: DeskConfig,
) -> None:
    marks = {p.symbol: p.mark for p in desk.prices}
    totals = desk_collateral_usd(desk, desk.initial_balances(), marks)
    # sim-a.pm: margin 4·95,000 + 60·3,200 + 1,300,000 + 200,000·0.9998 + 3,000,000·0.25,
    # um 250,000, cm 1.5·95,000 (loans not netted: gross is where the collateral sits)
    assert totals.by_pool == {
        "sim-a.pm": D(3_214_460),
        "sim-b.um": D(900_000) + 2 * D(95_000),
        "sim-b.opt": D(2_200_000),
    }
    assert dict(totals.free) == {
        ("sim-a", WalletKind.FUNDING): D(900_000),
        ("sim-a", WalletKind.SPOT): D(2_500_000) + D(1_200_000) * D("0.9998") + 8 * D(95_000),
        ("sim-b", WalletKind.SPOT): D(1_600_000) + 150 * D(3200),
    }
    assert sum(totals.by_wallet.values()) == sum(totals.by_pool.values()) + sum(
        totals.free.values()
    )


def test_desk_collateral_with_an_unpriced_asset_refuses_instead_of_counting_zero(
    desk: DeskConfig,
) -> None:
    held = [Balance("sim-a", WalletKind.SPOT, Asset("PEPE"), D(1_000_000))]
    with pytest.raises(UnknownAssetError) as err:
        desk_collateral_usd(desk, held, {"USDT": D(1)})
    assert err.value.context == {"asset": "PEPE", "where": "sim-a/spot"}
