"""The audit trail is a hash chain: intact chains verify, every kind of tampering shows.

These tests write the unkeyed (plain SHA-256) scheme, the one earlier releases wrote and the
offline demo still writes; ``test_ledger_audit_hmac.py`` covers the keyed scheme.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from ledger_helpers import T0
from sqlalchemy import text
from sqlmodel import Session

from core.errors import DataError
from core.ledger.audit_log import append_audit_event, audit_head, verify_audit_chain
from core.ledger.chain import GENESIS_HASH, canonical_json, canonical_payload, event_hash
from core.ledger.keys import leg_key

T0_NS = 1_773_307_800_000_000_000  # 2026-03-12T09:30:00Z
CALL = "mc-sim-a.pm-20260312T093000Z"


def _stored_payload(raw: Any) -> dict[str, Any]:
    """Raw SQL reads JSONB as a dict on PostgreSQL and JSON as text on SQLite."""
    return raw if isinstance(raw, dict) else dict(json.loads(raw))


def _append_story(session: Session) -> list[str]:
    """A margin call's first five events, as the executor would write them."""
    leg = leg_key(CALL, 1, 0, 0)  # the leg's idempotency key
    events: list[tuple[str, dict[str, object]]] = [
        ("MarginCallRaised", {"pool": "sim-a.pm", "ratio": Decimal("1.18"), "at": T0}),
        ("PlanRecorded", {"policy": "strict", "credit_usd": Decimal("250000")}),
        ("TransferRequested", {"asset": "USDT", "amount": Decimal("125000"), "from": "spot"}),
        ("TransferConfirmed", {"tran_id": "246810121416", "latency_ms": 182}),
        ("MarginCallCured", {"ratio_after": Decimal("1.52")}),
    ]
    hashes = []
    for i, (kind, payload) in enumerate(events):
        row = append_audit_event(
            session, event_id=f"ev-{i}", kind=kind, ts_event=T0_NS + i * 1_000_000,
            ts_init=T0_NS + i * 1_000_000 + 500, payload=payload, margin_call_id=CALL,
            plan_id="plan-1" if i else None, transfer_key=leg if kind.startswith("Transfer") else None,
            key=None,
        )  # fmt: skip
        hashes.append(row.hash)
    session.commit()
    return hashes


def test_audit_chain_with_untouched_events_verifies(session: Session) -> None:
    hashes = _append_story(session)
    verdict = verify_audit_chain(session, expected_head=(5, hashes[-1]))
    assert verdict.ok, str(verdict)
    assert (verdict.checked, verdict.head_seq, verdict.head_hash) == (5, 5, hashes[-1])
    assert audit_head(session) == (5, hashes[-1])
    assert len(set(hashes)) == 5


def test_audit_chain_with_empty_trail_is_intact_at_genesis(session: Session) -> None:
    verdict = verify_audit_chain(session)
    assert verdict.ok
    assert verdict.checked == 0
    assert verdict.head_hash == GENESIS_HASH


def test_audit_chain_with_edited_payload_is_broken_at_that_event(session: Session) -> None:
    _append_story(session)
    session.execute(
        text("UPDATE audit_event SET payload = :p WHERE seq = 3"),
        {"p": '{"asset": "USDT", "amount": "12500", "from": "spot"}'},
    )
    verdict = verify_audit_chain(session)
    assert not verdict.ok
    assert verdict.broken_at_seq == 3
    assert "content" in verdict.reason


def test_audit_chain_with_edited_and_rehashed_event_breaks_the_next_link(
    session: Session,
) -> None:
    _append_story(session)
    session.execute(text("UPDATE audit_event SET kind = 'TransferDenied', hash = :h WHERE seq = 2"),
                    {"h": "f" * 64})  # fmt: skip
    verdict = verify_audit_chain(session)
    assert not verdict.ok
    assert verdict.broken_at_seq == 2
    # A forger who also recomputes seq 2's hash correctly still breaks seq 3's prev_hash.
    row = session.execute(text("SELECT * FROM audit_event WHERE seq = 2")).mappings().one()
    payload = _stored_payload(row["payload"])
    forged = event_hash(
        2, row["event_id"], "TransferDenied", row["ts_event"], row["ts_init"],
        {"margin_call_id": row["margin_call_id"], "plan_id": row["plan_id"],
         "transfer_key": row["transfer_key"]},
        payload, row["prev_hash"],
    )  # fmt: skip
    session.execute(text("UPDATE audit_event SET hash = :h WHERE seq = 2"), {"h": forged})
    verdict = verify_audit_chain(session)
    assert not verdict.ok
    assert verdict.broken_at_seq == 3
    assert "prev_hash" in verdict.reason


def test_audit_chain_with_deleted_middle_event_shows_a_gap(session: Session) -> None:
    _append_story(session)
    session.execute(text("DELETE FROM audit_event WHERE seq = 4"))
    verdict = verify_audit_chain(session)
    assert not verdict.ok
    assert verdict.broken_at_seq == 5
    assert "deleted" in verdict.reason


def test_audit_chain_with_truncated_tail_fails_against_anchored_head(session: Session) -> None:
    hashes = _append_story(session)
    session.execute(text("DELETE FROM audit_event WHERE seq = 5"))
    assert verify_audit_chain(session).ok  # invisible from inside the table ...
    verdict = verify_audit_chain(session, expected_head=(5, hashes[-1]))
    assert not verdict.ok
    assert "truncated" in verdict.reason


def test_append_with_same_event_id_is_idempotent_and_conflict_raises(session: Session) -> None:
    first = append_audit_event(
        session, event_id="ev-x", kind="TransferRequested", ts_event=T0_NS, ts_init=T0_NS,
        payload={"amount": Decimal("5")}, key=None,
    )  # fmt: skip
    again = append_audit_event(
        session, event_id="ev-x", kind="TransferRequested", ts_event=T0_NS, ts_init=T0_NS + 9,
        payload={"amount": Decimal("5")}, key=None,
    )  # fmt: skip
    assert again.seq == first.seq == 1
    with pytest.raises(DataError, match="different content"):
        append_audit_event(
            session, event_id="ev-x", kind="TransferRequested", ts_event=T0_NS, ts_init=T0_NS,
            payload={"amount": Decimal("6")}, key=None,
        )  # fmt: skip


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        ({"api_key": "k"}, "credential-like"),
        ({"venue": {"secret": "s"}}, "credential-like"),
        ({"latency_ms": 182.5}, "floats are not allowed"),
        ({"at": T0.replace(tzinfo=None)}, "timezone-aware"),
        ({1: "x"}, "keys must be strings"),
        ({"okx-passphrase": "p"}, "credential-like"),
        ({"venue": [{"binance_api_key": "k"}]}, "credential-like"),
    ],
)
def test_append_with_unsafe_payload_is_refused_and_writes_nothing(
    session: Session, payload: dict[object, object], match: str
) -> None:
    with pytest.raises(DataError, match=match):
        append_audit_event(
            session, event_id="ev-bad", kind="X", ts_event=T0_NS, ts_init=T0_NS,
            payload=payload, key=None,  # type: ignore[arg-type]
        )  # fmt: skip
    assert audit_head(session) == (0, GENESIS_HASH)


def test_canonical_json_with_reordered_keys_is_identical() -> None:
    a = canonical_payload({"b": Decimal("1.50"), "a": [T0, "x"]})
    b = canonical_payload({"a": [T0, "x"], "b": Decimal("1.50")})
    assert canonical_json(a) == canonical_json(b)
    assert canonical_json(a) == b'{"a":["2026-03-12T09:30:00+00:00","x"],"b":"1.50"}'


def test_append_with_lookalike_but_harmless_keys_is_accepted(session: Session) -> None:
    row = append_audit_event(
        session, event_id="ev-tokens", kind="RateLimitTaken", ts_event=T0_NS, ts_init=T0_NS,
        payload={"rate_limit_tokens": 5, "secretary": "n/a", "keyboard": "en"}, key=None,
    )  # fmt: skip
    assert row.payload["rate_limit_tokens"] == 5
    assert verify_audit_chain(session).ok


def test_audit_chain_fully_rewritten_by_forger_fails_only_against_anchor(
    session: Session,
) -> None:
    """Re-hash every event after an edit: self-consistent, so only the anchored head shows it."""
    hashes = _append_story(session)
    rows = session.execute(text("SELECT * FROM audit_event ORDER BY seq")).mappings().all()
    prev = GENESIS_HASH
    for row in rows:
        payload = _stored_payload(row["payload"])
        if row["seq"] == 3:
            payload = {**payload, "amount": "12500"}  # the forger's edit
        refs = {k: row[k] for k in ("margin_call_id", "plan_id", "transfer_key")}
        new_hash = event_hash(row["seq"], row["event_id"], row["kind"], row["ts_event"],
                              row["ts_init"], refs, payload, prev)  # fmt: skip
        session.execute(
            text("UPDATE audit_event SET payload = :p, prev_hash = :ph, hash = :h WHERE seq = :s"),
            {"p": json.dumps(payload), "ph": prev, "h": new_hash, "s": row["seq"]},
        )
        prev = new_hash
    assert verify_audit_chain(session).ok
    verdict = verify_audit_chain(session, expected_head=(5, hashes[-1]))
    assert not verdict.ok
    assert verdict.broken_at_seq == 5
    assert "anchored head" in verdict.reason
