"""``pmr route``: plan collateral for a margin call (DESIGN §5.3).

Orchestration only: the work is ``core.routing``. Two ways in:

* ``--problem FILE.json`` (``-`` for stdin): a routing problem in the DESIGN §5.3 schema;
* ``--desk DESK.toml --pool ID``: the pool's current deficit and candidate sources built from
  the desk state (``core.routing.from_state``).

The plan goes to stdout as JSON (``--table`` prints it for people). A ``PmrError`` prints one
line on stderr and exits 2.

Examples
--------
::

    $ pmr route --problem examples/route-problem.json
    $ pmr route --problem examples/route-problem.json --policy cost --table
    $ pmr route --desk examples/desk.toml --pool sim-b.um --deadline 60
    $ pmr route --desk examples/desk.toml --pool sim-b.um --deficit 250000 --table
    $ pmr route --desk examples/desk.toml --pool sim-b.um --as-of 2026-11-27T00:00:00Z

With ``--as-of`` the desk is priced at that instant and the JSON leaves out timings
(``solve_ms``), so two runs print the same bytes. A pool no source can reach gets an
``infeasible`` plan with its escalation, suggested reduction and the reasons (``notes``).
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from core.errors import DataError
from core.files import read_json_file
from core.routing.backends import Backend
from core.routing.sources import Policy
from flows.cli_common import (
    as_of_or_now,
    check_money,
    err_console,
    handles_pmr_errors,
    out,
    parse_as_of,
)

if TYPE_CHECKING:
    from core.routing.plan import Plan
    from core.routing.sources import RoutingInput

__all__ = ["read_problem", "register", "route"]


def read_problem(path: str) -> Any:
    """Read a problem JSON file (``-``: stdin), refusing unreadable or malformed files."""
    return read_json_file(path, what="routing problem", error=DataError, allow_stdin=True)


def _usd(value: Decimal | None, places: int = 2) -> str:
    return "-" if value is None else f"{value:,.{places}f}"


def _print_table(plan: Plan) -> None:
    """The plan for people: a summary with labels and units, the steps, then the notes."""
    from rich.markup import escape
    from rich.table import Table

    summary = Table(title=f"plan {plan.plan_id} — {plan.policy.value}", show_header=False)
    summary.add_column("figure")
    summary.add_column("value", justify="right")
    summary.add_row("status", plan.status)
    summary.add_row("method", plan.method)
    summary.add_row("cost (USD)", _usd(plan.cost_usd, 6))
    summary.add_row("credit (USD)", _usd(plan.credit_usd, 4))
    summary.add_row("uncovered (USD)", _usd(plan.uncovered_usd))
    alt = plan.alternative
    if alt is not None:
        alt_cost = _usd(alt.cost_usd, 6) if alt.cost_usd is not None else alt.status
        summary.add_row(f"{alt.policy.value} policy would cost (USD)", alt_cost)
    price = plan.calls[0].shadow_price_usd_per_usd if len(plan.calls) == 1 else None
    summary.add_row("shadow price (USD per USD)", "-" if price is None else f"{price:.6f}")
    if plan.fallback_reason:
        summary.add_row("fallback reason", plan.fallback_reason)
    out.print(summary)
    steps = Table(title="steps, in order of expected completion")
    for col in (
        "call",
        "source",
        "tier",
        "amount USD",
        "credit USD",
        "cost USD",
        "ETA s",
        "bound by",
    ):
        steps.add_column(col, justify="left" if col in ("call", "source", "bound by") else "right")
    for a in plan.allocations:
        steps.add_row(
            a.call,
            a.source,
            str(a.tier),
            _usd(a.amount_usd),
            _usd(a.credit_usd, 4),
            _usd(a.cost_usd, 6),
            f"{a.eta_s:g}",
            a.binding,
        )
    out.print(steps)
    for c in plan.calls:
        if c.mm_reduction_usd is not None:
            out.print(
                f"[yellow]call {escape(c.call)}: {_usd(c.uncovered_usd)} USD uncovered; reduce "
                f"maintenance margin by {_usd(c.mm_reduction_usd)} USD[/]"
            )
    for note in plan.notes:
        out.print(f"[dim]note: {escape(note)}[/]")
    # timings below the tables, so the tables are the same in every run
    alt_ms = (
        "" if alt is None or alt.solve_ms is None else f"; the comparison {alt.solve_ms:.1f} ms"
    )
    out.print(f"solved in {plan.solve_ms:.1f} ms{alt_ms}")


def route(
    problem: Annotated[
        str | None,
        typer.Option("--problem", help="Routing problem JSON (DESIGN §5.3); '-' reads stdin."),
    ] = None,
    desk: Annotated[
        Path | None, typer.Option("--desk", help="Desk TOML: plan for a pool in its current state.")
    ] = None,
    pool: Annotated[
        list[str] | None,
        typer.Option("--pool", help="Pool id to cover (with --desk); repeat to solve jointly."),
    ] = None,
    deadline_s: Annotated[
        float, typer.Option("--deadline", help="Seconds to cover the call (with --desk).")
    ] = 60.0,
    deficit_usd: Annotated[
        float | None,
        typer.Option(
            "--deficit", help="With --desk: plan for this deficit (USD) per pool instead."
        ),
    ] = None,
    policy: Annotated[
        Policy | None, typer.Option("--policy", help="Override the problem's policy.")
    ] = None,
    backend: Annotated[
        Backend, typer.Option("--backend", help="highspy (hot path) or cvxpy (model of record).")
    ] = Backend.HIGHSPY,
    emit_problem: Annotated[
        bool,
        typer.Option("--emit-problem", help="Print the routing problem JSON instead of solving."),
    ] = False,
    table: Annotated[bool, typer.Option("--table", help="Print tables instead of JSON.")] = False,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="With --desk: price the desk state at this instant (ISO 8601 with offset); "
            "the JSON then leaves out timings, so runs are byte-identical.",
        ),
    ] = None,
) -> None:
    """Plan collateral moves that cover a margin call cheaply and in time; print the plan."""
    # The optimiser stack (cvxpy, HiGHS) loads here, not at import: `pmr --help` stays fast.
    from core.routing.jsonio import input_to_json, plan_to_json
    from core.routing.router import Router

    at = parse_as_of(as_of)
    if at is not None and desk is None:
        raise DataError("--as-of goes with --desk (a problem file has no clock)", field="as_of")
    inp, notes = _input_from_options(problem, desk, pool or [], deadline_s, deficit_usd, at)
    if policy is not None:
        inp = inp.with_policy(policy)
    if emit_problem:
        sys.stdout.write(json.dumps(input_to_json(inp), indent=2) + "\n")
        return
    plan = Router(backend=backend).route(inp, notes=notes)
    if table:
        _print_table(plan)
        return
    plan_json = plan_to_json(plan, timings=at is None)
    sys.stdout.write(json.dumps(plan_json, indent=2, ensure_ascii=False) + "\n")
    if notes:
        from rich.markup import escape

        # for people watching a terminal; the JSON carries the same in "notes"
        for note in notes:
            err_console.print(f"[dim]note: {escape(note)}[/]")


def _input_from_options(
    problem: str | None,
    desk: Path | None,
    pools: list[str],
    deadline_s: float,
    deficit_usd: float | None,
    at: datetime | None,
) -> tuple[RoutingInput, tuple[str, ...]]:
    """The routing input, and notes on candidates left out (from the desk state)."""
    check_money(deficit_usd, "--deficit")
    if (problem is None) == (desk is None):
        raise DataError("give exactly one of --problem FILE.json or --desk DESK.toml --pool ID")
    if problem is not None:
        if pools or deficit_usd is not None:
            raise DataError("--pool and --deficit go with --desk, not with --problem", field="pool")
        from core.routing.jsonio import parse_problem

        return parse_problem(read_problem(problem)), ()
    if desk is None or not pools:
        raise DataError("--desk needs --pool ID (the pool to cover)", field="pool")
    return _input_from_desk(desk, pools, deadline_s, deficit_usd, at)


def _input_from_desk(
    desk_file: Path,
    pools: list[str],
    deadline_s: float,
    deficit_usd: float | None,
    at: datetime | None,
) -> tuple[RoutingInput, tuple[str, ...]]:
    """The desk's state at ``at`` (default now: its declared balances, positions and marks),
    a margin report for every pool (deficits, and headroom of pools collateral may leave),
    then the candidate sources."""
    from core.config import load_desk
    from core.margin.api import evaluate_pool
    from core.routing.from_state import routing_input_from_state

    desk = load_desk(desk_file)
    state = desk.initial_portfolio(as_of_or_now(at))
    reports = {p.id: evaluate_pool(desk, p.id, state) for p in desk.pools}
    built = routing_input_from_state(
        desk,
        state,
        reports,
        pools,
        deadline_s=deadline_s,
        deficit_override_usd=None if deficit_usd is None else dict.fromkeys(pools, deficit_usd),
    )
    return built.input, built.notes


def register(app: typer.Typer) -> None:
    """Add ``pmr route`` to the ``pmr`` app."""
    app.command("route")(handles_pmr_errors(route))
