"""Point 13: a read never writes, and what pmr creates on disk is its owner's only.

Modes are checked under a permissive umask (0o000), so the test sees what pmr asked for and not
what the umask happened to filter away.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from ledger_helpers import T0
from sqlalchemy.exc import OperationalError

from core.errors import ConfigError
from core.ledger.store import (
    create_sqlite_store,
    init_db,
    make_engine,
    session_scope,
    sqlite_file,
)
from core.ledger.tables import VenueRow


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def test_make_engine_with_missing_sqlite_file_connects_to_nothing_and_creates_nothing(
    tmp_path: Path,
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/a/b/pmr.db")
    with pytest.raises(OperationalError, match="unable to open database file"):
        engine.connect().close()
    engine.dispose()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.usefixtures("open_umask")
def test_init_db_with_fresh_home_creates_folders_0700_and_store_files_0600(tmp_path: Path) -> None:
    path = tmp_path / "home" / "desk" / "pmr.db"
    engine = make_engine(f"sqlite:///{path}")
    report = init_db(engine)
    assert report.notes == (
        f"created folder {tmp_path / 'home'} (mode 0700)",
        f"created folder {tmp_path / 'home' / 'desk'} (mode 0700)",
        f"created store file {path} (mode 0600)",
    )
    assert (_mode(tmp_path / "home"), _mode(path.parent), _mode(path)) == (0o700, 0o700, 0o600)
    # SQLite creates the write-ahead log and shared-memory files on first write and gives them
    # the database file's mode; they exist while a connection is open.
    with engine.connect():  # keeps the sidecar files alive until the checks are done
        with session_scope(engine) as s:
            s.add(VenueRow(id="sim-a", exchange="sim", mode="sim", created_at=T0))
        sidecars = [path.with_name(path.name + suffix) for suffix in ("-wal", "-shm")]
        modes = [(p.name, _mode(p)) for p in sidecars]
    engine.dispose()
    assert modes == [("pmr.db-wal", 0o600), ("pmr.db-shm", 0o600)]


@pytest.mark.usefixtures("open_umask")
def test_init_db_with_existing_folder_keeps_its_mode_and_makes_the_file_private(
    tmp_path: Path,
) -> None:
    desk = tmp_path / "desk"
    desk.mkdir(mode=0o755)
    engine = make_engine(f"sqlite:///{desk / 'pmr.db'}")
    report = init_db(engine)
    engine.dispose()
    assert report.notes == (f"created store file {desk / 'pmr.db'} (mode 0600)",)
    assert (_mode(desk), _mode(desk / "pmr.db")) == (0o755, 0o600)


def test_init_db_with_group_readable_store_file_warns_and_leaves_the_mode(tmp_path: Path) -> None:
    path = tmp_path / "pmr.db"
    engine = make_engine(f"sqlite:///{path}")
    init_db(engine)
    path.chmod(0o640)  # a desk's deliberate choice, or an old release's umask
    report = init_db(engine)
    engine.dispose()
    assert report.notes == (
        f"warning: {path} is readable or writable by group/others (mode 0640); "
        f"`chmod 600 {path}` keeps the ledger private",
    )
    assert _mode(path) == 0o640


def test_create_sqlite_store_with_unwritable_parent_raises_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="cannot create the store") as caught:
        create_sqlite_store(blocker / "pmr.db")
    assert str(blocker / "pmr.db") in str(caught.value)


def test_sqlite_file_with_memory_and_postgres_urls_is_none(tmp_path: Path) -> None:
    assert sqlite_file(make_engine("sqlite://")) is None
    assert sqlite_file(make_engine("postgresql://u@h:5432/d")) is None
    assert sqlite_file(make_engine(f"sqlite:///{tmp_path}/x/../pmr.db")) == tmp_path / "pmr.db"


def test_connect_to_new_store_while_peer_holds_a_lock_waits_and_switches_to_wal(
    tmp_path: Path,
) -> None:
    # Switching a new file to WAL needs an exclusive lock, and SQLite refuses it at once
    # (no busy handler) while a peer holds the write lock: concurrent `pmr db init`s failed so.
    import sqlite3
    import threading

    path = tmp_path / "pmr.db"
    create_sqlite_store(path)
    peer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    peer.execute("BEGIN IMMEDIATE")  # holds the write lock, as a peer's migration does
    release = threading.Timer(0.3, lambda: peer.execute("COMMIT"))
    release.start()
    engine = make_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
    finally:
        release.join()
        peer.close()
        engine.dispose()
