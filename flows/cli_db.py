"""``pmr db``: create, upgrade and describe the store (DESIGN §8).

Orchestration only: the work is ``core.ledger.store.init_db`` / ``upgrade_db`` and
``core.ledger.migrations.status.describe_store``. A ``PmrError`` prints as one line on stderr
with exit code 2 (``flows.cli_common``); passwords in URLs are never printed.

Examples
--------
::

    $ PMR_HOME=/tmp/desk pmr db init
    schema ready at sqlite:////tmp/desk/pmr.db (sqlite): 14 tables, 14 created now; revision ...
    $ PMR_HOME=/tmp/desk pmr db upgrade
    schema ready at sqlite:////tmp/desk/pmr.db (sqlite): 14 tables, 0 created now; revision ...
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer

from flows.cli_common import handles_pmr_errors, out

if TYPE_CHECKING:  # SQLAlchemy and Alembic load inside the commands, so `pmr --help` stays fast
    from sqlalchemy import Engine

__all__ = ["db_info", "db_init", "db_upgrade", "register"]

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        help="Database URL; default: $PMR_DATABASE_URL, else sqlite:///$PMR_HOME/pmr.db "
        "(PMR_HOME defaults to ~/.pmr).",
        show_default=False,
    ),
]


@contextmanager
def _engine(url: str | None) -> Iterator[Engine]:
    from core.ledger.store import make_engine

    engine = make_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()


@handles_pmr_errors
def db_init(url: UrlOption = None) -> None:
    """Create the store if needed and upgrade its schema to this pmr's head. Idempotent.

    Creates the SQLite folder (0700) and file (0600), or the PostgreSQL schema named by the
    URL's search_path; on PostgreSQL also (re)creates the post-mortem views.
    """
    from core.ledger.store import init_db

    with _engine(url) as engine:
        report = init_db(engine)
    out.print(str(report), markup=False)


@handles_pmr_errors
def db_upgrade(url: UrlOption = None) -> None:
    """Upgrade an existing store's schema to this pmr's head; never creates a store.

    A store made by the previous release (no recorded revision) is recognised and upgraded.
    """
    from core.ledger.store import upgrade_db

    with _engine(url) as engine:
        report = upgrade_db(engine)
    out.print(str(report), markup=False)


@handles_pmr_errors
def db_info(url: UrlOption = None) -> None:
    """Print where the store is, its schema revision, rows per table, the audit-chain verdict.

    Reads only: a missing store is reported (exit 2), never created.
    """
    from core.ledger.migrations.status import describe_store

    with _engine(url) as engine:
        lines = describe_store(engine)
    out.print("\n".join(lines), markup=False)


def register(app: typer.Typer) -> None:
    """Add the ``db`` command group (``init``, ``upgrade``, ``info``) to the ``pmr`` app."""
    db_app = typer.Typer(
        name="db",
        help="The store: create it, upgrade its schema, show where it lives.",
        no_args_is_help=True,
    )
    db_app.command("init")(db_init)
    db_app.command("upgrade")(db_upgrade)
    db_app.command("info")(db_info)
    app.add_typer(db_app, name="db")
