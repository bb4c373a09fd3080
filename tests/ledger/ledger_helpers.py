"""Helpers shared by the ledger tests (fixtures live in conftest.py, which imports these)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.pool import StaticPool
from sqlmodel import Session

from core.domain import WalletKind
from core.ledger.plans import RecordedPlan, record_margin_call, record_plan
from core.ledger.store import make_engine, normalise_url
from core.ledger.tables import LedgerTable, MarginCallRow
from core.ledger.vocab import CallStatus
from core.routing.legs import Leg, LegKind
from core.routing.plan import Allocation, CallOutcome, Plan
from core.routing.sources import Policy

T0 = datetime(2026, 3, 12, 9, 30, tzinfo=UTC)


@contextmanager
def fresh_pg_schema(postgres_url: str, label: str) -> Iterator[tuple[Engine, str]]:
    """Yield an engine whose ``search_path`` is a new, empty schema; drop it afterwards."""
    schema = f"pmr_t_{label}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(postgres_url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = create_engine(
        normalise_url(postgres_url), connect_args={"options": f"-csearch_path={schema}"}
    )
    try:
        yield engine, schema
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def sqlite_memory_engine() -> Engine:
    """A fresh in-memory SQLite with the ledger schema and foreign keys on."""
    engine = make_engine("sqlite://")
    assert isinstance(engine.pool, StaticPool)
    LedgerTable.metadata.create_all(engine)
    return engine


@contextmanager
def rollback_session(engine: Engine) -> Iterator[Session]:
    """A session inside an outer transaction that is rolled back at the end.

    ``session.commit()`` inside the test only releases a savepoint, so code that commits can be
    tested without leaving rows behind.
    """
    with engine.connect() as conn:
        outer = conn.begin()
        with Session(bind=conn, join_transaction_mode="create_savepoint") as session:
            try:
                yield session
            finally:
                outer.rollback()


# --- margin calls and plans ---------------------------------------------------------------

CALL = "mc-20260312-093000000-00000000000000a1"


def usdt_leg(
    leg_no: int, amount: str, *, source: str = "spot", route: str = "a.spot-pm.usdt"
) -> Leg:
    """An internal USDT transfer leg on sim-a into the PM wallet, valued at 1 USD."""
    return Leg(
        leg_no=leg_no, kind=LegKind.INTERNAL, venue="sim-a", from_wallet=WalletKind(source),
        to_wallet=WalletKind.PM, asset="USDT", amount=Decimal(amount),
        amount_usd=Decimal(amount), price_usd=Decimal(1), latency_s=1.0, route_id=route,
    )  # fmt: skip


def hand_plan(deficit: str = "sim-a.pm", amounts: tuple[str, ...] = ("125000", "125000")) -> Plan:
    """A strict plan covering ``deficit`` with one spot → pm USDT transfer per amount."""
    steps = tuple(
        Allocation(
            call=deficit,
            source=f"{deficit}:a.spot-pm.usdt:{i}",
            tier=3,
            mode="transfer",
            amount_usd=Decimal(a),
            credit_usd=Decimal(a),
            cost_usd=Decimal(0),
            eta_s=1.0,
            requests=1,
            latency_s=1.0,
            binding="deficit_covered",
            venue="sim-a",
            legs=(usdt_leg(0, a),),
        )
        for i, a in enumerate(amounts)
    )
    total = sum((Decimal(a) for a in amounts), Decimal(0))
    return Plan(
        status="optimal", policy=Policy.STRICT, cost_usd=Decimal(0), credit_usd=total,
        uncovered_usd=Decimal(0), allocations=steps,
        calls=(CallOutcome(deficit, total, total, Decimal(0), Decimal(0), 0.0, 60.0),),
        solve_ms=3.2, other_policy=None, method="optimiser", fallback_reason=None,
        problem_id="0123456789abcdef", solves=1, stages=("main",),
        config="Router(backend=highspy) policy=strict",
    )  # fmt: skip


def margin_call_row(call_id: str = CALL, pool: str = "sim-a.pm", **over: object) -> MarginCallRow:
    values: dict[str, object] = {
        "id": call_id, "pool_id": pool, "venue_id": "sim-a", "status": CallStatus.OPEN.value,
        "raised_at": T0, "ratio_at_raise": Decimal("1.18"), "target_ratio": Decimal("1.5"),
        "deficit_usd": Decimal("250000"),
    }  # fmt: skip
    values.update(over)
    return MarginCallRow(**values)


def seed_plan(session: Session, plan: Plan | None = None, call_id: str = CALL) -> RecordedPlan:
    """Record the margin call and ``plan`` (default ``hand_plan()``) as its version 1."""
    record_margin_call(session, margin_call_row(call_id))
    recorded, created = record_plan(session, call_id, plan or hand_plan(), version=1, at=T0)
    assert created
    return recorded
