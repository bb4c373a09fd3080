"""Margin orders: converting collateral inside the cross-margin wallet (Binance Convert works from
spot or funding only). Hand-computed fills on the desk's book, the endpoint per account type,
exactly-once by ``newClientOrderId`` lookup, and refusals before any request."""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal

import pytest

from core.clock import ManualClock, ns_to_datetime
from core.domain import Asset, WalletKind
from core.errors import (
    DataError,
    InsufficientFunds,
    LookupWindowOpen,
    OutcomeUnknown,
    TransferNotAllowed,
)
from core.venues.base import DuplicateIdempotencyKey, VenueTransferStatus
from core.venues.factory import DeskVenues
from core.venues.sim.faults import FaultKind

W = WalletKind
DOGE, USDT, ETH = Asset("DOGE"), Asset("USDT"), Asset("ETH")
PAPI = "/papi/v1/margin/order"


def _margin(sims: DeskVenues, venue: str) -> dict[str, Decimal]:
    return {b.asset.code: b.amount for b in sims.venues[venue].balances(W.MARGIN)}


def test_margin_order_with_pm_account_sells_doge_through_papi_at_book_cost(
    sims: DeskVenues,
) -> None:
    a = sims.venues["sim-a"]
    before = _margin(sims, "sim-a")
    order = a.margin_order(DOGE, USDT, Decimal(400_000), "call-7-s1", ts_deadline_ns=None)
    # 400,000 DOGE at 0.25 = 100,000 USD, all inside the first level (250k at 8 bps):
    # 100,000 × (1 − 0.0008) = 99,920 USDT
    assert (order.symbol, order.side, order.status) == ("DOGEUSDT", "SELL", "FILLED")
    assert order.from_amount == Decimal(400_000)
    assert order.to_amount == Decimal(99_920)
    after = _margin(sims, "sim-a")
    assert after["DOGE"] == before["DOGE"] - 400_000 == Decimal(2_600_000)
    assert after["USDT"] == before["USDT"] + 99_920
    assert sims.dialects["sim-a"].request_log.count(("POST", PAPI)) == 1
    assert ("POST", "/sapi/v1/margin/order") not in sims.dialects["sim-a"].request_log


def test_margin_order_with_whole_doge_holding_walks_two_book_levels(sims: DeskVenues) -> None:
    order = sims.venues["sim-a"].margin_order(
        DOGE, USDT, Decimal(3_000_000), "call-7-s2", ts_deadline_ns=None
    )
    # 750,000 USD: 250,000 × (1 − 0.0008) + 500,000 × (1 − 0.0020) = 249,800 + 499,000
    assert order.to_amount == Decimal(748_800)
    assert "DOGE" not in _margin(sims, "sim-a")  # sold out: the venue lists no zero line


def test_margin_order_with_classic_account_buys_with_quote_through_sapi(
    sims: DeskVenues,
) -> None:
    sims.engines["sim-b"].fund(W.MARGIN, "USDT", Decimal(100_000))
    order = sims.venues["sim-b"].margin_order(
        USDT, ETH, Decimal(32_000), "call-8-s1", ts_deadline_ns=None
    )
    # BUY ETHUSDT spending 32,000 USDT (quoteOrderQty) through the default book (5 bps to 1 M):
    # 32,000 × 0.9995 / 3,200 = 9.995 ETH
    assert (order.symbol, order.side) == ("ETHUSDT", "BUY")
    assert (order.from_amount, order.to_amount) == (Decimal(32_000), Decimal("9.995"))
    assert _margin(sims, "sim-b") == {"USDT": Decimal(68_000), "ETH": Decimal("9.995")}
    assert sims.dialects["sim-b"].request_log.count(("POST", "/sapi/v1/margin/order")) == 1


def test_margin_order_with_short_balance_is_refused_and_frees_the_key(sims: DeskVenues) -> None:
    a, engine = sims.venues["sim-a"], sims.engines["sim-a"]
    with pytest.raises(InsufficientFunds):
        a.margin_order(
            DOGE, USDT, Decimal(3_000_001), "call-7-s3", ts_deadline_ns=None
        )  # -2010: nothing traded
    assert engine.margin_orders == []
    a.margin_order(
        DOGE, USDT, Decimal(1_000), "call-7-s3", ts_deadline_ns=None
    )  # the key was freed
    assert len(engine.margin_orders) == 1


def test_margin_order_with_applied_timeout_is_found_by_key_never_resent(
    sims: DeskVenues,
) -> None:
    a, engine, dialect = sims.venues["sim-a"], sims.engines["sim-a"], sims.dialects["sim-a"]
    engine.faults.inject(FaultKind.TIMEOUT_APPLIED, PAPI, method="POST")
    with pytest.raises(OutcomeUnknown):
        a.margin_order(DOGE, USDT, Decimal(400_000), "call-7-s4", ts_deadline_ns=None)
    with pytest.raises(DuplicateIdempotencyKey):
        a.margin_order(DOGE, USDT, Decimal(400_000), "call-7-s4", ts_deadline_ns=None)
    assert dialect.request_log.count(("POST", PAPI)) == 1
    lookup = a.lookup_margin_order("call-7-s4", DOGE, USDT)
    assert lookup.status is VenueTransferStatus.CONFIRMED
    found = lookup.found
    assert found is not None
    assert (found.status, found.from_amount, found.to_amount) == (
        "FILLED",
        Decimal(400_000),
        Decimal(99_920),
    )
    assert found.order_id == str(engine.margin_orders[0].order_id)
    assert len(engine.margin_orders) == 1


def test_margin_order_with_lost_request_is_not_found_after_the_window_then_resent_once(
    sims: DeskVenues, clock: ManualClock
) -> None:
    a, engine = sims.venues["sim-a"], sims.engines["sim-a"]
    engine.faults.inject(FaultKind.TIMEOUT_NOT_APPLIED, PAPI, method="POST")
    with pytest.raises(OutcomeUnknown):
        a.margin_order(DOGE, USDT, Decimal(400_000), "call-7-s5", ts_deadline_ns=None)
    clock.advance(1)
    early = a.lookup_margin_order("call-7-s5", DOGE, USDT)  # -2013, but the window is open
    assert (early.status, early.found) == (VenueTransferStatus.NOT_FOUND_YET, None)
    with pytest.raises(LookupWindowOpen):
        a.forget_margin_order("call-7-s5")
    clock.advance(120)
    assert a.lookup_margin_order("call-7-s5", DOGE, USDT).status is VenueTransferStatus.NOT_FOUND
    a.forget_margin_order("call-7-s5")
    a.margin_order(DOGE, USDT, Decimal(400_000), "call-7-s5", ts_deadline_ns=None)
    assert [o.client_id for o in engine.margin_orders] == ["call-7-s5"]


@pytest.mark.parametrize(
    ("key", "sold", "bought", "error", "match"),
    [
        ("k" * 37, DOGE, USDT, DataError, "1-36 characters"),
        ("call 7", DOGE, USDT, DataError, "newClientOrderId"),
        ("call-7-s6", DOGE, ETH, TransferNotAllowed, "no spot/margin market"),
    ],
)
def test_margin_order_with_bad_key_or_pair_is_refused_before_any_request(
    sims: DeskVenues,
    key: str,
    sold: Asset,
    bought: Asset,
    error: type[Exception],
    match: str,
) -> None:
    a = sims.venues["sim-a"]
    with pytest.raises(error, match=match):
        a.margin_order(sold, bought, Decimal(1_000), key, ts_deadline_ns=None)
    assert ("POST", PAPI) not in sims.dialects["sim-a"].request_log


def test_margin_order_booked_late_is_not_found_yet_then_found_by_key(
    sims: DeskVenues, clock: ManualClock
) -> None:
    a, engine = sims.venues["sim-a"], sims.engines["sim-a"]
    engine.faults.inject(FaultKind.LATE_APPLY, PAPI, method="POST", delay_s=20)
    booked_ns = clock.timestamp_ns() + 20_000_000_000
    with pytest.raises(OutcomeUnknown):
        a.margin_order(DOGE, USDT, Decimal(400_000), "call-7-s7", ts_deadline_ns=None)
    clock.advance(5)
    assert a.lookup_margin_order("call-7-s7", DOGE, USDT).status is (
        VenueTransferStatus.NOT_FOUND_YET
    )
    clock.advance(20)
    late = a.lookup_margin_order("call-7-s7", DOGE, USDT)
    assert late.status is VenueTransferStatus.CONFIRMED
    assert late.found is not None
    # Filled when booked, at that instant's DOGE index less the first level's 8 bps.
    doge_usd, _ = engine.prices.price_usd("DOGE", booked_ns)
    expected = (400_000 * doge_usd * Decimal("0.9992")).quantize(Decimal("1e-8"), ROUND_DOWN)
    assert late.found.to_amount == expected
    assert late.found.at == ns_to_datetime(booked_ns)
    with pytest.raises(DuplicateIdempotencyKey):
        a.forget_margin_order("call-7-s7")


def test_lookup_margin_order_from_another_process_needs_the_send_time(sims: DeskVenues) -> None:
    a = sims.venues["sim-a"]
    with pytest.raises(DataError, match="ts_sent_ns"):
        a.lookup_margin_order("call-7-s8", DOGE, USDT)
    lookup = a.lookup_margin_order("call-7-s8", DOGE, USDT, ts_sent_ns=a.venue_now_ns())
    assert lookup.status is VenueTransferStatus.NOT_FOUND_YET
