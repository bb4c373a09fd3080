"""Valuation of linear, inverse and option positions (DESIGN §3.1).

It sits below ``core.margin`` (which re-exports it as ``core.margin.pricing``) and
``core.venues``, so the margin models, the stress shocks and the simulated exchange's option
marks use one implementation of each formula.

Two layers, one set of formulas:

- booked valuation in ``Decimal`` (what equity is made of): linear and inverse PnL;
- vectorised float64 valuation on numpy arrays (what the scenario engine re-prices millions of
  times per second): Black-76 on the forward, its delta, and the DTE-scaled vol-shock factor.

Sources
-------
- Linear PnL = qty × (mark − entry) in the quote asset; inverse (COIN-M) PnL in the coin =
  contracts × face value × (1/entry − 1/mark): Binance "Portfolio Margin Pro maintenance margin
  ratio calculation" (worked example: short 0.05 BTC at 52,000 marked 40,000 → +600 USDT).
- Black-76: F. Black, "The pricing of commodity contracts", J. Financial Economics 3 (1976);
  crypto venues (Deribit, Binance options, Paradex) price on the forward with r ≈ 0, which is what
  we do here: the discount factor is 1.
- Vol shock term structure: Deribit portfolio-margin docs ("maximum implied volatility change of
  SQRT(30/days to expiration) × 40 %": 15 days → 56.6 %) and DESIGN §3.2's p = 0.30 / 0.13.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import numpy as np
import numpy.typing as npt
from scipy.special import ndtr

__all__ = [
    "SECONDS_PER_YEAR",
    "black76",
    "black76_delta",
    "inverse_pnl_coin",
    "linear_pnl",
    "vol_shock_scale",
    "year_fraction",
]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

SECONDS_PER_YEAR = 365.0 * 86_400.0


def linear_pnl(qty_units: Decimal, entry: Decimal, mark: Decimal) -> Decimal:
    """Return the PnL of a linear position in its quote asset: qty × (mark − entry).

    Examples
    --------
    >>> linear_pnl(Decimal("-0.05"), Decimal(52000), Decimal(40000))
    Decimal('600.00')
    """
    return qty_units * (mark - entry)


def inverse_pnl_coin(face_usd: Decimal, entry: Decimal, mark: Decimal) -> Decimal:
    """Return the PnL of an inverse position in the coin: face × (1/entry − 1/mark).

    ``face_usd`` is contracts × contract face value, signed (long > 0).

    Examples
    --------
    >>> inverse_pnl_coin(Decimal(10000), Decimal(50000), Decimal(40000))
    Decimal('-0.050000')
    """
    return face_usd * (Decimal(1) / entry - Decimal(1) / mark)


def year_fraction(expiry: datetime, as_of: datetime) -> float:
    """Return the time from ``as_of`` to ``expiry`` in years of 365 days (ACT/365)."""
    return (expiry - as_of).total_seconds() / SECONDS_PER_YEAR


def vol_shock_scale(
    dte_days: FloatArray | float,
    *,
    power_short: float,
    power_long: float,
    cutoff_days: float = 30.0,
) -> FloatArray:
    """Return (30 / max(DTE, 1))^p, the factor scaling a vol shock by time to expiry.

    p is ``power_short`` below ``cutoff_days`` and ``power_long`` from it on (DESIGN §3.2:
    0.30 / 0.13; the legacy Deribit rule is 0.5 everywhere, so a 40 % shock at 15 days becomes
    40 % × √2 = 56.6 %).
    """
    dte = np.maximum(np.asarray(dte_days, dtype=np.float64), 1.0)
    power = np.where(dte < cutoff_days, power_short, power_long)
    out: FloatArray = np.power(30.0 / dte, power)
    return out


def black76(
    forward: FloatArray,
    strike: FloatArray,
    t_years: FloatArray,
    sigma: FloatArray,
    is_call: BoolArray,
) -> FloatArray:
    """Return Black-76 option values per unit of underlying, undiscounted (r = 0).

    All arguments broadcast together. Call = F·N(d1) − K·N(d2); put by parity = call − (F − K).
    ``sigma`` and ``t_years`` must be > 0 (the book refuses expired options before this).
    """
    sd = sigma * np.sqrt(t_years)
    d1 = (np.log(forward / strike) + 0.5 * sd * sd) / sd
    call = forward * ndtr(d1) - strike * ndtr(d1 - sd)
    out: FloatArray = np.where(is_call, call, call - (forward - strike))
    return out


def black76_delta(
    forward: FloatArray,
    strike: FloatArray,
    t_years: FloatArray,
    sigma: FloatArray,
    is_call: BoolArray,
) -> FloatArray:
    """Return the forward delta ∂V/∂F: N(d1) for a call, N(d1) − 1 for a put."""
    sd = sigma * np.sqrt(t_years)
    d1 = (np.log(forward / strike) + 0.5 * sd * sd) / sd
    n1 = ndtr(d1)
    out: FloatArray = np.where(is_call, n1, n1 - 1.0)
    return out
