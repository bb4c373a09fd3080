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

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import numpy.typing as npt
from scipy.special import ndtr

from core.margin.scenarios import ScenarioMatrix

__all__ = ["DeltaBlock", "EngineResult", "OptionBlock", "RiskBook", "scenario_pnl", "worst_losses"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

# Elements (rows × scenarios) per chunk: keeps each temporary (256 KiB) inside the L2 cache.
_OPTION_CHUNK_ELEMS = 1 << 15
# Books at least this large (rows × scenarios) are re-priced on all cores.
_PARALLEL_MIN_ELEMS = 1 << 18
_WORKERS = max(1, min(8, os.cpu_count() or 1))
_EXECUTOR: ThreadPoolExecutor | None = None


def _executor() -> ThreadPoolExecutor:
    """One process-wide pool of worker threads, created on first use."""
    global _EXECUTOR
    if _EXECUTOR is None:
        _EXECUTOR = ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="pmr-margin")
    return _EXECUTOR


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
    """Convert USD value changes of rows (in place) into margin-currency PnL."""
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


def _chunk_bounds(group: IntArray, target_rows: int) -> list[tuple[int, int]]:
    """Split sorted rows into chunks of about ``target_rows`` that never cut a group."""
    n = int(group.size)
    if n == 0:
        return []
    starts, _ = _segments(group)
    wanted = np.arange(target_rows, n, target_rows)
    ix = np.searchsorted(starts, wanted)
    cuts = np.unique(starts[ix[ix < starts.size]])
    edges = [0, *(int(c) for c in cuts if 0 < c < n), n]
    return list(pairwise(edges))


def _run_chunks(
    n_elems: int, bounds: list[tuple[int, int]], work: Callable[[tuple[int, int]], None]
) -> None:
    if n_elems >= _PARALLEL_MIN_ELEMS and _WORKERS > 1 and len(bounds) > 1:
        list(_executor().map(work, bounds))
    else:
        for b in bounds:
            work(b)


def delta_pnl(block: DeltaBlock, matrix: ScenarioMatrix) -> FloatArray:
    """USD value change of every delta row in every scenario column (rows × S)."""
    out: FloatArray = block.delta_usd[:, None] * matrix.price_move[block.unit]
    return out


def _option_pre(block: OptionBlock, matrix: ScenarioMatrix) -> tuple[FloatArray, ...]:
    """Per-row and per-(unit, scenario) terms computed once per call, not per element."""
    sqrt_t = np.sqrt(block.t_years)
    put = (~block.is_call).astype(np.float64)
    growth = 1.0 + matrix.price_move
    return (
        growth,
        np.log(growth),
        sqrt_t,
        np.log(block.forward / block.strike),
        block.iv * block.vol_scale,
        put,
        _black76(block.forward, block.strike, sqrt_t, block.iv, put),
    )


def _option_chunk(
    block: OptionBlock,
    matrix: ScenarioMatrix,
    pre: tuple[FloatArray, ...],
    lo: int,
    hi: int,
) -> FloatArray:
    """Re-price option rows ``lo:hi`` in every column (one cache-sized chunk), USD change."""
    growth, log_growth, sqrt_t, ln_fk, iv_k, put, base = pre
    u = block.unit[lo:hi]
    sigma = matrix.vol_shock[u]
    sigma *= iv_k[lo:hi, None]
    sigma += block.iv[lo:hi, None]
    np.maximum(sigma, block.vol_floor[lo:hi, None], out=sigma)
    sd = sigma
    sd *= sqrt_t[lo:hi, None]
    # d1 = (ln(F0/K) + ln(1+m)) / sd + sd/2: the log is per (unit, scenario), not per element
    d1 = log_growth[u]
    d1 += ln_fk[lo:hi, None]
    d1 /= sd
    sd *= 0.5
    d1 += sd
    sd *= 2.0
    fwd = growth[u]
    fwd *= block.forward[lo:hi, None]
    strike = block.strike[lo:hi, None]
    val: FloatArray = ndtr(d1)
    val *= fwd
    d1 -= sd
    n2 = ndtr(d1)
    n2 *= strike
    val -= n2
    fwd -= strike  # put = call − (F − K)
    fwd *= put[lo:hi, None]
    val -= fwd
    val -= base[lo:hi, None]
    val *= block.size_usd[lo:hi, None]
    return val


def option_pnl(block: OptionBlock, matrix: ScenarioMatrix) -> FloatArray:
    """USD value change of every option row in every scenario column (rows × S), full re-pricing.

    Rows are processed in cache-sized chunks, spread over the machine's cores when the book is
    large (numpy and scipy ufuncs release the GIL).
    """
    n, s = block.size, matrix.n_scenarios
    out = np.empty((n, s))
    if n == 0:
        return out
    pre = _option_pre(block, matrix)
    chunk = max(1, _OPTION_CHUNK_ELEMS // max(s, 1))
    bounds = [(lo, min(n, lo + chunk)) for lo in range(0, n, chunk)]

    def work(b: tuple[int, int]) -> None:
        out[b[0] : b[1]] = _option_chunk(block, matrix, pre, *b)

    _run_chunks(n * s, bounds, work)
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
    ``keep_rows`` the per-row matrices are returned for per-position contributions. Each
    cache-sized chunk of rows is valued, converted and reduced into its groups while it is still
    in cache; chunks never split a group, so worker threads write disjoint group rows.

    Examples
    --------
    >>> res = scenario_pnl(book, stack_grids([unit_grid("BTC", ScenarioParams())]))  # doctest: +SKIP
    >>> res.group_pnl.shape  # (groups, scenarios)  # doctest: +SKIP
    (1, 35)
    """
    s = matrix.n_scenarios
    g = np.zeros((book.n_groups, s))
    d, o = book.delta, book.option
    d_rows = np.empty((d.size, s)) if keep_rows else None
    o_rows = np.empty((o.size, s)) if keep_rows else None
    target = max(1, _OPTION_CHUNK_ELEMS // max(s, 1))

    def delta_work(b: tuple[int, int]) -> None:
        lo, hi = b
        vals = d.delta_usd[lo:hi, None] * matrix.price_move[d.unit[lo:hi]]
        _to_margin_currency(vals, d.value0_usd[lo:hi], d.unit[lo:hi], d.pool[lo:hi], book, matrix)
        _reduce_into(vals, d.group[lo:hi], g, d_rows, lo)

    _run_chunks(d.size * s, _chunk_bounds(d.group, target), delta_work)
    if o.size:
        pre = _option_pre(o, matrix)
        value0 = o.size_usd * pre[-1]

        def option_work(b: tuple[int, int]) -> None:
            lo, hi = b
            vals = _option_chunk(o, matrix, pre, lo, hi)
            _to_margin_currency(vals, value0[lo:hi], o.unit[lo:hi], o.pool[lo:hi], book, matrix)
            _reduce_into(vals, o.group[lo:hi], g, o_rows, lo)

        _run_chunks(o.size * s, _chunk_bounds(o.group, target), option_work)
    return EngineResult(g, d_rows, o_rows)


def _reduce_into(
    vals: FloatArray, group: IntArray, g: FloatArray, rows_out: FloatArray | None, lo: int
) -> None:
    if rows_out is not None:
        rows_out[lo : lo + vals.shape[0]] = vals
    starts, seg_group = _segments(group)
    if starts.size:
        g[seg_group] += np.add.reduceat(vals, starts, axis=0)
