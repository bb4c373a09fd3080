"""Typed audit events: validated on construction, and the audit row is their exact serialisation."""

from __future__ import annotations

import dataclasses
import json
from decimal import Decimal
from typing import Any

import pytest
from audit_story import CALL, KEY, T0_NS, leg_fields, leg_key, record_story, story_events
from hypothesis import given
from hypothesis import strategies as st
from sqlmodel import Session

from core.domain import Asset, WalletKind
from core.errors import DataError
from core.execution.events import (
    EVENT_TYPES,
    LegConfirmed,
    LegSent,
    MarginCallRaised,
    PrefundApplied,
    PrefundOpened,
    RatioRestored,
    audit_record,
    derive_event_id,
    event_from_row,
)
from core.ledger.chain import canonical_json, canonical_payload
from core.ledger.tables import AuditEventRow
from core.ledger.vocab import TransferMode

TAGS = {"plan_version", "step_no", "leg_no", "source_id", "mode", "latency_ms", "result"}


def _stored(event: Any, seq: int = 1) -> AuditEventRow:
    """The row as the database gives it back: the payload through canonical JSON."""
    r = audit_record(event)
    payload = json.loads(canonical_json(canonical_payload(r.payload)))
    return AuditEventRow(seq=seq, event_id=r.event_id, kind=r.kind, ts_event=r.ts_event,
                         ts_init=r.ts_init, payload=payload, prev_hash="0" * 64,
                         hash="1" * 64, **r.refs)  # fmt: skip


def test_story_events_read_back_from_the_store_equal_what_was_recorded(session: Session) -> None:
    rows = record_story(session, KEY)
    session.commit()
    session.expire_all()
    assert [event_from_row(r) for r in rows] == story_events()
    prefund = {"PrefundOpened", "PrefundApplied"}  # a pre-funding's (next test)
    assert {r.kind for r in rows} == set(EVENT_TYPES) - {"LegFailed", "CallEscalated"} - prefund


def test_prefund_events_read_back_equal_and_say_applied_or_partial() -> None:
    opened = PrefundOpened(
        event_id=derive_event_id(PrefundOpened, "pf-1"), ts_event=T0_NS, ts_init=T0_NS,
        margin_call_id="pf-1", pools="sim-b.opt", scenarios="halt+crash@sim-b",
        deadline_s=Decimal(60), n_moves=1, amount_usd=Decimal("1102543.6"), cost_usd=Decimal(0),
        advice_status="covered",
    )  # fmt: skip
    applied = PrefundApplied(
        event_id=derive_event_id(PrefundApplied, "pf-1"), ts_event=T0_NS + 1, ts_init=T0_NS + 1,
        margin_call_id="pf-1", latency_ms=Decimal(500), moved_usd=Decimal(1_000_000),
        not_moved_usd=Decimal("102543.6"), legs_confirmed=1, legs_refused=1, legs_failed=0,
    )  # fmt: skip
    for seq, event in enumerate((opened, applied), start=1):
        assert event_from_row(_stored(event, seq)) == event
    assert (opened.result, applied.result) == ("opened", "partial")
    done = dataclasses.replace(applied, legs_refused=0, not_moved_usd=Decimal(0))
    assert done.result == "applied"
    assert dataclasses.replace(applied, legs_refused=0, legs_not_started=1).result == "partial"
    with pytest.raises(DataError, match="PrefundApplied needs margin_call_id"):
        dataclasses.replace(applied, margin_call_id=None)


def test_every_kind_stores_the_same_origin_tags_and_its_result() -> None:
    for event in story_events():
        record = audit_record(event)
        assert set(record.payload) >= TAGS, event.kind
        assert record.payload["result"] == event.result
        assert set(record.refs) == {"margin_call_id", "plan_id", "transfer_key"}
    confirmed = audit_record(story_events()[3])
    assert confirmed.refs == {"margin_call_id": CALL, "plan_id": "plan-1",
                              "transfer_key": leg_key(1, 0)}  # fmt: skip
    assert confirmed.payload == {
        "plan_version": 1, "step_no": 0, "leg_no": 0, "source_id": "sim-a:um:pnl",
        "mode": TransferMode.PNL_OFFSET, "latency_ms": Decimal(35), "venue_id": "sim-a",
        "from_wallet": WalletKind.UM, "to_venue_id": "sim-a", "to_wallet": WalletKind.PM,
        "asset": "USDT", "amount": Decimal(40000), "amount_usd": Decimal(40000),
        "route_id": None, "venue_transfer_id": "a-1001", "cost_usd": Decimal(0),
        "result": "confirmed",
    }  # fmt: skip


_decimals = st.decimals(min_value=Decimal("0.000001"), max_value=Decimal(10**12), places=6)


@given(
    amount=_decimals,
    latency_ms=st.one_of(st.none(), _decimals),
    cost_usd=st.one_of(st.none(), _decimals),
    version=st.integers(min_value=1, max_value=50),
    step=st.integers(min_value=0, max_value=40),
    venue_tx=st.one_of(st.none(), st.text(min_size=1, max_size=40).filter(str.strip)),
    ts=st.integers(min_value=0, max_value=2**62),
)
def test_leg_event_round_trips_through_its_stored_form(
    amount: Decimal, latency_ms: Decimal | None, cost_usd: Decimal | None, version: int,
    step: int, venue_tx: str | None, ts: int,
) -> None:  # fmt: skip
    tags = {**leg_fields(1, 1), "plan_version": version, "step_no": step, "amount": amount}
    event = LegConfirmed(
        event_id=derive_event_id(LegConfirmed, CALL, version, step), ts_event=ts, ts_init=ts,
        latency_ms=latency_ms, venue_transfer_id=venue_tx, cost_usd=cost_usd, **tags,
    )  # fmt: skip
    assert event_from_row(_stored(event)) == event


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"amount": 40000.0}, "must be a Decimal (floats are not booked)"),
        ({"amount": Decimal(0)}, "must be a finite number > 0"),
        ({"latency_ms": Decimal(-1)}, "must be a finite number >= 0"),
        ({"amount_usd": Decimal("NaN")}, "must be a finite number >= 0"),
        ({"step_no": -1}, "must be an integer >= 0"),
        ({"leg_no": True}, "must be an integer >= 0"),
        ({"plan_version": 0}, "plan versions start at 1"),
        ({"mode": "teleport"}, "not a TransferMode"),
        ({"from_wallet": "vault"}, "not a WalletKind"),
        ({"source_id": None}, "LegSent needs source_id"),
        ({"plan_id": None}, "needs plan_id"),
        ({"transfer_key": "k" * 33}, "at most 32 characters"),
        ({"event_id": "e" * 65}, "at most 64 characters"),
        ({"venue_id": " "}, "must be non-empty text"),
        ({"asset": "usdt!"}, "asset"),
    ],
)
def test_leg_event_with_bad_field_is_refused_naming_it(
    changes: dict[str, Any], message: str
) -> None:
    fields = {"event_id": "ev-1", "ts_event": T0_NS, "ts_init": T0_NS, **leg_fields(1, 0)}
    fields.update(changes)
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        LegSent(**fields)


def test_manual_leg_needs_only_its_key_and_mode() -> None:
    manual = LegSent(
        event_id="ev-manual", ts_event=1, ts_init=2, transfer_key="f" * 32,
        mode=TransferMode.TRANSFER, venue_id="sim-a", from_wallet=WalletKind.SPOT,
        to_venue_id="sim-a", to_wallet=WalletKind.PM, asset=Asset("USDT"), amount=Decimal(5),
    )  # fmt: skip
    assert audit_record(manual).refs == {"margin_call_id": None, "plan_id": None,
                                         "transfer_key": "f" * 32}  # fmt: skip
    with pytest.raises(DataError, match="LegSent needs transfer_key"):
        dataclasses.replace(manual, transfer_key=None)


def test_call_events_need_their_call_and_a_restored_ratio_reaches_target() -> None:
    with pytest.raises(DataError, match="MarginCallRaised needs margin_call_id"):
        MarginCallRaised(event_id="e", ts_event=1, ts_init=1, pool_id="p", venue_id="v",
                         ratio=None, target_ratio=Decimal(1), deficit_usd=Decimal(1))  # fmt: skip
    with pytest.raises(DataError, match="RatioRestored needs ratio >= target_ratio"):
        RatioRestored(event_id="e", ts_event=1, ts_init=1, margin_call_id=CALL, pool_id="p",
                      ratio=Decimal("1.4"), target_ratio=Decimal("1.5"))  # fmt: skip


def test_events_are_frozen_and_slotted() -> None:
    event = story_events()[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.ts_event = 5  # type: ignore[misc]
    assert not hasattr(event, "__dict__")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"kind": "TransferConfirmed"}, "not a typed audit event kind"),
        ({"payload_extra": {"desk_note": "x"}}, "payload keys not in LegConfirmed: desk_note"),
        ({"payload_extra": {"result": "failed"}}, "stored result contradicts the event"),
        ({"payload_extra": {"amount": "-5"}}, "must be a finite number > 0"),
    ],
)
def test_row_that_does_not_fit_its_kind_is_refused_on_read(
    edit: dict[str, Any], message: str
) -> None:
    row = _stored(story_events()[3])
    if "kind" in edit:
        row.kind = edit["kind"]
    row.payload = {**row.payload, **edit.get("payload_extra", {})}
    with pytest.raises(DataError, match=message):
        event_from_row(row)


def test_derived_event_ids_are_stable_distinct_and_fit_the_column() -> None:
    a = derive_event_id(LegSent, CALL, 1, 0, 0)
    assert a == derive_event_id("LegSent", CALL, 1, 0, 0)
    assert (
        a != derive_event_id(LegSent, CALL, 1, 0, 1) != derive_event_id(LegConfirmed, CALL, 1, 0, 0)
    )
    assert a.startswith("LegSent-")
    assert len(a) == len("LegSent-") + 24
    assert len(derive_event_id("K" * 80, "x")) == 64
