"""Ledger fixtures: a ``session`` on ``sqlite://`` + ``StaticPool`` and its PostgreSQL twin.

PostgreSQL isolation: every test module gets its own freshly created schema (random name),
dropped with CASCADE afterwards, and every test runs inside an outer transaction that is rolled
back, so repeated or parallel runs never see each other's rows. SQLite tests get a fresh
in-memory database per test (creating 14 tables takes milliseconds).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from ledger_helpers import T0, fresh_pg_schema, rollback_session, sqlite_memory_engine
from sqlalchemy import Engine
from sqlmodel import Session

from core.ledger.store import ensure_venue, init_db
from core.ledger.vocab import VenueMode


@pytest.fixture(scope="module")
def pg_engine(postgres_url: str, request: pytest.FixtureRequest) -> Iterator[Engine]:
    """Module-scoped engine on a fresh PostgreSQL schema migrated to head (views included).

    Built by the migrations, as a desk's store is, not by ``create_all``: a schema made from
    the models carries no revision and would be refused by ``init_db`` once head moves past
    the baseline.
    """
    label = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")[:20]
    with fresh_pg_schema(postgres_url, label) as (engine, _schema):
        init_db(engine)
        yield engine


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def session(request: pytest.FixtureRequest) -> Iterator[Session]:
    """A ledger session on SQLite and, as its twin, on PostgreSQL (skipped if not configured)."""
    if request.param == "sqlite":
        engine = sqlite_memory_engine()
        with Session(engine) as s:
            yield s
        engine.dispose()
        return
    engine = request.getfixturevalue("pg_engine")
    with rollback_session(engine) as s:
        yield s


@pytest.fixture
def venues(session: Session) -> tuple[str, str]:
    """Two venues every ledger test can reference: a simulated Binance and a simulated OKX."""
    ensure_venue(session, "sim-a", exchange="sim", mode=VenueMode.SIM, at=T0)
    ensure_venue(session, "sim-b", exchange="sim", mode=VenueMode.SIM, at=T0)
    return "sim-a", "sim-b"
