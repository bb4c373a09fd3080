"""Loopback HTTP: an unmodified ccxt client against ``SimHttpServer``, and the example desk giving
identical results in-process and over HTTP. Every socket must go to 127.0.0.1."""

from __future__ import annotations

import socket
from decimal import Decimal
from typing import Any, Literal

import ccxt
import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from core.clock import ManualClock, SystemClock
from core.config import DeskConfig
from core.domain import WalletKind
from core.errors import VenueFatal
from core.ledger.claims import StoreTransferClaims
from core.ledger.store import make_engine
from core.ledger.tables import LedgerTable
from core.venues.ccxt_venue import rewrite_api_urls
from core.venues.exercise import exercise_desk
from core.venues.factory import build_desk_venues, sim_exchange_from_desk
from core.venues.sim.dialect import BinanceDialect
from core.venues.sim.engine import SimNetwork
from core.venues.sim.server import SimHttpServer


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Fail the test if anything connects anywhere but 127.0.0.1."""
    seen: list[Any] = []
    real_connect = socket.socket.connect

    def guarded(self: socket.socket, address: Any) -> Any:
        seen.append(address)
        host = address[0] if isinstance(address, tuple) else address
        if host not in ("127.0.0.1", "localhost"):
            raise AssertionError(f"connection to {address!r} attempted; only loopback allowed")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    return seen


def test_unmodified_ccxt_client_with_loopback_urls_loads_markets_balances_and_transfers(
    desk: DeskConfig, loopback_only: list[Any]
) -> None:
    # An unmodified client signs with the wall clock, so the venue runs on it too (Binance
    # refuses timestamps outside its window); frozen prices keep the figures exact.
    engine, _ = sim_exchange_from_desk(
        desk, "sim-a", SystemClock(), network=SimNetwork(), api_secret="s3cret", frozen_prices=True
    )
    with SimHttpServer({"sim-a": BinanceDialect(engine)}) as server:
        ex = ccxt.binance({"apiKey": engine.config.api_key, "secret": "s3cret"})
        ex.enableRateLimit = False
        for key, url in ex.urls["api"].items():  # configuration only: point at the server
            ex.urls["api"][key] = server.base_url("sim-a") + url.split(".com", 1)[1]
        assert not any("binance.com" in u for u in ex.urls["api"].values())
        markets = ex.load_markets()
        assert {"BTC/USDT", "BTC/USDT:USDT", "BTC/USD:BTC", "ETH/USD:ETH"} <= set(markets)
        assert ex.currencies["USDT"]["precision"] == 1e-8
        spot = ex.fetch_balance()
        assert spot["USDT"]["free"] == 2_500_000
        # ccxt's futures "total" is the margin balance: wallet + unrealised PnL.
        upnl_um = sum(engine.unrealized_pnl(p) for p in engine.positions_in(WalletKind.UM))
        assert upnl_um == Decimal(
            -533_000
        )  # −95·(95040−93500) + 1800·(3201.5−3310) − 22000·(180.1−171.4)
        assert ex.fetch_balance({"type": "swap"})["USDT"]["total"] == 250_000 - 533_000
        upnl_cm = sum(engine.unrealized_pnl(p) for p in engine.positions_in(WalletKind.CM))
        inverse = ex.fetch_balance({"type": "swap", "subType": "inverse"})
        assert inverse["BTC"]["total"] == pytest.approx(float(Decimal("1.5") + upnl_cm), abs=1e-8)
        pm = ex.fetch_balance({"portfolioMargin": True})
        assert pm["USDT"]["total"] == 1_300_000 + 250_000 - 533_000  # margin + UM + uPnL
        t = ex.transfer("USDT", 1000, "spot", "linear")
        assert t["id"] == str(engine.transfers[-1].tran_id)
        assert engine.transfers[-1].type == "MAIN_UMFUTURE"
    assert loopback_only
    assert all(a[0] == "127.0.0.1" for a in loopback_only)


def test_unmodified_ccxt_client_with_wrong_secret_is_refused(
    desk: DeskConfig, clock: ManualClock, loopback_only: list[Any]
) -> None:
    engine, _ = sim_exchange_from_desk(desk, "sim-a", clock, api_secret="right")
    with SimHttpServer({"sim-a": BinanceDialect(engine)}) as server:
        ex = ccxt.binance({"apiKey": engine.config.api_key, "secret": "wrong"})
        ex.enableRateLimit = False
        rewrite_api_urls(ex, server.base_url("sim-a"))
        with pytest.raises(ccxt.AuthenticationError):
            ex.fetch_balance({"type": "swap"})


def test_rewrite_api_urls_with_leftover_binance_url_raises() -> None:
    ex = ccxt.binance()
    ex.urls["api"]["weird"] = {"nested": "https://api.binance.com"}
    with pytest.raises(VenueFatal, match=r"binance\.com"):
        rewrite_api_urls(ex, "http://127.0.0.1:1")


def test_example_desk_with_inprocess_and_http_transports_gives_same_results(
    desk: DeskConfig, loopback_only: list[Any]
) -> None:
    records = {}
    transport: Literal["inprocess", "http"]
    for transport in ("inprocess", "http"):
        clock = ManualClock()
        with (
            Session(_ledger()) as session,
            build_desk_venues(desk, clock, transport=transport) as dv,
        ):
            records[transport] = exercise_desk(
                desk, dv.venues, clock, engines=dv.engines, claims=StoreTransferClaims(session)
            )
    assert records["inprocess"] == records["http"]
    rec = records["http"]
    kinds = [s[0] for s in rec["steps"]]
    assert kinds.count("transfer") == 7
    assert "convert" in kinds
    withdraw = next(s for s in rec["steps"] if s[0] == "withdraw")
    assert withdraw[3] == [["49999", True]]  # 50,000 USDT less the 1 USDT fee, credited
    assert all(s[2] == "confirmed" for s in rec["steps"] if s[0] == "lookup")
    drills = {s[1]: s[2:] for s in rec["steps"] if s[0] == "lookup_drill"}
    assert drills == {
        "convert": ["OutcomeUnknown", "confirmed", "999.70002"],  # 1000 USDC at 0.9998, 1 bp
        "withdrawal": ["OutcomeUnknown", "pending", "20000"],  # processing for 1,200 s
        "timeout_applied": ["OutcomeUnknown", "confirmed"],
        "html_after_apply": ["OutcomeUnknown", "confirmed"],
        "late_apply": ["OutcomeUnknown", "not_found_yet", "confirmed"],
        "lost": ["OutcomeUnknown", "not_found_yet", "not_found", "pending"],
    }
    before = Decimal(rec["before"]["sim-b"]["balances"]["spot"]["USDT"][0])
    after = Decimal(rec["after"]["sim-b"]["balances"]["spot"]["USDT"][0])
    # sim-b spot: +49,999 on-chain, −2 × 1000.12345678 sent to um and options.
    assert after - before == Decimal(49_999) - 2 * Decimal("1000.12345678")
    # sim-a margin USDT: 24,980 from the DOGE margin order, 1000.12345678 each from spot and
    # funding, and four drill transfers of 321.5 credited (timeout, HTML, late, the answered
    # twin); the lost one's first send never landed and its resend is still in flight.
    a0 = Decimal(rec["before"]["sim-a"]["balances"]["margin"]["USDT"][0])
    a1 = Decimal(rec["after"]["sim-a"]["balances"]["margin"]["USDT"][0])
    assert a1 - a0 == 24_980 + 2 * Decimal("1000.12345678") + 4 * Decimal("321.5")
    assert loopback_only  # the HTTP run really used sockets, all of them loopback


def _ledger() -> Engine:
    engine = make_engine("sqlite://")
    LedgerTable.metadata.create_all(engine)
    return engine


def test_sim_server_binds_loopback_only(desk: DeskConfig, clock: ManualClock) -> None:
    engine, _ = sim_exchange_from_desk(desk, "sim-a", clock)
    with SimHttpServer({"sim-a": BinanceDialect(engine)}) as server:
        assert server._server.server_address[0] == "127.0.0.1"
        assert server.base_url("sim-a").startswith("http://127.0.0.1:")


@pytest.mark.parametrize(
    ("headers", "body"),
    [({"Content-Length": "2"}, b"\xff\xfe"), ({"Content-Length": "-5"}, b"")],
)
def test_loopback_server_with_malformed_request_answers_400_minus_1100(
    desk: DeskConfig, headers: dict[str, str], body: bytes
) -> None:
    import http.client

    engine, _ = sim_exchange_from_desk(desk, "sim-a", ManualClock(), network=SimNetwork())
    server = SimHttpServer({"sim-a": BinanceDialect(engine)}, port=0).start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        conn.putrequest("POST", "/sim-a/sapi/v1/asset/transfer")
        for k, v in headers.items():
            conn.putheader(k, v)
        conn.endheaders()
        conn.send(body)
        answer = conn.getresponse()
        assert answer.status == 400
        assert b'"code":-1100' in answer.read()
    finally:
        server.stop()
