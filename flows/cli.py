"""The ``pmr`` command line: every feature of the product reachable from a shell.

Commands are grouped by area; each area registers its own commands from a small module
(``flows/cli_<area>.py``) so this file only assembles them.

Start-up: this module and the area modules import only typer and light ``core`` modules at
import time (``pmr --help`` never loads pydantic, numpy or the solvers); each command imports
what it needs when it runs. Help is typer's plain formatter: the rich one costs start-up time
and labels every flag ``<bool>``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from core.errors import PmrError
from flows import (
    cli_audit,
    cli_db,
    cli_execute,
    cli_margin,
    cli_reconcile,
    cli_route,
    cli_serve,
    cli_sim,
    cli_stress,
)
from flows.cli_common import (
    EXAMPLE_DESK,
    AsOfOption,
    display_path,
    fail,
    handles_pmr_errors,
    out,
    parse_as_of,
)
from flows.demo import DEFAULT_SHOCK

if TYPE_CHECKING:
    from core.config import DeskConfig
    from core.domain import Portfolio

app = typer.Typer(
    name="pmr",
    help="Portfolio Margin Router: portfolio margin and automatic margin-call collateral "
    "routing for crypto derivatives desks.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
)
config_app = typer.Typer(
    help="Validate and inspect desk configuration files.", no_args_is_help=True
)
app.add_typer(config_app, name="config")
cli_db.register(app)
cli_sim.register(app)
cli_margin.register(app)
cli_route.register(app)
cli_audit.register(app)
cli_reconcile.register(app)
cli_execute.register(app)
cli_stress.register(app)
cli_serve.register(app)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"pmr {version('pmr')}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Portfolio Margin Router."""


@config_app.command("check")
@handles_pmr_errors
def config_check(
    file: Annotated[Path, typer.Argument(help="Desk TOML file to validate.", metavar="FILE")],
    as_of: AsOfOption = None,
) -> None:
    """Validate a desk TOML file and print its summary; exit 2 naming the key path if broken.

    The declared starting state is checked at now (or --as-of): every position and balance
    has a price, no held option or future is past its expiry, and every pool can be margined,
    so a desk that passes is one margin, route and demo accept.
    """
    from core.config import load_desk
    from flows.cli_common import as_of_or_now
    from flows.desk_summary import print_desk_summary

    at = as_of_or_now(parse_as_of(as_of))
    desk = load_desk(file)
    state = desk.initial_portfolio(at)  # runs desk.check_state_at(at)
    if desk.balances or desk.positions:
        _check_pools_margin(desk, state)
    print_desk_summary(desk, source=display_path(file))
    out.print(f"[green]ok[/]: {file} is a valid desk configuration")


def _check_pools_margin(desk: DeskConfig, state: Portfolio) -> None:
    """Margin every pool from the declared state, as ``pmr margin --desk`` would: what the
    models refuse beyond the file's own rules (an option in a pool whose model does not
    margin options, a future without a bracket table) is refused by the check too."""
    from core.errors import ConfigError, DataError
    from core.margin.api import evaluate_pool

    for pool in desk.pools:
        try:
            evaluate_pool(desk, pool.id, state)
        except DataError as exc:
            raise ConfigError(
                f"pool {pool.id!r} cannot be margined from the declared state: {exc}",
                file=desk.source,
            ) from None


@app.command("demo")
@handles_pmr_errors
def demo(
    desk_file: Annotated[
        Path,
        typer.Option(
            "--desk",
            metavar="FILE",
            help="Desk TOML (default: the bundled example desk).",
            show_default=False,
        ),
    ] = EXAMPLE_DESK,
    shock: Annotated[
        str,
        typer.Option(
            "--shock",
            metavar="MOVES",
            help="Price moves of assets the desk prices, e.g. 'ETH=-0.25,BTC=0.1'.",
        ),
    ] = DEFAULT_SHOCK,
    deadline_s: Annotated[
        float, typer.Option("--deadline", metavar="SECONDS", help="Seconds the cure may take.")
    ] = 60.0,
    as_of: AsOfOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Stop after the plan: execute nothing.")
    ] = False,
    serve: Annotated[
        bool,
        typer.Option(
            "--serve",
            help="Live on a real Prefect server: serve the deployments, breach the desk once "
            "and let the triggered margin-call deployment cure it; Ctrl-C stops.",
        ),
    ] = False,
) -> None:
    """Run the whole story offline in seconds, on the same core steps as the deployments.

    Reconcile the simulated venues with a fresh store, stress-test the desk, move prices on
    the simulator; the monitor records a margin call for each pool at or below its call level,
    and the margin-call flow plans (cvxpy + HiGHS) and executes pre-authorised transfers, one
    of which loses its answer (a timeout) and is found by lookup, not resent; then the ratios,
    a second reconciliation, the audit trail, and where to look in the Prefect UI. The store
    is $PMR_HOME/demo/pmr.db, replaced on each run (a temporary one without PMR_HOME).
    """
    from flows.demo import parse_shock, run_demo

    if serve:
        from flows.demo_serve import run_live_demo

        run_live_demo(desk_file, parse_shock(shock), out.print)
        return
    run_demo(
        desk_file,
        shock=parse_shock(shock),
        deadline_s=deadline_s,
        as_of=parse_as_of(as_of),
        dry_run=dry_run,
    )


def main() -> None:
    """Console-script entry point: user errors exit 2 with one line, never a traceback."""
    try:
        app()
    except PmrError as exc:  # raised outside a decorated command (e.g. while wiring)
        fail(exc)
        sys.exit(2)


if __name__ == "__main__":
    main()
