"""Claims from the store: a lookup after a timeout never adopts a transfer another key owns,
whatever this process remembers (a restart, a second executor). SQLite and the PostgreSQL twin,
with the real simulator under the real adapter."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from ledger_helpers import T0, sqlite_memory_engine
from sqlmodel import Session

from core.clock import ManualClock
from core.config import load_desk
from core.domain import Asset, WalletKind
from core.errors import OutcomeUnknown
from core.ledger.claims import StoreTransferClaims, transfer_request
from core.ledger.transfers import (
    TransferIntent,
    get_transfer,
    record_refused_leg,
    record_transfer_intent,
    record_transfer_result,
)
from core.ledger.vocab import TransferMode, TransferState
from core.venues.base import VenueTransferStatus
from core.venues.factory import DeskVenues, build_desk_venues, sim_venue
from core.venues.sim.faults import FaultKind

W = WalletKind
S = VenueTransferStatus
USDT = Asset("USDT")
TRANSFER = "/sapi/v1/asset/transfer"
EXAMPLE_DESK = Path(__file__).resolve().parents[2] / "examples" / "desk.toml"


def _intent(
    key: str,
    amount: str = "500",
    *,
    venue: str = "sim-a",
    src: WalletKind = W.SPOT,
    dst: WalletKind = W.MARGIN,
) -> TransferIntent:
    return TransferIntent(
        key=key,
        mode=TransferMode.TRANSFER,
        venue_id=venue,
        from_wallet=src,
        to_wallet=dst,
        asset=USDT,
        amount=Decimal(amount),
    )


def _record(
    session: Session,
    intent: TransferIntent,
    status: TransferState | None,
    *,
    at_s: float = 0,
    venue_id: str | None = None,
) -> None:
    at = T0 + timedelta(seconds=at_s)
    record_transfer_intent(session, intent, at=at)
    if status is not None:
        record_transfer_result(
            session, intent.key, status, at=at, sent_at=at, venue_transfer_id=venue_id
        )


def test_claimed_with_ids_of_other_keys_returns_only_those_on_the_venue(
    session: Session, venues: object
) -> None:
    _record(session, _intent("k-1"), TransferState.SENT, venue_id="100000001")
    _record(session, _intent("k-2"), TransferState.CONFIRMED, venue_id="100000002")
    _record(session, _intent("k-3"), None)
    _record(session, _intent("k-b", venue="sim-b"), TransferState.SENT, venue_id="100000009")
    claims = StoreTransferClaims(session)
    candidates = ["100000001", "100000002", "100000009", "999"]
    assert claims.claimed("sim-a", "k-2", candidates) == frozenset({"100000001"})
    assert claims.claimed("sim-a", "k-x", candidates) == frozenset({"100000001", "100000002"})
    assert claims.claimed("sim-b", "k-x", candidates) == frozenset({"100000009"})
    assert claims.claimed("sim-a", "k-x", []) == frozenset()


def test_unresolved_with_same_movement_lists_only_open_intents_without_an_id(
    session: Session, venues: object
) -> None:
    _record(session, _intent("k-open"), None, at_s=1)  # written, send not recorded
    _record(session, _intent("k-unknown", "500.0"), TransferState.UNKNOWN, at_s=2)
    _record(session, _intent("k-sent"), TransferState.SENT, venue_id="100000003")
    _record(session, _intent("k-failed"), TransferState.FAILED, at_s=3)
    _record(session, _intent("k-amount", "500.01"), TransferState.UNKNOWN)
    _record(session, _intent("k-wallet", dst=W.UM), TransferState.UNKNOWN)
    _record(session, _intent("k-other-venue", venue="sim-b"), TransferState.UNKNOWN)
    _record(session, _intent("k-me"), TransferState.UNKNOWN, at_s=4)
    record_refused_leg(session, _intent("k-refused"), at=T0, reason="over cap")  # never sent
    row_me = get_transfer(session, "k-me")
    assert row_me is not None
    request = transfer_request(row_me)
    got = StoreTransferClaims(session).unresolved("sim-a", request)
    assert [(u.key, u.sent_at) for u in got] == [
        ("k-open", T0 + timedelta(seconds=1)),  # created_at stands in for the unrecorded send
        ("k-unknown", T0 + timedelta(seconds=2)),
    ]


def test_transfer_request_from_row_shifts_the_send_time_to_the_venue_clock(
    session: Session, venues: object
) -> None:
    _record(session, _intent("k-r", "12.5"), TransferState.UNKNOWN, at_s=7)
    row = get_transfer(session, "k-r")
    assert row is not None
    req = transfer_request(row, venue_offset_ns=2_000_000_000)  # desk 2 s ahead of the venue
    assert (req.key, req.asset, req.amount, req.venue_type) == (
        "k-r",
        USDT,
        Decimal("12.5"),
        "MAIN_MARGIN",
    )
    assert req.ts_sent_ns == round((T0 + timedelta(seconds=5)).timestamp() * 1e9)


@pytest.fixture
def desk_sims(clock: ManualClock) -> Iterator[DeskVenues]:
    clock.set_ns(round(T0.timestamp() * 1e9))  # the store's rows and the venue share one time
    with build_desk_venues(load_desk(EXAMPLE_DESK), clock) as dv:
        dv.warm_up()
        yield dv


def _send(dv: DeskVenues, key: str, fault: FaultKind | None = None) -> str | None:
    """Send 500 USDT spot → margin on sim-a under ``key``; the venue id, or None if unknown."""
    if fault is not None:
        dv.engines["sim-a"].faults.inject(fault, TRANSFER, method="POST")
    try:
        receipt = dv.venues["sim-a"].transfer(
            USDT, Decimal(500), W.SPOT, W.MARGIN, key, ts_deadline_ns=None
        )
    except OutcomeUnknown:
        return None
    return receipt.venue_transfer_id


def test_lookup_after_restart_with_the_answered_twin_in_the_store_never_adopts_it(
    session: Session, venues: object, desk_sims: DeskVenues, clock: ManualClock
) -> None:
    """The issue's case: key-1 was answered (its tranId recorded), key-2 with the same amount
    was lost; after a restart the adapter's memory is empty. With the store's claims key-2 is
    not found (it was never applied); with claims from an empty store it would have adopted
    key-1's transfer and reported it confirmed."""
    tran_1 = _send(desk_sims, "k-1")
    _record(session, _intent("k-1"), TransferState.SENT, venue_id=tran_1)
    assert _send(desk_sims, "k-2", FaultKind.TIMEOUT_NOT_APPLIED) is None
    _record(session, _intent("k-2"), TransferState.UNKNOWN)
    clock.advance(2)
    fresh, _ = sim_venue(desk_sims.engines["sim-a"], clock)  # the restarted process
    fresh.warm_up()
    row = get_transfer(session, "k-2")
    assert row is not None
    request = transfer_request(row, venue_offset_ns=fresh.time_difference_ms * 1_000_000)
    report = fresh.lookup_transfer("k-2", request, claims=StoreTransferClaims(session))
    assert (report.status, report.venue_transfer_id) == (S.NOT_FOUND_YET, None)
    clock.advance(120)
    report = fresh.lookup_transfer("k-2", request, claims=StoreTransferClaims(session))
    assert report.status is S.NOT_FOUND
    # The same lookup with memory only (an empty store) adopts key-1's transfer: the bug.
    empty = sqlite_memory_engine()
    with Session(empty) as blank:
        amnesiac, _ = sim_venue(desk_sims.engines["sim-a"], clock)
        amnesiac.warm_up()
        wrong = amnesiac.lookup_transfer("k-2", request, claims=StoreTransferClaims(blank))
    empty.dispose()
    assert (wrong.status, wrong.venue_transfer_id) == (S.CONFIRMED, tran_1)


def test_lookup_from_a_second_executor_never_adopts_the_first_ones_transfer(
    session: Session, venues: object, desk_sims: DeskVenues, clock: ManualClock
) -> None:
    """Two adapters on one account (two worker processes): B's lost transfer is not A's."""
    engine = desk_sims.engines["sim-a"]
    b, _ = sim_venue(engine, clock)
    b.warm_up()
    tran_a = _send(desk_sims, "k-a")  # process A, answered and recorded
    assert tran_a is not None
    _record(session, _intent("k-a"), TransferState.SENT, venue_id=tran_a)
    engine.faults.inject(FaultKind.TIMEOUT_NOT_APPLIED, TRANSFER, method="POST")
    _record(session, _intent("k-b"), None)
    with pytest.raises(OutcomeUnknown):
        b.transfer(USDT, Decimal(500), W.SPOT, W.MARGIN, "k-b", ts_deadline_ns=None)
    clock.advance(121)
    report = b.lookup_transfer("k-b", claims=StoreTransferClaims(session))
    assert report.status is S.NOT_FOUND
    assert [str(t.tran_id) for t in engine.transfers] == [tran_a]


def test_lookup_with_an_unresolved_rival_in_the_store_is_ambiguous_until_it_is_resolved(
    session: Session, venues: object, desk_sims: DeskVenues, clock: ManualClock
) -> None:
    """Two same-amount sends both timed out; only the first landed. After a restart neither
    key can claim the one row while the other is open; once an operator records the other as
    failed, the row is adopted."""
    assert _send(desk_sims, "k-p", FaultKind.TIMEOUT_APPLIED) is None
    _record(session, _intent("k-p"), TransferState.UNKNOWN, at_s=0)
    assert _send(desk_sims, "k-q", FaultKind.TIMEOUT_NOT_APPLIED) is None
    _record(session, _intent("k-q"), TransferState.UNKNOWN, at_s=0)
    (landed,) = desk_sims.engines["sim-a"].transfers
    clock.advance(1)
    fresh, _ = sim_venue(desk_sims.engines["sim-a"], clock)
    fresh.warm_up()
    claims = StoreTransferClaims(session)
    requests = {}
    for key in ("k-p", "k-q"):
        row = get_transfer(session, key)
        assert row is not None
        requests[key] = transfer_request(row)
    for key, rival in (("k-p", "k-q"), ("k-q", "k-p")):
        report = fresh.lookup_transfer(key, requests[key], claims=claims)
        assert report.status is S.AMBIGUOUS
        assert report.candidates == (str(landed.tran_id),)
        assert report.rivals == (rival,)
    record_transfer_result(session, "k-q", TransferState.FAILED, at=T0 + timedelta(seconds=5))
    report = fresh.lookup_transfer("k-p", requests["k-p"], claims=claims)
    assert (report.status, report.venue_transfer_id) == (S.CONFIRMED, str(landed.tran_id))
