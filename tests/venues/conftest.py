"""Venue test fixtures: the example desk on simulated venues (the real simulator, no mocks),
and transfer claims read from a real ledger store (in-memory SQLite)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import Session

from core.clock import ManualClock
from core.config import DeskConfig, load_desk
from core.ledger.claims import StoreTransferClaims
from core.ledger.store import make_engine
from core.ledger.tables import LedgerTable
from core.venues.factory import DeskVenues, build_desk_venues

EXAMPLE_DESK = Path(__file__).resolve().parents[2] / "examples" / "desk.toml"


@pytest.fixture(scope="session")
def desk() -> DeskConfig:
    return load_desk(EXAMPLE_DESK)


@pytest.fixture
def cold_sims(desk: DeskConfig, clock: ManualClock) -> Iterator[DeskVenues]:
    """Both example venues, in-process, as built: no request made yet (not warmed up)."""
    with build_desk_venues(desk, clock) as dv:
        yield dv


@pytest.fixture
def sims(cold_sims: DeskVenues) -> DeskVenues:
    """Both example venues, in-process, warmed up as the executor does at start."""
    cold_sims.warm_up()
    return cold_sims


@pytest.fixture
def store_session() -> Iterator[Session]:
    """A session on a fresh in-memory ledger (the real store, SQLite)."""
    engine = make_engine("sqlite://")
    LedgerTable.metadata.create_all(engine)
    with Session(engine) as session:
        yield session
    engine.dispose()


@pytest.fixture
def claims(store_session: Session) -> StoreTransferClaims:
    """Transfer claims answered by the store (empty unless the test records transfers)."""
    return StoreTransferClaims(store_session)
