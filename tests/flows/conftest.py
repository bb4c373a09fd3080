"""The flow tests' fixtures: ONE Prefect test harness for the session, a desk on simulated
venues installed for the flows, and the pmr events captured.

The harness is a temporary Prefect server (SQLite) started once: on this machine that alone
takes ~25 s, so every flow test shares it. Heartbeats are off and every task's retry delay is
0 s (the retry policy is the one the flows declare, only faster).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from core.clock import ManualClock
from core.config import load_desk
from core.ledger.store import init_db, make_engine
from core.venues.factory import DeskVenues, build_desk_venues
from flows.runtime import DeskRuntime, installed

EXAMPLE_DESK = Path(__file__).resolve().parents[2] / "examples" / "desk.toml"
DESK_FILE = str(EXAMPLE_DESK)
#: BTC +12 %: the options pool (short calls) falls to its call level, the other pools do not.
SHOCK = {"BTC": 0.12}
T0_NS = 1_795_737_600_000_000_000  # 2026-11-27 00:00 UTC


@pytest.fixture(scope="session", autouse=True)
def prefect_harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    from flows import margin_call_flow, reconcile_flow, tasks

    retried = [
        tasks.open_desk, margin_call_flow.load_state, margin_call_flow.execute_leg_task,
        margin_call_flow.verify_task, margin_call_flow.replan_task, reconcile_flow.reconcile_desk,
    ]  # fmt: skip
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PREFECT_HOME", str(tmp_path_factory.mktemp("prefect")))
        mp.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        mp.setenv("DO_NOT_TRACK", "1")
        mp.delenv("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", raising=False)
        mp.delenv("PREFECT_RUNNER_HEARTBEAT_FREQUENCY", raising=False)
        for t in retried:
            mp.setattr(t, "retry_delay_seconds", 0)
        # A loaded machine takes longer than the default 30 s to start the temporary server.
        with prefect_test_harness(server_startup_timeout=180):
            tasks.ensure_concurrency_limits()
            yield


@dataclass
class Desk:
    """The example desk on its simulated venues, installed for the flows."""

    rt: DeskRuntime
    dv: DeskVenues
    clock: ManualClock
    engine: Engine

    def transfers(self, venue: str) -> int:
        """Transfers the simulated venue applied (what really moved)."""
        return sum(1 for t in self.dv.engines[venue].transfers if t.status != "FAILED")


def _desk(tmp_path: Path, shock: dict[str, float] | None) -> Iterator[Desk]:
    desk = load_desk(EXAMPLE_DESK)
    clock = ManualClock(T0_NS)
    engine = make_engine(f"sqlite:///{tmp_path / 'pmr.db'}")
    init_db(engine)
    with build_desk_venues(desk, clock) as dv:
        dv.warm_up()
        for e in dv.engines.values():
            if shock:
                e.prices.apply_scenario(shock)
        rt = DeskRuntime(DESK_FILE, desk, clock, dv, engine, store="test", follow_wall=False)
        with installed(rt):
            yield Desk(rt, dv, clock, engine)
    engine.dispose()


@pytest.fixture
def shocked(tmp_path: Path) -> Iterator[Desk]:
    """The example desk after BTC +12 %: ``sim-b.opt`` is at its call level."""
    yield from _desk(tmp_path, SHOCK)


@pytest.fixture
def calm(tmp_path: Path) -> Iterator[Desk]:
    """The example desk as seeded: no pool near its call level."""
    yield from _desk(tmp_path, None)


@pytest.fixture
def emitted(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], list[Any]]]:
    """Capture the events sent during a test; call with a prefix to read them (``"pmr."``)."""
    from prefect.events.clients import AssertingEventsClient
    from prefect.events.worker import EventsWorker

    worker = EventsWorker.instance(AssertingEventsClient)
    monkeypatch.setattr(EventsWorker, "instance", lambda *_a, **_k: worker)

    def read(prefix: str) -> list[Any]:
        worker.wait_until_empty()
        client = worker._client
        assert isinstance(client, AssertingEventsClient)
        return [e for e in client.events if e.event.startswith(prefix)]

    try:
        yield read
    finally:
        worker.drain()
