"""The simulator's stateful faults through the real ``CcxtVenue``: the IP ban every client meets,
the 429 that becomes a ban when retried too soon, a lagging or empty transfer history, and the
held answer (in-process, and across processes through ``pmr sim serve``'s control endpoint)."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest

from core.clock import ManualClock
from core.config import DeskConfig
from core.domain import Asset, Balance, WalletKind
from core.errors import OutcomeUnknown, RateLimited
from core.ledger.claims import StoreTransferClaims
from core.venues.base import VenueTransferStatus
from core.venues.factory import DeskVenues, build_desk_venues, sim_venue
from core.venues.sim.control import SimControl
from core.venues.sim.faults import FaultKind, FaultPlan

W = WalletKind
S = VenueTransferStatus
USDT = Asset("USDT")
TRANSFER = "/sapi/v1/asset/transfer"


def _free(balances: tuple[Balance, ...], asset: str) -> Decimal:
    return next((b.amount for b in balances if b.asset.code == asset), Decimal(0))


# -- IP ban ------------------------------------------------------------------------------------
def test_ip_ban_answers_418_with_retry_after_on_every_path_until_it_expires(
    sims: DeskVenues, clock: ManualClock
) -> None:
    a, engine, dialect = sims.venues["sim-a"], sims.engines["sim-a"], sims.dialects["sim-a"]
    engine.faults.ban_ip(90)
    with pytest.raises(RateLimited) as info:
        a.transfer(USDT, Decimal(10), W.SPOT, W.MARGIN, "k-ban", ts_deadline_ns=None)
    assert info.value.retry_after_s == 90
    assert info.value.context["binance_code"] == -1003
    assert engine.transfers == []  # refused before processing
    banned_until = engine.faults.banned_until_ns
    assert banned_until == clock.timestamp_ns() + 90_000_000_000
    # Any client, any path, even unsigned ones, meets the ban with the seconds left.
    clock.advance(30)
    for method, path in [("GET", "/api/v3/ping"), ("GET", "/fapi/v3/account"), ("POST", TRANSFER)]:
        answer = dialect.handle(method, path, "", "", {})
        assert answer.status == 418
        assert answer.headers["Retry-After"] == "60"
    # A second adapter on the same venue (another process of the desk) is banned as well: its
    # read waits the ban out (Retry-After on its clock) and is answered only after it ends.
    other, _ = sim_venue(engine, clock)
    t0 = clock.timestamp_ns()
    assert _free(other.balances(W.SPOT), "USDT") == Decimal(2_500_000)
    assert clock.timestamp_ns() >= banned_until
    assert clock.timestamp_ns() - t0 >= 60_000_000_000
    # After the ban the first client works again, under the same key (nothing was applied).
    a.transfer(USDT, Decimal(10), W.SPOT, W.MARGIN, "k-ban", ts_deadline_ns=None)
    assert len(engine.transfers) == 1


def test_ip_ban_on_one_venue_leaves_the_other_venue_open(sims: DeskVenues) -> None:
    sims.engines["sim-a"].faults.ban_ip(60)
    with pytest.raises(RateLimited):
        sims.venues["sim-a"].transfer(USDT, Decimal(1), W.SPOT, W.MARGIN, "k", ts_deadline_ns=None)
    sims.venues["sim-b"].transfer(USDT, Decimal(1), W.SPOT, W.UM, "k", ts_deadline_ns=None)
    assert len(sims.engines["sim-b"].transfers) == 1


# -- 429 that turns into a 418 -------------------------------------------------------------------
def test_429_waited_out_is_no_ban(sims: DeskVenues, clock: ManualClock) -> None:
    a, engine = sims.venues["sim-a"], sims.engines["sim-a"]
    engine.faults.inject(FaultKind.RATE_LIMIT_THEN_BAN, TRANSFER, method="POST", retry_after_s=5)
    with pytest.raises(RateLimited) as info:
        a.transfer(USDT, Decimal(10), W.SPOT, W.MARGIN, "k-429", ts_deadline_ns=None)
    assert info.value.retry_after_s == 5
    clock.advance(5)
    a.transfer(USDT, Decimal(10), W.SPOT, W.MARGIN, "k-429", ts_deadline_ns=None)
    assert engine.faults.banned_until_ns == 0
    assert len(engine.transfers) == 1


def test_429_retried_too_soon_by_another_client_earns_an_ip_ban_for_all(
    sims: DeskVenues, clock: ManualClock
) -> None:
    """Client A honours its 429 (its limiter pauses), client B does not know and sends at once:
    the venue bans the IP, and A, back after its pause, is banned too."""
    a, engine = sims.venues["sim-a"], sims.engines["sim-a"]
    b, _ = sim_venue(engine, clock)  # another process: its own limiter knows of no 429
    b.warm_up()
    engine.faults.inject(
        FaultKind.RATE_LIMIT_THEN_BAN, TRANSFER, method="POST", retry_after_s=5, ban_s=120
    )
    with pytest.raises(RateLimited) as first:
        a.transfer(USDT, Decimal(10), W.SPOT, W.MARGIN, "k-a", ts_deadline_ns=None)
    assert first.value.retry_after_s == 5
    with pytest.raises(RateLimited) as b_banned:
        b.transfer(USDT, Decimal(10), W.SPOT, W.UM, "k-b", ts_deadline_ns=None)
    assert b_banned.value.retry_after_s == 120
    assert engine.faults.banned_until_ns == clock.timestamp_ns() + 120_000_000_000
    with pytest.raises(RateLimited) as banned:
        a.transfer(USDT, Decimal(10), W.SPOT, W.MARGIN, "k-a", ts_deadline_ns=None)
    assert banned.value.retry_after_s is not None
    assert banned.value.retry_after_s > 5  # the ban, not the 429's wait
    assert engine.transfers == []
    clock.advance(banned.value.retry_after_s)
    a.transfer(USDT, Decimal(10), W.SPOT, W.MARGIN, "k-a", ts_deadline_ns=None)
    assert len(engine.transfers) == 1


# -- transfer history that lags or comes back empty ---------------------------------------------
def test_lagging_history_hides_an_applied_transfer_until_the_lag_passes(
    sims: DeskVenues, clock: ManualClock, claims: StoreTransferClaims
) -> None:
    a, engine = sims.venues["sim-a"], sims.engines["sim-a"]
    engine.faults.lag_transfer_history(45)
    engine.faults.inject(FaultKind.TIMEOUT_APPLIED, TRANSFER, method="POST")
    with pytest.raises(OutcomeUnknown):
        a.transfer(USDT, Decimal("777"), W.SPOT, W.MARGIN, "k-lag", ts_deadline_ns=None)
    assert len(engine.transfers) == 1  # applied: the money moved
    clock.advance(10)
    assert a.lookup_transfer("k-lag", claims=claims).status is S.NOT_FOUND_YET
    clock.advance(36)
    report = a.lookup_transfer("k-lag", claims=claims)
    assert report.status is S.CONFIRMED
    assert report.venue_transfer_id == str(engine.transfers[0].tran_id)


def test_lag_past_the_lookup_window_is_reported_not_found(
    sims: DeskVenues, clock: ManualClock, claims: StoreTransferClaims
) -> None:
    """A history lagging longer than the adapter's lookup window makes an applied transfer look
    absent: the fault the executor's window must be sized against (docs/venues.md)."""
    a, engine = sims.venues["sim-a"], sims.engines["sim-a"]
    engine.faults.lag_transfer_history(600)
    engine.faults.inject(FaultKind.TIMEOUT_APPLIED, TRANSFER, method="POST")
    with pytest.raises(OutcomeUnknown):
        a.transfer(USDT, Decimal("5"), W.SPOT, W.MARGIN, "k-lag2", ts_deadline_ns=None)
    clock.advance(121)
    assert a.lookup_transfer("k-lag2", claims=claims).status is S.NOT_FOUND
    assert len(engine.transfers) == 1


def test_empty_history_for_n_queries_then_the_transfer_is_found(
    sims: DeskVenues, clock: ManualClock, claims: StoreTransferClaims
) -> None:
    a, engine = sims.venues["sim-a"], sims.engines["sim-a"]
    engine.faults.inject(FaultKind.TIMEOUT_APPLIED, TRANSFER, method="POST")
    with pytest.raises(OutcomeUnknown):
        a.transfer(USDT, Decimal("321"), W.SPOT, W.MARGIN, "k-empty", ts_deadline_ns=None)
    engine.faults.inject(FaultKind.HISTORY_EMPTY, TRANSFER, method="GET", times=2)
    clock.advance(1)
    assert a.lookup_transfer("k-empty", claims=claims).status is S.NOT_FOUND_YET
    assert a.lookup_transfer("k-empty", claims=claims).status is S.NOT_FOUND_YET
    assert a.lookup_transfer("k-empty", claims=claims).status is S.CONFIRMED
    assert engine.faults.pending() == 0


# -- held answers ------------------------------------------------------------------------------
def _send_in_thread(fn: object) -> tuple[threading.Thread, list[object]]:
    out: list[object] = []

    def run() -> None:
        try:
            out.append(fn())  # type: ignore[operator]
        except Exception as exc:
            out.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def test_held_applied_answer_waits_for_release_with_the_transfer_already_booked(
    sims: DeskVenues,
) -> None:
    a, engine = sims.venues["sim-a"], sims.engines["sim-a"]
    hold = engine.faults.hold(TRANSFER, method="POST", applied=True)
    t, out = _send_in_thread(
        lambda: a.transfer(USDT, Decimal(50), W.SPOT, W.MARGIN, "k-held", ts_deadline_ns=None)
    )
    assert hold.wait_held(timeout_s=10)
    assert hold.state == "held"
    assert len(engine.transfers) == 1  # applied while the answer is held
    assert out == []
    # The venue is not wedged: other requests are answered meanwhile.
    assert _free(sims.venues["sim-b"].balances(W.SPOT), "USDT") > 0
    hold.release()
    t.join(10)
    receipt = out[0]
    assert getattr(receipt, "venue_transfer_id", None) == str(engine.transfers[0].tran_id)


@pytest.mark.parametrize("applied", [True, False])
def test_held_answer_dropped_is_an_unknown_outcome_applied_or_not(
    sims: DeskVenues, clock: ManualClock, claims: StoreTransferClaims, applied: bool
) -> None:
    a, engine = sims.venues["sim-a"], sims.engines["sim-a"]
    hold = engine.faults.hold(TRANSFER, method="POST", applied=applied)
    t, out = _send_in_thread(
        lambda: a.transfer(USDT, Decimal(50), W.SPOT, W.MARGIN, "k-drop", ts_deadline_ns=None)
    )
    assert hold.wait_held(timeout_s=10)
    hold.release(drop=True)
    t.join(10)
    assert isinstance(out[0], OutcomeUnknown)
    assert len(engine.transfers) == (1 if applied else 0)
    clock.advance(1 if applied else 121)
    expected = S.CONFIRMED if applied else S.NOT_FOUND
    assert a.lookup_transfer("k-drop", claims=claims).status is expected


def test_hold_is_dropped_after_its_max_hold() -> None:
    plan = FaultPlan()
    hold = plan.hold(TRANSFER, applied=True, max_hold_s=0.01)
    assert hold.block(TRANSFER) is False
    assert hold.state == "released"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"times": 0}, "times must be >= 1"),
        ({"retry_after_s": 0}, "retry_after_s must be >= 1"),
        ({"ban_s": 0}, "ban_s must be >= 1"),
        ({"delay_s": -1.0}, "delay_s must be >= 0"),
    ],
)
def test_inject_with_bad_arguments_is_refused(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        FaultPlan().inject(FaultKind.RATE_LIMIT_THEN_BAN, TRANSFER, **kwargs)  # type: ignore[arg-type]


def test_held_fault_holds_exactly_one_request() -> None:
    with pytest.raises(ValueError, match="times must be 1"):
        FaultPlan().inject(FaultKind.HELD_APPLIED, TRANSFER, times=2)
    with pytest.raises(ValueError, match="history lag"):
        FaultPlan().lag_transfer_history(-1)


# -- the control endpoint, over loopback HTTP ---------------------------------------------------
def test_control_endpoint_injects_holds_and_releases_across_the_wire(
    desk: DeskConfig, clock: ManualClock
) -> None:
    with build_desk_venues(desk, clock, transport="http") as dv:
        assert dv.server is not None
        a, engine = dv.venues["sim-a"], dv.engines["sim-a"]
        a.warm_up()
        ctl = SimControl(f"http://127.0.0.1:{dv.server.port}")
        hold_id = ctl.hold("sim-a", TRANSFER, method="POST", applied=True)
        assert ctl.faults()["sim-a"]["holds"][0]["state"] == "armed"
        t, out = _send_in_thread(
            lambda: a.transfer(USDT, Decimal(7), W.SPOT, W.MARGIN, "k-ctl", ts_deadline_ns=None)
        )
        assert ctl.wait_held("sim-a", hold_id, timeout_s=10)
        assert len(engine.transfers) == 1
        assert ctl.release("sim-a", hold_id) == 1
        t.join(10)
        assert getattr(out[0], "venue_transfer_id", None) == str(engine.transfers[0].tran_id)
        # Other actions: an IP ban set from outside, then lifted.
        ctl.act("sim-a", "ban_ip", seconds=30)
        ctl.inject("sim-a", FaultKind.SERVER_ERROR, "/api/v3/ping", times=2)
        plan = ctl.faults()["sim-a"]
        assert plan["pending"][-1] == {
            "kind": "server_error",
            "path_prefix": "/api/v3/ping",
            "method": None,
            "times": 2,
        }
        ctl.act("sim-a", "clear")
        ctl.act("sim-a", "resume")
        assert ctl.faults()["sim-a"]["banned_until_ns"] == 0
        with pytest.raises(ValueError, match="unknown venue 'nope'"):
            ctl.act("nope", "resume")
        with pytest.raises(ValueError, match="unknown control action"):
            ctl.act("sim-a", "explode")
        ctl.close()
