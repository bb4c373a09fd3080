"""``pmr db``: create the store's schema and show where it lives (DESIGN §8).

Orchestration only: the work is ``core.ledger.store.init_db``. Errors print as one line on
stderr with a non-zero exit; passwords in URLs are never printed.

Examples
--------
::

    $ PMR_HOME=/tmp/desk pmr db init
    schema ready at sqlite:////tmp/desk/pmr.db (sqlite): 14 tables, 14 created now; views: ...
"""

from __future__ import annotations

from typing import Annotated

import typer
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session

from core.errors import ConfigError, PmrError
from core.ledger.audit_log import verify_audit_chain
from core.ledger.store import init_db, make_engine, redact_url
from core.ledger.tables import LedgerTable

__all__ = ["register"]

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        help="Database URL; default: $PMR_DATABASE_URL, else sqlite:///$PMR_HOME/pmr.db "
        "(PMR_HOME defaults to ~/.pmr).",
        show_default=False,
    ),
]


def _fail(exc: PmrError) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(code=1)


def db_init(url: UrlOption = None) -> None:
    """Create every missing table (and, on PostgreSQL, the post-mortem views). Idempotent."""
    engine: Engine | None = None
    try:
        engine = make_engine(url)
        report = init_db(engine)
    except PmrError as exc:
        raise _fail(exc) from None
    finally:
        if engine is not None:
            engine.dispose()
    typer.echo(str(report))


def db_info(url: UrlOption = None) -> None:
    """Print where the store is, the row count of each table and the audit-chain verdict."""
    engine: Engine | None = None
    try:
        engine = make_engine(url)
        lines = _info_lines(engine)
    except PmrError as exc:
        raise _fail(exc) from None
    finally:
        if engine is not None:
            engine.dispose()
    typer.echo("\n".join(lines))


def _info_lines(engine: Engine) -> list[str]:
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
