"""Concurrent writers: the audit chain stays linear, an intent, a margin call, a plan version
and a leg's lease are each taken exactly once.

Each worker thread has its own connection and transaction, as Prefect task runs (and the
monitor's fast path racing the event-triggered run) would. The races run on the real
PostgreSQL and, where SQLite can have concurrent writers at all (a file in WAL mode, one
connection per thread), on SQLite too. These tests commit for real, so they live in their own
module (own schema) and only assert outcomes, never timings.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from ledger_helpers import CALL, T0, hand_plan, margin_call_row
from sqlalchemy import Engine, func
from sqlmodel import Session, col, select

from core.domain import Asset, WalletKind
from core.ledger.audit_log import append_audit_event, verify_audit_chain
from core.ledger.chain import AuditKey
from core.ledger.keys import leg_key
from core.ledger.plans import load_plan, record_margin_call, record_plan
from core.ledger.store import ensure_venue, init_db, make_engine, session_scope
from core.ledger.tables import AuditEventRow, MarginCallRow, PlanLegRow, PlanRow, TransferRow
from core.ledger.transfers import (
    TransferIntent,
    acquire_leg_lease,
    intent_for_leg,
    record_transfer_intent,
)
from core.ledger.vocab import TransferMode, VenueMode

WORKERS = 8

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


@pytest.mark.postgres
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


@pytest.mark.postgres
def test_same_intent_recorded_by_four_workers_at_once_is_created_exactly_once(
    pg_engine: Engine,
) -> None:
    with session_scope(pg_engine) as s:
        ensure_venue(s, "sim-a", exchange="sim", mode=VenueMode.SIM, at=T0)
    key = leg_key("manual-race", 1, 0, 0)
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


@pytest.fixture(params=[pytest.param("postgresql", marks=pytest.mark.postgres), "sqlite-file"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A store two connections can write at once: this module's PostgreSQL schema (emptied of
    calls and plans first) or a fresh SQLite file in WAL mode."""
    if request.param == "postgresql":
        engine: Engine = request.getfixturevalue("pg_engine")
        with engine.begin() as conn:
            for table in ("transfer", "plan_leg", "plan_step", "plan", "margin_call"):
                conn.exec_driver_sql(f"DELETE FROM {table}")
    else:
        engine = make_engine(f"sqlite:///{tmp_path / 'race.db'}")
        init_db(engine)
    with session_scope(engine) as s:
        for venue in ("sim-a", "sim-b"):
            ensure_venue(s, venue, exchange="sim", mode=VenueMode.SIM, at=T0)
    yield engine
    if request.param == "sqlite-file":
        engine.dispose()


def test_one_breach_detected_by_eight_monitors_at_once_opens_one_margin_call(
    store: Engine,
) -> None:
    """Eight detections of one pool's breach, each with its own new id: one call is opened and
    every detector is handed that call."""
    got: list[tuple[str, bool]] = []

    def detector(i: int) -> Callable[[], None]:
        def run() -> None:
            with session_scope(store) as s:
                row, created = record_margin_call(s, margin_call_row(f"mc-race-{i:02d}"))
                got.append((row.id, created))

        return run

    assert _run_together([detector(i) for i in range(WORKERS)]) == []
    assert sorted(c for _, c in got) == [False] * (WORKERS - 1) + [True]
    winner = next(call for call, created in got if created)
    assert {call for call, _ in got} == {winner}
    with Session(store) as s:
        assert s.exec(select(func.count()).select_from(MarginCallRow)).one() == 1


def test_eight_runs_planning_one_call_at_once_record_exactly_one_plan(store: Engine) -> None:
    """The monitor's fast path and the triggered run (here eight of them), each with a plan of
    its own for version 1: one plan is recorded, with its steps and legs only, and every run
    gets that plan back to execute."""
    with session_scope(store) as s:
        record_margin_call(s, margin_call_row())
    plans = [hand_plan(amounts=(str(100_000 + i), "150000")) for i in range(WORKERS)]
    got: list[tuple[int, bool, object]] = []

    def planner(i: int) -> Callable[[], None]:
        def run() -> None:
            with session_scope(store) as s:
                at = T0 + timedelta(milliseconds=i)
                recorded, created = record_plan(s, CALL, plans[i], version=1, at=at)
                got.append((i, created, recorded.plan))

        return run

    assert _run_together([planner(i) for i in range(WORKERS)]) == []
    winners = [i for i, created, _ in got if created]
    assert len(winners) == 1
    assert all(plan == plans[winners[0]] for _, _, plan in got)
    with Session(store) as s:
        assert s.exec(select(func.count()).select_from(PlanRow)).one() == 1
        assert s.exec(select(func.count()).select_from(PlanLegRow)).one() == 2
        stored = load_plan(s, CALL, 1)
    assert stored is not None
    assert stored.plan == plans[winners[0]]


def test_eight_executors_racing_for_one_leg_give_its_lease_to_exactly_one(store: Engine) -> None:
    with session_scope(store) as s:
        record_margin_call(s, margin_call_row())
        recorded, _ = record_plan(s, CALL, hand_plan(), version=1, at=T0)
        record_transfer_intent(s, intent_for_leg(recorded, 0, 0), at=T0)
    key = recorded.leg_key(0, 0)
    won: list[str] = []

    def executor(i: int) -> Callable[[], None]:
        def run() -> None:
            with session_scope(store) as s:
                if acquire_leg_lease(s, key, owner=f"worker-{i}", at=T0, lease_s=30):
                    won.append(f"worker-{i}")

        return run

    assert _run_together([executor(i) for i in range(WORKERS)]) == []
    assert len(won) == 1
    with Session(store) as s:
        row = s.exec(select(TransferRow).where(TransferRow.idempotency_key == key)).one()
    assert (row.owner, row.lease_expires_at) == (won[0], T0 + timedelta(seconds=30))


def _append(engine: Engine, event_id: str) -> None:
    with session_scope(engine) as s:
        append_audit_event(
            s, event_id=event_id, kind="TransferRequested", ts_event=1, ts_init=1,
            payload={"event": event_id}, key=KEY,
        )  # fmt: skip


def test_audit_append_on_sqlite_file_while_a_peer_holds_the_head_waits_and_links_after_it(
    tmp_path: Path,
) -> None:
    """Two processes' margin-call runs on one SQLite store: one has appended and not yet
    committed when the other appends. The second must wait for the first and link to its row,
    not read the committed head, take the same ``seq`` and fail on it (as two served runs did:
    ``benchmarks/margin_call.py --trigger``)."""
    engine = make_engine(f"sqlite:///{tmp_path / 'chain.db'}")
    init_db(engine)
    errors: list[BaseException] = []

    def peer() -> None:
        try:
            _append(engine, "peer")
        except BaseException as exc:  # asserted on below
            errors.append(exc)

    with session_scope(engine) as first:
        append_audit_event(
            first, event_id="first", kind="TransferRequested", ts_event=1, ts_init=1,
            payload={"event": "first"}, key=KEY,
        )  # fmt: skip
        other = threading.Thread(target=peer)
        other.start()
        other.join(timeout=1.0)  # the peer is waiting for this transaction's lock
        assert other.is_alive()
    other.join(timeout=30)
    assert errors == []
    with Session(engine) as s:
        rows = s.exec(select(AuditEventRow).order_by(col(AuditEventRow.seq))).all()
        verdict = verify_audit_chain(s, key=KEY)
    engine.dispose()
    assert [(r.seq, r.event_id) for r in rows] == [(1, "first"), (2, "peer")]
    assert verdict.complete, str(verdict)


def test_audit_appends_from_four_writers_on_sqlite_file_form_one_unbroken_chain(
    tmp_path: Path,
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'chain.db'}")
    init_db(engine)

    def writer(w: int) -> Callable[[], None]:
        def run() -> None:
            for i in range(15):
                _append(engine, f"w{w}-{i}")

        return run

    assert _run_together([writer(w) for w in range(4)]) == []
    with Session(engine) as s:
        verdict = verify_audit_chain(s, key=KEY)
        n = s.exec(select(func.count()).select_from(AuditEventRow)).one()
    engine.dispose()
    assert verdict.complete, str(verdict)
    assert (verdict.checked, n) == (60, 60)
