"""Where a store's schema stands against this pmr's migrations; read-only.

A store is in one of five states (``SchemaStatus.state``):

- ``empty``: none of pmr's tables and no recorded revision (a new database or schema);
- ``unversioned``: pmr's tables but no ``alembic_version`` table: a store created by the last
  release without migrations (commit 77b45ba), if its tables match the baseline revision
  (``baseline_differences`` says how they don't);
- ``current``: at this pmr's head; ``behind``: at an older revision (``pmr db upgrade``);
- ``unknown``: at a revision this pmr does not have: a newer pmr upgraded it.

Nothing here writes: Alembic's ``MigrationContext`` only reads ``alembic_version`` when the
table exists, ``compare_metadata`` only reflects, and ``describe_store`` (``pmr db info``)
refuses a missing SQLite file or PostgreSQL schema instead of letting a connection create it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, MetaData, inspect, text
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session

from core.errors import ConfigError
from core.ledger.audit_log import verify_audit_chain
from core.ledger.chain import AuditKey
from core.ledger.migrations.config import BASELINE, head_revision, script_directory
from core.ledger.migrations.pgschema import db_error_reason, ensure_search_path_schema
from core.ledger.store import redact_url, sqlite_file
from core.ledger.tables import LedgerTable

__all__ = [
    "SchemaState",
    "SchemaStatus",
    "baseline_differences",
    "baseline_metadata",
    "describe_store",
    "existing_store",
    "read_status",
]

SchemaState = Literal["empty", "unversioned", "current", "behind", "unknown"]


@dataclass(frozen=True, slots=True)
class SchemaStatus:
    """The revision recorded in a store, this pmr's head, and which of pmr's tables exist."""

    current: str | None  # None: no alembic_version table (or an empty one)
    head: str
    known: bool  # current is a revision of this pmr's history
    tables: tuple[str, ...]  # pmr's tables (baseline or head) present in the store

    @property
    def state(self) -> SchemaState:
        if self.current is None:
            return "unversioned" if self.tables else "empty"
        if not self.known:
            return "unknown"
        return "current" if self.current == self.head else "behind"

    def __str__(self) -> str:
        match self.state:
            case "current":
                return f"schema revision: {self.current} (head)"
            case "behind":
                return (
                    f"schema revision: {self.current}, behind head {self.head}; "
                    "run `pmr db upgrade`"
                )
            case "unknown":
                return (
                    f"schema revision: {self.current}, unknown to this pmr (head {self.head}): "
                    "a newer pmr upgraded this store; use that version"
                )
            case "unversioned":
                return (
                    "schema revision: none recorded (a store of the previous release?); "
                    "run `pmr db upgrade`"
                )
            case "empty":
                return "schema revision: none (no pmr tables); run `pmr db init`"


def baseline_metadata(script: ScriptDirectory | None = None) -> MetaData:
    """Return the frozen tables of the baseline revision (the previous release's schema)."""
    revision = (script or script_directory()).get_revision(BASELINE)
    if revision is None:  # pragma: no cover - the baseline ships with the package
        raise ConfigError("baseline revision missing from the migrations", revision=BASELINE)
    metadata = revision.module.METADATA
    if not isinstance(metadata, MetaData):  # pragma: no cover - guards an edit of 0001
        raise ConfigError("baseline revision does not define METADATA", revision=BASELINE)
    return metadata


def read_status(conn: Connection, script: ScriptDirectory | None = None) -> SchemaStatus:
    """Return where the store behind ``conn`` stands; reads only.

    Raises
    ------
    ConfigError
        ``alembic_version`` holds several revisions (a branched history pmr never ships).
    """
    script = script or script_directory()
    heads = MigrationContext.configure(conn).get_current_heads()
    if len(heads) > 1:
        raise ConfigError("store records several schema revisions", revisions=",".join(heads))
    current = heads[0] if heads else None
    known = False
    if current is not None:
        try:
            known = script.get_revision(current) is not None
        except CommandError:  # Alembic's "no such revision"
            known = False
    ours = set(LedgerTable.metadata.tables) | set(baseline_metadata(script).tables)
    present = tuple(sorted(ours & set(inspect(conn).get_table_names())))
    return SchemaStatus(current=current, head=head_revision(script), known=known, tables=present)


def _describe(diff: Any) -> str:
    """One line for one ``compare_metadata`` difference (the database vs the baseline)."""
    if isinstance(diff, list):  # column modifications come as a list of tuples
        return "; ".join(_describe(d) for d in diff)
    kind = diff[0]
    match kind:
        case "add_table":
            return f"table {diff[1].name} missing"
        case "remove_table":
            return f"table {diff[1].name} not in the baseline"
        case "add_column":
            return f"column {diff[2]}.{diff[3].name} missing"
        case "remove_column":
            return f"column {diff[2]}.{diff[3].name} not in the baseline"
        case "modify_type" | "modify_nullable" | "modify_default" | "modify_comment":
            _, _schema, table, column, _kw, found, expected = diff
            what = kind.removeprefix("modify_")
            return f"{table}.{column} {what} is {found}, baseline has {expected}"
        case "add_index" | "add_constraint" | "add_fk":
            return f"{kind.removeprefix('add_')} {diff[1].name} missing"
        case "remove_index" | "remove_constraint" | "remove_fk":
            return f"{kind.removeprefix('remove_')} {diff[1].name} not in the baseline"
        case _:
            return repr(diff)


def baseline_differences(conn: Connection, script: ScriptDirectory | None = None) -> list[str]:
    """Describe how the store's tables differ from the baseline revision; ``[]`` if they match.

    Compared the way Alembic's autogenerate compares: tables, columns (type, nullability),
    indexes, unique and foreign-key constraints. Tables that are not pmr's are ignored (a
    PostgreSQL schema may be shared).
    """
    metadata = baseline_metadata(script)

    def only_ours(name: str | None, type_: str, parent: dict[str, str | None]) -> bool:
        return type_ != "table" or name in metadata.tables

    context = MigrationContext.configure(
        conn, opts={"compare_type": True, "include_name": only_ours}
    )
    return [_describe(d) for d in compare_metadata(context, metadata)]


def _schema_lines(conn: Connection, status: SchemaStatus) -> list[str]:
    lines = [str(status)]
    if status.state == "unversioned":
        differences = baseline_differences(conn)
        if differences:
            lines.append(f"  tables match no schema pmr knows: {'; '.join(differences[:5])}")
        else:
            lines.append(
                f"  tables match revision {BASELINE} (the previous release): "
                "`pmr db upgrade` records it and upgrades"
            )
    return lines


@contextmanager
def existing_store(engine: Engine) -> Iterator[tuple[Connection, SchemaStatus]]:
    """A connection to the store behind ``engine`` and its schema status; never creates it.

    Raises
    ------
    ConfigError
        A missing SQLite file or PostgreSQL schema (the message says to run ``pmr db init``),
        or a database error while the block runs (its reason, the URL without the password).
    """
    url = redact_url(engine.url.render_as_string(hide_password=False))
    path = sqlite_file(engine)
    if path is not None and not path.is_file():
        raise ConfigError("no store found; `pmr db init` creates one", path=str(path))
    try:
        with engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                ensure_search_path_schema(conn, create=False)
            yield conn, read_status(conn)
    except DBAPIError as exc:
        raise ConfigError(f"cannot read the store: {db_error_reason(exc)}", url=url) from None


def describe_store(engine: Engine) -> list[str]:
    """Describe the store behind ``engine`` for ``pmr db info``; never creates or changes it.

    Lines: where it is, the schema revision against this pmr's head, the row count of each of
    pmr's tables, and the audit-chain verdict (only at head: an older schema is read with
    today's models after ``pmr db upgrade``).

    Raises
    ------
    ConfigError
        No store there (missing SQLite file, missing PostgreSQL schema, no pmr tables) or it
        cannot be read; the message says to run ``pmr db init``.
    """
    url = redact_url(engine.url.render_as_string(hide_password=False))
    with existing_store(engine) as (conn, status):
        if status.state == "empty":
            raise ConfigError("store not initialised; run `pmr db init`", url=url)
        lines = [f"store: {url} ({engine.dialect.name})", *_schema_lines(conn, status)]
        for name in sorted(LedgerTable.metadata.tables):
            if name not in status.tables:
                lines.append(f"  {name:<18} {'missing':>10}")
                continue
            # Table names come from our own metadata, never from input.
            count = conn.execute(text(f'SELECT count(*) FROM "{name}"')).scalar_one()
            lines.append(f"  {name:<18} {count:>10} rows")
        if status.state == "current":
            with Session(bind=conn) as session:
                # Keyed events are authenticated when $PMR_AUDIT_KEY holds the key.
                key = AuditKey.from_env()
                lines.append(str(verify_audit_chain(session, key=key)))
        else:
            lines.append("audit chain: not verified until the store is at head")
        return lines
