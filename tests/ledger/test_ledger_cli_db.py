"""`pmr db init|upgrade|info` through a typer app built with ``flows.cli_db.register``."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest
import typer
from ledger_helpers import fresh_pg_schema
from legacy_store import build_legacy_store
from sqlalchemy import create_engine, inspect, make_url, text
from typer.testing import CliRunner

from core.ledger.migrations.config import head_revision
from core.ledger.migrations.status import baseline_metadata
from core.ledger.store import make_engine, normalise_url, redact_url, view_statements
from core.ledger.tables import LedgerTable
from flows import cli_db

runner = CliRunner()
HEAD = head_revision()
N_TABLES = len(LedgerTable.metadata.tables)
VIEWS = ", ".join(view_statements())


def _app() -> typer.Typer:
    app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False)

    @app.callback()
    def main() -> None:
        """Stand-in for flows.cli.app, which the lead owns."""

    cli_db.register(app)
    return app


def test_db_init_with_fresh_home_creates_sqlite_schema_then_is_idempotent(
    tmp_path: Path,
) -> None:
    env = {"PMR_HOME": str(tmp_path / "desk"), "PMR_DATABASE_URL": ""}
    first = runner.invoke(_app(), ["db", "init"], env=env)
    assert first.exit_code == 0, first.output
    db_path = tmp_path / "desk" / "pmr.db"
    assert (
        f"schema ready at sqlite:///{db_path} (sqlite): {N_TABLES} tables, {N_TABLES} created now; "
        f"revision {HEAD} (head): applied 0001" in first.output
    )
    assert f"created folder {tmp_path / 'desk'} (mode 0700)" in first.output
    assert f"created store file {db_path} (mode 0600)" in first.output
    assert db_path.is_file()
    second = runner.invoke(_app(), ["db", "init"], env=env)
    assert second.exit_code == 0, second.output
    assert f"{N_TABLES} tables, 0 created now; revision {HEAD} (head), nothing to apply" in (
        second.output
    )
    assert "created" not in second.output.split("nothing to apply")[1]


def test_db_info_after_init_lists_revision_tables_and_intact_chain(tmp_path: Path) -> None:
    env = {"PMR_HOME": str(tmp_path), "PMR_DATABASE_URL": ""}
    assert runner.invoke(_app(), ["db", "init"], env=env).exit_code == 0
    result = runner.invoke(_app(), ["db", "info"], env=env)
    assert result.exit_code == 0, result.output
    assert f"schema revision: {HEAD} (head)" in result.output
    for table in LedgerTable.metadata.tables:
        assert f"  {table} " in result.output
    assert "audit chain intact: 0 events" in result.output


@pytest.mark.parametrize("command", ["info", "upgrade"])
def test_db_info_or_upgrade_with_missing_store_exits_2_and_creates_nothing(
    tmp_path: Path, command: str
) -> None:
    home = tmp_path / "never-created"
    result = runner.invoke(
        _app(), ["db", command], env={"PMR_HOME": str(home), "PMR_DATABASE_URL": ""}
    )
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert lines == [f"error: no store found; `pmr db init` creates one (path={home / 'pmr.db'})"]
    assert list(tmp_path.iterdir()) == []  # neither the folder nor the file


def test_db_info_with_empty_sqlite_file_exits_2_with_one_line_hint(tmp_path: Path) -> None:
    sqlite3.connect(tmp_path / "empty.db").close()
    result = runner.invoke(_app(), ["db", "info", "--url", f"sqlite:///{tmp_path}/empty.db"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert "store not initialised; run `pmr db init`" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.db"]


def test_db_upgrade_with_previous_release_store_recognises_stamps_and_verifies(
    tmp_path: Path,
) -> None:
    path = tmp_path / "pmr.db"
    sqlite3.connect(path).close()
    engine = make_engine(f"sqlite:///{path}")
    build_legacy_store(engine)
    engine.dispose()
    url = f"sqlite:///{path}"

    before = runner.invoke(_app(), ["db", "info", "--url", url])
    assert before.exit_code == 0, before.output
    assert "schema revision: none recorded (a store of the previous release?)" in before.output
    assert "tables match revision 0001 (the previous release)" in before.output
    assert "  transfer                    1 rows" in before.output
    assert "audit chain: not verified until the store is at head" in before.output

    upgraded = runner.invoke(_app(), ["db", "upgrade", "--url", url])
    assert upgraded.exit_code == 0, upgraded.output
    new_tables = N_TABLES - len(baseline_metadata().tables)  # added by revisions since 0001
    assert f"{N_TABLES} tables, {new_tables} created now" in upgraded.output
    assert "recognised a store of the previous release" in upgraded.output
    assert "recorded it as revision 0001" in upgraded.output

    after = runner.invoke(_app(), ["db", "info", "--url", url])
    assert after.exit_code == 0, after.output
    assert f"schema revision: {HEAD} (head)" in after.output
    assert "audit chain intact: 3 events" in after.output


def test_db_upgrade_with_foreign_tables_exits_2_and_leaves_them(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE venue (name TEXT)")
    result = runner.invoke(_app(), ["db", "upgrade", "--url", f"sqlite:///{path}"])
    assert result.exit_code == 2
    assert "tables here match no schema pmr knows" in result.output
    assert "Traceback" not in result.output
    with sqlite3.connect(path) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    assert names == ["venue"]


@pytest.mark.parametrize(
    ("env", "args", "expected"),
    [
        ({"PMR_DATABASE_URL": "mysql://desk@db/pmr"}, [], "unsupported database driver 'mysql'"),
        ({}, ["--url", "definitely not a url"], "not a database URL"),
        (
            {},
            ["--url", "postgresql://desk:hunter2@127.0.0.1:1/pmr"],
            "cannot initialise the store: connection failed",
        ),
    ],
)
def test_db_init_with_bad_url_exits_2_with_one_line_error(
    tmp_path: Path, env: dict[str, str], args: list[str], expected: str
) -> None:
    result = runner.invoke(_app(), ["db", "init", *args], env={"PMR_HOME": str(tmp_path), **env})
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: ")
    assert expected in lines[0]
    assert "hunter2" not in result.output
    assert "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []  # nothing created under PMR_HOME


@pytest.mark.postgres
def test_db_init_on_postgres_creates_tables_and_views_twice_safely(postgres_url: str) -> None:
    with fresh_pg_schema(postgres_url, "cli") as (engine, schema):
        url = f"{engine.url.render_as_string(hide_password=False)}?options=-csearch_path%3D{schema}"
        for created in (
            f"{N_TABLES} created now; revision {HEAD} (head): applied",
            "0 created now",
        ):
            result = runner.invoke(_app(), ["db", "init", "--url", url])
            assert result.exit_code == 0, result.output
            assert f"(postgresql): {N_TABLES} tables, {created}" in result.output
            assert f"views: {VIEWS}" in result.output
        assert redact_url(url) in result.output
        info = runner.invoke(_app(), ["db", "info", "--url", url])
        assert info.exit_code == 0, info.output
        assert "(postgresql)" in info.output
        assert "audit chain intact: 0 events" in info.output
        with engine.connect() as conn:
            insp = inspect(conn)
            assert set(insp.get_table_names()) == {*LedgerTable.metadata.tables, "alembic_version"}
            assert sorted(insp.get_view_names()) == sorted(view_statements())


def _schema_exists(postgres_url: str, name: str) -> bool:
    admin = create_engine(normalise_url(postgres_url))
    try:
        with admin.connect() as conn:
            found = conn.execute(
                text("SELECT count(*) FROM pg_namespace WHERE nspname = :n"), {"n": name}
            ).scalar_one()
    finally:
        admin.dispose()
    return bool(found)


@pytest.mark.postgres
def test_db_init_with_search_path_naming_missing_schema_creates_it_quoted(
    postgres_url: str,
) -> None:
    """The docs' URL shape, with a name that needs quoting (case, hyphen, semicolon, quote)."""
    name = f'Pmr-Desk;"x"_{uuid.uuid4().hex[:8]}'
    quoted_name = '"' + name.replace('"', '""') + '"'  # search_path syntax for that name
    base = normalise_url(postgres_url)
    options = quote(f"-csearch_path={quoted_name}", safe="")
    url = f"{base}?options={options}"
    try:
        for command in ("info", "upgrade"):  # neither creates the schema
            refused = runner.invoke(_app(), ["db", command, "--url", url])
            assert refused.exit_code == 2, refused.output
            assert f"schema {quoted_name} (first in search_path) does not exist" in refused.output
            assert "`pmr db init` creates it" in refused.output
        assert not _schema_exists(postgres_url, name)

        created = runner.invoke(_app(), ["db", "init", "--url", url])
        assert created.exit_code == 0, created.output
        assert f"created schema {quoted_name} (first in search_path)" in created.output
        assert f"{N_TABLES} created now" in created.output
        assert _schema_exists(postgres_url, name)
        info = runner.invoke(_app(), ["db", "info", "--url", url])
        assert info.exit_code == 0, info.output
        assert f"schema revision: {HEAD} (head)" in info.output
    finally:
        admin = create_engine(normalise_url(postgres_url))
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA IF EXISTS {quoted_name} CASCADE"))
        admin.dispose()


@pytest.mark.postgres
def test_db_init_with_search_path_of_user_schema_only_is_refused(postgres_url: str) -> None:
    """``$user`` means a schema per role: pmr never creates it on its own."""
    base = normalise_url(postgres_url)
    role = make_url(base).username or "postgres"
    assert not _schema_exists(postgres_url, role)
    options = quote('-csearch_path="$user"', safe="")
    url = f"{base}?options={options}"
    result = runner.invoke(_app(), ["db", "init", "--url", url])
    assert result.exit_code == 2
    assert "no schema of the search_path exists; name one in the URL" in result.output
    assert not _schema_exists(postgres_url, role)


def test_db_info_with_store_from_a_newer_pmr_says_so_and_upgrade_refuses(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'pmr.db'}"
    assert runner.invoke(_app(), ["db", "init", "--url", url]).exit_code == 0
    with sqlite3.connect(tmp_path / "pmr.db") as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    info = runner.invoke(_app(), ["db", "info", "--url", url])
    assert info.exit_code == 0, info.output
    assert f"schema revision: 9999, unknown to this pmr (head {HEAD})" in info.output
    assert "audit chain: not verified until the store is at head" in info.output
    upgrade = runner.invoke(_app(), ["db", "upgrade", "--url", url])
    assert upgrade.exit_code == 2
    assert "revision 9999, which this pmr does not have" in upgrade.output
