"""This process's record of the writes it sent: which keys are held, and when a key may be freed.

A key is *held* from the moment its write is about to leave until its outcome is known. While
held, a second write under it is refused (``DuplicateIdempotencyKey``): a timeout never turns
into a blind resend. The journal frees a key in exactly three cases:

- the venue refused the write before processing it (any ``VenueError`` other than
  ``OutcomeUnknown`` / ``ClockSkewRejected``): freed at once by the template;
- a ``-1021`` (``ClockSkewRejected``): not applied (refused before processing), freed by the
  caller's ``forget_*`` at once, never inside the adapter;
- an unknown outcome: freed by ``forget_*`` only after a lookup said ``not_found`` (the window
  after the send has closed) or ``failed``; before that ``forget_*`` raises
  ``LookupWindowOpen`` with the seconds left.

It is memory only, and that is why lookups take their claims from the store
(:mod:`core.venues.lookup`); the journal adds what this process has seen, never replaces it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from core.errors import LookupWindowOpen
from core.venues.errors import DuplicateIdempotencyKey
from core.venues.lookup import window_closes_ns
from core.venues.reports import VenueTransferRequest, VenueTransferStatus

__all__ = ["JournalEntry", "WriteJournal", "WriteKind"]


class WriteKind(StrEnum):
    """The writes a venue can send, each with its own key space."""

    TRANSFER = "transfer"
    CONVERT = "convert"  # key: the quote id
    WITHDRAWAL = "withdrawal"  # key: our withdrawOrderId
    MARGIN_ORDER = "margin_order"  # key: our newClientOrderId


@dataclass(slots=True)
class JournalEntry:
    """One held key: when its write left (venue clock) and what has been learnt since."""

    kind: WriteKind
    key: str
    ts_sent_ns: int
    request: VenueTransferRequest | None = None  # transfers only: what history must match
    venue_id: str | None = None
    not_applied: bool = False  # the venue refused it before processing (-1021)
    last_lookup: VenueTransferStatus | None = None
    sent_here: bool = True  # False: adopted for a lookup of what another process sent


class WriteJournal:
    """Held keys per write kind, for one venue adapter.

    Examples
    --------
    >>> j = WriteJournal("sim-a", window_s=120)
    >>> e = j.hold(WriteKind.WITHDRAWAL, "k-1", ts_sent_ns=0)
    >>> j.forget(WriteKind.WITHDRAWAL, "k-1", now_ns=10**9)
    Traceback (most recent call last):
    ...
    core.errors.LookupWindowOpen: ...
    """

    def __init__(self, venue: str, *, window_s: float) -> None:
        self._venue = venue
        self.window_s = window_s
        self._entries: dict[tuple[WriteKind, str], JournalEntry] = {}

    def get(self, kind: WriteKind, key: str) -> JournalEntry | None:
        return self._entries.get((kind, key))

    def check_free(self, kind: WriteKind, key: str) -> None:
        """Raise ``DuplicateIdempotencyKey`` if ``key`` is held (before any other check)."""
        if (kind, key) in self._entries:
            raise DuplicateIdempotencyKey(
                f"a {kind.value} with this key was already sent; look it up instead",
                key=key,
                venue=self._venue,
            )

    def hold(
        self,
        kind: WriteKind,
        key: str,
        *,
        ts_sent_ns: int,
        request: VenueTransferRequest | None = None,
    ) -> JournalEntry:
        """Hold ``key`` for a write about to leave; refuse a key already held."""
        self.check_free(kind, key)
        entry = JournalEntry(kind, key, ts_sent_ns, request)
        self._entries[(kind, key)] = entry
        return entry

    def adopt(
        self,
        kind: WriteKind,
        key: str,
        *,
        ts_sent_ns: int,
        request: VenueTransferRequest | None = None,
    ) -> JournalEntry:
        """Hold ``key`` for a write another process (or an earlier run) sent: a lookup after a
        restart. The key stays held until a lookup proves the outcome."""
        entry = self._entries.get((kind, key))
        if entry is None:
            entry = JournalEntry(kind, key, ts_sent_ns, request, sent_here=False)
            self._entries[(kind, key)] = entry
        return entry

    def release(self, kind: WriteKind, key: str) -> None:
        """Free a key whose write the venue refused before processing (nothing applied)."""
        self._entries.pop((kind, key), None)

    def claimed_ids(self, kind: WriteKind, exclude_key: str) -> frozenset[str]:
        """Venue ids this process has recorded against keys other than ``exclude_key``."""
        return frozenset(
            e.venue_id
            for (k, key), e in self._entries.items()
            if k is kind and key != exclude_key and e.venue_id is not None
        )

    def unresolved_twins(self, request: VenueTransferRequest) -> dict[str, int]:
        """Other transfer keys this process sent for the same movement, with no outcome yet →
        their send time. (Keys adopted for a lookup are the store's to report: it knows their
        state, this journal does not.)"""
        out = {}
        for (kind, key), e in self._entries.items():
            r = e.request
            if kind is not WriteKind.TRANSFER or key == request.key or r is None:
                continue
            if not e.sent_here:
                continue
            if e.venue_id is not None or e.not_applied:
                continue
            if e.last_lookup in (VenueTransferStatus.NOT_FOUND, VenueTransferStatus.FAILED):
                continue
            if (r.asset, r.amount, r.from_wallet, r.to_wallet) == (
                request.asset,
                request.amount,
                request.from_wallet,
                request.to_wallet,
            ):
                out[key] = e.ts_sent_ns
        return out

    def forget(self, kind: WriteKind, key: str, *, now_ns: int) -> None:
        """Free ``key`` for a resend, if what is known proves its write was not applied.

        Raises
        ------
        LookupWindowOpen
            No lookup has said ``not_found`` (or ``failed``) yet; ``retry_after_s`` is the
            time left in the window (0 if it has closed: look it up now).
        DuplicateIdempotencyKey
            The venue has the write (a lookup found it, or it answered): never resend.
        """
        entry = self._entries.get((kind, key))
        if entry is None:
            return
        proven_absent = entry.not_applied or entry.last_lookup in (
            VenueTransferStatus.NOT_FOUND,
            VenueTransferStatus.FAILED,
        )
        if proven_absent:
            del self._entries[(kind, key)]
            return
        if entry.venue_id is not None or entry.last_lookup in (
            VenueTransferStatus.PENDING,
            VenueTransferStatus.CONFIRMED,
            VenueTransferStatus.AMBIGUOUS,
        ):
            raise DuplicateIdempotencyKey(
                f"the venue has (or may have) this {kind.value}: record it, never resend",
                key=key,
                venue=self._venue,
                last_lookup=entry.last_lookup,
            )
        closes = window_closes_ns(entry.ts_sent_ns, self.window_s)
        raise LookupWindowOpen(
            f"no lookup has proven this {kind.value} absent; look it up again once the "
            "window has closed, never resend before",
            retry_after_s=max(0.0, (closes - now_ns) / 1e9),
            key=key,
            venue=self._venue,
            last_lookup=entry.last_lookup,
        )
