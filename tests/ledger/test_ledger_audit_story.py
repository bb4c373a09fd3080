"""A margin call's story read back from the audit trail (and its transfer rows)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from audit_story import CALL, KEY, T0_NS, record_story
from ledger_helpers import T0
from sqlmodel import Session

from core.domain import Asset, WalletKind
from core.errors import DataError
from core.execution.story import NO_EVENT, call_story, ns_to_utc
from core.ledger.audit_log import append_audit_event
from core.ledger.plans import record_margin_call
from core.ledger.store import ensure_venue
from core.ledger.tables import MarginCallRow
from core.ledger.transfers import TransferIntent, record_transfer_intent, record_transfer_result
from core.ledger.vocab import CallStatus, TransferMode, TransferState, VenueMode


def test_story_of_a_cured_call_has_every_decision_and_leg_in_order(session: Session) -> None:
    record_story(session, KEY)
    story = call_story(session, CALL)
    assert [line.event for line in story.lines] == [
        "MarginCallRaised", "PlanMade", "LegSent", "LegConfirmed", "LegSent", "LegSent",
        "LegRefused", "LegConfirmed", "LegUnknown", "LegResolved", "PlanMade", "LegSent",
        "LegSent", "LegConfirmed", "LegConfirmed", "RatioRestored",
    ]  # fmt: skip
    assert [line.seq for line in story.lines] == list(range(1, 17))
    unknown = story.lines[8]
    assert (unknown.step_leg, unknown.source_id, unknown.mode, unknown.amount, unknown.asset) == (
        "v1 s2.0", "sim-b:spot:USDT", "withdrawal", Decimal(50000), "USDT",
    )  # fmt: skip
    assert (unknown.latency_ms, unknown.result) == (Decimal(10000), "unknown")
    assert unknown.note == "OutcomeUnknown: no answer within 10 s"
    assert unknown.at == datetime(2026, 3, 12, 9, 30, 10, 95000, tzinfo=UTC)
    assert story.lines[9].result == "failed"  # the lookup's verdict
    assert story.lines[6].note == "per-transfer cap 25,000 USD < 50,000 USD"
    assert story.lines[10].note == "strict, 2 steps; v1 s2.0 failed, v1 s3.0 refused"
    assert story.lines[5].note == "sim-b→sim-a spot→pm"
    assert story.lines[14].cost_usd == Decimal(25)
    assert story.lines[0].note == "sim-a.pm at 1.18 < 1.5: 250,000 USD short"
    assert (story.outcome, story.elapsed_ms, story.plan_versions) == ("restored", 10900, (1, 2))
    assert story.legs_by_result == {"confirmed": 4, "failed": 1, "refused": 1}
    assert (story.delivered_usd, story.cost_usd) == (Decimal(250000), Decimal(25))
    assert story.summary() == (
        f"{CALL}: restored after 10,900 ms; plans v1, v2; legs 4 confirmed, 1 failed, "
        "1 refused; delivered 250,000.00 USD at a cost of 25.00 USD"
    )


def test_story_with_older_events_and_an_unaudited_transfer_fills_in_from_transfer_rows(
    session: Session, venues: tuple[str, str]
) -> None:
    """Events of the previous release carry little; the transfer row says the rest, and a
    movement with no event at all still shows, as the gap it is."""
    record_margin_call(session, MarginCallRow(
        id="call-1", pool_id="sim-a.pm", venue_id="sim-a", status=CallStatus.OPEN.value,
        raised_at=T0, target_ratio=Decimal("1.25"), deficit_usd=Decimal(50000),
    ))  # fmt: skip
    for key, status, ms in (("a" * 32, TransferState.CONFIRMED, 150.0),
                            ("b" * 32, TransferState.FAILED, 90.0)):  # fmt: skip
        intent = TransferIntent(
            key=key, mode=TransferMode.TRANSFER, venue_id="sim-a", from_wallet=WalletKind.SPOT,
            to_wallet=WalletKind.PM, asset=Asset("USDT"), amount=Decimal(50000),
            amount_usd=Decimal(50000), margin_call_id="call-1", source_id="sim-a:spot:USDT",
        )  # fmt: skip
        record_transfer_intent(session, intent, at=T0 + timedelta(seconds=1))
        record_transfer_result(session, key, status, at=T0 + timedelta(seconds=2),
                               sent_at=T0 + timedelta(seconds=1), latency_ms=ms,
                               error_message="halted" if status is TransferState.FAILED else None)  # fmt: skip
    for seq, (kind, payload) in enumerate([
        ("TransferRequested", {"amount": "50000", "asset": "USDT", "step_no": 0}),
        ("TransferConfirmed", {"latency_ms": 150, "venue_transfer_id": "sim-tx-0001"}),
    ]):  # fmt: skip
        append_audit_event(
            session, event_id=f"evt-{seq}", kind=kind, ts_event=T0_NS + (seq + 1) * 10**9,
            ts_init=T0_NS, payload=payload, margin_call_id="call-1", transfer_key="a" * 32,
            key=None,
        )  # fmt: skip
    story = call_story(session, "call-1")
    requested, gap, confirmed = story.lines  # in time order: the gap was created at 1 s
    assert (requested.event, requested.mode, requested.source_id, requested.amount) == (
        "TransferRequested", "transfer", "sim-a:spot:USDT", Decimal(50000),
    )  # fmt: skip
    assert (confirmed.event, confirmed.latency_ms, confirmed.asset) == (
        "TransferConfirmed", Decimal(150), "USDT",
    )  # fmt: skip
    assert (gap.event, gap.seq, gap.result, gap.note) == (NO_EVENT, None, "failed", "halted")
    assert (gap.latency_ms, gap.at) == (Decimal(90), T0 + timedelta(seconds=1))
    assert (story.outcome, story.elapsed_ms, story.legs_by_result) == ("open", None, {})


def test_story_of_a_call_nobody_recorded_is_refused(session: Session) -> None:
    ensure_venue(session, "sim-a", exchange="sim", mode=VenueMode.SIM, at=T0)
    with pytest.raises(DataError, match="no audit event or transfer names this margin call"):
        call_story(session, "mc-nope")


def test_ns_to_utc_is_exact_to_the_microsecond() -> None:
    assert ns_to_utc(T0_NS + 123_456_789) == T0 + timedelta(microseconds=123_456)
