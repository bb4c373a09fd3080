"""Engine, sessions and repository functions for the store (DESIGN §8).

Where the data lives: ``PMR_DATABASE_URL`` when set (PostgreSQL through psycopg 3:
``postgresql+psycopg://user@host:5432/db``), otherwise SQLite at ``$PMR_HOME/pmr.db`` with
``PMR_HOME`` defaulting to ``~/.pmr``. SQLite is the zero-setup default for one desk on one
machine; PostgreSQL is for several workers and for the post-mortem views in ``sql/views.sql``
(they use ``percentile_cont``, which SQLite lacks, so they are only created on PostgreSQL).

Repository functions take a ``Session`` and ``flush``; they never commit. The caller owns the
transaction (``session_scope`` commits on success), because only the caller knows what must be
durable together: the executor, for one, commits the ``pending`` intent *before* it sends.

Examples
--------
>>> engine = make_engine("sqlite://")
>>> report = init_db(engine)
>>> report.backend, "transfer" in report.tables
('sqlite', True)
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
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
    LedgerTable,
    MarginCallRow,
    PlanRow,
    PlanStepRow,
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
    "database_url",
    "ensure_venue",
    "get_plan",
    "init_db",
    "latest_snapshot_id",
    "load_snapshot",
    "make_engine",
    "normalise_url",
    "record_margin_call",
    "record_plan",
    "record_snapshot",
    "redact_url",
    "session_scope",
    "view_statements",
]

DEFAULT_HOME = "~/.pmr"
_URL_HINT = "expected sqlite:///PATH or postgresql+psycopg://USER@HOST:PORT/DB"
# Arbitrary constant for pg_advisory_xact_lock: serialises concurrent `pmr db init` runs.
_INIT_LOCK_KEY = 0x706D_7201


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
    home = Path(env.get("PMR_HOME", "").strip() or DEFAULT_HOME).expanduser()
    return f"sqlite:///{home.resolve() / 'pmr.db'}"


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


def _enable_sqlite_pragmas(engine: Engine, *, file_backed: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")  # SQLite ignores FKs unless asked
        if file_backed:
            cursor.execute("PRAGMA journal_mode=WAL")  # readers don't block the writer
            cursor.execute("PRAGMA busy_timeout=10000")
        cursor.close()


def make_engine(url: str | None = None, *, env: Mapping[str, str] | None = None) -> Engine:
    """Create the engine for ``url`` (default: ``database_url(env)``).

    In-memory SQLite (``sqlite://``) gets a ``StaticPool`` so every session sees the same
    database; a file-backed SQLite gets its directory created, WAL and foreign keys on.

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
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(parsed)
            _enable_sqlite_pragmas(engine, file_backed=True)
            return engine
        return create_engine(parsed, pool_pre_ping=True)
    except (ArgumentError, NoSuchModuleError, OSError) as exc:
        raise ConfigError(
            f"cannot create the database engine: {exc}", url=redact_url(raw)
        ) from None


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
    """What ``init_db`` did: where, on which backend, tables created vs already there, views."""

    url: str  # password redacted
    backend: str
    tables: tuple[str, ...]
    created: tuple[str, ...]
    views: tuple[str, ...]

    def __str__(self) -> str:
        views = ", ".join(self.views) if self.views else "none (PostgreSQL only)"
        return (
            f"schema ready at {self.url} ({self.backend}): {len(self.tables)} tables, "
            f"{len(self.created)} created now; views: {views}"
        )


def view_statements() -> dict[str, str]:
    """Return the ``CREATE OR REPLACE VIEW`` statements of ``sql/views.sql`` by view name."""
    path = SQL_DIR / "views.sql"
    if not path.is_file():
        raise ConfigError("view definitions not found (is sql/ installed?)", path=str(path))
    text_ = path.read_text(encoding="utf-8")
    return {q.name: q.sql for q in parse_named_queries(text_, str(path)).values()}


def init_db(engine: Engine) -> InitReport:
    """Create every ledger table that is missing (and, on PostgreSQL, the views); idempotent.

    Existing tables are left untouched: this never drops or alters anything, so running it on
    a live store is safe. Schema changes to existing tables need a migration, not this.

    Raises
    ------
    ConfigError
        The database cannot be reached or refused the DDL (the driver's reason, one line).
    """
    url = redact_url(engine.url.render_as_string(hide_password=False))
    backend = engine.dialect.name
    wanted = tuple(t.name for t in LedgerTable.metadata.sorted_tables)
    try:
        with engine.begin() as conn:
            if backend == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _INIT_LOCK_KEY})
            before = set(inspect(conn).get_table_names())
            LedgerTable.metadata.create_all(conn, checkfirst=True)
            views: tuple[str, ...] = ()
            if backend == "postgresql":
                statements = view_statements()
                for sql in statements.values():
                    conn.execute(text(sql))
                views = tuple(statements)
    except DBAPIError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        raise ConfigError(f"cannot initialise the store: {reason}", url=url) from None
    created = tuple(name for name in wanted if name not in before)
    return InitReport(url, backend, wanted, created, views)


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


def record_margin_call(session: Session, row: MarginCallRow) -> tuple[MarginCallRow, bool]:
    """Insert a margin call unless its id is already recorded; return (row, created).

    The id is derived from the breach by the monitor, so a repeated detection finds the
    existing row and does not start a second cure (DESIGN §9).
    """
    existing = session.get(MarginCallRow, row.id)
    if existing is not None:
        return existing, False
    session.add(row)
    session.flush()
    return row, True


def record_plan(
    session: Session, plan: PlanRow, steps: Sequence[PlanStepRow]
) -> tuple[PlanRow, bool]:
    """Insert a plan and its steps unless the plan id exists; return (plan row, created).

    Raises
    ------
    DataError
        A step names another plan or two steps share a ``step_no``.
    """
    existing = session.get(PlanRow, plan.id)
    if existing is not None:
        return existing, False
    numbers = [s.step_no for s in steps]
    if len(set(numbers)) != len(numbers):
        raise DataError("plan steps must have distinct step_no", plan_id=plan.id, steps=numbers)
    for step in steps:
        if step.plan_id != plan.id:
            raise DataError(
                "plan step belongs to another plan", plan_id=plan.id, step_plan_id=step.plan_id
            )
    session.add(plan)
    session.flush()  # the plan row must exist before its steps reference it
    session.add_all(list(steps))
    session.flush()
    return plan, True


def get_plan(session: Session, plan_id: str) -> tuple[PlanRow, list[PlanStepRow]] | None:
    """Return the plan and its steps in ``step_no`` order, or ``None``."""
    plan = session.get(PlanRow, plan_id)
    if plan is None:
        return None
    steps = session.exec(
        select(PlanStepRow).where(PlanStepRow.plan_id == plan_id).order_by(col(PlanStepRow.step_no))
    ).all()
    return plan, list(steps)
