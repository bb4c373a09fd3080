"""Transfer intents, idempotency keys and status changes (DESIGN §7), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from ledger_helpers import T0
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from core.domain import Asset, WalletKind
from core.errors import DataError, ExecutionError
from core.ledger.store import record_margin_call, record_plan
from core.ledger.tables import MarginCallRow, PlanRow, PlanStepRow, TransferRow
from core.ledger.transfers import (
    TransferIntent,
    get_transfer,
    record_transfer_intent,
    record_transfer_result,
    transfer_key,
    transfers_in_status,
)
from core.ledger.vocab import CallStatus, PlanStatus, TransferMode, TransferStatus

PLAN = "plan-20260312-0930-a"
CALL = "mc-sim-a.pm-20260312T093000Z"


def _seed_plan(session: Session, n_steps: int = 2) -> None:
    record_margin_call(
        session,
        MarginCallRow(
            id=CALL, pool_id="sim-a.pm", venue_id="sim-a", status=CallStatus.OPEN.value,
            raised_at=T0, ratio_at_raise=Decimal("1.18"), target_ratio=Decimal("1.5"),
            deficit_usd=Decimal("250000"),
        ),
    )  # fmt: skip
    plan = PlanRow(
        id=PLAN, margin_call_id=CALL, created_at=T0, policy="strict", solver="highs",
        status=PlanStatus.OPTIMAL.value, deadline_s=60.0, deficit_usd=Decimal("250000"),
        credit_usd=Decimal("250000"), cost_usd=Decimal("12.5"), uncovered_usd=Decimal(0),
        solve_ms=3.2, config_repr="StrictPolicy(tiers=(1, 2, 3), lambda_per_s=0.01)",
    )  # fmt: skip
    steps = [
        PlanStepRow(
            plan_id=PLAN,
            step_no=i,
            source_id=f"sim-a:spot:USDT:{i}",
            tier=3,
            mode=TransferMode.TRANSFER.value,
            venue_id="sim-a",
            from_wallet="spot",
            to_venue_id="sim-a",
            to_wallet="pm",
            asset="USDT",
            amount=Decimal("125000"),
            amount_usd=Decimal("125000"),
            credit_usd=Decimal("125000"),
            cost_usd=Decimal(0),
            eta_s=0.4,
        )
        for i in range(n_steps)
    ]
    record_plan(session, plan, steps)


def _intent(step_no: int = 0, amount: str = "125000") -> TransferIntent:
    return TransferIntent(
        key=transfer_key(PLAN, step_no), mode=TransferMode.TRANSFER, venue_id="sim-a",
        from_wallet=WalletKind.SPOT, to_wallet=WalletKind.PM, asset=Asset("USDT"),
        amount=Decimal(amount), amount_usd=Decimal(amount), margin_call_id=CALL, plan_id=PLAN,
        step_no=step_no, source_id=f"sim-a:spot:USDT:{step_no}",
    )  # fmt: skip


def test_transfer_key_with_same_step_is_stable_and_fits_client_id_fields() -> None:
    key = transfer_key(PLAN, 3)
    assert key == transfer_key(PLAN, 3)
    assert len({transfer_key(PLAN, i) for i in range(1000)}) == 1000
    assert len(key) == 32
    assert key.isalnum()
    assert transfer_key("plan-b", 3) != key


def test_transfer_intent_with_wrong_key_for_its_step_is_refused() -> None:
    with pytest.raises(DataError, match="transfer_key"):
        TransferIntent(
            key=transfer_key(PLAN, 1), mode=TransferMode.TRANSFER, venue_id="sim-a",
            from_wallet=WalletKind.SPOT, to_wallet=WalletKind.PM, asset=Asset("USDT"),
            amount=Decimal(1), plan_id=PLAN, step_no=0,
        )  # fmt: skip


def test_record_intent_with_new_key_writes_pending_row(session: Session, venues: object) -> None:
    _seed_plan(session)
    row, created = record_transfer_intent(session, _intent(), at=T0)
    assert created
    assert row.status == "pending"
    assert row.attempts == 0
    assert row.sent_at is None
    stored = get_transfer(session, transfer_key(PLAN, 0))
    assert stored is not None
    assert stored.amount == Decimal("125000")
    assert stored.to_venue_id == "sim-a"


def test_record_intent_twice_with_same_key_returns_first_row(
    session: Session, venues: object
) -> None:
    _seed_plan(session)
    first, created_1 = record_transfer_intent(session, _intent(), at=T0)
    again, created_2 = record_transfer_intent(session, _intent(), at=T0 + timedelta(seconds=5))
    assert (created_1, created_2) == (True, False)
    assert again.id == first.id
    assert again.created_at == T0
    assert len(transfers_in_status(session, TransferStatus.PENDING)) == 1


def test_record_intent_with_key_reused_for_other_amount_raises(
    session: Session, venues: object
) -> None:
    _seed_plan(session)
    record_transfer_intent(session, _intent(), at=T0)
    other = _intent(amount="125001")
    with pytest.raises(ExecutionError, match="different movement") as info:
        record_transfer_intent(session, other, at=T0)
    assert info.value.context["fields"] == "amount"


def test_transfer_table_with_duplicate_key_insert_is_rejected_by_database(
    session: Session, venues: object
) -> None:
    """The UNIQUE constraint itself guards the key, not only the Python check."""
    _seed_plan(session)
    row, _ = record_transfer_intent(session, _intent(), at=T0)
    values = {c: getattr(row, c) for c in TransferRow.model_fields if c not in {"id", "result"}}
    with pytest.raises(IntegrityError), session.begin_nested():
        session.execute(insert(TransferRow).values(**values))
    # Only the savepoint was rolled back: the first intent is still there and still commits.
    session.commit()
    session.expire_all()
    assert get_transfer(session, transfer_key(PLAN, 0)) is not None


def test_transfer_result_with_confirmation_records_latency_venue_id_and_finish(
    session: Session, venues: object
) -> None:
    _seed_plan(session)
    key = transfer_key(PLAN, 0)
    record_transfer_intent(session, _intent(), at=T0)
    sent = T0 + timedelta(milliseconds=20)
    record_transfer_result(
        session, key, TransferStatus.SENT, at=sent, sent_at=sent, latency_ms=182.5,
        venue_transfer_id="246810121416", result={"tranId": 246810121416, "status": "PENDING"},
    )  # fmt: skip
    done = record_transfer_result(
        session, key, TransferStatus.CONFIRMED, at=T0 + timedelta(seconds=1)
    )
    assert done.status == "confirmed"
    assert done.attempts == 1
    assert done.finished_at == T0 + timedelta(seconds=1)
    assert (done.latency_ms, done.venue_transfer_id) == (182.5, "246810121416")
    assert done.result == {"tranId": 246810121416, "status": "PENDING"}
    assert transfers_in_status(session, TransferStatus.PENDING, TransferStatus.UNKNOWN) == []


@pytest.mark.parametrize(
    ("path", "illegal"),
    [
        ((TransferStatus.CONFIRMED,), TransferStatus.FAILED),
        ((TransferStatus.FAILED,), TransferStatus.SENT),
        ((TransferStatus.SENT,), TransferStatus.PENDING),
        ((TransferStatus.UNKNOWN, TransferStatus.CONFIRMED), TransferStatus.UNKNOWN),
    ],
)
def test_transfer_result_with_illegal_status_change_raises_and_keeps_row(
    session: Session,
    venues: object,
    path: tuple[TransferStatus, ...],
    illegal: TransferStatus,
) -> None:
    _seed_plan(session)
    key = transfer_key(PLAN, 0)
    record_transfer_intent(session, _intent(), at=T0)
    for status in path:
        record_transfer_result(session, key, status, at=T0)
    with pytest.raises(ExecutionError, match="illegal transfer status change"):
        record_transfer_result(session, key, illegal, at=T0)
    row = get_transfer(session, key)
    assert row is not None
    assert row.status == path[-1].value


def test_unknown_outcome_then_lookup_found_it_confirms_without_second_attempt(
    session: Session, venues: object
) -> None:
    _seed_plan(session)
    key = transfer_key(PLAN, 1)
    record_transfer_intent(session, _intent(step_no=1), at=T0)
    record_transfer_result(
        session, key, TransferStatus.UNKNOWN, at=T0, sent_at=T0, error_kind="OutcomeUnknown",
        error_message="read timeout after 10000 ms (op=transfer, venue=sim-a)",
    )  # fmt: skip
    assert [r.idempotency_key for r in transfers_in_status(session, TransferStatus.UNKNOWN)] == [
        key
    ]
    row = record_transfer_result(
        session, key, TransferStatus.CONFIRMED, at=T0 + timedelta(seconds=2),
        venue_transfer_id="99001",
    )  # fmt: skip
    assert row.attempts == 1
    assert row.status == "confirmed"


def test_transfer_result_with_credential_in_receipt_is_refused(
    session: Session, venues: object
) -> None:
    _seed_plan(session)
    key = transfer_key(PLAN, 0)
    record_transfer_intent(session, _intent(), at=T0)
    with pytest.raises(DataError, match="credential-like key"):
        record_transfer_result(
            session, key, TransferStatus.SENT, at=T0, result={"apiKey": "abc", "tranId": 1}
        )


def test_planned_transfer_with_unrecorded_step_is_rejected_by_foreign_key(
    session: Session, venues: object
) -> None:
    _seed_plan(session, n_steps=1)
    with pytest.raises(IntegrityError), session.begin_nested():
        record_transfer_intent(session, _intent(step_no=7), at=T0)
