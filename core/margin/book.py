"""One pool's validated snapshot: its positions with their prices, and its per-asset nets.

Every margin model starts here, so every check on the input happens here, before any number is
computed: a missing, stale or unusable price, an expired option, an instrument whose units make
no sense in its wallet. A ``DataError`` names the position or asset; no partial report exists.

Netting (DESIGN §3.1, Binance PM ∑Equity): per asset, net = Σ wallet (amount − loan − interest)
+ futures PnL booked in that asset (linear PnL in the quote, inverse PnL in the coin) + option
market values in their settlement asset + spot holdings. Each net is valued at its USD price and
counted at its collateral rate (negative nets at 100 %).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from core.domain import (
    Balance,
    InstrumentKind,
    MarkPrice,
    Pool,
    Portfolio,
    Position,
    Settlement,
    WalletKind,
)
from core.errors import DataError, UnknownAssetError
from core.margin.collateral import collateral_value_usd
from core.margin.params import MarginParams
from core.margin.pricing import inverse_pnl_coin, linear_pnl, year_fraction

__all__ = ["AssetLine", "PoolBook", "PricedPosition", "asset_lines", "build_book"]

_ONE = Decimal(1)
_ZERO = Decimal(0)
# Inverse contracts are quoted in nominal USD; it needs no price of its own.
USD = "USD"


@dataclass(frozen=True, slots=True)
class PricedPosition:
    """A position with everything needed to value it, all checked.

    ``mark`` is the instrument's mark in its quote (for an inverse option: premium in the coin
    per coin of underlying). ``forward`` (options only) is the underlying's forward in quote units:
    the option price's ``index`` if given, else the underlying's USD price over the quote's.
    """

    key: str
    position: Position
    mark: Decimal
    quote_usd: Decimal
    underlying_usd: Decimal
    forward: Decimal | None
    iv: Decimal | None
    t_years: float | None

    @property
    def kind(self) -> InstrumentKind:
        return self.position.instrument.kind

    @property
    def unit(self) -> str:
        """The risk unit (underlying asset code) this position belongs to."""
        return self.position.instrument.underlying.code

    @property
    def units(self) -> Decimal:
        """Signed size: coin for spot, linear and options; USD face value for inverse."""
        return self.position.qty * self.position.instrument.contract_size

    @property
    def settle_asset(self) -> str:
        inst = self.position.instrument
        if inst.kind is InstrumentKind.SPOT:
            return inst.underlying.code
        return inst.settle_asset.code

    @property
    def is_short_option(self) -> bool:
        return self.kind is InstrumentKind.OPTION and self.position.qty < 0

    def booked_value(self) -> Decimal:
        """Value booked in ``settle_asset``: futures PnL, option market value, spot holding."""
        inst = self.position.instrument
        if inst.kind is InstrumentKind.SPOT:
            return self.units
        if inst.is_linear:
            return linear_pnl(self.units, self.position.entry_price, self.mark)
        if inst.is_inverse:
            return inverse_pnl_coin(self.units, self.position.entry_price, self.mark)
        return self.units * self.mark  # option: premium paid/received is already in balances

    def booked_value_usd(self) -> Decimal:
        """``booked_value`` in USD (PnL for futures, market value for options and spot)."""
        if self.settle_asset == self.unit:
            return self.booked_value() * self.underlying_usd
        return self.booked_value() * self.quote_usd

    def notional_usd(self) -> Decimal:
        """|Notional| in USD: |qty × mark| for linear, |contracts × face| for inverse (Binance)."""
        inst = self.position.instrument
        if inst.is_inverse:
            return abs(self.units) * self.quote_usd
        if inst.is_linear:
            return abs(self.units * self.mark) * self.quote_usd
        return abs(self.units) * self.underlying_usd

    def premium_usd_per_coin(self) -> Decimal:
        """An option's mark in USD per coin of underlying (inverse premiums times the coin)."""
        if self.position.instrument.settlement is Settlement.INVERSE:
            return self.mark * self.underlying_usd
        return self.mark * self.quote_usd


@dataclass(frozen=True, slots=True)
class AssetLine:
    """One asset's net in a pool (or silo) and what it is worth as collateral."""

    asset: str
    balance_net: Decimal
    position_value: Decimal
    price_usd: Decimal
    value_usd: Decimal
    collateral_usd: Decimal

    @property
    def net(self) -> Decimal:
        return self.balance_net + self.position_value


@dataclass(frozen=True, slots=True)
class PoolBook:
    """A pool's validated state at ``as_of``: what every margin model reads."""

    pool: Pool
    as_of: datetime
    balances: tuple[Balance, ...]
    positions: tuple[PricedPosition, ...]
    assets: tuple[AssetLine, ...]
    prices_usd: Mapping[str, Decimal]
    mc_price_usd: Decimal

    @property
    def equity_usd(self) -> Decimal:
        return sum((a.value_usd for a in self.assets), _ZERO)

    @property
    def adjusted_equity_usd(self) -> Decimal:
        return sum((a.collateral_usd for a in self.assets), _ZERO)

    def price_usd(self, asset: str) -> Decimal:
        if asset == USD:
            return _ONE
        try:
            return self.prices_usd[asset]
        except KeyError:
            raise UnknownAssetError("no USD price for asset", asset=asset) from None


class _Prices:
    """Price lookups that check presence and freshness and remember what was used."""

    def __init__(self, portfolio: Portfolio, max_age_s: float) -> None:
        self._portfolio = portfolio
        self._max_age_s = max_age_s
        self.used_usd: dict[str, Decimal] = {}

    def get(self, symbol: str, where: str) -> MarkPrice:
        price = self._portfolio.price(symbol, where=where)
        price.check_fresh(self._portfolio.as_of, self._max_age_s)
        return price

    def usd(self, asset: str, where: str) -> Decimal:
        if asset == USD and asset not in self._portfolio.prices:
            return _ONE
        value = self.get(asset, where).mark
        if value <= 0:
            raise DataError("asset price must be > 0", symbol=asset, mark=value, needed_by=where)
        self.used_usd[asset] = value
        return value


def _check_units(pos: Position, where: str) -> None:
    """Refuse positions whose units cannot be right (DESIGN §3: wallet ↔ instrument family)."""
    inst = pos.instrument
    if inst.quote == inst.underlying:
        raise DataError("instrument quote equals its underlying", where=where)
    if inst.is_inverse and inst.quote.code != USD:
        raise DataError(
            "inverse instruments must be quoted in USD (contract_size is USD face value)",
            quote=inst.quote.code,
            where=where,
        )
    if pos.wallet is WalletKind.UM and (inst.is_inverse or inst.kind is InstrumentKind.SPOT):
        raise DataError(f"a {inst.kind} position cannot sit in a USDⓈ-M wallet", where=where)
    if pos.wallet is WalletKind.CM and not inst.is_inverse:
        raise DataError(f"a {inst.kind} position cannot sit in a COIN-M wallet", where=where)


def _price_position(pos: Position, prices: _Prices, as_of: datetime) -> PricedPosition:
    inst = pos.instrument
    key = pos.key
    where = f"position {key}"
    _check_units(pos, where)
    underlying_usd = prices.usd(inst.underlying.code, where)
    quote_usd = prices.usd(inst.quote.code, where)
    if inst.kind is InstrumentKind.SPOT:
        spot_mark = underlying_usd / quote_usd
        return PricedPosition(key, pos, spot_mark, quote_usd, underlying_usd, None, None, None)
    mp = prices.get(inst.symbol, where)
    if mp.mark <= 0 and not inst.is_option:
        # A worthless option is quoted at 0; a future at 0 is a broken feed, not a price.
        raise DataError(f"{inst.kind} mark must be > 0", symbol=inst.symbol, where=where)
    forward: Decimal | None = None
    t_years: float | None = None
    if inst.is_option:
        if inst.expiry is None or inst.expiry <= as_of:
            raise DataError(
                "option is past expiry",
                expiry=inst.expiry.isoformat() if inst.expiry else None,
                as_of=as_of.isoformat(),
                where=where,
            )
        t_years = year_fraction(inst.expiry, as_of)
        forward = mp.index if mp.index is not None else underlying_usd / quote_usd
    elif inst.expiry is not None and inst.expiry <= as_of:
        raise DataError("future is past expiry", expiry=inst.expiry.isoformat(), where=where)
    return PricedPosition(key, pos, mp.mark, quote_usd, underlying_usd, forward, mp.iv, t_years)


def asset_lines(
    balances: Iterable[Balance],
    positions: Iterable[PricedPosition],
    price_usd: Mapping[str, Decimal],
    params: MarginParams,
) -> tuple[AssetLine, ...]:
    """Net balances and booked position values per asset and value them as collateral.

    ``price_usd`` must hold every asset involved (``build_book`` guarantees it).
    """
    bal: dict[str, Decimal] = {}
    pos_val: dict[str, Decimal] = {}
    for b in balances:
        bal[b.asset.code] = bal.get(b.asset.code, _ZERO) + b.net
    for p in positions:
        pos_val[p.settle_asset] = pos_val.get(p.settle_asset, _ZERO) + p.booked_value()
    lines = []
    for asset in sorted(set(bal) | set(pos_val)):
        b_net, p_val = bal.get(asset, _ZERO), pos_val.get(asset, _ZERO)
        price = _ONE if asset == USD and asset not in price_usd else price_usd[asset]
        value = (b_net + p_val) * price
        coll = collateral_value_usd(value, params.collateral_rate(asset))
        lines.append(AssetLine(asset, b_net, p_val, price, value, coll))
    return tuple(lines)


def build_book(portfolio: Portfolio, pool: Pool, params: MarginParams) -> PoolBook:
    """Select ``pool``'s wallets from ``portfolio``, check every input, net per asset.

    Raises
    ------
    UnknownAssetError
        A position or balance needs a price the portfolio does not have.
    StalePriceError
        A price it needs is older than ``params.max_price_age_s`` at ``portfolio.as_of``.
    DataError
        An option or future past expiry, or an instrument whose units are inconsistent.
    """
    prices = _Prices(portfolio, params.max_price_age_s)
    balances = tuple(b for b in portfolio.balances if pool.holds(b.venue, b.wallet))
    raw_positions = tuple(p for p in portfolio.positions if pool.holds(p.venue, p.wallet))
    priced = tuple(_price_position(p, prices, portfolio.as_of) for p in raw_positions)
    for b in balances:
        prices.usd(b.asset.code, f"balance {b.venue}/{b.wallet.value}/{b.asset}")
    for p in priced:
        prices.usd(p.settle_asset, f"position {p.key}")
    mc = pool.margin_currency.code
    mc_price = prices.usd(mc, f"margin currency of pool {pool.id}")
    used = dict(prices.used_usd)
    lines = asset_lines(balances, priced, used, params)
    return PoolBook(pool, portfolio.as_of, balances, priced, lines, used, mc_price)
