"""Pre-funding: the recommendation, applied, really covers the chosen scenarios in time."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from core.config import load_desk
from core.errors import DataError
from core.stress.evaluate import evaluate
from core.stress.prefund import Prepositioning, apply_moves, prefund
from core.stress.scenarios import Scenario, ScenarioKind, VenueConditions, library

DESK = load_desk(Path(__file__).resolve().parents[2] / "examples" / "desk.toml")
STATE = DESK.initial_portfolio(datetime(2026, 11, 27, 12, 0, tzinfo=UTC))
LIB = library(venues=["sim-a", "sim-b"], assets=list(DESK.assets), stablecoins=["USDT", "USDC"])


def test_advice_applied_covers_the_halted_crash_within_60s() -> None:
    chosen = [LIB["halt+crash@sim-b"]]
    before = {r.pool_id: r for r in evaluate(DESK, STATE, chosen)}
    assert before["sim-b.opt"].covered_60s_usd == 0  # sim-b halted: nothing can move in
    assert before["sim-b.opt"].deficit_usd > Decimal(1_000_000)
    advice = prefund(DESK, STATE, chosen)
    assert advice.status == "covered"
    [move] = advice.moves
    assert (move.route_id, move.asset, move.pool_id) == ("b.spot-options.usdt", "USDT", "sim-b.opt")
    assert move.amount_usd >= before["sim-b.opt"].deficit_usd
    # Independent check: apply the moves, re-run the scenario, nothing is left uncovered.
    rerun = {r.pool_id: r for r in evaluate(DESK, apply_moves(STATE, advice.moves), chosen)}
    assert rerun["sim-b.opt"].deficit_usd == 0
    assert all(r.deficit_usd - r.covered_60s_usd <= 0 for r in rerun.values())
    assert "move 1,102,543.60 USDT" in advice.lines()[0]


def test_nothing_to_do_when_every_scenario_is_covered_in_time() -> None:
    advice = prefund(DESK, STATE, [LIB["joint-btc-10%-vol+0%"]])
    assert advice.status == "nothing_to_do"
    assert advice.moves == ()
    assert "nothing to pre-position" in advice.lines()[0]


def test_partial_when_the_wallets_outside_the_pools_cannot_cover() -> None:
    huge = Scenario(
        "halt+btc-60%", ScenarioKind.VENUE, "sim-b halted during BTC -60 %",
        moves={"BTC": -0.6, "ETH": -0.6, "SOL": -0.6, "DOGE": -0.6}, vol_up_frac=1.0,
        conditions=VenueConditions(halted_venues=frozenset({"sim-b"})),
    )  # fmt: skip
    advice = prefund(DESK, STATE, [huge])
    assert advice.status == "partial"
    assert "still uncovered after the moves" in advice.lines()[-1]
    spot = next(
        b
        for b in STATE.balances
        if (b.venue, b.wallet.value, b.asset.code) == ("sim-b", "spot", "USDT")
    )
    moved = sum(m.amount for m in advice.moves if m.asset == "USDT" and m.venue == "sim-b")
    assert moved <= spot.amount  # never more than the wallet holds


def test_bad_input_is_refused() -> None:
    with pytest.raises(DataError, match="deadline_s"):
        prefund(DESK, STATE, [LIB["halt@sim-a"]], deadline_s=30)
    with pytest.raises(DataError, match="at least one scenario"):
        prefund(DESK, STATE, [])
    too_much = Prepositioning("b.spot-options.usdt", "sim-b.opt", "sim-b", "spot", "sim-b",
                              "options", "USDT", Decimal("1e9"), Decimal("1e9"), Decimal(0))  # fmt: skip
    with pytest.raises(DataError, match="does not hold"):
        apply_moves(STATE, [too_much])
