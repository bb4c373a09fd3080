"""Transfers through CcxtVenue over the simulator: books move, amounts round, keys are looked up.

Lookups read claims from a real (in-memory SQLite) ledger store; the restart and second-process
cases, where only the store knows the claims, are in ``tests/ledger/test_ledger_claims.py``.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from core.clock import ManualClock
from core.domain import Asset, Balance, WalletKind
from core.errors import DataError, InsufficientFunds, LookupWindowOpen, OutcomeUnknown
from core.ledger.claims import StoreTransferClaims
from core.venues.base import DuplicateIdempotencyKey, VenueTransferRequest, VenueTransferStatus
from core.venues.factory import DeskVenues, sim_venue
from core.venues.sim.faults import FaultKind

W = WalletKind
S = VenueTransferStatus
USDT = Asset("USDT")
TRANSFER = "/sapi/v1/asset/transfer"
WINDOW_S = 120.0  # the adapter's default lookup window


def _free(balances: tuple[Balance, ...], asset: str) -> Decimal:
    return next((b.amount for b in balances if b.asset.code == asset), Decimal(0))


def test_transfer_with_spot_to_um_moves_books_after_latency(
    sims: DeskVenues, clock: ManualClock, claims: StoreTransferClaims
) -> None:
    b = sims.venues["sim-b"]
    receipt = b.transfer(
        USDT, Decimal("250000"), W.SPOT, W.UM, "call-1/step-1", ts_deadline_ns=None
    )
    assert receipt.venue_type == "MAIN_UMFUTURE"
    assert receipt.status is S.PENDING
    assert receipt.amount == Decimal("250000")
    assert not receipt.rounded
    assert _free(b.balances(W.SPOT), "USDT") == Decimal("1350000")  # debited at once
    assert _free(b.balances(W.UM), "USDT") == Decimal("900000")  # credit after 0.08 s
    clock.advance(0.08)
    assert _free(b.balances(W.UM), "USDT") == Decimal("1150000")
    report = b.lookup_transfer("call-1/step-1", claims=claims)
    assert report.status is S.CONFIRMED
    assert report.matched_by == "id"
    assert report.venue_transfer_id == receipt.venue_transfer_id


def test_transfer_with_too_many_decimals_rounds_down_and_reports(sims: DeskVenues) -> None:
    a = sims.venues["sim-a"]
    receipt = a.transfer(
        Asset("BTC"), Decimal("0.123456789"), W.SPOT, W.MARGIN, "k-round", ts_deadline_ns=None
    )
    assert receipt.amount == Decimal("0.12345678")
    assert receipt.amount_requested == Decimal("0.123456789")
    assert receipt.rounded
    assert sims.engines["sim-a"].transfers[-1].amount == Decimal("0.12345678")


def test_transfer_with_refuse_policy_and_excess_decimals_raises_before_request(
    sims: DeskVenues,
) -> None:
    a = sims.venues["sim-a"]
    a._excess_decimals = "refuse"
    sent = a.http_requests
    with pytest.raises(DataError, match="more than 8 decimals"):
        a.transfer(
            Asset("BTC"), Decimal("0.123456789"), W.SPOT, W.MARGIN, "k-refuse", ts_deadline_ns=None
        )
    assert a.http_requests == sent


@pytest.mark.parametrize("amount", [Decimal("0.000000001"), Decimal(0), Decimal(-5)])
def test_transfer_with_nonpositive_or_dust_amount_raises_data_error(
    sims: DeskVenues, amount: Decimal
) -> None:
    a = sims.venues["sim-a"]
    sent = a.http_requests
    with pytest.raises(DataError):
        a.transfer(Asset("BTC"), amount, W.SPOT, W.MARGIN, "k-dust", ts_deadline_ns=None)
    assert a.http_requests == sent


def test_transfer_with_same_key_twice_refuses_second_send(sims: DeskVenues) -> None:
    a = sims.venues["sim-a"]
    a.transfer(USDT, Decimal(10), W.SPOT, W.MARGIN, "k-dup", ts_deadline_ns=None)
    sent = len(sims.engines["sim-a"].transfers)
    with pytest.raises(DuplicateIdempotencyKey):
        a.transfer(USDT, Decimal(10), W.SPOT, W.MARGIN, "k-dup", ts_deadline_ns=None)
    assert len(sims.engines["sim-a"].transfers) == sent


def test_transfer_with_insufficient_funds_raises_and_frees_key(sims: DeskVenues) -> None:
    a = sims.venues["sim-a"]
    with pytest.raises(InsufficientFunds) as info:
        a.transfer(USDT, Decimal("2500000.01"), W.SPOT, W.MARGIN, "k-poor", ts_deadline_ns=None)
    assert info.value.context["binance_code"] == -5013
    assert "USDT" in str(info.value)
    assert "spot" in str(info.value)
    # Nothing applied, so the key may be used again.
    a.transfer(USDT, Decimal("2500000"), W.SPOT, W.MARGIN, "k-poor", ts_deadline_ns=None)


def test_lookup_after_timeout_with_transfer_applied_finds_it_in_history(
    sims: DeskVenues, clock: ManualClock, claims: StoreTransferClaims
) -> None:
    a = sims.venues["sim-a"]
    sims.engines["sim-a"].faults.inject(FaultKind.TIMEOUT_APPLIED, TRANSFER, method="POST")
    with pytest.raises(OutcomeUnknown):
        a.transfer(USDT, Decimal("12345.6"), W.SPOT, W.MARGIN, "k-timeout", ts_deadline_ns=None)
    clock.advance(1)
    report = a.lookup_transfer("k-timeout", claims=claims)
    assert report.status is S.CONFIRMED
    assert report.matched_by == "history"
    assert report.venue_transfer_id == str(sims.engines["sim-a"].transfers[-1].tran_id)


def test_lookup_after_timeout_with_transfer_lost_is_not_found_only_after_the_window(
    sims: DeskVenues, clock: ManualClock, claims: StoreTransferClaims
) -> None:
    a = sims.venues["sim-a"]
    sims.engines["sim-a"].faults.inject(FaultKind.TIMEOUT_NOT_APPLIED, TRANSFER, method="POST")
    with pytest.raises(OutcomeUnknown):
        a.transfer(USDT, Decimal("12345.6"), W.SPOT, W.MARGIN, "k-lost", ts_deadline_ns=None)
    assert sims.engines["sim-a"].transfers == []
    clock.advance(1)
    early = a.lookup_transfer("k-lost", claims=claims)
    assert early.status is S.NOT_FOUND_YET
    assert early.window_closes_at is not None
    with pytest.raises(LookupWindowOpen) as info:
        a.forget_transfer("k-lost")  # not proof of absence yet
    assert info.value.retry_after_s == pytest.approx(WINDOW_S - 1)
    clock.advance(WINDOW_S - 1)
    assert a.lookup_transfer("k-lost", claims=claims).status is S.NOT_FOUND
    a.forget_transfer("k-lost")
    receipt = a.transfer(USDT, Decimal("12345.6"), W.SPOT, W.MARGIN, "k-lost", ts_deadline_ns=None)
    assert len(sims.engines["sim-a"].transfers) == 1
    assert receipt.venue_transfer_id == str(sims.engines["sim-a"].transfers[0].tran_id)


def test_lookup_with_late_apply_is_not_found_yet_then_confirmed(
    sims: DeskVenues, clock: ManualClock, claims: StoreTransferClaims
) -> None:
    """The venue books the request 30 s after the answer timed out: a lookup in between must not
    call it absent, and one after it lands finds it, stamped with the late booking time."""
    a, engine = sims.venues["sim-a"], sims.engines["sim-a"]
    engine.faults.inject(FaultKind.LATE_APPLY, TRANSFER, method="POST", delay_s=30)
    t0 = clock.timestamp_ns()
    with pytest.raises(OutcomeUnknown):
        a.transfer(USDT, Decimal(4000), W.SPOT, W.MARGIN, "k-late", ts_deadline_ns=None)
    clock.advance(10)
    assert a.lookup_transfer("k-late", claims=claims).status is S.NOT_FOUND_YET
    assert engine.transfers == []
    clock.advance(21)
    report = a.lookup_transfer("k-late", claims=claims)
    assert report.status is S.CONFIRMED
    assert report.matched_by == "history"
    assert engine.transfers[0].ts_ns == t0 + 30_000_000_000
    with pytest.raises(DuplicateIdempotencyKey):
        a.forget_transfer("k-late")  # found: never freed for a resend


def test_lookup_with_two_identical_unanswered_transfers_is_ambiguous(
    sims: DeskVenues, clock: ManualClock, claims: StoreTransferClaims
) -> None:
    a = sims.venues["sim-a"]
    faults = sims.engines["sim-a"].faults
    faults.inject(FaultKind.TIMEOUT_APPLIED, TRANSFER, method="POST", times=2)
    for key in ("k-x", "k-y"):
        with pytest.raises(OutcomeUnknown):
            a.transfer(USDT, Decimal(500), W.SPOT, W.MARGIN, key, ts_deadline_ns=None)
    clock.advance(1)
    report = a.lookup_transfer("k-x", claims=claims)
    assert report.status is S.AMBIGUOUS
    assert len(report.candidates) == 2
    assert report.rivals == ("k-y",)


def test_lookup_with_one_applied_of_two_identical_unanswered_is_ambiguous_not_adopted(
    sims: DeskVenues, clock: ManualClock, claims: StoreTransferClaims
) -> None:
    """Only one of two same-amount unanswered transfers landed: either key may own it."""
    a = sims.venues["sim-a"]
    faults = sims.engines["sim-a"].faults
    faults.inject(FaultKind.TIMEOUT_APPLIED, TRANSFER, method="POST")
    faults.inject(FaultKind.TIMEOUT_NOT_APPLIED, TRANSFER, method="POST")
    for key in ("k-p", "k-q"):
        with pytest.raises(OutcomeUnknown):
            a.transfer(USDT, Decimal(500), W.SPOT, W.MARGIN, key, ts_deadline_ns=None)
    clock.advance(1)
    for key, rival in (("k-p", "k-q"), ("k-q", "k-p")):
        report = a.lookup_transfer(key, claims=claims)
        assert report.status is S.AMBIGUOUS
        assert report.rivals == (rival,)
        assert report.venue_transfer_id is None


def test_lookup_with_answered_twin_never_adopts_its_row(
    sims: DeskVenues, clock: ManualClock, claims: StoreTransferClaims
) -> None:
    a = sims.venues["sim-a"]
    a.transfer(USDT, Decimal(500), W.SPOT, W.MARGIN, "k-answered", ts_deadline_ns=None)
    sims.engines["sim-a"].faults.inject(FaultKind.TIMEOUT_NOT_APPLIED, TRANSFER, method="POST")
    with pytest.raises(OutcomeUnknown):
        a.transfer(USDT, Decimal(500), W.SPOT, W.MARGIN, "k-twin", ts_deadline_ns=None)
    clock.advance(1)
    assert a.lookup_transfer("k-twin", claims=claims).status is S.NOT_FOUND_YET
    clock.advance(WINDOW_S)
    assert a.lookup_transfer("k-twin", claims=claims).status is S.NOT_FOUND


def test_lookup_after_restart_without_the_intent_refuses_to_guess(
    sims: DeskVenues, clock: ManualClock, claims: StoreTransferClaims
) -> None:
    """A fresh adapter has no journal: without the intent it cannot say "not found" (that
    would invite a resend); with it, history finds the transfer."""
    engine = sims.engines["sim-a"]
    engine.faults.inject(FaultKind.TIMEOUT_APPLIED, TRANSFER, method="POST")
    sent_ns = clock.timestamp_ns()
    with pytest.raises(OutcomeUnknown):
        sims.venues["sim-a"].transfer(
            USDT, Decimal(777), W.SPOT, W.MARGIN, "k-restart", ts_deadline_ns=None
        )
    clock.advance(3)
    fresh, _ = sim_venue(engine, clock)
    fresh.warm_up()
    with pytest.raises(DataError, match="pass the intent"):
        fresh.lookup_transfer("k-restart", claims=claims)
    request = VenueTransferRequest(
        "k-restart", USDT, Decimal(777), W.SPOT, W.MARGIN, sent_ns, "MAIN_MARGIN"
    )
    report = fresh.lookup_transfer("k-restart", request, claims=claims)
    assert report.status is S.CONFIRMED
    assert report.matched_by == "history"
    with pytest.raises(DuplicateIdempotencyKey):  # the adopted key stays held
        fresh.transfer(USDT, Decimal(777), W.SPOT, W.MARGIN, "k-restart", ts_deadline_ns=None)
