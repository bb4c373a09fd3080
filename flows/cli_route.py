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
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from core.errors import DataError
from core.files import read_json_file
from core.routing.backends import Backend
from core.routing.sources import Policy
from flows.cli_common import check_money, err_console, handles_pmr_errors, out

if TYPE_CHECKING:
    from core.routing.sources import RoutingInput

__all__ = ["read_problem", "register", "route"]


def read_problem(path: str) -> Any:
    """Read a problem JSON file (``-``: stdin), refusing unreadable or malformed files."""
    return read_json_file(path, what="routing problem", error=DataError, allow_stdin=True)


def _print_table(plan_json: dict[str, Any]) -> None:
    from rich.table import Table

    summary = Table(title=f"plan {plan_json['plan_id']} — {plan_json['policy']}", show_header=False)
    summary.add_column("figure")
    summary.add_column("value", justify="right")
    for key in ("status", "method", "cost_usd", "credit_usd", "uncovered_usd", "solve_ms"):
        summary.add_row(key, str(plan_json[key]))
    alt = plan_json.get("alternative")
    if alt:
        summary.add_row(f"{alt['policy']} policy would cost", str(alt["cost_usd"]))
    price = plan_json.get("shadow_price_usd_per_usd")
    summary.add_row("shadow price (USD per USD)", "-" if price is None else f"{price:.6f}")
    if plan_json.get("fallback_reason"):
        summary.add_row("fallback reason", plan_json["fallback_reason"])
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
    for a in plan_json["allocations"]:
        steps.add_row(
            a["call"],
            a["source"],
            str(a["tier"]),
            f"{a['amount_usd']:,.2f}",
            f"{a['credit_usd']:,.4f}",
            f"{a['cost_usd']:,.6f}",
            f"{a['eta_s']:g}",
            a["binding"],
        )
    out.print(steps)
    for c in plan_json["calls"]:
        if c.get("suggested_reduction"):
            red = c["suggested_reduction"]
            out.print(
                f"[yellow]call {c['call']}: {c['uncovered_usd']:,.2f} USD uncovered; reduce "
                f"maintenance margin by {red['mm_reduction_usd']:,.2f} USD[/]"
            )


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
) -> None:
    """Plan collateral moves that cover a margin call cheaply and in time; print the plan."""
    # The optimiser stack (cvxpy, HiGHS) loads here, not at import: `pmr --help` stays fast.
    from core.routing.jsonio import input_to_json, plan_to_json
    from core.routing.router import Router

    inp = _input_from_options(problem, desk, pool or [], deadline_s, deficit_usd)
    if policy is not None:
        inp = inp.with_policy(policy)
    if emit_problem:
        sys.stdout.write(json.dumps(input_to_json(inp), indent=2) + "\n")
        return
    plan_json = plan_to_json(Router(backend=backend).route(inp))
    if table:
        _print_table(plan_json)
    else:
        sys.stdout.write(json.dumps(plan_json, indent=2, ensure_ascii=False) + "\n")


def _input_from_options(
    problem: str | None,
    desk: Path | None,
    pools: list[str],
    deadline_s: float,
    deficit_usd: float | None,
) -> RoutingInput:
    check_money(deficit_usd, "--deficit")
    if (problem is None) == (desk is None):
        raise DataError("give exactly one of --problem FILE.json or --desk DESK.toml --pool ID")
    if problem is not None:
        if pools or deficit_usd is not None:
            raise DataError("--pool and --deficit go with --desk, not with --problem", field="pool")
        from core.routing.jsonio import parse_problem

        return parse_problem(read_problem(problem))
    if desk is None or not pools:
        raise DataError("--desk needs --pool ID (the pool to cover)", field="pool")
    return _input_from_desk(desk, pools, deadline_s, deficit_usd)


def _input_from_desk(
    desk_file: Path, pools: list[str], deadline_s: float, deficit_usd: float | None
) -> RoutingInput:
    """The desk's current state (its declared balances, positions and marks, priced now),
    a margin report for every pool (deficits, and headroom of pools collateral may leave),
    then the candidate sources."""
    from core.clock import SystemClock
    from core.config import load_desk
    from core.margin.api import evaluate_pool
    from core.routing.from_state import routing_input_from_state

    desk = load_desk(desk_file)
    at = SystemClock().now()
    state = desk.initial_portfolio(at)
    reports = {p.id: evaluate_pool(desk, p.id, state) for p in desk.pools}
    built = routing_input_from_state(
        desk,
        state,
        reports,
        pools,
        deadline_s=deadline_s,
        deficit_override_usd=None if deficit_usd is None else dict.fromkeys(pools, deficit_usd),
    )
    for note in built.notes:
        err_console.print(f"[dim]note: {note}[/]")
    return built.input


def register(app: typer.Typer) -> None:
    """Add ``pmr route`` to the ``pmr`` app."""
    app.command("route")(handles_pmr_errors(route))
