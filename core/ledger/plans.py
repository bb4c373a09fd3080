"""Margin calls and their plans in the store: recorded once, read back unchanged (DESIGN §7).

The exactly-once protocol's first half, and which function serves each step:

1. ``record_margin_call``: the monitor records a breach under a new id
   (``core.ledger.keys.new_margin_call_id``). A pool has at most one open call (a partial
   unique index), so a repeated detection, or a second monitor, gets the pool's open call back
   instead of raising a second one. Race-safe: ``INSERT ... ON CONFLICT DO NOTHING``, then read.
2. ``record_plan(session, call_id, plan, version=n)``: persists version *n* of the call's plans
   with its steps and legs, **before anything is sent**. The first writer of a version wins:
   two runs planning the same call at once (the monitor's fast path and the event-triggered
   run) both try version 1, exactly one records its plan, and the other gets that plan back
   (``created=False``) and must execute it, or nothing, never its own. A re-plan after a failed
   step claims ``n + 1``, which needs version ``n`` recorded.
3. ``load_plan``: the recorded plan as a ``core.routing.plan.Plan``, equal to the one recorded
   (its steps, legs, figures, notes); ``RecordedPlan.leg_key`` names each leg's idempotency key
   (``core.ledger.keys.leg_key``), which the transfer row executing it carries.

Why the ledger maps the router's ``Plan`` itself: a plan is what the desk executes and audits,
so its rows must hold every figure the plan showed; the plan types (``core.routing.plan``) are
plain dataclasses that load nothing of the optimiser. A joint plan (several calls solved
together so they do not fight over one source) is recorded once per call, each call with its
own steps; the plan-level figures recorded are that call's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Table, func
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from core.domain import WalletKind
from core.errors import DataError
from core.ledger.coltypes import fit_decimal
from core.ledger.keys import leg_key, plan_id
from core.ledger.tables import LedgerTable, MarginCallRow, PlanLegRow, PlanRow, PlanStepRow
from core.ledger.vocab import CallKind, CallStatus
from core.routing.legs import Leg, LegKind
from core.routing.plan import Allocation, Alternative, CallOutcome, LazyAlternative, Plan
from core.routing.sources import Policy

__all__ = [
    "RecordedPlan",
    "latest_plan_version",
    "load_plan",
    "open_margin_call",
    "plan_rows",
    "record_alternative",
    "record_margin_call",
    "record_plan",
]

_NO_LEG_ASSET = "USD"  # what a step without legs (a PnL offset credited in place) books in


def _insert_unless_conflict(session: Session, table: Table, values: Mapping[str, Any]) -> bool:
    """``INSERT ... ON CONFLICT DO NOTHING`` (any unique key); return whether a row went in.

    Run inside a savepoint so a foreign-key or CHECK failure leaves the caller's transaction
    usable; such failures raise ``IntegrityError`` as usual.
    """
    dialect = session.get_bind().dialect.name
    insert = (pg_insert if dialect == "postgresql" else sqlite_insert)(table).values(**values)
    # RETURNING says whether the row went in (rowcount is -1 under psycopg for this form).
    stmt = insert.on_conflict_do_nothing().returning(*table.primary_key.columns)
    with session.begin_nested():
        inserted = session.execute(stmt).first()
    return inserted is not None


def _values(row: LedgerTable) -> dict[str, Any]:
    """A row's column values for a Core insert (an unassigned surrogate key left out)."""
    table: Table = row.__table__  # type: ignore[attr-defined]
    values = {c.name: getattr(row, c.name) for c in table.columns}
    if "id" in values and values["id"] is None:
        del values["id"]
    return values


# ---------------------------------------------------------------------------- margin calls


def open_margin_call(session: Session, pool_id: str) -> MarginCallRow | None:
    """The pool's open margin call, if any (a pre-funding into the pool is not one)."""
    stmt = select(MarginCallRow).where(
        MarginCallRow.pool_id == pool_id,
        MarginCallRow.status == CallStatus.OPEN.value,
        MarginCallRow.kind == CallKind.MARGIN_CALL.value,
    )
    return session.exec(stmt).first()


def record_margin_call(session: Session, row: MarginCallRow) -> tuple[MarginCallRow, bool]:
    """Record a margin call unless its id, or an open call of its pool, exists: (call, created).

    Returns the call now standing for the breach: ``row`` (created), the call already recorded
    under its id, or the pool's open call, so a repeated detection does not start a second
    cure (DESIGN §9). Race-safe on SQLite and PostgreSQL: concurrent writers get one call.

    Raises
    ------
    DataError
        The call's venue (or margin report) is not recorded.
    """
    try:
        created = _insert_unless_conflict(session, MarginCallRow.__table__, _values(row))  # type: ignore[attr-defined]
    except IntegrityError:
        raise DataError(
            "margin call refers to a venue or margin report that is not recorded",
            call=row.id,
            venue=row.venue_id,
        ) from None
    if created:
        stored = session.get(MarginCallRow, row.id)
        if stored is None:  # pragma: no cover - inserted just above in this transaction
            raise DataError("margin call vanished after insert", call=row.id)
        return stored, True
    existing = session.get(MarginCallRow, row.id)
    if (
        existing is None
        and row.status == CallStatus.OPEN.value
        and row.kind == CallKind.MARGIN_CALL.value
    ):
        existing = open_margin_call(session, row.pool_id)
    if existing is None:  # pragma: no cover - a conflict has a row behind it
        raise DataError("margin call conflicted with no visible row", call=row.id)
    return existing, False


# ---------------------------------------------------------------------------- plans


@dataclass(frozen=True, slots=True)
class RecordedPlan:
    """Version ``version`` of margin call ``margin_call_id``'s plans, as the store holds it."""

    margin_call_id: str
    version: int
    plan_id: str
    created_at: datetime
    plan: Plan

    def leg_key(self, step_no: int, leg_no: int) -> str:
        """The idempotency key of leg ``leg_no`` of step ``step_no`` of this plan."""
        return leg_key(self.margin_call_id, self.version, step_no, leg_no)


def _call_of(plan: Plan, call_id: str, deficit: str | None) -> CallOutcome:
    wanted = deficit if deficit is not None else call_id
    for c in plan.calls:
        if c.call == wanted:
            return c
    if deficit is None and len(plan.calls) == 1:
        return plan.calls[0]
    raise DataError(
        "the plan has no call of that name; pass deficit= to say which of its calls this is",
        margin_call_id=call_id,
        calls=",".join(c.call for c in plan.calls),
    )


def _status_of(c: CallOutcome) -> str:
    if c.uncovered_usd == 0:
        return "optimal"
    return "partial" if c.credit_usd > 0 else "infeasible"


def _money(value: Decimal, field: str, where: str) -> Decimal:
    return fit_decimal(value, field, where=where)


def plan_rows(
    call_id: str, version: int, plan: Plan, *, at: datetime, deficit: str | None = None
) -> tuple[PlanRow, list[PlanStepRow], list[PlanLegRow]]:
    """The rows recording ``plan`` as version ``version`` of margin call ``call_id``.

    ``deficit`` names the plan's call (its ``Deficit`` id) that is this margin call; by default
    the call named ``call_id``, or the plan's only call.

    Raises
    ------
    DataError
        The plan is not executable (a step has no legs), names no such call, or a figure does
        not fit the store (the error names the step and field).
    """
    pid = plan_id(call_id, version)
    outcome = _call_of(plan, call_id, deficit)
    steps = plan.for_call(outcome.call)
    idle = sorted({a.source for a in steps if not a.executable})
    if idle:
        raise DataError(
            "plan is not executable: these steps have no legs", plan=pid, sources=",".join(idle)
        )
    alt = None if plan.alternative_pending else plan.alternative
    plan_row = PlanRow(
        id=pid,
        margin_call_id=call_id,
        version=version,
        created_at=at,
        policy=plan.policy.value,
        solver="greedy" if plan.method == "greedy-fallback" else "highs",
        status=_status_of(outcome),
        deadline_s=outcome.deadline_s,
        deficit_usd=_money(outcome.deficit_usd, "deficit_usd", pid),
        credit_usd=_money(outcome.credit_usd, "credit_usd", pid),
        cost_usd=_money(outcome.cost_usd, "cost_usd", pid),
        uncovered_usd=_money(outcome.uncovered_usd, "uncovered_usd", pid),
        solve_ms=plan.solve_ms,
        alternative_policy=None if alt is None else alt.policy.value,
        alternative_cost_usd=None if alt is None else alt.cost_usd,
        config_repr=plan.config,
        detail=_plan_detail(plan, outcome, alt),
    )
    step_rows: list[PlanStepRow] = []
    leg_rows: list[PlanLegRow] = []
    for step_no, a in enumerate(steps):
        where = f"{pid} step {step_no} ({a.source})"
        step_rows.append(_step_row(pid, step_no, a, where))
        leg_rows += [
            _leg_row(pid, step_no, g, leg_key(call_id, version, step_no, g.leg_no), where)
            for g in a.legs
        ]
    return plan_row, step_rows, leg_rows


def _plan_detail(plan: Plan, c: CallOutcome, alt: Alternative | None) -> dict[str, Any]:
    return {
        "problem_id": plan.problem_id,
        "method": plan.method,
        "fallback_reason": plan.fallback_reason,
        "solves": plan.solves,
        "stages": list(plan.stages),
        "notes": list(plan.notes),
        "call": {
            "deficit_id": c.call,
            "shadow_price_usd_per_usd": c.shadow_price_usd_per_usd,
            "mm_reduction_usd": c.mm_reduction_usd,
            "position_reduction_frac": c.position_reduction_frac,
            "dust_usd": c.dust_usd,
        },
        "alternative": None
        if alt is None
        else {"status": alt.status, "note": alt.note, "solve_ms": alt.solve_ms},
    }


def _step_row(pid: str, step_no: int, a: Allocation, where: str) -> PlanStepRow:
    first, last = (a.legs[0], a.legs[-1]) if a.legs else (None, None)
    return PlanStepRow(
        plan_id=pid,
        step_no=step_no,
        source_id=a.source,
        tier=a.tier,
        mode=a.mode,
        venue_id=a.venue,
        from_wallet=None if first is None else first.from_wallet.value,
        to_venue_id=None if last is None else last.destination_venue,
        to_wallet=None if last is None else last.to_wallet.value,
        asset=_NO_LEG_ASSET if first is None else first.asset,
        amount=_money(a.amount_usd if first is None else first.amount, "amount", where),
        amount_usd=_money(a.amount_usd, "amount_usd", where),
        credit_usd=_money(a.credit_usd, "credit_usd", where),
        cost_usd=_money(a.cost_usd, "cost_usd", where),
        eta_s=a.eta_s,
        requests=a.requests,
        latency_s=a.latency_s,
        binding=a.binding,
        origin_pool=a.origin_pool,
    )


def _leg_row(pid: str, step_no: int, g: Leg, key: str, where: str) -> PlanLegRow:
    where = f"{where} leg {g.leg_no}"
    return PlanLegRow(
        plan_id=pid,
        step_no=step_no,
        leg_no=g.leg_no,
        kind=g.kind.value,
        venue_id=g.venue,
        from_wallet=g.from_wallet.value,
        to_venue_id=g.destination_venue,
        to_wallet=g.to_wallet.value,
        asset=g.asset,
        to_asset=g.to_asset,
        amount=_money(g.amount, "amount", where),
        amount_usd=_money(g.amount_usd, "amount_usd", where),
        price_usd=_money(g.price_usd, "price_usd", where),
        route_id=g.route_id,
        latency_s=g.latency_s,
        idempotency_key=key,
    )


def latest_plan_version(session: Session, call_id: str) -> int | None:
    """The highest plan version recorded for ``call_id`` (``None``: no plan yet)."""
    stmt = select(func.max(PlanRow.version)).where(PlanRow.margin_call_id == call_id)
    return session.exec(stmt).one()


def _check_new_version(session: Session, call_id: str, version: int) -> None:
    """Refuse a new version for a call no longer open, or one that skips a version."""
    call = session.get(MarginCallRow, call_id)
    if call is not None and call.status != CallStatus.OPEN.value:
        raise DataError(
            f"margin call is {call.status}: a closed call gets no new plan",
            margin_call_id=call_id,
            version=version,
        )
    previous = select(PlanRow.id).where(
        PlanRow.margin_call_id == call_id, PlanRow.version == version - 1
    )
    if version > 1 and session.exec(previous).first() is None:
        raise DataError(
            "a re-plan follows the version it replaces, which is not recorded",
            margin_call_id=call_id,
            version=version,
        )


def record_plan(
    session: Session,
    call_id: str,
    plan: Plan,
    *,
    version: int,
    at: datetime,
    deficit: str | None = None,
) -> tuple[RecordedPlan, bool]:
    """Claim version ``version`` of ``call_id``'s plans for ``plan``; return (recorded, created).

    The first writer of a version wins (module docstring): ``created`` is false when another
    plan already holds the version, and the recorded plan returned is *that* one, which is the
    plan to execute. Version 1 is the first plan of a call; ``n + 1`` re-plans after version
    ``n`` (which must be recorded). The plan, its steps and its legs go in together; the caller
    commits before sending anything. The other policy's cost is stored when already computed
    (a lazy comparison is not forced onto the critical path; ``record_alternative`` adds it).

    Raises
    ------
    DataError
        Not executable, no such margin call or one no longer open (cured, escalated,
        cancelled: the call was handled, so the run that finds it so does nothing), a version
        gap, an unrecorded venue, or a figure the store cannot hold; nothing is written. A
        version already recorded is returned whatever the call's status now.
    """
    plan_row, steps, legs = plan_rows(call_id, version, plan, at=at, deficit=deficit)
    try:
        with session.begin_nested():
            created = _insert_unless_conflict(session, PlanRow.__table__, _values(plan_row))  # type: ignore[attr-defined]
            if created:
                _check_new_version(session, call_id, version)
                session.add_all(steps)
                session.flush()  # steps before the legs that reference them
                session.add_all(legs)
                session.flush()
    except IntegrityError as exc:
        raise DataError(
            "plan refers to a margin call or venue that is not recorded",
            margin_call_id=call_id,
            version=version,
            reason=str(exc.orig).strip().splitlines()[0] if exc.orig else "",
        ) from None
    recorded = load_plan(session, call_id, version)
    if recorded is None:  # pragma: no cover - inserted or conflicted just above
        raise DataError("plan vanished after insert", margin_call_id=call_id, version=version)
    return recorded, created


def record_alternative(session: Session, plan_id_: str, alternative: Alternative) -> PlanRow:
    """Add the other policy's cost to a recorded plan (solved after the first leg was sent)."""
    row = session.get(PlanRow, plan_id_)
    if row is None:
        raise DataError("no such plan", plan_id=plan_id_)
    row.alternative_policy = alternative.policy.value
    row.alternative_cost_usd = alternative.cost_usd
    detail = dict(row.detail or {})
    detail["alternative"] = {
        "status": alternative.status,
        "note": alternative.note,
        "solve_ms": alternative.solve_ms,
    }
    row.detail = detail
    session.add(row)
    session.flush()
    return row


# ---------------------------------------------------------------------------- read back


def load_plan(session: Session, call_id: str, version: int | None = None) -> RecordedPlan | None:
    """Version ``version`` (default: the latest) of ``call_id``'s plans, or ``None``.

    Raises
    ------
    DataError
        The plan was recorded before revision 0003 (no legs or step details to rebuild from).
    """
    if version is None:
        version = latest_plan_version(session, call_id)
        if version is None:
            return None
    row = session.exec(
        select(PlanRow).where(PlanRow.margin_call_id == call_id, PlanRow.version == version)
    ).first()
    if row is None:
        return None
    steps = session.exec(
        select(PlanStepRow).where(PlanStepRow.plan_id == row.id).order_by(col(PlanStepRow.step_no))
    ).all()
    legs = session.exec(
        select(PlanLegRow)
        .where(PlanLegRow.plan_id == row.id)
        .order_by(col(PlanLegRow.step_no), col(PlanLegRow.leg_no))
    ).all()
    return RecordedPlan(
        margin_call_id=call_id,
        version=version,
        plan_id=row.id,
        created_at=row.created_at,
        plan=_plan_from_rows(row, steps, legs),
    )


def _plan_from_rows(row: PlanRow, steps: Sequence[PlanStepRow], legs: Sequence[PlanLegRow]) -> Plan:
    detail = row.detail
    if detail is None:
        raise DataError("plan recorded before revision 0003 cannot be rebuilt", plan_id=row.id)
    call = detail["call"]
    by_step: dict[int, list[Leg]] = {}
    for g in legs:
        by_step.setdefault(g.step_no, []).append(_leg_from_row(g))
    allocations = tuple(
        _allocation_from_row(s, call["deficit_id"], tuple(by_step.get(s.step_no, ())))
        for s in steps
    )
    outcome = CallOutcome(
        call=call["deficit_id"],
        deficit_usd=row.deficit_usd,
        credit_usd=row.credit_usd,
        cost_usd=row.cost_usd,
        uncovered_usd=row.uncovered_usd,
        shadow_price_usd_per_usd=call["shadow_price_usd_per_usd"],
        deadline_s=row.deadline_s,
        mm_reduction_usd=_opt_decimal(call["mm_reduction_usd"]),
        position_reduction_frac=call["position_reduction_frac"],
        dust_usd=Decimal(call["dust_usd"]),
    )
    alt_detail = detail.get("alternative")
    other = None
    if alt_detail is not None and row.alternative_policy is not None:
        other = LazyAlternative.ready(
            Alternative(
                policy=Policy(row.alternative_policy),
                cost_usd=row.alternative_cost_usd,
                status=alt_detail["status"],
                note=alt_detail["note"],
                solve_ms=alt_detail["solve_ms"],
            )
        )
    return Plan(
        status=row.status,
        policy=Policy(row.policy),
        cost_usd=row.cost_usd,
        credit_usd=row.credit_usd,
        uncovered_usd=row.uncovered_usd,
        allocations=allocations,
        calls=(outcome,),
        solve_ms=row.solve_ms,
        other_policy=other,
        method=detail["method"],
        fallback_reason=detail["fallback_reason"],
        problem_id=detail["problem_id"],
        solves=detail["solves"],
        stages=tuple(detail["stages"]),
        config=row.config_repr,
        notes=tuple(detail["notes"]),
    )


def _opt_decimal(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


def _allocation_from_row(s: PlanStepRow, call: str, legs: tuple[Leg, ...]) -> Allocation:
    if s.requests is None or s.latency_s is None or s.binding is None:
        raise DataError("plan step recorded before revision 0003", plan_id=s.plan_id)
    return Allocation(
        call=call,
        source=s.source_id,
        tier=s.tier,
        mode=s.mode,
        amount_usd=s.amount_usd,
        credit_usd=s.credit_usd,
        cost_usd=s.cost_usd,
        eta_s=s.eta_s,
        requests=s.requests,
        latency_s=s.latency_s,
        binding=s.binding,
        origin_pool=s.origin_pool,
        venue=s.venue_id,
        legs=legs,
    )


def _leg_from_row(g: PlanLegRow) -> Leg:
    where = f"plan_leg {g.plan_id}/{g.step_no}/{g.leg_no}"
    return Leg(
        leg_no=g.leg_no,
        kind=LegKind(g.kind),
        venue=g.venue_id,
        from_wallet=WalletKind.parse(g.from_wallet, where=where),
        to_wallet=WalletKind.parse(g.to_wallet, where=where),
        asset=g.asset,
        amount=g.amount,
        amount_usd=g.amount_usd,
        price_usd=g.price_usd,
        latency_s=g.latency_s,
        route_id=g.route_id,
        to_venue=None if g.to_venue_id == g.venue_id else g.to_venue_id,
        to_asset=g.to_asset,
    )
