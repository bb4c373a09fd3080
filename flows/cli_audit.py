"""``pmr audit``: verify the hash-chained audit trail, anchor its head, tell a call's story.

Orchestration only: the checks are ``core.ledger.audit_log`` (``verify_audit_chain``,
``anchor_head``), the story is ``core.execution.story.call_story``, the key comes from
``flows.audit_key``. Conventions of every ``pmr`` command (``flows.cli_common``): bad input is
one line on stderr and exit code 2 with nothing written; here a *broken chain* is not bad input
but the finding, printed on stdout with exit code 1.

Examples
--------
::

    $ pmr audit verify --unkeyed
    store: sqlite:////home/desk/.pmr/pmr.db (sqlite)
    key: none (--unkeyed)
    audit chain intact: 0 events, head seq=0
    head: 0:0000000000000000000000000000000000000000000000000000000000000000
    ...
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated

import typer

from core.errors import ConfigError
from flows.cli_common import handles_pmr_errors, out

if TYPE_CHECKING:  # SQLAlchemy loads inside the commands, so `pmr --help` stays fast
    from sqlalchemy import Engine
    from sqlmodel import Session

    from core.execution.story import CallStory
    from core.ledger.chain import AuditKey, ChainVerdict

__all__ = ["audit_anchor", "audit_show", "audit_verify", "parse_expect_head", "register"]

EXIT_BROKEN_CHAIN = 1
# core.ledger.chain.DEFAULT_KEY_ENV, spelled out: importing any core.ledger module at start-up
# loads SQLAlchemy (the package's __init__), which `pmr --help` must not pay for.
DEFAULT_KEY_ENV = "PMR_AUDIT_KEY"
_EXPECT_HEAD = re.compile(r"(\d+):([0-9a-f]{64})")

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        help="Database URL; default: $PMR_DATABASE_URL, else sqlite:///$PMR_HOME/pmr.db.",
        show_default=False,
    ),
]
KeyEnvOption = Annotated[
    str,
    typer.Option("--key-env", metavar="NAME", help="Environment variable holding the audit key."),
]
KeyBlockOption = Annotated[
    str | None,
    typer.Option(
        "--key-block",
        metavar="NAME",
        help="Prefect Secret block holding the audit key (read through the Prefect API).",
        show_default=False,
    ),
]
UnkeyedOption = Annotated[
    bool,
    typer.Option(
        "--unkeyed",
        help="No audit key: check links and order only, write plain SHA-256 (offline demo only).",
    ),
]


def parse_expect_head(text: str | None) -> tuple[int, str] | None:
    """Parse ``--expect-head SEQ:HASH`` (as ``pmr audit verify`` prints the head).

    >>> parse_expect_head("3:" + "ab" * 32)[0]
    3

    Raises
    ------
    ConfigError
        Not ``SEQ:HASH`` with a 64-hex-digit hash.
    """
    if text is None:
        return None
    m = _EXPECT_HEAD.fullmatch(text.strip().lower())
    if m is None:
        raise ConfigError(
            "--expect-head must be SEQ:HASH as `pmr audit verify` prints it "
            "(a sequence number, a colon, 64 hex digits)",
            value=text[:80],
        )
    return int(m.group(1)), m.group(2)


@contextmanager
def store_engine(url: str | None) -> Iterator[tuple[Engine, str]]:
    """An engine on an existing store at this pmr's head, and its printable URL; never creates
    a store (a missing one is exit 2 with a hint, as in ``pmr db info``). A database error
    while it is in use becomes a one-line ``ConfigError``."""
    from sqlalchemy.exc import DBAPIError

    from core.ledger.migrations.pgschema import db_error_reason, ensure_search_path_schema
    from core.ledger.migrations.status import read_status
    from core.ledger.store import make_engine, redact_url, sqlite_file

    engine = make_engine(url)
    shown = redact_url(engine.url.render_as_string(hide_password=False))
    try:
        path = sqlite_file(engine)
        if path is not None and not path.is_file():
            raise ConfigError("no store found; `pmr db init` creates one", path=str(path))
        with engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                ensure_search_path_schema(conn, create=False)
            status = read_status(conn)
        if status.state != "current":
            raise ConfigError(f"the store is not at this pmr's schema: {status}", url=shown)
        yield engine, f"{shown} ({engine.dialect.name})"
    except DBAPIError as exc:
        raise ConfigError(f"cannot read the store: {db_error_reason(exc)}", url=shown) from None
    finally:
        engine.dispose()


@contextmanager
def _store_session(url: str | None) -> Iterator[tuple[Session, str]]:
    """A session on an existing store (:func:`store_engine`), committed only without an error:
    anchors are all or nothing."""
    from sqlmodel import Session

    with store_engine(url) as (engine, where), Session(engine) as session:
        yield session, where
        session.commit()


def _verdict_lines(verdict: ChainVerdict, key: AuditKey | None, session: Session) -> list[str]:
    from core.ledger.anchors import anchor_label, latest_anchor

    lines = [str(verdict), f"head: {verdict.head_seq}:{verdict.head_hash}"]
    anchor = latest_anchor(session, key)
    lines.append(
        "latest anchor: none recorded (`pmr audit anchor`; each reconciliation records one)"
        if anchor is None
        else f"latest anchor: seq={anchor.seq}, {anchor_label(anchor)}"
    )
    if key is None and verdict.keyed == 0 and verdict.unauthenticated == 0 and verdict.checked:
        lines.append(
            "WARNING: unkeyed trail: plain SHA-256 can be recomputed by anyone who can write to "
            f"the store after an edit; set ${DEFAULT_KEY_ENV} (see docs/audit.md)"
        )
    return lines


@handles_pmr_errors
def audit_verify(
    url: UrlOption = None,
    expect_head: Annotated[
        str | None,
        typer.Option(
            "--expect-head",
            metavar="SEQ:HASH",
            help="A head kept outside the database (as this command prints it); "
            "a chain that no longer has it was truncated or rewritten.",
            show_default=False,
        ),
    ] = None,
    key_env: KeyEnvOption = DEFAULT_KEY_ENV,
    key_block: KeyBlockOption = None,
    unkeyed: UnkeyedOption = False,
) -> None:
    """Verify the audit chain end to end and print its head; exit 1 naming the first bad row.

    Checks every event's link and hash (HMAC under the audit key), the order, every recorded
    anchor and --expect-head. A trail with keyed events needs the key (or --unkeyed, which
    checks links and order only and says so).
    """
    from core.ledger.audit_log import keyed_since, verify_audit_chain
    from flows.audit_key import key_description, resolve_audit_key

    expected = parse_expect_head(expect_head)
    key = resolve_audit_key(key_env=key_env, key_block=key_block, unkeyed=unkeyed, required=False)
    with _store_session(url) as (session, where):
        since = keyed_since(session)
        if key is None and since is not None and not unkeyed:
            raise ConfigError(
                f"the audit trail is keyed since seq={since}: give the key (${key_env} or "
                "--key-block), or --unkeyed to check links and order only"
            )
        verdict = verify_audit_chain(session, key=key, expected_head=expected)
        lines = [f"store: {where}", key_description(key, unkeyed=unkeyed)]
        lines += _verdict_lines(verdict, key, session)
    out.print("\n".join(lines), markup=False, highlight=False)
    if not verdict.ok:
        raise typer.Exit(EXIT_BROKEN_CHAIN)


@handles_pmr_errors
def audit_anchor(
    url: UrlOption = None,
    recorded_by: Annotated[
        str,
        typer.Option("--by", metavar="NAME", help="Who records the anchor (kept with it)."),
    ] = "pmr audit anchor",
    key_env: KeyEnvOption = DEFAULT_KEY_ENV,
    key_block: KeyBlockOption = None,
    unkeyed: UnkeyedOption = False,
) -> None:
    """Verify the events since the last anchor, then record the head as a new anchor.

    Reconciliation does this on every run; print the head and keep it outside the database
    too (pass it back as `pmr audit verify --expect-head SEQ:HASH`).
    """
    from core.clock import SystemClock
    from core.ledger.anchors import anchor_label
    from core.ledger.audit_log import anchor_head
    from flows.audit_key import key_description, resolve_audit_key

    key = resolve_audit_key(key_env=key_env, key_block=key_block, unkeyed=unkeyed, required=True)
    with _store_session(url) as (session, where):
        row = anchor_head(session, recorded_by=recorded_by, at=SystemClock().now(), key=key)
        head = f"{row.seq}:{row.hash}"
        recorded = f"{anchor_label(row)}{' with its MAC' if row.mac else ', no MAC (unkeyed)'}"
    lines = [f"store: {where}", key_description(key, unkeyed=unkeyed), f"anchored head {head}"]
    lines += [recorded, f"keep it elsewhere: pmr audit verify --expect-head {head}"]
    out.print("\n".join(lines), markup=False, highlight=False)


@handles_pmr_errors
def audit_show(
    call: Annotated[
        str,
        typer.Option(
            "--call", metavar="ID", help="Margin call (or pre-funding) id.", show_default=False
        ),
    ],
    url: UrlOption = None,
) -> None:
    """Print one margin call's (or pre-funding's) story: decisions, legs, latencies, results
    and costs.

    Read from the audit events (and the call's transfer rows). The chain is not verified
    here: run `pmr audit verify` for that.
    """
    from core.execution.story import call_story

    if not call.strip():
        raise ConfigError("--call needs a margin call id")
    with _store_session(url) as (session, _where):
        story = call_story(session, call)
    _print_story(story)


def _fmt(value: Decimal | None, places: int = 0) -> str:
    return "" if value is None else f"{value:,.{places}f}"


def _print_story(story: CallStory) -> None:
    from rich.table import Table

    day = story.lines[0].at.strftime("%Y-%m-%d") if story.lines else ""
    table = Table(title=f"{story.kind} {story.margin_call_id} ({day} UTC)")
    columns = ("time", "event", "plan/step", "source", "mode", "amount", "latency ms",
               "result", "cost USD", "note")  # fmt: skip
    right = {"amount", "latency ms", "cost USD"}
    for name in columns:
        table.add_column(name, justify="right" if name in right else "left")
    for line in story.lines:
        amount = "" if line.amount is None else f"{line.amount:,} {line.asset or ''}".strip()
        table.add_row(
            line.at.strftime("%H:%M:%S.%f")[:-3],
            line.event,
            line.step_leg,
            line.source_id or "",
            line.mode or "",
            amount,
            _fmt(line.latency_ms),
            line.result or "",
            _fmt(line.cost_usd, 2),
            line.note or "",
        )
    out.print(table)
    out.print(story.summary(), markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    """Add the ``audit`` command group (``verify``, ``anchor``, ``show``) to the ``pmr`` app."""
    audit_app = typer.Typer(
        name="audit",
        help="The audit trail: verify its hash chain, anchor its head, show a call's story.",
        no_args_is_help=True,
    )
    audit_app.command("verify")(audit_verify)
    audit_app.command("anchor")(audit_anchor)
    audit_app.command("show")(audit_show)
    app.add_typer(audit_app, name="audit")
