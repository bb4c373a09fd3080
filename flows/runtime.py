"""The desk a flow runs on: its config, venues, clock, store and audit key, one per process.

Flow parameters are plain values (a desk file path, a pool or margin-call id): never venue
objects, store URLs or keys. A flow asks :func:`desk_runtime` for the desk named by its
``desk_file`` parameter and gets:

* the one already **installed** in this process for that file (:func:`installed`): the monitor's
  in-process fast path runs the margin-call flow on the very venues (and simulator state) the
  monitor just read, and tests install a desk on shocked or faulty simulated venues;
* otherwise one **built** from the file and cached for the process: the venues from the config
  (live keys from the environment or a Prefect ``Secret`` block, read here, inside the run;
  simulated venues in-process on a manual clock started at the wall clock, as the CLI does), the
  store from ``PMR_DATABASE_URL`` / ``PMR_HOME`` (an existing store at this pmr's head: ``pmr db
  init`` creates it), the audit key from ``PMR_AUDIT_KEY`` (none: an unkeyed trail).
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import ConfigError

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from core.clock import Clock
    from core.config import DeskConfig
    from core.execution.cure import DeskCure
    from core.execution.executor import Executor
    from core.ledger.chain import AuditKey
    from core.venues.factory import DeskVenues

__all__ = [
    "DeskRuntime",
    "desk_runtime",
    "installed",
    "open_store",
    "runtime_key",
    "store_engine_for",
]


@dataclass
class DeskRuntime:
    """One desk on its venues, with the store and the key its flows write with."""

    desk_file: str
    desk: DeskConfig
    clock: Clock
    venues: DeskVenues
    engine: Engine
    audit_key: AuditKey | None = None
    store: str = ""
    owner: str = field(
        default_factory=lambda: (
            f"pmr-flow@{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        )
    )
    executor_options: dict[str, Any] = field(default_factory=dict)
    follow_wall: bool = True  # a simulated desk's manual clock catches up with the wall clock
    _cure: DeskCure | None = field(default=None, repr=False)

    @property
    def cure(self) -> DeskCure:
        """The desk's verifier and re-planner (one router for every call of the desk)."""
        if self._cure is None:
            from core.execution.cure import DeskCure

            self._cure = DeskCure(self.desk, self.venues.venues, self.clock, engine=self.engine)
        return self._cure

    def executor(self, on_step: object = None) -> Executor:
        """An executor on this desk: its gate, verifier, re-planner and plan check."""
        from core.execution.cure import check_plan_against_desk
        from core.execution.executor import Executor
        from core.execution.gate import desk_gate

        cure = self.cure
        return Executor(
            self.engine, self.venues.venues, self.clock, owner=self.owner,
            gate=desk_gate(self.desk), audit_key=self.audit_key,
            verifier=cure.verify, replanner=cure.replan,
            plan_check=lambda r: check_plan_against_desk(self.desk, r),
            on_step=on_step,  # type: ignore[arg-type]
            **self.executor_options,
        )  # fmt: skip

    @property
    def simulated(self) -> bool:
        return all(v.kind == "sim" for v in self.desk.venues)

    def catch_up(self) -> None:
        """Bring a simulated desk's manual clock up to the wall clock (never back): between
        monitor cycles the simulated markets move as real time passes, while waits inside a
        run (a lookup window) still cost no real time."""
        from core.clock import ManualClock, SystemClock

        if self.follow_wall and isinstance(self.clock, ManualClock):
            wall = SystemClock().timestamp_ns()
            if wall > self.clock.timestamp_ns():
                self.clock.set_ns(wall)


_LOCK = threading.Lock()
_RUNTIMES: dict[str, DeskRuntime] = {}


def runtime_key(desk_file: str | os.PathLike[str]) -> str:
    """The registry key of a desk file: its resolved path."""
    return str(Path(desk_file).expanduser().resolve())


@contextmanager
def installed(runtime: DeskRuntime) -> Iterator[DeskRuntime]:
    """Make ``runtime`` the one every flow of this process uses for its desk file."""
    key = runtime_key(runtime.desk_file)
    with _LOCK:
        before = _RUNTIMES.get(key)
        _RUNTIMES[key] = runtime
    try:
        yield runtime
    finally:
        with _LOCK:
            if before is None:
                _RUNTIMES.pop(key, None)
            else:
                _RUNTIMES[key] = before


def open_store(env: Mapping[str, str] | None = None) -> tuple[Engine, str]:
    """The store from ``PMR_DATABASE_URL`` / ``PMR_HOME``, at this pmr's head; never created.

    Raises
    ------
    ConfigError
        No store there (``pmr db init`` creates it), or one at another schema revision.
    """
    from core.ledger.migrations.status import existing_store
    from core.ledger.store import make_engine, redact_url

    engine = make_engine(None, env=env)
    shown = redact_url(engine.url.render_as_string(hide_password=False))
    with existing_store(engine) as (_conn, status):
        pass
    if status.state != "current":
        raise ConfigError(f"the store is not at this pmr's schema: {status}", url=shown)
    return engine, f"{shown} ({engine.dialect.name})"


def _build(desk_file: str) -> DeskRuntime:
    from core.clock import ManualClock, SystemClock
    from core.config import load_desk
    from core.venues.factory import SIM_URL_ENV, build_desk_venues
    from flows.audit_key import load_prefect_secret, resolve_audit_key

    desk = load_desk(Path(desk_file))
    wall = SystemClock()
    # In-process simulators run on a manual clock (a lookup window costs no real time); a
    # simulator served by `pmr sim serve` (PMR_SIM_URL) keeps wall time, and so must we: a
    # manual clock racing ahead of it would take a transfer booked late for a lost one.
    local_sim = all(v.kind == "sim" for v in desk.venues) and not os.environ.get(SIM_URL_ENV)
    clock: Clock = ManualClock(start_ns=wall.timestamp_ns()) if local_sim else wall
    engine, where = open_store()
    key = resolve_audit_key(required=False)
    dv = build_desk_venues(desk, clock, resolver=load_prefect_secret)
    try:
        dv.warm_up()
    except BaseException:
        dv.close()
        raise
    return DeskRuntime(desk_file, desk, clock, dv, engine, audit_key=key, store=where)


def desk_runtime(desk_file: str) -> DeskRuntime:
    """The runtime installed for ``desk_file`` in this process, else one built and cached."""
    key = runtime_key(desk_file)
    with _LOCK:
        found = _RUNTIMES.get(key)
    if found is not None:
        return found
    built = _build(desk_file)
    with _LOCK:
        return _RUNTIMES.setdefault(key, built)


def store_engine_for(desk_file: str) -> Engine:
    """The store of the runtime installed for ``desk_file``, else the configured one (for a
    flow that writes to the store without touching the venues)."""
    with _LOCK:
        found = _RUNTIMES.get(runtime_key(desk_file))
    return found.engine if found is not None else open_store()[0]
