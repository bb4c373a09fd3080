"""A call is planned on its own pool's portfolio when the venues disagree on a price.

Two exchanges never quite agree on a price, and the simulated venues on the wall clock drift
apart on their seeded paths (``pmr serve``'s shared simulator). ``DeskState.portfolio`` then
refuses to merge them, and each pool is margined on its own venue's portfolio. The monitor
used to hand every call the desk's *first* pool's portfolio (sim-a's), so a call on sim-b was
planned where none of its wallets are: "no source can deliver to it within 60 s", plan v1
infeasible, and the run only moved collateral after a re-plan.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from core.clock import ManualClock
from core.config import DeskConfig, load_desk
from core.execution.cure import DeskCure
from core.execution.margin_call import detect, detect_by_pool, open_call, plan_call
from core.execution.monitor import monitor_cycle
from core.execution.planning import plan_inputs
from core.venues.factory import DeskVenues, build_desk_venues

DESK = Path(__file__).resolve().parents[2] / "examples" / "desk.toml"
T0_NS = 1_795_780_800_000_000_000


@pytest.fixture
def desk() -> DeskConfig:
    return load_desk(DESK)


@pytest.fixture
def apart(desk: DeskConfig) -> Iterator[tuple[DeskVenues, ManualClock]]:
    """Both venues an hour into their own seeded paths (their BTC prices differ), then BTC
    +15 % on both, so the options pool on sim-b is at its call level."""
    clock = ManualClock(T0_NS)
    with build_desk_venues(desk, clock) as dv:
        dv.warm_up()
        clock.advance(3600)
        for e in dv.engines.values():
            e.prices.apply_scenario({"BTC": 0.15})
        yield dv, clock


def test_monitor_cycle_with_venues_apart_gives_each_pool_its_own_venue_portfolio(
    desk: DeskConfig, apart: tuple[DeskVenues, ManualClock]
) -> None:
    dv, clock = apart
    cycle = monitor_cycle(DeskCure(desk, dv.venues, clock))
    assert [d.pool_id for d in cycle.due] == ["sim-b.opt"]
    venues_of = {pool: {b.venue for b in pf.balances} for pool, pf in cycle.portfolios.items()}
    assert venues_of == {"sim-a.pm": {"sim-a"}, "sim-b.um": {"sim-b"}, "sim-b.opt": {"sim-b"}}
    assert cycle.portfolio_for("sim-b.opt") is cycle.portfolios["sim-b.opt"]
    assert cycle.portfolio is cycle.portfolios["sim-a.pm"]  # the first pool's, as before


def test_plan_call_with_the_pools_portfolio_is_optimal_and_with_the_first_pools_infeasible(
    desk: DeskConfig, apart: tuple[DeskVenues, ManualClock], store: Engine
) -> None:
    dv, clock = apart
    cure = DeskCure(desk, dv.venues, clock, engine=store)
    reports, portfolios, due = detect_by_pool(cure)
    call, _ = open_call(store, cure, due[0], clock=clock, audit_key=None)
    right, _ = plan_call(
        store, cure, call, reports, portfolios[call.pool_id], clock=clock, audit_key=None
    )
    assert right.plan.status == "optimal"
    assert {a.venue for a in right.plan.allocations} == {"sim-b"}
    assert right.plan.uncovered_usd == 0
    # What the monitor planned on before: ``detect``'s portfolio is sim-a's, where sim-b.opt
    # has no wallet, so no source of its own venue is seen.
    _, first_pf, _ = detect(cure)
    assert {b.venue for b in first_pf.balances} == {"sim-a"}
    planned = plan_inputs(desk, first_pf, [call.pool_id], deadline_s=60.0, reports=reports)
    wrong = cure.router.route(planned.input)
    assert wrong.uncovered_usd > 0
    assert wrong.credit_usd == 0
