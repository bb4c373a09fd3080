"""Append to and verify the hash-chained audit trail stored in ``audit_event``.

The hashing rules live in ``core.ledger.chain``; this module assigns ``seq``, links each new
event to the current head and reads the chain back in order. On PostgreSQL, appends take a
transaction-scoped advisory lock so two writers cannot both extend the same head; on SQLite
the database write lock does that, taken before the head is read (``_lock_the_head``). The ``seq`` primary key is the last line of defence: a
racing append fails rather than forking the chain.

Keys: every append says which key it writes with (``key=None`` is the explicit unkeyed mode of
the offline demo). Once the chain holds a keyed event, an unkeyed append is refused: a plain
row after keyed ones is exactly what a forger without the key would write, and verification
treats it so.

Event ids: an event is recorded once. Appending an ``event_id`` that exists returns the stored
row when the event is the same (kind, ``ts_event``, references, payload; ``ts_init`` may
differ, since a retried task records it again later) and is refused when anything differs.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlmodel import Session, col, select

from core.errors import DataError
from core.ledger.anchors import anchor_label, anchor_points, latest_anchor, record_anchor
from core.ledger.chain import (
    GENESIS_HASH,
    AnchorPoint,
    AuditKey,
    ChainVerdict,
    HashScheme,
    canonical_payload,
    event_hash,
    rewrite_fault,
    scheme_for,
    truncation_fault,
    verify_chain,
)
from core.ledger.tables import AuditAnchorRow, AuditEventRow

__all__ = [
    "anchor_head",
    "append_audit_event",
    "audit_head",
    "iter_audit_events",
    "keyed_since",
    "verify_audit_chain",
    "verify_since_latest_anchor",
]

# Arbitrary constant for pg_advisory_xact_lock ("pmr" + 0xA0): serialises appends.
_AUDIT_LOCK_KEY = 0x706D_72A0


def _lock_the_head(session: Session) -> None:
    """Hold the lock that serialises appends before the head is read, until the commit.

    PostgreSQL: a transaction-scoped advisory lock. SQLite: the database's write lock, taken
    with ``BEGIN IMMEDIATE`` (waiting out a peer for the busy timeout) when the connection has
    no transaction open. Why: Python's sqlite3 opens a transaction only before an INSERT,
    UPDATE or DELETE, and a SAVEPOINT released at the outermost level commits (``record_plan``
    records a plan so); the head would then be read outside any transaction and, by the time
    this append's INSERT gets the lock, a peer process may have appended under the same
    ``seq``: two margin-call runs served at once failed so (``benchmarks/margin_call.py
    --trigger``). A connection already in a transaction began it with a write (sqlite3 begins
    none otherwise), so holds the lock; in one a SAVEPOINT opened around reads only, SQLite
    refuses a stale write ("database is locked") rather than letting the chain fork.
    """
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _AUDIT_LOCK_KEY})
    elif conn.dialect.name == "sqlite":
        raw = conn.connection.dbapi_connection
        if raw is not None and not raw.in_transaction:
            conn.exec_driver_sql("BEGIN IMMEDIATE")


def audit_head(session: Session) -> tuple[int, str]:
    """Return ``(seq, hash)`` of the newest event, or ``(0, GENESIS_HASH)`` for an empty trail."""
    row = _head_row(session)
    return (0, GENESIS_HASH) if row is None else (row.seq, row.hash)


def _head_row(session: Session) -> AuditEventRow | None:
    return session.exec(
        select(AuditEventRow).order_by(col(AuditEventRow.seq).desc()).limit(1)
    ).first()


def keyed_since(session: Session) -> int | None:
    """The ``seq`` of the first keyed event, or None when the chain holds none."""
    row = session.exec(
        select(AuditEventRow.seq)
        .where(AuditEventRow.hash_scheme == HashScheme.HMAC_SHA256.value)
        .order_by(col(AuditEventRow.seq))
        .limit(1)
    ).first()
    return None if row is None else int(row)


def append_audit_event(
    session: Session,
    *,
    event_id: str,
    kind: str,
    ts_event: int,
    ts_init: int,
    payload: Mapping[str, Any],
    key: AuditKey | None,
    margin_call_id: str | None = None,
    plan_id: str | None = None,
    transfer_key: str | None = None,
) -> AuditEventRow:
    """Append one event at the head of the chain and return its row (flushed, not committed).

    Parameters
    ----------
    key
        The desk's audit key (the row's hash is an HMAC under it), or None to write a plain
        SHA-256 row: the offline demo's explicit unkeyed mode.

    Raises
    ------
    DataError
        Unsafe payload (floats, naive datetimes, credential-like keys); ``event_id`` already
        recorded for a different event (the differing fields are named); or ``key=None`` on a
        chain that holds keyed events.
    """
    clean = canonical_payload(dict(payload))
    refs = {"margin_call_id": margin_call_id, "plan_id": plan_id, "transfer_key": transfer_key}
    _lock_the_head(session)
    existing = session.exec(select(AuditEventRow).where(AuditEventRow.event_id == event_id)).first()
    if existing is not None:
        _refuse_a_second_version(existing, kind, ts_event, refs, clean)
        return existing
    head = _head_row(session)
    if key is None and head is not None and head.hash_scheme != HashScheme.SHA256:
        raise DataError(
            "the audit trail is keyed: appending without the audit key would break it; "
            "give the key (e.g. $PMR_AUDIT_KEY)",
            keyed_since_seq=keyed_since(session),
            event_id=event_id,
        )
    head_seq, head_hash = (0, GENESIS_HASH) if head is None else (head.seq, head.hash)
    seq = head_seq + 1
    row = AuditEventRow(
        seq=seq,
        event_id=event_id,
        kind=kind,
        ts_event=ts_event,
        ts_init=ts_init,
        payload=clean,
        prev_hash=head_hash,
        hash=event_hash(seq, event_id, kind, ts_event, ts_init, refs, clean, head_hash, key=key),
        hash_scheme=scheme_for(key).value,
        **refs,
    )
    session.add(row)
    session.flush()
    return row


def _refuse_a_second_version(
    existing: AuditEventRow,
    kind: str,
    ts_event: int,
    refs: Mapping[str, str | None],
    payload: Mapping[str, Any],
) -> None:
    """Raise unless ``existing`` is the event being appended again (``ts_init`` aside)."""
    stored = {"kind": existing.kind, "ts_event": existing.ts_event, "payload": existing.payload}
    stored.update(
        margin_call_id=existing.margin_call_id,
        plan_id=existing.plan_id,
        transfer_key=existing.transfer_key,
    )
    given = {"kind": kind, "ts_event": ts_event, "payload": payload, **refs}
    differing = [name for name in given if stored[name] != given[name]]
    if differing:
        raise DataError(
            "event_id already recorded with different content; an event is recorded once: "
            f"{', '.join(differing)} differ",
            event_id=existing.event_id,
            seq=existing.seq,
        )


def iter_audit_events(
    session: Session, *, batch: int = 1000, after_seq: int = 0
) -> Iterator[AuditEventRow]:
    """Yield every audit event after ``after_seq`` in ``seq`` order, ``batch`` rows at a time."""
    after = after_seq
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
    session: Session,
    *,
    key: AuditKey | None = None,
    expected_head: tuple[int, str] | None = None,
    use_anchors: bool = True,
) -> ChainVerdict:
    """Verify the stored trail end to end (see ``core.ledger.chain.verify_chain``).

    Every recorded anchor (``audit_anchor``) is checked unless ``use_anchors`` is False. With
    ``key``, an anchor whose MAC fails is not trusted and is itself a fault (the anchor table
    was edited), reported when the chain shows none of its own.
    """
    points, anchor_faults = anchor_points(session, key) if use_anchors else ([], [])
    verdict = verify_chain(
        iter_audit_events(session), key=key, anchors=points, expected_head=expected_head
    )
    if verdict.ok and anchor_faults:
        seq, reason = anchor_faults[0]
        return replace(verdict, ok=False, broken_at_seq=seq, reason=reason)
    return verdict


def verify_since_latest_anchor(session: Session, *, key: AuditKey | None) -> ChainVerdict:
    """Verify only the events after the latest anchor ``key`` trusts (all of them if none).

    The incremental twin of ``verify_audit_chain`` for frequent callers (each reconciliation):
    its cost grows with the events since the last anchor, not with the whole trail. The anchor
    itself is checked against its stored event first.
    """
    anchor = latest_anchor(session, key)
    if anchor is None or anchor.seq == 0:
        return verify_chain(iter_audit_events(session), key=key)
    row = session.get(AuditEventRow, anchor.seq, populate_existing=True)
    if row is None or row.hash != anchor.hash:
        head_seq, head_hash = audit_head(session)
        point = AnchorPoint(anchor.seq, anchor.hash, anchor_label(anchor))
        if row is not None:
            fault, at = rewrite_fault(point), anchor.seq
        elif head_seq < anchor.seq:
            fault, at = truncation_fault(head_seq + 1, point), head_seq + 1
        else:
            fault, at = (
                f"event seq={anchor.seq} of {point.label} is missing: events were deleted",
                anchor.seq,
            )
        return ChainVerdict(False, 0, head_seq, head_hash, broken_at_seq=at, reason=fault)
    return verify_chain(
        iter_audit_events(session, after_seq=anchor.seq),
        key=key,
        start=(anchor.seq, anchor.hash),
        keyed_since=keyed_since(session),
    )


def anchor_head(
    session: Session, *, recorded_by: str, at: datetime, key: AuditKey | None
) -> AuditAnchorRow:
    """Verify the events since the latest anchor, then record the head as a new anchor.

    Each reconciliation calls this (``recorded_by="reconcile"``); ``pmr audit anchor`` does it
    by hand. Returns the anchor row (flushed, not committed); print its ``seq:hash`` for the
    operator to keep outside the database.

    Raises
    ------
    DataError
        The chain since the latest anchor is broken (anchoring it would bless the damage), or
        ``key=None`` on a keyed chain (an unkeyed anchor there could be forged).
    """
    since = keyed_since(session)
    if key is None and since is not None:
        raise DataError(
            "the audit trail is keyed: anchor it with the audit key (e.g. $PMR_AUDIT_KEY)",
            keyed_since_seq=since,
        )
    verdict = verify_since_latest_anchor(session, key=key)
    if not verdict.ok:
        raise DataError(f"refusing to anchor a broken chain: {verdict}")
    return record_anchor(
        session, seq=verdict.head_seq, hash=verdict.head_hash, at=at, recorded_by=recorded_by,
        key=key,
    )  # fmt: skip
