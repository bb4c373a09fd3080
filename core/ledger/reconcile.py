"""Reconciliation: does every venue hold what the ledger says it should? (DESIGN §8, issue 14).

One run, per venue of the desk:

1. **Read** the venue (every wallet, :func:`core.venues.state.read_venue_state`) and record it
   as a ``venue`` snapshot.
2. **Expect**: the previous ``venue`` snapshot of that venue plus every movement the ledger
   recorded since (``TransferRow`` legs ``confirmed`` with ``sent_at`` after it)::

       expected[venue, wallet, asset] = previous[venue, wallet, asset]
                                        + Σ credits − Σ debits of confirmed legs since

   A transfer debits its from wallet and credits its to wallet; a conversion (any leg with a
   ``to_asset``: an in-place swap or a swap) debits ``asset`` by what the venue booked
   (``result["booked_amount"]``, else the leg's amount) and credits ``to_asset`` by what it
   delivered (``result["received"]``, as the executor records them); a withdrawal
   debits the source and credits the destination venue with the amount less its fee
   (``result["fee"]``, 0 when absent). ``pnl_offset`` and ``in_place`` legs move nothing.
   The expectation is stored as an ``expected`` snapshot.
3. **Compare** every (venue, wallet, asset) of either side. A difference over the asset's
   tolerance (``[reconcile] tolerance``, default one unit of the asset's last decimal) is a
   drift, recorded as a ``ReconDriftRow`` with its likely cause. Legs still ``pending``,
   ``sent`` or ``unknown`` are *in flight*: listed, and the wallets they touch are not judged.
4. **Anchor** the audit chain's head (``recorded_by="reconcile"``).

A venue seen for the first time has no expectation yet: its snapshot is the baseline.

Likely causes, tried in this order (:class:`DriftCause`):

- ``unrecorded_movement``: two drifts on one venue and asset that cancel (−x in one wallet,
  +x in another) and a row of the venue's transfer history between the two wallets, of that
  amount, booked since the previous snapshot: a transfer made behind the ledger's back;
- ``fee``: a shortfall that is a whole number (1 to the number of legs that touched the
  wallet, at least 1) of the asset's configured fee (``[reconcile] fees``);
- ``funding``: any other difference on a futures wallet (``um``, ``cm``), where funding
  payments move the wallet balance without a ledger movement;
- ``unknown``: none of the above; someone must look.

This module is pure (no Prefect); ``flows/cli_reconcile.py`` wraps it as ``pmr reconcile``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlmodel import Session, col, or_, select

from core.config import DeskConfig
from core.domain import Asset, Balance, WalletKind
from core.errors import DataError, VenueError
from core.ledger.audit_log import anchor_head
from core.ledger.chain import AuditKey
from core.ledger.store import ensure_venue, latest_snapshot_id, load_snapshot, record_snapshot
from core.ledger.tables import ReconDriftRow, TransferRow
from core.ledger.vocab import DriftStatus, SnapshotSource, TransferMode, TransferState, VenueMode
from core.venues.base import Venue
from core.venues.state import read_venue_state

__all__ = ["Drift", "DriftCause", "InFlight", "ReconReport", "reconcile"]

ZERO = Decimal(0)
Cell = tuple[str, WalletKind, str]  # venue, wallet, asset
_IN_FLIGHT = (TransferState.PENDING, TransferState.SENT, TransferState.UNKNOWN)
_FUTURES = frozenset({WalletKind.UM, WalletKind.CM})


class DriftCause(StrEnum):
    """The likely cause of a drift (see the module doc for how each is recognised)."""

    UNRECORDED_MOVEMENT = "unrecorded_movement"
    FEE = "fee"
    FUNDING = "funding"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Drift:
    """One (venue, wallet, asset) whose venue balance is not what the ledger expected."""

    venue: str
    wallet: WalletKind
    asset: str
    expected: Decimal
    reported: Decimal
    tolerance: Decimal
    cause: DriftCause
    note: str

    @property
    def drift(self) -> Decimal:
        """``reported − expected``, in asset units."""
        return self.reported - self.expected


@dataclass(frozen=True, slots=True)
class InFlight:
    """A leg whose outcome the ledger does not know yet: listed, never counted as drift."""

    key: str
    status: TransferState
    mode: str
    venue: str
    from_wallet: str
    to_venue: str
    to_wallet: str
    asset: str
    amount: Decimal


@dataclass(frozen=True, slots=True)
class ReconReport:
    """What one reconciliation found. ``drifts`` is empty when venues and store agree."""

    at: datetime
    snapshot_ids: Mapping[str, int]  # venue → the venue snapshot just recorded
    expected_ids: Mapping[str, int]  # venue → the expected snapshot (absent on a baseline)
    baseline: tuple[str, ...]  # venues seen for the first time: nothing to compare yet
    compared: int  # (venue, wallet, asset) cells compared
    drifts: tuple[Drift, ...]
    in_flight: tuple[InFlight, ...]
    anchor_seq: int
    anchor_hash: str

    @property
    def ok(self) -> bool:
        return not self.drifts


def _movements(row: TransferRow) -> list[tuple[Cell, Decimal]]:
    """The balance changes a confirmed leg made, as ``(cell, signed amount)``."""
    mode = TransferMode(row.mode)
    src = WalletKind(row.from_wallet)
    dst = WalletKind(row.to_wallet)
    result: Mapping[str, Any] = row.result or {}
    if row.to_asset is not None and row.to_asset != row.asset:
        # A conversion (an in-place swap of a low-rate asset, or a swap before a transfer):
        # what the venue booked leaves, what it delivered arrives. The executor records both
        # from the venue's answer (``booked_amount``, ``received``).
        if "received" not in result:
            raise DataError(
                "a confirmed conversion without the amount it delivered (result.received)",
                key=row.idempotency_key,
            )
        booked = _decimal(result.get("booked_amount", row.amount), row)
        return [
            ((row.venue_id, src, row.asset), -booked),
            ((row.venue_id, dst, row.to_asset), _decimal(result["received"], row)),
        ]
    match mode:
        case TransferMode.PNL_OFFSET | TransferMode.IN_PLACE | TransferMode.SWAP:
            return []  # no asset changes hands (a swap without to_asset is a label only)
        case TransferMode.TRANSFER:
            return [
                ((row.venue_id, src, row.asset), -row.amount),
                ((row.to_venue_id, dst, row.asset), row.amount),
            ]
        case TransferMode.WITHDRAWAL:
            fee = _decimal(result.get("fee", 0), row)
            return [
                ((row.venue_id, src, row.asset), -row.amount),
                ((row.to_venue_id, dst, row.asset), row.amount - fee),
            ]


def _decimal(value: object, row: TransferRow) -> Decimal:
    try:
        out = Decimal(str(value))
    except ArithmeticError:
        out = Decimal("NaN")
    if not out.is_finite():
        raise DataError(
            "a leg's result holds a non-numeric amount", key=row.idempotency_key, value=value
        )
    return out


def _amounts(balances: tuple[Balance, ...], venue: str) -> dict[Cell, Decimal]:
    out: dict[Cell, Decimal] = defaultdict(lambda: ZERO)
    for b in balances:
        if b.venue == venue:
            out[(venue, b.wallet, b.asset.code)] += b.amount
    return dict(out)


def _in_flight(session: Session) -> list[TransferRow]:
    stmt = (
        select(TransferRow)
        .where(col(TransferRow.status).in_([s.value for s in _IN_FLIGHT]))
        .order_by(col(TransferRow.id))
    )
    return list(session.exec(stmt).all())


def _confirmed_since(
    session: Session, venue: str, since: datetime, until: datetime
) -> list[TransferRow]:
    stmt = (
        select(TransferRow)
        .where(TransferRow.status == TransferState.CONFIRMED.value)
        .where(or_(TransferRow.venue_id == venue, TransferRow.to_venue_id == venue))
        .where(col(TransferRow.sent_at) > since)
        .where(col(TransferRow.sent_at) <= until)
        .order_by(col(TransferRow.id))
    )
    return list(session.exec(stmt).all())


@dataclass(slots=True)
class _Diff:
    cell: Cell
    expected: Decimal
    reported: Decimal
    tolerance: Decimal
    legs: int  # recorded legs that touched the cell since the previous snapshot

    @property
    def drift(self) -> Decimal:
        return self.reported - self.expected


def _history_match(venue: Venue, out: _Diff, into: _Diff, start_ns: int, end_ns: int) -> str | None:
    """The venue's history row for a transfer ``out`` → ``into`` of the drifted amount."""
    name, src, asset = out.cell
    amount = -out.drift
    try:
        rows = venue.transfer_history(
            Asset(asset), src, into.cell[1], start_ns=start_ns, end_ns=end_ns
        )
    except VenueError:
        return None  # a pair the venue cannot move, or history unreadable: no attribution
    for r in rows:
        if abs(r.amount - amount) <= out.tolerance:
            return (
                f"venue transfer {r.venue_transfer_id} {src.value}->{into.cell[1].value} of "
                f"{r.amount} {asset} on {name} is not in the ledger"
            )
    return None


def _attribute(
    desk: DeskConfig,
    venue: Venue,
    diffs: list[_Diff],
    start_ns: int,
    end_ns: int,
) -> list[Drift]:
    causes: dict[Cell, tuple[DriftCause, str]] = {}
    # 1. Pairs that cancel on one venue and asset: a transfer behind the ledger's back.
    for out in diffs:
        if out.drift >= 0 or out.cell in causes:
            continue
        for into in diffs:
            if into.cell in causes or into.cell == out.cell or into.cell[2] != out.cell[2]:
                continue
            if into.drift <= 0 or abs(into.drift + out.drift) > max(out.tolerance, into.tolerance):
                continue
            note = _history_match(venue, out, into, start_ns, end_ns)
            if note is not None:
                causes[out.cell] = (DriftCause.UNRECORDED_MOVEMENT, note)
                causes[into.cell] = (DriftCause.UNRECORDED_MOVEMENT, note)
                break
    for d in diffs:
        if d.cell in causes:
            continue
        _, wallet, asset = d.cell
        fee = desk.reconcile.fees.get(asset)
        if fee is not None and d.drift < 0:
            count = (-d.drift / fee).to_integral_value()
            if 1 <= count <= max(1, d.legs) and abs(-d.drift - count * fee) <= d.tolerance:
                causes[d.cell] = (DriftCause.FEE, f"{count} x the {fee} {asset} fee")
                continue
        if wallet in _FUTURES:
            causes[d.cell] = (DriftCause.FUNDING, "funding moves a futures wallet's balance")
            continue
        causes[d.cell] = (DriftCause.UNKNOWN, "no recorded or venue movement explains it")
    return [
        Drift(
            venue=d.cell[0],
            wallet=d.cell[1],
            asset=d.cell[2],
            expected=d.expected,
            reported=d.reported,
            tolerance=d.tolerance,
            cause=causes[d.cell][0],
            note=causes[d.cell][1],
        )
        for d in diffs
    ]


def reconcile(
    session: Session,
    desk: DeskConfig,
    venues: Mapping[str, Venue],
    *,
    now: datetime,
    audit_key: AuditKey | None = None,
    max_age_s: float | None = None,
) -> ReconReport:
    """Snapshot every venue of ``desk``, compare it with the ledger, record drifts, anchor.

    Everything is written in ``session`` and flushed, not committed: the caller commits the
    run whole (or rolls it back whole on an error). ``now`` stamps the snapshots, drifts and
    anchor; it must not be earlier than the previous snapshot.

    Raises
    ------
    ConfigError
        A desk venue has no venue object.
    DataError
        ``now`` before a previous snapshot, a confirmed leg whose recorded result cannot be
        booked, or a broken audit chain (the anchor refuses to bless it).
    VenueError
        A venue could not be read (nothing is recorded for the run: roll back).
    """
    from core.errors import ConfigError

    missing = [v.name for v in desk.venues if v.name not in venues]
    if missing:
        raise ConfigError("no venue object for these desk venues", venues=missing)
    flying = _in_flight(session)
    flying_cells: set[Cell] = set()
    for row in flying:
        flying_cells.add((row.venue_id, WalletKind(row.from_wallet), row.asset))
        flying_cells.add((row.to_venue_id, WalletKind(row.to_wallet), row.to_asset or row.asset))
    snapshot_ids: dict[str, int] = {}
    expected_ids: dict[str, int] = {}
    baseline: list[str] = []
    drifts: list[Drift] = []
    compared = 0
    for cfg in desk.venues:
        name = cfg.name
        venue = venues[name]
        ensure_venue(
            session,
            name,
            exchange="sim" if cfg.kind == "sim" else "binance",
            mode=VenueMode.SIM if cfg.kind == "sim" else VenueMode.LIVE,
            at=now,
        )
        prev_id = latest_snapshot_id(session, source=SnapshotSource.VENUE, venue_id=name)
        state, _ = read_venue_state(desk, name, venue, max_age_s=max_age_s)
        pf = state.portfolio
        snapshot_ids[name] = record_snapshot(
            session,
            taken_at=now,
            source=SnapshotSource.VENUE,
            venue_id=name,
            balances=pf.balances,
            positions=pf.positions,
            prices=tuple(pf.prices.values()),
        )
        if prev_id is None:
            baseline.append(name)
            continue
        prev = load_snapshot(session, prev_id)
        if now < prev.taken_at:
            raise DataError(
                "reconciliation time is before the previous snapshot",
                venue=name,
                now=now.isoformat(),
                previous=prev.taken_at.isoformat(),
            )
        expected = _amounts(prev.balances, name)
        touched: dict[Cell, int] = defaultdict(int)
        for row in _confirmed_since(session, name, prev.taken_at, now):
            for cell, delta in _movements(row):
                if cell[0] == name:
                    expected[cell] = expected.get(cell, ZERO) + delta
                    touched[cell] += 1
        expected_ids[name] = record_snapshot(
            session,
            taken_at=now,
            source=SnapshotSource.EXPECTED,
            venue_id=name,
            balances=[
                Balance(name, wallet, Asset(asset), amount)
                for (_, wallet, asset), amount in sorted(expected.items())
                if amount >= 0 or wallet.may_go_negative
            ],
        )
        reported = _amounts(pf.balances, name)
        diffs: list[_Diff] = []
        for cell in sorted(set(expected) | set(reported)):
            if cell in flying_cells:
                continue
            compared += 1
            tolerance = desk.recon_tolerance(cell[2])
            d = _Diff(
                cell,
                expected.get(cell, ZERO),
                reported.get(cell, ZERO),
                tolerance,
                touched.get(cell, 0),
            )
            if abs(d.drift) > tolerance:
                diffs.append(d)
        found = _attribute(
            desk, venue, diffs, round(prev.taken_at.timestamp() * 1e9), venue.venue_now_ns()
        )
        for f in found:
            session.add(
                ReconDriftRow(
                    detected_at=now,
                    venue_id=f.venue,
                    wallet=f.wallet.value,
                    asset=f.asset,
                    expected=f.expected,
                    reported=f.reported,
                    drift=f.drift,
                    tolerance=f.tolerance,
                    expected_snapshot_id=expected_ids[name],
                    reported_snapshot_id=snapshot_ids[name],
                    status=DriftStatus.OPEN.value,
                    note=f"{f.cause.value}: {f.note}",
                )
            )
        drifts.extend(found)
    session.flush()
    anchor = anchor_head(session, recorded_by="reconcile", at=now, key=audit_key)
    return ReconReport(
        at=now,
        snapshot_ids=snapshot_ids,
        expected_ids=expected_ids,
        baseline=tuple(baseline),
        compared=compared,
        drifts=tuple(drifts),
        in_flight=tuple(
            InFlight(
                key=r.idempotency_key,
                status=TransferState(r.status),
                mode=r.mode,
                venue=r.venue_id,
                from_wallet=r.from_wallet,
                to_venue=r.to_venue_id,
                to_wallet=r.to_wallet,
                asset=r.asset,
                amount=r.amount,
            )
            for r in flying
        ),
        anchor_seq=anchor.seq,
        anchor_hash=anchor.hash,
    )
