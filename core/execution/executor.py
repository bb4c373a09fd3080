"""The executor: run a recorded plan leg by leg, exactly once, whatever fails (DESIGN §7).

Per leg, in this order (each step committed before the next one starts):

1. **intent**: the ``pending`` row under the leg's key (``core.ledger.keys.leg_key``),
   committed; the same key again returns the existing row, so a retried run never creates a
   second movement;
2. **gate** (pre-authorisation, ``LegGate``) on the committed intent, so a peer's concurrent
   leg counts against the same rolling caps: a refused leg moves ``pending → refused`` with
   the gate's reason and a ``LegRefused`` event, and is never sent;
3. **claim**: the leg's lease (owner + expiry). On PostgreSQL the row is first locked with
   ``SELECT … FOR UPDATE SKIP LOCKED``, so two executors never both work on it; a leg leased by
   a live peer is skipped, an expired lease (a crashed peer) is taken over;
4. **rate-limit tokens** for the leg's venue and API family (Binance weights, with a deadline;
   ``RateGate``: per process, and across processes through the store);
5. **send** with the key: the attempt (``attempts`` + 1, ``sent_at``) and ``LegSent`` are
   committed *before* the request leaves, so a crash mid-flight leaves a row that says "look
   me up";
6. **record** what the venue said: ``sent`` / ``confirmed`` / ``failed`` / ``unknown`` with the
   venue's id, the amount it booked and the latency, and the matching audit event.

A leg with an attempt on record and no final state is **looked up before anything else**
(``core.execution.legops.lookup_leg``): ``pending`` → wait for the credit, ``not_found_yet`` →
wait for the lookup window to close, ``ambiguous`` → stays ``unknown`` for a person; only
``not_found`` (proven absence after the window) allows a resend, under the **same key**. A leg
whose key is in a final state is never sent again.

Within a step, a leg runs only once the one before it is ``confirmed`` (withdraw then deposit,
convert then transfer). A leg that fails or is refused blocks its step; once every leg of the
plan is final, the remaining deficit is re-planned (``Replanner``) as the next version of the
same call without that source, and executed. At the end the pool is re-priced from the venues
(``Verifier``) and the call recorded ``cured`` (``RatioRestored``) or ``escalated``
(``CallEscalated``). :func:`resume` finishes every non-final leg in the store after a restart.

A **pre-funding** (a call row of kind ``prefund``, ``core.execution.prefund``) runs the same
legs through the same steps, with two differences: it is never re-planned (a refused or failed
move is reported, not replaced: another source would be a recommendation nobody made) and never
verified (it has no ratio to restore, so no ``RatioRestored``/``CallEscalated``). Once every
leg is final it is closed ``applied`` (every leg confirmed) or ``partial`` with a
``PrefundApplied`` event saying how much moved and how much did not.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

from sqlalchemy import Engine, text
from sqlmodel import Session, col, select

from core.clock import Clock
from core.domain import Asset
from core.errors import DataError, ExecutionError, OutcomeUnknown, RateLimited, VenueError
from core.execution.events import (
    AuditedEvent,
    CallEscalated,
    LegConfirmed,
    LegFailed,
    LegOutcome,
    LegRefused,
    LegResolved,
    LegSent,
    LegUnknown,
    PlanMade,
    PrefundApplied,
    RatioRestored,
    derive_event_id,
    record_event,
)
from core.execution.legops import (
    SUPPORTED_KINDS,
    LegAnswer,
    WithdrawTarget,
    forget_leg,
    lookup_leg,
    send_leg,
)
from core.execution.states import ledger_state_of
from core.ledger.chain import AuditKey
from core.ledger.claims import StoreTransferClaims
from core.ledger.keys import leg_key
from core.ledger.plans import RecordedPlan, load_plan, record_plan
from core.ledger.store import session_scope
from core.ledger.tables import MarginCallRow, PlanLegRow, PlanRow, PlanStepRow, TransferRow
from core.ledger.transfers import (
    TransferIntent,
    acquire_leg_lease,
    get_transfer,
    intent_for_leg,
    record_refused_leg,
    record_transfer_intent,
    record_transfer_result,
    release_leg_lease,
)
from core.ledger.vocab import CallKind, CallStatus, PlanStatus, TransferMode, TransferState
from core.routing.legs import Leg, LegKind
from core.routing.plan import Plan
from core.venues.base import Venue
from core.venues.capabilities import BINANCE_LEG_ENDPOINTS
from core.venues.errors import ClockSkewRejected
from core.venues.ratelimit import budget_family, request_weight
from core.venues.reports import VenueTransferStatus

__all__ = [
    "Exclusions",
    "ExecutionReport",
    "Executor",
    "LegGate",
    "LegReport",
    "LegRunner",
    "RateGate",
    "Refusal",
    "Replanner",
    "Verification",
    "Verifier",
    "check_plan_rows",
    "claim_leg",
]

_S = TransferState
_V = VenueTransferStatus


class Refusal(Protocol):
    """What a gate says when it denies a leg (``core.execution.preauth.Refusal`` fits)."""

    @property
    def reason(self) -> str: ...

    @property
    def detail(self) -> str: ...


#: ``gate(session, leg, now, key)``: ``None`` lets the leg through; a refusal denies it. The key
#: is the leg's own, so a gate summing rolling use can leave the leg's own row out.
LegGate = Callable[[Session, Leg, datetime, str], Refusal | None]


#: ``run_leg(recorded, step_no, leg)``: run one leg of a recorded plan and report it (``None``: not
#: started). The default is the executor's own :meth:`Executor.run_leg`; an orchestrator passes
#: its own to make each leg a unit of retry and observability (a Prefect task per leg) that
#: still calls :meth:`Executor.execute_leg` underneath.
LegRunner = Callable[["RecordedPlan", int, Leg], "LegReport | None"]


class RateGate(Protocol):
    """Rate-limit tokens for one write (``core.execution.ratelimits.RateGate`` implements it)."""

    def acquire(
        self, venue: str, family: str, weight: int, *, ts_deadline_ns: int | None
    ) -> float: ...

    def note_ban(self, venue: str, family: str, retry_after_s: float) -> None: ...


@dataclass(frozen=True, slots=True)
class Verification:
    """The pool re-priced from the venues after the last leg.

    ``target_ratio`` is what the plan aimed at: the pool's ``target`` × (1 + ``buffer_frac``).
    The buffer is there to absorb price moves while the cure is in flight (DESIGN §3.3), so the
    call counts as restored at the pool's own ``target`` (``restored_at``): on live prices a cure
    that lands a hair under its buffered aim is a cure, not an escalation. Without
    ``restored_at`` the buffered target itself is the bar.
    """

    pool_id: str
    ratio: Decimal | None  # None: no maintenance margin left
    target_ratio: Decimal
    deficit_usd: Decimal
    restored_at: Decimal | None = None

    @property
    def bar(self) -> Decimal:
        """The ratio at or above which the call counts as restored."""
        return self.target_ratio if self.restored_at is None else self.restored_at

    @property
    def restored(self) -> bool:
        return self.ratio is None or self.ratio >= self.bar


class Verifier(Protocol):
    def __call__(self, call: MarginCallRow) -> Verification: ...


class Replanner(Protocol):
    """The next plan for ``call`` without the sources and routes that failed or were refused
    (``None``: nothing left to plan, or nothing left to cover)."""

    def __call__(
        self, call: MarginCallRow, previous: RecordedPlan, excluded: Exclusions
    ) -> Plan | None: ...


@dataclass(frozen=True, slots=True)
class LegReport:
    """One leg as the executor left it."""

    key: str
    plan_version: int
    step_no: int
    leg_no: int
    source_id: str
    kind: str
    venue_id: str
    asset: str
    amount: Decimal
    state: TransferState
    attempts: int = 0
    venue_transfer_id: str | None = None
    latency_ms: float | None = None
    note: str = ""
    error_kind: str = ""

    @property
    def final(self) -> bool:
        return self.state.is_final


@dataclass(frozen=True, slots=True)
class ExecutionReport:
    """What one run of the executor did for one margin call."""

    margin_call_id: str
    versions: tuple[int, ...]
    legs: tuple[LegReport, ...]
    verification: Verification | None
    call_status: str

    @property
    def restored(self) -> bool | None:
        return None if self.verification is None else self.verification.restored

    @property
    def all_final(self) -> bool:
        return all(leg.final for leg in self.legs)


# ------------------------------------------------------------------------------ plan checks


def check_plan_rows(session: Session, recorded: RecordedPlan) -> None:
    """Refuse a plan whose stored rows were edited or are not executable; nothing is sent.

    Checks every leg: a positive amount and USD value, a kind the executor runs, the key stored
    on the row equal to ``leg_key(call, version, step, leg)``, and each step's booked amount
    equal to its first leg's (the plan writes both from the same figure).

    Raises
    ------
    ExecutionError
        Naming the plan, step and leg and what is wrong with it.
    """
    pid = recorded.plan_id
    legs = session.exec(select(PlanLegRow).where(PlanLegRow.plan_id == pid)).all()
    steps = {
        s.step_no: s for s in session.exec(select(PlanStepRow).where(PlanStepRow.plan_id == pid))
    }
    for g in legs:
        where = f"plan {pid} step {g.step_no} leg {g.leg_no}"
        if g.amount <= 0 or g.amount_usd < 0:
            raise ExecutionError(
                f"{where}: amount must be > 0 (got {g.amount} {g.asset}); nothing sent"
            )
        expected = leg_key(recorded.margin_call_id, recorded.version, g.step_no, g.leg_no)
        if g.idempotency_key != expected:
            raise ExecutionError(
                f"{where}: stored key is not the leg's key (tampered row); nothing sent"
            )
        if LegKind(g.kind) not in SUPPORTED_KINDS:
            raise ExecutionError(f"{where}: a {g.kind} leg is not executable yet; nothing sent")
        step = steps.get(g.step_no)
        if g.leg_no == 0 and step is not None and step.amount != g.amount:
            raise ExecutionError(
                f"{where}: amount {g.amount} differs from its step's {step.amount} "
                "(tampered row); nothing sent"
            )
    plan = session.get(PlanRow, pid)
    if plan is None or plan.margin_call_id != recorded.margin_call_id:
        raise ExecutionError(f"plan {pid}: its row names another margin call; nothing sent")


# ------------------------------------------------------------------------------ claiming


def claim_leg(session: Session, key: str, *, owner: str, at: datetime, lease_s: float) -> bool:
    """Claim leg ``key`` for ``owner``: lock its row (PostgreSQL: ``FOR UPDATE SKIP LOCKED``,
    so a peer claiming it right now is skipped, never waited for), then take its lease.

    True when ``owner`` now holds the lease; the caller commits, then acts. SQLite serialises
    writers, so the conditional UPDATE of ``acquire_leg_lease`` is the whole claim there.
    """
    if session.get_bind().dialect.name == "postgresql":
        locked = session.execute(
            text("SELECT id FROM transfer WHERE idempotency_key = :k FOR UPDATE SKIP LOCKED"),
            {"k": key},
        ).first()
        if locked is None:
            return False
    return acquire_leg_lease(session, key, owner=owner, at=at, lease_s=lease_s)


def claimable_keys(session: Session, *, owner: str, at: datetime, limit: int = 100) -> list[str]:
    """Keys of non-final legs nobody live holds, oldest first; on PostgreSQL the rows are
    locked ``FOR UPDATE SKIP LOCKED`` for the caller's transaction (what a peer has locked is
    skipped)."""
    open_states = [s.value for s in TransferState if not s.is_final]
    stmt = (
        select(TransferRow.idempotency_key)
        .where(col(TransferRow.status).in_(open_states))
        .where(
            (col(TransferRow.owner).is_(None))
            | (TransferRow.owner == owner)
            | (col(TransferRow.lease_expires_at) <= at)
        )
        .order_by(col(TransferRow.created_at), col(TransferRow.id))
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    return list(session.exec(stmt).all())


# ------------------------------------------------------------------------------ executor


@dataclass
class _Blocked:
    sources: set[str] = field(default_factory=set)
    routes: set[str] = field(default_factory=set)
    pairs: set[tuple[str, str, str]] = field(default_factory=set)  # (venue, from, to) halted
    reasons: list[str] = field(default_factory=list)

    def add(self, other: _Blocked) -> None:
        self.sources |= other.sources
        self.routes |= other.routes
        self.pairs |= other.pairs
        self.reasons += other.reasons


@dataclass(frozen=True, slots=True)
class Exclusions:
    """What a re-plan leaves out: sources, desk routes or swaps, and wallet pairs
    ``(venue, from_wallet, to_wallet)`` a venue refused to move between (a halt)."""

    sources: frozenset[str] = frozenset()
    routes: frozenset[str] = frozenset()
    pairs: frozenset[tuple[str, str, str]] = frozenset()


class Executor:
    """Runs recorded plans against ``venues`` with the store ``engine`` as the only memory.

    Parameters
    ----------
    engine
        The ledger store (SQLite or PostgreSQL).
    venues
        Venue objects by name, warmed up.
    clock
        Injected clock (waits go through ``clock.sleep``).
    owner
        This executor's name in leases (unique per process: host, pid, a random suffix).
    gate
        Pre-authorisation (``None``: every leg passes; a desk's run always passes one).
    audit_key
        Key of the audit chain (``None``: the offline demo's unkeyed chain).
    rate
        Shared rate-limit tokens (``None``: the venue adapters' own limiters only).
    replanner, verifier
        Re-planning after a failed or refused leg, and the final re-pricing (``None``: skipped).
    plan_check
        Extra check of a plan before anything of it is sent (the desk's routes still exist...).
    on_step
        Told one line per thing that happens (the CLI prints them).
    lease_s, confirm_timeout_s, lookup_timeout_s, send_deadline_s, poll_s
        Lease length; how long to wait for a sent leg's credit and for an unknown leg's lookup
        to settle before leaving it for :meth:`resume`; how long a send may wait for rate
        tokens; the polling interval.
    max_resends, max_replans
        Resends of a leg proven absent; re-plans of one call per run.
    absence_reads, absence_gap_s
        A leg is proven absent only when the lookup finds nothing after its window closed
        ``absence_reads`` times in a row, ``absence_gap_s`` apart (a lagging or empty history
        page must not turn into a duplicate).
    """

    def __init__(
        self,
        engine: Engine,
        venues: Mapping[str, Venue],
        clock: Clock,
        *,
        owner: str,
        gate: LegGate | None = None,
        audit_key: AuditKey | None = None,
        rate: RateGate | None = None,
        replanner: Replanner | None = None,
        verifier: Verifier | None = None,
        plan_check: Callable[[RecordedPlan], None] | None = None,
        withdraw_target: WithdrawTarget | None = None,
        on_step: Callable[[str], None] | None = None,
        lease_s: float = 60.0,
        confirm_timeout_s: float = 30.0,
        lookup_timeout_s: float = 180.0,
        send_deadline_s: float = 120.0,
        poll_s: float = 0.25,
        max_resends: int = 2,
        max_replans: int = 3,
        absence_reads: int = 3,
        absence_gap_s: float = 10.0,
    ) -> None:
        if not owner:
            raise DataError("an executor needs an owner name")
        self.engine = engine
        self.venues = dict(venues)
        self.clock = clock
        self.owner = owner
        self.gate = gate
        self.audit_key = audit_key
        self.rate = rate
        self.replanner = replanner
        self.verifier = verifier
        self.plan_check = plan_check
        self.withdraw_target = withdraw_target
        self.on_step = on_step
        self.lease_s = lease_s
        self.confirm_timeout_s = confirm_timeout_s
        self.lookup_timeout_s = lookup_timeout_s
        self.send_deadline_s = send_deadline_s
        self.poll_s = poll_s
        self.max_resends = max_resends
        self.max_replans = max_replans
        if absence_reads < 1 or absence_gap_s < 0:
            raise DataError("absence_reads must be >= 1 and absence_gap_s >= 0")
        self.absence_reads = absence_reads
        self.absence_gap_s = absence_gap_s
        self.sends = 0  # requests that left this executor (tests count them)

    # -- helpers ------------------------------------------------------------------------------
    def _now(self) -> datetime:
        return self.clock.now()

    def _say(self, text_: str) -> None:
        if self.on_step is not None:
            self.on_step(text_)

    @contextlib.contextmanager
    def _session(self) -> Iterator[Session]:
        with session_scope(self.engine) as s:
            yield s

    def _event(self, s: Session, event: AuditedEvent) -> None:
        record_event(s, event, key=self.audit_key)

    def _leg_event(
        self, cls: type[Any], row: TransferRow, *parts: object, latency_ms: float | None = None,
        **extra: Any,
    ) -> Any:  # fmt: skip
        ts = self.clock.timestamp_ns()
        return cls(
            event_id=derive_event_id(cls, row.idempotency_key, *[str(p) for p in parts]),
            ts_event=ts,
            ts_init=ts,
            margin_call_id=row.margin_call_id,
            plan_id=row.plan_id,
            plan_version=row.plan_version,
            step_no=row.step_no,
            leg_no=row.leg_no,
            transfer_key=row.idempotency_key,
            source_id=row.source_id,
            mode=TransferMode(row.mode),
            latency_ms=None if latency_ms is None else Decimal(str(round(latency_ms, 3))),
            venue_id=row.venue_id,
            from_wallet=row.from_wallet,
            to_venue_id=row.to_venue_id,
            to_wallet=row.to_wallet,
            asset=row.asset,
            amount=row.amount,
            amount_usd=row.amount_usd,
            route_id=row.route_id,
            **extra,
        )

    def _report(
        self, row: TransferRow | None, intent: TransferIntent, kind: str, note: str = ""
    ) -> LegReport:
        return LegReport(
            key=intent.key,
            plan_version=intent.plan_version or 0,
            step_no=intent.step_no or 0,
            leg_no=intent.leg_no or 0,
            source_id=intent.source_id or "",
            kind=kind,
            venue_id=intent.venue_id,
            asset=intent.asset.code,
            amount=intent.amount,
            state=TransferState.PENDING if row is None else TransferState(row.status),
            attempts=0 if row is None else row.attempts,
            venue_transfer_id=None if row is None else row.venue_transfer_id,
            latency_ms=None if row is None else row.latency_ms,
            note=note,
            error_kind="" if row is None else (row.error_kind or ""),
        )

    # -- public -------------------------------------------------------------------------------
    def load(self, call_id: str, version: int | None = None) -> tuple[MarginCallRow, RecordedPlan]:
        """The call and its plan version (default: latest), checked; nothing is sent.

        Raises
        ------
        ExecutionError
            No such call or plan, a tampered or non-executable plan, a call no longer open.
        """
        with self._session() as s:
            call = s.get(MarginCallRow, call_id)
            if call is None:
                raise ExecutionError(f"no margin call {call_id!r} in the store; nothing sent")
            recorded = load_plan(s, call_id, version)
            if recorded is None:
                what = "no plan" if version is None else f"no plan version {version}"
                raise ExecutionError(f"{what} for margin call {call_id!r}; nothing sent")
            check_plan_rows(s, recorded)
            if call.status != CallStatus.OPEN.value:
                raise ExecutionError(
                    f"margin call {call_id!r} is {call.status}: its plan is not executed; "
                    "nothing sent"
                )
            s.expunge(call)
        if self.plan_check is not None:
            self.plan_check(recorded)
        return call, recorded

    def execute(
        self, call_id: str, version: int | None = None, *, run_leg: LegRunner | None = None
    ) -> ExecutionReport:
        """Execute plan ``version`` (default: the latest) of ``call_id``, re-plan, verify.

        ``run_leg`` runs each leg instead of :meth:`run_leg` (the margin-call flow passes one
        that runs :meth:`execute_leg` as a task); the order, re-plans and verdict stay here.
        """
        call, recorded = self.load(call_id, version)
        return self._drive(call, recorded, run_leg or self.run_leg)

    def run_leg(self, recorded: RecordedPlan, step_no: int, leg: Leg) -> LegReport | None:
        """Run one leg of ``recorded`` exactly once (intent, gate, claim, tokens, send, record;
        looked up first when it has an attempt on record); its report. Safe to call again:
        a final leg is reported as it stands, an unfinished one is looked up before anything
        is resent."""
        return self._run_leg(recorded, step_no, leg, only_existing=False)

    def execute_leg(self, call_id: str, version: int, step_no: int, leg_no: int) -> LegReport:
        """:meth:`run_leg` for the leg named by its place in a recorded plan (plain values, as a
        task that runs one leg takes them). The plan is read from the store and checked.

        Raises
        ------
        ExecutionError
            No such call, plan version, step or leg; a tampered plan row.
        """
        with self._session() as s:
            recorded = load_plan(s, call_id, version)
            if recorded is None:
                raise ExecutionError(
                    f"no plan version {version} for margin call {call_id!r}; nothing sent"
                )
            check_plan_rows(s, recorded)
        steps = recorded.plan.allocations
        legs = steps[step_no].legs if 0 <= step_no < len(steps) else ()
        leg = next((g for g in legs if g.leg_no == leg_no), None)
        if leg is None:
            raise ExecutionError(
                f"plan v{version} of {call_id!r} has no step {step_no} leg {leg_no}; nothing sent"
            )
        report = self.run_leg(recorded, step_no, leg)
        if report is None:  # pragma: no cover - run_leg starts every leg it is given
            raise ExecutionError(f"leg v{version}/{step_no}/{leg_no} of {call_id!r} not started")
        return report

    def resume(self) -> list[ExecutionReport]:
        """Finish what a crashed run left: every non-final leg in the store (looked up first
        when it has an attempt on record), then every open call's latest plan."""
        with self._session() as s:
            keys = claimable_keys(s, owner=self.owner, at=self._now(), limit=10_000)
            found = [get_transfer(s, k) for k in keys]
            rows = [(r.margin_call_id, r.plan_version) for r in found if r is not None]
        calls = sorted({c for c, _ in rows if c})
        reports = []
        for call_id in calls:
            with self._session() as s:
                status = s.get(MarginCallRow, call_id)
                if status is not None:
                    s.expunge(status)
                latest = load_plan(s, call_id)
                versions = sorted({v for c, v in rows if c == call_id and v is not None})
                older = [
                    load_plan(s, call_id, v) for v in versions if latest and v < latest.version
                ]
            legs: list[LegReport] = []
            for rec in older:  # older versions: finish what was started, start nothing new
                if rec is not None:
                    legs += self._run_plan(rec, only_existing=True)[0]
            if status is None or latest is None:
                continue
            if status.status != CallStatus.OPEN.value:
                legs += self._run_plan(latest, only_existing=True)[0]
                reports.append(
                    ExecutionReport(call_id, (latest.version,), tuple(legs), None, status.status)
                )
                continue
            with self._session() as s:
                check_plan_rows(s, latest)
            report = self._drive(status, latest, self.run_leg)
            reports.append(
                ExecutionReport(call_id, report.versions, tuple(legs) + report.legs,
                                report.verification, report.call_status)
            )  # fmt: skip
        return reports

    # -- plan ---------------------------------------------------------------------------------
    def _drive(
        self, call: MarginCallRow, recorded: RecordedPlan, run_leg: LegRunner
    ) -> ExecutionReport:
        if call.kind == CallKind.PREFUND.value:
            return self._drive_prefund(call, recorded, run_leg)
        versions = [recorded.version]
        legs: list[LegReport] = []
        excluded = _Blocked()
        verification: Verification | None = None
        for round_no in range(self.max_replans + 1):
            reports, blocked = self._run_plan(recorded, run_leg=run_leg)
            legs += reports
            if any(not r.final for r in legs):
                break  # in flight: resume finishes it; never re-plan over an unknown leg
            last = round_no == self.max_replans or self.replanner is None
            if not blocked.reasons:
                if self.verifier is None:
                    break
                verification = self.verifier(call)
                if verification.restored or last:
                    break
                why = f"ratio {verification.ratio} below target {verification.target_ratio}"
                blocked.reasons.append(why)  # prices moved: cover what is still missing
            elif last:
                break
            excluded.add(blocked)
            nxt = self._replan(call, recorded, excluded)
            if nxt is None:
                break
            recorded = nxt
            versions.append(recorded.version)
        status = call.status
        if self.verifier is not None and all(r.final for r in legs):
            verification, status = self._verify(call, verification)
        return ExecutionReport(call.id, tuple(versions), tuple(legs), verification, status)

    def _drive_prefund(
        self, call: MarginCallRow, recorded: RecordedPlan, run_leg: LegRunner
    ) -> ExecutionReport:
        """A pre-funding's one plan, every move tried (a refused move does not stop the next
        one; the later steps of a refused move are not started, as for any source); closed
        once every leg started is final, never re-planned nor verified (module docstring)."""
        legs, _ = self._run_plan(recorded, run_leg=run_leg)
        status = call.status
        if legs and all(r.final for r in legs):
            status = self._close_prefund(call, recorded)
        return ExecutionReport(call.id, (recorded.version,), tuple(legs), None, status)

    def _close_prefund(self, call: MarginCallRow, recorded: RecordedPlan) -> str:
        """Record the pre-funding ``applied`` (every planned leg confirmed) or ``partial`` with
        its ``PrefundApplied`` event (one verdict: the row is locked while it is written). A
        planned leg never started (a later step of a refused move) counts as not moved."""
        ts = self.clock.timestamp_ns()
        with self._session() as s:
            row = s.get(MarginCallRow, call.id, with_for_update=True)
            if row is None or row.status != CallStatus.OPEN.value:
                return call.status if row is None else row.status
            stored = s.exec(select(TransferRow).where(TransferRow.margin_call_id == call.id))
            states = {t.idempotency_key: TransferState(t.status) for t in stored.all()}
            count = dict.fromkeys((_S.CONFIRMED, _S.REFUSED, _S.FAILED), 0)
            planned = moved = Decimal(0)
            not_started = 0
            for step_no, step in enumerate(recorded.plan.allocations):
                for leg in step.legs:
                    state = states.get(recorded.leg_key(step_no, leg.leg_no))
                    if state in count:
                        count[state] += 1
                    elif state is None:
                        not_started += 1
                if step.legs:
                    planned += step.amount_usd
                    last = states.get(recorded.leg_key(step_no, step.legs[-1].leg_no))
                    moved += step.amount_usd if last is _S.CONFIRMED else Decimal(0)
            latency = Decimal(
                str(round(max(0.0, (self._now() - _aware(row.raised_at)).total_seconds() * 1e3), 3))
            )
            self._event(s, PrefundApplied(
                event_id=derive_event_id(PrefundApplied, call.id), ts_event=ts, ts_init=ts,
                margin_call_id=call.id, latency_ms=latency, moved_usd=moved,
                not_moved_usd=planned - moved, legs_confirmed=count[_S.CONFIRMED],
                legs_refused=count[_S.REFUSED], legs_failed=count[_S.FAILED],
                legs_not_started=not_started,
            ))  # fmt: skip
            done = moved == planned
            row.status = (CallStatus.APPLIED if done else CallStatus.PARTIAL).value
            row.closed_at = self._now()
            s.add(row)
            status = row.status
        self._say(
            f"close: pre-funding {call.id} -> {status} (moved {moved:,.2f} USD, not moved "
            f"{planned - moved:,.2f} USD)"
        )
        return status

    def _replan(
        self, call: MarginCallRow, previous: RecordedPlan, blocked: _Blocked
    ) -> RecordedPlan | None:
        assert self.replanner is not None
        t0 = time.perf_counter()
        plan = self.replanner(
            call,
            previous,
            Exclusions(
                frozenset(blocked.sources), frozenset(blocked.routes), frozenset(blocked.pairs)
            ),
        )
        if plan is None or not any(a.legs for a in plan.allocations):
            self._say(
                "re-plan: nothing left to plan"
                + (f" without {', '.join(sorted(blocked.sources))}" if blocked.sources else "")
            )
            return None
        version = previous.version + 1
        reason = "; ".join(blocked.reasons)[:2000]
        with self._session() as s:
            recorded, created = record_plan(s, call.id, plan, version=version, at=self._now())
            if created:
                ts = self.clock.timestamp_ns()
                outcome = recorded.plan.calls[0]
                self._event(s, PlanMade(
                    event_id=derive_event_id(PlanMade, call.id, version), ts_event=ts, ts_init=ts,
                    margin_call_id=call.id, plan_id=recorded.plan_id, plan_version=version,
                    latency_ms=Decimal(str(round((time.perf_counter() - t0) * 1e3, 3))),
                    policy=plan.policy.value, status=PlanStatus(_plan_status(outcome.uncovered_usd, outcome.credit_usd)),
                    deficit_usd=outcome.deficit_usd, credit_usd=outcome.credit_usd,
                    cost_usd=outcome.cost_usd, uncovered_usd=outcome.uncovered_usd,
                    n_steps=len(recorded.plan.allocations), reason=reason or None,
                ))  # fmt: skip
        without = f" without {', '.join(sorted(blocked.sources))}" if blocked.sources else ""
        self._say(f"re-plan v{version}: {len(recorded.plan.allocations)} step(s){without}")
        return recorded

    def _verify(self, call: MarginCallRow, known: Verification | None) -> tuple[Verification, str]:
        assert self.verifier is not None
        v = known if known is not None else self.verifier(call)
        ts = self.clock.timestamp_ns()
        with self._session() as s:
            row = s.get(MarginCallRow, call.id, with_for_update=True)  # one verdict per call
            if row is None or row.status != CallStatus.OPEN.value:
                return v, call.status if row is None else row.status
            latency = Decimal(
                str(round(max(0.0, (self._now() - _aware(row.raised_at)).total_seconds() * 1e3), 3))
            )
            if v.restored:
                self._event(s, RatioRestored(
                    event_id=derive_event_id(RatioRestored, call.id), ts_event=ts, ts_init=ts,
                    margin_call_id=call.id, latency_ms=latency, pool_id=v.pool_id,
                    ratio=v.ratio if v.ratio is not None else v.bar,
                    target_ratio=v.bar,
                ))  # fmt: skip
                row.status = CallStatus.CURED.value
            else:
                self._event(s, CallEscalated(
                    event_id=derive_event_id(CallEscalated, call.id), ts_event=ts, ts_init=ts,
                    margin_call_id=call.id, latency_ms=latency, pool_id=v.pool_id,
                    ratio=v.ratio, uncovered_usd=max(v.deficit_usd, Decimal(0)),
                    reason="ratio below target after the last leg; nothing left to plan",
                ))  # fmt: skip
                row.status = CallStatus.ESCALATED.value
            row.closed_at = self._now()
            s.add(row)
            status = row.status
        ratio = "-" if v.ratio is None else f"{v.ratio:.4f}"
        below_aim = v.ratio is not None and v.ratio < v.target_ratio and v.restored
        bar = f" (at or above the pool's target {v.bar:.4f})" if below_aim else ""
        self._say(
            f"verify: {v.pool_id} ratio {ratio} vs target {v.target_ratio:.4f}{bar} -> {status}"
        )
        return v, status

    def _run_plan(
        self,
        recorded: RecordedPlan,
        *,
        only_existing: bool = False,
        run_leg: LegRunner | None = None,
    ) -> tuple[list[LegReport], _Blocked]:
        reports: list[LegReport] = []
        blocked = _Blocked()
        for step_no, step in enumerate(recorded.plan.allocations):
            # A source that failed or was refused in this round starts no further step (a step
            # above its per-request cap is one step per request): it would fail the same way,
            # and the re-plan routes around it. What such a step already started is finished.
            existing = only_existing or step.source in blocked.sources
            for leg in step.legs:
                report = (
                    run_leg(recorded, step_no, leg)
                    if run_leg is not None and not existing
                    else self._run_leg(recorded, step_no, leg, only_existing=existing)
                )
                if report is None:
                    break
                reports.append(report)
                if report.state is _S.CONFIRMED:
                    continue
                if report.state in (_S.FAILED, _S.REFUSED):
                    blocked.sources.add(step.source)
                    if leg.route_id is not None:
                        blocked.routes.add(leg.route_id)
                    if report.state is _S.FAILED and "InsufficientFunds" not in report.error_kind:
                        blocked.pairs.add((leg.venue, leg.from_wallet.value, leg.to_wallet.value))
                    blocked.reasons.append(f"{step.source}: {report.state.value} ({report.note})")
                break  # a later leg runs only once this one is confirmed
        return reports, blocked

    # -- one leg ------------------------------------------------------------------------------
    def _precheck(self, leg: Leg) -> str | None:
        if leg.kind not in SUPPORTED_KINDS:
            return f"a {leg.kind.value} leg is not executable yet"
        venue = self.venues.get(leg.venue)
        if venue is None:
            return f"no connection to venue {leg.venue}"
        try:
            booked = venue.prepare_amount(Asset(leg.asset), leg.amount)
        except (DataError, VenueError) as exc:
            return f"the venue cannot book this amount: {exc}"
        if booked != leg.amount:
            return f"the venue would book {booked} {leg.asset}, not the planned {leg.amount}"
        return None

    def _gate_pending(self, leg: Leg, intent: TransferIntent, kind: LegKind) -> LegReport | None:
        """Check a committed, never-sent intent against the allow-list; refuse it if outside."""
        assert self.gate is not None
        with self._session() as s:
            row = get_transfer(s, intent.key)
            if row is None or row.status != _S.PENDING.value or row.attempts != 0:
                return None
            refusal = self.gate(s, leg, self._now(), intent.key)
            if refusal is None:
                return None
            reason = f"{refusal.reason}: {refusal.detail}" if refusal.detail else refusal.reason
            row = record_transfer_result(
                s, intent.key, _S.REFUSED, at=self._now(),
                error_kind="refused", error_message=reason,
            )  # fmt: skip
            self._event(s, self._leg_event(LegRefused, row, reason=reason))
            self._say(f"leg {_where(intent)} refused: {reason}")
            return self._report(row, intent, kind.value, reason)

    def _run_leg(
        self, recorded: RecordedPlan, step_no: int, leg: Leg, *, only_existing: bool
    ) -> LegReport | None:
        intent = intent_for_leg(recorded, step_no, leg.leg_no)
        kind = leg.kind
        with self._session() as s:
            row = get_transfer(s, intent.key)
            if row is None:
                if only_existing:
                    return None
                call = s.get(MarginCallRow, recorded.margin_call_id)
                if call is None or call.status != CallStatus.OPEN.value:
                    return self._report(
                        None, intent, kind.value, "call no longer open: not started"
                    )
                reason = self._precheck(leg)
                if reason is not None:
                    row, created = record_refused_leg(s, intent, at=self._now(), reason=reason)
                    if created:
                        self._event(s, self._leg_event(LegRefused, row, reason=reason))
                        self._say(f"leg {_where(intent)} refused: {reason}")
                    return self._report(row, intent, kind.value, reason)
                row, _ = record_transfer_intent(s, intent, at=self._now())
            if TransferState(row.status).is_final:
                return self._report(row, intent, kind.value, row.error_message or "")
            never_sent = row.status == _S.PENDING.value and row.attempts == 0
        if self.gate is not None and never_sent:
            # The gate runs after the intent is committed: a peer executor's concurrent leg is
            # then in the store too and counts against the same rolling caps (each excludes
            # only its own key), so two legs can at worst both be refused, never both allowed
            # over a cap. A pending leg never sent is gated again when a restart resumes it.
            refused = self._gate_pending(leg, intent, kind)
            if refused is not None:
                return refused
        with self._session() as s:
            got = claim_leg(s, intent.key, owner=self.owner, at=self._now(), lease_s=self.lease_s)
        if not got:
            with self._session() as s:
                row = get_transfer(s, intent.key)
                return self._report(row, intent, kind.value, "held by another executor")
        try:
            note = self._drive_leg(intent.key, kind)
        finally:
            with self._session() as s:
                release_leg_lease(s, intent.key, owner=self.owner)
        with self._session() as s:
            row = get_transfer(s, intent.key)
            if row is not None and row.status == _S.CONFIRMED.value:
                note = ""
            return self._report(
                row, intent, kind.value, note or (row.error_message or "" if row else "")
            )

    def _drive_leg(self, key: str, kind: LegKind) -> str:
        resends = 0
        while True:
            with self._session() as s:
                row = _detached(s, key)
            state = TransferState(row.status)
            if state.is_final:
                return row.error_message or ""
            if row.attempts > 0:
                settled = self._settle(row, kind)
                if settled != "not_found":
                    return settled
                if resends >= self.max_resends:
                    self._finish(
                        row, _S.FAILED, error=("not_found", f"absent after {resends} resend(s)")
                    )
                    return "not found at the venue after its lookup window; resends exhausted"
                resends += 1
                with contextlib.suppress(VenueError):
                    forget_leg(self.venues[row.venue_id], row, kind)
                self._say(
                    f"leg {_where_row(row)}: proven absent after the lookup window; resending under the same key"
                )
                with self._session() as s:
                    row = _detached(s, key)
            outcome = self._send(row, kind)
            if outcome is not None:
                return outcome

    def _tokens(self, row: TransferRow, kind: LegKind) -> str | None:
        """Take rate-limit tokens for the leg's write; a reason when there is no room in time."""
        if self.rate is None:
            return None
        venue = self.venues[row.venue_id]
        pm = bool(getattr(venue, "portfolio_margin", False))
        method, path = BINANCE_LEG_ENDPOINTS.get(
            (kind.value, pm), ("POST", "/sapi/v1/asset/transfer")
        )
        deadline = self.clock.timestamp_ns() + round(self.send_deadline_s * 1e9)
        try:
            self.rate.acquire(row.venue_id, budget_family(method, path), request_weight(method, path),
                              ts_deadline_ns=deadline)  # fmt: skip
        except RateLimited as exc:
            return f"no rate budget before the deadline ({exc})"
        return None

    def _send(self, row: TransferRow, kind: LegKind) -> str | None:
        """Send once (resending only what the venue refused unprocessed: 429/418); record it.
        Returns a note when the leg is done for this run, ``None`` to go on (look it up)."""
        venue = self.venues[row.venue_id]
        key = row.idempotency_key
        created = row.created_at
        while True:
            queued = self._tokens(row, kind)
            if queued is not None:
                self._say(f"leg {_where_row(row)} queued: {queued}")
                return queued
            now = self._now()
            with self._session() as s:  # the attempt is on record before the request leaves
                r = record_transfer_result(s, key, TransferState(row.status), at=now, sent_at=now)
                waited_ms = max(0.0, (now - _aware(created)).total_seconds() * 1e3)
                self._event(
                    s,
                    self._leg_event(
                        LegSent, r, r.attempts, latency_ms=waited_ms, attempt=r.attempts
                    ),
                )
                row = _copy(r)
            t0 = time.perf_counter()
            quote: dict[str, Any] = {}
            try:
                self.sends += 1
                answer = send_leg(
                    venue, row, kind, ts_deadline_ns=self.clock.timestamp_ns() + round(self.send_deadline_s * 1e9),
                    withdraw_target=self.withdraw_target, on_quote=quote.update,
                )  # fmt: skip
            except (OutcomeUnknown, ClockSkewRejected) as exc:
                ms = (time.perf_counter() - t0) * 1e3
                self._record(
                    row,
                    _S.UNKNOWN,
                    ms,
                    error=(type(exc).__name__, str(exc)),
                    quote=quote,
                    sent=True,
                )
                self._say(
                    f"leg {_where_row(row)} sent: no answer after {ms:.0f} ms (unknown): looking it up"
                )
                return None
            except RateLimited as exc:  # 429/418: refused before processing; wait, resend
                wait = exc.retry_after_s if exc.retry_after_s is not None else 1.0
                fam = str(exc.context.get("family") or "")
                if self.rate is not None:
                    self.rate.note_ban(row.venue_id, fam, wait)
                self._say(f"leg {_where_row(row)}: rate limited, retry after {wait:g} s")
                self.clock.sleep(wait)
                continue
            except (VenueError, ExecutionError) as exc:
                ms = (time.perf_counter() - t0) * 1e3
                self._record(
                    row, _S.FAILED, ms, error=(type(exc).__name__, str(exc)), quote=quote, sent=True
                )
                self._say(f"leg {_where_row(row)} failed in {ms:.0f} ms: {exc}")
                return str(exc)
            ms = (time.perf_counter() - t0) * 1e3
            state = ledger_state_of(answer.status)
            self._record(row, state, ms, answer=answer, quote=quote, sent=True)
            self._say(
                f"leg {_where_row(row)} {kind.value} {row.amount} {row.asset} "
                f"{row.from_wallet}->{row.to_wallet} on {row.venue_id}: {state.value} in {ms:.0f} ms"
                + (f" (venue id {answer.venue_id})" if answer.venue_id else "")
            )
            return None if not state.is_final else (row.error_message or "")

    def _record(
        self, row: TransferRow, state: TransferState, latency_ms: float | None, *,
        answer: LegAnswer | None = None, error: tuple[str, str] | None = None,
        quote: Mapping[str, Any] | None = None, resolved: bool = False, sent: bool = False,
    ) -> TransferRow:  # fmt: skip
        result: dict[str, Any] = dict(row.result or {})
        if quote:
            result["quote"] = dict(quote)
        if answer is not None:
            if answer.amount is not None:
                result["booked_amount"] = str(answer.amount)
            if answer.received is not None:
                result["received"] = str(answer.received)
            result.update({k: v for k, v in answer.detail.items() if k != "quote"})
        with self._session() as s:
            current = TransferState(get_transfer(s, row.idempotency_key).status)  # type: ignore[union-attr]
            if current.is_final:
                return _detached(s, row.idempotency_key)
            r = record_transfer_result(
                s, row.idempotency_key, state, at=self._now(), latency_ms=latency_ms,
                venue_transfer_id=None if answer is None else answer.venue_id,
                error_kind=None if error is None else error[0][:64],
                error_message=None if error is None else error[1][:2000],
                result=result or None,
            )  # fmt: skip
            if state is not current or sent:
                self._leg_events(s, r, current, state, latency_ms, answer, error, resolved)
            return _copy(r)

    def _leg_events(
        self, s: Session, r: TransferRow, before: TransferState, state: TransferState,
        latency_ms: float | None, answer: LegAnswer | None, error: tuple[str, str] | None,
        resolved: bool,
    ) -> None:  # fmt: skip
        vid = None if answer is None else answer.venue_id
        if resolved and state in (_S.CONFIRMED, _S.FAILED):
            outcome = LegOutcome.CONFIRMED if state is _S.CONFIRMED else LegOutcome.FAILED
            self._event(s, self._leg_event(LegResolved, r, r.attempts, latency_ms=latency_ms,
                                           outcome=outcome, venue_transfer_id=vid))  # fmt: skip
            return
        match state:
            case _S.CONFIRMED:
                self._event(
                    s,
                    self._leg_event(LegConfirmed, r, latency_ms=latency_ms, venue_transfer_id=vid),
                )
            case _S.FAILED:
                kind, msg = error or ("failed", "the venue reports the leg failed")
                self._event(s, self._leg_event(LegFailed, r, latency_ms=latency_ms,
                                               error_kind=kind[:64], error_message=msg[:2000] or kind))  # fmt: skip
            case _S.UNKNOWN:
                kind, msg = error or ("not_found_yet", "no record at the venue yet")
                self._event(s, self._leg_event(LegUnknown, r, r.attempts, latency_ms=latency_ms,
                                               error_kind=kind[:64], error_message=msg[:2000] or kind))  # fmt: skip
            case _:
                return

    def _finish(self, row: TransferRow, state: TransferState, *, error: tuple[str, str]) -> None:
        self._record(row, state, None, error=error, resolved=row.status == _S.UNKNOWN.value)

    def _settle(self, row: TransferRow, kind: LegKind) -> str:
        """Look a leg with an attempt on record up until it is final or the timeouts pass.

        Returns ``"not_found"`` when its absence is proven (the caller may resend), else a note.
        """
        venue = self.venues.get(row.venue_id)
        if venue is None:
            return f"no connection to venue {row.venue_id}: left {row.status}"
        start = self.clock.timestamp_ns()
        confirm_by = start + round(self.confirm_timeout_s * 1e9)
        lookup_by = start + round(self.lookup_timeout_s * 1e9)
        was_unknown = row.status == _S.UNKNOWN.value
        absent_reads = 0
        while True:
            t0 = time.perf_counter()
            with self._session() as s:
                fresh = _detached(s, row.idempotency_key)
                if TransferState(fresh.status).is_final:
                    return fresh.error_message or ""
                try:
                    answer = lookup_leg(venue, fresh, kind, StoreTransferClaims(s))
                except RateLimited as exc:
                    self.clock.sleep(exc.retry_after_s or 1.0)
                    continue
                except VenueError as exc:
                    answer = LegAnswer(_V.NOT_FOUND_YET, detail={"lookup_error": str(exc)[:200]})
            ms = (time.perf_counter() - t0) * 1e3
            now = self.clock.timestamp_ns()
            was_unknown = was_unknown or fresh.status == _S.UNKNOWN.value
            match answer.status:
                case _V.CONFIRMED | _V.FAILED:
                    state = ledger_state_of(answer.status)
                    self._record(fresh, state, ms if was_unknown else fresh.latency_ms, answer=answer,
                                 resolved=was_unknown)  # fmt: skip
                    self._say(f"leg {_where_row(fresh)} {state.value}"
                              + (f" by lookup ({ms:.0f} ms)" if was_unknown else "")
                              + (f" (venue id {answer.venue_id})" if answer.venue_id else ""))  # fmt: skip
                    return ""
                case _V.NOT_FOUND:
                    # One empty read after the window is not proof: a venue's history can lag
                    # or come back empty. Absence must hold over ``absence_reads`` reads
                    # ``absence_gap_s`` apart before a resend is allowed.
                    absent_reads += 1
                    if absent_reads >= self.absence_reads:
                        return "not_found"
                    self.clock.sleep(self.absence_gap_s)
                    continue
                case _V.AMBIGUOUS:
                    self._record(fresh, _S.UNKNOWN, ms, answer=answer,
                                 error=("ambiguous", "several unclaimed venue records match"))  # fmt: skip
                    return "ambiguous at the venue: left unknown for a person"
                case _V.PENDING:
                    if fresh.status != _S.SENT.value:
                        self._record(fresh, _S.SENT, ms, answer=answer)
                    if now >= confirm_by:
                        return "sent; not credited yet: resume later"
                    self.clock.sleep(self.poll_s)
                case _V.NOT_FOUND_YET:
                    if fresh.status != _S.UNKNOWN.value:
                        self._record(fresh, _S.UNKNOWN, ms, answer=answer,
                                     error=("not_found_yet", "no record at the venue yet"))  # fmt: skip
                        was_unknown = True
                    if now >= lookup_by:
                        return "unknown: lookup window still open; resume later"
                    closes = answer.detail.get("window_closes_at")
                    wait = self.poll_s
                    if isinstance(closes, str):
                        close_ns = round(datetime.fromisoformat(closes).timestamp() * 1e9)
                        wait = max(self.poll_s, (close_ns - venue.venue_now_ns()) / 1e9 + 0.5)
                    self.clock.sleep(min(wait, max(self.poll_s, (lookup_by - now) / 1e9)))


def _plan_status(uncovered: Decimal, credit: Decimal) -> str:
    if uncovered == 0:
        return "optimal"
    return "partial" if credit > 0 else "infeasible"


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _where(intent: TransferIntent) -> str:
    return f"v{intent.plan_version}/{intent.step_no}/{intent.leg_no}"


def _where_row(row: TransferRow) -> str:
    return f"v{row.plan_version}/{row.step_no}/{row.leg_no}"


def _copy(row: TransferRow) -> TransferRow:
    return TransferRow.model_validate(row.model_dump())


def _detached(s: Session, key: str) -> TransferRow:
    row = get_transfer(s, key)
    if row is None:
        raise ExecutionError("no transfer intent with this key", key=key)
    return _copy(row)
