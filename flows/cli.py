"""The ``pmr`` command line: every feature of the product reachable from a shell.

Commands are grouped by area; each area registers its own commands from a small module
(``flows/cli_<area>.py``) so this file only assembles them.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from core.config import load_desk
from core.errors import PmrError
from flows import cli_db, cli_margin, cli_route, cli_sim
from flows.cli_common import EXAMPLE_DESK, fail, handles_pmr_errors, out
from flows.demo import DEFAULT_SHOCK, parse_shock, run_demo
from flows.desk_summary import print_desk_summary

app = typer.Typer(
    name="pmr",
    help="Portfolio Margin Router: portfolio margin, stress tests and automatic margin-call "
    "collateral routing for crypto derivatives desks.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
config_app = typer.Typer(
    help="Validate and inspect desk configuration files.", no_args_is_help=True
)
app.add_typer(config_app, name="config")
cli_db.register(app)
cli_sim.register(app)
cli_margin.register(app)
cli_route.register(app)


@config_app.command("check")
@handles_pmr_errors
def config_check(
    file: Annotated[Path, typer.Argument(help="Desk TOML file to validate.")],
) -> None:
    """Validate a desk TOML file and print its summary; exit 2 naming the key path if broken."""
    desk = load_desk(file)
    print_desk_summary(desk, source=str(file))
    out.print(f"[green]ok[/]: {file} is a valid desk configuration")


@app.command("demo")
@handles_pmr_errors
def demo(
    desk_file: Annotated[
        Path, typer.Option("--desk", help="Desk TOML (default: the bundled example desk).")
    ] = EXAMPLE_DESK,
    shock: Annotated[
        str, typer.Option("--shock", help="Price moves, e.g. 'ETH=-0.25,BTC=0.1'.")
    ] = DEFAULT_SHOCK,
    vol_up: Annotated[
        float, typer.Option("--vol-up", help="Relative IV change with the shock (0.5 = +50 %).")
    ] = 0.3,
    deadline_s: Annotated[
        float, typer.Option("--deadline", help="Seconds the cure may take.")
    ] = 60.0,
) -> None:
    """Run the offline demo: margin now, a sharp move, margin calls, the cheapest cure."""
    run_demo(desk_file, shock=parse_shock(shock), vol_up_frac=vol_up, deadline_s=deadline_s)


def main() -> None:
    """Console-script entry point: user errors exit 2 with one line, never a traceback."""
    try:
        app()
    except PmrError as exc:  # raised outside a decorated command (e.g. while wiring)
        fail(exc)
        sys.exit(2)


if __name__ == "__main__":
    main()
