"""Shared fixtures: seeded RNG, manual clock, SQLite/PostgreSQL sessions, the shared-data folder.

PostgreSQL tests run when ``PMR_TEST_POSTGRES_URL`` is set (``.ci/run`` sets it) and skip with a
message saying how to enable them otherwise. Tests that read third-party data in place use
``shared_dir`` and skip when ``PMR_SHARED_DIR`` (default ``../shared``) is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from core.clock import ManualClock

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261127)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The read-only third-party data folder; tests that need it skip when it is absent."""
    path = Path(os.environ.get("PMR_SHARED_DIR", REPO_ROOT.parent / "shared")).resolve()
    if not path.is_dir():
        pytest.skip(f"shared data folder {path} is absent; set PMR_SHARED_DIR to enable")
    return path


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """URL of a real PostgreSQL database for the twin tests, or a skip saying how to enable it."""
    url = os.environ.get("PMR_TEST_POSTGRES_URL")
    if not url:
        pytest.skip(
            "PostgreSQL tests need PMR_TEST_POSTGRES_URL, e.g. "
            "postgresql+psycopg://postgres@127.0.0.1:5432/test (set by .ci/run)"
        )
    return url
