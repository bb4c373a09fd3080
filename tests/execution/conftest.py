"""Execution fixtures: a migrated store on SQLite and, as its twin, on PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, text

from core.ledger.store import init_db, make_engine, normalise_url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest) -> Iterator[Engine]:
    """An empty store at head: in-memory SQLite, or a fresh PostgreSQL schema dropped after."""
    if request.param == "sqlite":
        engine = make_engine("sqlite://")
        init_db(engine)
        yield engine
        engine.dispose()
        return
    url = request.getfixturevalue("postgres_url")
    schema = f"pmr_t_exec_{uuid.uuid4().hex[:10]}"
    admin = create_engine(url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = create_engine(normalise_url(url), connect_args={"options": f"-csearch_path={schema}"})
    try:
        init_db(engine)
        yield engine
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
