"""Reconciliation against the simulated venues of the example desk, on SQLite and PostgreSQL:
zero drift after recorded transfers, drifts found and attributed (an unrecorded transfer, a fee,
funding, unknown), tolerances, legs in flight, the audit anchor, and bad tolerance config."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from sqlmodel import Session, select

from core.clock import ManualClock
from core.config import DeskConfig, load_desk
from core.domain import Asset, WalletKind
from core.errors import ConfigError
from core.ledger.reconcile import DriftCause, reconcile
from core.ledger.store import load_snapshot
from core.ledger.tables import AuditAnchorRow, ReconDriftRow, SnapshotRow
from core.ledger.transfers import TransferIntent, record_transfer_intent, record_transfer_result
from core.ledger.vocab import TransferMode, TransferState
from core.venues.factory import DeskVenues, build_desk_venues

W = WalletKind
USDT = Asset("USDT")
EXAMPLE_DESK = Path(__file__).resolve().parents[2] / "examples" / "desk.toml"


def _desk(tmp_path: Path, extra: str = "") -> DeskConfig:
    path = tmp_path / "desk.toml"
    path.write_text(EXAMPLE_DESK.read_text() + "\n" + extra)
    return load_desk(path)


@pytest.fixture
def desk(tmp_path: Path) -> DeskConfig:
    return _desk(tmp_path, '[reconcile]\ntolerance = { USDT = "0.01" }\nfees = { USDT = "1" }\n')


@pytest.fixture
def sims(desk: DeskConfig, clock: ManualClock) -> Iterator[DeskVenues]:
    with build_desk_venues(desk, clock) as dv:
        dv.warm_up()
        yield dv


def _run(session: Session, desk: DeskConfig, sims: DeskVenues, clock: ManualClock):  # type: ignore[no-untyped-def]
    report = reconcile(session, desk, sims.venues, now=clock.now())
    session.flush()
    return report


def _recorded_transfer(
    session: Session,
    sims: DeskVenues,
    clock: ManualClock,
    key: str,
    amount: Decimal,
    src: WalletKind = W.SPOT,
    dst: WalletKind = W.MARGIN,
    venue: str = "sim-a",
) -> None:
    """What the executor does for one leg: intent, send, confirmed result."""
    intent = TransferIntent(key, TransferMode.TRANSFER, venue, src, dst, USDT, amount)
    record_transfer_intent(session, intent, at=clock.now())
    receipt = sims.venues[venue].transfer(USDT, amount, src, dst, key, ts_deadline_ns=None)
    record_transfer_result(
        session,
        key,
        TransferState.CONFIRMED,
        at=clock.now(),
        sent_at=clock.now(),
        venue_transfer_id=receipt.venue_transfer_id,
    )


def test_first_run_is_a_baseline_with_nothing_compared(
    session: Session, desk: DeskConfig, sims: DeskVenues, clock: ManualClock
) -> None:
    report = _run(session, desk, sims, clock)
    assert report.baseline == ("sim-a", "sim-b")
    assert report.compared == 0
    assert report.drifts == ()
    assert set(report.snapshot_ids) == {"sim-a", "sim-b"}
    anchor = session.exec(select(AuditAnchorRow)).one()
    assert anchor.recorded_by == "reconcile"
    assert (anchor.seq, anchor.hash) == (report.anchor_seq, report.anchor_hash)


def test_confirmed_transfers_reconcile_with_zero_drift(
    session: Session, desk: DeskConfig, sims: DeskVenues, clock: ManualClock
) -> None:
    _run(session, desk, sims, clock)
    clock.advance(1)
    _recorded_transfer(session, sims, clock, "k-1", Decimal("125000"))
    _recorded_transfer(session, sims, clock, "k-2", Decimal("40000"), W.SPOT, W.UM, "sim-b")
    clock.advance(1)  # credited
    report = _run(session, desk, sims, clock)
    assert report.baseline == ()
    assert report.compared > 10
    assert report.drifts == ()
    assert report.ok
    assert session.exec(select(ReconDriftRow)).all() == []
    # The expectation is stored too: margin USDT = previous + 125,000.
    head = session.get(SnapshotRow, report.expected_ids["sim-a"])
    assert head is not None
    assert head.source == "expected"
    expected = load_snapshot(session, report.expected_ids["sim-a"])
    reported = load_snapshot(session, report.snapshot_ids["sim-a"])
    margin = [
        b.amount
        for snap in (expected, reported)
        for b in snap.balances
        if (b.wallet, b.asset.code) == (W.MARGIN, "USDT")
    ]
    assert margin[0] == margin[1]
    assert margin[0] == sims.engines["sim-a"].wallets[W.MARGIN]["USDT"].total
    # A third run with nothing new still agrees.
    clock.advance(1)
    assert _run(session, desk, sims, clock).drifts == ()
    assert len(session.exec(select(AuditAnchorRow)).all()) == 3


def test_transfer_behind_the_ledgers_back_is_found_in_venue_history(
    session: Session, desk: DeskConfig, sims: DeskVenues, clock: ManualClock
) -> None:
    _run(session, desk, sims, clock)
    clock.advance(1)
    receipt = sims.venues["sim-a"].transfer(
        USDT, Decimal("5000"), W.SPOT, W.MARGIN, "k-manual", ts_deadline_ns=None
    )
    clock.advance(1)
    report = _run(session, desk, sims, clock)
    by_wallet = {d.wallet: d for d in report.drifts}
    assert set(by_wallet) == {W.SPOT, W.MARGIN}
    assert by_wallet[W.SPOT].drift == Decimal(-5000)
    assert by_wallet[W.MARGIN].drift == Decimal(5000)
    assert {d.cause for d in report.drifts} == {DriftCause.UNRECORDED_MOVEMENT}
    assert receipt.venue_transfer_id in by_wallet[W.SPOT].note
    rows = session.exec(select(ReconDriftRow).order_by(ReconDriftRow.wallet)).all()
    assert [(r.venue_id, r.wallet, r.asset, r.drift) for r in rows] == [
        ("sim-a", "margin", "USDT", Decimal(5000)),
        ("sim-a", "spot", "USDT", Decimal(-5000)),
    ]
    assert all(r.status == "open" and r.note.startswith("unrecorded_movement") for r in rows)
    assert rows[0].expected_snapshot_id == report.expected_ids["sim-a"]
    assert rows[0].reported_snapshot_id == report.snapshot_ids["sim-a"]


def test_fee_funding_and_unknown_are_told_apart(
    session: Session, desk: DeskConfig, sims: DeskVenues, clock: ManualClock
) -> None:
    _run(session, desk, sims, clock)
    clock.advance(1)
    _recorded_transfer(session, sims, clock, "k-fee", Decimal("1000"), W.SPOT, W.FUNDING)
    books = sims.engines["sim-a"].wallets
    books[W.FUNDING]["USDT"].free -= Decimal(1)  # the venue charged its 1 USDT fee
    books[W.UM]["USDT"].free += Decimal("37.5")  # a funding payment received
    books[W.SPOT]["BTC"].free -= Decimal("0.25")  # gone, nobody knows where
    clock.advance(1)
    report = _run(session, desk, sims, clock)
    causes = {(d.wallet, d.asset): (d.cause, d.drift) for d in report.drifts}
    assert causes == {
        (W.FUNDING, "USDT"): (DriftCause.FEE, Decimal(-1)),
        (W.UM, "USDT"): (DriftCause.FUNDING, Decimal("37.5")),
        (W.SPOT, "BTC"): (DriftCause.UNKNOWN, Decimal("-0.25")),
    }


def test_difference_within_tolerance_is_no_drift_and_over_it_is(
    session: Session, desk: DeskConfig, sims: DeskVenues, clock: ManualClock
) -> None:
    _run(session, desk, sims, clock)
    books = sims.engines["sim-a"].wallets
    books[W.SPOT]["USDT"].free -= Decimal("0.01")  # at the USDT tolerance (0.01)
    clock.advance(1)
    assert _run(session, desk, sims, clock).drifts == ()
    books[W.SPOT]["BTC"].free -= Decimal("0.00000002")  # BTC: default, one unit of 8 decimals
    clock.advance(1)
    (drift,) = _run(session, desk, sims, clock).drifts
    assert (drift.asset, drift.drift, drift.tolerance) == (
        "BTC",
        Decimal("-0.00000002"),
        Decimal("1E-8"),
    )


def test_legs_in_flight_are_listed_not_drift(
    session: Session, desk: DeskConfig, sims: DeskVenues, clock: ManualClock
) -> None:
    _run(session, desk, sims, clock)
    clock.advance(1)
    intent = TransferIntent(
        "k-fly", TransferMode.TRANSFER, "sim-a", W.SPOT, W.MARGIN, USDT, Decimal(900)
    )
    record_transfer_intent(session, intent, at=clock.now())
    sims.venues["sim-a"].transfer(
        USDT, Decimal(900), W.SPOT, W.MARGIN, "k-fly", ts_deadline_ns=None
    )
    record_transfer_result(
        session, "k-fly", TransferState.UNKNOWN, at=clock.now(), sent_at=clock.now()
    )
    clock.advance(1)
    report = _run(session, desk, sims, clock)
    assert report.drifts == ()
    assert [(f.key, f.status, f.amount) for f in report.in_flight] == [
        ("k-fly", TransferState.UNKNOWN, Decimal(900))
    ]


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ('[reconcile]\ntolerance = { XRP = "0.1" }\n', "reconcile.tolerance: unknown asset 'XRP'"),
        ('[reconcile]\nfees = { XRP = "1" }\n', "reconcile.fees: unknown asset 'XRP'"),
        ('[reconcile]\ntolerance = { USDT = "NaN" }\n', "reconcile.tolerance.USDT"),
        ('[reconcile]\ntolerance = { USDT = "-1" }\n', "reconcile.tolerance.USDT"),
        ('[reconcile]\nfees = { USDT = "0" }\n', "reconcile.fees.USDT"),
        ("[reconcile]\ntolerances = {}\n", "reconcile.tolerances"),
    ],
)
def test_bad_reconcile_config_is_refused_naming_the_key(
    tmp_path: Path, extra: str, needle: str
) -> None:
    with pytest.raises(ConfigError) as info:
        _desk(tmp_path, extra)
    assert needle in str(info.value)
