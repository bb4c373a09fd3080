"""Error matrix (STYLE rule 23): every venue method × every injected fault → typed error and the
number of venue calls. Writes are sent exactly once whatever happens; reads retry transient
errors with backoff (3 attempts). A skewed desk clock (Binance -1021) re-syncs and retries a read
once, and raises ``ClockSkewRejected`` for a write after exactly one send."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from core.clock import ManualClock
from core.domain import Asset, WalletKind
from core.errors import (
    InsufficientFunds,
    OutcomeUnknown,
    RateLimited,
    StalePriceError,
    TransferNotAllowed,
    VenueError,
    VenueUnavailable,
)
from core.ledger.claims import StoreTransferClaims
from core.venues.base import TransferClaims, VenueTransferRequest
from core.venues.ccxt_venue import CcxtVenue
from core.venues.errors import ClockSkewRejected
from core.venues.factory import DeskVenues
from core.venues.sim.faults import FaultKind

W = WalletKind
USDT = Asset("USDT")
DOGE = Asset("DOGE")

# name → (call, path, method, is_write)
Op = tuple[Callable[[CcxtVenue], Any], str, str, bool]
# Reads may look transfers up, with claims from the real store.
ReadOp = tuple[Callable[[CcxtVenue, TransferClaims], Any], str, str, bool]
WRITES: dict[str, Op] = {
    "transfer": (
        lambda v: v.transfer(
            USDT, Decimal(1000), W.SPOT, W.MARGIN, "k-matrix", ts_deadline_ns=None
        ),
        "/sapi/v1/asset/transfer",
        "POST",
        True,
    ),
    "accept_quote": (
        lambda v: v.accept_quote(
            v.convert_quote(Asset("USDC"), USDT, Decimal(1000)), ts_deadline_ns=None
        ),
        "/sapi/v1/convert/acceptQuote",
        "POST",
        True,
    ),
    "withdraw": (
        lambda v: v.withdraw(
            USDT, Decimal(20000), "0x" + "ab" * 20, "TRX", "k-wd", ts_deadline_ns=None
        ),
        "/sapi/v1/capital/withdraw/apply",
        "POST",
        True,
    ),
    "margin_order": (  # sim-a is a Portfolio Margin account: papi
        lambda v: v.margin_order(DOGE, USDT, Decimal(100_000), "k-mo", ts_deadline_ns=None),
        "/papi/v1/margin/order",
        "POST",
        True,
    ),
}
READS: dict[str, ReadOp] = {
    "balances_spot": (lambda v, c: v.balances(W.SPOT), "/api/v3/account", "GET", False),
    "balances_pm": (lambda v, c: v.balances(W.MARGIN), "/papi/v1/balance", "GET", False),
    "positions_cm": (lambda v, c: v.positions(W.CM), "/papi/v1/cm/positionRisk", "GET", False),
    "marks_um": (lambda v, c: v.mark_prices(W.UM), "/fapi/v1/premiumIndex", "GET", False),
    "convert_quote": (
        lambda v, c: v.convert_quote(Asset("USDC"), USDT, Decimal(1000)),
        "/sapi/v1/convert/getQuote",
        "POST",
        False,
    ),
    "lookup_margin_order": (
        lambda v, c: v.lookup_margin_order("k-none", DOGE, USDT, ts_sent_ns=v.venue_now_ns()),
        "/papi/v1/margin/order",
        "GET",
        False,
    ),
    "lookup_withdrawal": (
        lambda v, c: v.lookup_withdrawal("k-none", USDT, ts_sent_ns=v.venue_now_ns()),
        "/sapi/v1/capital/withdraw/history",
        "GET",
        False,
    ),
    "lookup_transfer": (
        lambda v, c: v.lookup_transfer(
            "k-none",
            VenueTransferRequest(
                "k-none", USDT, Decimal(1), W.SPOT, W.MARGIN, v.venue_now_ns(), "MAIN_MARGIN"
            ),
            claims=c,
        ),
        "/sapi/v1/asset/transfer",
        "GET",
        False,
    ),
}


def _calls(sims: DeskVenues, method: str, path: str) -> int:
    return sims.dialects["sim-a"].request_log.count((method, path))


def _warm(venue: CcxtVenue) -> None:
    venue.leverage_brackets(W.UM)  # ccxt loads brackets once for positions (venue warm already)


@pytest.mark.parametrize("op", list(WRITES))
@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (FaultKind.TIMEOUT_APPLIED, OutcomeUnknown),
        (FaultKind.TIMEOUT_NOT_APPLIED, OutcomeUnknown),
        (FaultKind.SERVER_ERROR, OutcomeUnknown),
        (FaultKind.RATE_LIMIT_429, RateLimited),
        (FaultKind.BAN_418, RateLimited),
        (FaultKind.INSUFFICIENT_FUNDS, InsufficientFunds),
        (FaultKind.LATE_APPLY, OutcomeUnknown),
        (FaultKind.GARBLED_AFTER_APPLY, OutcomeUnknown),
        (FaultKind.HTML_AFTER_APPLY, OutcomeUnknown),
        (FaultKind.NO_ID_AFTER_APPLY, OutcomeUnknown),
    ],
)
def test_write_with_fault_raises_typed_error_after_exactly_one_send(
    sims: DeskVenues, op: str, fault: FaultKind, expected: type[VenueError]
) -> None:
    venue = sims.venues["sim-a"]
    _warm(venue)
    call, path, method, _ = WRITES[op]
    sims.engines["sim-a"].faults.inject(fault, path, method=method)
    with pytest.raises(expected) as info:
        call(venue)
    assert type(info.value) is expected
    assert _calls(sims, method, path) == 1
    assert info.value.context["venue"] == "sim-a"


@pytest.mark.parametrize("op", list(READS))
@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (FaultKind.TIMEOUT_NOT_APPLIED, VenueUnavailable),
        (FaultKind.SERVER_ERROR, VenueUnavailable),
        (FaultKind.RATE_LIMIT_429, RateLimited),
        (FaultKind.BAN_418, RateLimited),
    ],
)
def test_read_with_persistent_transient_fault_retries_then_raises(
    sims: DeskVenues,
    claims: StoreTransferClaims,
    op: str,
    fault: FaultKind,
    expected: type[VenueError],
) -> None:
    venue = sims.venues["sim-a"]
    _warm(venue)
    call, path, method, _ = READS[op]
    sims.engines["sim-a"].faults.inject(fault, path, method=method, times=3)
    with pytest.raises(expected):
        call(venue, claims)
    assert _calls(sims, method, path) == 3


@pytest.mark.parametrize("op", list(READS))
def test_read_with_one_transient_fault_recovers_on_second_call(
    sims: DeskVenues, claims: StoreTransferClaims, clock: ManualClock, op: str
) -> None:
    venue = sims.venues["sim-a"]
    _warm(venue)
    call, path, method, _ = READS[op]
    sims.engines["sim-a"].faults.inject(
        FaultKind.RATE_LIMIT_429, path, method=method, retry_after_s=7
    )
    t0 = clock.timestamp_ns()
    call(venue, claims)
    assert _calls(sims, method, path) == 2
    assert clock.timestamp_ns() - t0 >= 7_000_000_000  # waited out Retry-After


def test_transfer_with_halted_pair_raises_not_allowed_once(sims: DeskVenues) -> None:
    venue = sims.venues["sim-a"]
    sims.engines["sim-a"].faults.halt_pair(W.SPOT, W.MARGIN)
    with pytest.raises(TransferNotAllowed):
        venue.transfer(USDT, Decimal(1000), W.SPOT, W.MARGIN, "k-halt", ts_deadline_ns=None)
    assert _calls(sims, "POST", "/sapi/v1/asset/transfer") == 1
    # other pairs still open
    venue.transfer(USDT, Decimal(1000), W.SPOT, W.UM, "k-open", ts_deadline_ns=None)


def test_every_write_with_venue_halt_raises_not_allowed(sims: DeskVenues) -> None:
    venue = sims.venues["sim-a"]
    _warm(venue)
    sims.engines["sim-a"].faults.halt_venue()
    for op in ("transfer", "withdraw", "margin_order"):
        call, path, method, _ = WRITES[op]
        with pytest.raises(TransferNotAllowed):
            call(venue)
        assert _calls(sims, method, path) == 1
    with pytest.raises(TransferNotAllowed):
        venue.convert_quote(Asset("USDC"), USDT, Decimal(1000))


def test_marks_with_frozen_prices_raise_stale_price(sims: DeskVenues, clock: ManualClock) -> None:
    venue = sims.venues["sim-a"]
    engine = sims.engines["sim-a"]
    engine.prices.freeze("BTC", clock.timestamp_ns())
    clock.advance(300)
    marks = {m.symbol: m for m in venue.mark_prices(W.UM)}
    assert clock.now() - marks["BTCUSDT"].at == timedelta(seconds=300)
    assert marks["ETHUSDT"].at == clock.now()
    with pytest.raises(StalePriceError, match="price is stale"):
        venue.mark_prices(W.UM, max_age_s=120)


def test_timeout_never_becomes_a_second_send(sims: DeskVenues, clock: ManualClock) -> None:
    venue = sims.venues["sim-a"]
    engine = sims.engines["sim-a"]
    engine.faults.inject(FaultKind.TIMEOUT_APPLIED, "/sapi/v1/asset/transfer", method="POST")
    with pytest.raises(OutcomeUnknown):
        venue.transfer(USDT, Decimal(1000), W.SPOT, W.MARGIN, "k-once", ts_deadline_ns=None)
    with pytest.raises(VenueError):  # same key again: refused locally, nothing sent
        venue.transfer(USDT, Decimal(1000), W.SPOT, W.MARGIN, "k-once", ts_deadline_ns=None)
    assert len(engine.transfers) == 1
    assert _calls(sims, "POST", "/sapi/v1/asset/transfer") == 1


# Writes under a skewed desk clock: (prepare before the skew, send after it).
SKEW_WRITES: dict[str, tuple[Callable[[CcxtVenue], Any], Callable[[CcxtVenue, Any], Any]]] = {
    "transfer": (lambda v: None, lambda v, _: WRITES["transfer"][0](v)),
    "accept_quote": (
        lambda v: v.convert_quote(Asset("USDC"), USDT, Decimal(1000)),
        lambda v, quote: v.accept_quote(quote, ts_deadline_ns=None),
    ),
    "withdraw": (lambda v: None, lambda v, _: WRITES["withdraw"][0](v)),
    "margin_order": (lambda v: None, lambda v, _: WRITES["margin_order"][0](v)),
}


@pytest.mark.parametrize("skew_s", [2.0, -15.0], ids=["desk-2s-ahead", "desk-15s-behind"])
@pytest.mark.parametrize("op", list(WRITES))
def test_write_with_skewed_desk_clock_raises_clock_skew_after_exactly_one_send(
    sims: DeskVenues, op: str, skew_s: float
) -> None:
    venue = sims.venues["sim-a"]
    _warm(venue)
    prepare, send = SKEW_WRITES[op]
    prepared = prepare(venue)
    _, path, method, _ = WRITES[op]
    syncs = _calls(sims, "GET", "/api/v3/time")  # warm_up synced once
    sims.engines["sim-a"].faults.skew_desk_clock(skew_s)
    with pytest.raises(ClockSkewRejected) as info:
        send(venue, prepared)
    assert _calls(sims, method, path) == 1
    assert info.value.context["venue"] == "sim-a"
    assert info.value.context["resynced"] is True
    assert _calls(sims, "GET", "/api/v3/time") == syncs + 1


@pytest.mark.parametrize("skew_s", [2.0, -15.0], ids=["desk-2s-ahead", "desk-15s-behind"])
@pytest.mark.parametrize("op", list(READS))
def test_read_with_skewed_desk_clock_resyncs_and_succeeds_on_second_call(
    sims: DeskVenues, claims: StoreTransferClaims, op: str, skew_s: float
) -> None:
    venue = sims.venues["sim-a"]
    call, path, method, _ = READS[op]
    call(venue, claims)  # warm: markets and whatever ccxt caches for this read
    before = _calls(sims, method, path)
    signed = sims.dialects["sim-a"].routes[(method, path)].signed
    sims.engines["sim-a"].faults.skew_desk_clock(skew_s)
    call(venue, claims)
    # A signed read is refused once and retried once; a public one is never checked.
    assert _calls(sims, method, path) - before == (2 if signed else 1)
    assert sims.dialects["sim-a"].clock_rejections == (1 if signed else 0)
