"""Collateral value of per-asset nets: flat or tiered (marginal) rates (DESIGN §3.1).

Binance Portfolio Margin counts each asset at ``min(net × price × rate, net × price)``: a
positive net is discounted by its collateral rate, a negative net (a debt) is counted at 100 %
(Binance "Portfolio Margin Pro maintenance margin ratio calculation", ∑Equity). Tiered rates
apply marginally like tax brackets (Binance cross-margin "tiered collateral ratio": 6,000 BTC at
20,000 with 100 % up to 100 M and 97.5 % from 100 M to 120 M → 119,500,000).
"""

from __future__ import annotations

from decimal import Decimal

from core.params import CollateralRate

__all__ = ["collateral_value_usd"]

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
