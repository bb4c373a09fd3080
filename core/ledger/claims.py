"""Which venue transfer ids other keys already hold: the store's side of a safe lookup.

A lookup after a timeout matches the venue's transfer history (Binance's universal transfer has
no client id; see :mod:`core.venues.lookup`). The one thing it must never do is adopt a transfer
another idempotency key owns. What other keys own is known to the store, not to process memory:
after a restart, or with a second executor, memory is empty while the ``transfer`` table still
holds every recorded ``venue_transfer_id`` and every intent still waiting for an outcome.

:class:`StoreTransferClaims` answers the two questions of
:class:`~core.venues.lookup.TransferClaims` with two queries over
:class:`~core.ledger.tables.TransferRow`:

- ``claimed``: which of the candidate venue ids are recorded against another key on the venue;
- ``unresolved``: which other keys have an intent for the same movement (venue, asset, exact
  amount, wallets, same venue and no asset change) with no venue id and no final outcome
  (``finished_at`` unset), i.e. a transfer that may be the one in the venue's history.

It reads within the caller's session, so rows the executor flushed but has not committed yet
are seen too. :func:`transfer_request` rebuilds, from a row, what the venue must match when
another process (or a restarted one) looks the transfer up.

Examples
--------
>>> claims = StoreTransferClaims(session)  # doctest: +SKIP
>>> venue.lookup_transfer(key, request, claims=claims)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Collection

from sqlmodel import Session, col, select

from core.domain import Asset, WalletKind
from core.ledger.tables import TransferRow
from core.venues.lookup import TransferClaims, UnresolvedTransfer
from core.venues.reports import VenueTransferRequest
from core.venues.wallets import binance_transfer_type

__all__ = ["StoreTransferClaims", "transfer_request"]

# Bound the IN (...) list: a lookup window never holds more history rows than a few pages.
_MAX_CANDIDATES = 1000


class StoreTransferClaims(TransferClaims):
    """:class:`~core.venues.lookup.TransferClaims` answered from the ledger's ``transfer`` table.

    Parameters
    ----------
    session
        An open ledger session (SQLite or PostgreSQL); nothing is written through it.
    """

    def __init__(self, session: Session) -> None:
        self._session = session

    def claimed(
        self, venue: str, exclude_key: str, candidate_ids: Collection[str]
    ) -> frozenset[str]:
        """Return those of ``candidate_ids`` recorded against a key other than ``exclude_key``
        on ``venue``.

        Examples
        --------
        >>> StoreTransferClaims(session).claimed("sim-a", "k-2", ["100000001"])  # doctest: +SKIP
        frozenset({'100000001'})
        """
        wanted = sorted(set(candidate_ids))
        out: set[str] = set()
        for i in range(0, len(wanted), _MAX_CANDIDATES):
            chunk = wanted[i : i + _MAX_CANDIDATES]
            stmt = select(TransferRow.venue_transfer_id).where(
                TransferRow.venue_id == venue,
                TransferRow.idempotency_key != exclude_key,
                col(TransferRow.venue_transfer_id).in_(chunk),
            )
            out.update(v for v in self._session.exec(stmt).all() if v is not None)
        return frozenset(out)

    def unresolved(
        self, venue: str, request: VenueTransferRequest
    ) -> tuple[UnresolvedTransfer, ...]:
        """Return other keys' intents for the same movement that have no outcome yet.

        Amounts are compared as ``Decimal`` in Python, not in SQL: SQLite stores them as text,
        where ``'500'`` and ``'500.0'`` differ.
        """
        stmt = (
            select(TransferRow)
            .where(
                TransferRow.venue_id == venue,
                TransferRow.to_venue_id == venue,
                col(TransferRow.to_asset).is_(None),
                TransferRow.asset == request.asset.code,
                TransferRow.from_wallet == request.from_wallet.value,
                TransferRow.to_wallet == request.to_wallet.value,
                TransferRow.idempotency_key != request.key,
                col(TransferRow.venue_transfer_id).is_(None),
                col(TransferRow.finished_at).is_(None),
            )
            .order_by(col(TransferRow.created_at), col(TransferRow.id))
        )
        return tuple(
            UnresolvedTransfer(row.idempotency_key, row.sent_at or row.created_at)
            for row in self._session.exec(stmt).all()
            if row.amount == request.amount
        )


def transfer_request(row: TransferRow, *, venue_offset_ns: int = 0) -> VenueTransferRequest:
    """What the venue must match for ``row``'s transfer, for a lookup from another process.

    ``venue_offset_ns`` is the adapter's desk-minus-venue clock offset
    (``venue.time_difference_ms * 1_000_000``): the row's times are on the desk's clock, the
    venue's history on its own. The send time is ``sent_at``, or ``created_at`` for an intent
    whose send was never recorded (a crash between the two: the window then starts earlier,
    which only widens the search).
    """
    sent = row.sent_at or row.created_at
    src = WalletKind.parse(row.from_wallet, where=f"transfer {row.idempotency_key}")
    dst = WalletKind.parse(row.to_wallet, where=f"transfer {row.idempotency_key}")
    return VenueTransferRequest(
        key=row.idempotency_key,
        asset=Asset(row.asset),
        amount=row.amount,
        from_wallet=src,
        to_wallet=dst,
        ts_sent_ns=round(sent.timestamp() * 1e9) - venue_offset_ns,
        venue_type=binance_transfer_type(src, dst),
    )
