"""`pmr db init` / `pmr db info` through a typer app built with ``flows.cli_db.register``."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from ledger_helpers import fresh_pg_schema
from sqlalchemy import inspect
from typer.testing import CliRunner

from core.ledger.store import redact_url
from core.ledger.tables import LedgerTable
from flows import cli_db

runner = CliRunner()


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
        f"schema ready at sqlite:///{db_path} (sqlite): 14 tables, 14 created now" in first.output
    )
    assert db_path.is_file()
    second = runner.invoke(_app(), ["db", "init"], env=env)
    assert second.exit_code == 0, second.output
    assert "14 tables, 0 created now" in second.output


def test_db_info_after_init_lists_tables_and_intact_chain(tmp_path: Path) -> None:
    env = {"PMR_HOME": str(tmp_path), "PMR_DATABASE_URL": ""}
    assert runner.invoke(_app(), ["db", "init"], env=env).exit_code == 0
    result = runner.invoke(_app(), ["db", "info"], env=env)
    assert result.exit_code == 0, result.output
    for table in LedgerTable.metadata.tables:
        assert f"  {table} " in result.output
    assert "audit chain intact: 0 events" in result.output


def test_db_info_before_init_exits_2_with_one_line_hint(tmp_path: Path) -> None:
    result = runner.invoke(_app(), ["db", "info", "--url", f"sqlite:///{tmp_path}/empty.db"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert "store not initialised; run `pmr db init`" in lines[0]


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
        for created in ("14 created now", "0 created now"):
            result = runner.invoke(_app(), ["db", "init", "--url", url])
            assert result.exit_code == 0, result.output
            assert f"(postgresql): 14 tables, {created}" in result.output
            assert (
                "views: transfer_latency_by_route, source_mix_per_call, transfer_failure_rates"
                in result.output
            )
        assert redact_url(url) in result.output
        info = runner.invoke(_app(), ["db", "info", "--url", url])
        assert info.exit_code == 0, info.output
        assert "(postgresql)" in info.output
        assert "audit chain intact: 0 events" in info.output
        with engine.connect() as conn:
            insp = inspect(conn)
            assert set(insp.get_table_names()) == set(LedgerTable.metadata.tables)
            assert len(insp.get_view_names()) == 3
