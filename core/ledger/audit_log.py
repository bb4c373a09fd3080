"""Append to and verify the hash-chained audit trail stored in ``audit_event``.

The hashing rules live in ``core.ledger.chain``; this module assigns ``seq``, links each new
event to the current head and reads the chain back in order. On PostgreSQL, appends take a
transaction-scoped advisory lock so two writers cannot both extend the same head; on SQLite
the database write lock does that. The ``seq`` primary key is the last line of defence: a
racing append fails rather than forking the chain.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from sqlalchemy import text
from sqlmodel import Session, col, select

from core.errors import DataError
from core.ledger.chain import (
    GENESIS_HASH,
    ChainVerdict,
    canonical_payload,
    event_hash,
    verify_chain,
)
from core.ledger.tables import AuditEventRow

__all__ = ["append_audit_event", "audit_head", "iter_audit_events", "verify_audit_chain"]

# Arbitrary constant for pg_advisory_xact_lock ("pmr" + 0xA0): serialises appends.
_AUDIT_LOCK_KEY = 0x706D_72A0


def audit_head(session: Session) -> tuple[int, str]:
    """Return ``(seq, hash)`` of the newest event, or ``(0, GENESIS_HASH)`` for an empty trail."""
    row = session.exec(
        select(AuditEventRow).order_by(col(AuditEventRow.seq).desc()).limit(1)
    ).first()
    return (0, GENESIS_HASH) if row is None else (row.seq, row.hash)


def append_audit_event(
    session: Session,
    *,
    event_id: str,
    kind: str,
    ts_event: int,
    ts_init: int,
    payload: Mapping[str, Any],
    margin_call_id: str | None = None,
    plan_id: str | None = None,
    transfer_key: str | None = None,
) -> AuditEventRow:
    """Append one event at the head of the chain and return its row (flushed, not committed).

    Appending the same ``event_id`` again returns the stored row when the content matches, so
    a retried task does not duplicate events.

    Raises
    ------
    DataError
        Unsafe payload (floats, naive datetimes, credential-like keys), or ``event_id`` reused
        for different content.
    """
    clean = canonical_payload(dict(payload))
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _AUDIT_LOCK_KEY})
    existing = session.exec(select(AuditEventRow).where(AuditEventRow.event_id == event_id)).first()
    if existing is not None:
        same = (existing.kind, existing.ts_event, existing.payload) == (kind, ts_event, clean)
        if not same:
            raise DataError("event_id already recorded with different content", event_id=event_id)
        return existing
    head_seq, head_hash = audit_head(session)
    seq = head_seq + 1
    refs = {"margin_call_id": margin_call_id, "plan_id": plan_id, "transfer_key": transfer_key}
    row = AuditEventRow(
        seq=seq,
        event_id=event_id,
        kind=kind,
        ts_event=ts_event,
        ts_init=ts_init,
        margin_call_id=margin_call_id,
        plan_id=plan_id,
        transfer_key=transfer_key,
        payload=clean,
        prev_hash=head_hash,
        hash=event_hash(seq, event_id, kind, ts_event, ts_init, refs, clean, head_hash),
    )
    session.add(row)
    session.flush()
    return row


def iter_audit_events(session: Session, *, batch: int = 1000) -> Iterator[AuditEventRow]:
    """Yield every audit event in ``seq`` order, reading ``batch`` rows at a time."""
    after = 0
    while True:
        rows = session.exec(
            select(AuditEventRow)
            .where(AuditEventRow.seq > after)
            .order_by(col(AuditEventRow.seq))
            .limit(batch)
            .execution_options(populate_existing=True)  # verify what is stored, not cached
        ).all()
        if not rows:
            return
        yield from rows
        after = rows[-1].seq


def verify_audit_chain(
    session: Session, *, expected_head: tuple[int, str] | None = None
) -> ChainVerdict:
    """Verify the stored trail end to end (see ``core.ledger.chain.verify_chain``)."""
    return verify_chain(iter_audit_events(session), expected_head=expected_head)
