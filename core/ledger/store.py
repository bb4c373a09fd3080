"""Engine, sessions and repository functions for the store (DESIGN §8).

Where the data lives: ``PMR_DATABASE_URL`` when set (PostgreSQL through psycopg 3:
``postgresql+psycopg://user@host:5432/db``), otherwise SQLite at ``$PMR_HOME/pmr.db`` with
``PMR_HOME`` defaulting to ``~/.pmr``. SQLite is the zero-setup default for one desk on one
machine; PostgreSQL is for several workers and for the post-mortem views in ``sql/views.sql``
(they use ``percentile_cont``, which SQLite lacks, so they are only created on PostgreSQL).

Creating vs opening: only ``init_db`` creates a store (the SQLite folder ``0700`` and file
``0600``, or a PostgreSQL schema named by ``search_path``); an engine from ``make_engine`` opens a
SQLite file read-write but never creates it, so a read (``pmr db info``) never writes. The schema
itself is owned by the Alembic migrations in ``core.ledger.migrations``: ``init_db`` upgrades to
head, ``upgrade_db`` upgrades an existing store.

Repository functions take a ``Session`` and ``flush``; they never commit. The caller owns the
transaction (``session_scope`` commits on success), because only the caller knows what must be
durable together: the executor, for one, commits the ``pending`` intent *before* it sends.

Examples
--------
>>> engine = make_engine("sqlite://")
>>> report = init_db(engine)
>>> report.backend, "transfer" in report.tables, report.revision == report.applied[-1]
('sqlite', True, True)
"""

from __future__ import annotations

import os
import sqlite3
import stat
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.pool import StaticPool
from sqlmodel import Session, col, select

from core.domain import Balance, MarkPrice, Portfolio, Position
from core.errors import ConfigError, DataError
from core.ledger.mappers import (
    balance_from_row,
    balance_to_row,
    position_from_row,
    position_to_row,
    price_from_row,
    price_to_row,
)
from core.ledger.queries import SQL_DIR, parse_named_queries
from core.ledger.tables import (
    BalanceRow,
    PositionRow,
    PriceRow,
    SnapshotRow,
    VenueRow,
)
from core.ledger.vocab import SnapshotSource, VenueMode

__all__ = [
    "DEFAULT_HOME",
    "InitReport",
    "Snapshot",
    "create_sqlite_store",
    "database_url",
    "ensure_venue",
    "init_db",
    "latest_snapshot_id",
    "load_snapshot",
    "make_engine",
    "normalise_url",
    "pmr_home",
    "record_snapshot",
    "redact_url",
    "session_scope",
    "sqlite_file",
    "upgrade_db",
    "view_statements",
]

DEFAULT_HOME = "~/.pmr"
_URL_HINT = "expected sqlite:///PATH or postgresql+psycopg://USER@HOST:PORT/DB"
# A desk's ledger is not world-readable: what pmr creates is its owner's only.
STORE_DIR_MODE = 0o700
STORE_FILE_MODE = 0o600


def pmr_home(env: Mapping[str, str] | None = None) -> Path:
    """pmr's own folder: ``PMR_HOME`` (default ``~/.pmr``), user-expanded, not created.

    >>> str(pmr_home({"PMR_HOME": "/srv/desk"}))
    '/srv/desk'
    """
    env = os.environ if env is None else env
    return Path(env.get("PMR_HOME", "").strip() or DEFAULT_HOME).expanduser()


def database_url(env: Mapping[str, str] | None = None) -> str:
    """Return the store URL from ``PMR_DATABASE_URL``, else SQLite under ``PMR_HOME``.

    Examples
    --------
    >>> database_url({"PMR_HOME": "/srv/desk"})
    'sqlite:////srv/desk/pmr.db'
    >>> database_url({"PMR_DATABASE_URL": "postgresql://pmr@db:5432/pmr"})
    'postgresql+psycopg://pmr@db:5432/pmr'
    """
    env = os.environ if env is None else env
    explicit = env.get("PMR_DATABASE_URL", "").strip()
    if explicit:
        return normalise_url(explicit, where="PMR_DATABASE_URL")
    return f"sqlite:///{pmr_home(env).resolve() / 'pmr.db'}"


def _parse(url: str, where: str) -> URL:
    try:
        return make_url(url)
    except ArgumentError:
        # Do not echo the value: it may hold a password we cannot locate in a broken URL.
        raise ConfigError(f"not a database URL; {_URL_HINT}", where=where) from None


def normalise_url(url: str, *, where: str = "database URL") -> str:
    """Check ``url`` names a supported backend and pin PostgreSQL to the psycopg 3 driver.

    ``postgresql://`` and ``postgres://`` are rewritten to ``postgresql+psycopg://`` (psycopg 3
    is the driver we ship; SQLAlchemy's bare default would be psycopg2, which is not installed).

    Raises
    ------
    ConfigError
        Unparseable URL or a backend other than SQLite / PostgreSQL-with-psycopg.
    """
    parsed = _parse(url, where)
    driver = parsed.drivername
    if driver in {"postgresql", "postgres"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif driver not in {"postgresql+psycopg", "sqlite", "sqlite+pysqlite"}:
        raise ConfigError(
            f"unsupported database driver {driver!r}; {_URL_HINT}",
            where=where,
            url=parsed.render_as_string(hide_password=True),
        )
    return parsed.render_as_string(hide_password=False)


def redact_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***``, safe for logs and terminals."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable URL>"


SQLITE_BUSY_TIMEOUT_S = 10.0


def _enable_sqlite_pragmas(engine: Engine, *, file_backed: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")  # SQLite ignores FKs unless asked
        if file_backed:
            cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
            _ensure_wal(cursor)
        cursor.close()


def _ensure_wal(cursor: Any) -> None:
    """Put the database in WAL mode (readers don't block the writer); wait out a peer's lock.

    WAL is recorded in the file, so this is a read once any connection has switched it. The
    switch itself needs an exclusive lock, and SQLite answers "database is locked" at once,
    without its busy handler, while another connection holds the write lock: two processes opening a
    new store together (``pmr db init`` from several workers) would fail. So the switch is
    retried, with a growing pause, for as long as the busy timeout any other statement gets.
    """
    if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
        return
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    pause = 0.005
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.25)


def _open_existing_only(engine: Engine, path: Path) -> None:
    """Make every connection open ``path`` read-write without creating it (SQLite ``mode=rw``).

    sqlite3 creates a missing file on connect by default, so a mere read would leave an empty
    store (and its folder) behind. A URI filename with ``mode=rw`` fails instead; ``init_db``
    creates the file first, with the right permissions, when creating is what was asked.
    """
    uri = f"{path.as_uri()}?mode=rw"

    @event.listens_for(engine, "do_connect")
    def _on_do_connect(
        _dialect: Any, _record: Any, cargs: list[Any], cparams: dict[str, Any]
    ) -> None:
        cargs[:] = [uri]
        cparams["uri"] = True


def make_engine(url: str | None = None, *, env: Mapping[str, str] | None = None) -> Engine:
    """Create the engine for ``url`` (default: ``database_url(env)``); touch nothing on disk.

    In-memory SQLite (``sqlite://``) gets a ``StaticPool`` so every session sees the same
    database; a file-backed SQLite gets WAL and foreign keys on, and its connections open the
    file only if it exists (``init_db`` is what creates a store).

    Raises
    ------
    ConfigError
        Bad or unsupported URL (the message never includes the password).
    """
    raw = database_url(env) if url is None else normalise_url(url)
    parsed = _parse(raw, "database URL")
    try:
        if parsed.get_backend_name() == "sqlite":
            database = parsed.database or ""
            if database in {"", ":memory:"}:
                engine = create_engine(
                    parsed,
                    poolclass=StaticPool,
                    connect_args={"check_same_thread": False},
                )
                _enable_sqlite_pragmas(engine, file_backed=False)
                return engine
            engine = create_engine(parsed)
            _enable_sqlite_pragmas(engine, file_backed=True)
            if not parsed.query.get("uri"):  # a URI filename says for itself how to open
                _open_existing_only(engine, Path(database).expanduser().resolve())
            return engine
        return create_engine(parsed, pool_pre_ping=True)
    except (ArgumentError, NoSuchModuleError, OSError) as exc:
        raise ConfigError(
            f"cannot create the database engine: {exc}", url=redact_url(raw)
        ) from None


def sqlite_file(engine: Engine) -> Path | None:
    """Return the file behind a file-backed SQLite ``engine``; ``None`` for memory or PostgreSQL."""
    url = engine.url
    database = url.database or ""
    if url.get_backend_name() != "sqlite" or database in {"", ":memory:"} or url.query.get("uri"):
        return None
    return Path(database).expanduser().resolve()


def create_sqlite_store(path: Path) -> tuple[str, ...]:
    """Create ``path`` (an empty SQLite database) and its missing folders; say what was made.

    Folders are created ``0700`` and the file ``0600`` whatever the umask (SQLite gives the
    ``-wal`` and ``-shm`` files the database file's mode). Existing folders and files are left
    as they are; a store file readable by group or others gets a warning instead, because
    tightening someone's deliberate setting is not ours to do silently.

    Raises
    ------
    ConfigError
        A folder or the file cannot be created (the OS reason, one line).
    """
    notes: list[str] = []
    try:
        missing = [p for p in (path.parent, *path.parent.parents) if not p.exists()]
        for folder in reversed(missing):
            try:
                folder.mkdir(mode=STORE_DIR_MODE)
            except FileExistsError:  # created meanwhile by a concurrent `pmr db init`
                continue
            folder.chmod(STORE_DIR_MODE)  # mkdir's mode is filtered by the umask
            notes.append(f"created folder {folder} (mode 0700)")
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, STORE_FILE_MODE)
        except FileExistsError:
            mode = stat.S_IMODE(path.stat().st_mode)
            if mode & 0o077:
                notes.append(
                    f"warning: {path} is readable or writable by group/others (mode {mode:04o}); "
                    f"`chmod 600 {path}` keeps the ledger private"
                )
        else:
            os.close(fd)
            path.chmod(STORE_FILE_MODE)
            notes.append(f"created store file {path} (mode 0600)")
    except OSError as exc:
        raise ConfigError(
            f"cannot create the store: {exc.strerror or exc}", path=str(exc.filename or path)
        ) from None
    return tuple(notes)


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """Yield a session that commits on success and rolls back on any exception."""
    with Session(engine) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


@dataclass(frozen=True, slots=True)
class InitReport:
    """What ``init_db`` / ``upgrade_db`` did: where, which revisions, what was created.

    ``stamped`` is the baseline revision recorded on a store of the previous release (it had
    tables but no migration history); ``notes`` name anything created outside the tables (the
    SQLite folder and file, a PostgreSQL schema) and permission warnings.
    """

    url: str  # password redacted
    backend: str
    tables: tuple[str, ...]
    created: tuple[str, ...]  # tables that did not exist before this run
    views: tuple[str, ...]
    revision_before: str | None
    revision: str  # the store's revision now: this pmr's head
    applied: tuple[str, ...]  # revisions run now, in order
    stamped: str | None = None
    notes: tuple[str, ...] = ()

    def __str__(self) -> str:
        views = ", ".join(self.views) if self.views else "none (PostgreSQL only)"
        applied = ", ".join(self.applied)
        if not self.applied:
            steps = f"revision {self.revision} (head), nothing to apply"
        elif self.revision_before is None:
            steps = f"revision {self.revision} (head): applied {applied} to an empty store"
        else:
            steps = f"revision {self.revision} (head): applied {applied} on {self.revision_before}"
        lines = [
            f"schema ready at {self.url} ({self.backend}): {len(self.tables)} tables, "
            f"{len(self.created)} created now; {steps}; views: {views}",
        ]
        if self.stamped is not None:
            lines.append(
                f"recognised a store of the previous release (no migration history, tables "
                f"match revision {self.stamped}) and recorded it as revision {self.stamped}"
            )
        lines.extend(self.notes)
        return "\n".join(lines)


def view_statements() -> dict[str, str]:
    """Return the ``CREATE OR REPLACE VIEW`` statements of ``sql/views.sql`` by view name."""
    path = SQL_DIR / "views.sql"
    if not path.is_file():
        raise ConfigError("view definitions not found (is sql/ installed?)", path=str(path))
    text_ = path.read_text(encoding="utf-8")
    return {q.name: q.sql for q in parse_named_queries(text_, str(path)).values()}


def init_db(engine: Engine) -> InitReport:
    """Create the store if needed and upgrade it to this pmr's head revision; idempotent.

    A new SQLite store gets its folder (``0700``) and file (``0600``); on PostgreSQL a schema
    named first in ``search_path`` that does not exist is created. A store of the previous
    release (tables, no migration history) is recognised, recorded as the baseline revision
    and upgraded; a database with other tables of ours is refused. On PostgreSQL the views of
    ``sql/views.sql`` are (re)created, and concurrent runs serialise on an advisory lock.

    Raises
    ------
    ConfigError
        Unreachable database, refused DDL, a store pmr does not recognise or a newer one.
    """
    from core.ledger.migrations.apply import migrate_store  # Alembic loads only when needed

    return migrate_store(engine, create=True)


def upgrade_db(engine: Engine) -> InitReport:
    """Upgrade an existing store to this pmr's head revision; never creates one.

    Same as ``init_db`` except that a missing SQLite file, a missing PostgreSQL schema or a
    database without pmr's tables is refused (``pmr db init`` creates a store).

    Raises
    ------
    ConfigError
        No store there, or as for ``init_db``.
    """
    from core.ledger.migrations.apply import migrate_store

    return migrate_store(engine, create=False)


def ensure_venue(
    session: Session, venue_id: str, *, exchange: str, mode: VenueMode, at: datetime
) -> VenueRow:
    """Return the venue row, inserting it first if new. Never stores credentials."""
    row = session.get(VenueRow, venue_id)
    if row is None:
        row = VenueRow(id=venue_id, exchange=exchange, mode=mode.value, created_at=at)
        session.add(row)
        session.flush()
    return row


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A stored snapshot rebuilt as domain objects."""

    id: int
    taken_at: datetime
    source: SnapshotSource
    venue_id: str | None
    balances: tuple[Balance, ...]
    positions: tuple[Position, ...]
    prices: tuple[MarkPrice, ...]

    def portfolio(self) -> Portfolio:
        """Return the snapshot as a ``Portfolio`` as of ``taken_at`` (prices keyed by symbol)."""
        return Portfolio.of(self.balances, self.positions, self.prices, self.taken_at)


def record_snapshot(
    session: Session,
    *,
    taken_at: datetime,
    source: SnapshotSource,
    venue_id: str | None = None,
    balances: Iterable[Balance] = (),
    positions: Iterable[Position] = (),
    prices: Iterable[MarkPrice] = (),
) -> int:
    """Store one snapshot of balances, positions and prices; return its id.

    All values are mapped (and checked against the column precision) before anything is added
    to the session, so a bad value refuses the whole snapshot rather than half of it. Two rows
    for one natural key (a balance's venue/wallet/asset, a position's venue/wallet/symbol/side,
    a price's symbol) are refused with a ``DataError`` naming it, not a database error: the two
    legs of a hedge-mode position differ by ``side`` and are stored side by side.
    """
    balances, positions, prices = tuple(balances), tuple(positions), tuple(prices)
    _refuse_duplicates("balance", [f"{b.venue}/{b.wallet.value}/{b.asset}" for b in balances])
    _refuse_duplicates("position", [p.key for p in positions])
    _refuse_duplicates("price", [m.symbol for m in prices])
    # Map once with a placeholder id to validate everything up front.
    for b in balances:
        balance_to_row(b, 0)
    for p in positions:
        position_to_row(p, 0)
    for m in prices:
        price_to_row(m, 0)
    head = SnapshotRow(taken_at=taken_at, source=source.value, venue_id=venue_id)
    session.add(head)
    session.flush()
    if head.id is None:  # pragma: no cover - flush always assigns the key
        raise DataError("snapshot id was not assigned", where="record_snapshot")
    sid = head.id
    session.add_all([balance_to_row(b, sid) for b in balances])
    session.add_all([position_to_row(p, sid) for p in positions])
    session.add_all([price_to_row(m, sid) for m in prices])
    session.flush()
    return sid


def _refuse_duplicates(kind: str, keys: list[str]) -> None:
    seen: set[str] = set()
    for key in keys:
        if key in seen:
            raise DataError(f"two {kind} rows for one key in a snapshot", key=key)
        seen.add(key)


def load_snapshot(session: Session, snapshot_id: int) -> Snapshot:
    """Rebuild snapshot ``snapshot_id`` as domain objects (rows in insertion order).

    Raises
    ------
    DataError
        No such snapshot.
    """
    head = session.get(SnapshotRow, snapshot_id)
    if head is None:
        raise DataError("no such snapshot", snapshot_id=snapshot_id)
    balances = session.exec(
        select(BalanceRow).where(BalanceRow.snapshot_id == snapshot_id).order_by(col(BalanceRow.id))
    ).all()
    positions = session.exec(
        select(PositionRow)
        .where(PositionRow.snapshot_id == snapshot_id)
        .order_by(col(PositionRow.id))
    ).all()
    prices = session.exec(
        select(PriceRow).where(PriceRow.snapshot_id == snapshot_id).order_by(col(PriceRow.id))
    ).all()
    return Snapshot(
        id=snapshot_id,
        taken_at=head.taken_at,
        source=SnapshotSource(head.source),
        venue_id=head.venue_id,
        balances=tuple(balance_from_row(r) for r in balances),
        positions=tuple(position_from_row(r) for r in positions),
        prices=tuple(price_from_row(r) for r in prices),
    )


def latest_snapshot_id(
    session: Session, *, source: SnapshotSource, venue_id: str | None = None
) -> int | None:
    """Return the id of the most recent snapshot from ``source`` (for ``venue_id``), if any."""
    stmt = select(SnapshotRow.id).where(SnapshotRow.source == source.value)
    if venue_id is not None:
        stmt = stmt.where(SnapshotRow.venue_id == venue_id)
    stmt = stmt.order_by(col(SnapshotRow.taken_at).desc(), col(SnapshotRow.id).desc()).limit(1)
    return session.exec(stmt).first()
