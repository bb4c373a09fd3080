"""Anchored heads: a deleted tail, a rewrite and a forged anchor are each detected and named."""

from __future__ import annotations

from datetime import timedelta

import pytest
from audit_story import KEY, record_story
from hypothesis import given, settings
from hypothesis import strategies as st
from ledger_helpers import T0, sqlite_memory_engine
from sqlalchemy import text
from sqlmodel import Session, select

from core.errors import DataError
from core.ledger.anchors import anchor_mac, anchor_points, latest_anchor
from core.ledger.audit_log import (
    anchor_head,
    append_audit_event,
    audit_head,
    verify_audit_chain,
    verify_since_latest_anchor,
)
from core.ledger.chain import GENESIS_HASH
from core.ledger.tables import AuditAnchorRow

LABEL = "reconcile, 2026-03-12T09:35:00+00:00"


def test_anchor_head_records_the_verified_head_with_its_mac(session: Session) -> None:
    rows = record_story(session, KEY)
    at = T0 + timedelta(minutes=5)
    anchor = anchor_head(session, recorded_by="reconcile", at=at, key=KEY)
    assert (anchor.seq, anchor.hash, anchor.anchored_at) == (16, rows[-1].hash, at)
    assert anchor.mac == anchor_mac(KEY, seq=16, hash=rows[-1].hash, anchored_at=at,
                                    recorded_by="reconcile")  # fmt: skip
    session.commit()
    verdict = verify_audit_chain(session, key=KEY)
    assert (verdict.complete, verdict.anchors_matched) == (True, 1)
    assert str(verdict).endswith("head seq=16, 1 anchored heads matched")
    assert latest_anchor(session, KEY) == anchor


def test_anchor_of_empty_chain_pins_genesis(session: Session) -> None:
    anchor = anchor_head(session, recorded_by="reconcile", at=T0, key=None)
    assert (anchor.seq, anchor.hash, anchor.mac) == (0, GENESIS_HASH, None)
    assert verify_audit_chain(session).anchors_matched == 1


def test_deleted_tail_after_an_anchor_is_named_with_the_anchor(session: Session) -> None:
    record_story(session, KEY)
    anchor = anchor_head(session, recorded_by="reconcile", at=T0 + timedelta(minutes=5), key=KEY)
    session.commit()
    session.execute(text("DELETE FROM audit_event WHERE seq >= 15"))
    verdict = verify_audit_chain(session, key=KEY)
    assert (verdict.ok, verdict.broken_at_seq, verdict.head_seq) == (False, 15, 14)
    assert verdict.reason == (
        f"events seq=15..16 are missing, though anchor #{anchor.id} ({LABEL}) is at seq=16: "
        "the tail was deleted (the chain was truncated)"
    )
    # The incremental check sees it too, and nothing is anchored over the damage.
    since = verify_since_latest_anchor(session, key=KEY)
    assert (since.broken_at_seq, since.reason) == (15, verdict.reason)
    with pytest.raises(DataError, match=r"refusing to anchor a broken chain: .*truncated"):
        anchor_head(session, recorded_by="reconcile", at=T0 + timedelta(minutes=10), key=KEY)


def test_deleted_tail_of_one_event_reads_in_the_singular(session: Session) -> None:
    record_story(session, None)
    anchor_head(session, recorded_by="reconcile", at=T0 + timedelta(minutes=5), key=None)
    session.execute(text("DELETE FROM audit_event WHERE seq = 16"))
    verdict = verify_audit_chain(session)
    assert verdict.reason.startswith("event seq=16 is missing, though anchor #")


def test_anchor_with_hash_unlike_its_event_names_a_rewrite(session: Session) -> None:
    """Anchors recorded unkeyed are still checked: they can reveal a fault, never hide one."""
    record_story(session, None)
    anchor = anchor_head(session, recorded_by="reconcile", at=T0 + timedelta(minutes=5), key=None)
    session.execute(text("UPDATE audit_anchor SET hash = :h WHERE id = :i"),
                    {"h": "ab" * 32, "i": anchor.id})  # fmt: skip
    verdict = verify_audit_chain(session)
    assert (verdict.ok, verdict.broken_at_seq) == (False, 16)
    assert verdict.reason == (
        f"hash differs from the anchored head (anchor #{anchor.id} ({LABEL})): "
        "the chain was rewritten"
    )


def test_forged_anchor_fails_its_mac_and_is_not_trusted(session: Session) -> None:
    rows = record_story(session, KEY)
    anchor = anchor_head(session, recorded_by="reconcile", at=T0 + timedelta(minutes=5), key=KEY)
    # A forger moves the anchor back to seq 14 to hide a deleted tail; the MAC no longer fits.
    session.execute(text("UPDATE audit_anchor SET seq = 14, hash = :h WHERE id = :i"),
                    {"h": rows[13].hash, "i": anchor.id})  # fmt: skip
    session.execute(text("DELETE FROM audit_event WHERE seq >= 15"))
    points, faults = anchor_points(session, KEY)
    assert points == []
    assert faults == [(14, f"anchor #{anchor.id} ({LABEL}) fails its MAC under the audit key: "
                           "the anchor was edited")]  # fmt: skip
    verdict = verify_audit_chain(session, key=KEY)
    assert (verdict.ok, verdict.broken_at_seq) == (False, 14)
    assert "fails its MAC" in verdict.reason
    assert latest_anchor(session, KEY) is None


def test_incremental_verification_starts_at_the_latest_anchor(session: Session) -> None:
    record_story(session, KEY)
    first = anchor_head(session, recorded_by="reconcile", at=T0, key=KEY)
    for i in range(3):
        append_audit_event(
            session, event_id=f"ev-late-{i}", kind="Note", ts_event=i, ts_init=i,
            payload={"i": i}, key=KEY,
        )  # fmt: skip
    since = verify_since_latest_anchor(session, key=KEY)
    full = verify_audit_chain(session, key=KEY)
    assert (since.ok, since.checked, since.head_seq, since.head_hash) == (
        True, 3, full.head_seq, full.head_hash,
    )  # fmt: skip
    second = anchor_head(session, recorded_by="reconcile", at=T0 + timedelta(minutes=5), key=KEY)
    assert (first.seq, second.seq) == (16, 19)
    assert len(session.exec(select(AuditAnchorRow)).all()) == 2


@settings(max_examples=25, deadline=None)
@given(
    n_events=st.integers(min_value=1, max_value=12),
    anchor_at=st.integers(min_value=0, max_value=12),
    tamper_at=st.integers(min_value=1, max_value=12),
    keyed=st.booleans(),
)
def test_incremental_and_full_verification_agree_on_edits_after_the_anchor(
    n_events: int, anchor_at: int, tamper_at: int, keyed: bool
) -> None:
    """The incremental twin finds the same first fault as the full walk for any edit after
    the latest anchor, and both pass an untouched chain (STYLE 18)."""
    anchor_at, tamper_at = min(anchor_at, n_events), min(tamper_at, n_events)
    key = KEY if keyed else None
    engine = sqlite_memory_engine()
    with Session(engine) as s:
        for i in range(1, n_events + 1):
            append_audit_event(s, event_id=f"ev-{i}", kind="Note", ts_event=i, ts_init=i,
                               payload={"i": i}, key=key)  # fmt: skip
            if i == anchor_at:
                anchor_head(s, recorded_by="test", at=T0, key=key)
        assert verify_since_latest_anchor(s, key=key).head_seq == audit_head(s)[0]
        assert verify_audit_chain(s, key=key).ok
        s.execute(text("UPDATE audit_event SET payload = '{\"i\": -1}' WHERE seq = :s"),
                  {"s": tamper_at})  # fmt: skip
        full, since = verify_audit_chain(s, key=key), verify_since_latest_anchor(s, key=key)
        assert (full.ok, full.broken_at_seq) == (False, tamper_at)
        if tamper_at > anchor_at:
            assert (since.ok, since.broken_at_seq, since.reason) == (
                False, tamper_at, full.reason,
            )  # fmt: skip
        else:  # before the anchor: the incremental check trusts what was anchored
            assert since.ok
    engine.dispose()


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        ("UPDATE audit_event SET hash = '" + "ef" * 32 + "' WHERE seq = 10",
         "hash differs from the anchored head (anchor #{id} (test, 2026-03-12T09:30:00+00:00)): "
         "the chain was rewritten"),
        ("DELETE FROM audit_event WHERE seq = 10",
         "event seq=10 of anchor #{id} (test, 2026-03-12T09:30:00+00:00) is missing: "
         "events were deleted"),
    ],
)  # fmt: skip
def test_incremental_verification_checks_the_anchored_event_itself(
    session: Session, damage: str, reason: str
) -> None:
    for i in range(1, 13):
        append_audit_event(session, event_id=f"ev-{i}", kind="Note", ts_event=i, ts_init=i,
                           payload={"i": i}, key=KEY)  # fmt: skip
        if i == 10:
            anchor = anchor_head(session, recorded_by="test", at=T0, key=KEY)
    session.execute(text(damage))
    since = verify_since_latest_anchor(session, key=KEY)
    assert (since.ok, since.broken_at_seq) == (False, 10)
    assert since.reason == reason.format(id=anchor.id)
    assert not verify_audit_chain(session, key=KEY).ok
