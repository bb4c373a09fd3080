"""Keyed audit chains: HMAC-SHA256 under the desk's key, so a re-hashed edit shows.

The forger in these tests can write to the store but does not hold the key: they edit a payload
and recompute the hashes the only way they can, as plain SHA-256 (keeping the row's scheme
label, or relabelling it), or strip the key from the whole chain. Each is caught, and the
tests name where. Stores of earlier releases (plain SHA-256) keep verifying.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from audit_story import CALL, KEY, OTHER_KEY, T0_NS, record_story
from ledger_helpers import T0
from legacy_store import HASH_3, ROWS
from sqlalchemy import insert, text
from sqlmodel import Session

from core.errors import ConfigError, DataError
from core.ledger.audit_log import (
    anchor_head,
    append_audit_event,
    audit_head,
    keyed_since,
    verify_audit_chain,
)
from core.ledger.chain import GENESIS_HASH, AuditKey, HashScheme, event_hash
from core.ledger.tables import AuditEventRow

N_EVENTS = 16  # tests/audit_story.py


def _rows(session: Session) -> list[dict[str, Any]]:
    rows = session.execute(text("SELECT * FROM audit_event ORDER BY seq")).mappings().all()
    out = []
    for row in rows:
        d = dict(row)
        d["payload"] = d["payload"] if isinstance(d["payload"], dict) else json.loads(d["payload"])
        out.append(d)
    return out


def _forge_plain_from(session: Session, seq: int, edit: dict[str, Any], *, relabel: bool) -> None:
    """Edit event ``seq``'s payload and re-hash it and every later event as plain SHA-256 (all
    a forger without the key can compute), optionally relabelling them ``sha256``."""
    rows = _rows(session)
    prev = GENESIS_HASH if seq == 1 else rows[seq - 2]["hash"]
    for row in rows[seq - 1 :]:
        payload = {**row["payload"], **edit} if row["seq"] == seq else row["payload"]
        refs = {k: row[k] for k in ("margin_call_id", "plan_id", "transfer_key")}
        new = event_hash(row["seq"], row["event_id"], row["kind"], row["ts_event"],
                         row["ts_init"], refs, payload, prev)  # fmt: skip
        scheme = HashScheme.SHA256.value if relabel else row["hash_scheme"]
        session.execute(
            text("UPDATE audit_event SET payload = :p, prev_hash = :ph, hash = :h, "
                 "hash_scheme = :sc WHERE seq = :s"),
            {"p": json.dumps(payload), "ph": prev, "h": new, "sc": scheme, "s": row["seq"]},
        )  # fmt: skip
        prev = new


def test_hmac_event_hash_with_known_key_matches_openssl() -> None:
    # printf '%s' '<canonical body>' | openssl dgst -sha256 -hmac kkkk...k (32 k's)
    key = AuditKey.from_text("k" * 32, source="test")
    refs = {"margin_call_id": "mc-1", "plan_id": None, "transfer_key": None}
    digest = event_hash(1, "ev-1", "LegSent", 10, 11, refs, {"amount": "5"}, GENESIS_HASH,
                        key=key)  # fmt: skip
    assert digest == "3ceb8ef8bcd3e1ffe2c3184fb3f2f1f080c39f25857aa4e9cdb13f3699d53056"
    assert digest != event_hash(1, "ev-1", "LegSent", 10, 11, refs, {"amount": "5"}, GENESIS_HASH)


def test_keyed_chain_with_untouched_story_authenticates_every_event(session: Session) -> None:
    rows = record_story(session, KEY)
    assert {r.hash_scheme for r in rows} == {"hmac-sha256"}
    verdict = verify_audit_chain(session, key=KEY)
    assert verdict.complete, str(verdict)
    assert (verdict.checked, verdict.keyed, verdict.plain) == (N_EVENTS, N_EVENTS, 0)
    assert (verdict.head_seq, verdict.head_hash) == audit_head(session) == (16, rows[-1].hash)
    assert keyed_since(session) == 1
    assert str(verdict) == "audit chain intact: 16 events (16 keyed), head seq=16"


@pytest.mark.parametrize("relabel", [False, True], ids=["label-kept", "relabelled-sha256"])
def test_keyed_chain_with_payload_edited_and_plain_rehashed_fails_at_the_edit(
    session: Session, relabel: bool
) -> None:
    rows = record_story(session, KEY)
    session.commit()
    assert rows[7].kind == "LegConfirmed"  # seq 8: the 110,000 USDT spot -> pm leg
    _forge_plain_from(session, 8, {"amount": "11000", "amount_usd": "11000"}, relabel=relabel)
    # Without the key the forgery passes for a legacy chain only if relabelled; the key tells.
    verdict = verify_audit_chain(session, key=KEY)
    assert not verdict.ok
    assert (verdict.broken_at_seq, verdict.broken_event_id) == (8, rows[7].event_id)
    expected = "re-hashed without the key" if relabel else "stored MAC does not match"
    assert expected in verdict.reason
    assert "(event " + rows[7].event_id + ")" in str(verdict)


def test_keyed_chain_fully_stripped_of_its_key_is_caught_by_the_keyed_anchor(
    session: Session,
) -> None:
    """Relabel every row plain and re-hash: self-consistent, so only an anchor can tell."""
    record_story(session, KEY)
    anchor = anchor_head(session, recorded_by="reconcile", at=T0, key=KEY)
    session.commit()
    _forge_plain_from(session, 1, {"deficit_usd": "25000"}, relabel=True)
    assert verify_audit_chain(session, key=KEY, use_anchors=False).ok  # the residual risk
    verdict = verify_audit_chain(session, key=KEY)
    assert not verdict.ok
    assert verdict.broken_at_seq == 16 == anchor.seq
    assert f"anchor #{anchor.id} (reconcile, 2026-03-12T09:30:00+00:00)" in verdict.reason
    assert "the chain was rewritten" in verdict.reason


def test_keyed_chain_with_wrong_key_fails_at_the_first_event_saying_so(session: Session) -> None:
    record_story(session, KEY)
    verdict = verify_audit_chain(session, key=OTHER_KEY)
    assert (verdict.ok, verdict.broken_at_seq) == (False, 1)
    assert "or the key is wrong" in verdict.reason


def test_keyed_chain_read_without_key_checks_links_only_and_says_so(session: Session) -> None:
    record_story(session, KEY)
    verdict = verify_audit_chain(session)
    assert (verdict.ok, verdict.complete, verdict.unauthenticated) == (True, False, N_EVENTS)
    assert "WARNING: 16 keyed events NOT authenticated" in str(verdict)
    # Links are still checked without the key: a deleted middle event shows.
    session.execute(text("DELETE FROM audit_event WHERE seq = 5"))
    broken = verify_audit_chain(session)
    assert (broken.ok, broken.broken_at_seq) == (False, 6)


def test_unkeyed_append_on_keyed_chain_is_refused_and_writes_nothing(session: Session) -> None:
    record_story(session, KEY)
    with pytest.raises(DataError, match="the audit trail is keyed") as caught:
        append_audit_event(
            session, event_id="ev-unkeyed", kind="Note", ts_event=T0_NS, ts_init=T0_NS,
            payload={}, margin_call_id=CALL, key=None,
        )  # fmt: skip
    assert "keyed_since_seq=1" in str(caught.value)
    assert audit_head(session)[0] == N_EVENTS
    with pytest.raises(DataError, match="anchor it with the audit key"):
        anchor_head(session, recorded_by="reconcile", at=T0, key=None)


def test_previous_release_chain_extended_with_keyed_events_verifies_and_is_pinned(
    session: Session,
) -> None:
    """The previous release's chain (hashes it computed) stays valid under a key; the first
    keyed event covers the last plain one, so editing the legacy rows afterwards shows."""
    session.execute(insert(AuditEventRow.__table__), ROWS["audit_event"])  # type: ignore[attr-defined]
    assert verify_audit_chain(session, expected_head=(3, HASH_3)).ok
    record_story(session, KEY)
    verdict = verify_audit_chain(session, key=KEY, expected_head=(3, HASH_3))
    assert verdict.complete, str(verdict)
    assert (verdict.plain, verdict.keyed, keyed_since(session)) == (3, N_EVENTS, 4)
    assert str(verdict).startswith(f"audit chain intact: {3 + N_EVENTS} events (16 keyed, 3 plain)")
    # A forger re-hashes the legacy rows after editing one: they cannot re-MAC seq 4.
    rows = _rows(session)
    prev = GENESIS_HASH
    for row in rows[:3]:
        payload = {**row["payload"], "deficit_usd": "5000"} if row["seq"] == 1 else row["payload"]
        refs = {k: row[k] for k in ("margin_call_id", "plan_id", "transfer_key")}
        new = event_hash(row["seq"], row["event_id"], row["kind"], row["ts_event"],
                         row["ts_init"], refs, payload, prev)  # fmt: skip
        session.execute(
            text("UPDATE audit_event SET payload = :p, prev_hash = :ph, hash = :h WHERE seq = :s"),
            {"p": json.dumps(payload), "ph": prev, "h": new, "s": row["seq"]},
        )
        prev = new
    broken = verify_audit_chain(session, key=KEY)
    assert (broken.ok, broken.broken_at_seq) == (False, 4)
    assert "prev_hash" in broken.reason


def test_audit_key_shorter_than_32_bytes_is_refused_naming_where_it_came_from() -> None:
    with pytest.raises(ConfigError, match=r"audit key is 5 bytes; at least 32") as caught:
        AuditKey.from_env("PMR_AUDIT_KEY", {"PMR_AUDIT_KEY": " short\n"})
    assert "source=$PMR_AUDIT_KEY" in str(caught.value)
    assert "short" not in str(caught.value).replace("shorter", "")


def test_audit_key_from_env_strips_whitespace_and_never_shows_the_secret() -> None:
    secret = "a-desk-secret-of-more-than-32-characters"
    key = AuditKey.from_env("DESK_KEY", {"DESK_KEY": f"  {secret}\n"})
    assert key is not None
    assert key.secret == secret.encode()
    assert key == AuditKey.from_text(secret, source="$DESK_KEY")
    assert secret not in repr(key)
    assert repr(key) == f"AuditKey(source='$DESK_KEY', key_id='{key.key_id}')"
    assert AuditKey.from_env("DESK_KEY", {}) is None
    assert AuditKey.from_env("DESK_KEY", {"DESK_KEY": "  "}) is None
    with pytest.raises(ConfigError, match="not an environment variable name"):
        AuditKey.from_env("DESK KEY", {})
