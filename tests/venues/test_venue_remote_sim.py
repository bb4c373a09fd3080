"""Simulated venues served by a running ``pmr sim serve`` (``PMR_SIM_URL``): every process of a
deployment sees one simulated exchange, and a price shock sent to it is what they all see."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from core.clock import SystemClock
from core.config import load_desk
from core.domain import WalletKind
from core.errors import ConfigError
from core.venues.factory import build_desk_venues, sim_exchange_from_desk
from core.venues.sim.control import SimControl
from core.venues.sim.dialect import BinanceDialect
from core.venues.sim.engine import SimNetwork
from core.venues.sim.server import SimHttpServer

DESK = Path(__file__).resolve().parents[2] / "examples" / "desk.toml"
SECRET = "remote-sim-test-secret-0123"


@pytest.fixture
def served() -> Iterator[tuple[SimHttpServer, dict[str, BinanceDialect]]]:
    desk = load_desk(DESK)
    clock = SystemClock()
    network = SimNetwork()
    dialects = {}
    for v in desk.venues:
        engine, _ = sim_exchange_from_desk(
            desk, v.name, clock, network=network, api_secret=SECRET, frozen_prices=True
        )
        dialects[v.name] = BinanceDialect(engine)
    with SimHttpServer(dialects, port=0) as server:
        yield server, dialects


def _url(server: SimHttpServer) -> str:
    return server.base_url("sim-a").rsplit("/", 1)[0]


def test_remote_sim_venues_read_the_served_exchange_and_see_its_shock(
    served: tuple[SimHttpServer, dict[str, BinanceDialect]],
) -> None:
    server, _ = served
    desk = load_desk(DESK)
    env = {"PMR_SIM_URL": _url(server), "PMR_SIM_SECRET": SECRET}
    with build_desk_venues(desk, SystemClock(), env=env) as dv:
        assert dv.engines == {}  # nothing simulated in this process
        dv.warm_up()
        read = {str(b.asset): b.amount for b in dv.venues["sim-a"].balances(WalletKind.SPOT)}
        assert read["USDT"] == Decimal("2500000")  # the desk file's spot USDT on sim-a
        before = {p.symbol: p.mark for p in dv.venues["sim-b"].mark_prices(WalletKind.UM)}
        SimControl(_url(server)).shock("sim-b", {"ETH": -0.26})
        after = {p.symbol: p.mark for p in dv.venues["sim-b"].mark_prices(WalletKind.UM)}
    eth = next(s for s in before if s.startswith("ETH") and s.endswith("USDT"))
    assert after[eth] / before[eth] == pytest.approx(Decimal("0.74"), rel=Decimal("1e-6"))


def test_remote_sim_with_wrong_secret_is_refused_by_the_server(
    served: tuple[SimHttpServer, dict[str, BinanceDialect]],
) -> None:
    server, _ = served
    env = {"PMR_SIM_URL": _url(server), "PMR_SIM_SECRET": "not-the-secret"}
    with (
        build_desk_venues(load_desk(DESK), SystemClock(), env=env) as dv,
        pytest.raises(Exception, match=r"-1022|[Ss]ignature"),
    ):
        dv.venues["sim-a"].balances(WalletKind.SPOT)


def test_remote_sim_url_off_loopback_is_a_config_error() -> None:
    env = {"PMR_SIM_URL": "http://10.1.2.3:8800"}
    with pytest.raises(ConfigError, match="loopback"):
        build_desk_venues(load_desk(DESK), SystemClock(), env=env)


def test_shock_with_no_moves_is_refused_and_changes_nothing(
    served: tuple[SimHttpServer, dict[str, BinanceDialect]],
) -> None:
    server, _ = served
    with pytest.raises(ValueError, match="moves"):
        SimControl(_url(server))._post("faults", {"venue": "sim-b", "action": "shock"})
