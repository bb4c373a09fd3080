"""Looking a transfer up after an unknown outcome, without ever adopting another key's transfer.

Binance's universal transfer (``POST /sapi/v1/asset/transfer``) takes no client id, so after a
timeout the only way to learn whether it was applied is the venue's transfer history (``GET
/sapi/v1/asset/transfer``): rows of the same type and asset, with the exact amount, booked in a
window around the send. Three things make that safe:

1. **Claims come from the store.** A history row whose ``tranId`` is already recorded against
   another idempotency key belongs to that key, whatever this process remembers: after a
   restart, or with a second executor process, memory knows nothing. The caller passes a
   :class:`TransferClaims` (``core.ledger.claims.StoreTransferClaims``, a query over the
   ``transfer`` table); the adapter adds the ids its own process has seen (never fewer).
2. **Unresolved rivals block adoption.** Another key whose intent for the *same* movement is
   still unresolved (no venue id, not final) and whose send window covers a candidate row may
   own that row: the lookup says ``ambiguous`` and names both, instead of guessing.
3. **Absence is proven only after the window.** A request that timed out can still be booked
   later (Binance starts processing a signed request up to ``recvWindow`` after its timestamp,
   and its history shows it some time after that). Until ``ts_sent + window_s`` the lookup says
   ``not_found_yet``; only a ``not_found`` after it lets the caller free the key and resend.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from core.venues.reports import TransferHistoryRow, VenueTransferRequest, VenueTransferStatus

__all__ = [
    "HISTORY_SKEW_S",
    "TransferClaims",
    "TransferVerdict",
    "UnresolvedTransfer",
    "judge_transfer_history",
    "match_transfer_history",
    "window_closes_ns",
]

# How far *before* the recorded send a venue row may be stamped and still be ours: the desk's
# measured offset to the venue's clock can be off by the last re-sync's round trip.
HISTORY_SKEW_S = 5.0


@dataclass(frozen=True, slots=True)
class UnresolvedTransfer:
    """Another key's transfer intent for the same movement that has no outcome yet.

    ``sent_at`` is when its request left (or its intent was written, if it never recorded a
    send), on the desk's clock; the adapter shifts it to the venue's clock to compare windows.
    """

    key: str
    sent_at: datetime


@runtime_checkable
class TransferClaims(Protocol):
    """What the store knows about other keys' transfers on one venue.

    Implemented by ``core.ledger.claims.StoreTransferClaims`` (the venue layer never imports the
    ledger; the caller hands the claims in).
    """

    def claimed(
        self, venue: str, exclude_key: str, candidate_ids: Collection[str]
    ) -> frozenset[str]:
        """Return those of ``candidate_ids`` already recorded against a key other than
        ``exclude_key`` on ``venue``."""
        ...

    def unresolved(
        self, venue: str, request: VenueTransferRequest
    ) -> tuple[UnresolvedTransfer, ...]:
        """Return other keys' unresolved intents on ``venue`` for the same movement as
        ``request`` (asset, exact amount, wallets), whatever their send time."""
        ...


def window_closes_ns(ts_sent_ns: int, window_s: float) -> int:
    """When a lookup that found nothing becomes proof of absence (venue clock, ns)."""
    return ts_sent_ns + round(window_s * 1e9)


def _in_window(ts_ns: int, ts_sent_ns: int, window_s: float, skew_s: float) -> bool:
    return ts_sent_ns - round(skew_s * 1e9) <= ts_ns <= window_closes_ns(ts_sent_ns, window_s)


def match_transfer_history(
    request: VenueTransferRequest,
    rows: tuple[TransferHistoryRow, ...],
    *,
    window_s: float,
    claimed_ids: frozenset[str] = frozenset(),
    skew_s: float = HISTORY_SKEW_S,
) -> tuple[TransferHistoryRow, ...]:
    """Return the history rows that could be ``request``: same asset, exact amount, same
    wallets, time within ``[sent − skew_s, sent + window_s]``, and not in ``claimed_ids``.
    """
    return tuple(
        r
        for r in rows
        if r.asset == request.asset
        and r.amount == request.amount
        and r.from_wallet == request.from_wallet
        and r.to_wallet == request.to_wallet
        and _in_window(r.ts_ns, request.ts_sent_ns, window_s, skew_s)
        and r.venue_transfer_id not in claimed_ids
    )


@dataclass(frozen=True, slots=True)
class TransferVerdict:
    """What the history says about one request: the status, and the row adopted if any."""

    status: VenueTransferStatus
    row: TransferHistoryRow | None = None
    candidates: tuple[str, ...] = ()
    rivals: tuple[str, ...] = ()


def judge_transfer_history(
    request: VenueTransferRequest,
    rows: tuple[TransferHistoryRow, ...],
    *,
    claimed_ids: frozenset[str],
    rivals_sent_ns: Mapping[str, int],
    now_ns: int,
    window_s: float,
    skew_s: float = HISTORY_SKEW_S,
) -> TransferVerdict:
    """Decide what the venue's history says about an unanswered transfer (pure).

    Parameters
    ----------
    request
        What was sent under the key (venue-clock send time).
    rows
        The venue's history of the request's type and asset around the send.
    claimed_ids
        Venue ids recorded against other keys (store and this process): never adopted.
    rivals_sent_ns
        Other unresolved keys for the same movement → their send time (venue clock).
    now_ns
        Now on the venue's clock.
    window_s
        How long after the send the venue may still book the request.

    Returns
    -------
    TransferVerdict
        ``not_found_yet`` / ``not_found`` (no free candidate, before / after the window);
        the row's own status when exactly one free candidate matches and no rival's window
        covers it; ``ambiguous`` otherwise, naming the candidates and the rivals.

    Examples
    --------
    >>> from decimal import Decimal
    >>> from core.domain import Asset, WalletKind as W
    >>> req = VenueTransferRequest("k-2", Asset("USDT"), Decimal(500), W.SPOT, W.MARGIN,
    ...                            10**18, "MAIN_MARGIN")
    >>> row = TransferHistoryRow("901", Asset("USDT"), Decimal(500), W.SPOT, W.MARGIN,
    ...                          10**18 + 10**8, VenueTransferStatus.CONFIRMED)
    >>> judge_transfer_history(req, (row,), claimed_ids=frozenset({"901"}), rivals_sent_ns={},
    ...                        now_ns=10**18 + 10**9, window_s=120).status.value
    'not_found_yet'
    >>> judge_transfer_history(req, (row,), claimed_ids=frozenset(), rivals_sent_ns={},
    ...                        now_ns=10**18 + 10**9, window_s=120).status.value
    'confirmed'
    """
    free = match_transfer_history(
        request, rows, window_s=window_s, claimed_ids=claimed_ids, skew_s=skew_s
    )
    if not free:
        closed = now_ns >= window_closes_ns(request.ts_sent_ns, window_s)
        return TransferVerdict(
            VenueTransferStatus.NOT_FOUND if closed else VenueTransferStatus.NOT_FOUND_YET
        )
    rivals = tuple(
        sorted(
            key
            for key, sent_ns in rivals_sent_ns.items()
            if any(_in_window(r.ts_ns, sent_ns, window_s, skew_s) for r in free)
        )
    )
    if len(free) == 1 and not rivals:
        return TransferVerdict(free[0].status, free[0], (free[0].venue_transfer_id,))
    return TransferVerdict(
        VenueTransferStatus.AMBIGUOUS,
        candidates=tuple(r.venue_transfer_id for r in free),
        rivals=rivals,
    )
