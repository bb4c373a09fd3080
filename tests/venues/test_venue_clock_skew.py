"""Clock skew (Binance -1021): the simulator enforces Binance's timing rule on signed requests,
the adapter re-syncs to the venue's clock and retries a read, and a write is raised (typed, sent
once; its key freed only by the caller). ``warm_up`` syncs before its first signed request.
Desk clock 2 s ahead and 15 s behind."""

from __future__ import annotations

import hashlib
import hmac
from decimal import Decimal
from urllib.parse import urlencode

import pytest

from core.clock import ManualClock
from core.domain import Asset, WalletKind
from core.errors import DataError, OutcomeUnknown
from core.ledger.claims import StoreTransferClaims
from core.venues.base import DuplicateIdempotencyKey, VenueTransferStatus
from core.venues.errors import ClockSkewRejected
from core.venues.factory import DeskVenues
from core.venues.sim.dialect import BinanceDialect
from core.venues.sim.faults import FaultKind, FaultPlan, SkewedClock

W = WalletKind
USDT = Asset("USDT")
TRANSFER = "/sapi/v1/asset/transfer"
SKEWS_S = [pytest.param(2.0, id="desk-2s-ahead"), pytest.param(-15.0, id="desk-15s-behind")]


def _signed_get(dialect: BinanceDialect, path: str, **params: object) -> tuple[int, object]:
    """Send a request signed the way ccxt signs it (HMAC-SHA256 of the query string)."""
    cfg = dialect.engine.config
    query = urlencode({k: str(v) for k, v in params.items()})
    sig = hmac.new(cfg.api_secret.encode(), query.encode(), hashlib.sha256).hexdigest()
    answer = dialect.handle(
        "GET", path, f"{query}&signature={sig}", "", {"X-MBX-APIKEY": cfg.api_key}
    )
    return answer.status, answer.body


@pytest.mark.parametrize(
    ("offset_ms", "recv_window_ms", "status", "code"),
    [
        (+999, 10_000, 200, None),  # < serverTime + 1000: accepted
        (+1000, 10_000, 400, -1021),  # exactly 1000 ms ahead: refused
        (-10_000, 10_000, 200, None),  # serverTime − timestamp = recvWindow: accepted
        (-10_001, 10_000, 400, -1021),  # 1 ms older than the window: refused
        (-5000, None, 200, None),  # default recvWindow 5000 ms
        (-5001, None, 400, -1021),
        (0, 60_001, 400, -1131),  # recvWindow above Binance's 60,000 ms maximum
    ],
)
def test_sim_signed_request_with_timestamp_at_window_edges_follows_binance_rule(
    sims: DeskVenues, offset_ms: int, recv_window_ms: int | None, status: int, code: int | None
) -> None:
    dialect = sims.dialects["sim-a"]
    server_ms = dialect.engine.now_ms()
    params: dict[str, object] = {"timestamp": server_ms + offset_ms}
    if recv_window_ms is not None:
        params["recvWindow"] = recv_window_ms
    got_status, body = _signed_get(dialect, "/api/v3/account", **params)
    assert got_status == status
    if code is not None:
        assert isinstance(body, dict)
        assert body["code"] == code


def test_sim_signed_request_without_timestamp_answers_minus_1102(sims: DeskVenues) -> None:
    status, body = _signed_get(sims.dialects["sim-a"], "/api/v3/account", recvWindow=5000)
    assert (status, body) == (
        400,
        {
            "code": -1102,
            "msg": "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed.",
        },
    )


@pytest.mark.parametrize("path", ["/api/v3/time", "/fapi/v1/time", "/dapi/v1/time"])
def test_sim_time_endpoints_with_any_family_serve_server_time(
    sims: DeskVenues, clock: ManualClock, path: str
) -> None:
    answer = sims.dialects["sim-b"].handle("GET", path, "", "", {})
    assert (answer.status, answer.body) == (200, {"serverTime": clock.timestamp_ns() // 1_000_000})


def test_skewed_clock_with_fault_plan_moves_desk_time_only() -> None:
    base, plan = ManualClock(start_ns=5_000_000_000), FaultPlan()
    desk = SkewedClock(base, plan)
    plan.skew_desk_clock(2.0)
    assert desk.timestamp_ns() == 7_000_000_000
    desk.sleep(1.5)  # waiting advances the shared clock
    assert base.timestamp_ns() == 6_500_000_000
    assert desk.timestamp_ns() == 8_500_000_000
    plan.skew_desk_clock(0)
    assert desk.timestamp_ns() == base.timestamp_ns()


# (venue, read, signed path, time endpoint it re-syncs on)
READS = {
    "spot_balances": ("sim-a", lambda v: v.balances(W.SPOT), "/api/v3/account", "/api/v3/time"),
    "pm_balances": ("sim-a", lambda v: v.balances(W.MARGIN), "/papi/v1/balance", "/api/v3/time"),
    "um_positions": (
        "sim-b",
        lambda v: v.positions(W.UM),
        "/fapi/v3/positionRisk",
        "/fapi/v1/time",
    ),
    "cm_balances": ("sim-b", lambda v: v.balances(W.CM), "/dapi/v1/account", "/dapi/v1/time"),
}


@pytest.mark.parametrize("skew_s", SKEWS_S)
@pytest.mark.parametrize("op", list(READS))
def test_read_with_skewed_desk_clock_resyncs_once_and_succeeds(
    sims: DeskVenues, skew_s: float, op: str
) -> None:
    name, call, path, time_path = READS[op]
    venue, dialect = sims.venues[name], sims.dialects[name]
    expected = call(venue)  # warm: markets and anything ccxt caches (leverage brackets)
    sims.engines[name].faults.skew_desk_clock(skew_s)
    log = dialect.request_log
    before, syncs, time_calls = (
        log.count(("GET", path)),
        venue.clock_syncs,
        log.count(("GET", time_path)),
    )
    assert call(venue) == expected
    assert log.count(("GET", path)) == before + 2  # refused once, retried after the re-sync
    assert log.count(("GET", time_path)) == time_calls + 1
    assert dialect.clock_rejections == 1
    assert venue.time_difference_ms == round(skew_s * 1000)
    assert venue.clock_syncs == syncs + 1
    assert call(venue) == expected  # now stamped on the venue's clock: no refusal
    assert log.count(("GET", path)) == before + 3
    assert dialect.clock_rejections == 1


@pytest.mark.parametrize("skew_s", SKEWS_S)
def test_load_markets_on_a_cold_adapter_with_skewed_desk_clock_resyncs_and_loads(
    cold_sims: DeskVenues, skew_s: float
) -> None:
    """Without warm_up, the first signed request (ccxt's /sapi/v1/capital/config/getall) is
    refused once, then the read re-syncs and loads."""
    venue, dialect = cold_sims.venues["sim-a"], cold_sims.dialects["sim-a"]
    cold_sims.engines["sim-a"].faults.skew_desk_clock(skew_s)
    assert venue.load_markets() > 0
    assert dialect.request_log.count(("GET", "/sapi/v1/capital/config/getall")) == 2
    assert dialect.clock_rejections == 1


@pytest.mark.parametrize("skew_s", SKEWS_S)
def test_warm_up_with_skewed_desk_clock_syncs_first_so_no_request_is_refused(
    cold_sims: DeskVenues, skew_s: float
) -> None:
    venue, dialect = cold_sims.venues["sim-a"], cold_sims.dialects["sim-a"]
    cold_sims.engines["sim-a"].faults.skew_desk_clock(skew_s)
    report = venue.warm_up()
    assert dialect.request_log[0] == ("GET", "/api/v3/time")
    assert dialect.request_log.count(("GET", "/sapi/v1/capital/config/getall")) == 1
    assert dialect.clock_rejections == 0
    assert report.time_difference_ms == round(skew_s * 1000)
    assert report.markets == venue.load_markets() > 0


@pytest.mark.parametrize("skew_s", SKEWS_S)
def test_transfer_with_skewed_desk_clock_raises_typed_error_sent_once_then_key_is_freed(
    sims: DeskVenues, claims: StoreTransferClaims, skew_s: float
) -> None:
    venue, dialect, engine = sims.venues["sim-a"], sims.dialects["sim-a"], sims.engines["sim-a"]
    engine.faults.skew_desk_clock(skew_s)
    with pytest.raises(ClockSkewRejected) as info:
        venue.transfer(USDT, Decimal(1000), W.SPOT, W.MARGIN, "call-9/step-1", ts_deadline_ns=None)
    assert dialect.request_log.count(("POST", TRANSFER)) == 1
    assert engine.transfers == []  # -1021 is refused before processing: nothing applied
    assert info.value.context["binance_code"] == -1021
    assert info.value.context["resynced"] is True
    assert info.value.context["time_difference_ms"] == round(skew_s * 1000)
    # Never resent blindly: the key is held until it has been looked up.
    with pytest.raises(DuplicateIdempotencyKey):
        venue.transfer(USDT, Decimal(1000), W.SPOT, W.MARGIN, "call-9/step-1", ts_deadline_ns=None)
    assert dialect.request_log.count(("POST", TRANSFER)) == 1
    # Nothing in history (the window is still open, but -1021 means it was never processed),
    # so the key may be freed at once and resent on the re-synced clock.
    report = venue.lookup_transfer("call-9/step-1", claims=claims)
    assert report.status is VenueTransferStatus.NOT_FOUND_YET
    venue.forget_transfer("call-9/step-1")
    receipt = venue.transfer(
        USDT, Decimal(1000), W.SPOT, W.MARGIN, "call-9/step-1", ts_deadline_ns=None
    )
    assert dialect.request_log.count(("POST", TRANSFER)) == 2
    assert [t.tran_id for t in engine.transfers] == [int(receipt.venue_transfer_id)]
    assert engine.transfers[0].amount == Decimal(1000)


def test_lookup_with_desk_clock_15s_ahead_finds_applied_transfer_on_venue_time(
    sims: DeskVenues, clock: ManualClock, claims: StoreTransferClaims
) -> None:
    """The send time is kept on the venue's clock: on the desk's it would sit 15 s after the
    venue's record, outside the 5 s look-back, and the applied transfer would be resent."""
    venue, engine = sims.venues["sim-a"], sims.engines["sim-a"]
    engine.faults.skew_desk_clock(15.0)
    venue.balances(W.SPOT)  # refused, re-synced, retried
    assert venue.time_difference_ms == 15_000
    engine.faults.inject(FaultKind.TIMEOUT_APPLIED, TRANSFER, method="POST")
    with pytest.raises(OutcomeUnknown):
        venue.transfer(USDT, Decimal(1000), W.SPOT, W.MARGIN, "call-9/step-2", ts_deadline_ns=None)
    clock.advance(1)
    report = venue.lookup_transfer("call-9/step-2", claims=claims)
    assert report.status is VenueTransferStatus.CONFIRMED
    assert report.matched_by == "history"
    assert report.venue_transfer_id == str(engine.transfers[0].tran_id)


def test_mark_freshness_with_desk_clock_15s_behind_is_judged_on_venue_time(
    sims: DeskVenues,
) -> None:
    venue = sims.venues["sim-a"]
    sims.engines["sim-a"].faults.skew_desk_clock(-15.0)
    # Marks are public (no -1021): before any re-sync they look 15 s in the future.
    with pytest.raises(DataError, match="stamped in the future"):
        venue.mark_prices(W.UM, max_age_s=120)
    venue.balances(W.SPOT)  # a signed read: refused, re-synced
    marks = venue.mark_prices(W.UM, max_age_s=120)
    assert {m.symbol for m in marks} == {"BTCUSDT", "ETHUSDT", "SOLUSDT"}


def test_read_with_clock_running_away_raises_after_one_resync(sims: DeskVenues) -> None:
    """A desk clock that jumps again between the re-sync and the retry is refused twice."""
    venue, engine, dialect = sims.venues["sim-a"], sims.engines["sim-a"], sims.dialects["sim-a"]
    engine.faults.skew_desk_clock(2.0)
    real_sync = venue.sync_clock

    def sync_then_jump(family: str = "api") -> int:
        offset = real_sync(family)
        engine.faults.skew_desk_clock(40.0)  # NTP steps the clock again
        return offset

    venue.sync_clock = sync_then_jump  # type: ignore[method-assign]
    with pytest.raises(ClockSkewRejected):
        venue.balances(W.SPOT)
    assert dialect.request_log.count(("GET", "/api/v3/account")) == 2
    assert dialect.clock_rejections == 2
