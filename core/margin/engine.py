"""Vectorised re-pricing: rows (positions, holdings) × scenarios as float64 arrays.

A ``RiskBook`` is a struct of arrays built once from one or many pools; ``scenario_pnl`` re-prices
every row in every column of a ``ScenarioMatrix`` and sums rows into (pool, unit) groups. It is
the hot path of the ``scenario`` model and of stress testing, so it does no Python work per row:

- *delta rows* (linear and inverse futures, spot, wallet holdings, cash): in USD the value change
  is exactly ``delta_usd × move`` (inverse too: contracts × face × S(1+m)/entry changes linearly
  in m), one multiply per row × scenario;
- *option rows*: Black-76 on the shocked forward F·(1+m) with the DTE-scaled shocked IV, minus the
  base value, computed in cache-sized row chunks.

PnL is measured in each pool's margin currency: for a row whose pool's margin currency moves in
the scenario (a coin-margined pool), pnl = (V0 + ΔV)/(P0·(1+m_mc)) − V0/P0; otherwise ΔV/P0.
This is how a short inverse perp in a BTC-margined pool loses q·(1 − 1/(1+m)) BTC (DESIGN §3.1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.special import ndtr

from core.margin.scenarios import ScenarioMatrix

__all__ = ["DeltaBlock", "EngineResult", "OptionBlock", "RiskBook", "scenario_pnl", "worst_losses"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

# Rows per option chunk: keeps each temporary (rows × scenarios) inside the L2 cache.
_OPTION_CHUNK_ELEMS = 1 << 14


def _segments(group: IntArray) -> tuple[IntArray, IntArray]:
    """Start index and group id of each run of equal ``group`` values (``group`` sorted)."""
    if group.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    if np.any(np.diff(group) < 0):
        raise ValueError("rows must be sorted by group")
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]]).astype(np.int64)
    return starts, group[starts]


@dataclass(frozen=True, slots=True)
class DeltaBlock:
    """Rows whose USD value moves linearly with their unit's price: ΔV = delta_usd × m."""

    group: IntArray
    unit: IntArray
    pool: IntArray
    delta_usd: FloatArray
    value0_usd: FloatArray

    @property
    def size(self) -> int:
        return int(self.group.size)


@dataclass(frozen=True, slots=True)
class OptionBlock:
    """Option rows: size_usd × (Black76(F·(1+m), K, T, σ′) − base) with σ′ = max(σ(1+v·k), floor).

    ``size_usd`` = contracts × contract size × (quote USD price for linear premiums, or
    underlying USD / forward for inverse premiums, which are Black-76 value / F in the coin).
    """

    group: IntArray
    unit: IntArray
    pool: IntArray
    size_usd: FloatArray
    forward: FloatArray
    strike: FloatArray
    t_years: FloatArray
    iv: FloatArray
    is_call: BoolArray
    vol_scale: FloatArray
    vol_floor: FloatArray

    @property
    def size(self) -> int:
        return int(self.group.size)

    def base_value(self) -> FloatArray:
        """Black-76 value per unit of underlying at the current forward and IV."""
        put = (~self.is_call).astype(np.float64)
        return _black76(self.forward, self.strike, np.sqrt(self.t_years), self.iv, put)

    def delta(self) -> FloatArray:
        """Forward delta ∂V/∂F per unit of underlying (N(d1), or N(d1) − 1 for puts)."""
        sd = self.iv * np.sqrt(self.t_years)
        d1 = (np.log(self.forward / self.strike) + 0.5 * sd * sd) / sd
        n1 = ndtr(d1)
        out: FloatArray = np.where(self.is_call, n1, n1 - 1.0)
        return out


def _black76(
    forward: FloatArray, strike: FloatArray, sqrt_t: FloatArray, sigma: FloatArray, put: FloatArray
) -> FloatArray:
    """Black-76, r = 0; ``put`` is 1.0 for puts (parity: put = call − (F − K)), else 0.0."""
    sd = sigma * sqrt_t
    d1 = np.log(forward / strike)
    d1 += 0.5 * sd * sd
    d1 /= sd
    call = forward * ndtr(d1)
    call -= strike * ndtr(d1 - sd)
    call -= put * (forward - strike)
    out: FloatArray = call
    return out


@dataclass(frozen=True, slots=True)
class RiskBook:
    """All rows of one or many pools, sorted by (pool, unit) group within each block.

    ``group_unit``/``group_pool`` map a group to its unit row and pool; ``pool_mc_price_usd`` is
    each pool's margin-currency USD price and ``pool_mc_unit`` its unit row (−1 when the margin
    currency is not a risk unit, e.g. USDT).
    """

    delta: DeltaBlock
    option: OptionBlock
    group_unit: IntArray
    group_pool: IntArray
    pool_mc_price_usd: FloatArray
    pool_mc_unit: IntArray

    @property
    def n_groups(self) -> int:
        return int(self.group_unit.size)

    def __post_init__(self) -> None:
        for block in (self.delta, self.option):
            _segments(block.group)  # raises if unsorted
        if not np.all(self.pool_mc_price_usd > 0):
            raise ValueError("margin-currency prices must be > 0")


@dataclass(frozen=True, slots=True)
class EngineResult:
    """Group PnL (G × S, margin currency, unweighted) and, if kept, per-row PnL matrices."""

    group_pnl: FloatArray
    delta_pnl: FloatArray | None
    option_pnl: FloatArray | None


def _mc_rows(
    book: RiskBook, unit: IntArray, pool: IntArray, joint: bool
) -> tuple[IntArray, IntArray]:
    """Rows whose margin currency moves in the scenarios, and the unit row giving its move."""
    mc_unit = book.pool_mc_unit[pool]
    rows = np.flatnonzero(mc_unit >= 0) if joint else np.flatnonzero(mc_unit == unit)
    return rows, mc_unit[rows]


def _to_margin_currency(
    dv: FloatArray,
    value0: FloatArray,
    unit: IntArray,
    pool: IntArray,
    book: RiskBook,
    matrix: ScenarioMatrix,
) -> None:
    """Convert USD value changes of rows ``row0 …`` (in place) into margin-currency PnL."""
    p0 = book.pool_mc_price_usd[pool]
    rows, mc_row = _mc_rows(book, unit, pool, matrix.joint)
    if rows.size:
        mc_factor = 1.0 + matrix.price_move[mc_row]
        v0 = value0[rows, None]
        shocked = (v0 + dv[rows]) / (p0[rows, None] * mc_factor) - v0 / p0[rows, None]
        dv /= p0[:, None]
        dv[rows] = shocked
    elif not np.all(p0 == 1.0):
        dv /= p0[:, None]


def _reduce(pnl: FloatArray, group: IntArray, out: FloatArray) -> None:
    starts, seg_group = _segments(group)
    if starts.size:
        out[seg_group] += np.add.reduceat(pnl, starts, axis=0)


def delta_pnl(block: DeltaBlock, matrix: ScenarioMatrix) -> FloatArray:
    """USD value change of every delta row in every scenario column (rows × S)."""
    out: FloatArray = block.delta_usd[:, None] * matrix.price_move[block.unit]
    return out


def option_pnl(block: OptionBlock, matrix: ScenarioMatrix) -> FloatArray:
    """USD value change of every option row in every scenario column (rows × S), full re-pricing."""
    n, s = block.size, matrix.n_scenarios
    out = np.empty((n, s))
    if n == 0:
        return out
    sqrt_t = np.sqrt(block.t_years)
    put = (~block.is_call).astype(np.float64)
    base = _black76(block.forward, block.strike, sqrt_t, block.iv, put)
    chunk = max(1, _OPTION_CHUNK_ELEMS // max(s, 1))
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        u = block.unit[lo:hi]
        fwd = block.forward[lo:hi, None] * (1.0 + matrix.price_move[u])
        sigma = block.iv[lo:hi, None] * (1.0 + matrix.vol_shock[u] * block.vol_scale[lo:hi, None])
        np.maximum(sigma, block.vol_floor[lo:hi, None], out=sigma)
        val = _black76(fwd, block.strike[lo:hi, None], sqrt_t[lo:hi, None], sigma, put[lo:hi, None])
        val -= base[lo:hi, None]
        val *= block.size_usd[lo:hi, None]
        out[lo:hi] = val
    return out


def worst_losses(
    result: EngineResult, book: RiskBook, matrix: ScenarioMatrix
) -> tuple[FloatArray, IntArray]:
    """Scan risk per group (largest weighted loss, ≥ 0) and the column where it occurs."""
    loss = -result.group_pnl * matrix.weight[book.group_unit]
    worst: IntArray = np.argmax(loss, axis=1).astype(np.int64)
    scan: FloatArray = np.maximum(loss[np.arange(loss.shape[0]), worst], 0.0)
    return scan, worst


def scenario_pnl(book: RiskBook, matrix: ScenarioMatrix, *, keep_rows: bool = True) -> EngineResult:
    """Re-price every row of ``book`` in every column of ``matrix``; sum rows into groups.

    Returns margin-currency PnL (unweighted; apply ``matrix.weight`` for losses). With
    ``keep_rows`` the per-row matrices are returned for per-position contributions.

    Examples
    --------
    >>> res = scenario_pnl(book, stack_grids([unit_grid("BTC", ScenarioParams())]))  # doctest: +SKIP
    >>> res.group_pnl.shape  # (groups, scenarios)  # doctest: +SKIP
    (1, 35)
    """
    g = np.zeros((book.n_groups, matrix.n_scenarios))
    d, o = book.delta, book.option
    dpnl = delta_pnl(d, matrix)
    _to_margin_currency(dpnl, d.value0_usd, d.unit, d.pool, book, matrix)
    _reduce(dpnl, d.group, g)
    opnl = option_pnl(o, matrix)
    if o.size:
        value0 = o.size_usd * o.base_value()
        _to_margin_currency(opnl, value0, o.unit, o.pool, book, matrix)
        _reduce(opnl, o.group, g)
    if keep_rows:
        return EngineResult(g, dpnl, opnl)
    return EngineResult(g, None, None)
