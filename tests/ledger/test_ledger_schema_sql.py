"""``sql/schema.sql`` and ``core/ledger/tables.py`` describe the same PostgreSQL schema.

Each side builds its own fresh schema on the real server; the catalogs are then compared
name by name: columns (order, type, length, precision, scale, nullability, default),
constraints (kind and PostgreSQL's own rendering of the definition) and indexes. Comparing
catalogs rather than DDL text means formatting and spelling (``FLOAT`` vs ``DOUBLE PRECISION``)
don't matter while every semantic difference does.
"""

from __future__ import annotations

from typing import Any

import pytest
from ledger_helpers import fresh_pg_schema
from sqlalchemy import Engine, text

from core.ledger.queries import SQL_DIR
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


def _catalog(engine: Engine, schema: str) -> dict[str, list[tuple[Any, ...]]]:
    def norm(row: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(v.replace(f"{schema}.", "") if isinstance(v, str) else v for v in row)

    with engine.connect() as conn:
        return {
            name: [norm(tuple(r)) for r in conn.execute(text(sql))]
            for name, sql in (("columns", COLUMNS), ("constraints", CONSTRAINTS),
                              ("indexes", INDEXES))
        }  # fmt: skip


@pytest.fixture(scope="module")
def catalogs(postgres_url: str) -> tuple[dict[str, list[tuple[Any, ...]]], ...]:
    with (
        fresh_pg_schema(postgres_url, "models") as (models_engine, models_schema),
        fresh_pg_schema(postgres_url, "ddl") as (ddl_engine, ddl_schema),
    ):
        LedgerTable.metadata.create_all(models_engine)
        with ddl_engine.begin() as conn:
            conn.exec_driver_sql((SQL_DIR / "schema.sql").read_text())
        return _catalog(models_engine, models_schema), _catalog(ddl_engine, ddl_schema)


@pytest.mark.parametrize("part", ["columns", "constraints", "indexes"])
def test_schema_sql_with_models_built_on_postgres_has_identical_catalog(
    catalogs: tuple[dict[str, list[tuple[Any, ...]]], ...], part: str
) -> None:
    from_models, from_ddl = catalogs
    only_models = sorted(set(from_models[part]) - set(from_ddl[part]))
    only_ddl = sorted(set(from_ddl[part]) - set(from_models[part]))
    assert (only_models, only_ddl) == ([], []), (
        f"sql/schema.sql and core/ledger/tables.py disagree on {part}: "
        f"only in models {only_models}, only in schema.sql {only_ddl}"
    )
    assert from_models[part] == from_ddl[part]  # same order too (column positions)


def test_schema_sql_catalog_covers_every_model_table_and_money_type(
    catalogs: tuple[dict[str, list[tuple[Any, ...]]], ...],
) -> None:
    from_models, _ = catalogs
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
