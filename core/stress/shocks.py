"""Apply joint price moves to a portfolio: the state a pool would be in after a shock.

Moves are **USD moves per asset**. An asset's own USD price moves by ``1 + m``; a contract's mark
and index are prices of its underlying *in its quote asset*, so they move by
``(1 + m_underlying) / (1 + m_quote)``: a USDT de-peg alone (``{"USDT": -0.35}``) leaves BTC's
USD value where it was and lifts BTCUSDT's mark to ``mark / 0.65`` USDT, and a BTC move with
USDT unmoved scales BTCUSDT by ``1 + m``. Inverse contracts are quoted in nominal USD, which
never moves. Implied vols can be scaled at the same time (crashes come with vol spikes). An option's mark moves by the change of its Black-76 value between the
old and the shocked (index, IV), so the venue's premium over the model is kept and equity
(which counts option marks) moves with the shock. Amounts stay ``Decimal``: a shocked
portfolio is an ordinary ``Portfolio`` every margin model accepts.

Examples
--------
>>> shocked = shock_portfolio(pf, instruments, {"BTC": -0.2}, vol_up_frac=0.5)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from decimal import Decimal

import numpy as np

from core.domain import Instrument, MarkPrice, OptionRight, Portfolio, Settlement
from core.errors import DataError
from core.margin.pricing import black76, year_fraction

__all__ = ["shock_portfolio"]


def _factor(move_frac: float, asset: str) -> Decimal:
    if not -1.0 < move_frac < 10.0:
        raise DataError("price move must be in (-100 %, +1000 %)", asset=asset, move=move_frac)
    return Decimal(1) + Decimal(repr(move_frac))


def shock_portfolio(
    portfolio: Portfolio,
    instruments: Mapping[str, Instrument],
    moves_frac: Mapping[str, float],
    *,
    vol_up_frac: float = 0.0,
) -> Portfolio:
    """Return ``portfolio`` re-priced after USD moves ``moves_frac`` (see the module doc).

    Parameters
    ----------
    portfolio
        The state now.
    instruments
        Instrument definitions by symbol, to know each price's underlying.
    moves_frac
        USD move per asset code (``{"BTC": 0.12}`` = BTC +12 % in USD); a stablecoin's move
        (``{"USDC": -0.12}``) models a de-peg and re-prices contracts quoted in it.
    vol_up_frac
        Relative IV change for options on moved underlyings (0.5 = IV × 1.5).
    """
    if vol_up_frac <= -1.0:
        raise DataError("vol_up_frac must be > -1", vol_up_frac=vol_up_frac)
    factors = {asset: _factor(m, asset) for asset, m in moves_frac.items()}
    vol = Decimal(1) + Decimal(repr(vol_up_frac))
    prices: list[MarkPrice] = []
    for symbol, price in portfolio.prices.items():
        inst = instruments.get(symbol)
        if inst is None:  # an asset's own USD price
            f = factors.get(symbol)
        else:
            fu = factors.get(inst.underlying.code)
            fq = factors.get(inst.quote.code) if inst.quote.code != "USD" else None
            f = None if fu is None and fq is None else (fu or Decimal(1)) / (fq or Decimal(1))
        if f is None:
            prices.append(price)
            continue
        if inst is not None and inst.is_option:
            prices.append(_shocked_option(price, inst, f, vol, portfolio))
            continue
        prices.append(
            replace(
                price, mark=price.mark * f, index=None if price.index is None else price.index * f
            )
        )
    return Portfolio.of(portfolio.balances, portfolio.positions, prices, portfolio.as_of)


def _shocked_option(
    price: MarkPrice, inst: Instrument, f: Decimal, vol: Decimal, portfolio: Portfolio
) -> MarkPrice:
    """Move an option's mark by its Black-76 value change; index × f, IV × vol."""
    forward = price.index
    if forward is None:
        forward = portfolio.price(inst.underlying.code, where=f"option {inst.symbol}").mark
    iv = price.iv
    if iv is None or inst.expiry is None or inst.strike is None:
        raise DataError(
            "an option needs an index or underlying price and an IV to be shocked",
            symbol=inst.symbol,
        )
    t = max(year_fraction(inst.expiry, portfolio.as_of), 1e-9)
    is_call = np.array([inst.right is OptionRight.CALL])
    k = np.array([float(inst.strike)])
    f0, f1 = float(forward), float(forward * f)
    v0 = float(black76(np.array([f0]), k, np.array([t]), np.array([float(iv)]), is_call)[0])
    v1 = float(black76(np.array([f1]), k, np.array([t]), np.array([float(iv * vol)]), is_call)[0])
    if inst.settlement is Settlement.INVERSE:  # premium in coin: value / forward
        v0, v1 = v0 / f0, v1 / f1
        floor = 1e-8
    else:
        floor = 1e-8 * f1
    mark = Decimal(repr(max(float(price.mark) + (v1 - v0), floor)))
    return replace(
        price,
        mark=mark.quantize(Decimal("1e-8")),
        index=None if price.index is None else price.index * f,
        iv=iv * vol,
    )
