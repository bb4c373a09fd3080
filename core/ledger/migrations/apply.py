"""Bring a store to this pmr's head revision: ``pmr db init`` and ``pmr db upgrade``.

The steps, in one transaction that holds the store's migration lock:

1. ``migration_transaction``: on PostgreSQL a transaction plus ``pg_advisory_xact_lock`` (so
   concurrent ``pmr db init`` / ``upgrade`` runs serialise and the later ones find the work
   done); on SQLite ``BEGIN IMMEDIATE`` (the write lock) with foreign keys off while Alembic's
   batch mode copies tables, and ``PRAGMA foreign_key_check`` before ``COMMIT``.
2. ``ensure_search_path_schema`` (PostgreSQL): the schema the URL's ``search_path`` names is
   created if missing, by ``init`` only.
3. ``core.ledger.migrations.status.read_status`` and ``_plan``: an empty store starts from
   nothing (``init`` only); a store of the previous release (tables, no revision) is compared
   with the baseline and stamped ``0001`` when it matches, refused otherwise; a store at a
   revision this pmr does not know is refused.
4. Alembic ``upgrade head``; on PostgreSQL the views of ``sql/views.sql`` are dropped before
   and re-created after, because a view pins the columns it reads.

Either everything happens or nothing does: PostgreSQL DDL is transactional, and so is
SQLite's once we own ``BEGIN`` (the ``sqlite3`` module otherwise commits DDL as it goes).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.runtime.migration import MigrationInfo
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, inspect, text
from sqlalchemy.exc import DBAPIError

from core.errors import ConfigError, DataError
from core.ledger.migrations.config import BASELINE, alembic_config, script_directory
from core.ledger.migrations.pgschema import db_error_reason, ensure_search_path_schema
from core.ledger.migrations.status import SchemaStatus, baseline_differences, read_status
from core.ledger.store import (
    InitReport,
    create_sqlite_store,
    redact_url,
    sqlite_file,
    view_statements,
)
from core.ledger.tables import LedgerTable

__all__ = ["MIGRATION_LOCK_KEY", "migrate_store", "migration_transaction"]

# Arbitrary constant for pg_advisory_xact_lock ("pmr" + 0x01): serialises init / upgrade runs.
MIGRATION_LOCK_KEY = 0x706D_7201


@contextmanager
def migration_transaction(engine: Engine) -> Iterator[Connection]:
    """Yield a connection inside one transaction that holds the store's migration lock.

    Commits when the block succeeds, rolls back on any exception.

    Raises
    ------
    DataError
        (SQLite) the migration left rows whose foreign key points nowhere; rolled back.
    """
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
            yield conn
        return
    with engine.connect() as conn:
        # sqlite3 must stop issuing BEGIN itself, or DDL would commit statement by statement.
        conn.execution_options(isolation_level="AUTOCOMMIT")
        # Batch mode drops and renames tables that others reference; with foreign keys on,
        # the DROP would fail or cascade. The pragma is a no-op inside a transaction.
        conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")  # take the write lock before looking
            try:
                yield conn
                _check_foreign_keys(conn)
            except BaseException:
                if _sqlite_in_transaction(conn):
                    conn.exec_driver_sql("ROLLBACK")
                raise
            conn.exec_driver_sql("COMMIT")
        finally:
            conn.exec_driver_sql("PRAGMA foreign_keys=ON")


def _sqlite_in_transaction(conn: Connection) -> bool:
    return bool(getattr(conn.connection.dbapi_connection, "in_transaction", True))


def _check_foreign_keys(conn: Connection) -> None:
    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if broken:
        table, rowid, parent, _fk = broken[0]
        raise DataError(
            "migration would leave rows pointing at missing parents; rolled back",
            table=table,
            rowid=rowid,
            parent=parent,
            count=len(broken),
        )


def _plan(conn: Connection, status: SchemaStatus, *, create: bool, url: str) -> str | None:
    """Decide whether the store can be migrated; return the revision to stamp first, if any."""
    match status.state:
        case "empty" if not create:
            raise ConfigError(
                "no pmr store here (no pmr tables); `pmr db init` creates one", url=url
            )
        case "unknown":
            raise ConfigError(
                f"store is at schema revision {status.current}, which this pmr does not have "
                f"(its head is {status.head}): a newer pmr upgraded it; use that version",
                url=url,
            )
        case "unversioned":
            differences = baseline_differences(conn)
            if differences:
                shown = "; ".join(differences[:5])
                more = f" (+{len(differences) - 5} more)" if len(differences) > 5 else ""
                raise ConfigError(
                    "tables here match no schema pmr knows (neither the previous release's "
                    f"nor a recorded revision); refusing to touch them: {shown}{more}",
                    url=url,
                )
            return BASELINE
        case _:
            return None


def _drop_views(conn: Connection) -> None:
    """Drop our views in the store's own schema (qualified: never a namesake further along)."""
    prep = conn.dialect.identifier_preparer
    schema = prep.quote_identifier(str(conn.execute(text("SELECT current_schema()")).scalar_one()))
    for name in view_statements():
        conn.execute(text(f"DROP VIEW IF EXISTS {schema}.{prep.quote_identifier(name)}"))


def _create_views(conn: Connection) -> tuple[str, ...]:
    statements = view_statements()
    for sql in statements.values():
        conn.execute(text(sql))
    return tuple(statements)


def migrate_store(
    engine: Engine, *, create: bool, extra_version_locations: Sequence[Path] = ()
) -> InitReport:
    """Bring the store behind ``engine`` to head (see the module docstring for the steps).

    Parameters
    ----------
    create
        ``True`` for ``pmr db init`` (create the SQLite file / PostgreSQL schema / tables as
        needed); ``False`` for ``pmr db upgrade`` (refuse where there is no store).
    extra_version_locations
        More ``versions/`` folders (tests run unshipped revisions this way).

    Raises
    ------
    ConfigError
        No store (``create`` false), unreachable database, refused DDL, an unrecognised or a
        newer store; nothing is changed.
    """
    url = redact_url(engine.url.render_as_string(hide_password=False))
    backend = engine.dialect.name
    notes: list[str] = []
    path = sqlite_file(engine)
    if path is not None:
        if create:
            notes.extend(create_sqlite_store(path))
        elif not path.is_file():
            raise ConfigError("no store found; `pmr db init` creates one", path=str(path))
    applied: list[str] = []

    def record(*, step: MigrationInfo, **_kw: Any) -> None:
        if step.is_upgrade and not step.is_stamp and step.up_revision_id is not None:
            applied.append(step.up_revision_id)

    verb = "initialise" if create else "upgrade"
    try:
        with migration_transaction(engine) as conn:
            if backend == "postgresql":
                created_schema = ensure_search_path_schema(conn, create=create)
                notes.extend([created_schema] if created_schema else [])
            cfg = alembic_config(
                connection=conn,
                extra_version_locations=extra_version_locations,
                on_version_apply=record,
            )
            status = read_status(conn, script_directory(cfg))
            stamp = _plan(conn, status, create=create, url=url)
            before = set(inspect(conn).get_table_names())
            if stamp is not None:
                command.stamp(cfg, stamp)
            if status.state != "current":
                if backend == "postgresql":
                    _drop_views(conn)
                command.upgrade(cfg, "head")
            views = _create_views(conn) if backend == "postgresql" else ()
    except DBAPIError as exc:
        raise ConfigError(f"cannot {verb} the store: {db_error_reason(exc)}", url=url) from None
    except CommandError as exc:
        raise ConfigError(f"cannot {verb} the store: {exc}", url=url) from None
    tables = tuple(t.name for t in LedgerTable.metadata.sorted_tables)
    return InitReport(
        url=url,
        backend=backend,
        tables=tables,
        created=tuple(t for t in tables if t not in before),
        views=views,
        revision_before=status.current if stamp is None else stamp,
        revision=status.head,
        applied=tuple(applied),
        stamped=stamp,
        notes=tuple(notes),
    )
