"""The venue interface: domain-typed reports and the transfer template method.

Every venue, live or simulated, is a :class:`CcxtVenue` (STYLE rule 2); this module holds what
callers see: the :class:`Venue` protocol, frozen report types, capability records, and
:class:`BaseVenue`, whose :meth:`BaseVenue.transfer` is the template (STYLE rule 4): argument
validation, wallet mapping, decimal rounding, the local idempotency journal, timing, error
translation and the receipt. Backends implement only ``_send_transfer`` and
``_transfer_history``.

Idempotency, honestly: Binance's universal transfer (POST /sapi/v1/asset/transfer) takes no
client id. ``lookup_transfer(key)`` therefore works from (1) a local record key → ``tranId``
written as soon as the venue answers, and (2) when no answer came (timeout), matching the
venue's transfer history on asset, exact amount, transfer type and a time window around the
send, skipping rows already claimed by other keys. Two identical unanswered transfers inside one
window cannot be told apart: that is reported as ``AMBIGUOUS``, never guessed. The local record
lives in memory; the executor's intent rows are the durable copy and can be passed back as a
:class:`VenueTransferRequest` hint after a restart.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_DOWN, Decimal
from enum import StrEnum
from typing import Literal, Protocol, runtime_checkable

from core.clock import Clock, ns_to_datetime
from core.domain import Asset, Balance, MarkPrice, PositionSide, WalletKind, to_decimal
from core.errors import DataError, OutcomeUnknown, VenueError, VenueRejected
from core.margin.params import Bracket
from core.venues.errors import ClockSkewRejected
from core.venues.wallets import binance_transfer_type

__all__ = [
    "BaseVenue",
    "ConvertQuote",
    "ConvertResult",
    "DepositReport",
    "DuplicateIdempotencyKey",
    "MarginOrderResult",
    "PositionReport",
    "TransferHistoryRow",
    "TransferReceipt",
    "TransferStatusReport",
    "Venue",
    "VenueCapabilities",
    "VenueTransferRequest",
    "VenueTransferStatus",
    "WithdrawalReceipt",
    "match_transfer_history",
]


class DuplicateIdempotencyKey(VenueRejected):
    """A transfer with this idempotency key was already sent: look it up, never resend."""


class VenueTransferStatus(StrEnum):
    """Where a transfer stands, as far as the venue's records tell."""

    PENDING = "pending"  # accepted, not yet credited
    CONFIRMED = "confirmed"  # credited to the destination wallet
    FAILED = "failed"  # the venue reports it failed (funds stay at origin)
    NOT_FOUND = "not_found"  # no matching record: it was not applied (safe to resend)
    AMBIGUOUS = "ambiguous"  # several unclaimed records match: a human decides


@dataclass(frozen=True, slots=True)
class VenueTransferRequest:
    """What was (or is about to be) sent under one idempotency key.

    ``ts_sent_ns`` is when the request left, on the venue's clock as the adapter knew it (the
    desk's clock less the measured offset, the same time ccxt signed with); history matching
    searches around it.
    """

    key: str
    asset: Asset
    amount: Decimal
    from_wallet: WalletKind
    to_wallet: WalletKind
    ts_sent_ns: int
    venue_type: str  # the Binance transfer type, e.g. MAIN_UMFUTURE


@dataclass(frozen=True, slots=True)
class TransferReceipt:
    """The venue accepted a transfer. ``amount`` is what was sent (after rounding down)."""

    venue: str
    key: str
    venue_transfer_id: str
    asset: Asset
    amount: Decimal
    amount_requested: Decimal
    from_wallet: WalletKind
    to_wallet: WalletKind
    venue_type: str
    status: VenueTransferStatus
    sent_at: datetime
    round_trip_ms: float

    @property
    def rounded(self) -> bool:
        """True if the requested amount had more decimals than the asset allows."""
        return self.amount != self.amount_requested


@dataclass(frozen=True, slots=True)
class TransferHistoryRow:
    """One row of a venue's transfer history (GET /sapi/v1/asset/transfer ``rows``)."""

    venue_transfer_id: str
    asset: Asset
    amount: Decimal
    from_wallet: WalletKind
    to_wallet: WalletKind
    ts_ns: int
    status: VenueTransferStatus


@dataclass(frozen=True, slots=True)
class TransferStatusReport:
    """The answer to "what happened to the transfer with this key?"."""

    venue: str
    key: str
    status: VenueTransferStatus
    matched_by: Literal["id", "history", "none"]
    venue_transfer_id: str | None = None
    at: datetime | None = None
    candidates: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PositionReport:
    """A futures position as the venue reports it; ``qty`` in contracts, signed.

    ``side`` is the hedge-mode leg (``long``/``short``) or ``both`` in one-way mode.
    """

    venue: str
    wallet: WalletKind
    symbol: str
    qty: Decimal
    entry_price: Decimal
    mark_price: Decimal
    unrealized_pnl: Decimal
    margin_asset: Asset
    side: PositionSide = PositionSide.BOTH


@dataclass(frozen=True, slots=True)
class ConvertQuote:
    """A Binance Convert quote: ``to_amount`` for ``from_amount`` until ``valid_until``."""

    venue: str
    quote_id: str
    from_asset: Asset
    to_asset: Asset
    from_amount: Decimal
    to_amount: Decimal
    ratio: Decimal
    valid_until: datetime


@dataclass(frozen=True, slots=True)
class ConvertResult:
    """An accepted conversion."""

    venue: str
    order_id: str
    quote_id: str
    status: str
    from_asset: Asset
    to_asset: Asset
    from_amount: Decimal
    to_amount: Decimal


@dataclass(frozen=True, slots=True)
class MarginOrderResult:
    """A MARKET order on the cross-margin book, as the venue reports it.

    It converts ``from_amount`` of ``from_asset`` into ``to_amount`` of ``to_asset`` inside the
    margin wallet (a SELL of the base asset, or a BUY spending the quote asset). ``key`` is our
    idempotency key, sent as Binance's ``newClientOrderId``.
    """

    venue: str
    key: str
    order_id: str
    symbol: str
    side: Literal["BUY", "SELL"]
    status: str  # Binance order status: FILLED, PARTIALLY_FILLED, EXPIRED ...
    from_asset: Asset
    to_asset: Asset
    from_amount: Decimal
    to_amount: Decimal
    at: datetime


@dataclass(frozen=True, slots=True)
class WithdrawalReceipt:
    """A withdrawal the venue accepted (it is credited on the far side later)."""

    venue: str
    key: str
    withdrawal_id: str
    asset: Asset
    amount: Decimal
    address: str
    network: str
    sent_at: datetime


@dataclass(frozen=True, slots=True)
class DepositReport:
    """A deposit seen by the receiving venue; ``credited`` once it is spendable."""

    venue: str
    deposit_id: str
    asset: Asset
    amount: Decimal
    tx_id: str
    credited: bool
    at: datetime


@dataclass(frozen=True, slots=True)
class VenueCapabilities:
    """What a venue supports, declared as data (STYLE rule 5).

    ``conversion_wallets`` and ``route_kinds`` come from the exchange's record in
    :mod:`core.venues.capabilities`, the same data the desk check reads.
    """

    exchange: str
    transfer_types: frozenset[str]
    wallets: frozenset[WalletKind]
    required_ccxt_has: tuple[str, ...]
    weight_limits_per_min: Mapping[str, int]
    asset_decimals: Mapping[str, int] = field(default_factory=dict)
    conversion_wallets: Mapping[str, frozenset[WalletKind]] = field(default_factory=dict)
    route_kinds: frozenset[str] = frozenset()
    portfolio_margin: bool = False


@runtime_checkable
class Venue(Protocol):
    """Everything pmr asks of a venue. Amounts are ``Decimal``; wallets are ``WalletKind``."""

    name: str

    @property
    def capabilities(self) -> VenueCapabilities: ...

    def balances(self, wallet: WalletKind) -> tuple[Balance, ...]: ...

    def positions(self, wallet: WalletKind) -> tuple[PositionReport, ...]: ...

    def mark_prices(
        self, wallet: WalletKind, *, max_age_s: float | None = None
    ) -> tuple[MarkPrice, ...]: ...

    def funding_rates(self, wallet: WalletKind) -> dict[str, Decimal]: ...

    def leverage_brackets(self, wallet: WalletKind) -> Mapping[str, tuple[Bracket, ...]]: ...

    def transfer(
        self,
        asset: Asset,
        amount: Decimal,
        from_wallet: WalletKind,
        to_wallet: WalletKind,
        idempotency_key: str,
    ) -> TransferReceipt: ...

    def lookup_transfer(
        self, key: str, hint: VenueTransferRequest | None = None
    ) -> TransferStatusReport: ...

    def convert_quote(
        self,
        from_asset: Asset,
        to_asset: Asset,
        from_amount: Decimal,
        wallet: WalletKind = WalletKind.SPOT,
    ) -> ConvertQuote: ...

    def accept_quote(self, quote: ConvertQuote) -> ConvertResult: ...

    def margin_order(
        self, from_asset: Asset, to_asset: Asset, from_amount: Decimal, idempotency_key: str
    ) -> MarginOrderResult: ...

    def lookup_margin_order(
        self, key: str, from_asset: Asset, to_asset: Asset
    ) -> MarginOrderResult | None: ...

    def deposit_address(self, asset: Asset, network: str) -> str: ...

    def withdraw(
        self, asset: Asset, amount: Decimal, address: str, network: str, idempotency_key: str
    ) -> WithdrawalReceipt: ...

    def deposits(self, asset: Asset, since: datetime) -> tuple[DepositReport, ...]: ...


def match_transfer_history(
    intent: VenueTransferRequest,
    rows: tuple[TransferHistoryRow, ...],
    *,
    claimed_ids: frozenset[str],
    window_s: float,
    skew_s: float = 5.0,
) -> tuple[TransferHistoryRow, ...]:
    """Return the history rows that could be ``intent``: same asset, exact amount, same wallets,
    time within ``[sent − skew_s, sent + window_s]``, and not claimed by another key.
    """
    lo = intent.ts_sent_ns - round(skew_s * 1e9)
    hi = intent.ts_sent_ns + round(window_s * 1e9)
    return tuple(
        r
        for r in rows
        if r.asset == intent.asset
        and r.amount == intent.amount
        and r.from_wallet == intent.from_wallet
        and r.to_wallet == intent.to_wallet
        and lo <= r.ts_ns <= hi
        and r.venue_transfer_id not in claimed_ids
    )


@dataclass(slots=True)
class _JournalEntry:
    intent: VenueTransferRequest
    venue_transfer_id: str | None = None


class BaseVenue(abc.ABC):
    """Template for venue operations (nautilus ``LiveExecutionClient.submit_order`` pattern).

    Parameters
    ----------
    name
        The venue's name in the desk config.
    clock
        Injected time (``ManualClock`` in tests and in the simulator).
    asset_decimals
        Transfer precision per asset code; amounts with more decimals are rounded down (and
        reported on the receipt) or refused, per ``excess_decimals``.
    excess_decimals
        ``"round_down"`` (default) or ``"refuse"``.
    lookup_window_s
        How far after the send history matching looks for an unanswered transfer.
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
        self._journal: dict[str, _JournalEntry] = {}

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
    def _send_transfer(self, intent: VenueTransferRequest) -> tuple[str, VenueTransferStatus]:
        """Send one transfer exactly once; return the venue's id and its status.

        Must raise pmr venue errors (``OutcomeUnknown`` when no answer came) and never retry.
        """

    @abc.abstractmethod
    def _transfer_history(
        self, intent: VenueTransferRequest, start_ns: int, end_ns: int
    ) -> tuple[TransferHistoryRow, ...]:
        """Return the venue's transfer rows of ``intent``'s type and asset in the window."""

    # -- template -----------------------------------------------------------------------------
    def prepare_amount(self, asset: Asset, amount: object) -> Decimal:
        """Validate and round ``amount`` to the asset's transfer precision (down, never up)."""
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
        step = Decimal(1).scaleb(-decimals)
        rounded = value.quantize(step, rounding=ROUND_DOWN)
        if rounded != value and self._excess_decimals == "refuse":
            raise DataError(
                f"amount has more than {decimals} decimals",
                field="amount",
                value=value,
                asset=asset.code,
                venue=self.name,
            )
        if rounded <= 0:
            raise DataError(
                f"amount rounds down to zero at {decimals} decimals",
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
    ) -> TransferReceipt:
        """Move ``amount`` of ``asset`` between two wallets of this venue, exactly once.

        Validation and wallet mapping happen before any request; an unknown wallet pair raises
        ``TransferNotAllowed``; a key already used raises ``DuplicateIdempotencyKey``.
        ``OutcomeUnknown`` (no answer) and ``ClockSkewRejected`` (Binance -1021: refused, not
        applied, clock already re-synced) both mean: call :meth:`lookup_transfer` before
        anything else; the key stays held until then, and ``forget_transfer`` frees it after a
        ``not_found``.

        Examples
        --------
        >>> venue.transfer(Asset("USDT"), Decimal("1000"), WalletKind.SPOT, WalletKind.UM,
        ...                "call-7/step-1")  # doctest: +SKIP
        """
        if not isinstance(idempotency_key, str) or not 0 < len(idempotency_key) <= 128:
            raise DataError("idempotency key must be a 1-128 character string", venue=self.name)
        src = WalletKind.parse(str(from_wallet), where=f"transfer on {self.name}")
        dst = WalletKind.parse(str(to_wallet), where=f"transfer on {self.name}")
        venue_type = binance_transfer_type(src, dst)
        sent = self.prepare_amount(asset, amount)
        if idempotency_key in self._journal:
            raise DuplicateIdempotencyKey(
                "a transfer with this key was already sent; look it up instead",
                key=idempotency_key,
                venue=self.name,
            )
        requested = to_decimal(amount, "amount")
        t0 = self.venue_now_ns()
        intent = VenueTransferRequest(idempotency_key, asset, sent, src, dst, t0, venue_type)
        entry = _JournalEntry(intent)
        self._journal[idempotency_key] = entry
        try:
            venue_id, status = self._send_transfer(intent)
        except (OutcomeUnknown, ClockSkewRejected):
            # The journal keeps the intent: a resend under this key is refused until
            # lookup_transfer has looked (a -1021 was not applied, but is never resent blind).
            raise
        except VenueError:
            del self._journal[idempotency_key]  # refused: nothing applied, the key is free
            raise
        entry.venue_transfer_id = venue_id
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
        self, key: str, hint: VenueTransferRequest | None = None
    ) -> TransferStatusReport:
        """Find out what happened to the transfer sent under ``key``.

        Uses the local key → id record when the venue answered, else the venue's history
        around the send time. ``hint`` (from the executor's intent row) stands in for the local
        record after a restart.
        """
        entry = self._journal.get(key)
        if entry is None:
            if hint is None:
                return TransferStatusReport(self.name, key, VenueTransferStatus.NOT_FOUND, "none")
            entry = _JournalEntry(hint)
            self._journal[key] = entry
        intent = entry.intent
        start = intent.ts_sent_ns - 5_000_000_000
        end = max(self.venue_now_ns(), intent.ts_sent_ns + round(self._lookup_window_s * 1e9))
        rows = self._transfer_history(intent, start, end)
        if entry.venue_transfer_id is not None:
            for r in rows:
                if r.venue_transfer_id == entry.venue_transfer_id:
                    return TransferStatusReport(
                        self.name, key, r.status, "id", r.venue_transfer_id, ns_to_datetime(r.ts_ns)
                    )
            return TransferStatusReport(
                self.name, key, VenueTransferStatus.PENDING, "id", entry.venue_transfer_id
            )
        claimed = frozenset(
            e.venue_transfer_id
            for k, e in self._journal.items()
            if k != key and e.venue_transfer_id is not None
        )
        found = match_transfer_history(
            intent, rows, claimed_ids=claimed, window_s=self._lookup_window_s
        )
        match found:
            case ():
                return TransferStatusReport(self.name, key, VenueTransferStatus.NOT_FOUND, "none")
            case (row,):
                entry.venue_transfer_id = row.venue_transfer_id
                return TransferStatusReport(
                    self.name,
                    key,
                    row.status,
                    "history",
                    row.venue_transfer_id,
                    ns_to_datetime(row.ts_ns),
                )
            case _:
                return TransferStatusReport(
                    self.name,
                    key,
                    VenueTransferStatus.AMBIGUOUS,
                    "history",
                    candidates=tuple(r.venue_transfer_id for r in found),
                )

    def forget_transfer(self, key: str) -> None:
        """Drop a key whose lookup said NOT_FOUND, so it may be resent.

        After a timeout, only once the lookup window has passed (a slow venue may still book
        it); after a ``ClockSkewRejected`` at once (the venue refused it before processing).
        """
        self._journal.pop(key, None)
