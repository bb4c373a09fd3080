"""Evaluation: post-shock reports and time-to-cover per pool × scenario."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.config import load_desk
from core.errors import DataError
from core.execution.planning import plan_inputs, pool_reports
from core.margin import evaluate_pool
from core.stress.evaluate import apply_conditions, evaluate
from core.stress.scenarios import Scenario, ScenarioKind, VenueConditions, library
from core.stress.shocks import shock_portfolio

DESK = load_desk(Path(__file__).resolve().parents[2] / "examples" / "desk.toml")
STATE = DESK.initial_portfolio(datetime(2026, 11, 27, 12, 0, tzinfo=UTC))
STABLES = [a for a, c in DESK.assets.items() if c.kind == "stablecoin"]
LIB = library(venues=[v.name for v in DESK.venues], assets=list(DESK.assets), stablecoins=STABLES)
ZERO = Scenario("zero", ScenarioKind.JOINT, "no move")


def test_zero_scenario_reproduces_the_unshocked_reports() -> None:
    for row in evaluate(DESK, STATE, [ZERO]):
        report = evaluate_pool(DESK, row.pool_id, STATE)
        assert row.ratio == report.ratio
        assert row.desk_level == report.desk_level.value
        assert row.venue_band == report.venue_band.value
        pool = next(p for p in DESK.pools if p.id == row.pool_id)
        assert row.deficit_usd == report.deficit(pool.thresholds.target).quantize(Decimal("0.01"))


def test_crash_puts_the_options_pool_in_deficit_and_cover_is_cumulative() -> None:
    rows = {r.pool_id: r for r in evaluate(DESK, STATE, [LIB["joint-btc-30%-vol+50%"]])}
    opt = rows["sim-b.opt"]
    assert opt.desk_level == "liquidation"
    assert opt.deficit_usd > Decimal(1_000_000)
    assert opt.covered_10s_usd <= opt.covered_60s_usd <= opt.covered_10m_usd <= opt.deficit_usd
    assert opt.uncovered_usd == opt.deficit_usd - opt.covered_10m_usd
    assert opt.worst_position == "sim-b/options/BTC-270326-80000-P"  # the put loses most


def test_a_halted_venue_drops_its_sources_from_time_to_cover() -> None:
    crash = shock_portfolio(STATE, DESK.instrument_map(), LIB["joint-btc-30%-vol+50%"].moves)
    inp = plan_inputs(
        DESK, crash, ["sim-b.opt"], deadline_s=600, reports=pool_reports(DESK, crash)
    ).input
    halted = apply_conditions(inp, VenueConditions(halted_venues=frozenset({"sim-a"})))
    assert any(s.venue == "sim-a" for s in inp.sources)
    assert halted.sources
    assert not any(
        s.venue == "sim-a" or any("sim-a" in (g.venue, g.to_venue) for g in s.legs)
        for s in halted.sources
    )
    base = {r.pool_id: r for r in evaluate(DESK, STATE, [LIB["halt+crash@sim-a"]])}
    free = Scenario("crash-no-halt", ScenarioKind.JOINT, "same moves, venues normal",
                    moves=LIB["halt+crash@sim-a"].moves, vol_up_frac=0.5)  # fmt: skip
    normal = {r.pool_id: r for r in evaluate(DESK, STATE, [free])}
    for pid, r in base.items():
        assert r.deficit_usd == normal[pid].deficit_usd
        assert r.covered_10m_usd <= normal[pid].covered_10m_usd


def test_stale_prices_cover_nothing_and_are_flagged() -> None:
    stale = Scenario("stale", ScenarioKind.VENUE, "stale feed", moves={"BTC": -0.3},
                     conditions=VenueConditions(stale_price_venues=frozenset({"sim-b"})))  # fmt: skip
    rows = {r.pool_id: r for r in evaluate(DESK, STATE, [stale])}
    assert rows["sim-b.opt"].stale_prices
    assert rows["sim-b.opt"].covered_10m_usd == 0
    assert rows["sim-b.opt"].uncovered_usd == rows["sim-b.opt"].deficit_usd


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cut=st.integers(1, 5))
def test_result_is_independent_of_batching(cut: int) -> None:
    batch = [ZERO, *list(LIB.values())[:5]]
    whole = evaluate(DESK, STATE, batch)
    split = evaluate(DESK, STATE, batch[:cut]) + evaluate(DESK, STATE, batch[cut:])
    assert whole == split


def test_unknown_asset_and_pool_are_named() -> None:
    bad = Scenario("moves-link", ScenarioKind.JOINT, "LINK -50 %", moves={"LINK": -0.5})
    with pytest.raises(DataError, match="does not hold") as err:
        evaluate(DESK, STATE, [bad])
    assert "moves-link" in str(err.value)
    assert "LINK" in str(err.value)
    with pytest.raises(DataError, match="unknown pool"):
        evaluate(DESK, STATE, [ZERO], pools=["nope"])
