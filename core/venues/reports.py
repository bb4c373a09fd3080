"""What venues report: the venue's word on every write, receipts, lookups and reads.

Frozen value types only (STYLE rule 6); :mod:`core.venues.base` holds the ``Venue`` protocol and
the template that produces them. One name per concept across the code base: the venue's
:class:`VenueTransferStatus` (what the venue's records say about one write) is not the ledger's
state of a movement; ``core.execution`` maps the one onto the other, once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Generic, Literal, TypeVar

from core.domain import Asset, MarkPrice, PositionSide, WalletKind

__all__ = [
    "ConvertQuote",
    "ConvertResult",
    "DepositReport",
    "IndexPriceReport",
    "MarginOrderResult",
    "OptionMarkReport",
    "PositionReport",
    "TransferHistoryRow",
    "TransferReceipt",
    "TransferStatusReport",
    "VenueCapabilities",
    "VenueTransferRequest",
    "VenueTransferStatus",
    "WarmUpReport",
    "WithdrawalReceipt",
    "WriteLookup",
]

T = TypeVar("T")


class VenueTransferStatus(StrEnum):
    """Where one write (transfer, conversion, withdrawal, margin order) stands, as far as the
    venue's records tell.

    Only ``NOT_FOUND`` proves absence, and only once the lookup window after the send has
    closed: until then a request that timed out may still be booked, and the lookup says
    ``NOT_FOUND_YET``.
    """

    PENDING = "pending"  # accepted, not yet credited / settled
    CONFIRMED = "confirmed"  # done: credited, converted, filled, withdrawn
    FAILED = "failed"  # the venue reports it failed (funds stay at origin)
    NOT_FOUND_YET = "not_found_yet"  # no record yet, window still open: look again, never resend
    NOT_FOUND = "not_found"  # no record and the window has closed: not applied (safe to resend)
    AMBIGUOUS = "ambiguous"  # several unclaimed records match, or another key may own it


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
    """The answer to "what happened to the transfer with this key?".

    ``window_closes_at`` (venue clock) is when a ``not_found_yet`` becomes conclusive;
    ``candidates`` are the unclaimed history rows that could be this transfer and ``rivals`` the
    other unresolved keys whose send windows cover them (an ``ambiguous`` report names both).
    """

    venue: str
    key: str
    status: VenueTransferStatus
    matched_by: Literal["id", "history", "none"]
    venue_transfer_id: str | None = None
    at: datetime | None = None
    candidates: tuple[str, ...] = ()
    rivals: tuple[str, ...] = ()
    window_closes_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class PositionReport:
    """A futures or options position as the venue reports it; ``qty`` in contracts, signed.

    ``side`` is the hedge-mode leg (``long``/``short``) or ``both`` in one-way mode; options
    have no legs (``both``: Binance's ``side`` LONG / SHORT is the sign of ``qty``).
    ``margin_asset`` is what PnL is booked in (an option's quote asset, USDT on Binance).
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
class OptionMarkReport:
    """An option's mark as the venue reports it (Binance ``/eapi/v1/mark``), with its index.

    ``mark`` is in the quote asset per coin of underlying; ``index`` is the underlying's spot
    index (``/eapi/v1/index``) and ``at`` that index's time on the venue's clock (the mark
    itself carries no time; Binance computes it from that index). IVs are annualised
    fractions; ``bid_iv`` / ``ask_iv`` are ``None`` when the book has no such side (Binance
    sends −1). Greeks as the venue computes them.
    """

    venue: str
    symbol: str
    mark: Decimal
    index: Decimal
    mark_iv: Decimal
    bid_iv: Decimal | None
    ask_iv: Decimal | None
    delta: Decimal
    gamma: Decimal
    theta: Decimal
    vega: Decimal
    at: datetime

    def to_mark_price(self) -> MarkPrice:
        """The domain mark margin needs: mark, index (the forward) and mark IV, stamped ``at``."""
        return MarkPrice(self.symbol, self.mark, self.at, self.index, self.mark_iv)


@dataclass(frozen=True, slots=True)
class IndexPriceReport:
    """The venue's price index of ``base`` in ``quote`` (Binance ``/sapi/v1/margin/priceIndex``:
    what it values margin collateral at), with its calculation time on the venue's clock."""

    venue: str
    base: Asset
    quote: Asset
    price: Decimal
    at: datetime


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


@dataclass(frozen=True, slots=True)
class WriteLookup(Generic[T]):
    """The answer to "what happened to the write sent under this key?" for conversions,
    withdrawals and margin orders, which the venue can find by our key (``quoteId``,
    ``withdrawOrderId``, ``newClientOrderId``).

    ``found`` is the venue's record when there is one; ``status`` says what it means
    (``not_found_yet`` until ``window_closes_at``, venue clock, then ``not_found``).
    """

    venue: str
    key: str
    status: VenueTransferStatus
    found: T | None = None
    window_closes_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class WarmUpReport:
    """What ``warm_up()`` loaded: markets, the clock offset, and the venue's transfer precision.

    ``venue_decimals`` holds, per desk asset the venue lists, the decimals of its transfer step
    (Binance ``capital/config/getall`` ``withdrawIntegerMultiple`` of the default network);
    ``unlisted`` the desk assets the venue does not list (never moved on this venue).
    """

    venue: str
    markets: int
    time_difference_ms: int
    venue_decimals: Mapping[str, int]
    unlisted: tuple[str, ...] = ()
