"""Transfer intents and results: the store's half of exactly-once (DESIGN §7).

The executor's protocol, and which function serves each step:

1. ``transfer_key(plan_id, step_no)``: the idempotency key, a pure function of the plan step,
   so a retried task, a restarted worker and the event-triggered run all compute the same key.
2. ``record_transfer_intent``: write the row with status ``pending`` and commit *before* sending.
   The UNIQUE key makes a second intent for the same step return the first row instead of
   creating a second movement.
3. ``record_transfer_result``: record ``sent`` / ``confirmed`` / ``failed`` / ``unknown`` with
   venue ids and latency; illegal moves (anything out of a final status) are refused.
4. After a crash or an ``OutcomeUnknown``: ``transfers_in_status(pending, unknown)`` lists what
   must be looked up at the venue by key before any resend.

Rows never hold credentials; ``result`` holds the normalised venue receipt only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from core.domain import Asset, WalletKind
from core.errors import DataError, ExecutionError
from core.ledger.chain import canonical_payload
from core.ledger.coltypes import fit_decimal, tidy_decimal
from core.ledger.tables import TransferRow
from core.ledger.vocab import TRANSFER_TRANSITIONS, TransferMode, TransferStatus

__all__ = [
    "TransferIntent",
    "get_transfer",
    "record_transfer_intent",
    "record_transfer_result",
    "transfer_key",
    "transfers_in_status",
]


def transfer_key(plan_id: str, step_no: int) -> str:
    """Return the idempotency key of step ``step_no`` of plan ``plan_id``: 32 hex chars.

    SHA-256 truncated to 128 bits: collision-free in practice and short enough for venue
    client-id fields (OKX ``clientId`` takes at most 32 alphanumerics).

    Examples
    --------
    >>> transfer_key("plan-1", 0) == transfer_key("plan-1", 0) != transfer_key("plan-1", 1)
    True
    """
    if not plan_id or step_no < 0:
        raise DataError(
            "transfer key needs a plan id and a step_no >= 0", plan_id=plan_id, step_no=step_no
        )
    digest = hashlib.sha256(f"pmr.transfer\x1f{plan_id}\x1f{step_no}".encode())
    return digest.hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class TransferIntent:
    """A movement about to be sent: what, where, and the origin it answers (DESIGN §7 tags)."""

    key: str
    mode: TransferMode
    venue_id: str
    from_wallet: WalletKind
    to_wallet: WalletKind
    asset: Asset
    amount: Decimal
    to_venue_id: str | None = None  # None: same venue
    to_asset: Asset | None = None  # swaps only
    amount_usd: Decimal | None = None
    margin_call_id: str | None = None
    plan_id: str | None = None
    step_no: int | None = None
    source_id: str | None = None

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
        if (self.plan_id is None) != (self.step_no is None):
            raise DataError("plan_id and step_no go together", where=where)
        if self.plan_id is not None and self.step_no is not None:
            expected = transfer_key(self.plan_id, self.step_no)
            if self.key != expected:
                raise DataError(
                    "key is not transfer_key(plan_id, step_no)", where=where, expected=expected
                )

    def to_row(self, *, at: datetime) -> TransferRow:
        """Return the ``pending`` row for this intent, created at ``at``."""
        return TransferRow(
            idempotency_key=self.key,
            margin_call_id=self.margin_call_id,
            plan_id=self.plan_id,
            step_no=self.step_no,
            source_id=self.source_id,
            mode=self.mode.value,
            venue_id=self.venue_id,
            from_wallet=self.from_wallet.value,
            to_venue_id=self.to_venue_id or self.venue_id,
            to_wallet=self.to_wallet.value,
            asset=self.asset.code,
            amount=self.amount,
            to_asset=None if self.to_asset is None else self.to_asset.code,
            amount_usd=self.amount_usd,
            status=TransferStatus.PENDING.value,
            attempts=0,
            created_at=at,
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
    "step_no",
)


def get_transfer(session: Session, key: str) -> TransferRow | None:
    """Return the transfer row with idempotency key ``key``, or ``None``."""
    return session.exec(select(TransferRow).where(TransferRow.idempotency_key == key)).first()


def record_transfer_intent(
    session: Session, intent: TransferIntent, *, at: datetime
) -> tuple[TransferRow, bool]:
    """Write the ``pending`` intent row unless the key exists; return (row, created).

    The caller must commit before sending. On a concurrent insert of the same key the UNIQUE
    constraint wins and the other writer's row is returned.

    Raises
    ------
    ExecutionError
        The key is already used by a *different* movement (a bug upstream: refuse to guess).
    """
    new = intent.to_row(at=at)
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


def record_transfer_result(
    session: Session,
    key: str,
    status: TransferStatus,
    *,
    at: datetime,
    sent_at: datetime | None = None,
    latency_ms: float | None = None,
    venue_transfer_id: str | None = None,
    error_kind: str | None = None,
    error_message: str | None = None,
    result: Mapping[str, Any] | None = None,
) -> TransferRow:
    """Move transfer ``key`` to ``status`` and record what the venue said.

    Parameters
    ----------
    at
        When the result was observed; becomes ``finished_at`` for a final status.
    sent_at
        When the request left, if this result follows a send: counts one attempt.
    latency_ms
        Request-to-answer time measured by the executor.
    result
        Normalised venue receipt (JSON-safe; credential-like keys are refused).

    Raises
    ------
    ExecutionError
        Unknown key, or a move the life cycle forbids (e.g. ``confirmed`` → ``failed``).
    """
    row = get_transfer(session, key)
    if row is None:
        raise ExecutionError("no transfer intent with this key", key=key)
    current = TransferStatus(row.status)
    if status is not current and status not in TRANSFER_TRANSITIONS[current]:
        raise ExecutionError(
            "illegal transfer status change", key=key, current=current.value, new=status.value
        )
    if latency_ms is not None and latency_ms < 0:
        raise DataError("latency_ms must be >= 0", key=key, value=latency_ms)
    payload = None if result is None else canonical_payload(dict(result), path="result")
    row.status = status.value
    if sent_at is not None:
        row.sent_at = sent_at
        row.attempts += 1
    if status.is_final:
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


def transfers_in_status(session: Session, *statuses: TransferStatus) -> list[TransferRow]:
    """Return transfers in any of ``statuses``, oldest first (recovery after a crash)."""
    wanted = [s.value for s in statuses]
    stmt = (
        select(TransferRow)
        .where(col(TransferRow.status).in_(wanted))
        .order_by(col(TransferRow.created_at), col(TransferRow.id))
    )
    return list(session.exec(stmt).all())
