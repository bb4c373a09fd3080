"""The executor on the example desk's simulated venues and the real store (SQLite and PostgreSQL).

Every test counts what reached the venue at the simulator (``engine.transfers``,
``engine.margin_orders``): a leg is sent exactly once, whatever fails.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlmodel import Session, select

from core.clock import ManualClock
from core.config import DeskConfig, load_desk
from core.domain import WalletKind
from core.errors import ExecutionError
from core.execution.cure import DeskCure, check_plan_against_desk
from core.execution.executor import Executor, LegReport
from core.execution.margin_call import detect, open_call, plan_call
from core.ledger.audit_log import verify_audit_chain
from core.ledger.plans import RecordedPlan
from core.ledger.store import session_scope
from core.ledger.tables import AuditEventRow, MarginCallRow, TransferRow
from core.ledger.transfers import intent_for_leg, record_transfer_intent, record_transfer_result
from core.routing.legs import Leg
from core.venues.factory import DeskVenues, build_desk_venues, sim_venue
from core.venues.sim.faults import FaultKind

EXAMPLE_DESK = Path(__file__).resolve().parents[2] / "examples" / "desk.toml"
SHOCK = {"ETH": -0.26, "BTC": 0.08}
TRANSFER = "/sapi/v1/asset/transfer"
T0_NS = 1_795_737_600_000_000_000  # 2026-11-27 00:00 UTC


@pytest.fixture(scope="module")
def desk() -> DeskConfig:
    return load_desk(EXAMPLE_DESK)


@dataclass
class Rig:
    desk: DeskConfig
    clock: ManualClock
    dv: DeskVenues
    engine: Engine
    cure: DeskCure
    lines: list[str]

    def executor(self, owner: str = "ex-1", **kw: object) -> Executor:
        return Executor(
            self.engine, self.dv.venues, self.clock, owner=owner,
            verifier=self.cure.verify, replanner=self.cure.replan,
            plan_check=lambda r: check_plan_against_desk(self.desk, r),
            on_step=self.lines.append, **kw,  # type: ignore[arg-type]
        )  # fmt: skip

    def call(self, pool: str) -> tuple[MarginCallRow, RecordedPlan]:
        reports, pf, due = detect(self.cure)
        d = next(x for x in due if x.pool_id == pool)
        call, _ = open_call(self.engine, self.cure, d, clock=self.clock, audit_key=None)
        recorded, _ = plan_call(
            self.engine, self.cure, call, reports, pf, clock=self.clock, audit_key=None
        )
        return call, recorded

    def transfers(self, venue: str) -> int:
        return len(self.dv.engines[venue].transfers)

    def rows(self) -> list[TransferRow]:
        with Session(self.engine) as s:
            return list(s.exec(select(TransferRow).order_by(TransferRow.id)).all())  # type: ignore[arg-type]


@pytest.fixture
def rig(desk: DeskConfig, store: Engine) -> Iterator[Rig]:
    clock = ManualClock(T0_NS)
    with build_desk_venues(desk, clock) as dv:
        dv.warm_up()
        for e in dv.engines.values():
            e.prices.apply_scenario(SHOCK)
        yield Rig(desk, clock, dv, store, DeskCure(desk, dv.venues, clock), [])


def _chain_ok(engine: Engine) -> None:
    with Session(engine) as s:
        assert verify_audit_chain(s).ok


def _kinds(engine: Engine) -> list[str]:
    with Session(engine) as s:
        return [r.kind for r in s.exec(select(AuditEventRow).order_by(AuditEventRow.seq)).all()]  # type: ignore[arg-type]


def test_execute_cures_the_options_pool_with_one_transfer_and_audits_it(rig: Rig) -> None:
    call, recorded = rig.call("sim-b.opt")
    report = rig.executor().execute(call.id)
    assert report.call_status == "cured"
    assert report.restored
    assert report.versions == (1,)
    assert [leg.state.value for leg in report.legs] == ["confirmed"]
    assert rig.transfers("sim-b") == 1
    (row,) = rig.rows()
    assert row.idempotency_key == recorded.leg_key(0, 0)
    assert row.attempts == 1
    assert row.venue_transfer_id == "100000001"
    assert row.latency_ms is not None
    assert row.amount == Decimal("562912.03")
    assert _kinds(rig.engine) == [
        "MarginCallRaised", "PlanMade", "LegSent", "LegConfirmed", "RatioRestored",
    ]  # fmt: skip
    _chain_ok(rig.engine)


def test_execute_again_sends_nothing_and_refuses_a_cured_call(rig: Rig) -> None:
    call, _ = rig.call("sim-b.opt")
    rig.executor().execute(call.id)
    with pytest.raises(ExecutionError, match="is cured: its plan is not executed; nothing sent"):
        rig.executor("ex-2").execute(call.id)
    assert rig.transfers("sim-b") == 1


@pytest.mark.parametrize(
    "fault", [FaultKind.TIMEOUT_APPLIED, FaultKind.GARBLED_AFTER_APPLY, FaultKind.NO_ID_AFTER_APPLY]
)
def test_unknown_outcome_applied_is_resolved_by_lookup_without_a_resend(
    rig: Rig, fault: FaultKind
) -> None:
    call, _ = rig.call("sim-b.opt")
    rig.dv.engines["sim-b"].faults.inject(fault, TRANSFER, method="POST")
    report = rig.executor().execute(call.id)
    assert report.call_status == "cured"
    assert rig.transfers("sim-b") == 1  # applied once, never resent
    (row,) = rig.rows()
    assert (row.status, row.attempts) == ("confirmed", 1)
    assert "LegUnknown" in _kinds(rig.engine)
    assert "LegResolved" in _kinds(rig.engine)
    _chain_ok(rig.engine)


def test_timeout_not_applied_waits_for_the_window_then_resends_under_the_same_key(
    rig: Rig,
) -> None:
    call, recorded = rig.call("sim-b.opt")
    rig.dv.engines["sim-b"].faults.inject(FaultKind.TIMEOUT_NOT_APPLIED, TRANSFER, method="POST")
    t0 = rig.clock.timestamp_ns()
    report = rig.executor().execute(call.id)
    assert report.call_status == "cured"
    assert rig.transfers("sim-b") == 1
    (row,) = rig.rows()
    assert row.idempotency_key == recorded.leg_key(0, 0)
    assert (row.status, row.attempts) == ("confirmed", 2)
    assert rig.clock.timestamp_ns() - t0 >= 120 * 10**9  # proven absent only after the window
    assert any("proven absent" in line for line in rig.lines)


def test_late_apply_inside_the_window_is_found_and_not_resent(rig: Rig) -> None:
    call, _ = rig.call("sim-b.opt")
    rig.dv.engines["sim-b"].faults.inject(FaultKind.LATE_APPLY, TRANSFER, method="POST", delay_s=30)
    report = rig.executor().execute(call.id)
    assert report.call_status == "cured"
    assert rig.transfers("sim-b") == 1
    assert rig.rows()[0].attempts == 1


def test_halted_wallet_pair_fails_the_leg_and_the_replan_routes_around_it(rig: Rig) -> None:
    call, _ = rig.call("sim-a.pm")
    rig.dv.engines["sim-a"].faults.halt_pair(WalletKind.SPOT, WalletKind.MARGIN)
    report = rig.executor().execute(call.id)
    assert report.versions == (1, 2)
    states = [(leg.plan_version, leg.source_id, leg.state.value) for leg in report.legs]
    assert states == [
        (1, "sim-a.pm:a.margin.doge-usdt", "confirmed"),
        (1, "sim-a.pm:a.spot-margin.usdt", "failed"),
        (2, "sim-a.pm:a.funding-margin.usdt", "confirmed"),
    ]
    assert report.call_status == "cured"
    assert "PlanMade" in _kinds(rig.engine)[4:]  # the re-plan is audited
    _chain_ok(rig.engine)


@dataclass(frozen=True)
class _Deny:
    reason: str = "not pre-authorised"
    detail: str = "route over its rolling cap"


def test_refused_leg_is_never_sent_and_is_replanned_without_its_source(rig: Rig) -> None:
    call, _ = rig.call("sim-b.opt")

    def gate(s: Session, leg: Leg, now: object, key: str) -> _Deny | None:
        return _Deny() if leg.route_id == "b.spot-options.usdt" else None

    report = rig.executor(gate=gate).execute(call.id)
    refused = [leg for leg in report.legs if leg.state.value == "refused"]
    assert [leg.note for leg in refused] == ["not pre-authorised: route over its rolling cap"]
    assert rig.transfers("sim-b") == sum(
        1 for leg in report.legs if leg.state.value == "confirmed" and leg.venue_id == "sim-b"
    )
    assert all(leg.source_id != "sim-b.opt:b.spot-options.usdt" for leg in report.legs[1:])
    assert "LegRefused" in _kinds(rig.engine)


def test_insufficient_funds_fails_the_leg_without_a_resend(rig: Rig) -> None:
    call, _ = rig.call("sim-b.opt")
    rig.dv.engines["sim-b"].faults.inject(FaultKind.INSUFFICIENT_FUNDS, TRANSFER, method="POST")
    report = rig.executor(max_replans=0).execute(call.id)
    assert [leg.state.value for leg in report.legs] == ["failed"]
    assert report.legs[0].error_kind == "InsufficientFunds"
    assert rig.transfers("sim-b") == 0
    assert report.verification is not None
    assert not report.restored
    assert report.call_status == "escalated"


def test_rate_limit_429_is_waited_out_and_sent_once(rig: Rig) -> None:
    call, _ = rig.call("sim-b.opt")
    rig.dv.engines["sim-b"].faults.inject(
        FaultKind.RATE_LIMIT_429, TRANSFER, method="POST", retry_after_s=3
    )
    report = rig.executor().execute(call.id)
    assert report.call_status == "cured"
    # prices move while it waits: a top-up may follow, but every leg is sent once
    assert rig.transfers("sim-b") == len(report.legs)
    assert any("rate limited, retry after 3 s" in line for line in rig.lines)


# -- restart ----------------------------------------------------------------------------------


def _intent_and_attempt(rig: Rig, recorded: RecordedPlan) -> str:
    """What a crashed executor leaves after committing its attempt: pending, attempts=1."""
    intent = intent_for_leg(recorded, 0, 0)
    at = rig.clock.now()
    with session_scope(rig.engine) as s:
        record_transfer_intent(s, intent, at=at)
        record_transfer_result(s, intent.key, _pending(), at=at, sent_at=at)
    return intent.key


def _pending():  # type: ignore[no-untyped-def]
    from core.ledger.vocab import TransferState

    return TransferState.PENDING


def test_resume_after_a_crash_before_the_send_waits_out_the_window_then_sends_once(
    rig: Rig,
) -> None:
    _call, recorded = rig.call("sim-b.opt")
    key = _intent_and_attempt(rig, recorded)
    (report,) = rig.executor("ex-restarted").resume()
    assert report.call_status == "cured"
    assert rig.transfers("sim-b") == 1
    row = next(r for r in rig.rows() if r.idempotency_key == key)
    assert (row.status, row.attempts) == ("confirmed", 2)


def test_resume_after_a_crash_after_the_send_finds_it_and_never_resends(rig: Rig) -> None:
    _call, recorded = rig.call("sim-b.opt")
    key = _intent_and_attempt(rig, recorded)
    leg = recorded.plan.allocations[0].legs[0]
    rig.dv.venues["sim-b"].transfer(  # the request that left before the crash
        _asset(leg.asset), leg.amount, leg.from_wallet, leg.to_wallet, key, ts_deadline_ns=None
    )
    rig.clock.advance(1)
    # a restarted process: new adapters (empty journals) on the same simulated exchanges
    fresh = {name: sim_venue(e, rig.clock)[0] for name, e in rig.dv.engines.items()}
    for v in fresh.values():
        v.warm_up()
    ex = Executor(rig.engine, fresh, rig.clock, owner="ex-restarted",
                  verifier=rig.cure.verify, replanner=rig.cure.replan)  # fmt: skip
    (report,) = ex.resume()
    assert report.call_status == "cured"
    assert rig.transfers("sim-b") == len(report.legs)  # a top-up may follow; none is resent
    row = next(r for r in rig.rows() if r.idempotency_key == key)
    assert (row.status, row.attempts) == ("confirmed", 1)


def _asset(code: str):  # type: ignore[no-untyped-def]
    from core.domain import Asset

    return Asset(code)


def test_a_leg_leased_by_a_live_peer_is_left_alone(rig: Rig) -> None:
    call, recorded = rig.call("sim-b.opt")
    intent = intent_for_leg(recorded, 0, 0)
    from core.ledger.transfers import acquire_leg_lease

    with session_scope(rig.engine) as s:
        record_transfer_intent(s, intent, at=rig.clock.now())
        assert acquire_leg_lease(s, intent.key, owner="peer", at=rig.clock.now(), lease_s=60)
    report = rig.executor().execute(call.id)
    assert [leg.note for leg in report.legs] == ["held by another executor"]
    assert rig.transfers("sim-b") == 0
    rig.clock.advance(61)  # the peer died: its lease expired; attempts=0, so never sent
    report = rig.executor().execute(call.id)
    assert report.call_status == "cured"
    assert rig.transfers("sim-b") == 1


# -- bad input: a clear error naming what, nothing sent ---------------------------------------


def _sent_nothing(rig: Rig) -> None:
    assert rig.transfers("sim-a") == rig.transfers("sim-b") == 0
    assert rig.rows() == []


def test_tampered_leg_amount_is_refused_before_anything_is_sent(rig: Rig) -> None:
    call, recorded = rig.call("sim-b.opt")
    with rig.engine.begin() as conn:
        conn.execute(text("UPDATE plan_leg SET amount = 9000000 WHERE plan_id = :p"),
                     {"p": recorded.plan_id})  # fmt: skip
    with pytest.raises(
        ExecutionError, match=r"step 0 leg 0: amount 9000000 differs from its step.*tampered row"
    ):
        rig.executor().execute(call.id)
    _sent_nothing(rig)


def test_zero_leg_is_refused_before_anything_is_sent(rig: Rig) -> None:
    call, recorded = rig.call("sim-b.opt")
    with rig.engine.begin() as conn:
        conn.execute(text("UPDATE plan_leg SET amount = 0 WHERE plan_id = :p"),
                     {"p": recorded.plan_id})  # fmt: skip
    with pytest.raises(ExecutionError, match=r"amount must be > 0 \(got 0"):
        rig.executor().execute(call.id)
    _sent_nothing(rig)


def test_tampered_leg_key_is_refused(rig: Rig) -> None:
    call, recorded = rig.call("sim-b.opt")
    with rig.engine.begin() as conn:
        conn.execute(text("UPDATE plan_leg SET idempotency_key = :k WHERE plan_id = :p"),
                     {"p": recorded.plan_id, "k": "0" * 32})  # fmt: skip
    with pytest.raises(ExecutionError, match="stored key is not the leg's key"):
        rig.executor().execute(call.id)
    _sent_nothing(rig)


def test_leg_whose_route_left_the_config_is_refused(rig: Rig, desk: DeskConfig) -> None:
    call, _ = rig.call("sim-b.opt")
    smaller = desk.model_copy(
        update={"routes": tuple(r for r in desk.routes if r.id != "b.spot-options.usdt")}
    )
    ex = Executor(rig.engine, rig.dv.venues, rig.clock, owner="ex-1",
                  plan_check=lambda r: check_plan_against_desk(smaller, r))  # fmt: skip
    with pytest.raises(
        ExecutionError, match=r"route 'b\.spot-options\.usdt' is no longer in the desk"
    ):
        ex.execute(call.id)
    _sent_nothing(rig)


def test_unknown_call_or_plan_version_is_refused(rig: Rig) -> None:
    call, _ = rig.call("sim-b.opt")
    with pytest.raises(ExecutionError, match="no margin call 'mc-nope'"):
        rig.executor().execute("mc-nope")
    with pytest.raises(ExecutionError, match="no plan version 7"):
        rig.executor().execute(call.id, 7)
    _sent_nothing(rig)


def test_leg_report_is_final_only_in_final_states() -> None:
    from core.ledger.vocab import TransferState

    base = {"key": "k", "plan_version": 1, "step_no": 0, "leg_no": 0, "source_id": "s", "kind": "internal",
                "venue_id": "v", "asset": "USDT", "amount": Decimal(1)}  # fmt: skip
    assert LegReport(**base, state=TransferState.CONFIRMED).final  # type: ignore[arg-type]
    assert not LegReport(**base, state=TransferState.UNKNOWN).final  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("btc_in_flight", "status", "versions"),
    [
        (0.084, "cured", (1,)),  # lands at 2.0192: under the buffered aim 2.04, over target 2.0
        (0.088, "cured", (1, 2)),  # lands at 1.9986: under target, the rest is re-planned
    ],
)
def test_price_move_in_flight_is_absorbed_by_the_buffer_down_to_the_pool_target(
    rig: Rig, btc_in_flight: float, status: str, versions: tuple[int, ...]
) -> None:
    # The plan aims at target x (1 + buffer) = 2.04; BTC moving against the short calls while
    # the transfer lands must not turn a cure into an escalation while the pool is at target.
    call, _ = rig.call("sim-b.opt")

    def verify_after_a_move(c: MarginCallRow):  # type: ignore[no-untyped-def]
        for e in rig.dv.engines.values():
            e.prices.apply_scenario({"BTC": btc_in_flight})
        return rig.cure.verify(c)

    ex = Executor(
        rig.engine, rig.dv.venues, rig.clock, owner="ex-1", verifier=verify_after_a_move,
        replanner=rig.cure.replan, plan_check=lambda r: check_plan_against_desk(rig.desk, r),
        on_step=rig.lines.append,
    )  # fmt: skip
    report = ex.execute(call.id)
    assert (report.call_status, report.versions) == (status, versions)
    assert _kinds(rig.engine)[-1] == "RatioRestored"
    if versions == (1,):
        assert any("(at or above the pool's target 2.0000) -> cured" in x for x in rig.lines)
    _chain_ok(rig.engine)
