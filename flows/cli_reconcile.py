"""``pmr reconcile``: snapshot every venue of a desk, compare with the ledger, report drifts.

Orchestration only: the comparison is :func:`core.ledger.reconcile.reconcile`. Exit codes:
0 when every venue agrees with the store (or a venue was seen for the first time: baseline),
1 when at least one drift was found (printed as a table and recorded), 2 for bad input (a bad
desk, a missing store, an unreadable venue), with nothing written.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from flows.cli_audit import (
    DEFAULT_KEY_ENV,
    KeyBlockOption,
    KeyEnvOption,
    UnkeyedOption,
    UrlOption,
    _store_session,
)
from flows.cli_common import EXAMPLE_DESK, display_path, handles_pmr_errors, out

if TYPE_CHECKING:
    from core.ledger.reconcile import ReconReport

__all__ = ["EXIT_DRIFT", "reconcile_cmd", "register"]

EXIT_DRIFT = 1


@handles_pmr_errors
def reconcile_cmd(
    desk_file: Annotated[
        Path,
        typer.Option("--desk", metavar="FILE", help="The desk's TOML file.", show_default=False),
    ] = EXAMPLE_DESK,
    url: UrlOption = None,
    key_env: KeyEnvOption = DEFAULT_KEY_ENV,
    key_block: KeyBlockOption = None,
    unkeyed: UnkeyedOption = False,
) -> None:
    """Snapshot every venue of the desk into the store and compare it with the ledger.

    Expected = the venue's previous snapshot + the legs confirmed since. Differences over the
    asset's tolerance are recorded as drifts with their likely cause, legs in flight are listed,
    and the audit head is anchored. Exit 0: venues and store agree; 1: drift found; 2: bad input.
    """
    from core.clock import Clock, ManualClock, SystemClock
    from core.config import load_desk
    from core.ledger.reconcile import reconcile
    from core.venues.factory import build_desk_venues
    from flows.audit_key import resolve_audit_key

    desk = load_desk(desk_file)
    key = resolve_audit_key(key_env=key_env, key_block=key_block, unkeyed=unkeyed, required=False)
    # The in-process simulator keeps its own time: a manual clock started at the wall clock's
    # reading (as `pmr sim check` does), so its rate-limit waits cost no real time. A desk with
    # a live venue runs on the wall clock.
    clock: Clock = SystemClock()
    if all(v.kind == "sim" for v in desk.venues):
        clock = ManualClock(start_ns=clock.timestamp_ns())
    with build_desk_venues(desk, clock) as dv, _store_session(url) as (session, where):
        dv.warm_up()
        report = reconcile(session, desk, dv.venues, now=clock.now(), audit_key=key)
    _print(report, display_path(desk_file), where)
    if not report.ok:
        raise typer.Exit(EXIT_DRIFT)


def _num(value: Decimal) -> str:
    """Plain notation with thousands separators and no trailing zeros (``249,750``)."""
    return format(value.normalize(), ",f") if value else "0"


def _print(report: ReconReport, desk: str, where: str) -> None:
    from rich.table import Table

    lines = [f"desk: {desk}", f"store: {where}"]
    for venue, sid in report.snapshot_ids.items():
        kind = "baseline" if venue in report.baseline else f"expected #{report.expected_ids[venue]}"
        lines.append(f"{venue}: snapshot #{sid} ({kind})")
    out.print("\n".join(lines), markup=False, highlight=False)
    if report.in_flight:
        flying = Table(title="In flight (not judged)")
        for name in ("key", "status", "mode", "from", "to", "amount"):
            flying.add_column(name, justify="right" if name == "amount" else "left")
        for f in report.in_flight:
            flying.add_row(
                f.key,
                f.status.value,
                f.mode,
                f"{f.venue}/{f.from_wallet}",
                f"{f.to_venue}/{f.to_wallet}",
                f"{_num(f.amount)} {f.asset}",
            )
        out.print(flying)
    if report.drifts:
        table = Table(title="Drift (reported - expected)")
        for name in ("venue", "wallet", "asset", "expected", "reported", "drift", "cause", "note"):
            right = name in {"expected", "reported", "drift"}
            table.add_column(name, justify="right" if right else "left")
        for d in report.drifts:
            table.add_row(
                d.venue,
                d.wallet.value,
                d.asset,
                _num(d.expected),
                _num(d.reported),
                ("+" if d.drift > 0 else "") + _num(d.drift),
                d.cause.value,
                d.note,
            )
        out.print(table)
    verdict = (
        f"{len(report.drifts)} drift(s) recorded" if report.drifts else "venues and store agree"
    )
    out.print(
        f"{verdict}; {report.compared} balances compared, {len(report.in_flight)} leg(s) in "
        f"flight\nanchored audit head {report.anchor_seq}:{report.anchor_hash}",
        markup=False,
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    """Add ``pmr reconcile`` to the CLI."""
    app.command("reconcile")(reconcile_cmd)
