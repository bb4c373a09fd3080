"""The ``reconcile`` flow: snapshot every venue, compare with the ledger, report drifts.

Orchestration only: the comparison is ``core.ledger.reconcile.reconcile`` (snapshot, expect,
compare, record drifts, anchor the audit head), run whole in one transaction as ``pmr
reconcile`` runs it. The flow adds a table artifact of the drifts (``reconcile-drifts``) and one
``pmr.reconcile.drift`` event per drift (each is over its asset's tolerance by construction).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact

from flows import events
from flows.artifacts import drift_rows
from flows.runtime import DeskRuntime
from flows.tasks import open_desk, read_retry_policy

if TYPE_CHECKING:
    from core.ledger.reconcile import ReconReport

__all__ = ["reconcile_desk", "reconcile_flow"]


@task(name="reconcile", **read_retry_policy())
def reconcile_desk(rt: DeskRuntime) -> ReconReport:
    """Snapshot, compare, record and anchor in one transaction (all or nothing)."""
    from sqlmodel import Session

    from core.ledger.reconcile import reconcile

    rt.catch_up()
    with Session(rt.engine) as session:
        report = reconcile(
            session, rt.desk, rt.venues.venues, now=rt.clock.now(), audit_key=rt.audit_key
        )
        session.commit()
    return report


@flow(name="reconcile", log_prints=False)
def reconcile_flow(desk_file: str) -> dict[str, Any]:
    """Reconcile every venue of the desk with the ledger.

    Returns
    -------
    dict
        ``ok`` (no drift), ``drifts``, ``in_flight`` (legs not judged), ``compared`` (cells),
        ``baseline`` (venues seen for the first time), ``snapshots`` (venue → snapshot id),
        ``anchor`` (``seq:hash`` of the audit head anchored).
    """
    logger = get_run_logger()
    rt = open_desk(desk_file)
    report = reconcile_desk(rt)
    rows = drift_rows(report)
    create_table_artifact(
        rows
        or [{"venue": v, "result": "agrees with the ledger"} for v in sorted(report.snapshot_ids)],
        key="reconcile-drifts",
        description=f"{len(report.drifts)} drift(s); {report.compared} balances compared; "
        f"{len(report.in_flight)} leg(s) in flight; audit head anchored at "
        f"{report.anchor_seq}:{report.anchor_hash[:16]}",
    )
    for d in report.drifts:
        snapshot = report.snapshot_ids[d.venue]
        events.emit(
            events.RECONCILE_DRIFT,
            events.venue_resource(d.venue),
            {
                "desk_file": rt.desk_file, "venue": d.venue, "wallet": d.wallet.value,
                "asset": d.asset, "expected": d.expected, "reported": d.reported,
                "drift": d.drift, "cause": d.cause.value, "snapshot_id": snapshot,
            },
            id_parts=(snapshot, d.wallet.value, d.asset),
        )  # fmt: skip
        logger.warning(
            "drift on %s/%s %s: %s (%s)", d.venue, d.wallet.value, d.asset, d.drift, d.cause.value
        )
    if not report.drifts:
        logger.info("venues and store agree (%d balances compared)", report.compared)
    return {
        "ok": report.ok,
        "drifts": len(report.drifts),
        "in_flight": len(report.in_flight),
        "compared": report.compared,
        "baseline": list(report.baseline),
        "snapshots": dict(report.snapshot_ids),
        "anchor": f"{report.anchor_seq}:{report.anchor_hash}",
    }
