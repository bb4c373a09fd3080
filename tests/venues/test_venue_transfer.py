"""Transfers through CcxtVenue over the simulator: books move, amounts round, keys are looked up."""

from __future__ import annotations

from decimal import Decimal

import pytest

from core.clock import ManualClock
from core.domain import Asset, WalletKind
from core.errors import DataError, InsufficientFunds, OutcomeUnknown
from core.venues.base import DuplicateIdempotencyKey, VenueTransferRequest, VenueTransferStatus
from core.venues.factory import DeskVenues
from core.venues.sim.faults import FaultKind

W = WalletKind
USDT = Asset("USDT")
TRANSFER = "/sapi/v1/asset/transfer"


def _free(venue_balances: tuple[object, ...], asset: str) -> Decimal:
    for b in venue_balances:
        if b.asset.code == asset:  # type: ignore[attr-defined]
            return b.amount  # type: ignore[attr-defined,no-any-return]
    return Decimal(0)


def test_transfer_with_spot_to_um_moves_books_after_latency(
    sims: DeskVenues, clock: ManualClock
) -> None:
    b = sims.venues["sim-b"]
    receipt = b.transfer(USDT, Decimal("250000"), W.SPOT, W.UM, "call-1/step-1")
    assert receipt.venue_type == "MAIN_UMFUTURE"
    assert receipt.status is VenueTransferStatus.PENDING
    assert receipt.amount == Decimal("250000")
    assert not receipt.rounded
    assert _free(b.balances(W.SPOT), "USDT") == Decimal("1350000")  # debited at once
    assert _free(b.balances(W.UM), "USDT") == Decimal("900000")  # credit after 0.08 s
    clock.advance(0.08)
    assert _free(b.balances(W.UM), "USDT") == Decimal("1150000")
    report = b.lookup_transfer("call-1/step-1")
    assert report.status is VenueTransferStatus.CONFIRMED
    assert report.matched_by == "id"
    assert report.venue_transfer_id == receipt.venue_transfer_id


def test_transfer_with_too_many_decimals_rounds_down_and_reports(sims: DeskVenues) -> None:
    a = sims.venues["sim-a"]
    receipt = a.transfer(Asset("BTC"), Decimal("0.123456789"), W.SPOT, W.MARGIN, "k-round")
    assert receipt.amount == Decimal("0.12345678")
    assert receipt.amount_requested == Decimal("0.123456789")
    assert receipt.rounded
    row = sims.engines["sim-a"].transfers[-1]
    assert row.amount == Decimal("0.12345678")


def test_transfer_with_refuse_policy_and_excess_decimals_raises_before_request(
    sims: DeskVenues,
) -> None:
    a = sims.venues["sim-a"]
    a._excess_decimals = "refuse"
    with pytest.raises(DataError, match="more than 8 decimals"):
        a.transfer(Asset("BTC"), Decimal("0.123456789"), W.SPOT, W.MARGIN, "k-refuse")
    assert a.http_requests == 0


@pytest.mark.parametrize("amount", [Decimal("0.000000001"), Decimal(0), Decimal(-5)])
def test_transfer_with_nonpositive_or_dust_amount_raises_data_error(
    sims: DeskVenues, amount: Decimal
) -> None:
    with pytest.raises(DataError):
        sims.venues["sim-a"].transfer(Asset("BTC"), amount, W.SPOT, W.MARGIN, "k-dust")
    assert sims.venues["sim-a"].http_requests == 0


def test_transfer_with_same_key_twice_refuses_second_send(sims: DeskVenues) -> None:
    a = sims.venues["sim-a"]
    a.transfer(USDT, Decimal(10), W.SPOT, W.MARGIN, "k-dup")
    sent = len(sims.engines["sim-a"].transfers)
    with pytest.raises(DuplicateIdempotencyKey):
        a.transfer(USDT, Decimal(10), W.SPOT, W.MARGIN, "k-dup")
    assert len(sims.engines["sim-a"].transfers) == sent


def test_transfer_with_insufficient_funds_raises_and_frees_key(sims: DeskVenues) -> None:
    a = sims.venues["sim-a"]
    with pytest.raises(InsufficientFunds) as info:
        a.transfer(USDT, Decimal("2500000.01"), W.SPOT, W.MARGIN, "k-poor")
    assert info.value.context["binance_code"] == -5013
    assert "USDT" in str(info.value)
    assert "spot" in str(info.value)
    # Nothing applied, so the key may be used again.
    a.transfer(USDT, Decimal("2500000"), W.SPOT, W.MARGIN, "k-poor")


def test_lookup_after_timeout_with_transfer_applied_finds_it_in_history(
    sims: DeskVenues, clock: ManualClock
) -> None:
    a = sims.venues["sim-a"]
    sims.engines["sim-a"].faults.inject(FaultKind.TIMEOUT_APPLIED, TRANSFER, method="POST")
    with pytest.raises(OutcomeUnknown):
        a.transfer(USDT, Decimal("12345.6"), W.SPOT, W.MARGIN, "k-timeout")
    clock.advance(1)
    report = a.lookup_transfer("k-timeout")
    assert report.status is VenueTransferStatus.CONFIRMED
    assert report.matched_by == "history"
    assert report.venue_transfer_id == str(sims.engines["sim-a"].transfers[-1].tran_id)


def test_lookup_after_timeout_with_transfer_lost_reports_not_found(
    sims: DeskVenues, clock: ManualClock
) -> None:
    a = sims.venues["sim-a"]
    sims.engines["sim-a"].faults.inject(FaultKind.TIMEOUT_NOT_APPLIED, TRANSFER, method="POST")
    with pytest.raises(OutcomeUnknown):
        a.transfer(USDT, Decimal("12345.6"), W.SPOT, W.MARGIN, "k-lost")
    assert sims.engines["sim-a"].transfers == []
    clock.advance(1)
    assert a.lookup_transfer("k-lost").status is VenueTransferStatus.NOT_FOUND
    a.forget_transfer("k-lost")
    receipt = a.transfer(USDT, Decimal("12345.6"), W.SPOT, W.MARGIN, "k-lost")
    assert len(sims.engines["sim-a"].transfers) == 1
    assert receipt.venue_transfer_id == str(sims.engines["sim-a"].transfers[0].tran_id)


def test_lookup_with_two_identical_unanswered_transfers_is_ambiguous_then_claimed(
    sims: DeskVenues, clock: ManualClock
) -> None:
    a = sims.venues["sim-a"]
    faults = sims.engines["sim-a"].faults
    faults.inject(FaultKind.TIMEOUT_APPLIED, TRANSFER, method="POST", times=2)
    for key in ("k-x", "k-y"):
        with pytest.raises(OutcomeUnknown):
            a.transfer(USDT, Decimal(500), W.SPOT, W.MARGIN, key)
    clock.advance(1)
    report = a.lookup_transfer("k-x")
    assert report.status is VenueTransferStatus.AMBIGUOUS
    assert len(report.candidates) == 2


def test_lookup_with_answered_twin_skips_claimed_row(sims: DeskVenues, clock: ManualClock) -> None:
    a = sims.venues["sim-a"]
    a.transfer(USDT, Decimal(500), W.SPOT, W.MARGIN, "k-answered")
    sims.engines["sim-a"].faults.inject(FaultKind.TIMEOUT_NOT_APPLIED, TRANSFER, method="POST")
    with pytest.raises(OutcomeUnknown):
        a.transfer(USDT, Decimal(500), W.SPOT, W.MARGIN, "k-twin")
    clock.advance(1)
    assert a.lookup_transfer("k-twin").status is VenueTransferStatus.NOT_FOUND


def test_lookup_with_hint_after_restart_matches_history(
    desk: object, sims: DeskVenues, clock: ManualClock
) -> None:
    """A fresh adapter (empty journal) finds the transfer from the executor's intent row."""
    from core.venues.factory import sim_venue

    engine = sims.engines["sim-a"]
    engine.faults.inject(FaultKind.TIMEOUT_APPLIED, TRANSFER, method="POST")
    sent_ns = clock.timestamp_ns()
    with pytest.raises(OutcomeUnknown):
        sims.venues["sim-a"].transfer(USDT, Decimal(777), W.SPOT, W.MARGIN, "k-restart")
    clock.advance(3)
    fresh, _ = sim_venue(engine, clock)
    assert fresh.lookup_transfer("k-restart").status is VenueTransferStatus.NOT_FOUND
    hint = VenueTransferRequest(
        "k-restart", USDT, Decimal(777), W.SPOT, W.MARGIN, sent_ns, "MAIN_MARGIN"
    )
    report = fresh.lookup_transfer("k-restart", hint)
    assert report.status is VenueTransferStatus.CONFIRMED
    assert report.matched_by == "history"
