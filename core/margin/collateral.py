"""Collateral value of per-asset nets: flat or tiered (marginal) rates (DESIGN §3.1).

Binance Portfolio Margin counts each asset at ``min(net × price × rate, net × price)``: a
positive net is discounted by its collateral rate, a negative net (a debt) is counted at 100 %
(Binance "Portfolio Margin Pro maintenance margin ratio calculation", ∑Equity). Tiered rates
apply marginally like tax brackets (Binance cross-margin "tiered collateral ratio": 6,000 BTC at
20,000 with 100 % up to 100 M and 97.5 % from 100 M to 120 M → 119,500,000).

:func:`desk_collateral_usd` totals a desk's holdings per wallet, per pool and outside pools
(what ``pmr config check`` and ``pmr demo`` print first), from declared or venue-read balances.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType
from typing import TYPE_CHECKING

from core.domain import Balance, WalletKind
from core.errors import UnknownAssetError
from core.params import CollateralRate

if TYPE_CHECKING:  # the desk type only
    from core.config import DeskConfig

__all__ = ["DeskCollateral", "collateral_value_usd", "desk_collateral_usd"]

_ZERO = Decimal(0)


def collateral_value_usd(value_usd: Decimal, rate: CollateralRate) -> Decimal:
    """Return the collateral value of a net holding worth ``value_usd``.

    Negative values (debts) are returned unchanged. Tiers above the last ``to_usd`` count at 0:
    a venue gives no credit beyond its last tier.

    Examples
    --------
    >>> from core.params import CollateralTier
    >>> tiers = CollateralRate(tiers=(
    ...     CollateralTier(from_usd=0, to_usd=100_000_000, rate=1),
    ...     CollateralTier(from_usd=100_000_000, to_usd=120_000_000, rate=Decimal("0.975")),
    ... ))
    >>> collateral_value_usd(Decimal(6000) * 20000, tiers)
    Decimal('119500000.000')
    """
    if value_usd <= _ZERO:
        return value_usd
    if rate.rate is not None:
        return value_usd * rate.rate
    credited = _ZERO
    for tier in rate.tiers or ():  # CollateralRate guarantees tiers when rate is None
        if value_usd <= tier.from_usd:
            break
        top = value_usd if tier.to_usd is None else min(value_usd, tier.to_usd)
        credited += (top - tier.from_usd) * tier.rate
    return credited


WalletKey = tuple[str, WalletKind]


@dataclass(frozen=True, slots=True)
class DeskCollateral:
    """Gross USD value of a desk's holdings: Σ amount × USD price, before loans, rates and PnL.

    ``by_wallet`` per (venue, wallet); ``by_pool`` per pool in the desk's order (Σ of its
    wallets); ``free`` the wallets in no pool (spot and funding usually: what routes can move).
    """

    by_wallet: Mapping[WalletKey, Decimal]
    by_pool: Mapping[str, Decimal]
    free: Mapping[WalletKey, Decimal]


def desk_collateral_usd(
    desk: DeskConfig, balances: Iterable[Balance], prices_usd: Mapping[str, Decimal]
) -> DeskCollateral:
    """Total ``balances`` at ``prices_usd`` per wallet, per pool of ``desk`` and outside pools.

    Gross: a wallet's ``amount`` (what it holds), not its net of loans, so the figure says where
    the collateral sits. ``USD`` is worth 1 unless priced.

    Raises
    ------
    UnknownAssetError
        A balance in an asset ``prices_usd`` does not price (never counted as 0).

    Examples
    --------
    >>> desk = load_desk("examples/desk.toml")  # doctest: +SKIP
    >>> marks = {p.symbol: p.mark for p in desk.prices}  # doctest: +SKIP
    >>> desk_collateral_usd(desk, desk.initial_balances(), marks).by_pool["sim-b.opt"]  # doctest: +SKIP
    Decimal('2200000')
    """
    by_wallet: dict[WalletKey, Decimal] = {}
    for b in balances:
        price = prices_usd.get(b.asset.code)
        if price is None and b.asset.code == "USD":
            price = Decimal(1)
        if price is None:
            raise UnknownAssetError(
                "no USD price for a held asset",
                asset=b.asset.code,
                where=f"{b.venue}/{b.wallet.value}",
            )
        key = (b.venue, b.wallet)
        by_wallet[key] = by_wallet.get(key, _ZERO) + b.amount * price
    by_pool = {
        p.id: sum((by_wallet.get((p.venue, w), _ZERO) for w in p.wallets), _ZERO)
        for p in desk.pools
    }
    pooled = {(p.venue, w) for p in desk.pools for w in p.wallets}
    free = {k: by_wallet[k] for k in sorted(by_wallet, key=lambda k: (k[0], k[1].value))}
    free = {k: v for k, v in free.items() if k not in pooled}
    return DeskCollateral(
        MappingProxyType(by_wallet), MappingProxyType(by_pool), MappingProxyType(free)
    )
