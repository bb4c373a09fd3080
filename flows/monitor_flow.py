"""The ``monitor`` flow: re-price every pool from the venues on a short period; act on breaches.

Orchestration only. Each cycle is ``core.execution.monitor.monitor_cycle`` (read every venue,
margin every pool, refuse stale prices, the calls due less pools escalated recently). For each
call due the flow:

1. records the margin call once (``core.execution.margin_call.open_call``: a repeated detection
   gets the pool's open call back, never a second one);
2. emits ``pmr.margin.call`` whose event id is derived from the call id (``flows.events``): the
   durable second path (the deployment triggered on it) starts at most one run per call;
3. runs ``margin_call_flow`` in this process at once (the **fast path**, a subflow on the very
   venues just read). Whichever of the two comes second finds the call handled and does nothing.

A cycle on stale prices acts on nothing and says so (a warning, and a markdown artifact on the
first cycle of each stale spell). Cycles are plain calls, not tasks: a monitor that runs all day
every 15 s must not flood the Prefect server with task runs (DESIGN §9: the server ingests ~25
task runs/s on SQLite). The last cycle's marks end up in a table artifact.
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from core.errors import ConfigError
from core.execution.margin_call import open_call
from core.execution.monitor import MonitorCycle, monitor_cycle
from flows import events
from flows.artifacts import monitor_rows, num
from flows.margin_call_flow import margin_call_flow
from flows.runtime import DeskRuntime
from flows.tasks import open_desk

__all__ = ["monitor_flow", "raise_calls"]


def raise_calls(
    rt: DeskRuntime, cycle: MonitorCycle, *, fast_path: bool = True
) -> list[dict[str, Any]]:
    """Record, announce and (fast path) cure every call ``cycle`` found due; one dict each."""
    logger = get_run_logger()
    out = []
    for due in cycle.due:
        pool = rt.desk.pool(due.pool_id)
        call, created = open_call(rt.engine, rt.cure, due, clock=rt.clock, audit_key=rt.audit_key)
        events.emit(
            events.MARGIN_CALL,
            events.pool_resource(pool.venue, pool.id),
            {
                "desk_file": rt.desk_file, "margin_call_id": call.id, "pool_id": pool.id,
                "venue": pool.venue, "ratio": due.ratio, "call_level": due.call_ratio,
                "target_ratio": due.target_ratio, "deficit_usd": round(due.deficit_usd, 2),
                "desk_level": due.desk_level.value,
            },
            id_parts=(call.id,),
        )  # fmt: skip
        entry: dict[str, Any] = {"margin_call_id": call.id, "pool_id": pool.id, "created": created}
        if not created:
            logger.info("pool %s: margin call %s still open: being handled", pool.id, call.id)
            entry["status"] = call.status
        elif fast_path:
            logger.warning(
                "pool %s: ratio %s at or below its call level %s: margin call %s, cure started",
                pool.id, num(due.ratio, 4), num(due.call_ratio), call.id,
            )  # fmt: skip
            try:
                result = margin_call_flow(
                    desk_file=rt.desk_file, margin_call_id=call.id, trigger="monitor"
                )
                entry["status"] = result["status"]
            except Exception as exc:  # the call stays open for the triggered run
                logger.error("margin call %s: fast path failed: %s", call.id, exc)
                entry["status"] = "open"
                entry["error"] = str(exc)
        else:
            entry["status"] = call.status
        out.append(entry)
    return out


@flow(name="monitor", log_prints=False)
def monitor_flow(
    desk_file: str,
    cycles: int = 1,
    period_s: float = 15.0,
    duration_s: float | None = None,
    escalation_cooldown_s: float = 900.0,
    fast_path: bool = True,
) -> dict[str, Any]:
    """Re-price every pool each ``period_s``; record, announce and cure the margin calls due.

    Parameters
    ----------
    desk_file
        The desk's TOML file.
    cycles
        How many cycles to run (0: no limit, then ``duration_s`` must bound the run).
    period_s
        Seconds from one cycle's start to the next (wall clock).
    duration_s
        Stop after this many seconds (wall clock); ``None``: ``cycles`` bounds the run.
    escalation_cooldown_s
        A pool whose call was escalated is left to a person this long.
    fast_path
        Start the margin-call flow in-process at once (else the deployment triggered by
        ``pmr.margin.call`` does the work).

    Returns
    -------
    dict
        ``cycles``, ``refused`` (cycles on stale prices), ``calls`` (one dict per call: id,
        pool, created, status), ``last`` (the last cycle's pools: ratio, level, action).
    """
    logger = get_run_logger()
    if cycles < 0 or period_s < 0 or (duration_s is not None and duration_s <= 0):
        raise ConfigError("cycles, period_s must be >= 0 and duration_s > 0")
    if cycles == 0 and duration_s is None:
        raise ConfigError("an unbounded monitor needs duration_s (or cycles > 0)")
    rt = open_desk(desk_file)
    start = time.monotonic()
    n = refused = 0
    stale_before = False
    calls: list[dict[str, Any]] = []
    last: MonitorCycle | None = None
    while True:
        t0 = time.monotonic()
        rt.catch_up()
        cycle = monitor_cycle(
            rt.cure, engine=rt.engine, escalation_cooldown_s=escalation_cooldown_s
        )
        n += 1
        if cycle.refused is not None:
            refused += 1
            logger.warning("cycle %d: %s", n, cycle.refused)
            if not stale_before:
                when = cycle.at.strftime("%Y-%m-%d %H:%M:%S")
                create_markdown_artifact(
                    f"# Monitor refused stale prices\n\nCycle {n} at {when} UTC: "
                    f"{cycle.refused}\n\nNo margin call is raised or cured on these prices; "
                    "the monitor acts again once every venue's prices are fresh.\n",
                    key="monitor-stale-prices",
                )
            stale_before = True
        else:
            stale_before = False
            last = cycle
            if cycle.held:
                logger.warning("cycle %d: held back (escalated recently): %s", n,
                               ", ".join(cycle.held))  # fmt: skip
            calls += raise_calls(rt, cycle, fast_path=fast_path)
        elapsed = time.monotonic() - start
        if (cycles and n >= cycles) or (duration_s is not None and elapsed >= duration_s):
            break
        time.sleep(max(0.0, period_s - (time.monotonic() - t0)))
    rows = [] if last is None else monitor_rows(last)
    if rows:
        create_table_artifact(
            rows, key="monitor-pools", description=f"Pools at the last fresh cycle ({n} run)"
        )
    return {"cycles": n, "refused": refused, "calls": calls, "last": rows}
