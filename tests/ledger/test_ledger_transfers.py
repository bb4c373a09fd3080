"""Transfer intents, leg keys, state changes, refusals, leases and the 24 h pre-authorisation
use (DESIGN §7), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from ledger_helpers import CALL, T0, hand_plan, seed_plan
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from core.domain import Asset, WalletKind
from core.errors import DataError, ExecutionError
from core.ledger.keys import leg_key, plan_id
from core.ledger.plans import RecordedPlan
from core.ledger.tables import TransferRow
from core.ledger.transfers import (
    TransferIntent,
    acquire_leg_lease,
    get_transfer,
    intent_for_leg,
    preauth_used_usd,
    record_refused_leg,
    record_transfer_intent,
    record_transfer_result,
    release_leg_lease,
    transfers_in_state,
)
from core.ledger.vocab import TransferMode, TransferState

PLAN = plan_id(CALL, 1)


def _intent(recorded: RecordedPlan, step_no: int = 0, amount: str | None = None) -> TransferIntent:
    intent = intent_for_leg(recorded, step_no, 0)
    if amount is None:
        return intent
    return TransferIntent(
        **{
            **{f: getattr(intent, f) for f in intent.__dataclass_fields__},
            "amount": Decimal(amount),
        }
    )


def test_intent_for_recorded_leg_carries_its_key_version_route_and_origin(
    session: Session, venues: object
) -> None:
    recorded = seed_plan(session)
    intent = intent_for_leg(recorded, 1, 0)
    assert intent.key == leg_key(CALL, 1, 1, 0) == recorded.leg_key(1, 0)
    assert (intent.plan_id, intent.plan_version, intent.step_no, intent.leg_no) == (
        PLAN, 1, 1, 0,
    )  # fmt: skip
    assert (intent.venue_id, intent.from_wallet, intent.to_wallet) == (
        "sim-a", WalletKind.SPOT, WalletKind.PM,
    )  # fmt: skip
    assert (intent.asset, intent.amount, intent.amount_usd) == (
        Asset("USDT"), Decimal(125000), Decimal(125000),
    )  # fmt: skip
    assert (intent.route_id, intent.source_id, intent.mode) == (
        "a.spot-pm.usdt", "sim-a.pm:a.spot-pm.usdt:1", TransferMode.TRANSFER,
    )  # fmt: skip
    with pytest.raises(DataError, match="no such leg"):
        intent_for_leg(recorded, 2, 0)


def test_transfer_intent_with_key_of_another_leg_is_refused() -> None:
    with pytest.raises(DataError, match="leg_key"):
        TransferIntent(
            key=leg_key(CALL, 1, 0, 1), mode=TransferMode.TRANSFER, venue_id="sim-a",
            from_wallet=WalletKind.SPOT, to_wallet=WalletKind.PM, asset=Asset("USDT"),
            amount=Decimal(1), margin_call_id=CALL, plan_id=PLAN, plan_version=1, step_no=0,
            leg_no=0,
        )  # fmt: skip


def test_transfer_intent_with_half_of_its_leg_named_is_refused() -> None:
    with pytest.raises(DataError, match="go together"):
        TransferIntent(
            key=leg_key(CALL, 1, 0, 0), mode=TransferMode.TRANSFER, venue_id="sim-a",
            from_wallet=WalletKind.SPOT, to_wallet=WalletKind.PM, asset=Asset("USDT"),
            amount=Decimal(1), margin_call_id=CALL, plan_id=PLAN, step_no=0,
        )  # fmt: skip


def test_record_intent_with_new_key_writes_pending_row(session: Session, venues: object) -> None:
    recorded = seed_plan(session)
    row, created = record_transfer_intent(session, _intent(recorded), at=T0)
    assert created
    assert (row.status, row.attempts, row.sent_at, row.finished_at) == ("pending", 0, None, None)
    stored = get_transfer(session, leg_key(CALL, 1, 0, 0))
    assert stored is not None
    assert (stored.amount, stored.to_venue_id) == (Decimal("125000"), "sim-a")
    assert (stored.plan_version, stored.leg_no, stored.route_id) == (1, 0, "a.spot-pm.usdt")
    assert (stored.owner, stored.lease_expires_at) == (None, None)


def test_record_intent_twice_with_same_key_returns_first_row(
    session: Session, venues: object
) -> None:
    recorded = seed_plan(session)
    first, created_1 = record_transfer_intent(session, _intent(recorded), at=T0)
    again, created_2 = record_transfer_intent(
        session, _intent(recorded), at=T0 + timedelta(seconds=5)
    )
    assert (created_1, created_2) == (True, False)
    assert again.id == first.id
    assert again.created_at == T0
    assert len(transfers_in_state(session, TransferState.PENDING)) == 1


def test_record_intent_with_key_reused_for_other_amount_raises(
    session: Session, venues: object
) -> None:
    recorded = seed_plan(session)
    record_transfer_intent(session, _intent(recorded), at=T0)
    with pytest.raises(ExecutionError, match="different movement") as info:
        record_transfer_intent(session, _intent(recorded, amount="125001"), at=T0)
    assert info.value.context["fields"] == "amount"


def test_transfer_table_with_duplicate_key_insert_is_rejected_by_database(
    session: Session, venues: object
) -> None:
    """The UNIQUE constraint itself guards the key, not only the Python check."""
    recorded = seed_plan(session)
    row, _ = record_transfer_intent(session, _intent(recorded), at=T0)
    values = {c: getattr(row, c) for c in TransferRow.model_fields if c not in {"id", "result"}}
    with pytest.raises(IntegrityError), session.begin_nested():
        session.execute(insert(TransferRow).values(**values))
    # Only the savepoint was rolled back: the first intent is still there and still commits.
    session.commit()
    session.expire_all()
    assert get_transfer(session, leg_key(CALL, 1, 0, 0)) is not None


def test_transfer_result_with_confirmation_records_latency_venue_id_and_finish(
    session: Session, venues: object
) -> None:
    recorded = seed_plan(session)
    key = recorded.leg_key(0, 0)
    record_transfer_intent(session, _intent(recorded), at=T0)
    sent = T0 + timedelta(milliseconds=20)
    record_transfer_result(
        session, key, TransferState.SENT, at=sent, sent_at=sent, latency_ms=182.5,
        venue_transfer_id="246810121416", result={"tranId": 246810121416, "status": "PENDING"},
    )  # fmt: skip
    done = record_transfer_result(
        session, key, TransferState.CONFIRMED, at=T0 + timedelta(seconds=1)
    )
    assert done.status == "confirmed"
    assert done.attempts == 1
    assert done.finished_at == T0 + timedelta(seconds=1)
    assert (done.latency_ms, done.venue_transfer_id) == (182.5, "246810121416")
    assert done.result == {"tranId": 246810121416, "status": "PENDING"}
    assert transfers_in_state(session, TransferState.PENDING, TransferState.UNKNOWN) == []


@pytest.mark.parametrize(
    ("path", "illegal"),
    [
        ((TransferState.CONFIRMED,), TransferState.FAILED),
        ((TransferState.FAILED,), TransferState.SENT),
        ((TransferState.SENT,), TransferState.PENDING),
        ((TransferState.UNKNOWN, TransferState.CONFIRMED), TransferState.UNKNOWN),
        ((TransferState.SENT,), TransferState.REFUSED),
        ((TransferState.REFUSED,), TransferState.SENT),
        ((TransferState.REFUSED,), TransferState.PENDING),
    ],
)
def test_transfer_result_with_illegal_state_change_raises_and_keeps_row(
    session: Session,
    venues: object,
    path: tuple[TransferState, ...],
    illegal: TransferState,
) -> None:
    recorded = seed_plan(session)
    key = recorded.leg_key(0, 0)
    record_transfer_intent(session, _intent(recorded), at=T0)
    for state in path:
        record_transfer_result(session, key, state, at=T0)
    with pytest.raises(ExecutionError, match="illegal transfer state change"):
        record_transfer_result(session, key, illegal, at=T0)
    row = get_transfer(session, key)
    assert row is not None
    assert row.status == path[-1].value


def test_unknown_outcome_then_lookup_found_it_confirms_without_second_attempt(
    session: Session, venues: object
) -> None:
    recorded = seed_plan(session)
    key = recorded.leg_key(1, 0)
    record_transfer_intent(session, _intent(recorded, step_no=1), at=T0)
    record_transfer_result(
        session, key, TransferState.UNKNOWN, at=T0, sent_at=T0, error_kind="OutcomeUnknown",
        error_message="read timeout after 10000 ms (op=transfer, venue=sim-a)",
    )  # fmt: skip
    assert [r.idempotency_key for r in transfers_in_state(session, TransferState.UNKNOWN)] == [key]
    row = record_transfer_result(
        session, key, TransferState.CONFIRMED, at=T0 + timedelta(seconds=2),
        venue_transfer_id="99001",
    )  # fmt: skip
    assert row.attempts == 1
    assert row.status == "confirmed"


def test_refused_leg_is_recorded_final_with_reason_and_never_sent(
    session: Session, venues: object
) -> None:
    recorded = seed_plan(session)
    reason = "route a.spot-pm.usdt: rolling 24 h cap 5,000,000 USD would be exceeded"
    row, created = record_refused_leg(session, _intent(recorded), at=T0, reason=reason)
    assert created
    assert (row.status, row.attempts, row.sent_at, row.finished_at) == ("refused", 0, None, T0)
    assert (row.error_kind, row.error_message) == ("refused", reason)
    with pytest.raises(ExecutionError, match="illegal transfer state change"):
        record_transfer_result(session, row.idempotency_key, TransferState.SENT, at=T0)
    # the same key again is the refused row, not a fresh pending intent
    again, created_again = record_transfer_intent(session, _intent(recorded), at=T0)
    assert (created_again, again.status) == (False, "refused")
    assert transfers_in_state(session, TransferState.PENDING) == []


def test_pending_leg_denied_on_recheck_moves_to_refused_but_not_with_a_send(
    session: Session, venues: object
) -> None:
    recorded = seed_plan(session)
    key = recorded.leg_key(0, 0)
    record_transfer_intent(session, _intent(recorded), at=T0)
    with pytest.raises(ExecutionError, match="never sent"):
        record_transfer_result(session, key, TransferState.REFUSED, at=T0, sent_at=T0)
    row = record_transfer_result(
        session, key, TransferState.REFUSED, at=T0, error_kind="refused", error_message="cap"
    )
    assert (row.status, row.attempts, row.finished_at) == ("refused", 0, T0)


def test_transfer_result_with_credential_in_receipt_is_refused(
    session: Session, venues: object
) -> None:
    recorded = seed_plan(session)
    record_transfer_intent(session, _intent(recorded), at=T0)
    with pytest.raises(DataError, match="credential-like key"):
        record_transfer_result(
            session,
            recorded.leg_key(0, 0),
            TransferState.SENT,
            at=T0,
            result={"apiKey": "abc", "tranId": 1},
        )


def test_planned_transfer_with_unrecorded_leg_is_rejected_by_foreign_key(
    session: Session, venues: object
) -> None:
    seed_plan(session, hand_plan(amounts=("250000",)))
    ghost = TransferIntent(
        key=leg_key(CALL, 1, 0, 3), mode=TransferMode.TRANSFER, venue_id="sim-a",
        from_wallet=WalletKind.SPOT, to_wallet=WalletKind.PM, asset=Asset("USDT"),
        amount=Decimal(1), margin_call_id=CALL, plan_id=PLAN, plan_version=1, step_no=0,
        leg_no=3,
    )  # fmt: skip
    with pytest.raises(IntegrityError), session.begin_nested():
        record_transfer_intent(session, ghost, at=T0)


def test_preauth_use_with_mixed_states_sums_what_may_have_moved_per_route(
    session: Session, venues: object
) -> None:
    """Pending, sent, unknown and confirmed legs count; failed and refused ones do not; nor
    anything before the window or without a route."""
    plan = hand_plan(amounts=("100", "200", "300", "400", "500", "600", "700"))
    recorded = seed_plan(session, plan)
    states = [
        (TransferState.CONFIRMED, T0),  # 100 counts
        (TransferState.SENT, T0),  # 200 counts
        (TransferState.UNKNOWN, T0),  # 300 counts
        (TransferState.PENDING, T0),  # 400 counts
        (TransferState.FAILED, T0),  # 500 does not
        (TransferState.REFUSED, T0),  # 600 does not
        (TransferState.CONFIRMED, T0 - timedelta(hours=25)),  # 700: before the window
    ]
    for step_no, (state, at) in enumerate(states):
        intent = intent_for_leg(recorded, step_no, 0)
        if state is TransferState.REFUSED:
            record_refused_leg(session, intent, at=at, reason="over cap")
            continue
        record_transfer_intent(session, intent, at=at)
        if state is not TransferState.PENDING:
            record_transfer_result(session, intent.key, state, at=at, sent_at=at)
    manual = TransferIntent(
        key=leg_key("manual-ops", 1, 0, 0), mode=TransferMode.TRANSFER, venue_id="sim-a",
        from_wallet=WalletKind.SPOT, to_wallet=WalletKind.PM, asset=Asset("USDT"),
        amount=Decimal(9999), amount_usd=Decimal(9999),
    )  # fmt: skip
    record_transfer_intent(session, manual, at=T0)
    used = preauth_used_usd(session, since=T0 - timedelta(hours=24))
    assert used == {"a.spot-pm.usdt": Decimal(1000)}


def test_leg_lease_with_live_holder_is_refused_and_with_expired_one_is_taken_over(
    session: Session, venues: object
) -> None:
    recorded = seed_plan(session)
    key = recorded.leg_key(0, 0)
    record_transfer_intent(session, _intent(recorded), at=T0)
    assert acquire_leg_lease(session, key, owner="worker-a", at=T0, lease_s=30)
    assert acquire_leg_lease(
        session, key, owner="worker-a", at=T0 + timedelta(seconds=10), lease_s=30
    )
    assert not acquire_leg_lease(
        session, key, owner="worker-b", at=T0 + timedelta(seconds=39), lease_s=30
    )
    # worker-a renewed at T0+10 s until T0+40 s; at T0+40 s the lease has run out
    assert acquire_leg_lease(
        session, key, owner="worker-b", at=T0 + timedelta(seconds=40), lease_s=30
    )
    row = get_transfer(session, key)
    assert row is not None
    assert (row.owner, row.lease_expires_at) == ("worker-b", T0 + timedelta(seconds=70))
    assert not release_leg_lease(session, key, owner="worker-a")
    assert release_leg_lease(session, key, owner="worker-b")
    assert acquire_leg_lease(
        session, key, owner="worker-a", at=T0 + timedelta(seconds=41), lease_s=5
    )


def test_leg_lease_on_final_leg_or_unknown_key_is_never_granted(
    session: Session, venues: object
) -> None:
    recorded = seed_plan(session)
    key = recorded.leg_key(0, 0)
    record_transfer_intent(session, _intent(recorded), at=T0)
    record_transfer_result(session, key, TransferState.CONFIRMED, at=T0, sent_at=T0)
    assert not acquire_leg_lease(session, key, owner="worker-a", at=T0, lease_s=30)
    assert not acquire_leg_lease(session, "0" * 32, owner="worker-a", at=T0, lease_s=30)
    with pytest.raises(DataError, match="lease_s"):
        acquire_leg_lease(session, key, owner="worker-a", at=T0, lease_s=0)
