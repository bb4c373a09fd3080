"""``pmr serve`` and ``pmr monitor``: the desk's deployments, and the monitor run once.

``pmr serve`` runs :func:`flows.serving.serving_stack` (store, a shared simulator for simulated
venues, a local Prefect server when ``PREFECT_API_URL`` is not set, the bootstrap), prints where
the UI is, and serves every deployment until Ctrl-C, then stops what it started. ``pmr monitor``
runs the ``monitor`` flow from the terminal (against ``PREFECT_API_URL``, or Prefect's temporary
server when none is set).
"""

from __future__ import annotations

import contextlib
import signal
from pathlib import Path
from typing import Annotated

import typer

from flows.cli_common import EXAMPLE_DESK, check_number, check_port, handles_pmr_errors, out

__all__ = ["monitor_cmd", "register", "serve_cmd"]

DeskFile = Annotated[
    Path, typer.Option("--desk", metavar="FILE", help="The desk's TOML file.", show_default=False)
]


def _raise_interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


@handles_pmr_errors
def serve_cmd(
    desk_file: DeskFile = EXAMPLE_DESK,
    port: Annotated[
        int | None,
        typer.Option("--port", help="Port of the local Prefect server (default: a free one)."),
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", help="At most this many flow runs at once.")
    ] = None,
    only: Annotated[
        list[str] | None,
        typer.Option(
            "--only",
            help="Serve only this deployment (repeatable), e.g. pmr-margin-call on a host that "
            "only answers margin calls.",
        ),
    ] = None,
) -> None:
    """Serve the desk's deployments: reconcile every 5 min, stress-test hourly, the monitor,
    and the margin-call flow on every pmr.margin.call event. Ctrl-C stops everything started.

    Without PREFECT_API_URL a Prefect server is started on 127.0.0.1 (state under
    $PMR_HOME/prefect); simulated venues are served to every run by one shared simulator.
    """
    from flows.serving import serve_desk, serving_stack

    if port is not None:
        check_port(port)
    if limit is not None and limit < 1:
        raise typer.BadParameter("--limit must be at least 1")
    # SIGTERM (a supervisor, `timeout`, `kill`) stops like Ctrl-C: what was started is stopped.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    out.print(f"starting pmr for {desk_file} ...")
    with serving_stack(desk_file, prefect_port=port) as stack:
        for line in stack.lines():
            out.print(line)

        def ready() -> None:
            names = (
                ", ".join(only)
                if only
                else (
                    "reconcile/pmr-reconcile, stress-test/pmr-stress-test, monitor/pmr-monitor, "
                    "margin-call/pmr-margin-call"
                )
            )
            out.print(f"serving {names}; Ctrl-C stops")
            out.file.flush()

        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: stop what was started
            serve_desk(stack, limit=limit, only=only or (), on_ready=ready)
    out.print("stopped")


@handles_pmr_errors
def monitor_cmd(
    desk_file: DeskFile = EXAMPLE_DESK,
    cycles: Annotated[
        int, typer.Option("--cycles", help="Cycles to run (0: until --duration).")
    ] = 1,
    period_s: Annotated[float, typer.Option("--period", help="Seconds between cycles.")] = 15.0,
    duration_s: Annotated[
        float | None, typer.Option("--duration", help="Stop after this many seconds.")
    ] = None,
    fast_path: Annotated[
        bool,
        typer.Option(
            "--fast-path/--no-fast-path",
            help="Cure a breach in this process at once (default), or leave it to the "
            "deployment triggered by pmr.margin.call.",
        ),
    ] = True,
) -> None:
    """Run the monitor flow: re-price every pool, record and announce each margin call due,
    and (fast path) cure it at once. Prints one line per pool of the last cycle."""
    if cycles < 0:
        raise typer.BadParameter("--cycles must be >= 0")
    check_number(period_s, "--period", ge=0.0)
    if duration_s is not None:
        check_number(duration_s, "--duration", gt=0.0)
    if cycles == 0 and duration_s is None:
        raise typer.BadParameter("--cycles 0 runs until --duration: give one")
    from flows.monitor_flow import monitor_flow

    result = monitor_flow(
        desk_file=str(desk_file.resolve()), cycles=cycles, period_s=period_s,
        duration_s=duration_s, fast_path=fast_path,
    )  # fmt: skip
    for pool in result.get("last", []):
        out.print("  ".join(f"{k}={v}" for k, v in pool.items()))
    for call in result.get("calls", []):
        out.print("margin call " + "  ".join(f"{k}={v}" for k, v in call.items()))
    out.print(
        f"{result.get('cycles', 0)} cycle(s), {result.get('refused', 0)} refused on stale prices"
    )


def register(app: typer.Typer) -> None:
    """Add ``pmr serve`` and ``pmr monitor`` to the CLI."""
    app.command("serve")(serve_cmd)
    app.command("monitor")(monitor_cmd)
