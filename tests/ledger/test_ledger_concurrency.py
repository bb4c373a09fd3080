"""Concurrent writers on PostgreSQL: the audit chain stays linear, an intent is created once.

Each worker thread has its own connection and transaction, as Prefect task runs would. These
tests commit for real, so they live in their own module (own schema) and only assert outcomes,
never timings.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from decimal import Decimal

import pytest
from ledger_helpers import T0
from sqlalchemy import Engine, func
from sqlmodel import Session, select

from core.domain import Asset, WalletKind
from core.ledger.audit_log import append_audit_event, verify_audit_chain
from core.ledger.chain import AuditKey
from core.ledger.store import ensure_venue, session_scope
from core.ledger.tables import AuditEventRow, TransferRow
from core.ledger.transfers import TransferIntent, record_transfer_intent, transfer_key
from core.ledger.vocab import TransferMode, VenueMode

pytestmark = pytest.mark.postgres

KEY = AuditKey.from_text("concurrency-test-audit-key-0123456789", source="test")


def _run_together(workers: list[Callable[[], None]]) -> list[BaseException]:
    """Start all workers at once (barrier) and return the exceptions they raised."""
    barrier = threading.Barrier(len(workers))
    errors: list[BaseException] = []

    def wrap(fn: Callable[[], None]) -> None:
        barrier.wait()
        try:
            fn()
        except BaseException as exc:  # collected and asserted on by the test
            errors.append(exc)

    threads = [threading.Thread(target=wrap, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_audit_appends_from_four_writers_form_one_unbroken_chain(pg_engine: Engine) -> None:
    def writer(w: int) -> Callable[[], None]:
        def run() -> None:
            for i in range(15):
                with session_scope(pg_engine) as s:
                    append_audit_event(
                        s, event_id=f"w{w}-{i}", kind="TransferRequested", ts_event=i,
                        ts_init=i, payload={"writer": w, "i": i}, key=KEY,
                    )  # fmt: skip

        return run

    assert _run_together([writer(w) for w in range(4)]) == []
    with Session(pg_engine) as s:
        verdict = verify_audit_chain(s, key=KEY)
        n = s.exec(select(func.count()).select_from(AuditEventRow)).one()
    assert verdict.complete, str(verdict)
    assert (verdict.checked, verdict.keyed, n) == (60, 60, 60)


def test_same_intent_recorded_by_four_workers_at_once_is_created_exactly_once(
    pg_engine: Engine,
) -> None:
    with session_scope(pg_engine) as s:
        ensure_venue(s, "sim-a", exchange="sim", mode=VenueMode.SIM, at=T0)
    key = transfer_key("manual-race", 0)
    intent = TransferIntent(
        key=key, mode=TransferMode.TRANSFER, venue_id="sim-a", from_wallet=WalletKind.SPOT,
        to_wallet=WalletKind.UM, asset=Asset("USDT"), amount=Decimal("50000"),
    )  # fmt: skip
    created: list[bool] = []

    def worker() -> None:
        with session_scope(pg_engine) as s:
            _row, was_created = record_transfer_intent(s, intent, at=T0)
            created.append(was_created)

    assert _run_together([worker] * 4) == []
    assert sorted(created) == [False, False, False, True]
    with Session(pg_engine) as s:
        rows = s.exec(select(TransferRow).where(TransferRow.idempotency_key == key)).all()
    assert len(rows) == 1
