"""Everything ``pmr serve`` (and ``pmr demo --serve``) runs, started in order, stopped in reverse.

:func:`serving_stack` brings up, for one desk:

1. **the store**: ``init_db`` on ``PMR_DATABASE_URL`` / ``$PMR_HOME/pmr.db`` (idempotent), so the
   served runs find it;
2. **one shared simulator** when the desk has simulated venues and ``PMR_SIM_URL`` is not set:
   the venues served over loopback HTTP from this process (``SimHttpServer``, wall clock, a
   fresh random API secret), announced to every child process through ``PMR_SIM_URL`` /
   ``PMR_SIM_SECRET``. Without it each served run (a fresh interpreter) would start its own
   simulator from the desk file and never see the breach the monitor saw;
3. **a Prefect server** when ``PREFECT_API_URL`` is not set (:class:`LocalPrefectServer`, state
   under ``$PMR_HOME/prefect``), announced the same way;
4. **the bootstrap** (``flows.bootstrap``: concurrency limits, Secret blocks); the stress-test
   runs' batches go to a Dask ``LocalCluster`` (``PMR_STRESS_DASK=local``) unless the
   environment names a scheduler.

:func:`serve_desk` then serves ``deployments/serve.py``'s deployments until Ctrl-C (runner
poll 1 s: DESIGN §9 measured sub-second polling stalling run creation on SQLite). Leaving the
``with`` block stops what the stack started, in reverse, and restores the environment.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from core.config import DeskConfig, load_desk
from core.errors import ConfigError
from core.venues.factory import SIM_SECRET_ENV, SIM_URL_ENV
from flows.bootstrap import BootstrapReport, bootstrap
from flows.prefect_server import QUIET_PREFECT, LocalPrefectServer

__all__ = ["RUNNER_POLL_S", "Stack", "load_serve_module", "serve_desk", "serving_stack"]

ROOT = Path(__file__).resolve().parents[1]
RUNNER_POLL_S = 1


@dataclass
class Stack:
    """What :func:`serving_stack` is running (``None``: configured outside, not started)."""

    desk_file: Path
    desk: DeskConfig
    api_url: str
    ui_url: str | None
    sim_url: str | None
    store: str
    bootstrap: BootstrapReport
    started: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"store: {self.store}"]
        if self.sim_url:
            out.append(f"simulated venues: {self.sim_url} ({SIM_URL_ENV})")
        out.append(f"Prefect API: {self.api_url}")
        if self.ui_url:
            out.append(f"Prefect UI: {self.ui_url}")
        return out + self.bootstrap.lines()


@contextmanager
def _env(updates: dict[str, str]) -> Iterator[None]:
    """``os.environ`` with ``updates`` for the block (children inherit it), then as before."""
    before = {k: os.environ.get(k) for k in updates}
    os.environ.update(updates)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _start_simulator(desk: DeskConfig, stack: ExitStack) -> tuple[str, str]:
    from core.clock import SystemClock
    from core.redact import register_secret
    from core.venues.factory import sim_exchange_from_desk
    from core.venues.sim.dialect import BinanceDialect
    from core.venues.sim.engine import SimNetwork
    from core.venues.sim.server import SimHttpServer

    # A secret given in the environment is used (a test or a second host signs with it);
    # otherwise a fresh one, which only the children of this process learn.
    secret = os.environ.get(SIM_SECRET_ENV, "").strip() or secrets.token_hex(16)
    register_secret(secret)
    clock, network = SystemClock(), SimNetwork()
    dialects = {}
    for v in desk.venues:
        if v.kind == "sim":
            engine, _ = sim_exchange_from_desk(
                desk, v.name, clock, network=network, api_secret=secret
            )
            dialects[v.name] = BinanceDialect(engine)
    server = SimHttpServer(dialects, port=0).start()
    stack.callback(server.stop)
    return f"http://127.0.0.1:{server.port}", secret


@contextmanager
def serving_stack(desk_file: Path, *, prefect_port: int | None = None) -> Iterator[Stack]:
    """Start what is missing for ``desk_file``'s deployments (module docstring); stop it after.

    Raises
    ------
    ConfigError
        A bad desk file or store, or a Prefect server that does not come up.
    """
    from core.ledger.store import init_db, make_engine, pmr_home, redact_url

    desk = load_desk(desk_file)
    with ExitStack() as stack:
        started: list[str] = []
        engine = make_engine()
        try:
            init_db(engine)
            store = redact_url(engine.url.render_as_string(hide_password=False))
        finally:
            engine.dispose()
        sim_url = os.environ.get(SIM_URL_ENV) or None
        if sim_url is None and any(v.kind == "sim" for v in desk.venues):
            sim_url, secret = _start_simulator(desk, stack)
            stack.enter_context(_env({SIM_URL_ENV: sim_url, SIM_SECRET_ENV: secret}))
            started.append("simulator")
        api_url = os.environ.get("PREFECT_API_URL") or None
        ui_url = None
        if api_url is None:
            server = LocalPrefectServer(pmr_home(), port=prefect_port)
            stack.enter_context(server)
            api_url, ui_url = server.api_url, server.ui_url
            quiet = {k: v for k, v in QUIET_PREFECT.items() if k not in os.environ}
            stack.enter_context(
                _env({"PREFECT_API_URL": api_url, "PREFECT_HOME": server.env["PREFECT_HOME"]})
            )
            stack.enter_context(_env(quiet))
            started.append("prefect server")
        if "PMR_STRESS_DASK" not in os.environ:  # the stress batches on a Dask LocalCluster
            stack.enter_context(_env({"PMR_STRESS_DASK": "local"}))
        from prefect.settings import PREFECT_API_URL, temporary_settings

        stack.enter_context(temporary_settings(updates={PREFECT_API_URL: api_url}))
        report = bootstrap(desk)
        yield Stack(
            desk_file=Path(desk_file), desk=desk, api_url=api_url, ui_url=ui_url,
            sim_url=sim_url, store=store, bootstrap=report, started=started,
        )  # fmt: skip


def load_serve_module() -> ModuleType:
    """``deployments/serve.py`` as a module (the folder is not a package: Prefect's
    ``prefect.yaml`` names its files by path)."""
    spec = importlib.util.spec_from_file_location(
        "pmr_deployments_serve", ROOT / "deployments" / "serve.py"
    )
    if spec is None or spec.loader is None:
        raise ImportError("cannot load deployments/serve.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def serve_desk(
    stack: Stack,
    *,
    limit: int | None = None,
    only: Sequence[str] = (),
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Serve the desk's deployments (``only`` these names, when given) against the stack's API
    until Ctrl-C.

    Raises
    ------
    ConfigError
        ``only`` names a deployment that does not exist.
    """
    from prefect import serve

    deployments = load_serve_module().build_deployments(stack.desk_file)
    if only:
        names = {d.name for d in deployments}
        unknown = sorted(set(only) - names)
        if unknown:
            raise ConfigError(
                f"no deployment named {', '.join(unknown)}; known: {', '.join(sorted(names))}"
            )
        deployments = [d for d in deployments if d.name in only]
    options: dict[str, Any] = {"print_starting_message": False, "query_seconds": RUNNER_POLL_S}
    if limit is not None:
        options["limit"] = limit
    if on_ready is not None:
        on_ready()
    serve(*deployments, **options)
