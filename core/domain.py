"""Frozen value objects for the desk: assets, amounts, wallets, instruments, positions, prices.

Booked amounts are ``Decimal``; a float reaching a constructor is converted through ``str`` so
``0.1`` stays ``0.1``. Every constructor rejects nonsense (NaN, infinities, negative prices or
loans, options without expiry ...) with a ``DataError`` that names the field and the value, so
bad input never travels further than the point where it entered.

Units (DESIGN §3): a position's ``qty`` is in *contracts*, signed (long > 0). One contract is
``contract_size`` units of the underlying for linear instruments and options, and
``contract_size`` USD of face value for inverse instruments (Binance COIN-M: 100 USD for BTC,
10 USD for the others).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from types import MappingProxyType
from typing import TypeVar

from core.errors import DataError, NaNPriceError, StalePriceError, UnknownAssetError

__all__ = [
    "Amount",
    "Asset",
    "Balance",
    "Instrument",
    "InstrumentKind",
    "MarginModelKind",
    "MarkPrice",
    "OptionRight",
    "Pool",
    "Portfolio",
    "Position",
    "PositionSide",
    "Settlement",
    "WalletKind",
    "to_decimal",
]

# Decimal's default context keeps 28 significant digits; capping magnitudes at 1e18 leaves
# room for 8+ decimals, so sums of booked amounts are exact instead of silently rounded.
MAX_ABS_AMOUNT = Decimal(10) ** 18
# Venue timestamps may run slightly ahead of ours; more than this is a wrong clock or field.
CLOCK_SKEW_S = 5.0
_ASSET_RE = re.compile(r"^[A-Z0-9]{2,15}$")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")


def to_decimal(value: object, field_name: str, *, where: str = "") -> Decimal:
    """Convert ``value`` to a finite ``Decimal`` or raise a ``DataError`` naming the field.

    Floats go through ``repr`` so binary noise (``0.1`` → ``0.1000000000000000055``) is not
    booked. Booleans are refused: ``True`` is not an amount.
    """
    ctx: dict[str, object] = {"field": field_name, "value": repr(value)}
    if where:
        ctx["where"] = where
    if isinstance(value, bool):
        raise DataError("a boolean is not a number", **ctx)
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise DataError("number is NaN or infinite", **ctx)
        result = Decimal(repr(value))
    elif isinstance(value, str):
        try:
            result = Decimal(value.strip().replace("_", ""))
        except InvalidOperation:
            raise DataError("not a number", **ctx) from None
    else:
        raise DataError(f"expected a number, got {type(value).__name__}", **ctx)
    if not result.is_finite():
        raise DataError("number is NaN or infinite", **ctx)
    if result.copy_abs() >= MAX_ABS_AMOUNT:  # abs() would round to 28 digits first
        raise DataError("number is implausibly large (>= 1e18)", **ctx)
    return result


_E = TypeVar("_E", bound=StrEnum)


def _enum(kind: type[_E], value: object, field_name: str, where: str) -> _E:
    """Parse ``value`` into ``kind`` or raise a ``DataError`` listing the known values."""
    try:
        return kind(str(value))
    except ValueError:
        known = ", ".join(k.value for k in kind)
        raise DataError(
            f"unknown {field_name} {value!r}; known: {known}", field=field_name, where=where
        ) from None


def _require_aware(value: datetime, field_name: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise DataError("timestamp must be timezone-aware (UTC)", field=field_name, value=value)


class WalletKind(StrEnum):
    """Where collateral sits on a venue (DESIGN §3)."""

    SPOT = "spot"
    FUNDING = "funding"
    MARGIN = "margin"  # cross margin
    UM = "um"  # USDⓈ-M futures
    CM = "cm"  # COIN-M futures
    OPTIONS = "options"
    PM = "pm"  # unified portfolio-margin account

    @classmethod
    def parse(cls, value: str, *, where: str = "") -> WalletKind:
        """Parse a wallet name, refusing unknown ones instead of guessing."""
        try:
            return cls(value)
        except ValueError:
            known = ", ".join(k.value for k in cls)
            raise DataError(
                f"unknown wallet kind {value!r}; known: {known}", field="wallet", where=where
            ) from None

    @property
    def may_go_negative(self) -> bool:
        """Whether the venue's wallet balance itself can be below zero without any loan.

        A futures or options wallet books realised losses, fees and funding straight into its
        wallet balance, which can therefore dip below zero (Binance ``/fapi/v3/account`` and
        ``/dapi/v1/account`` ``walletBalance``, ``/papi/v1/balance`` ``umWalletBalance`` /
        ``cmWalletBalance`` / ``totalWalletBalance``, ``/eapi/v1/marginAccount``
        ``marginBalance``). A spot, funding or cross-margin wallet cannot: what it owes is a
        margin loan, booked as ``loan``.
        """
        return self in _NEGATIVE_BALANCE_WALLETS


_NEGATIVE_BALANCE_WALLETS = frozenset(
    {WalletKind.UM, WalletKind.CM, WalletKind.OPTIONS, WalletKind.PM}
)


class InstrumentKind(StrEnum):
    SPOT = "spot"
    LINEAR_PERP = "linear_perp"
    LINEAR_FUTURE = "linear_future"
    INVERSE_PERP = "inverse_perp"
    INVERSE_FUTURE = "inverse_future"
    OPTION = "option"


class OptionRight(StrEnum):
    CALL = "call"
    PUT = "put"


class Settlement(StrEnum):
    """How an option's premium is quoted and settled: in the quote asset or in the coin."""

    LINEAR = "linear"
    INVERSE = "inverse"


class PositionSide(StrEnum):
    """Which leg a position is: ``both`` in one-way mode, ``long``/``short`` in hedge mode.

    Binance returns one ``positionRisk`` row per side when hedge mode (``dualSidePosition``)
    is on, ``positionSide`` LONG (``positionAmt`` ≥ 0) and SHORT (``positionAmt`` ≤ 0); in one-way
    mode a single row says BOTH. Two legs of one symbol are two positions, each with its own
    entry price, PnL and bracket margin.
    """

    BOTH = "both"
    LONG = "long"
    SHORT = "short"


class MarginModelKind(StrEnum):
    """The margin models of DESIGN §3.2."""

    UNIFIED = "unified"
    SCENARIO = "scenario"
    STANDARD = "standard"


@dataclass(frozen=True, slots=True, order=True)
class Asset:
    """A currency or coin code such as ``BTC`` or ``USDT`` (upper-case, 2–15 chars)."""

    code: str

    def __post_init__(self) -> None:
        if not isinstance(self.code, str) or not _ASSET_RE.match(self.code):
            raise UnknownAssetError(
                "asset code must be 2-15 upper-case letters or digits",
                field="asset",
                value=repr(self.code),
            )

    def __str__(self) -> str:
        return self.code


@dataclass(frozen=True, slots=True)
class Amount:
    """A booked quantity of one asset; arithmetic across assets raises.

    Examples
    --------
    >>> Amount(Decimal("1.5"), Asset("BTC")) + Amount(Decimal("0.5"), Asset("BTC"))
    Amount(value=Decimal('2.0'), asset=Asset(code='BTC'))
    """

    value: Decimal
    asset: Asset

    def __post_init__(self) -> None:
        if not isinstance(self.asset, Asset):
            raise DataError("asset must be an Asset", field="asset", value=repr(self.asset))
        object.__setattr__(self, "value", to_decimal(self.value, "value", where="Amount"))

    def _same(self, other: Amount) -> None:
        if other.asset != self.asset:
            raise DataError(
                "cannot combine amounts of different assets",
                left=self.asset.code,
                right=other.asset.code,
            )

    def __add__(self, other: Amount) -> Amount:
        self._same(other)
        return Amount(self.value + other.value, self.asset)

    def __sub__(self, other: Amount) -> Amount:
        self._same(other)
        return Amount(self.value - other.value, self.asset)

    def __neg__(self) -> Amount:
        return Amount(-self.value, self.asset)

    def scaled(self, factor: Decimal) -> Amount:
        return Amount(self.value * factor, self.asset)

    def __lt__(self, other: Amount) -> bool:
        self._same(other)
        return self.value < other.value

    def __le__(self, other: Amount) -> bool:
        self._same(other)
        return self.value <= other.value

    def __str__(self) -> str:
        return f"{self.value} {self.asset}"


_LINEAR = {InstrumentKind.LINEAR_PERP, InstrumentKind.LINEAR_FUTURE}
_INVERSE = {InstrumentKind.INVERSE_PERP, InstrumentKind.INVERSE_FUTURE}
_DATED = {InstrumentKind.LINEAR_FUTURE, InstrumentKind.INVERSE_FUTURE, InstrumentKind.OPTION}


@dataclass(frozen=True, slots=True)
class Instrument:
    """A tradable contract: spot pair, linear/inverse future or perp, or an option.

    ``quote`` is the asset linear PnL and linear option premiums are paid in (USDT, USDC);
    inverse instruments settle in ``underlying``. ``contract_size`` is coin per contract for
    linear instruments and options, USD face value per contract for inverse ones.
    """

    symbol: str
    kind: InstrumentKind
    underlying: Asset
    quote: Asset
    contract_size: Decimal = Decimal(1)
    expiry: datetime | None = None
    strike: Decimal | None = None
    right: OptionRight | None = None
    settlement: Settlement | None = None

    def __post_init__(self) -> None:
        where = f"instrument {self.symbol!r}"
        if not isinstance(self.symbol, str) or not self.symbol.strip():
            raise DataError("instrument symbol must be a non-empty string", field="symbol")
        object.__setattr__(self, "kind", _enum(InstrumentKind, self.kind, "kind", where))
        size = to_decimal(self.contract_size, "contract_size", where=where)
        if size <= 0:
            raise DataError("contract_size must be > 0", field="contract_size", value=size)
        object.__setattr__(self, "contract_size", size)
        if self.kind in _DATED:
            if self.expiry is None:
                raise DataError(f"{self.kind} needs an expiry", field="expiry", where=where)
            _require_aware(self.expiry, "expiry")
        elif self.expiry is not None:
            raise DataError(f"{self.kind} has no expiry", field="expiry", where=where)
        if self.kind is InstrumentKind.OPTION:
            if self.strike is None or self.right is None or self.settlement is None:
                raise DataError(
                    "an option needs strike, right (call/put) and settlement (linear/inverse)",
                    where=where,
                )
            strike = to_decimal(self.strike, "strike", where=where)
            if strike <= 0:
                raise DataError("strike must be > 0", field="strike", value=strike, where=where)
            object.__setattr__(self, "strike", strike)
            object.__setattr__(self, "right", _enum(OptionRight, self.right, "right", where))
            object.__setattr__(
                self, "settlement", _enum(Settlement, self.settlement, "settlement", where)
            )
        elif self.strike is not None or self.right is not None or self.settlement is not None:
            raise DataError("strike/right/settlement are for options only", where=where)

    @property
    def is_linear(self) -> bool:
        return self.kind in _LINEAR

    @property
    def is_inverse(self) -> bool:
        return self.kind in _INVERSE

    @property
    def is_option(self) -> bool:
        return self.kind is InstrumentKind.OPTION

    @property
    def settle_asset(self) -> Asset:
        """The asset PnL and premium are booked in."""
        if self.is_inverse or self.settlement is Settlement.INVERSE:
            return self.underlying
        return self.quote


@dataclass(frozen=True, slots=True)
class Position:
    """A signed holding of ``qty`` contracts of ``instrument`` in one venue wallet.

    ``side`` tells the legs of a hedge-mode account apart (``PositionSide``); a position is
    identified by (venue, wallet, symbol, side), which ``key`` spells out.
    """

    venue: str
    wallet: WalletKind
    instrument: Instrument
    qty: Decimal
    entry_price: Decimal
    side: PositionSide = PositionSide.BOTH

    def __post_init__(self) -> None:
        where = f"position {self.venue}/{self.wallet}/{self.instrument.symbol}"
        object.__setattr__(self, "wallet", WalletKind.parse(str(self.wallet), where=where))
        side = _enum(PositionSide, self.side, "side", where)
        object.__setattr__(self, "side", side)
        qty = to_decimal(self.qty, "qty", where=where)
        object.__setattr__(self, "qty", qty)
        entry = to_decimal(self.entry_price, "entry_price", where=where)
        if entry < 0 or (entry == 0 and not self.instrument.is_option):
            raise DataError(
                "entry_price must be > 0", field="entry_price", value=entry, where=where
            )
        object.__setattr__(self, "entry_price", entry)
        if side is not PositionSide.BOTH:
            inst = self.instrument
            if not (inst.is_linear or inst.is_inverse):
                raise DataError(
                    f"position side {side.value!r} (hedge mode) is for futures, not {inst.kind}",
                    field="side",
                    where=where,
                )
            if (side is PositionSide.LONG and qty < 0) or (side is PositionSide.SHORT and qty > 0):
                raise DataError(
                    f"a {side.value} leg cannot hold qty {qty}", field="qty", where=where
                )

    @property
    def key(self) -> str:
        """``venue/wallet/symbol``, with ``:long`` / ``:short`` for a hedge-mode leg."""
        base = f"{self.venue}/{self.wallet.value}/{self.instrument.symbol}"
        return base if self.side is PositionSide.BOTH else f"{base}:{self.side.value}"


@dataclass(frozen=True, slots=True)
class Balance:
    """What a wallet holds of one asset: ``amount`` (free + locked), borrowed ``loan``, ``interest``.

    Net = amount − loan − interest may be negative. ``loan`` and ``interest`` are margin loans
    (Binance PM charges loan MM on them, 3x → 10 %) and are never negative. ``amount`` is what
    the wallet holds: never negative in a spot, funding or cross-margin wallet, but a futures,
    options or PM wallet can report a negative wallet balance (realised losses, funding) with
    no loan at all (``WalletKind.may_go_negative``). A negative amount only lowers equity; it
    is not a loan and carries no loan MM.
    """

    venue: str
    wallet: WalletKind
    asset: Asset
    amount: Decimal
    loan: Decimal = Decimal(0)
    interest: Decimal = Decimal(0)

    def __post_init__(self) -> None:
        where = f"balance {self.venue}/{self.wallet}/{self.asset}"
        object.__setattr__(self, "wallet", WalletKind.parse(str(self.wallet), where=where))
        for name in ("amount", "loan", "interest"):
            value = to_decimal(getattr(self, name), name, where=where)
            if value < 0 and not (name == "amount" and self.wallet.may_go_negative):
                hint = "" if name != "amount" else f" in a {self.wallet.value} wallet"
                raise DataError(f"{name} must be >= 0{hint}", field=name, value=value, where=where)
            object.__setattr__(self, name, value)

    @property
    def net(self) -> Decimal:
        return self.amount - self.loan - self.interest


@dataclass(frozen=True, slots=True)
class MarkPrice:
    """A mark (and optional index price and implied vol) for an asset or instrument symbol.

    For an asset code (``BTC``) ``mark`` is its USD price; for an instrument it is the venue's
    mark in the instrument's quote. ``iv`` is annualised (0.55 = 55 %).

    ``mark`` may be 0: venues quote a worthless far out-of-the-money option at exactly 0, and
    that is a price. Whoever values the symbol decides whether 0 is usable: an asset, a spot
    pair or a future at 0 is refused where margin is computed (``core.margin.book``), naming
    the symbol, so one such row cannot blind the margin of positions that do not need it.
    ``index`` and ``iv`` must be > 0.
    """

    symbol: str
    mark: Decimal
    at: datetime
    index: Decimal | None = None
    iv: Decimal | None = None

    def __post_init__(self) -> None:
        where = f"price {self.symbol}"
        _require_aware(self.at, "at")
        for name in ("mark", "index", "iv"):
            raw = getattr(self, name)
            if raw is None:
                continue
            try:
                value = to_decimal(raw, name, where=where)
            except DataError as exc:
                raise NaNPriceError(exc.message, **exc.context) from None
            if value < 0 or (value == 0 and name != "mark"):
                bound = ">= 0" if name == "mark" else "> 0"
                raise NaNPriceError(f"{name} must be {bound}", field=name, value=value, where=where)
            object.__setattr__(self, name, value)

    def check_fresh(self, now: datetime, max_age_s: float) -> None:
        """Raise ``StalePriceError`` if this price is older than ``max_age_s`` at ``now``, and
        ``DataError`` if it is stamped in the future beyond ``CLOCK_SKEW_S`` (a wrong clock or
        a wrong timestamp field, either way not a price to margin on)."""
        age_s = (now - self.at).total_seconds()
        if age_s < -CLOCK_SKEW_S:
            raise DataError(
                "price is stamped in the future",
                symbol=self.symbol,
                ahead_s=round(-age_s, 3),
                at=self.at.isoformat(),
            )
        if age_s > max_age_s:
            raise StalePriceError(
                "price is stale",
                symbol=self.symbol,
                age_s=round(age_s, 3),
                max_age_s=max_age_s,
                at=self.at.isoformat(),
            )


@dataclass(frozen=True, slots=True)
class Pool:
    """Wallets on one venue whose collateral margins the same positions (DESIGN §3).

    A Binance PM account is one pool spanning margin + um + cm; a classic futures wallet is its
    own pool. ``margin_currency`` is what equity and margin are measured in.
    """

    id: str
    venue: str
    wallets: frozenset[WalletKind]
    model: MarginModelKind
    margin_currency: Asset = field(default_factory=lambda: Asset("USDT"))

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not _NAME_RE.match(self.id):
            raise DataError("pool id must be lower-case [a-z0-9_.-]", field="id", value=self.id)
        if not isinstance(self.venue, str) or not _NAME_RE.match(self.venue):
            raise DataError("venue must be a lower-case name", field="venue", value=self.venue)
        if not self.wallets:
            raise DataError("a pool needs at least one wallet", field="wallets", where=self.id)
        wallets = frozenset(WalletKind.parse(str(w), where=f"pool {self.id}") for w in self.wallets)
        object.__setattr__(self, "wallets", wallets)
        object.__setattr__(self, "model", _enum(MarginModelKind, self.model, "model", self.id))
        if not isinstance(self.margin_currency, Asset):
            raise DataError(
                "margin_currency must be an Asset", field="margin_currency", where=self.id
            )

    def holds(self, venue: str, wallet: WalletKind) -> bool:
        return venue == self.venue and wallet in self.wallets


@dataclass(frozen=True, slots=True)
class Portfolio:
    """Everything margin needs about one pool at one instant: balances, positions, prices."""

    balances: tuple[Balance, ...]
    positions: tuple[Position, ...]
    prices: Mapping[str, MarkPrice]
    as_of: datetime

    def __post_init__(self) -> None:
        _require_aware(self.as_of, "as_of")
        object.__setattr__(self, "balances", tuple(self.balances))
        object.__setattr__(self, "positions", tuple(self.positions))
        object.__setattr__(self, "prices", MappingProxyType(dict(self.prices)))
        seen: set[str] = set()
        for p in self.positions:
            # Two rows for one leg: per-position margin and stored snapshots would mix them up.
            if p.key in seen:
                raise DataError("two positions for one venue/wallet/symbol/side", position=p.key)
            seen.add(p.key)

    @classmethod
    def of(
        cls,
        balances: Iterable[Balance],
        positions: Iterable[Position],
        prices: Iterable[MarkPrice],
        as_of: datetime,
    ) -> Portfolio:
        by_symbol: dict[str, MarkPrice] = {}
        for p in prices:
            if p.symbol in by_symbol:
                # Two marks for one symbol: silently keeping either would misstate equity.
                raise DataError(
                    "two prices for one symbol",
                    symbol=p.symbol,
                    marks=f"{by_symbol[p.symbol].mark}, {p.mark}",
                )
            by_symbol[p.symbol] = p
        return cls(tuple(balances), tuple(positions), by_symbol, as_of)

    def price(self, symbol: str, *, where: str = "") -> MarkPrice:
        """Return the price of ``symbol`` or raise ``UnknownAssetError`` naming who needed it."""
        try:
            return self.prices[symbol]
        except KeyError:
            raise UnknownAssetError("no price for symbol", symbol=symbol, needed_by=where) from None

    def check_prices_fresh(self, max_age_s: float) -> None:
        """Refuse the whole portfolio if any price is older than ``max_age_s`` at ``as_of``."""
        for p in self.prices.values():
            p.check_fresh(self.as_of, max_age_s)
