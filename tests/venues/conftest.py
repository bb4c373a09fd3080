"""Venue test fixtures: the example desk on simulated venues (the real simulator, no mocks)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from core.clock import ManualClock
from core.config import DeskConfig, load_desk
from core.venues.factory import DeskVenues, build_desk_venues

EXAMPLE_DESK = Path(__file__).resolve().parents[2] / "examples" / "desk.toml"


@pytest.fixture(scope="session")
def desk() -> DeskConfig:
    return load_desk(EXAMPLE_DESK)


@pytest.fixture
def sims(desk: DeskConfig, clock: ManualClock) -> Iterator[DeskVenues]:
    """Both example venues, in-process."""
    with build_desk_venues(desk, clock) as dv:
        yield dv
