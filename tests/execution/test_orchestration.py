"""One leg at a time (what the margin-call flow's leg task runs), the monitor cycle, and a
call's movements read back: core only, no Prefect, counted at the simulator."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Engine

from core.clock import ManualClock
from core.config import DeskConfig, load_desk
from core.errors import ExecutionError
from core.execution.cure import DeskCure, check_plan_against_desk
from core.execution.executor import Executor, LegReport
from core.execution.margin_call import open_call, plan_call
from core.execution.monitor import monitor_cycle, recently_escalated
from core.execution.orchestration import (
    LegInFlight,
    call_movements,
    call_standing,
    execute_leg,
)
from core.ledger.plans import RecordedPlan
from core.ledger.store import session_scope
from core.ledger.tables import MarginCallRow
from core.routing.legs import Leg
from core.venues.errors import is_retryable
from core.venues.factory import DeskVenues, build_desk_venues
from core.venues.sim.faults import FaultKind

EXAMPLE_DESK = Path(__file__).resolve().parents[2] / "examples" / "desk.toml"
SHOCK = {"BTC": 0.12}  # sim-b.opt at its call level, the other pools well above theirs
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

    def executor(self, **kw: float) -> Executor:
        return Executor(
            self.engine, self.dv.venues, self.clock, owner="ex-1",
            verifier=self.cure.verify, replanner=self.cure.replan,
            plan_check=lambda r: check_plan_against_desk(self.desk, r), **kw,  # type: ignore[arg-type]
        )  # fmt: skip

    def call(self) -> tuple[MarginCallRow, RecordedPlan]:
        cycle = monitor_cycle(self.cure, engine=self.engine)
        (due,) = cycle.due
        call, _ = open_call(self.engine, self.cure, due, clock=self.clock, audit_key=None)
        assert cycle.portfolio is not None
        recorded, _ = plan_call(self.engine, self.cure, call, dict(cycle.reports),
                                cycle.portfolio, clock=self.clock, audit_key=None)  # fmt: skip
        return call, recorded

    def transfers(self, venue: str = "sim-b") -> int:
        return len(self.dv.engines[venue].transfers)


@pytest.fixture
def rig(desk: DeskConfig, store: Engine) -> Iterator[Rig]:
    clock = ManualClock(T0_NS)
    with build_desk_venues(desk, clock) as dv:
        dv.warm_up()
        for e in dv.engines.values():
            e.prices.apply_scenario(SHOCK)
        yield Rig(desk, clock, dv, store, DeskCure(desk, dv.venues, clock, engine=store))


def test_monitor_cycle_with_shocked_prices_finds_the_one_pool_at_its_call_level(rig: Rig) -> None:
    cycle = monitor_cycle(rig.cure, engine=rig.engine)
    assert cycle.acted
    assert cycle.refused is None
    assert [d.pool_id for d in cycle.due] == ["sim-b.opt"]
    marks = {m.pool_id: (m.desk_level, m.due) for m in cycle.marks}
    assert marks == {
        "sim-a.pm": ("ok", False), "sim-b.um": ("ok", False), "sim-b.opt": ("call", True),
    }  # fmt: skip
    opt = next(m for m in cycle.marks if m.pool_id == "sim-b.opt")
    assert opt.ratio is not None
    assert Decimal("1.45") < opt.ratio < Decimal("1.46")
    assert opt.call_level == Decimal("1.6")


def test_monitor_cycle_with_a_stale_price_refuses_to_act_and_says_why(rig: Rig) -> None:
    rig.dv.engines["sim-a"].prices.freeze("BTC", rig.clock.timestamp_ns())
    rig.clock.advance(rig.desk.desk.max_price_age_s + 1)
    cycle = monitor_cycle(rig.cure, engine=rig.engine)
    assert not cycle.acted
    assert cycle.due == ()
    assert cycle.marks == ()
    assert cycle.refused is not None
    assert cycle.refused.startswith("prices not trusted, nothing acted on:")
    assert "BTC" in cycle.refused


def test_monitor_cycle_holds_back_a_pool_escalated_within_the_cooldown(rig: Rig) -> None:
    call, _ = rig.call()
    with session_scope(rig.engine) as s:
        row = s.get(MarginCallRow, call.id)
        assert row is not None
        row.status, row.closed_at = "escalated", rig.clock.now()
    since = rig.clock.now() - timedelta(seconds=1)
    assert recently_escalated(rig.engine, ["sim-b.opt", "sim-a.pm"], since=since) == {"sim-b.opt"}
    held = monitor_cycle(rig.cure, engine=rig.engine, escalation_cooldown_s=600)
    assert (held.due, held.held) == ((), ("sim-b.opt",))
    rig.clock.advance(601)
    later = monitor_cycle(rig.cure, engine=rig.engine, escalation_cooldown_s=600)
    assert [d.pool_id for d in later.due] == ["sim-b.opt"]
    assert later.held == ()


def test_execute_leg_runs_one_leg_once_and_again_only_reports_it(rig: Rig) -> None:
    call, recorded = rig.call()
    ex = rig.executor()
    first = execute_leg(ex, call.id, 1, 0, 0)
    assert (first.state.value, first.attempts, first.key) == (
        "confirmed",
        1,
        recorded.leg_key(0, 0),
    )
    again = execute_leg(ex, call.id, 1, 0, 0)
    assert (again.state.value, again.attempts) == ("confirmed", 1)
    assert ex.sends == 1
    assert rig.transfers() == 1
    (m,) = call_movements(rig.engine, call.id)
    assert (m.leg, m.origin, m.destination, m.state, m.attempts) == (
        "v1/0/0", "sim-b/spot", "sim-b/options", "confirmed", 1,
    )  # fmt: skip
    assert m.mode == "transfer"
    assert m.latency_ms is not None
    assert m.asset == "USDT"


def test_execute_leg_left_in_flight_raises_a_retryable_error_and_the_retry_finds_it(
    rig: Rig,
) -> None:
    call, _ = rig.call()
    rig.dv.engines["sim-b"].faults.inject(FaultKind.LATE_APPLY, TRANSFER, method="POST", delay_s=60)
    ex = rig.executor(lookup_timeout_s=30.0)
    with pytest.raises(LegInFlight) as caught:
        execute_leg(ex, call.id, 1, 0, 0, retry_after_s=2.0)
    assert caught.value.report.state.value == "unknown"
    assert caught.value.retry_after_s == 2.0
    assert is_retryable(caught.value, is_write=True)
    states = []
    for _ in range(3):  # what a task's retries do: look it up again, never resend
        try:
            states.append(execute_leg(ex, call.id, 1, 0, 0).state.value)
            break
        except LegInFlight as exc:
            states.append(exc.report.state.value)
    assert states == ["sent", "confirmed"]
    assert ex.sends == 1
    assert rig.transfers() == 1


def test_execute_leg_of_no_such_leg_is_refused_before_anything_is_sent(rig: Rig) -> None:
    call, _ = rig.call()
    ex = rig.executor()
    with pytest.raises(ExecutionError, match="has no step 0 leg 7; nothing sent"):
        execute_leg(ex, call.id, 1, 0, 7)
    with pytest.raises(ExecutionError, match="no plan version 2"):
        execute_leg(ex, call.id, 2, 0, 0)
    assert ex.sends == 0
    assert rig.transfers() == 0


def test_execute_with_a_leg_runner_runs_every_leg_through_it_and_cures(rig: Rig) -> None:
    call, _ = rig.call()
    ex = rig.executor()
    seen: list[tuple[int, int, int]] = []

    def run_leg(recorded: RecordedPlan, step_no: int, leg: Leg) -> LegReport | None:
        seen.append((recorded.version, step_no, leg.leg_no))
        return ex.execute_leg(recorded.margin_call_id, recorded.version, step_no, leg.leg_no)

    report = ex.execute(call.id, run_leg=run_leg)
    assert report.call_status == "cured"
    assert seen == [(1, 0, 0)]
    standing = call_standing(rig.engine, call.id)
    assert standing is not None
    assert standing.status == "cured"
    assert call_standing(rig.engine, "mc-none") is None
    assert rig.transfers() == 1
