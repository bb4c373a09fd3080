"""``pmr db``: create the store's schema and show where it lives (DESIGN §8).

Orchestration only: the work is ``core.ledger.store.init_db``. A ``PmrError`` prints as one
line on stderr with exit code 2 (``flows.cli_common``); passwords in URLs are never printed.

Examples
--------
::

    $ PMR_HOME=/tmp/desk pmr db init
    schema ready at sqlite:////tmp/desk/pmr.db (sqlite): 14 tables, 14 created now; views: ...
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer

from core.errors import ConfigError
from flows.cli_common import handles_pmr_errors, out

if TYPE_CHECKING:  # SQLAlchemy loads inside the commands, so `pmr --help` stays fast
    from sqlalchemy import Engine

__all__ = ["db_info", "db_init", "register"]

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
    """Create every missing table (and, on PostgreSQL, the post-mortem views). Idempotent."""
    from core.ledger.store import init_db

    with _engine(url) as engine:
        report = init_db(engine)
    out.print(str(report), markup=False)


@handles_pmr_errors
def db_info(url: UrlOption = None) -> None:
    """Print where the store is, the row count of each table and the audit-chain verdict."""
    with _engine(url) as engine:
        lines = info_lines(engine)
    out.print("\n".join(lines), markup=False)


def info_lines(engine: Engine) -> list[str]:
    """Describe the store behind ``engine``: URL, row counts per table, audit-chain verdict.

    Raises
    ------
    ConfigError
        The store cannot be read or has not been initialised.
    """
    from sqlalchemy import inspect, text
    from sqlalchemy.exc import DBAPIError
    from sqlmodel import Session

    from core.ledger.audit_log import verify_audit_chain
    from core.ledger.store import redact_url
    from core.ledger.tables import LedgerTable

    url = redact_url(engine.url.render_as_string(hide_password=False))
    names = sorted(LedgerTable.metadata.tables)
    try:
        with Session(engine) as session:
            present = set(inspect(session.connection()).get_table_names())
            missing = [n for n in names if n not in present]
            if missing:
                raise ConfigError(
                    "store not initialised; run `pmr db init`", url=url, missing=",".join(missing)
                )
            lines = [f"store: {url} ({engine.dialect.name})"]
            for name in names:
                # Table names come from our own metadata, never from input.
                count = session.execute(text(f'SELECT count(*) FROM "{name}"')).scalar_one()
                lines.append(f"  {name:<18} {count:>10} rows")
            lines.append(str(verify_audit_chain(session)))
            return lines
    except DBAPIError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        raise ConfigError(f"cannot read the store: {reason}", url=url) from None


def register(app: typer.Typer) -> None:
    """Add the ``db`` command group (``init``, ``info``) to the ``pmr`` app."""
    db_app = typer.Typer(
        name="db", help="The store: create the schema, show where it lives.", no_args_is_help=True
    )
    db_app.command("init")(db_init)
    db_app.command("info")(db_info)
    app.add_typer(db_app, name="db")
