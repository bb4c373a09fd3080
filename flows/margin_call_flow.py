"""The ``margin-call`` flow: load state → plan → persist → one task per leg → verify → event.

Orchestration only. Detection and planning are ``core.execution.margin_call``; the run is
``core.execution.executor.Executor`` with the desk's gate, verifier and re-planner
(``flows.runtime.DeskRuntime.executor``); the flow makes each leg a Prefect task
(:func:`execute_leg_task`, ``cache_policy=NO_CACHE``, exponential backoff with jitter,
``retry_condition_fn`` from the venue error taxonomy) and reports:

* a **plan** table artifact per plan version (origin, destination, route, amount, USD);
* a **transfers** table artifact: every movement with its origin, mode, state, attempts and
  latency, as the store recorded it;
* ``pmr.margin.cured`` or ``pmr.margin.escalated`` (``flows.events``).

It runs three ways: started in-process by the monitor at once (the fast path, with
``margin_call_id``), by the deployment triggered on ``pmr.margin.call`` (the durable second
path, with ``margin_call_id`` from the event's payload), or by hand (``pool_id``: detect, then
open the call if the pool is at or below its call level). **A call already handled (cured,
escalated, cancelled) is a no-op** returning its status, so the fast path and the trigger never
both move collateral; two runners on an open call share its legs through the store's keys,
claims and leases (exactly once comes from the store, never from Prefect).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.concurrency.sync import concurrency

from core.errors import ConfigError, ExecutionError
from core.execution.executor import Exclusions, ExecutionReport, Executor, LegReport, Verification
from core.execution.monitor import MonitorCycle, monitor_cycle
from core.execution.orchestration import (
    LegInFlight,
    call_movements,
    call_standing,
    execute_leg,
)
from core.ledger.vocab import CallKind
from flows import events
from flows.artifacts import movement_rows, plan_rows
from flows.runtime import DeskRuntime
from flows.tasks import LEG_WRITES, open_desk, read_retry_policy, write_retry_policy

if TYPE_CHECKING:
    from core.ledger.plans import RecordedPlan
    from core.ledger.tables import MarginCallRow
    from core.routing.legs import Leg
    from core.routing.plan import Plan

__all__ = [
    "execute_leg_task",
    "load_state",
    "margin_call_flow",
    "plan_margin_call",
    "replan_task",
    "verify_task",
]

#: Where a run came from (the ``trigger`` parameter): the monitor's fast path, the deployment
#: triggered by ``pmr.margin.call``, or a person.
TRIGGERS = ("monitor", "event", "manual")


@task(name="load-state", **read_retry_policy())
def load_state(rt: DeskRuntime) -> MonitorCycle:
    """Read every venue and margin every pool (stale prices refused: ``refused`` says why)."""
    return monitor_cycle(rt.cure, engine=rt.engine)


@task(name="plan", cache_policy=NO_CACHE)
def plan_margin_call(
    rt: DeskRuntime, call: MarginCallRow, state: MonitorCycle
) -> tuple[RecordedPlan, bool]:
    """Plan version 1 of ``call`` on the state just read, and record it (or get the recorded
    one: a second runner executes that plan, never its own)."""
    from core.execution.margin_call import plan_call

    # The cycle's ``portfolio`` is desk-wide only while every venue quotes the same prices;
    # when they differ (live venues always do) it is the first pool's venue alone, and a call
    # on another venue would be planned on the wrong book. Plan on the call's own pool's view
    # from the state just read, as the re-plan does (no second read of every venue).
    portfolio = state.portfolio_for(call.pool_id)
    if portfolio is None:  # pragma: no cover - the flow stops on a refused state first
        raise ConfigError("no state to plan on (prices refused)", call=call.id)
    return plan_call(
        rt.engine, rt.cure, call, dict(state.reports), portfolio,
        clock=rt.clock, audit_key=rt.audit_key,
    )  # fmt: skip


@task(
    name="leg",
    task_run_name="leg {call_id} v{version}/{step_no}/{leg_no}",
    **write_retry_policy(),
)
def execute_leg_task(
    executor: Executor, call_id: str, version: int, step_no: int, leg_no: int
) -> LegReport:
    """One leg, exactly once (``core.execution.orchestration.execute_leg``), holding a slot of
    the ``pmr-leg-writes`` global concurrency limit while it runs."""
    with concurrency(LEG_WRITES, occupy=1, strict=True):
        return execute_leg(executor, call_id, version, step_no, leg_no)


@task(name="verify", **read_retry_policy())
def verify_task(rt: DeskRuntime, call: MarginCallRow) -> Verification:
    """Re-price the call's pool from the venues after the last leg."""
    return rt.cure.verify(call)


@task(name="re-plan", **read_retry_policy())
def replan_task(
    rt: DeskRuntime, call: MarginCallRow, previous: RecordedPlan, excluded: Exclusions
) -> Plan | None:
    """Plan what is still missing without the sources and routes that failed."""
    return rt.cure.replan(call, previous, excluded)


def _run_leg(executor: Executor, recorded: RecordedPlan, step_no: int, leg: Leg) -> LegReport:
    """The executor's per-leg hook: the leg as a task; a leg still in flight once the task's
    retries are spent is reported as it stands (the call stays open for ``pmr execute
    --resume`` or the next runner)."""
    try:
        return execute_leg_task(
            executor, recorded.margin_call_id, recorded.version, step_no, leg.leg_no
        )
    except LegInFlight as exc:
        return exc.report


def _standing(call: MarginCallRow, rt: DeskRuntime, trigger: str, note: str) -> dict[str, Any]:
    return {
        "margin_call_id": call.id,
        "pool_id": call.pool_id,
        "status": call.status,
        "trigger": trigger,
        "note": note,
        "desk_file": rt.desk_file,
    }


def _plan_artifact(recorded: RecordedPlan, trigger: str) -> None:
    o = recorded.plan.calls[0] if recorded.plan.calls else None
    summary = (
        ""
        if o is None
        else f": deficit {o.deficit_usd:,.2f} USD, credited {o.credit_usd:,.2f} USD, "
        f"cost {o.cost_usd:,.2f} USD, uncovered {o.uncovered_usd:,.2f} USD"
    )
    create_table_artifact(
        plan_rows(recorded.plan, recorded.version),
        key="margin-call-plan",
        description=f"Plan v{recorded.version} of {recorded.margin_call_id} "
        f"({recorded.plan.status}, started by {trigger}){summary}",
    )


def _verdict(
    rt: DeskRuntime, call: MarginCallRow, report: ExecutionReport, trigger: str
) -> dict[str, Any]:
    """Transfers artifact, cured/escalated event, and the flow's result."""
    logger = get_run_logger()
    movements = call_movements(rt.engine, call.id)
    create_table_artifact(
        movement_rows(movements),
        key="margin-call-transfers",
        description=f"Movements of {call.id} (pool {call.pool_id}, started by {trigger}): "
        f"status {report.call_status}",
    )
    pool = rt.desk.pool(call.pool_id)
    v = report.verification
    ratio = None if v is None else v.ratio
    result = {
        **_standing(call, rt, trigger, ""),
        "status": report.call_status,
        "ratio": None if ratio is None else float(ratio),
        "target_ratio": float(call.target_ratio),
        "plan_versions": list(report.versions),
        "legs": len(report.legs),
        "transfers_confirmed": sum(1 for m in movements if m.state == "confirmed"),
    }
    common = {
        "desk_file": rt.desk_file,
        "margin_call_id": call.id,
        "pool_id": call.pool_id,
        "venue": pool.venue,
        "ratio": ratio,
        "target_ratio": call.target_ratio,
        "trigger": trigger,
    }
    resource = events.pool_resource(pool.venue, call.pool_id)
    if report.call_status == "cured":
        versions = ",".join(f"v{n}" for n in report.versions)
        events.emit(
            events.MARGIN_CURED, resource,
            {**common, "plan_versions": versions, "legs": len(report.legs)},
            id_parts=(call.id,),
        )  # fmt: skip
        logger.info("margin call %s cured: ratio restored (%s)", call.id, versions)
    elif report.call_status == "escalated":
        uncovered = None if v is None else v.deficit_usd
        reason = "ratio below target after the last leg; nothing left to plan"
        events.emit(
            events.MARGIN_ESCALATED, resource,
            {**common, "uncovered_usd": uncovered, "reason": reason},
            id_parts=(call.id,),
        )  # fmt: skip
        logger.warning("margin call %s escalated: %s", call.id, reason)
    else:
        result["note"] = "legs in flight: `pmr execute --resume` (or the next run) finishes them"
        logger.warning("margin call %s left open: %s", call.id, result["note"])
    return result


@flow(name="margin-call", log_prints=False)
def margin_call_flow(
    desk_file: str,
    margin_call_id: str | None = None,
    pool_id: str | None = None,
    trigger: str = "manual",
) -> dict[str, Any]:
    """Cure one margin call: load state, plan, persist, execute leg by leg, verify, report.

    Parameters
    ----------
    desk_file
        The desk's TOML file.
    margin_call_id
        The call to cure (as ``pmr.margin.call`` names it). A call no longer open is a no-op.
    pool_id
        Without ``margin_call_id``: detect on this pool, and open its call if it is due.
    trigger
        Who started the run: ``monitor`` (fast path), ``event`` (the deployment) or ``manual``.

    Returns
    -------
    dict
        ``margin_call_id``, ``pool_id``, ``status`` (``cured``, ``escalated``, ``open``, or
        ``no-call`` / ``refused``), ``trigger``, ``note``, and after a run ``ratio``,
        ``target_ratio``, ``plan_versions``, ``legs``, ``transfers_confirmed``.
    """
    logger = get_run_logger()
    if margin_call_id is None and pool_id is None:
        raise ConfigError("margin-call needs margin_call_id or pool_id")
    if trigger not in TRIGGERS:
        raise ConfigError(f"trigger must be one of {', '.join(TRIGGERS)}", trigger=trigger)
    rt = open_desk(desk_file)
    call = None
    if margin_call_id is not None:
        call = call_standing(rt.engine, margin_call_id)
        if call is None:
            raise ConfigError("no such margin call in the store", margin_call_id=margin_call_id)
        if call.kind != CallKind.MARGIN_CALL.value:  # a pre-funding run
            raise ConfigError(
                "a pre-funding, not a margin call: `pmr execute --plan ID` runs it",
                margin_call_id=margin_call_id,
            )
        if call.status != "open":
            note = f"already {call.status}: nothing to do"
            logger.info("margin call %s is %s: nothing to do", call.id, call.status)
            return _standing(call, rt, trigger, note)
        pool_id = call.pool_id
    assert pool_id is not None
    if pool_id not in {p.id for p in rt.desk.pools}:
        raise ConfigError("unknown pool", pool_id=pool_id)
    state = load_state(rt)
    if state.refused is not None:
        logger.warning("margin call on %s not planned: %s", pool_id, state.refused)
        create_markdown_artifact(
            f"# Margin call not planned\n\n{state.refused}\n", key="margin-call-refused"
        )
        return {"margin_call_id": margin_call_id, "pool_id": pool_id, "status": "refused",
                "trigger": trigger, "note": state.refused, "desk_file": rt.desk_file}  # fmt: skip
    if call is None:
        from core.execution.margin_call import open_call

        due = next((d for d in state.due if d.pool_id == pool_id), None)
        if due is None:
            ratio = state.reports[pool_id].ratio
            note = f"ratio {ratio} above its call level: no margin call"
            logger.info("pool %s: %s", pool_id, note)
            return {"margin_call_id": None, "pool_id": pool_id, "status": "no-call",
                    "trigger": trigger, "note": note, "desk_file": rt.desk_file}  # fmt: skip
        call, _ = open_call(rt.engine, rt.cure, due, clock=rt.clock, audit_key=rt.audit_key)
    recorded, created = plan_margin_call(rt, call, state)
    logger.info(
        "margin call %s: plan v%s %s (%d step(s))",
        call.id, recorded.version, "made" if created else "on record",
        len(recorded.plan.allocations),
    )  # fmt: skip
    _plan_artifact(recorded, trigger)
    ex = rt.executor(on_step=logger.info)
    ex.verifier = lambda c: verify_task(rt, c)
    ex.replanner = lambda c, prev, excl: replan_task(rt, c, prev, excl)
    try:
        report = ex.execute(
            call.id, run_leg=lambda rec, step_no, leg: _run_leg(ex, rec, step_no, leg)
        )
    except ExecutionError:
        now = call_standing(rt.engine, call.id)
        if now is not None and now.status != "open":  # another runner gave the verdict first
            logger.info("margin call %s is %s: handled by another run", call.id, now.status)
            return _standing(now, rt, trigger, f"already {now.status}: nothing to do")
        raise
    for version in report.versions[1:]:
        from core.ledger.plans import load_plan
        from core.ledger.store import session_scope

        with session_scope(rt.engine) as s:
            later = load_plan(s, call.id, version)
        if later is not None:
            _plan_artifact(later, trigger)
    return _verdict(rt, call, report, trigger)
