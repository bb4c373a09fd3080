"""Detect → plan for one desk on its venues: the two steps before the executor.

``detect`` margins every pool on what the venues hold now (``DeskCure.reports``) and returns
the pools at or below their ``call`` level (``core.margin.levels.margin_calls_due``);
``open_call`` records the call (a repeated detection gets the pool's open call back) with its
``MarginCallRaised`` event; ``plan_call`` records plan version 1 of it (or returns the plan
already recorded: a second run executes that one, never its own) with its ``PlanMade`` event.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal

from sqlalchemy import Engine

from core.clock import Clock
from core.domain import Portfolio
from core.execution.cure import DeskCure
from core.execution.events import MarginCallRaised, PlanMade, derive_event_id, record_event
from core.execution.gate import router_usage
from core.execution.planning import plan_inputs
from core.ledger.chain import AuditKey
from core.ledger.keys import new_margin_call_id
from core.ledger.plans import RecordedPlan, load_plan, record_margin_call, record_plan
from core.ledger.store import ensure_venue, session_scope
from core.ledger.tables import MarginCallRow
from core.ledger.vocab import CallStatus, PlanStatus, VenueMode
from core.margin.levels import MarginCallDue, margin_calls_due
from core.margin.report import MarginReport

__all__ = ["detect", "detect_by_pool", "open_call", "plan_call"]


def detect_by_pool(
    cure: DeskCure,
) -> tuple[dict[str, MarginReport], dict[str, Portfolio], tuple[MarginCallDue, ...]]:
    """Every pool's margin from the venues now, per pool the portfolio to plan its call on
    (``DeskCure.read``), and the calls due: plan each call on ``portfolios[call.pool_id]``."""
    reports, portfolios = cure.read()
    return reports, portfolios, margin_calls_due(cure.desk, reports)


def detect(cure: DeskCure) -> tuple[dict[str, MarginReport], Portfolio, tuple[MarginCallDue, ...]]:
    """Every pool's margin from the venues now, the desk's first pool's portfolio, and the
    calls due. That portfolio is the desk-wide one only while the venues agree on every
    price: to plan a call of any pool, use :func:`detect_by_pool`."""
    reports, portfolios, due = detect_by_pool(cure)
    return reports, portfolios[cure.desk.pools[0].id], due


def open_call(
    engine: Engine, cure: DeskCure, due: MarginCallDue, *, clock: Clock, audit_key: AuditKey | None
) -> tuple[MarginCallRow, bool]:
    """Record the margin call for ``due`` (or get the pool's open one); (call, created)."""
    desk = cure.desk
    pool = next(p for p in desk.pools if p.id == due.pool_id)
    at = clock.now()
    row = MarginCallRow(
        id=new_margin_call_id(clock), pool_id=due.pool_id, venue_id=pool.venue,
        status=CallStatus.OPEN.value, raised_at=at,
        ratio_at_raise=None if due.ratio is None else round(due.ratio, 9),
        target_ratio=due.target_ratio, deficit_usd=round(due.deficit_usd, 6),
    )  # fmt: skip
    with session_scope(engine) as s:
        for v in desk.venues:
            mode = VenueMode.SIM if v.kind == "sim" else VenueMode.LIVE
            ensure_venue(s, v.name, exchange=v.kind, mode=mode, at=at)
        call, created = record_margin_call(s, row)
        if created:
            ts = clock.timestamp_ns()
            record_event(s, MarginCallRaised(
                event_id=derive_event_id(MarginCallRaised, call.id), ts_event=ts, ts_init=ts,
                margin_call_id=call.id, pool_id=call.pool_id, venue_id=call.venue_id,
                ratio=None if due.ratio is None else max(due.ratio, Decimal(0)),
                target_ratio=due.target_ratio, deficit_usd=max(due.deficit_usd, Decimal(0)),
            ), key=audit_key)  # fmt: skip
        s.expunge(call)
    return call, created


def plan_call(
    engine: Engine,
    cure: DeskCure,
    call: MarginCallRow,
    reports: dict[str, MarginReport],
    portfolio: Portfolio,
    *,
    clock: Clock,
    audit_key: AuditKey | None,
    deadline_s: float = 60.0,
    now: Callable[[], datetime] | None = None,
) -> tuple[RecordedPlan, bool]:
    """Plan version 1 of ``call`` on ``portfolio`` (or the latest already recorded); (plan,
    created). The rolling 24 h pre-authorisation already used comes from the store (per route,
    group and source venue: ``core.execution.gate.router_usage``)."""
    at = (now or clock.now)()
    with session_scope(engine) as s:
        existing = load_plan(s, call.id)
        if existing is not None:
            return existing, False
        used = router_usage(s, cure.desk, now=at)
    t0 = time.perf_counter()
    planned = plan_inputs(
        cure.desk, portfolio, [call.pool_id], deadline_s=deadline_s, reports=reports,
        used_24h_usd=used, call_ids={call.pool_id: call.id},
    )  # fmt: skip
    plan = cure.router.route(planned.input, notes=planned.notes)
    solve_ms = (time.perf_counter() - t0) * 1e3
    with session_scope(engine) as s:
        recorded, created = record_plan(s, call.id, plan, version=1, at=at)
        if created:
            ts = clock.timestamp_ns()
            o = recorded.plan.calls[0]
            status = (
                "optimal"
                if o.uncovered_usd == 0
                else ("partial" if o.credit_usd > 0 else "infeasible")
            )
            record_event(s, PlanMade(
                event_id=derive_event_id(PlanMade, call.id, 1), ts_event=ts, ts_init=ts,
                margin_call_id=call.id, plan_id=recorded.plan_id, plan_version=1,
                latency_ms=Decimal(str(round(solve_ms, 3))), policy=plan.policy.value,
                status=PlanStatus(status), deficit_usd=o.deficit_usd, credit_usd=o.credit_usd,
                cost_usd=o.cost_usd, uncovered_usd=o.uncovered_usd,
                n_steps=len(recorded.plan.allocations),
            ), key=audit_key)  # fmt: skip
    return recorded, created
