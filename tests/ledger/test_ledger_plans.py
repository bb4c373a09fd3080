"""Margin calls and plans in the store: one open call per pool, plan versions claimed once,
plans with their steps and legs read back unchanged (``core.ledger.plans``), on SQLite and
PostgreSQL. Concurrent writers are in ``test_ledger_concurrency.py``."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ledger_helpers import (
    CALL,
    T0,
    hand_plan,
    margin_call_row,
    seed_plan,
    sqlite_memory_engine,
    usdt_leg,
)
from sqlmodel import Session, col, func, select

from core.domain import WalletKind
from core.errors import DataError
from core.ledger.keys import leg_key, plan_id
from core.ledger.plans import (
    latest_plan_version,
    load_plan,
    open_margin_call,
    plan_rows,
    record_alternative,
    record_margin_call,
    record_plan,
)
from core.ledger.store import ensure_venue
from core.ledger.tables import MarginCallRow, PlanLegRow, PlanRow, PlanStepRow
from core.ledger.vocab import CallStatus, VenueMode
from core.routing.legs import Leg, LegKind, book_usd
from core.routing.plan import Allocation, Alternative, CallOutcome, LazyAlternative, Plan
from core.routing.sources import Policy

W = WalletKind


def _without_alternative(plan: Plan) -> Plan:
    return replace(plan, other_policy=None)


# --- margin calls -----------------------------------------------------------------------------


def test_margin_call_recorded_twice_with_same_id_is_not_duplicated(
    session: Session, venues: object
) -> None:
    _, created = record_margin_call(session, margin_call_row())
    stored, created_again = record_margin_call(session, margin_call_row(deficit_usd=Decimal(1)))
    assert (created, created_again) == (True, False)
    assert stored.deficit_usd == Decimal("250000")


def test_margin_call_for_pool_with_an_open_call_returns_that_call(
    session: Session, venues: object
) -> None:
    """A repeated detection under a new id finds the breach's call: no second cure starts."""
    first, _ = record_margin_call(session, margin_call_row())
    again, created = record_margin_call(session, margin_call_row("mc-20260312-093005000-00000002"))
    assert (created, again.id) == (False, first.id)
    assert session.get(MarginCallRow, "mc-20260312-093005000-00000002") is None
    other_pool, created_other = record_margin_call(
        session, margin_call_row("mc-20260312-093005000-00000003", pool="sim-a.um")
    )
    assert (created_other, other_pool.pool_id) == (True, "sim-a.um")
    open_call = open_margin_call(session, "sim-a.pm")
    assert open_call is not None
    assert open_call.id == CALL


def test_margin_call_for_pool_whose_call_is_closed_opens_a_new_one(
    session: Session, venues: object
) -> None:
    record_margin_call(session, margin_call_row(status=CallStatus.CURED.value))
    fresh, created = record_margin_call(session, margin_call_row("mc-20260312-100000000-00000004"))
    assert (created, fresh.status) == (True, "open")


# --- recording and reading plans ---------------------------------------------------------------


def test_recorded_plan_reads_back_unchanged_with_its_leg_keys(
    session: Session, venues: object
) -> None:
    plan = hand_plan()
    recorded = seed_plan(session, plan)
    assert (recorded.plan_id, recorded.version) == (plan_id(CALL, 1), 1)
    loaded = load_plan(session, CALL, 1)
    assert loaded is not None
    assert loaded.plan == plan  # no alternative on either side: equal field by field
    assert loaded.created_at == T0
    keys = session.exec(select(PlanLegRow.idempotency_key).order_by(col(PlanLegRow.step_no))).all()
    assert list(keys) == [leg_key(CALL, 1, 0, 0), leg_key(CALL, 1, 1, 0)]
    assert recorded.leg_key(1, 0) == keys[1]


def test_plan_rows_book_the_first_legs_asset_and_the_last_legs_destination(
    session: Session, venues: object
) -> None:
    chain = (
        Leg(0, LegKind.WITHDRAWAL, "sim-b", W.SPOT, W.SPOT, "USDT", Decimal(50000),
            Decimal(50000), Decimal(1), 1200.0, "ba.onchain.usdt", to_venue="sim-a"),
        usdt_leg(1, "50000"),
    )  # fmt: skip
    plan = hand_plan(amounts=("50000",))
    step = replace(plan.allocations[0], venue="sim-b", mode="withdrawal", legs=chain)
    plan = replace(plan, allocations=(step,))
    row, steps, legs = plan_rows(CALL, 1, plan, at=T0)
    assert (steps[0].venue_id, steps[0].from_wallet, steps[0].asset) == ("sim-b", "spot", "USDT")
    assert (steps[0].to_venue_id, steps[0].to_wallet) == ("sim-a", "pm")
    assert [(g.venue_id, g.to_venue_id, g.kind) for g in legs] == [
        ("sim-b", "sim-a", "withdrawal"),
        ("sim-a", "sim-a", "internal"),
    ]
    assert (row.version, row.solver, row.detail and row.detail["problem_id"]) == (
        1, "highs", "0123456789abcdef",
    )  # fmt: skip
    recorded = seed_plan(session, plan)
    assert recorded.plan == plan


def test_second_plan_for_a_claimed_version_gets_the_first_plan_back(
    session: Session, venues: object
) -> None:
    """First writer wins: the loser must execute the recorded plan, never its own."""
    seed_plan(session, hand_plan(amounts=("250000",)))
    mine = hand_plan(amounts=("100000", "150000"))
    recorded, created = record_plan(session, CALL, mine, version=1, at=T0 + timedelta(seconds=1))
    assert not created
    assert recorded.plan == hand_plan(amounts=("250000",))
    assert session.exec(select(func.count()).select_from(PlanStepRow)).one() == 1


def test_replan_claims_the_next_version_with_new_keys(session: Session, venues: object) -> None:
    seed_plan(session)
    assert latest_plan_version(session, CALL) == 1
    second, created = record_plan(
        session, CALL, hand_plan(amounts=("250000",)), version=2, at=T0 + timedelta(seconds=3)
    )
    assert (created, second.plan_id, latest_plan_version(session, CALL)) == (
        True, plan_id(CALL, 2), 2,
    )  # fmt: skip
    assert second.leg_key(0, 0) == leg_key(CALL, 2, 0, 0) != leg_key(CALL, 1, 0, 0)
    latest = load_plan(session, CALL)
    assert latest is not None
    assert latest.version == 2
    assert load_plan(session, CALL, 7) is None
    assert load_plan(session, "mc-no-such-call") is None
    assert latest_plan_version(session, "mc-no-such-call") is None


def test_replan_with_a_version_gap_is_refused_and_writes_nothing(
    session: Session, venues: object
) -> None:
    seed_plan(session)
    with pytest.raises(DataError, match="re-plan follows the version it replaces"):
        record_plan(session, CALL, hand_plan(), version=3, at=T0)
    assert session.exec(select(func.count()).select_from(PlanRow)).one() == 1
    assert session.get(PlanRow, plan_id(CALL, 3)) is None


def test_plan_for_unrecorded_call_or_venue_is_refused(session: Session, venues: object) -> None:
    with pytest.raises(DataError, match="not recorded"):
        record_plan(session, CALL, hand_plan(), version=1, at=T0)
    record_margin_call(session, margin_call_row())
    elsewhere = hand_plan(amounts=("1",))
    step = replace(elsewhere.allocations[0], venue="sim-z")
    with pytest.raises(DataError, match="not recorded"):
        record_plan(session, CALL, replace(elsewhere, allocations=(step,)), version=1, at=T0)
    assert session.exec(select(func.count()).select_from(PlanRow)).one() == 0


def test_plan_for_a_closed_call_is_refused_but_its_recorded_plan_is_still_returned(
    session: Session, venues: object
) -> None:
    """The run that arrives after the call was cured does nothing new: no re-plan, and its
    claim of version 1 gets the plan that cured it."""
    seed_plan(session)
    call = session.get(MarginCallRow, CALL)
    assert call is not None
    call.status = CallStatus.CURED.value
    session.add(call)
    session.flush()
    with pytest.raises(DataError, match="margin call is cured"):
        record_plan(session, CALL, hand_plan(amounts=("1",)), version=2, at=T0)
    recorded, created = record_plan(session, CALL, hand_plan(amounts=("1",)), version=1, at=T0)
    assert (created, recorded.plan) == (False, hand_plan())
    assert latest_plan_version(session, CALL) == 1


def test_plan_without_legs_is_not_executable_and_not_recorded(
    session: Session, venues: object
) -> None:
    plan = hand_plan()
    bare = replace(plan, allocations=tuple(replace(a, legs=()) for a in plan.allocations))
    assert not bare.executable
    record_margin_call(session, margin_call_row())
    with pytest.raises(DataError, match="not executable"):
        record_plan(session, CALL, bare, version=1, at=T0)


def test_joint_plan_is_recorded_per_call_with_that_calls_steps(
    session: Session, venues: object
) -> None:
    a, b = hand_plan("sim-a.pm", ("100",)), hand_plan("sim-a.um", ("200", "300"))
    joint = replace(
        a,
        allocations=a.allocations + b.allocations,
        calls=a.calls + b.calls,
        credit_usd=Decimal(600),
    )
    record_margin_call(session, margin_call_row())
    second_call = "mc-20260312-093000000-00000000000000b2"
    record_margin_call(session, margin_call_row(second_call, pool="sim-a.um"))
    with pytest.raises(DataError, match="pass deficit="):
        record_plan(session, CALL, joint, version=1, at=T0)
    first, _ = record_plan(session, CALL, joint, version=1, at=T0, deficit="sim-a.pm")
    other, _ = record_plan(session, second_call, joint, version=1, at=T0, deficit="sim-a.um")
    assert first.plan == replace(a, config=joint.config)
    assert [s.amount_usd for s in other.plan.allocations] == [Decimal(200), Decimal(300)]
    assert (other.plan.credit_usd, other.plan.calls[0].call) == (Decimal(500), "sim-a.um")


def test_alternative_solved_after_recording_is_added_and_read_back(
    session: Session, venues: object
) -> None:
    pending = LazyAlternative(lambda: Alternative(Policy.COST, Decimal("1.5"), "optimal"))
    plan = replace(hand_plan(), other_policy=pending)
    recorded = seed_plan(session, plan)
    assert pending.computed is False  # recording did not force the comparison
    assert recorded.plan.other_policy is None
    alt = Alternative(Policy.COST, Decimal("1.5"), "optimal", note="before rounding", solve_ms=4.5)
    record_alternative(session, recorded.plan_id, alt)
    loaded = load_plan(session, CALL, 1)
    assert loaded is not None
    assert loaded.plan.alternative == alt


def test_plan_with_a_figure_beyond_the_stores_resolution_is_refused_naming_it(
    session: Session, venues: object
) -> None:
    plan = hand_plan(amounts=("1",))
    step = replace(plan.allocations[0], cost_usd=Decimal("0.1234567890123456789"))
    with pytest.raises(DataError, match="more than 18 decimal places") as caught:
        plan_rows(CALL, 1, replace(plan, allocations=(step,)), at=T0)
    assert caught.value.context["field"] == "cost_usd"
    assert "step 0" in str(caught.value.context["where"])


# --- read back unchanged, whatever the plan (property) --------------------------------------

_usd = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("10000000"), places=8)
_price = st.decimals(min_value=Decimal("0.0001"), max_value=Decimal("200000"), places=6)
_seconds = st.floats(min_value=0.0, max_value=1e5, allow_nan=False)


@st.composite
def _legs(draw: st.DrawFn) -> tuple[Leg, ...]:
    """A one- or two-leg chain: transfer, conversion, withdrawal, or one of them then a transfer."""
    price, amount = draw(_price), draw(_usd)
    first_kind = draw(st.sampled_from(list(LegKind)))
    to_asset = "USDT" if first_kind.converts else None
    frm = W.MARGIN if first_kind.converts else W.SPOT
    to = {LegKind.WITHDRAWAL: W.SPOT, LegKind.INTERNAL: W.MARGIN}.get(first_kind, frm)
    first = Leg(
        0, first_kind, "sim-a", frm, to, "BTC", amount, book_usd(amount * price), price,
        draw(_seconds), draw(st.none() | st.just("route-1")),
        to_venue="sim-b" if first_kind is LegKind.WITHDRAWAL else None, to_asset=to_asset,
    )  # fmt: skip
    if not draw(st.booleans()):
        return (first,)
    venue = first.destination_venue
    second = Leg(
        1, LegKind.INTERNAL, venue, to, W.UM, first.to_asset or "BTC", amount,
        book_usd(amount * price), price, draw(_seconds), "route-2",
    )  # fmt: skip
    return (first, second)


@st.composite
def _plans(draw: st.DrawFn) -> Plan:
    steps = []
    for i in range(draw(st.integers(1, 4))):
        pnl = draw(st.booleans())
        legs = () if pnl else draw(_legs())
        amount = draw(_usd)
        steps.append(
            Allocation(
                call="sim-a.pm", source=f"src-{i}:é", tier=1 if pnl else draw(st.integers(2, 3)),
                mode="pnl_offset" if pnl else draw(st.sampled_from(["transfer", "swap"])),
                amount_usd=amount, credit_usd=draw(_usd), cost_usd=draw(_usd),
                eta_s=draw(_seconds), requests=draw(st.integers(1, 50)),
                latency_s=draw(_seconds),
                binding=draw(st.sampled_from(["deficit_covered", "preauth_limit", "available"])),
                origin_pool=draw(st.none() | st.just("sim-b.um")), venue="sim-a", legs=legs,
            )
        )  # fmt: skip
    credit = sum((a.credit_usd for a in steps), Decimal(0))
    cost = sum((a.cost_usd for a in steps), Decimal(0))
    uncovered = draw(st.sampled_from([Decimal(0), Decimal("1234.5")]))
    outcome = CallOutcome(
        "sim-a.pm", credit + uncovered, credit, cost, uncovered,
        draw(st.none() | st.floats(0, 10, allow_nan=False)), draw(_seconds) + 1,
        mm_reduction_usd=None if uncovered == 0 else Decimal("823"),
        position_reduction_frac=None if uncovered == 0 else draw(st.floats(0, 1)),
        dust_usd=draw(st.sampled_from([Decimal(0), Decimal("0.004")])),
    )  # fmt: skip
    alt = draw(
        st.none()
        | st.builds(
            Alternative,
            st.sampled_from(list(Policy)),
            st.none() | _usd,
            st.sampled_from(["optimal", "failed"]),
            st.text(max_size=20),
            st.none() | _seconds,
        )
    )
    return Plan(
        status="optimal" if uncovered == 0 else "partial", policy=Policy.STRICT, cost_usd=cost,
        credit_usd=credit, uncovered_usd=uncovered, allocations=tuple(steps), calls=(outcome,),
        solve_ms=draw(_seconds), other_policy=None if alt is None else LazyAlternative.ready(alt),
        method=draw(st.sampled_from(["optimiser", "greedy-fallback"])),
        fallback_reason=draw(st.none() | st.text(max_size=30)),
        problem_id=draw(st.from_regex(r"[0-9a-f]{16}", fullmatch=True)),
        solves=draw(st.integers(0, 5)), stages=tuple(draw(st.lists(st.text(max_size=8), max_size=3))),
        config=draw(st.text(max_size=40)), notes=tuple(draw(st.lists(st.text(max_size=40), max_size=3))),
    )  # fmt: skip


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_plans())
def test_any_recorded_plan_reads_back_unchanged_on_sqlite(plan: Plan) -> None:
    engine = sqlite_memory_engine()
    try:
        with Session(engine) as s:
            for venue in ("sim-a", "sim-b"):
                ensure_venue(s, venue, exchange="sim", mode=VenueMode.SIM, at=T0)
            recorded = seed_plan(s, plan)
            s.commit()
        with Session(engine) as s:
            loaded = load_plan(s, CALL, 1)
    finally:
        engine.dispose()
    assert loaded is not None
    assert _without_alternative(loaded.plan) == _without_alternative(plan)
    assert loaded.plan.alternative == plan.alternative
    assert recorded.plan == loaded.plan or plan.other_policy is not None
