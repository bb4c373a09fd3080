"""An event is recorded once: the same event again is idempotent, another one under its id is
refused, naming what differs (on SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any

import pytest
from audit_story import KEY, record_story, story_events
from sqlmodel import Session

from core.errors import DataError
from core.execution.events import audit_record, record_event
from core.ledger.audit_log import append_audit_event, audit_head, verify_audit_chain


def _append(session: Session, **changes: Any) -> None:
    r = audit_record(story_events()[7])  # seq 8: LegConfirmed, every reference set
    fields: dict[str, Any] = {
        "event_id": r.event_id, "kind": r.kind, "ts_event": r.ts_event, "ts_init": r.ts_init,
        "payload": r.payload, **r.refs,
    }  # fmt: skip
    fields.update(changes)
    append_audit_event(session, key=KEY, **fields)


def test_reappend_of_the_same_event_returns_the_stored_row(session: Session) -> None:
    rows = record_story(session, KEY)
    again = record_event(session, story_events()[7], key=KEY)
    assert again.seq == rows[7].seq == 8
    # A retried task records it later: ts_init is not part of the event's identity.
    _append(session, ts_init=rows[7].ts_init + 5_000_000)
    assert audit_head(session) == (16, rows[-1].hash)
    assert verify_audit_chain(session, key=KEY).complete


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"margin_call_id": "mc-other"}, "margin_call_id differ"),
        ({"plan_id": "plan-9"}, "plan_id differ"),
        ({"transfer_key": "0" * 32}, "transfer_key differ"),
        ({"kind": "LegFailed"}, "kind differ"),
        ({"ts_event": 1}, "ts_event differ"),
        ({"payload": {"amount": "1"}}, "payload differ"),
        ({"plan_id": None, "transfer_key": None}, "plan_id, transfer_key differ"),
    ],
)
def test_reappend_with_same_event_id_but_other_content_is_refused_and_writes_nothing(
    session: Session, changes: dict[str, Any], named: str
) -> None:
    rows = record_story(session, KEY)
    with pytest.raises(DataError) as caught:
        _append(session, **changes)
    message = str(caught.value)
    assert message.startswith("event_id already recorded with different content")
    assert named in message
    assert f"event_id={rows[7].event_id}" in message
    assert "seq=8" in message
    assert audit_head(session) == (16, rows[-1].hash)
