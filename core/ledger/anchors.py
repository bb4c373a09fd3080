"""Anchors: the audit chain's head ``(seq, hash)`` recorded apart from the chain.

Why: a chain proves its rows agree with each other, so deleting the newest rows leaves a chain
that still verifies. An anchor says "at this instant the head was event ``seq`` with hash
``hash``"; an anchor past the current head names the deleted tail, and an anchor whose hash
differs from the stored event names a rewrite (RFC 6962 §2.1: a log's signed tree head plays
this part). Anchors live in ``audit_anchor``, not in the chain; each reconciliation records one
(``core.ledger.audit_log.anchor_head``), and the CLI prints the head so an operator can keep
it outside the database too (``pmr audit verify --expect-head SEQ:HASH``).

An anchor recorded with the audit key carries ``mac``, the HMAC-SHA256 of the anchor's
canonical form under that key, so a forger who rewrites the chain cannot rewrite the anchors to
match it. With the key, an anchor whose MAC fails is reported and not trusted; an anchor
without a MAC (recorded in unkeyed mode) is still checked, since it can only reveal a fault,
never hide one. The residual risk, a forger deleting the anchors too, is why the printed head is
also kept elsewhere.

This module reads and writes anchor rows; ``core.ledger.audit_log`` verifies the chain against
them and records new ones (it reads the head under the same rules as appends).
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime

from sqlmodel import Session, col, select

from core.errors import DataError
from core.ledger.chain import AnchorPoint, AuditKey, canonical_json
from core.ledger.tables import NAME_LEN, AuditAnchorRow

__all__ = [
    "anchor_label",
    "anchor_mac",
    "anchor_points",
    "latest_anchor",
    "record_anchor",
]


def anchor_mac(
    key: AuditKey, *, seq: int, hash: str, anchored_at: datetime, recorded_by: str
) -> str:
    """HMAC-SHA256 (hex) of one anchor's canonical form under ``key``.

    The body names its kind (``audit_anchor``) so an anchor's MAC can never be mistaken for an
    event's, whatever the two contain.
    """
    body = {
        "kind": "audit_anchor",
        "seq": seq,
        "hash": hash,
        "anchored_at": anchored_at.astimezone(UTC).isoformat(),
        "recorded_by": recorded_by,
    }
    return hmac.new(key.secret, canonical_json(body), hashlib.sha256).hexdigest()


def anchor_label(row: AuditAnchorRow) -> str:
    """How verdicts name an anchor: ``anchor #3 (reconcile, 2026-03-12T09:35:00+00:00)``."""
    return f"anchor #{row.id} ({row.recorded_by}, {row.anchored_at.astimezone(UTC).isoformat()})"


def record_anchor(
    session: Session,
    *,
    seq: int,
    hash: str,
    at: datetime,
    recorded_by: str,
    key: AuditKey | None,
) -> AuditAnchorRow:
    """Write one anchor row (flushed, not committed); MAC'd when ``key`` is given.

    Raises
    ------
    DataError
        ``recorded_by`` empty or longer than 64 characters, or ``at`` naive.
    """
    if not recorded_by.strip() or len(recorded_by) > NAME_LEN:
        raise DataError(
            f"anchor recorded_by must be 1..{NAME_LEN} characters", recorded_by=recorded_by
        )
    if at.tzinfo is None or at.utcoffset() is None:
        raise DataError("anchor time must be timezone-aware", at=at)
    at = at.astimezone(UTC)
    mac = None
    if key is not None:
        mac = anchor_mac(key, seq=seq, hash=hash, anchored_at=at, recorded_by=recorded_by)
    row = AuditAnchorRow(seq=seq, hash=hash, anchored_at=at, recorded_by=recorded_by, mac=mac)
    session.add(row)
    session.flush()
    return row


def _mac_fault(row: AuditAnchorRow, key: AuditKey | None) -> str:
    """Say why ``row`` cannot be trusted under ``key``, or return ""."""
    if key is None or row.mac is None:
        return ""
    expected = anchor_mac(
        key, seq=row.seq, hash=row.hash, anchored_at=row.anchored_at, recorded_by=row.recorded_by
    )
    if hmac.compare_digest(expected, row.mac):
        return ""
    return f"{anchor_label(row)} fails its MAC under the audit key: the anchor was edited"


def anchor_points(
    session: Session, key: AuditKey | None
) -> tuple[list[AnchorPoint], list[tuple[int, str]]]:
    """Every recorded anchor as an ``AnchorPoint``, and the ``(seq, reason)`` of those refused.

    With ``key``, an anchor whose MAC fails is refused (not trusted, reported); without it,
    every anchor is used as recorded.
    """
    points: list[AnchorPoint] = []
    faults: list[tuple[int, str]] = []
    query = select(AuditAnchorRow).order_by(col(AuditAnchorRow.id))
    for row in session.exec(query.execution_options(populate_existing=True)):  # what is stored
        fault = _mac_fault(row, key)
        if fault:
            faults.append((row.seq, fault))
        else:
            points.append(AnchorPoint(row.seq, row.hash, anchor_label(row)))
    return points, faults


def latest_anchor(session: Session, key: AuditKey | None = None) -> AuditAnchorRow | None:
    """The most recent anchor (highest ``seq``, then newest) that ``key`` does not refuse."""
    rows = session.exec(
        select(AuditAnchorRow).order_by(
            col(AuditAnchorRow.seq).desc(), col(AuditAnchorRow.id).desc()
        )
    )
    for row in rows:
        if not _mac_fault(row, key):
            return row
    return None
