"""Ground for execution: warm-up before any write, the venue's own precision, answers the
adapter cannot read, and lookups for conversions and withdrawals by our key.

All on the real simulator under the real adapter (in-process, and over loopback HTTP where the
transport matters: an HTML page from a proxy arrives differently over a socket)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any, Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.clock import ManualClock
from core.config import DeskConfig
from core.domain import Asset, WalletKind
from core.errors import (
    ConfigError,
    DataError,
    LookupWindowOpen,
    OutcomeUnknown,
    VenueNotReady,
    VenueRejected,
    VenueUnavailable,
)
from core.ledger.claims import StoreTransferClaims
from core.venues.base import DuplicateIdempotencyKey, VenueTransferStatus, round_to_steps
from core.venues.ccxt_venue import CcxtVenue
from core.venues.factory import DeskVenues, build_desk_venues, sim_exchange_from_desk, sim_venue
from core.venues.sim.faults import FaultKind

W = WalletKind
S = VenueTransferStatus
USDT, USDC, DOGE = Asset("USDT"), Asset("USDC"), Asset("DOGE")
TRANSFER = "/sapi/v1/asset/transfer"
ACCEPT = "/sapi/v1/convert/acceptQuote"
WITHDRAW = "/sapi/v1/capital/withdraw/apply"
ADDRESS = "0x" + "ab" * 20

WRITES: dict[str, Callable[[CcxtVenue], Any]] = {
    "transfer": lambda v: v.transfer(
        USDT, Decimal(10), W.SPOT, W.MARGIN, "k-w", ts_deadline_ns=None
    ),
    "withdraw": lambda v: v.withdraw(USDT, Decimal(20), ADDRESS, "TRX", "k-w", ts_deadline_ns=None),
    "margin_order": lambda v: v.margin_order(DOGE, USDT, Decimal(1000), "k-w", ts_deadline_ns=None),
    "convert_quote": lambda v: v.convert_quote(USDC, USDT, Decimal(10)),
}


# -- warm-up ------------------------------------------------------------------------------------
@pytest.mark.parametrize("op", list(WRITES))
def test_write_on_a_cold_adapter_raises_not_ready_before_any_request(
    cold_sims: DeskVenues, op: str
) -> None:
    venue = cold_sims.venues["sim-a"]
    with pytest.raises(VenueNotReady, match="warm_up"):
        WRITES[op](venue)
    assert venue.http_requests == 0
    venue.warm_up()
    WRITES[op](venue)  # the key was never held: the same call goes through once warm


def test_prepare_amount_on_a_cold_adapter_raises_not_ready(cold_sims: DeskVenues) -> None:
    with pytest.raises(VenueNotReady):
        cold_sims.venues["sim-a"].prepare_amount(USDT, Decimal(1))


def test_warm_up_with_timeouts_is_a_read_failure_and_never_holds_a_key(
    cold_sims: DeskVenues,
) -> None:
    """A timeout while loading markets is a read failing (retried, then ``VenueUnavailable``),
    never an unknown write: no key is held, and the write goes once warm-up succeeds."""
    venue, engine = cold_sims.venues["sim-a"], cold_sims.engines["sim-a"]
    engine.faults.inject(FaultKind.TIMEOUT_NOT_APPLIED, "/api/v3/exchangeInfo", times=3)
    with pytest.raises(VenueUnavailable):
        venue.warm_up()
    assert not venue.is_warm
    with pytest.raises(VenueNotReady):
        WRITES["transfer"](venue)
    assert ("POST", TRANSFER) not in cold_sims.dialects["sim-a"].request_log
    report = venue.warm_up()
    assert report.markets > 0
    assert WRITES["transfer"](venue).key == "k-w"


def test_write_that_would_load_market_data_implicitly_is_refused_before_sending(
    sims: DeskVenues,
) -> None:
    """If ccxt ever needs market data inside a write (here: markets dropped), the request it
    would send is a GET: refused before it leaves, the write not sent, the key free."""
    venue, dialect = sims.venues["sim-a"], sims.dialects["sim-a"]
    venue.exchange.markets = None
    before = len(dialect.request_log)
    with pytest.raises(VenueNotReady, match="inside a write"):
        WRITES["transfer"](venue)
    assert len(dialect.request_log) == before
    venue.load_markets()
    assert WRITES["transfer"](venue).key == "k-w"


# -- precision ----------------------------------------------------------------------------------
def _venue_with(
    desk: DeskConfig, clock: ManualClock, *, desk_decimals: int, venue_decimals: int
) -> CcxtVenue:
    """sim-a whose desk declares ``desk_decimals`` for USDT while the venue's step has
    ``venue_decimals`` (its capital config's ``withdrawIntegerMultiple``)."""
    engine, _ = sim_exchange_from_desk(desk, "sim-a", clock)
    engine.asset_decimals["USDT"] = desk_decimals
    venue, _ = sim_venue(engine, clock)  # takes the desk's decimals from the engine's map
    engine.asset_decimals["USDT"] = venue_decimals  # what the venue itself then publishes
    return venue


def test_warm_up_with_desk_finer_than_the_venue_refuses_naming_asset_and_both_precisions(
    desk: DeskConfig, clock: ManualClock
) -> None:
    venue = _venue_with(desk, clock, desk_decimals=8, venue_decimals=6)
    with pytest.raises(ConfigError) as info:
        venue.warm_up()
    assert "USDT: desk 8 decimals, venue step 0.000001 (6 decimals)" in str(info.value)
    assert "sim-a" in str(info.value)
    assert not venue.is_warm


def test_prepare_amount_with_desk_coarser_than_the_venue_books_and_sends_desk_decimals(
    desk: DeskConfig, clock: ManualClock
) -> None:
    venue = _venue_with(desk, clock, desk_decimals=2, venue_decimals=8)
    report = venue.warm_up()
    assert report.venue_decimals["USDT"] == 8
    amount = venue.prepare_amount(USDT, Decimal("1234.56789"))
    assert amount == Decimal("1234.56")
    receipt = venue.transfer(USDT, amount, W.SPOT, W.MARGIN, "k-p", ts_deadline_ns=None)
    assert (receipt.amount, receipt.rounded) == (Decimal("1234.56"), False)


@given(
    value=st.decimals(min_value=Decimal("0.01"), max_value=Decimal(10**9), places=10),
    desk_decimals=st.integers(0, 8),
    step_digits=st.integers(1, 9),
    step_decimals=st.integers(0, 8),
)
@settings(max_examples=300, deadline=None)
def test_round_to_steps_with_any_amount_is_the_largest_valid_amount_below_it(
    value: Decimal, desk_decimals: int, step_digits: int, step_decimals: int
) -> None:
    """Venue steps need not be powers of ten (``withdrawIntegerMultiple`` of 0.5 exists)."""
    step_decimals = min(step_decimals, desk_decimals)  # finer venue steps are refused at start
    step = Decimal(step_digits).scaleb(-step_decimals)
    got = round_to_steps(value, desk_decimals, step)
    assert got <= value
    assert got % step == 0
    assert -got.as_tuple().exponent <= desk_decimals  # type: ignore[operator]
    assert value - got < step + Decimal(1).scaleb(-desk_decimals)


# -- answers the adapter cannot read ------------------------------------------------------------
@pytest.fixture(params=["inprocess", "http"])
def any_transport(
    request: pytest.FixtureRequest, desk: DeskConfig, clock: ManualClock
) -> Iterator[DeskVenues]:
    transport: Literal["inprocess", "http"] = request.param
    with build_desk_venues(desk, clock, transport=transport) as dv:
        dv.warm_up()
        yield dv


@pytest.mark.parametrize(
    "fault",
    [FaultKind.GARBLED_AFTER_APPLY, FaultKind.HTML_AFTER_APPLY, FaultKind.NO_ID_AFTER_APPLY],
)
def test_transfer_with_unreadable_200_after_apply_is_unknown_held_and_found_by_lookup(
    any_transport: DeskVenues, clock: ManualClock, claims: StoreTransferClaims, fault: FaultKind
) -> None:
    venue, engine = any_transport.venues["sim-a"], any_transport.engines["sim-a"]
    engine.faults.inject(fault, TRANSFER, method="POST")
    with pytest.raises(OutcomeUnknown) as info:
        venue.transfer(USDT, Decimal(700), W.SPOT, W.MARGIN, "k-garbled", ts_deadline_ns=None)
    assert info.value.context["key"] == "k-garbled"
    (applied,) = engine.transfers  # the venue did book it
    with pytest.raises(DuplicateIdempotencyKey):  # never a failure the caller may resend
        venue.transfer(USDT, Decimal(700), W.SPOT, W.MARGIN, "k-garbled", ts_deadline_ns=None)
    clock.advance(1)
    report = venue.lookup_transfer("k-garbled", claims=claims)
    assert (report.status, report.venue_transfer_id) == (S.CONFIRMED, str(applied.tran_id))


@pytest.mark.parametrize("fault", [FaultKind.GARBLED_AFTER_APPLY, FaultKind.HTML_AFTER_APPLY])
def test_read_with_unreadable_200_retries_and_succeeds(
    any_transport: DeskVenues, fault: FaultKind
) -> None:
    venue, dialect = any_transport.venues["sim-a"], any_transport.dialects["sim-a"]
    expected = venue.balances(W.SPOT)
    any_transport.engines["sim-a"].faults.inject(fault, "/api/v3/account")
    before = dialect.request_log.count(("GET", "/api/v3/account"))
    assert venue.balances(W.SPOT) == expected
    assert dialect.request_log.count(("GET", "/api/v3/account")) == before + 2


# -- conversions: orderStatus by quote id -------------------------------------------------------
def test_convert_accept_timed_out_after_apply_is_found_by_quote_id(
    sims: DeskVenues, clock: ManualClock
) -> None:
    venue, engine = sims.venues["sim-a"], sims.engines["sim-a"]
    quote = venue.convert_quote(USDC, USDT, Decimal(1000))
    engine.faults.inject(FaultKind.TIMEOUT_APPLIED, ACCEPT, method="POST")
    with pytest.raises(OutcomeUnknown):
        venue.accept_quote(quote, ts_deadline_ns=None)
    with pytest.raises(DuplicateIdempotencyKey):
        venue.accept_quote(quote, ts_deadline_ns=None)
    clock.advance(1)
    lookup = venue.lookup_convert(quote)
    assert lookup.status is S.CONFIRMED
    assert lookup.found is not None
    (order,) = engine.convert_orders.values()
    assert lookup.found.order_id == str(order.order_id)
    # 1000 USDC at 0.9998 through the desk's book (2 M at 1 bp): 999.70002 USDT
    assert (lookup.found.from_amount, lookup.found.to_amount) == (
        Decimal(1000),
        Decimal("999.70002"),
    )
    assert ("GET", "/sapi/v1/convert/orderStatus") in sims.dialects["sim-a"].request_log


def test_convert_accept_booked_late_is_not_found_yet_then_confirmed(
    sims: DeskVenues, clock: ManualClock
) -> None:
    venue, engine = sims.venues["sim-a"], sims.engines["sim-a"]
    quote = venue.convert_quote(USDC, USDT, Decimal(1000))
    engine.faults.inject(FaultKind.LATE_APPLY, ACCEPT, method="POST", delay_s=5)
    with pytest.raises(OutcomeUnknown):
        venue.accept_quote(quote, ts_deadline_ns=None)
    clock.advance(2)
    early = venue.lookup_convert(quote)
    assert (early.status, early.found) == (S.NOT_FOUND_YET, None)
    clock.advance(4)
    assert venue.lookup_convert(quote).status is S.CONFIRMED


def test_convert_accept_lost_is_not_found_after_the_window_then_the_quote_is_freed(
    sims: DeskVenues, clock: ManualClock
) -> None:
    venue, engine = sims.venues["sim-a"], sims.engines["sim-a"]
    quote = venue.convert_quote(USDC, USDT, Decimal(1000))
    engine.faults.inject(FaultKind.TIMEOUT_NOT_APPLIED, ACCEPT, method="POST")
    with pytest.raises(OutcomeUnknown):
        venue.accept_quote(quote, ts_deadline_ns=None)
    clock.advance(1)
    assert venue.lookup_convert(quote).status is S.NOT_FOUND_YET
    with pytest.raises(LookupWindowOpen):
        venue.forget_convert(quote.quote_id)
    clock.advance(120)
    assert venue.lookup_convert(quote).status is S.NOT_FOUND
    venue.forget_convert(quote.quote_id)
    assert engine.convert_orders == {}
    with pytest.raises(VenueRejected, match="-345239"):  # the quote expired meanwhile
        venue.accept_quote(quote, ts_deadline_ns=None)


def test_convert_lookup_after_restart_counts_the_window_from_the_quote_expiry(
    sims: DeskVenues, clock: ManualClock
) -> None:
    quote = sims.venues["sim-a"].convert_quote(USDC, USDT, Decimal(1000))
    fresh, _ = sim_venue(sims.engines["sim-a"], clock)
    fresh.warm_up()
    lookup = fresh.lookup_convert(quote)
    assert lookup.status is S.NOT_FOUND_YET
    assert lookup.window_closes_at is not None
    assert (lookup.window_closes_at - quote.valid_until).total_seconds() == 120


# -- withdrawals: history by withdrawOrderId ----------------------------------------------------
def test_withdrawal_timed_out_after_apply_is_found_by_withdraw_order_id(
    sims: DeskVenues, clock: ManualClock
) -> None:
    venue, engine = sims.venues["sim-a"], sims.engines["sim-a"]
    venue.withdraw(USDT, Decimal(5000), ADDRESS, "TRX", "wd-other", ts_deadline_ns=None)
    engine.faults.inject(FaultKind.TIMEOUT_APPLIED, WITHDRAW, method="POST")
    with pytest.raises(OutcomeUnknown):
        venue.withdraw(USDT, Decimal(20_000), ADDRESS, "TRX", "wd-1", ts_deadline_ns=None)
    with pytest.raises(DuplicateIdempotencyKey):
        venue.withdraw(USDT, Decimal(20_000), ADDRESS, "TRX", "wd-1", ts_deadline_ns=None)
    clock.advance(1)
    lookup = venue.lookup_withdrawal("wd-1", USDT)
    assert lookup.status is S.PENDING  # Binance status 4: processing
    assert lookup.found is not None
    assert (lookup.found.amount, lookup.found.network) == (Decimal(20_000), "TRX")
    assert lookup.found.withdrawal_id == engine.withdrawals[1].id  # not wd-other's
    clock.advance(engine.config.withdraw_latency_s)
    assert venue.lookup_withdrawal("wd-1", USDT).status is S.CONFIRMED  # status 6


def test_withdrawal_lost_is_not_found_after_the_window_then_resent_once(
    sims: DeskVenues, clock: ManualClock
) -> None:
    venue, engine = sims.venues["sim-a"], sims.engines["sim-a"]
    engine.faults.inject(FaultKind.TIMEOUT_NOT_APPLIED, WITHDRAW, method="POST")
    with pytest.raises(OutcomeUnknown):
        venue.withdraw(USDT, Decimal(20_000), ADDRESS, "TRX", "wd-2", ts_deadline_ns=None)
    clock.advance(1)
    assert venue.lookup_withdrawal("wd-2", USDT).status is S.NOT_FOUND_YET
    with pytest.raises(LookupWindowOpen) as info:
        venue.forget_withdrawal("wd-2")
    assert info.value.retry_after_s == pytest.approx(119)
    clock.advance(119)
    assert venue.lookup_withdrawal("wd-2", USDT).status is S.NOT_FOUND
    venue.forget_withdrawal("wd-2")
    venue.withdraw(USDT, Decimal(20_000), ADDRESS, "TRX", "wd-2", ts_deadline_ns=None)
    assert [w.client_id for w in engine.withdrawals] == ["wd-2"]


def test_withdrawal_booked_late_is_not_found_yet_then_pending(
    sims: DeskVenues, clock: ManualClock
) -> None:
    venue, engine = sims.venues["sim-a"], sims.engines["sim-a"]
    engine.faults.inject(FaultKind.LATE_APPLY, WITHDRAW, method="POST", delay_s=45)
    with pytest.raises(OutcomeUnknown):
        venue.withdraw(USDT, Decimal(20_000), ADDRESS, "TRX", "wd-3", ts_deadline_ns=None)
    clock.advance(30)
    assert venue.lookup_withdrawal("wd-3", USDT).status is S.NOT_FOUND_YET
    clock.advance(16)
    assert venue.lookup_withdrawal("wd-3", USDT).status is S.PENDING


def test_withdrawal_lookup_without_a_send_record_needs_the_send_time(sims: DeskVenues) -> None:
    venue = sims.venues["sim-a"]
    with pytest.raises(DataError, match="ts_sent_ns"):
        venue.lookup_withdrawal("wd-elsewhere", USDT)
