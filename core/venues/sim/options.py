"""Binance European options on the simulated exchange: contracts, positions and marks.

Binance options (``eapi``) are European, USDT-quoted and USDT-settled, one contract being
``unit`` of the underlying; their ids read ``BTC-270326-100000-C`` (base, expiry ``YYMMDD``,
strike, ``C``/``P``). Binance marks them with Black-Scholes on the underlying's spot index at the
mark IV (``/eapi/v1/mark`` ``markIV``; its ``riskFreeInterest``); the simulator does the same with
Black-76 and r = 0 (:func:`core.pricing.black76`, the formula the margin models use), one fixed
IV per option, on the index of its seeded price path (underlying USD price / quote USD price).

The desk's starting mark need not equal Black-76 at its IV (a desk types plausible numbers,
not model values). The simulator keeps the desk's mark at the seed instant and treats the
difference as a premium offset that fades like time value, to nothing at expiry::

    mark(t) = max(0, B76(F_t, K, T_t, σ) + (mark_0 − B76(F_0, K, T_0, σ)) · √(T_t / T_0))

F is the forward (index), T the years to expiry (ACT/365). At the seed instant the offset term
restores the desk's mark exactly, so a freshly seeded venue reports the desk's marks to the
digit; afterwards a mark moves with the price path like Black-76 (its delta, gamma and theta
are Black-76's) and converges to the intrinsic value at expiry, which is what an expired option
is worth. With ``frozen_time`` (``pmr sim serve --prices frozen``) T stays at the seed instant,
so marks do not decay either and a client sees the same figures in every run.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import numpy as np

from core.pricing import SECONDS_PER_YEAR, black76, black76_delta
from core.venues.parse_options import BINANCE_OPTION_ID

__all__ = [
    "OptionBook",
    "OptionQuote",
    "SimOption",
    "SimOptionPosition",
    "binance_option_id_problem",
]

ZERO = Decimal(0)
_Q8 = Decimal("0.00000001")


def binance_option_id_problem(
    symbol: str, *, underlying: str, expiry: datetime, strike: Decimal, is_call: bool
) -> str | None:
    """Why ``symbol`` is not the Binance id of this option, or ``None`` when it is.

    >>> from datetime import datetime, UTC
    >>> binance_option_id_problem("BTC-270326-100000-C", underlying="BTC",
    ...     expiry=datetime(2027, 3, 26, 8, tzinfo=UTC), strike=Decimal(100000), is_call=True)
    >>> binance_option_id_problem("BTC-27MAR27-100000-C", underlying="BTC",
    ...     expiry=datetime(2027, 3, 26, 8, tzinfo=UTC), strike=Decimal(100000), is_call=True)
    'not a Binance option id BASE-YYMMDD-STRIKE-C|P'
    """
    m = BINANCE_OPTION_ID.match(symbol)
    if m is None:
        return "not a Binance option id BASE-YYMMDD-STRIKE-C|P"
    base, yymmdd, strike_text, right = m.groups()
    expected = expiry.astimezone(UTC).strftime("%y%m%d")
    if base != underlying:
        return f"its id names {base}, the instrument's underlying is {underlying}"
    if yymmdd != expected:
        return f"its id expires {yymmdd}, the instrument on {expected}"
    if Decimal(strike_text) != strike:
        return f"its id strikes at {strike_text}, the instrument at {strike}"
    if (right == "C") != is_call:
        return f"its id is a {'call' if right == 'C' else 'put'}, the instrument is not"
    return None


@dataclass(frozen=True, slots=True)
class SimOption:
    """One listed option: a Binance European option, USDT-quoted, ``unit`` coins per contract."""

    symbol: str
    underlying: str
    quote: str
    strike: Decimal
    expiry_ns: int
    is_call: bool
    iv: Decimal  # the fixed mark IV (annualised, 0.52 = 52 %)
    unit: Decimal
    seed_mark: Decimal  # the desk's mark at the seed instant

    @property
    def index_symbol(self) -> str:
        """Binance's underlying id for ``/eapi/v1/index`` (``BTCUSDT``)."""
        return self.underlying + self.quote

    @property
    def right(self) -> str:
        return "CALL" if self.is_call else "PUT"


@dataclass(slots=True)
class SimOptionPosition:
    """A held option: signed ``qty`` contracts (short < 0) bought or sold at ``entry_price``."""

    symbol: str
    qty: Decimal
    entry_price: Decimal


@dataclass(frozen=True, slots=True)
class OptionQuote:
    """An option's mark with what Binance reports next to it (``/eapi/v1/mark``).

    ``index`` is the underlying's forward in the quote asset, ``at_ns`` its time (the mark
    carries no time of its own on Binance). Greeks are Black-76's: ``delta`` per unit of the
    underlying, ``gamma`` per unit of forward, ``theta_per_day`` in quote per day, and
    ``vega_per_vol_point`` in quote per 1 % of IV.
    """

    symbol: str
    mark: Decimal
    index: Decimal
    iv: Decimal
    delta: float
    gamma: float
    theta_per_day: float
    vega_per_vol_point: float
    at_ns: int


def _years(expiry_ns: int, ts_ns: int) -> float:
    return (expiry_ns - ts_ns) / 1e9 / SECONDS_PER_YEAR


def _value(opt: SimOption, forward: float, t_years: float) -> float:
    """Black-76 value per coin (r = 0); intrinsic once expired."""
    strike = float(opt.strike)
    if t_years <= 0:
        return max(forward - strike, 0.0) if opt.is_call else max(strike - forward, 0.0)
    value = black76(
        np.asarray(forward),
        np.asarray(strike),
        np.asarray(t_years),
        np.asarray(float(opt.iv)),
        np.asarray(opt.is_call),
    )
    return float(value)


def _greeks(opt: SimOption, forward: float, t_years: float) -> tuple[float, float, float, float]:
    """(delta, gamma, theta per day, vega per vol point) from Black-76 (r = 0)."""
    strike, sigma = float(opt.strike), float(opt.iv)
    if t_years <= 0:
        itm = forward > strike if opt.is_call else forward < strike
        return ((1.0 if opt.is_call else -1.0) if itm else 0.0), 0.0, 0.0, 0.0
    delta = float(
        black76_delta(
            np.asarray(forward),
            np.asarray(strike),
            np.asarray(t_years),
            np.asarray(sigma),
            np.asarray(opt.is_call),
        )
    )
    sd = sigma * math.sqrt(t_years)
    d1 = (math.log(forward / strike) + 0.5 * sd * sd) / sd
    pdf = math.exp(-0.5 * d1 * d1) / math.sqrt(2 * math.pi)
    gamma = pdf / (forward * sd)
    theta_per_day = -forward * pdf * sigma / (2 * math.sqrt(t_years)) / 365.0
    vega_per_vol_point = forward * pdf * math.sqrt(t_years) / 100.0
    return delta, gamma, theta_per_day, vega_per_vol_point


class OptionBook:
    """The options a simulated venue lists, the ones it holds, and their marks.

    Parameters
    ----------
    options
        The listed options.
    seed_forwards
        Each option's forward (index) at ``seed_ns``; the anchor of its mark.
    seed_ns
        The seed instant (the venue's start).
    frozen_time
        Price every option at ``seed_ns`` whatever the clock says (no time decay).
    """

    def __init__(
        self,
        options: Iterable[SimOption],
        *,
        seed_forwards: Mapping[str, Decimal],
        seed_ns: int,
        frozen_time: bool = False,
    ) -> None:
        self.options = {o.symbol: o for o in options}
        self.positions: dict[str, SimOptionPosition] = {}
        self._seed_ns = seed_ns
        self._frozen = frozen_time
        self._seed_value = {
            s: _value(o, float(seed_forwards[s]), _years(o.expiry_ns, seed_ns))
            for s, o in self.options.items()
        }

    def open_position(self, symbol: str, qty: Decimal, entry_price: Decimal) -> None:
        """Seed a held option (desk config ``[[positions]]`` in ``options``)."""
        if symbol not in self.options:
            raise KeyError(f"unknown option {symbol!r}")
        if Decimal(entry_price) < 0:
            raise ValueError(f"entry price of {symbol} must be >= 0, got {entry_price}")
        self.positions[symbol] = SimOptionPosition(symbol, Decimal(qty), Decimal(entry_price))

    def quote(self, symbol: str, forward: Decimal, at_ns: int, now_ns: int) -> OptionQuote:
        """The mark of ``symbol`` when its underlying's forward is ``forward`` (stamped ``at_ns``)."""
        opt = self.options[symbol]
        t0 = _years(opt.expiry_ns, self._seed_ns)
        t_years = t0 if self._frozen else _years(opt.expiry_ns, now_ns)
        f = float(forward)
        fade = Decimal(repr(math.sqrt(max(t_years, 0.0) / t0))) if t0 > 0 else Decimal(1)
        b0 = Decimal(repr(self._seed_value[symbol]))
        value = Decimal(repr(_value(opt, f, t_years))) + (opt.seed_mark - b0) * fade
        mark = max(ZERO, value).quantize(_Q8)
        delta, gamma, theta, vega = _greeks(opt, f, t_years)
        return OptionQuote(symbol, mark, forward, opt.iv, delta, gamma, theta, vega, at_ns)
