"""``sql/schema.sql``, the models and the migrations describe the same PostgreSQL schema.

Each builds its own fresh schema on the real server (``schema.sql`` with psql's semantics, the
models with ``create_all``, the migrations with ``init_db``); the catalogs are then compared
name by name: columns (type, length, precision, scale, nullability, default), constraints
(kind and PostgreSQL's own rendering of the definition) and indexes. Comparing catalogs rather
than DDL text means formatting and spelling (``FLOAT`` vs ``DOUBLE PRECISION``) don't matter
while every semantic difference does. A model change without a revision fails here.

Column *order* is compared between ``schema.sql`` and the models (both list columns as
``tables.py`` declares them) but not against the migrated store: PostgreSQL appends a column a
revision adds, wherever the model declares it, and nothing in pmr reads columns by position.
The migrated store and ``schema.sql`` also carry ``alembic_version`` at head.
"""

from __future__ import annotations

from typing import Any

import pytest
from ledger_helpers import fresh_pg_schema
from sqlalchemy import Engine, text

from core.ledger.migrations.config import head_revision
from core.ledger.queries import SQL_DIR
from core.ledger.store import init_db
from core.ledger.tables import LedgerTable

pytestmark = pytest.mark.postgres

COLUMNS = """
SELECT table_name, ordinal_position, column_name, data_type, character_maximum_length,
       numeric_precision, numeric_scale, is_nullable, column_default
FROM information_schema.columns
WHERE table_schema = current_schema()
ORDER BY table_name, ordinal_position
"""
CONSTRAINTS = """
SELECT rel.relname AS table_name, con.conname, con.contype, pg_get_constraintdef(con.oid) AS def
FROM pg_constraint AS con
JOIN pg_class AS rel ON rel.oid = con.conrelid
JOIN pg_namespace AS nsp ON nsp.oid = rel.relnamespace
WHERE nsp.nspname = current_schema()
ORDER BY rel.relname, con.conname
"""
INDEXES = """
SELECT tablename, indexname, indexdef
FROM pg_indexes
WHERE schemaname = current_schema()
ORDER BY tablename, indexname
"""


Catalog = dict[str, list[tuple[Any, ...]]]
VERSION_TABLE = "alembic_version"


def _catalog(engine: Engine, schema: str) -> Catalog:
    def norm(row: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(v.replace(f"{schema}.", "") if isinstance(v, str) else v for v in row)

    with engine.connect() as conn:
        return {
            name: [norm(tuple(r)) for r in conn.execute(text(sql))]
            for name, sql in (("columns", COLUMNS), ("constraints", CONSTRAINTS),
                              ("indexes", INDEXES))
        }  # fmt: skip


def _without_version_table(catalog: Catalog) -> Catalog:
    return {part: [r for r in rows if r[0] != VERSION_TABLE] for part, rows in catalog.items()}


def _unordered(catalog: Catalog) -> Catalog:
    """Drop the ordinal position (index 1) of column rows; keep everything else."""
    columns = sorted(r[:1] + r[2:] for r in catalog["columns"])
    return {**catalog, "columns": columns}


def _version(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars())


@pytest.fixture(scope="module")
def catalogs(postgres_url: str) -> dict[str, Catalog]:
    """The catalogs of three schemas built from the models, from schema.sql and by migrating."""
    with (
        fresh_pg_schema(postgres_url, "models") as (models_engine, models_schema),
        fresh_pg_schema(postgres_url, "ddl") as (ddl_engine, ddl_schema),
        fresh_pg_schema(postgres_url, "migrated") as (migrated_engine, migrated_schema),
    ):
        LedgerTable.metadata.create_all(models_engine)
        with ddl_engine.begin() as conn:
            conn.exec_driver_sql((SQL_DIR / "schema.sql").read_text())
        init_db(migrated_engine)
        with migrated_engine.begin() as conn:  # views are sql/views.sql's business, not DDL's
            for (view,) in conn.execute(
                text("SELECT viewname FROM pg_views WHERE schemaname = current_schema()")
            ):
                conn.execute(text(f'DROP VIEW "{view}"'))
        return {
            "models": _catalog(models_engine, models_schema),
            "ddl": _catalog(ddl_engine, ddl_schema),
            "migrated": _catalog(migrated_engine, migrated_schema),
            "versions": [("ddl", *_version(ddl_engine)), ("migrated", *_version(migrated_engine))],
        }


def _assert_same(part: str, left: tuple[str, Catalog], right: tuple[str, Catalog]) -> None:
    (left_name, a), (right_name, b) = left, right
    only_left = sorted(set(a[part]) - set(b[part]))
    only_right = sorted(set(b[part]) - set(a[part]))
    assert (only_left, only_right) == ([], []), (
        f"{left_name} and {right_name} disagree on {part}: "
        f"only in {left_name} {only_left}, only in {right_name} {only_right}"
    )


@pytest.mark.parametrize("part", ["columns", "constraints", "indexes"])
def test_schema_sql_with_models_built_on_postgres_has_identical_catalog(
    catalogs: dict[str, Catalog], part: str
) -> None:
    ddl = _without_version_table(catalogs["ddl"])
    _assert_same(part, ("core/ledger/tables.py", catalogs["models"]), ("sql/schema.sql", ddl))
    assert catalogs["models"][part] == ddl[part]  # same order too (column positions)


def test_schema_sql_with_migrated_store_records_the_head_revision(
    catalogs: dict[str, Catalog],
) -> None:
    head = head_revision()
    assert catalogs["versions"] == [("ddl", head), ("migrated", head)]


@pytest.mark.parametrize("part", ["columns", "constraints", "indexes"])
def test_migrated_store_on_postgres_has_the_catalog_of_schema_sql_and_models(
    catalogs: dict[str, Catalog], part: str
) -> None:
    """A model change without a revision (or a revision without schema.sql) fails here."""
    migrated = _unordered(catalogs["migrated"])
    _assert_same(
        part, ("the migrated store", migrated), ("sql/schema.sql", _unordered(catalogs["ddl"]))
    )
    _assert_same(
        part,
        ("the migrated store", _without_version_table(migrated)),
        ("core/ledger/tables.py", _unordered(catalogs["models"])),
    )


def test_schema_sql_catalog_covers_every_model_table_and_money_type(
    catalogs: dict[str, Catalog],
) -> None:
    from_models = catalogs["models"]
    tables = {row[0] for row in from_models["columns"]}
    assert tables == set(LedgerTable.metadata.tables)
    money = {(r[0], r[2]) for r in from_models["columns"] if r[3] == "numeric"}
    assert ("transfer", "amount") in money
    assert all(r[5:7] == (38, 18) for r in from_models["columns"] if r[3] == "numeric")
    kinds = {r[3] for r in from_models["columns"]}
    assert {"timestamp with time zone", "jsonb", "bigint", "double precision"} <= kinds
    assert "timestamp without time zone" not in kinds


def test_schema_sql_with_one_changed_column_is_detected(postgres_url: str) -> None:
    """The comparison can fail: a schema.sql with one nullability flipped differs."""
    ddl = (SQL_DIR / "schema.sql").read_text()
    broken = ddl.replace(
        "    latency_ms DOUBLE PRECISION,", "    latency_ms DOUBLE PRECISION NOT NULL,"
    )
    assert broken != ddl
    with (
        fresh_pg_schema(postgres_url, "good") as (good_engine, good_schema),
        fresh_pg_schema(postgres_url, "bad") as (bad_engine, bad_schema),
    ):
        with good_engine.begin() as conn:
            conn.exec_driver_sql(ddl)
        with bad_engine.begin() as conn:
            conn.exec_driver_sql(broken)
        good = _catalog(good_engine, good_schema)["columns"]
        bad = _catalog(bad_engine, bad_schema)["columns"]
    diff = set(good) ^ set(bad)
    assert {(r[0], r[2], r[7]) for r in diff} == {
        ("transfer", "latency_ms", "YES"),
        ("transfer", "latency_ms", "NO"),
    }
