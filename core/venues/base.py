"""The venue interface: the ``Venue`` protocol and the transfer template method.

Every venue, live or simulated, is a :class:`~core.venues.ccxt_venue.CcxtVenue` (STYLE rule 2);
this module holds what callers see: the :class:`Venue` protocol and :class:`BaseVenue`, whose
:meth:`BaseVenue.transfer` is the template (STYLE rule 4): argument validation, wallet mapping,
precision, the idempotency journal, timing, error translation and the receipt. Backends
implement only ``_send_transfer``, ``_transfer_history`` and ``_venue_step``. The report types
live in :mod:`core.venues.reports` and are re-exported here.

The executor's order of calls for one transfer (DESIGN §7):

1. ``warm_up()`` once at start (markets, currencies, clock offset, precision check);
2. ``prepare_amount(asset, amount)``: the amount the venue will book, written into the intent;
3. ``transfer(..., ts_deadline_ns=...)``: sent once; ``OutcomeUnknown`` / ``ClockSkewRejected``
   keep the key held;
4. ``lookup_transfer(key, request, claims=StoreTransferClaims(session))``: claims from the store,
   ``not_found_yet`` until the window closes;
5. ``forget_transfer(key)`` only after ``not_found``, then resend under the same key.

Idempotency, honestly: Binance's universal transfer (POST /sapi/v1/asset/transfer) takes no
client id; see :mod:`core.venues.lookup` for how history matching avoids adopting another key's
transfer.
"""

from __future__ import annotations

import abc
from collections.abc import Collection, Mapping
from datetime import datetime
from decimal import ROUND_DOWN, Decimal
from typing import Literal, Protocol, runtime_checkable

from core.clock import Clock, ns_to_datetime
from core.domain import Asset, Balance, MarkPrice, WalletKind, to_decimal
from core.errors import DataError, OutcomeUnknown, VenueError
from core.params import Bracket
from core.venues.errors import ClockSkewRejected, DuplicateIdempotencyKey
from core.venues.journal import WriteJournal, WriteKind
from core.venues.lookup import (
    HISTORY_SKEW_S,
    TransferClaims,
    UnresolvedTransfer,
    judge_transfer_history,
    match_transfer_history,
    window_closes_ns,
)
from core.venues.reports import (
    ConvertQuote,
    ConvertResult,
    DepositReport,
    IndexPriceReport,
    MarginOrderResult,
    OptionMarkReport,
    PositionReport,
    TransferHistoryRow,
    TransferReceipt,
    TransferStatusReport,
    VenueCapabilities,
    VenueTransferRequest,
    VenueTransferStatus,
    WarmUpReport,
    WithdrawalReceipt,
    WriteLookup,
)
from core.venues.wallets import binance_transfer_type

__all__ = [
    "BaseVenue",
    "ConvertQuote",
    "ConvertResult",
    "DepositReport",
    "DuplicateIdempotencyKey",
    "IndexPriceReport",
    "MarginOrderResult",
    "OptionMarkReport",
    "PositionReport",
    "TransferClaims",
    "TransferHistoryRow",
    "TransferReceipt",
    "TransferStatusReport",
    "UnresolvedTransfer",
    "Venue",
    "VenueCapabilities",
    "VenueTransferRequest",
    "VenueTransferStatus",
    "WarmUpReport",
    "WithdrawalReceipt",
    "WriteLookup",
    "floor_to_step",
    "match_transfer_history",
    "round_to_steps",
]


@runtime_checkable
class Venue(Protocol):
    """Everything pmr asks of a venue. Amounts are ``Decimal``; wallets are ``WalletKind``.

    Every call that spends rate-limit weight takes ``ts_deadline_ns`` (ns on the venue's
    injected clock): if the budget has no room before then, ``RateBudgetExhausted`` is raised
    before anything is sent. Writes take it as a required keyword (``None`` says, explicitly,
    "wait as long as the window needs"); reads default to ``None``.
    """

    name: str

    @property
    def capabilities(self) -> VenueCapabilities: ...

    def warm_up(self, *, ts_deadline_ns: int | None = None) -> WarmUpReport: ...

    def venue_now_ns(self) -> int: ...

    def prepare_amount(
        self, asset: Asset, amount: object, *, network: str | None = None
    ) -> Decimal: ...

    def balances(
        self, wallet: WalletKind, *, ts_deadline_ns: int | None = None
    ) -> tuple[Balance, ...]: ...

    def positions(
        self, wallet: WalletKind, *, ts_deadline_ns: int | None = None
    ) -> tuple[PositionReport, ...]: ...

    def mark_prices(
        self,
        wallet: WalletKind,
        *,
        max_age_s: float | None = None,
        ts_deadline_ns: int | None = None,
    ) -> tuple[MarkPrice, ...]: ...

    def option_marks(
        self,
        symbols: Collection[str] | None = None,
        *,
        max_age_s: float | None = None,
        ts_deadline_ns: int | None = None,
    ) -> tuple[OptionMarkReport, ...]: ...

    def price_index(
        self,
        base: Asset,
        quote: Asset,
        *,
        max_age_s: float | None = None,
        ts_deadline_ns: int | None = None,
    ) -> IndexPriceReport: ...

    def funding_rates(
        self, wallet: WalletKind, *, ts_deadline_ns: int | None = None
    ) -> dict[str, Decimal]: ...

    def leverage_brackets(
        self, wallet: WalletKind, *, ts_deadline_ns: int | None = None
    ) -> Mapping[str, tuple[Bracket, ...]]: ...

    def transfer(
        self,
        asset: Asset,
        amount: Decimal,
        from_wallet: WalletKind,
        to_wallet: WalletKind,
        idempotency_key: str,
        *,
        ts_deadline_ns: int | None,
    ) -> TransferReceipt: ...

    def lookup_transfer(
        self,
        key: str,
        request: VenueTransferRequest | None = None,
        *,
        claims: TransferClaims,
        ts_deadline_ns: int | None = None,
    ) -> TransferStatusReport: ...

    def forget_transfer(self, key: str) -> None: ...

    def transfer_history(
        self,
        asset: Asset,
        from_wallet: WalletKind,
        to_wallet: WalletKind,
        *,
        start_ns: int,
        end_ns: int,
        ts_deadline_ns: int | None = None,
    ) -> tuple[TransferHistoryRow, ...]: ...

    def convert_quote(
        self,
        from_asset: Asset,
        to_asset: Asset,
        from_amount: Decimal,
        wallet: WalletKind = WalletKind.SPOT,
        *,
        ts_deadline_ns: int | None = None,
    ) -> ConvertQuote: ...

    def accept_quote(self, quote: ConvertQuote, *, ts_deadline_ns: int | None) -> ConvertResult: ...

    def lookup_convert(
        self, quote: ConvertQuote, *, ts_deadline_ns: int | None = None
    ) -> WriteLookup[ConvertResult]: ...

    def forget_convert(self, quote_id: str) -> None: ...

    def margin_order(
        self,
        from_asset: Asset,
        to_asset: Asset,
        from_amount: Decimal,
        idempotency_key: str,
        *,
        ts_deadline_ns: int | None,
    ) -> MarginOrderResult: ...

    def lookup_margin_order(
        self,
        key: str,
        from_asset: Asset,
        to_asset: Asset,
        *,
        ts_sent_ns: int | None = None,
        ts_deadline_ns: int | None = None,
    ) -> WriteLookup[MarginOrderResult]: ...

    def forget_margin_order(self, key: str) -> None: ...

    def deposit_address(
        self, asset: Asset, network: str, *, ts_deadline_ns: int | None = None
    ) -> str: ...

    def withdraw(
        self,
        asset: Asset,
        amount: Decimal,
        address: str,
        network: str,
        idempotency_key: str,
        *,
        ts_deadline_ns: int | None,
    ) -> WithdrawalReceipt: ...

    def lookup_withdrawal(
        self,
        key: str,
        asset: Asset,
        *,
        ts_sent_ns: int | None = None,
        ts_deadline_ns: int | None = None,
    ) -> WriteLookup[WithdrawalReceipt]: ...

    def forget_withdrawal(self, key: str) -> None: ...

    def deposits(
        self, asset: Asset, since: datetime, *, ts_deadline_ns: int | None = None
    ) -> tuple[DepositReport, ...]: ...


def floor_to_step(value: Decimal, step: Decimal) -> Decimal:
    """Round ``value`` down to a multiple of ``step`` (Binance steps need not be powers of ten).

    >>> floor_to_step(Decimal("1.2399"), Decimal("0.01")), floor_to_step(Decimal("7"), Decimal("2"))
    (Decimal('1.23'), Decimal('6'))
    """
    return (value / step).to_integral_value(rounding=ROUND_DOWN) * step


def round_to_steps(value: Decimal, desk_decimals: int, venue_step: Decimal) -> Decimal:
    """The largest amount ≤ ``value`` with at most ``desk_decimals`` decimals that is a multiple
    of ``venue_step``, when the step has no more decimals than the desk (checked at warm-up).

    >>> round_to_steps(Decimal("7.3456"), 2, Decimal("0.5")), round_to_steps(Decimal("1.999"), 8, Decimal("0.01"))
    (Decimal('7.00'), Decimal('1.99000000'))
    """
    desk_step = Decimal(1).scaleb(-desk_decimals)
    return floor_to_step(floor_to_step(value, desk_step), venue_step).quantize(desk_step)


class BaseVenue(abc.ABC):
    """Template for venue operations (nautilus ``LiveExecutionClient.submit_order`` pattern).

    Parameters
    ----------
    name
        The venue's name in the desk config.
    clock
        Injected time (``ManualClock`` in tests and in the simulator).
    asset_decimals
        The desk's transfer precision per asset code; amounts with more decimals are rounded
        down (and reported on the receipt) or refused, per ``excess_decimals``. The venue's own
        precision (``_venue_step``) rounds as well; a desk finer than the venue is refused at
        ``warm_up``.
    excess_decimals
        ``"round_down"`` (default) or ``"refuse"``.
    lookup_window_s
        How long after a send the venue may still book an unanswered write: until then a lookup
        that finds nothing says ``not_found_yet``. Default 120 s: Binance starts processing a
        signed request at most ``recvWindow`` (ccxt: 10 s, Binance maximum 60 s) after its
        timestamp ("Timing security"), plus a margin for the history to show it.
    """

    def __init__(
        self,
        name: str,
        clock: Clock,
        *,
        asset_decimals: Mapping[str, int],
        excess_decimals: Literal["round_down", "refuse"] = "round_down",
        lookup_window_s: float = 120.0,
    ) -> None:
        self.name = name
        self._clock = clock
        self._asset_decimals = dict(asset_decimals)
        self._excess_decimals = excess_decimals
        self._lookup_window_s = lookup_window_s
        self.journal = WriteJournal(name, window_s=lookup_window_s)

    # -- backend hooks ------------------------------------------------------------------------
    def _venue_offset_ns(self) -> int:
        """Desk clock minus venue clock as last measured (0 until a backend measures it)."""
        return 0

    def venue_now_ns(self) -> int:
        """Now on the venue's clock, as best known: the desk's clock less the measured offset.

        Every time the venue template stamps (a transfer's send time, a lookup's window) is on
        the venue's clock, so matching the venue's own history works whatever the desk's skew.
        """
        return self._clock.timestamp_ns() - self._venue_offset_ns()

    @abc.abstractmethod
    def _venue_step(self, asset: Asset, network: str | None) -> Decimal:
        """The venue's own amount step for ``asset`` (on ``network`` for a withdrawal).

        Must raise ``VenueNotReady`` before ``warm_up`` and ``DataError`` for an asset the
        venue does not list.
        """

    @abc.abstractmethod
    def _send_transfer(
        self, request: VenueTransferRequest, ts_deadline_ns: int | None
    ) -> tuple[str, VenueTransferStatus]:
        """Send one transfer exactly once; return the venue's id and its status.

        Must raise pmr venue errors (``OutcomeUnknown`` when no readable answer came) and never
        retry.
        """

    @abc.abstractmethod
    def _transfer_history(
        self,
        request: VenueTransferRequest,
        start_ns: int,
        end_ns: int,
        ts_deadline_ns: int | None,
    ) -> tuple[TransferHistoryRow, ...]:
        """Return the venue's transfer rows of ``request``'s type and asset in the window."""

    # -- template -----------------------------------------------------------------------------
    def prepare_amount(
        self, asset: Asset, amount: object, *, network: str | None = None
    ) -> Decimal:
        """Return the amount the venue will book for ``amount`` of ``asset``: pure, no request.

        The executor calls it *before* writing the intent, so the amount booked is the amount
        sent. Rounds down (never up) to the desk's ``decimals`` and then to the venue's own step
        (``network``'s for a withdrawal), or refuses excess decimals under
        ``excess_decimals="refuse"``.

        Raises
        ------
        DataError
            Not a positive amount, an asset without declared precision or not listed by the
            venue, excess decimals under ``"refuse"``, or an amount that rounds to zero.
        VenueNotReady
            ``warm_up`` has not run (the venue's precision is unknown).
        """
        value = to_decimal(amount, "amount", where=f"venue {self.name}")
        if value <= 0:
            raise DataError("amount must be > 0", field="amount", value=value, venue=self.name)
        decimals = self._asset_decimals.get(asset.code)
        if decimals is None:
            raise DataError(
                "asset has no declared transfer precision on this venue",
                asset=asset.code,
                venue=self.name,
            )
        venue_step = self._venue_step(asset, network)
        rounded = round_to_steps(value, decimals, venue_step)
        if rounded != value and self._excess_decimals == "refuse":
            raise DataError(
                f"amount has more than {decimals} decimals or is not a multiple of the venue's "
                f"step {venue_step}",
                field="amount",
                value=value,
                asset=asset.code,
                venue=self.name,
            )
        if rounded <= 0:
            raise DataError(
                f"amount rounds down to zero at {decimals} decimals (venue step {venue_step})",
                field="amount",
                value=value,
                asset=asset.code,
                venue=self.name,
            )
        return rounded

    def transfer(
        self,
        asset: Asset,
        amount: Decimal,
        from_wallet: WalletKind,
        to_wallet: WalletKind,
        idempotency_key: str,
        *,
        ts_deadline_ns: int | None,
    ) -> TransferReceipt:
        """Move ``amount`` of ``asset`` between two wallets of this venue, exactly once.

        Validation and wallet mapping happen before any request; an unknown wallet pair raises
        ``TransferNotAllowed``; a key already held raises ``DuplicateIdempotencyKey``;
        ``RateBudgetExhausted`` means the weight budget had no room before ``ts_deadline_ns``
        and nothing was sent. ``OutcomeUnknown`` (no readable answer) and ``ClockSkewRejected``
        (Binance -1021: refused, not applied, clock already re-synced) both mean: call
        :meth:`lookup_transfer` before anything else; the key stays held until then.

        Examples
        --------
        >>> venue.transfer(Asset("USDT"), Decimal("1000"), WalletKind.SPOT, WalletKind.UM,
        ...                "call-7/step-1", ts_deadline_ns=None)  # doctest: +SKIP
        """
        if not isinstance(idempotency_key, str) or not 0 < len(idempotency_key) <= 128:
            raise DataError("idempotency key must be a 1-128 character string", venue=self.name)
        src = WalletKind.parse(str(from_wallet), where=f"transfer on {self.name}")
        dst = WalletKind.parse(str(to_wallet), where=f"transfer on {self.name}")
        venue_type = binance_transfer_type(src, dst)
        sent = self.prepare_amount(asset, amount)
        requested = to_decimal(amount, "amount")
        t0 = self.venue_now_ns()
        request = VenueTransferRequest(idempotency_key, asset, sent, src, dst, t0, venue_type)
        entry = self.journal.hold(
            WriteKind.TRANSFER, idempotency_key, ts_sent_ns=t0, request=request
        )
        try:
            venue_id, status = self._send_transfer(request, ts_deadline_ns)
        except ClockSkewRejected:
            entry.not_applied = True  # refused before processing; freed by forget_transfer
            raise
        except OutcomeUnknown:
            raise  # the key stays held: look it up first
        except VenueError:
            self.journal.release(WriteKind.TRANSFER, idempotency_key)  # refused: key free
            raise
        entry.venue_id = venue_id
        t1 = self.venue_now_ns()
        return TransferReceipt(
            venue=self.name,
            key=idempotency_key,
            venue_transfer_id=venue_id,
            asset=asset,
            amount=sent,
            amount_requested=requested,
            from_wallet=src,
            to_wallet=dst,
            venue_type=venue_type,
            status=status,
            sent_at=ns_to_datetime(t0),
            round_trip_ms=(t1 - t0) / 1e6,
        )

    def lookup_transfer(
        self,
        key: str,
        request: VenueTransferRequest | None = None,
        *,
        claims: TransferClaims,
        ts_deadline_ns: int | None = None,
    ) -> TransferStatusReport:
        """Find out what happened to the transfer sent under ``key``.

        Parameters
        ----------
        key
            The idempotency key.
        request
            What was sent, from the executor's intent row; required when this process did not
            send it (after a restart, or from another worker). ``ts_sent_ns`` on the venue's
            clock: the row's send time less :meth:`venue_now_ns`'s offset.
        claims
            The store's view of other keys' transfers (``core.ledger.claims``): a history row
            already recorded against another key is never adopted, and another unresolved key
            for the same movement makes a match ``ambiguous``.
        ts_deadline_ns
            Rate-budget deadline for the history requests.

        Returns
        -------
        TransferStatusReport
            By id when the venue answered the send; else from history: the matched row's status,
            ``not_found_yet`` (window open: look again later, never resend), ``not_found``
            (window closed: not applied), or ``ambiguous``.
        """
        entry = self.journal.get(WriteKind.TRANSFER, key)
        if entry is None:
            if request is None:
                raise DataError(
                    "this process has no record of the key: pass the intent as `request`",
                    key=key,
                    venue=self.name,
                )
            if request.key != key:
                raise DataError("request is for another key", key=key, request_key=request.key)
            entry = self.journal.adopt(
                WriteKind.TRANSFER, key, ts_sent_ns=request.ts_sent_ns, request=request
            )
        req = entry.request
        if req is None:  # pragma: no cover - transfer entries always carry their request
            raise DataError("journal entry without request", key=key, venue=self.name)
        closes_ns = window_closes_ns(req.ts_sent_ns, self._lookup_window_s)
        start = req.ts_sent_ns - round(HISTORY_SKEW_S * 1e9)
        end = max(self.venue_now_ns(), closes_ns)
        rows = self._transfer_history(req, start, end, ts_deadline_ns)
        if entry.venue_id is not None:
            for r in rows:
                if r.venue_transfer_id == entry.venue_id:
                    entry.last_lookup = r.status
                    return TransferStatusReport(
                        self.name, key, r.status, "id", r.venue_transfer_id, ns_to_datetime(r.ts_ns)
                    )
            entry.last_lookup = VenueTransferStatus.PENDING
            return TransferStatusReport(
                self.name, key, VenueTransferStatus.PENDING, "id", entry.venue_id
            )
        ids = [r.venue_transfer_id for r in rows]
        claimed = claims.claimed(self.name, key, ids) | (
            self.journal.claimed_ids(WriteKind.TRANSFER, key) & frozenset(ids)
        )
        offset = self._venue_offset_ns()
        rivals = self.journal.unresolved_twins(req)
        for u in claims.unresolved(self.name, req):
            if u.key != key:
                rivals.setdefault(u.key, round(u.sent_at.timestamp() * 1e9) - offset)
        verdict = judge_transfer_history(
            req,
            rows,
            claimed_ids=claimed,
            rivals_sent_ns=rivals,
            now_ns=self.venue_now_ns(),
            window_s=self._lookup_window_s,
        )
        entry.last_lookup = verdict.status
        if verdict.row is not None:
            entry.venue_id = verdict.row.venue_transfer_id
            return TransferStatusReport(
                self.name,
                key,
                verdict.status,
                "history",
                verdict.row.venue_transfer_id,
                ns_to_datetime(verdict.row.ts_ns),
                candidates=verdict.candidates,
            )
        return TransferStatusReport(
            self.name,
            key,
            verdict.status,
            "history" if verdict.candidates else "none",
            candidates=verdict.candidates,
            rivals=verdict.rivals,
            window_closes_at=ns_to_datetime(closes_ns),
        )

    def transfer_history(
        self,
        asset: Asset,
        from_wallet: WalletKind,
        to_wallet: WalletKind,
        *,
        start_ns: int,
        end_ns: int,
        ts_deadline_ns: int | None = None,
    ) -> tuple[TransferHistoryRow, ...]:
        """The venue's transfers of ``asset`` from ``from_wallet`` to ``to_wallet`` booked in
        ``[start_ns, end_ns]`` (venue time): what reconciliation matches an unexplained
        difference against. Raises ``TransferNotAllowed`` for a pair the venue cannot move."""
        src = WalletKind.parse(str(from_wallet), where=f"transfer history on {self.name}")
        dst = WalletKind.parse(str(to_wallet), where=f"transfer history on {self.name}")
        venue_type = binance_transfer_type(src, dst)
        probe = VenueTransferRequest("history", asset, Decimal(0), src, dst, start_ns, venue_type)
        return self._transfer_history(probe, start_ns, end_ns, ts_deadline_ns)

    def forget_transfer(self, key: str) -> None:
        """Free a key whose write was proven not applied, so it may be resent.

        Allowed after a ``ClockSkewRejected`` (refused before processing) at once, and after a
        lookup that said ``not_found`` (the window closed) or ``failed``. Otherwise raises
        ``LookupWindowOpen`` (look again after ``retry_after_s``) or
        ``DuplicateIdempotencyKey`` (the venue has it).
        """
        self.journal.forget(WriteKind.TRANSFER, key, now_ns=self.venue_now_ns())
