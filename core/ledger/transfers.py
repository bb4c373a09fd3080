"""Transfer intents and results: the store's half of exactly-once (DESIGN §7).

The executor's protocol, and which function serves each step (the plan, its steps and legs are
recorded first: ``core.ledger.plans.record_plan``):

1. The idempotency key of a leg is ``core.ledger.keys.leg_key(margin call id, plan version,
   step, leg)``, a pure function of where the leg sits, so a retried task, a restarted worker
   and the event-triggered run all compute the same key; ``intent_for_leg`` builds the intent
   of a recorded leg with it.
2. A leg the gates deny (outside the allow-list, over a cap) is written ``refused`` by
   ``record_refused_leg`` and never sent (STYLE rule 14: gates deny, they don't throw).
3. ``record_transfer_intent``: write the row with state ``pending`` and commit *before*
   sending. The UNIQUE key makes a second intent for the same leg return the first row instead
   of creating a second movement.
4. ``acquire_leg_lease``: the executor that sends takes the leg's lease (``owner``,
   ``lease_expires_at``) in one conditional UPDATE; a peer finding it held by a live owner
   leaves it alone, one finding the lease expired (its owner crashed) takes it over and looks
   the leg up before anything else.
5. ``record_transfer_result``: record ``sent`` / ``confirmed`` / ``failed`` / ``unknown`` with
   venue ids and latency; illegal moves (anything out of a final state) are refused. A venue's
   own status maps onto these states in one place: ``core.execution.states``.
6. After a crash or an ``OutcomeUnknown``: ``transfers_in_state(pending, sent, unknown)`` lists
   what must be looked up at the venue by key before any resend.

``preauth_used_usd`` sums what each desk route moved in a window (the rolling 24 h
pre-authorisation), from the ``route_id`` column, not from parsing source ids.

Rows never hold credentials; ``result`` holds the normalised venue receipt only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from core.domain import Asset, WalletKind
from core.errors import DataError, ExecutionError
from core.ledger.chain import canonical_payload
from core.ledger.coltypes import fit_decimal, tidy_decimal
from core.ledger.keys import leg_key, plan_id
from core.ledger.plans import RecordedPlan
from core.ledger.preauth_usage import preauth_usage
from core.ledger.tables import TransferRow
from core.ledger.vocab import TRANSFER_TRANSITIONS, TransferMode, TransferState

__all__ = [
    "TransferIntent",
    "acquire_leg_lease",
    "get_transfer",
    "intent_for_leg",
    "preauth_used_usd",
    "record_refused_leg",
    "record_transfer_intent",
    "record_transfer_result",
    "release_leg_lease",
    "transfers_in_state",
]

_PLAN_FIELDS = ("plan_id", "plan_version", "step_no", "leg_no")


@dataclass(frozen=True, slots=True)
class TransferIntent:
    """A movement about to be sent: what, where, and the origin it answers (DESIGN §7 tags).

    A planned movement names its leg (``margin_call_id``, ``plan_id``, ``plan_version``,
    ``step_no``, ``leg_no``: all or none) and its key must be that leg's ``leg_key``; a manual
    movement names none and brings its own key.
    """

    key: str
    mode: TransferMode
    venue_id: str
    from_wallet: WalletKind
    to_wallet: WalletKind
    asset: Asset
    amount: Decimal
    to_venue_id: str | None = None  # None: same venue
    to_asset: Asset | None = None  # conversions only
    amount_usd: Decimal | None = None
    margin_call_id: str | None = None
    plan_id: str | None = None
    plan_version: int | None = None
    step_no: int | None = None
    leg_no: int | None = None
    source_id: str | None = None
    route_id: str | None = None

    def __post_init__(self) -> None:
        where = f"transfer {self.key}"
        if self.amount <= 0:
            raise DataError(
                "transfer amount must be > 0", field="amount", value=self.amount, where=where
            )
        object.__setattr__(
            self, "amount", tidy_decimal(fit_decimal(self.amount, "amount", where=where))
        )
        if self.amount_usd is not None:
            object.__setattr__(
                self,
                "amount_usd",
                tidy_decimal(fit_decimal(self.amount_usd, "amount_usd", where=where)),
            )
        given = [getattr(self, f) is not None for f in _PLAN_FIELDS]
        if any(given) and not all(given):
            raise DataError(f"{', '.join(_PLAN_FIELDS)} go together", where=where)
        if all(given):
            self._check_leg(where)

    def _check_leg(self, where: str) -> None:
        call, version = self.margin_call_id, self.plan_version
        step_no, leg_no = self.step_no, self.leg_no
        if call is None or version is None or step_no is None or leg_no is None:
            raise DataError("a planned transfer names its margin call", where=where)
        if self.plan_id != plan_id(call, version):
            raise DataError(
                "plan_id is not plan_id(margin_call_id, plan_version)",
                where=where,
                expected=plan_id(call, version),
            )
        expected = leg_key(call, version, step_no, leg_no)
        if self.key != expected:
            raise DataError(
                "key is not leg_key(margin_call_id, plan_version, step_no, leg_no)",
                where=where,
                expected=expected,
            )

    def to_row(self, *, at: datetime, state: TransferState = TransferState.PENDING) -> TransferRow:
        """Return the row for this intent in ``state`` (``pending`` or ``refused``), at ``at``."""
        return TransferRow(
            idempotency_key=self.key,
            margin_call_id=self.margin_call_id,
            plan_id=self.plan_id,
            plan_version=self.plan_version,
            step_no=self.step_no,
            leg_no=self.leg_no,
            source_id=self.source_id,
            route_id=self.route_id,
            mode=self.mode.value,
            venue_id=self.venue_id,
            from_wallet=self.from_wallet.value,
            to_venue_id=self.to_venue_id or self.venue_id,
            to_wallet=self.to_wallet.value,
            asset=self.asset.code,
            amount=self.amount,
            to_asset=None if self.to_asset is None else self.to_asset.code,
            amount_usd=self.amount_usd,
            status=state.value,
            attempts=0,
            created_at=at,
            finished_at=at if state.is_final else None,
        )


def intent_for_leg(recorded: RecordedPlan, step_no: int, leg_no: int) -> TransferIntent:
    """The intent that executes leg ``leg_no`` of step ``step_no`` of a recorded plan.

    Raises
    ------
    DataError
        No such step or leg in the plan.
    """
    steps = recorded.plan.allocations
    if not 0 <= step_no < len(steps) or not 0 <= leg_no < len(steps[step_no].legs):
        raise DataError(
            "no such leg in the plan", plan_id=recorded.plan_id, step_no=step_no, leg_no=leg_no
        )
    step = steps[step_no]
    leg = step.legs[leg_no]
    return TransferIntent(
        key=recorded.leg_key(step_no, leg_no),
        mode=TransferMode(step.mode),
        venue_id=leg.venue,
        from_wallet=leg.from_wallet,
        to_wallet=leg.to_wallet,
        asset=Asset(leg.asset),
        amount=leg.amount,
        to_venue_id=leg.to_venue,
        to_asset=None if leg.to_asset is None else Asset(leg.to_asset),
        amount_usd=leg.amount_usd,
        margin_call_id=recorded.margin_call_id,
        plan_id=recorded.plan_id,
        plan_version=recorded.version,
        step_no=step_no,
        leg_no=leg_no,
        source_id=step.source,
        route_id=leg.route_id,
    )


_SAME_MOVEMENT = (
    "mode",
    "venue_id",
    "from_wallet",
    "to_venue_id",
    "to_wallet",
    "asset",
    "amount",
    "to_asset",
    "margin_call_id",
    "plan_id",
    "plan_version",
    "step_no",
    "leg_no",
    "route_id",
)


def get_transfer(session: Session, key: str) -> TransferRow | None:
    """Return the transfer row with idempotency key ``key``, or ``None``."""
    return session.exec(select(TransferRow).where(TransferRow.idempotency_key == key)).first()


def _insert_once(
    session: Session, intent: TransferIntent, *, at: datetime, state: TransferState
) -> tuple[TransferRow, bool]:
    new = intent.to_row(at=at, state=state)
    existing = get_transfer(session, intent.key)
    if existing is None:
        try:
            with session.begin_nested():
                session.add(new)
                session.flush()
            return new, True
        except IntegrityError:
            existing = get_transfer(session, intent.key)
            if existing is None:
                raise
    diffs = [f for f in _SAME_MOVEMENT if getattr(existing, f) != getattr(new, f)]
    if diffs:
        raise ExecutionError(
            "idempotency key already used by a different movement",
            key=intent.key,
            fields=",".join(diffs),
        )
    return existing, False


def record_transfer_intent(
    session: Session, intent: TransferIntent, *, at: datetime
) -> tuple[TransferRow, bool]:
    """Write the ``pending`` intent row unless the key exists; return (row, created).

    The caller must commit before sending. On a concurrent insert of the same key the UNIQUE
    constraint wins and the other writer's row is returned (whatever its state now).

    Raises
    ------
    ExecutionError
        The key is already used by a *different* movement (a bug upstream: refuse to guess).
    """
    return _insert_once(session, intent, at=at, state=TransferState.PENDING)


def record_refused_leg(
    session: Session, intent: TransferIntent, *, at: datetime, reason: str
) -> tuple[TransferRow, bool]:
    """Record a leg a gate denied (``refused``, never sent) with the gate's ``reason``.

    Returns (row, created); a leg already recorded under its key is returned unchanged (a
    denial does not overwrite a movement that exists).
    """
    row, created = _insert_once(session, intent, at=at, state=TransferState.REFUSED)
    if created:
        row.error_kind, row.error_message = "refused", reason
        session.add(row)
        session.flush()
    return row, created


def record_transfer_result(
    session: Session,
    key: str,
    state: TransferState,
    *,
    at: datetime,
    sent_at: datetime | None = None,
    latency_ms: float | None = None,
    venue_transfer_id: str | None = None,
    error_kind: str | None = None,
    error_message: str | None = None,
    result: Mapping[str, Any] | None = None,
) -> TransferRow:
    """Move transfer ``key`` to ``state`` and record what the venue said.

    Parameters
    ----------
    at
        When the result was observed; becomes ``finished_at`` for a final state.
    sent_at
        When the request left, if this result follows a send: counts one attempt.
    latency_ms
        Request-to-answer time measured by the executor.
    result
        Normalised venue receipt (JSON-safe; credential-like keys are refused).

    Raises
    ------
    ExecutionError
        Unknown key, a move the life cycle forbids (e.g. ``confirmed`` → ``failed``), or a
        send recorded on a ``refused`` leg.
    """
    row = get_transfer(session, key)
    if row is None:
        raise ExecutionError("no transfer intent with this key", key=key)
    current = TransferState(row.status)
    if state is not current and state not in TRANSFER_TRANSITIONS[current]:
        raise ExecutionError(
            "illegal transfer state change", key=key, current=current.value, new=state.value
        )
    if state is TransferState.REFUSED and sent_at is not None:
        raise ExecutionError("a refused leg is never sent", key=key)
    if latency_ms is not None and latency_ms < 0:
        raise DataError("latency_ms must be >= 0", key=key, value=latency_ms)
    payload = None if result is None else canonical_payload(dict(result), path="result")
    row.status = state.value
    if sent_at is not None:
        row.sent_at = sent_at
        row.attempts += 1
    if state.is_final:
        row.finished_at = at
    if latency_ms is not None:
        row.latency_ms = latency_ms
    if venue_transfer_id is not None:
        row.venue_transfer_id = venue_transfer_id
    if error_kind is not None or error_message is not None:
        row.error_kind, row.error_message = error_kind, error_message
    if payload is not None:
        row.result = payload
    session.add(row)
    session.flush()
    return row


def transfers_in_state(session: Session, *states: TransferState) -> list[TransferRow]:
    """Return transfers in any of ``states``, oldest first (recovery after a crash)."""
    wanted = [s.value for s in states]
    stmt = (
        select(TransferRow)
        .where(col(TransferRow.status).in_(wanted))
        .order_by(col(TransferRow.created_at), col(TransferRow.id))
    )
    return list(session.exec(stmt).all())


def acquire_leg_lease(
    session: Session, key: str, *, owner: str, at: datetime, lease_s: float
) -> bool:
    """Take (or renew) the lease on leg ``key`` for ``owner`` until ``at + lease_s``.

    Succeeds when nobody holds the leg, ``owner`` already does, or the holder's lease expired
    by ``at`` (it crashed, or stalled past its lease: whoever takes over looks the leg up at
    the venue before anything else). One conditional UPDATE, so two executors racing for one
    leg cannot both get it; the caller commits, then acts. A final leg is never leased.

    Raises
    ------
    DataError
        ``lease_s`` is not positive, or ``owner`` is empty.
    """
    if not owner:
        raise DataError("a lease needs an owner", key=key)
    if not lease_s > 0:
        raise DataError("lease_s must be > 0", key=key, value=lease_s)
    final = [s.value for s in TransferState if s.is_final]
    t = TransferRow.__table__  # type: ignore[attr-defined]
    stmt = (
        update(t)
        .where(
            t.c.idempotency_key == key,
            t.c.status.not_in(final),
            or_(t.c.owner.is_(None), t.c.owner == owner, t.c.lease_expires_at <= at),
        )
        .values(owner=owner, lease_expires_at=at + timedelta(seconds=lease_s))
    )
    result = session.execute(stmt)
    session.expire_all()  # ORM copies of the row must re-read the new owner
    return bool(getattr(result, "rowcount", 0) == 1)


def release_leg_lease(session: Session, key: str, *, owner: str) -> bool:
    """Give up ``owner``'s lease on leg ``key`` (done, or handing over); False if not held."""
    t = TransferRow.__table__  # type: ignore[attr-defined]
    stmt = (
        update(t)
        .where(t.c.idempotency_key == key, t.c.owner == owner)
        .values(owner=None, lease_expires_at=None)
    )
    result = session.execute(stmt)
    session.expire_all()
    return bool(getattr(result, "rowcount", 0) == 1)


def preauth_used_usd(session: Session, *, since: datetime) -> dict[str, Decimal]:
    """USD moved (or on its way) per desk route or swap since ``since``: what counts against
    its rolling pre-authorisation (``since`` = now − 24 h).

    Counts every leg recorded since then that may have moved collateral (all states but
    ``failed`` and ``refused``: a pending, sent or unknown leg may still land), valued at its
    planned ``amount_usd``. Legs without a route (manual movements) are not counted. The
    per-venue, per-group and cold-quota sums: ``core.ledger.preauth_usage``.
    """
    return dict(preauth_usage(session, since=since).by_route)
