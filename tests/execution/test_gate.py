"""The desk's pre-authorisation as the executor's gate, on the example desk's simulated venues.

A leg over its route's per-transfer cap is refused (never sent) and the call is re-planned
around it; the re-plan respects the rolling usage already in the store. A plan never holds such
a leg itself: a step above the cap is one step per request, each within it.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from core.clock import ManualClock
from core.config import DeskConfig, load_desk
from core.execution.cure import DeskCure, check_plan_against_desk
from core.execution.executor import Executor
from core.execution.gate import desk_gate, router_usage
from core.execution.margin_call import detect, open_call, plan_call
from core.execution.story import call_story
from core.ledger.audit_log import verify_audit_chain
from core.ledger.store import session_scope
from core.ledger.tables import TransferRow
from core.ledger.transfers import intent_for_leg, record_transfer_intent
from core.venues.factory import DeskVenues, build_desk_venues

EXAMPLE_DESK = Path(__file__).resolve().parents[2] / "examples" / "desk.toml"
SHOCK = {"ETH": -0.26, "BTC": 0.08}
T0_NS = 1_795_737_600_000_000_000  # 2026-11-27 00:00 UTC


@pytest.fixture(scope="module")
def desk() -> DeskConfig:
    return load_desk(EXAMPLE_DESK)


def _capped(desk: DeskConfig, route: str, per_transfer_usd: int) -> DeskConfig:
    """``desk`` with ``route``'s per-transfer cap lowered (the allow-list tightened after the
    plan was made)."""
    pre = tuple(
        pa.model_copy(update={"per_transfer_usd": Decimal(per_transfer_usd)})
        if pa.route == route
        else pa
        for pa in desk.preauth
    )
    return desk.model_copy(update={"preauth": pre})


@pytest.fixture
def venues(desk: DeskConfig) -> Iterator[tuple[ManualClock, DeskVenues]]:
    clock = ManualClock(T0_NS)
    with build_desk_venues(desk, clock) as dv:
        dv.warm_up()
        for e in dv.engines.values():
            e.prices.apply_scenario(SHOCK)
        yield clock, dv


def _run(desk: DeskConfig, gate_desk: DeskConfig, store: Engine, clock: ManualClock,
         dv: DeskVenues, pool: str, lines: list[str]):  # type: ignore[no-untyped-def]  # fmt: skip
    cure = DeskCure(desk, dv.venues, clock)
    reports, pf, due = detect(cure)
    d = next(x for x in due if x.pool_id == pool)
    call, _ = open_call(store, cure, d, clock=clock, audit_key=None)
    recorded, _ = plan_call(store, cure, call, reports, pf, clock=clock, audit_key=None)
    replanner = DeskCure(gate_desk, dv.venues, clock, engine=store)
    ex = Executor(
        store, dv.venues, clock, owner="ex-gate", gate=desk_gate(gate_desk),
        verifier=replanner.verify, replanner=replanner.replan,
        plan_check=lambda r: check_plan_against_desk(gate_desk, r), on_step=lines.append,
    )  # fmt: skip
    return recorded, ex.execute(call.id)


def test_leg_over_its_per_transfer_cap_is_refused_and_replanned_around(
    desk: DeskConfig, store: Engine, venues: tuple[ManualClock, DeskVenues]
) -> None:
    clock, dv = venues
    tight = _capped(desk, "a.spot-margin.usdt", 100_000)  # tightened after the plan was made
    lines: list[str] = []
    recorded, report = _run(desk, tight, store, clock, dv, "sim-a.pm", lines)
    planned = [(leg.route_id, leg.amount_usd) for a in recorded.plan.allocations for leg in a.legs]
    assert planned == [
        ("a.margin.doge-usdt", 750_000),
        ("a.spot-margin.usdt", Decimal("204807.21")),
    ]
    states = [(g.plan_version, g.source_id, g.state.value) for g in report.legs]
    assert states == [
        (1, "sim-a.pm:a.margin.doge-usdt", "confirmed"),
        (1, "sim-a.pm:a.spot-margin.usdt", "refused"),
        (2, "sim-a.pm:a.spot-margin.usdc", "confirmed"),
    ]
    assert report.legs[1].note == (
        "per_transfer_cap: leg 204,807.21 USD over per-transfer cap 100,000.00 USD "
        "on route a.spot-margin.usdt"
    )
    assert report.versions == (1, 2)
    assert report.call_status == "cured"
    # what reached the venue: the DOGE order and the USDC transfer; the refused leg never
    engine = dv.engines["sim-a"]
    assert [(t.asset, str(t.amount)) for t in engine.transfers] == [("USDC", "204868.7")]
    with Session(store) as s:
        rows = {r.route_id: r for r in s.exec(select(TransferRow)).all()}
        assert (rows["a.spot-margin.usdt"].status, rows["a.spot-margin.usdt"].attempts) == (
            "refused", 0)  # fmt: skip
        assert verify_audit_chain(s).ok
    assert "re-plan v2: 1 step(s) without sim-a.pm:a.spot-margin.usdt" in lines


def test_router_usage_counts_legs_in_the_window_per_route_group_and_venue(
    desk: DeskConfig, store: Engine, venues: tuple[ManualClock, DeskVenues]
) -> None:
    clock, dv = venues
    cure = DeskCure(desk, dv.venues, clock)
    reports, pf, due = detect(cure)
    d = next(x for x in due if x.pool_id == "sim-b.opt")
    call, _ = open_call(store, cure, d, clock=clock, audit_key=None)
    recorded, _ = plan_call(store, cure, call, reports, pf, clock=clock, audit_key=None)
    with session_scope(store) as s:  # the leg's pending row: it may move, so it counts
        record_transfer_intent(s, intent_for_leg(recorded, 0, 0), at=clock.now())
    with Session(store) as s:
        used = router_usage(s, desk, now=clock.now())
    assert used["b.spot-options.usdt"] == Decimal("562912.03")
    assert used["venue:sim-b"] == Decimal("562912.03")
    assert used["sim-a-hot"] == 0
    # the re-planner reads the same figures from the store
    assert DeskCure(desk, dv.venues, clock, engine=store).used_24h_usd() == used
    # 24 h and a second later the leg is out of the window
    clock.advance(24 * 3600 + 1)
    with Session(store) as s:
        assert router_usage(s, desk, now=clock.now()) == {"sim-a-hot": 0}


# Every route into sim-a's PM pool allowed 100,000 USD per transfer, below the 204,807.21 USD
# of USDT the call needs after the DOGE order.
INTO_PM = ("a.spot-margin.usdt", "a.spot-margin.usdc", "a.funding-margin.usdt", "a.spot-margin.btc")


def _all_capped(desk: DeskConfig, per_transfer_usd: int) -> DeskConfig:
    for route in INTO_PM:
        desk = _capped(desk, route, per_transfer_usd)
    return desk


def test_step_above_its_per_transfer_cap_is_sent_as_requests_within_it_and_cures(
    desk: DeskConfig, store: Engine, venues: tuple[ManualClock, DeskVenues]
) -> None:
    # Before steps were cut to the cap, each route's one 204,807.21-ish leg was refused in
    # turn (four plan versions) and the call escalated at ratio 1.5129.
    clock, dv = venues
    tight = _all_capped(desk, 100_000)
    lines: list[str] = []
    recorded, report = _run(tight, tight, store, clock, dv, "sim-a.pm", lines)
    planned = [
        (a.source, a.eta_s, [(leg.route_id, leg.amount_usd) for leg in a.legs])
        for a in recorded.plan.allocations
    ]
    assert planned == [
        ("sim-a.pm:a.margin.doge-usdt", 0.5, [("a.margin.doge-usdt", 750_000)]),
        ("sim-a.pm:a.spot-margin.usdt", 1.0, [("a.spot-margin.usdt", 100_000)]),
        ("sim-a.pm:a.spot-margin.usdt", 1.5, [("a.spot-margin.usdt", 100_000)]),
        ("sim-a.pm:a.spot-margin.usdt", 2.0, [("a.spot-margin.usdt", Decimal("4807.21"))]),
    ]
    states = [(g.plan_version, g.step_no, g.state.value) for g in report.legs]
    assert states == [(1, 0, "confirmed"), (1, 1, "confirmed"), (1, 2, "confirmed"),
                      (1, 3, "confirmed")]  # fmt: skip
    assert (report.versions, report.call_status) == ((1,), "cured")
    assert not any("per_transfer_cap" in line for line in lines)
    engine = dv.engines["sim-a"]
    assert [(t.asset, str(t.amount)) for t in engine.transfers] == [
        ("USDT", "100000"), ("USDT", "100000"), ("USDT", "4807.21"),
    ]  # fmt: skip
    with Session(store) as s:
        assert {r.status for r in s.exec(select(TransferRow)).all()} == {"confirmed"}
        assert verify_audit_chain(s).ok
        story = call_story(s, report.margin_call_id)
    assert (story.outcome, story.plan_versions, dict(story.legs_by_result)) == (
        "restored", (1,), {"confirmed": 4})  # fmt: skip
    assert [line.step_leg for line in story.lines if line.event == "LegConfirmed"] == [
        "v1 s0.0", "v1 s1.0", "v1 s2.0", "v1 s3.0",
    ]  # fmt: skip


def test_refused_request_starts_no_later_request_of_its_source_and_replans(
    desk: DeskConfig, store: Engine, venues: tuple[ManualClock, DeskVenues]
) -> None:
    clock, dv = venues
    planned_with = _all_capped(desk, 100_000)
    gate = _capped(planned_with, "a.spot-margin.usdt", 50_000)  # tightened after planning
    lines: list[str] = []
    recorded, report = _run(planned_with, gate, store, clock, dv, "sim-a.pm", lines)
    assert [a.amount_usd for a in recorded.plan.allocations] == [
        750_000, 100_000, 100_000, Decimal("4807.21"),
    ]  # fmt: skip
    states = [(g.plan_version, g.step_no, g.source_id, g.state.value) for g in report.legs]
    # the first USDT request is refused; the next two are never started (no row, no send):
    # the re-plan routes around the source, in USDC requests of at most 100,000 USD
    assert states == [
        (1, 0, "sim-a.pm:a.margin.doge-usdt", "confirmed"),
        (1, 1, "sim-a.pm:a.spot-margin.usdt", "refused"),
        (2, 0, "sim-a.pm:a.spot-margin.usdc", "confirmed"),
        (2, 1, "sim-a.pm:a.spot-margin.usdc", "confirmed"),
        (2, 2, "sim-a.pm:a.spot-margin.usdc", "confirmed"),
    ]
    assert report.legs[1].note == (
        "per_transfer_cap: leg 100,000.00 USD over per-transfer cap 50,000.00 USD "
        "on route a.spot-margin.usdt"
    )
    assert (report.versions, report.call_status) == ((1, 2), "cured")
    with Session(store) as s:
        usdt = s.exec(select(TransferRow).where(TransferRow.route_id == "a.spot-margin.usdt"))
        assert [(r.step_no, r.status) for r in usdt.all()] == [(1, "refused")]
    assert [(t.asset, str(t.amount)) for t in dv.engines["sim-a"].transfers] == [
        ("USDC", "100020"), ("USDC", "100020"), ("USDC", "4828.7"),
    ]  # fmt: skip
