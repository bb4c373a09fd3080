"""Render ``sql/schema.sql``: the PostgreSQL DDL of the models at head, plus the revision row.

Why a generated file is still committed: DBAs read and apply DDL, not Python (``psql -1 -f``),
and reviewers see a schema change as a diff of plain SQL. The tests keep it honest by building
a PostgreSQL schema from it and comparing the catalog with the migrated store and with the
models (``tests/ledger/test_ledger_schema_sql.py``); this renderer only saves the typing
(``python -m core.ledger.migrations schema-sql``).

The ``alembic_version`` table and its row make a database created from this file a store at
head, so ``pmr db upgrade`` later carries it forward like any other.
"""

from __future__ import annotations

import re

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import CreateIndex, CreateTable

from core.ledger.tables import LedgerTable

__all__ = ["render_schema_sql"]

_HEADER = """\
-- pmr store: PostgreSQL DDL (DESIGN §8), at schema revision {head}.
--
-- This file, core/ledger/tables.py and the migrations in core/ledger/migrations/versions/
-- describe the same schema; tests/ledger/test_ledger_schema_sql.py builds a database from each on
-- a real PostgreSQL and compares their catalogs (columns, types, nullability, defaults,
-- constraints, indexes). Regenerate with `uv run python -m core.ledger.migrations schema-sql`.
--
-- Conventions: money and quantities are NUMERIC(38, 18) (18 places = ETH wei; values that do not
-- fit are refused by the application, never rounded); columns named *_usd are USD, a bare amount
-- is in the row's asset; *_at columns are TIMESTAMP WITH TIME ZONE (UTC); ts_* columns are integer
-- nanoseconds; closed vocabularies are VARCHAR + CHECK; constraint names follow
-- core.ledger.tables.NAMING_CONVENTION. No table holds credentials.
--
-- Apply with:  psql "$URL" -1 -f sql/schema.sql   (then `pmr db init` adds the views; the
-- alembic_version row at the end tells `pmr db upgrade` where this store stands)
"""

_VERSION = """\
-- alembic_version: the schema revision this store is at (core/ledger/migrations).
CREATE TABLE IF NOT EXISTS alembic_version (
    version_num VARCHAR(32) NOT NULL,
    CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
);
INSERT INTO alembic_version (version_num)
SELECT '{head}' WHERE NOT EXISTS (SELECT 1 FROM alembic_version);
"""


def _tidy(ddl: str) -> str:
    """Indent with spaces, drop trailing blanks, spell FLOAT as PostgreSQL reads it."""
    lines = [line.rstrip().replace("\t", "    ") for line in ddl.strip().splitlines()]
    text = "\n".join(lines).replace("FOREIGN KEY(", "FOREIGN KEY (")
    return re.sub(r"\bFLOAT\b", "DOUBLE PRECISION", text)


def _table_block(table: Table) -> str:
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    model = next(m for m in LedgerTable.__subclasses__() if m.__table__ is table)  # type: ignore[attr-defined]
    doc = (model.__doc__ or "").strip().splitlines()[0].replace("``", "`")
    parts = [
        f"-- {table.name}: {doc}",
        _tidy(str(CreateTable(table, if_not_exists=True).compile(dialect=dialect))) + ";",
    ]
    for index in sorted(table.indexes, key=lambda i: str(i.name)):
        parts.append(
            _tidy(str(CreateIndex(index, if_not_exists=True).compile(dialect=dialect))) + ";"
        )
    return "\n".join(parts) + "\n"


def render_schema_sql(head: str) -> str:
    """Return the text of ``sql/schema.sql`` for the models at revision ``head``."""
    blocks = [_HEADER.format(head=head)]
    blocks.extend(_table_block(t) for t in LedgerTable.metadata.tables.values())
    blocks.append(_VERSION.format(head=head))
    return "\n".join(blocks)
