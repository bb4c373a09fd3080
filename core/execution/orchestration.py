"""What an orchestrator needs beside the executor: one leg as a unit of retry, a call's
standing, and its movements read back for a report.

Why here and not in ``flows/``: the margin-call flow makes each leg a Prefect task with a
retry policy, but *when* a leg may be run again is the executor's rule, not Prefect's. So:

* :func:`execute_leg` runs one leg of a recorded plan (``Executor.execute_leg``: intent, gate,
  claim, tokens, send, record; an attempt on record is looked up before anything is resent)
  and raises :class:`LegInFlight` when the executor left the leg sent-but-not-credited or
  unknown with its lookup window still open. ``LegInFlight`` is a ``LookupWindowOpen``, so
  ``core.venues.errors.is_retryable(exc, is_write=True)`` is true for it: running the leg again
  later only looks it up again (never a blind resend). An ``OutcomeUnknown`` never reaches the
  caller: the executor looks the key up itself. A refusal, a halted route or insufficient funds
  is a final ``failed`` / ``refused`` leg, re-planned by the executor, not an error;
* :func:`call_standing` is the call as the store holds it: a call no longer ``open`` is handled,
  so a second runner (the event-triggered deployment after the monitor's in-process fast path)
  does nothing;
* :func:`call_movements` lists every movement of a call (origin, destination, mode, state,
  attempts, latency) for the transfer artifact.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import Engine
from sqlmodel import col, select

from core.errors import LookupWindowOpen
from core.execution.executor import Executor, LegReport
from core.ledger.store import session_scope
from core.ledger.tables import MarginCallRow, TransferRow

__all__ = ["LegInFlight", "Movement", "call_movements", "call_standing", "execute_leg"]


class LegInFlight(LookupWindowOpen):
    """The executor left a leg in flight (sent and not credited yet, or unknown with its lookup
    window open): run it again after ``retry_after_s``; the next run looks it up first.

    ``report`` is the leg as the executor left it.
    """

    def __init__(self, report: LegReport, *, retry_after_s: float) -> None:
        self.report = report
        super().__init__(
            f"leg v{report.plan_version}/{report.step_no}/{report.leg_no} is "
            f"{report.state.value}: {report.note or 'in flight'}; look it up again later",
            retry_after_s=retry_after_s,
            key=report.key,
            venue=report.venue_id,
        )


def execute_leg(
    executor: Executor,
    call_id: str,
    version: int,
    step_no: int,
    leg_no: int,
    *,
    retry_after_s: float = 5.0,
) -> LegReport:
    """Run one leg of plan ``version`` of ``call_id``; its final report.

    Raises
    ------
    LegInFlight
        The leg is not final yet (see the module doc); retryable, and safe to retry.
    ExecutionError
        No such call, plan, step or leg, or a tampered plan row (not retryable).
    """
    report = executor.execute_leg(call_id, version, step_no, leg_no)
    if not report.final:
        raise LegInFlight(report, retry_after_s=retry_after_s)
    return report


def call_standing(engine: Engine, call_id: str) -> MarginCallRow | None:
    """The margin call as the store holds it now (detached), or ``None``."""
    with session_scope(engine) as s:
        row = s.get(MarginCallRow, call_id)
        if row is not None:
            s.expunge(row)
        return row


@dataclass(frozen=True, slots=True)
class Movement:
    """One movement of a call as the ledger recorded it."""

    leg: str  # v<version>/<step>/<leg>
    source_id: str
    mode: str
    origin: str  # venue/wallet it left
    destination: str  # venue/wallet it went to
    asset: str
    amount: Decimal
    to_asset: str | None
    amount_usd: Decimal | None
    state: str
    attempts: int
    latency_ms: float | None
    venue_transfer_id: str | None
    error: str


def call_movements(engine: Engine, call_id: str) -> list[Movement]:
    """Every movement of ``call_id``, in plan order (version, step, leg)."""
    with session_scope(engine) as s:
        rows = s.exec(
            select(TransferRow)
            .where(TransferRow.margin_call_id == call_id)
            .order_by(
                col(TransferRow.plan_version), col(TransferRow.step_no), col(TransferRow.leg_no)
            )
        ).all()
        return [
            Movement(
                leg=f"v{r.plan_version}/{r.step_no}/{r.leg_no}",
                source_id=r.source_id or "",
                mode=r.mode,
                origin=f"{r.venue_id}/{r.from_wallet}",
                destination=f"{r.to_venue_id}/{r.to_wallet}",
                asset=r.asset,
                amount=r.amount,
                to_asset=r.to_asset,
                amount_usd=r.amount_usd,
                state=r.status,
                attempts=r.attempts,
                latency_ms=r.latency_ms,
                venue_transfer_id=r.venue_transfer_id,
                error=r.error_message or "",
            )
            for r in rows
        ]
