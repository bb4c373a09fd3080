"""``pmr sim``: run the simulated Binance venues of a desk as a loopback HTTP server, and check
that the desk gives the same results in-process and over HTTP.

Orchestration only: the exchange is ``core.venues.sim``; this module parses options, starts the
server on 127.0.0.1 and prints how to point a ccxt client at it. It also provides
:func:`prefect_secret_resolver`, the Secret-block resolver ``core.venues.factory`` takes as an
injected callable (``core`` never imports Prefect).

Examples
--------
::

    $ pmr sim serve --port 8800 --prices frozen
    sim-a  http://127.0.0.1:8800/sim-a  api key pmr-sim-sim-a
    sim-b  http://127.0.0.1:8800/sim-b  api key pmr-sim-sim-b
    serving 2 simulated venue(s) on 127.0.0.1:8800 (secret: --api-secret; prices: frozen); ...

    >>> ex = ccxt.binance({"apiKey": "pmr-sim-sim-a", "secret": "pmr-sim-secret"})
    >>> for k, u in ex.urls["api"].items():
    ...     ex.urls["api"][k] = "http://127.0.0.1:8800/sim-a" + urlsplit(u).path
    >>> ex.load_markets(); ex.fetch_balance(); ex.transfer("USDT", 100, "spot", "linear")
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

import typer

from core.errors import ConfigError
from flows.cli_common import EXAMPLE_DESK, check_port, handles_pmr_errors, out

__all__ = ["prefect_secret_resolver", "register", "sim_check", "sim_serve"]

DeskOption = Annotated[
    Path, typer.Option("--desk", help="Desk TOML (default: the bundled example desk).")
]


def prefect_secret_resolver(block_name: str) -> str:
    """Load a Prefect ``Secret`` block's value (JSON ``{"api_key", "secret"}``) by name."""
    from prefect.blocks.system import Secret  # flows/ may import Prefect; core/ never does

    block = Secret.load(block_name, _sync=True)  # type: ignore[call-arg]  # force the sync path
    if not isinstance(block, Secret):
        raise ConfigError(
            "Prefect Secret block did not load synchronously", secret_block=block_name
        )
    value = block.get()
    return value if isinstance(value, str) else json.dumps(value)


@handles_pmr_errors
def sim_serve(
    desk_file: DeskOption = EXAMPLE_DESK,
    port: Annotated[int, typer.Option("--port", help="Port on 127.0.0.1 (0 = any free).")] = 8800,
    venue: Annotated[
        list[str] | None,
        typer.Option("--venue", help="Serve only these simulated venues (repeatable)."),
    ] = None,
    api_secret: Annotated[
        str, typer.Option("--api-secret", help="HMAC secret clients must sign with.")
    ] = "pmr-sim-secret",
    prices: Annotated[
        Literal["path", "frozen"],
        typer.Option(
            "--prices",
            help="'path': the seeded random walk from the desk's prices, moving with the wall "
            "clock; 'frozen': every asset stays at the desk's price, so a client sees the same "
            "figures in every run.",
        ),
    ] = "path",
) -> None:
    """Serve the desk's simulated venues over loopback HTTP in Binance's REST dialect.

    The server keeps wall-clock time (clients sign with theirs; Binance refuses a timestamp
    outside its window with -1021), so ``--prices frozen`` is what makes answers repeatable.
    """
    from core.clock import SystemClock
    from core.config import load_desk
    from core.venues.factory import sim_exchange_from_desk
    from core.venues.sim.dialect import BinanceDialect
    from core.venues.sim.engine import SimNetwork
    from core.venues.sim.server import SimHttpServer

    check_port(port)
    desk = load_desk(desk_file)
    names = venue or [v.name for v in desk.venues if v.kind == "sim"]
    if not names:
        raise ConfigError("the desk has no simulated venues", file=str(desk_file))
    clock = SystemClock()
    network = SimNetwork()
    dialects = {}
    for name in names:
        engine, skipped = sim_exchange_from_desk(
            desk,
            name,
            clock,
            network=network,
            api_secret=api_secret,
            frozen_prices=prices == "frozen",
        )
        dialects[name] = BinanceDialect(engine)
        for item in skipped:
            out.print(f"[yellow]note[/]: {item}")
    try:
        server = SimHttpServer(dialects, port=port)
    except OSError as exc:
        raise ConfigError(f"cannot listen on 127.0.0.1:{port}: {exc.strerror}", port=port) from None
    for name, d in dialects.items():
        out.print(f"{name}  {server.base_url(name)}  api key {d.engine.config.api_key}")
    out.print(
        f"serving {len(dialects)} simulated venue(s) on 127.0.0.1:{server.port} "
        f"(secret: --api-secret; prices: {prices}); Ctrl-C stops"
    )
    out.file.flush()  # a supervisor reading a pipe needs the port now, not at exit
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        out.print("stopped")


@handles_pmr_errors
def sim_check(desk_file: DeskOption = EXAMPLE_DESK) -> None:
    """Run the desk's venue walk in-process and over loopback HTTP and compare the results.

    The walk reads every wallet, position and mark (the options book too: positions, marks,
    IVs and indices) and the desk's state as the venues report it (one line per venue, one per
    option held). It includes the unknown-outcome drills: a timeout and a proxy's HTML answer after the
    transfer was applied (found by lookup), a transfer booked 30 s late (``not_found_yet``, then
    found), a lost one (``not_found`` only after the window, then resent), a Convert accept
    (``orderStatus`` by quote id) and a withdrawal (by ``withdrawOrderId``). Exits 1 if the two
    transports differ. The last line is JSON.
    """
    from sqlmodel import Session

    from core.clock import ManualClock
    from core.config import load_desk
    from core.ledger.claims import StoreTransferClaims
    from core.ledger.store import init_db, make_engine
    from core.venues.exercise import exercise_desk
    from core.venues.factory import build_desk_venues

    desk = load_desk(desk_file)
    records = {}
    transport: Literal["inprocess", "http"]
    for transport in ("inprocess", "http"):
        clock = ManualClock()
        store = make_engine("sqlite://")  # a fresh in-memory ledger: lookups read claims from it
        init_db(store)
        with (
            Session(store) as session,
            build_desk_venues(desk, clock, transport=transport) as dv,
        ):
            records[transport] = exercise_desk(
                desk, dv.venues, clock, engines=dv.engines, claims=StoreTransferClaims(session)
            )
        store.dispose()
    same = records["inprocess"] == records["http"]
    steps = records["http"]["steps"]
    for step in steps:
        out.print("  " + " ".join(str(x) for x in step), markup=False)
    out.print(
        json.dumps(
            {"same_results": same, "steps": len(steps), "venues": sorted(records["http"]["after"])}
        ),
        markup=False,
    )
    if not same:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``pmr sim serve`` and ``pmr sim check`` to the CLI."""
    sim_app = typer.Typer(help="Simulated Binance venues (offline default).", no_args_is_help=True)
    sim_app.command("serve")(sim_serve)
    sim_app.command("check")(sim_check)
    app.add_typer(sim_app, name="sim")
