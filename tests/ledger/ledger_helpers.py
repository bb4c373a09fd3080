"""Helpers shared by the ledger tests (fixtures live in conftest.py, which imports these)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.pool import StaticPool
from sqlmodel import Session

from core.ledger.store import make_engine, normalise_url
from core.ledger.tables import LedgerTable

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
