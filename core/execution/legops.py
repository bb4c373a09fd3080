"""One leg, one venue operation: send it, look it up, free its key (the executor's venue half).

A leg's kind (``core.routing.legs.LegKind``) picks the venue call:

==============  ==========================================  =====================================
kind            send                                        look up (by)
==============  ==========================================  =====================================
internal        ``transfer`` (universal transfer)           ``lookup_transfer`` (history, claims)
convert         ``convert_quote`` then ``accept_quote``     ``lookup_convert`` (the quote id)
margin_order    ``margin_order`` (client order id = key)    ``lookup_margin_order`` (the key)
withdrawal      ``withdraw`` (``withdrawOrderId`` = key)    ``lookup_withdrawal`` (the key)
sub_account     not supported yet: refused before sending
==============  ==========================================  =====================================

Everything here answers in the venue's vocabulary (:class:`LegAnswer` with a
``VenueTransferStatus``); ``core.execution.states`` maps it to the ledger's state. Venue errors
propagate unchanged: the executor decides what each means (``OutcomeUnknown``: look up;
``RateLimited``: not processed, wait; any other ``VenueError``: the leg failed).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from core.clock import ns_to_datetime
from core.domain import Asset, WalletKind
from core.errors import ExecutionError
from core.ledger.claims import StoreTransferClaims, transfer_request
from core.ledger.tables import TransferRow
from core.routing.legs import LegKind
from core.venues.base import Venue
from core.venues.reports import ConvertQuote, VenueTransferStatus, WriteLookup

__all__ = [
    "SUPPORTED_KINDS",
    "LegAnswer",
    "WithdrawTarget",
    "forget_leg",
    "lookup_leg",
    "send_leg",
]

#: Where a withdrawal leg goes: ``(address, network)`` for (destination venue, asset).
WithdrawTarget = Callable[[str, str], tuple[str, str] | None]

SUPPORTED_KINDS = frozenset(
    {LegKind.INTERNAL, LegKind.CONVERT, LegKind.MARGIN_ORDER, LegKind.WITHDRAWAL}
)


@dataclass(frozen=True, slots=True)
class LegAnswer:
    """What the venue said about one leg: its status, its id, the amount it booked."""

    status: VenueTransferStatus
    venue_id: str | None = None
    amount: Decimal | None = None  # as booked by the venue (the origin side)
    received: Decimal | None = None  # conversions: what arrived in the target asset
    detail: dict[str, Any] = field(default_factory=dict)


def _kind(row: TransferRow, kind: LegKind | None) -> LegKind:
    if kind is not None:
        return kind
    if row.to_asset is not None:
        return (
            LegKind.CONVERT
            if row.mode == "swap" and row.from_wallet != "margin"
            else (LegKind.MARGIN_ORDER)
        )
    return LegKind.WITHDRAWAL if row.to_venue_id != row.venue_id else LegKind.INTERNAL


def _offset_ns(venue: Venue) -> int:
    ms = getattr(venue, "time_difference_ms", 0) or 0
    return int(ms) * 1_000_000


def _sent_ns(row: TransferRow, venue: Venue) -> int:
    sent = row.sent_at or row.created_at
    return round(sent.timestamp() * 1e9) - _offset_ns(venue)


def _quote_detail(q: ConvertQuote) -> dict[str, Any]:
    return {
        "quote_id": q.quote_id,
        "from_asset": q.from_asset.code,
        "to_asset": q.to_asset.code,
        "from_amount": str(q.from_amount),
        "to_amount": str(q.to_amount),
        "ratio": str(q.ratio),
        "valid_until": q.valid_until.isoformat(),
    }


def _quote_of(row: TransferRow) -> ConvertQuote | None:
    q = (row.result or {}).get("quote")
    if not isinstance(q, dict):
        return None
    return ConvertQuote(
        venue=row.venue_id,
        quote_id=str(q["quote_id"]),
        from_asset=Asset(q["from_asset"]),
        to_asset=Asset(q["to_asset"]),
        from_amount=Decimal(q["from_amount"]),
        to_amount=Decimal(q["to_amount"]),
        ratio=Decimal(q["ratio"]),
        valid_until=datetime.fromisoformat(q["valid_until"]),
    )


def send_leg(
    venue: Venue,
    row: TransferRow,
    kind: LegKind,
    *,
    ts_deadline_ns: int | None,
    withdraw_target: WithdrawTarget | None = None,
    on_quote: Callable[[dict[str, Any]], None] | None = None,
) -> LegAnswer:
    """Send the leg of ``row`` to ``venue`` once; raise the venue's errors unchanged.

    ``on_quote`` is told a conversion's quote before it is accepted, so the caller can record
    it (a restarted executor looks the accept up by the quote id).
    """
    asset = Asset(row.asset)
    src = WalletKind.parse(row.from_wallet, where=f"transfer {row.idempotency_key}")
    dst = WalletKind.parse(row.to_wallet, where=f"transfer {row.idempotency_key}")
    key = row.idempotency_key
    match kind:
        case LegKind.INTERNAL:
            r = venue.transfer(asset, row.amount, src, dst, key, ts_deadline_ns=ts_deadline_ns)
            return LegAnswer(r.status, r.venue_transfer_id, r.amount, r.amount)
        case LegKind.MARGIN_ORDER:
            to_asset = Asset(_required(row.to_asset, key))
            m = venue.margin_order(asset, to_asset, row.amount, key, ts_deadline_ns=ts_deadline_ns)
            return LegAnswer(_order_status(m.status), m.order_id, m.from_amount, m.to_amount)
        case LegKind.CONVERT:
            to_asset = Asset(_required(row.to_asset, key))
            quote = venue.convert_quote(
                asset, to_asset, row.amount, src, ts_deadline_ns=ts_deadline_ns
            )
            if on_quote is not None:
                on_quote(_quote_detail(quote))
            c = venue.accept_quote(quote, ts_deadline_ns=ts_deadline_ns)
            return LegAnswer(
                _order_status(c.status), c.order_id, c.from_amount, c.to_amount,
                {"quote_id": c.quote_id},
            )  # fmt: skip
        case LegKind.WITHDRAWAL:
            target = (
                None if withdraw_target is None else withdraw_target(row.to_venue_id, row.asset)
            )
            if target is None:
                raise ExecutionError(
                    "no allow-listed withdrawal address for this leg", key=key,
                    venue=row.to_venue_id, asset=row.asset,
                )  # fmt: skip
            address, network = target
            w = venue.withdraw(
                asset, row.amount, address, network, key, ts_deadline_ns=ts_deadline_ns
            )
            return LegAnswer(VenueTransferStatus.PENDING, w.withdrawal_id, w.amount, w.amount)
        case _:
            raise ExecutionError("this leg kind is not executable yet", key=key, kind=kind.value)


def _required(value: str | None, key: str) -> str:
    if value is None:
        raise ExecutionError("a conversion leg names no target asset", key=key)
    return value


def _order_status(status: str) -> VenueTransferStatus:
    s = status.upper()
    if s in {"FILLED", "SUCCESS", "CONFIRMED"}:
        return VenueTransferStatus.CONFIRMED
    if s in {"NEW", "PARTIALLY_FILLED", "PROCESS", "ACCEPT_SUCCESS", "PENDING"}:
        return VenueTransferStatus.PENDING
    return VenueTransferStatus.FAILED


def _from_lookup(
    found: WriteLookup[Any], venue_id: str | None, received: Decimal | None
) -> LegAnswer:
    return LegAnswer(found.status, venue_id, None, received)


def lookup_leg(
    venue: Venue,
    row: TransferRow,
    kind: LegKind,
    claims: StoreTransferClaims,
    *,
    ts_deadline_ns: int | None = None,
) -> LegAnswer:
    """What the venue knows of the leg of ``row``: by id, by key, or from its history."""
    key = row.idempotency_key
    match kind:
        case LegKind.INTERNAL:
            request = transfer_request(row, venue_offset_ns=_offset_ns(venue))
            r = venue.lookup_transfer(key, request, claims=claims, ts_deadline_ns=ts_deadline_ns)
            detail: dict[str, Any] = {"matched_by": r.matched_by}
            if r.candidates:
                detail["candidates"] = list(r.candidates)
            if r.rivals:
                detail["rivals"] = list(r.rivals)
            if r.window_closes_at is not None:
                detail["window_closes_at"] = r.window_closes_at.isoformat()
            return LegAnswer(r.status, r.venue_transfer_id, None, None, detail)
        case LegKind.MARGIN_ORDER:
            m = venue.lookup_margin_order(
                key, Asset(row.asset), Asset(_required(row.to_asset, key)),
                ts_sent_ns=_sent_ns(row, venue), ts_deadline_ns=ts_deadline_ns,
            )  # fmt: skip
            found = m.found
            status = m.status if found is None else _order_status(found.status)
            return LegAnswer(
                status, None if found is None else found.order_id,
                None if found is None else found.from_amount,
                None if found is None else found.to_amount,
            )  # fmt: skip
        case LegKind.CONVERT:
            quote = _quote_of(row)
            if quote is None:  # no quote recorded: the accept never left
                return LegAnswer(VenueTransferStatus.NOT_FOUND, detail={"why": "no quote"})
            c = venue.lookup_convert(quote, ts_deadline_ns=ts_deadline_ns)
            cf = c.found
            status = c.status if cf is None else _order_status(cf.status)
            return LegAnswer(
                status, None if cf is None else cf.order_id,
                None if cf is None else cf.from_amount, None if cf is None else cf.to_amount,
            )  # fmt: skip
        case LegKind.WITHDRAWAL:
            w = venue.lookup_withdrawal(
                key, Asset(row.asset), ts_sent_ns=_sent_ns(row, venue),
                ts_deadline_ns=ts_deadline_ns,
            )  # fmt: skip
            wf = w.found
            return LegAnswer(
                w.status, None if wf is None else wf.withdrawal_id,
                None if wf is None else wf.amount, None if wf is None else wf.amount,
            )  # fmt: skip
        case _:
            return LegAnswer(VenueTransferStatus.NOT_FOUND, detail={"why": "not executable"})


def forget_leg(venue: Venue, row: TransferRow, kind: LegKind) -> None:
    """Free the leg's key at the adapter after its absence was proven, before a resend."""
    key = row.idempotency_key
    match kind:
        case LegKind.INTERNAL:
            venue.forget_transfer(key)
        case LegKind.MARGIN_ORDER:
            venue.forget_margin_order(key)
        case LegKind.WITHDRAWAL:
            venue.forget_withdrawal(key)
        case LegKind.CONVERT:
            quote = _quote_of(row)
            if quote is not None:
                venue.forget_convert(quote.quote_id)
        case _:
            return


def leg_kind_of(row: TransferRow, plan_kind: str | None) -> LegKind:
    """The leg kind of ``row``: the plan leg's recorded kind, else inferred from the row."""
    return _kind(row, None if plan_kind is None else LegKind(plan_kind))


def venue_time(ts_ns: int) -> datetime:
    """``ts_ns`` as an aware UTC datetime (for messages)."""
    return ns_to_datetime(ts_ns)
