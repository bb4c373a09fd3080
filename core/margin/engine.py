"""Vectorised re-pricing: rows (positions, holdings) × scenarios as float64 arrays.

A ``RiskBook`` is a struct of arrays built once from one or many pools; ``scenario_pnl`` re-prices
every row in every column of a ``ScenarioMatrix`` and sums rows into (pool, unit) groups. It is
the hot path of the ``scenario`` model and of stress testing, so it does no Python work per row
or per group:

- *delta rows* (linear and inverse futures, spot, wallet holdings, cash): in USD the value change
  is exactly ``delta_usd × move`` (inverse too: contracts × face × S(1+m)/entry changes linearly
  in m). A group's rows share one unit and one pool, so its PnL depends on its rows only through
  Σ delta_usd and Σ value0_usd: one ``reduceat`` each over the whole book, then one
  groups × scenarios product. Per-row results (``keep_rows``) are one rows × scenarios product,
  summed into groups by the same runs (the from-scratch twin of the group sums);
- *option rows*: Black-76 on the shocked forward F·(1+m) with the DTE-scaled shocked IV, minus the
  base value, computed in cache-sized row chunks, on worker threads for large books (the two
  normal CDFs per element dominate and release the GIL).

PnL is measured in each pool's margin currency: for a row whose pool's margin currency moves in
the scenario (a coin-margined pool), pnl = (V0 + ΔV)/(P0·(1+m_mc)) − V0/P0; otherwise ΔV/P0.
This is how a short inverse perp in a BTC-margined pool loses q·(1 − 1/(1+m)) BTC (DESIGN §3.1).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import pairwise
from typing import NamedTuple, TypeVar

import numpy as np
import numpy.typing as npt
from scipy.special import ndtr

from core.margin.scenarios import ScenarioMatrix

__all__ = [
    "DeltaBlock",
    "EngineResult",
    "OptionBlock",
    "RiskBook",
    "Runs",
    "scenario_pnl",
    "worst_losses",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

# Option elements (rows × scenarios) per chunk: keeps each temporary (256 KiB) near the L2 cache.
_CHUNK_ELEMS = 1 << 15
# Option blocks at least this large (rows × scenarios) are valued on worker threads: the normal
# CDFs dominate and release the GIL. Delta rows never use threads: they are a few whole-book
# array passes, where thread hand-offs cost more than the second core saves.
_PARALLEL_MIN_ELEMS = 1 << 18
_WORKERS = max(1, min(8, os.cpu_count() or 1))
_EXECUTOR: ThreadPoolExecutor | None = None


def _executor() -> ThreadPoolExecutor:
    """One process-wide pool of worker threads, created on first use."""
    global _EXECUTOR
    if _EXECUTOR is None:
        _EXECUTOR = ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="pmr-margin")
    return _EXECUTOR


def _forget_executor_after_fork() -> None:
    """A forked child has none of its parent's threads: an inherited pool would take work and
    never run it, so the child creates its own on first use."""
    global _EXECUTOR
    _EXECUTOR = None


os.register_at_fork(after_in_child=_forget_executor_after_fork)


class Runs(NamedTuple):
    """The contiguous run of rows of each group in a block: first row and group id per run."""

    starts: IntArray
    group: IntArray


def _changes(x: IntArray) -> IntArray:
    """Indices where a non-empty ``x`` starts a new run of equal values (0 first)."""
    out: IntArray = np.flatnonzero(np.concatenate(([True], x[1:] != x[:-1]))).astype(np.int64)
    return out


def _runs(group: IntArray) -> Runs:
    """Runs of equal ``group`` values; a group met in two runs is refused (rows not contiguous)."""
    if group.size == 0:
        return Runs(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
    starts = _changes(group)
    seg_group = group[starts]
    if np.unique(seg_group).size != seg_group.size:
        raise ValueError("the rows of each group must be contiguous")
    return Runs(starts, seg_group)


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
    """All rows of one or many pools; within each block the rows of a (pool, unit) group are
    contiguous (``build_risk_book`` orders them by unit, then group).

    ``group_unit``/``group_pool`` map a group to its unit row and pool; ``pool_mc_price_usd`` is
    each pool's margin-currency USD price and ``pool_mc_unit`` its unit row (−1 when the margin
    currency is not a risk unit, e.g. USDT).

    ``delta_runs``/``option_runs`` (derived, not passed) locate each group's rows; they are found
    once here, where contiguity is checked, so every ``scenario_pnl`` call sums groups by
    ``reduceat`` over known runs instead of re-deriving them.
    """

    delta: DeltaBlock
    option: OptionBlock
    group_unit: IntArray
    group_pool: IntArray
    pool_mc_price_usd: FloatArray
    pool_mc_unit: IntArray
    delta_runs: Runs = field(init=False, repr=False, compare=False)
    option_runs: Runs = field(init=False, repr=False, compare=False)

    @property
    def n_groups(self) -> int:
        return int(self.group_unit.size)

    def __post_init__(self) -> None:
        # frozen: derived fields are set once, here
        object.__setattr__(self, "delta_runs", _runs(self.delta.group))
        object.__setattr__(self, "option_runs", _runs(self.option.group))
        if not np.all(self.pool_mc_price_usd > 0):
            raise ValueError("margin-currency prices must be > 0")
        # group-level sums (delta rows) take the unit and pool of the group, not of each row
        for block in (self.delta, self.option):
            if not (
                np.array_equal(block.unit, self.group_unit[block.group])
                and np.array_equal(block.pool, self.group_pool[block.group])
            ):
                raise ValueError("every row must have the unit and pool of its group")


@dataclass(frozen=True, slots=True)
class EngineResult:
    """Group PnL (G × S, margin currency, unweighted) and, if kept, per-row PnL matrices.

    ``delta_pnl`` (rows × S) is the transposed view of a scenarios-major array; index it
    freely, but take ``np.ascontiguousarray`` before handing it to code that needs C order.
    """

    group_pnl: FloatArray
    delta_pnl: FloatArray | None
    option_pnl: FloatArray | None


_Chunk = TypeVar("_Chunk")


class _Rows(NamedTuple):
    """A chunk of rows of one unit: rows lo:hi, their group segments s_lo:s_hi (``unit`` −1:
    the whole block in one chunk, each row's unit gathered)."""

    lo: int
    hi: int
    s_lo: int
    s_hi: int
    unit: int


@dataclass(frozen=True, slots=True)
class _BlockPlan:
    """Per-call bookkeeping of the option block, computed once (not per chunk).

    ``chunks`` hold one unit each and never cut a group, so chunks write disjoint rows of the
    group matrix; ``mc_rows`` are the rows whose margin currency moves
    (with ``mc_unit`` the unit row giving its move); ``inv_p0`` is 1 / margin-currency price.
    """

    chunks: list[_Rows]
    starts: IntArray
    seg_group: IntArray
    inv_p0: FloatArray
    scale: bool
    mc_rows: IntArray
    mc_unit: IntArray


def _group_mc_unit(book: RiskBook, joint: bool) -> IntArray:
    """Per group, the unit row whose move re-prices its pool's margin currency, or −1.

    In a joint matrix every unit moves in every column, so a coin-margined pool's margin
    currency moves for all its groups; in a per-unit matrix column s of a group is only its own
    unit's scenario, so the margin currency moves only for the group of that very unit.
    """
    mc: IntArray = book.pool_mc_unit[book.group_pool]
    if joint:
        return mc
    out: IntArray = np.where(mc == book.group_unit, mc, -1)
    return out


def _plan(book: RiskBook, block: OptionBlock, group_mc: IntArray, n_cols: int) -> _BlockPlan:
    """Cut a block into one-unit chunks of about ``_CHUNK_ELEMS`` elements at group starts; a
    block of at most that many elements is one chunk (a pool's own book, most often: cutting it
    per unit costs more in calls than broadcasting saves)."""
    group, unit = block.group, block.unit
    n = int(group.size)
    starts, seg_group = book.option_runs
    target = max(1, _CHUNK_ELEMS // max(n_cols, 1))
    chunks: list[_Rows] = []
    if n and n <= target:
        chunks.append(_Rows(0, n, 0, int(starts.size), -1))
    elif n:
        # cut where the unit changes (a group has one unit, so only at segment starts) …
        seg_unit = unit[starts]
        unit_cuts = _changes(seg_unit)
        unit_edges = [*(int(c) for c in unit_cuts), int(starts.size)]
        for u_lo, u_hi in pairwise(unit_edges):
            # … and about every ``target`` rows, at the next segment start
            row_lo = int(starts[u_lo])
            row_hi = int(starts[u_hi]) if u_hi < starts.size else n
            if row_hi - row_lo <= target:
                chunks.append(_Rows(row_lo, row_hi, u_lo, u_hi, int(seg_unit[u_lo])))
                continue
            wanted = np.arange(row_lo + target, row_hi, target)
            ix = np.searchsorted(starts[u_lo:u_hi], wanted) + u_lo
            cut_segs = np.unique(ix[ix < u_hi])
            seg_edges = [u_lo, *(int(c) for c in cut_segs if c > u_lo), u_hi]
            for s_lo, s_hi in pairwise(seg_edges):
                lo = int(starts[s_lo])
                hi = int(starts[s_hi]) if s_hi < starts.size else n
                chunks.append(_Rows(lo, hi, s_lo, s_hi, int(seg_unit[s_lo])))
    p0 = book.pool_mc_price_usd[block.pool]
    mc_of_row = group_mc[group]
    mc_rows = np.flatnonzero(mc_of_row >= 0)
    return _BlockPlan(
        chunks,
        starts,
        seg_group,
        1.0 / p0,
        bool(np.any(p0 != 1.0)),
        mc_rows,
        mc_of_row[mc_rows],
    )


def _convert_and_reduce(
    vals: FloatArray,
    value0: FloatArray,
    plan: _BlockPlan,
    chunk: _Rows,
    matrix: ScenarioMatrix,
    g: FloatArray,
    rows_out: FloatArray | None,
) -> None:
    """Turn USD value changes of one chunk (scenarios × rows) into margin-currency PnL and add
    them to the groups.

    pnl = ΔV / P0 for most rows; where the margin currency moves with the scenario (a
    coin-margined pool), pnl = (V0 + ΔV) / (P0·(1 + m_mc)) − V0 / P0.
    """
    lo, hi, s_lo, s_hi, _ = chunk
    r_lo, r_hi = np.searchsorted(plan.mc_rows, (lo, hi))
    if plan.scale or r_hi > r_lo:
        inv_p0 = plan.inv_p0[lo:hi]
        cols = plan.mc_rows[r_lo:r_hi] - lo
        if cols.size:
            v0 = value0[lo:hi][cols]
            growth = 1.0 + matrix.price_move_t[:, plan.mc_unit[r_lo:r_hi]]
            shocked = (v0 + vals[:, cols]) * inv_p0[cols] / growth
            shocked -= v0 * inv_p0[cols]
            vals *= inv_p0
            vals[:, cols] = shocked
        else:
            vals *= inv_p0
    if rows_out is not None:
        rows_out[lo:hi] = vals.T
    if s_hi > s_lo:
        sums = np.add.reduceat(vals, plan.starts[s_lo:s_hi] - lo, axis=1)
        g[plan.seg_group[s_lo:s_hi]] += sums.T


def _delta_group_pnl(book: RiskBook, matrix: ScenarioMatrix, group_mc: IntArray) -> FloatArray:
    """Group PnL (G × S) of the delta rows from per-group sums, without rows × scenarios work.

    All rows of a group share its unit (move m) and pool (price P0, margin-currency move m_mc),
    and a delta row's PnL is (δ·m)/P0, or (V0 + δ·m)/(P0·(1 + m_mc)) − V0/P0 where the margin
    currency moves. Both are linear in (δ, V0), so with B = Σδ/P0 and A = ΣV0/P0 over the
    group's rows the group PnL is B·m, or (A + B·m)/(1 + m_mc) − A: one ``reduceat`` over the
    book's group runs per sum, then one groups × scenarios product. ``_delta_row_pnl`` is the
    row-by-row twin (tests hold the two equal).
    """
    d = book.delta
    n_groups = book.n_groups
    inv_p0 = 1.0 / book.pool_mc_price_usd[book.group_pool]
    b = _group_sums(d.delta_usd, book.delta_runs, n_groups)
    b *= inv_p0
    g: FloatArray = matrix.price_move[book.group_unit]  # a fresh (G × S) array
    g *= b[:, None]
    mc_groups = np.flatnonzero(group_mc >= 0)
    if mc_groups.size:
        v0_sum = _group_sums(d.value0_usd, book.delta_runs, n_groups)
        a = (inv_p0[mc_groups] * v0_sum[mc_groups])[:, None]
        growth = 1.0 + matrix.price_move[group_mc[mc_groups]]
        g[mc_groups] = (a + g[mc_groups]) / growth - a
    return g


def _delta_row_pnl(book: RiskBook, matrix: ScenarioMatrix, group_mc: IntArray) -> FloatArray:
    """Per-row PnL of the delta rows, element by element, as a (scenarios × rows) array.

    pnl = δ·m/P0, or (V0 + δ·m)/(P0·(1 + m_mc)) − V0/P0 where the pool's margin currency moves.
    Scenarios are the outer axis so every pass (the multiply, the per-group ``reduceat``) runs
    along long contiguous rows; rows come ordered by unit, so each unit's rows take one
    broadcast multiply with its scenario moves, written straight into the result.
    """
    d = book.delta
    inv_p0 = 1.0 / book.pool_mc_price_usd[d.pool]
    w = d.delta_usd * inv_p0
    cols: FloatArray = np.empty((matrix.n_scenarios, d.size))
    if d.size:
        unit_starts = _changes(d.unit)
        move_t = matrix.price_move_t
        for lo, hi in pairwise([*(int(i) for i in unit_starts), d.size]):
            np.multiply(move_t[:, d.unit[lo], None], w[lo:hi], out=cols[:, lo:hi])
    mc_of_row = group_mc[d.group]
    mc_rows = np.flatnonzero(mc_of_row >= 0)
    if mc_rows.size:
        v0 = d.value0_usd[mc_rows] * inv_p0[mc_rows]
        growth = 1.0 + matrix.price_move_t[:, mc_of_row[mc_rows]]
        cols[:, mc_rows] = (v0 + cols[:, mc_rows]) / growth - v0
    return cols


def _group_sums(values: FloatArray, runs: Runs, n_groups: int) -> FloatArray:
    """Per-group sums along the last (rows) axis of ``values``, whose groups are ``runs``.

    (rows,) gives (G,); (S × rows) gives (G × S), with ``reduceat`` along contiguous rows.
    """
    out: FloatArray = np.zeros((n_groups, *values.shape[:-1]))
    if runs.starts.size:
        out[runs.group] = np.add.reduceat(values, runs.starts, axis=-1).T
    return out


def _run_chunks(n_elems: int, bounds: list[_Chunk], work: Callable[[_Chunk], None]) -> None:
    """Run ``work`` on every chunk, on the worker threads when the block is large."""
    if n_elems >= _PARALLEL_MIN_ELEMS and _WORKERS > 1 and len(bounds) > 1:
        list(_executor().map(work, bounds))
    else:
        for b in bounds:
            work(b)


def _option_pre(block: OptionBlock, matrix: ScenarioMatrix) -> tuple[FloatArray, ...]:
    """Per-row and per-(unit, scenario) terms computed once per call, not per element.

    Volatility terms are kept as half of σ·√T so d1,2 = (ln(F0/K) + ln(1+m)) / (2h) ± h need no
    extra halving pass.

    With s = size_usd, the value change of a row is
    s·F·(N(d1) − put) − s·K·N(d2) + s·(put·K − base), F = F0·(1+m), which is Black-76 for calls
    and, by parity (put = call − F + K), for puts; base is the current Black-76 value.
    """
    sqrt_t = np.sqrt(block.t_years)
    put = (~block.is_call).astype(np.float64)
    growth = 1.0 + matrix.price_move_t
    base = _black76(block.forward, block.strike, sqrt_t, block.iv, put)
    size = block.size_usd
    half_sqrt_t = 0.5 * sqrt_t
    return (
        growth,
        0.5 * np.log(growth),
        0.5 * np.log(block.forward / block.strike),
        block.iv * half_sqrt_t,
        block.iv * block.vol_scale * half_sqrt_t,
        block.vol_floor * half_sqrt_t,
        put,
        size * block.forward,
        size * block.strike,
        size * (put * block.strike - base),
        base,
    )


def _option_chunk(
    block: OptionBlock,
    matrix: ScenarioMatrix,
    pre: tuple[FloatArray, ...],
    c: _Rows,
) -> FloatArray:
    """Re-price the option rows of chunk ``c`` in every column: (scenarios × rows).

    Scenarios are the outer axis, so per-scenario terms broadcast as (S, 1) columns and per-row
    terms as (1, rows) along long contiguous inner loops; no gather is needed when the chunk's
    rows share one unit (a chunk of the whole block, ``unit`` −1, gathers each row's: the same
    figures, element by element).
    """
    growth, half_log_g, half_ln_fk, h_iv, h_ivk, h_floor, put, s_f0, s_k, const, _ = pre
    lo, hi, u = c.lo, c.hi, c.unit
    terms = (matrix.vol_shock_t, half_log_g, growth)
    if u >= 0:  # one unit: its scenario terms broadcast as (S, 1) columns
        vol, log_g, grow = (a[:, u, None] for a in terms)
    else:  # the whole block: each row's unit gathered
        vol, log_g, grow = (a[:, block.unit[lo:hi]] for a in terms)
    # h = σ′·√T / 2 with σ′ = max(σ·(1 + v·k), floor)
    h = vol * h_ivk[lo:hi]
    h += h_iv[lo:hi]
    if np.any(h_iv[lo:hi] + float(vol.min()) * h_ivk[lo:hi] < h_floor[lo:hi]):
        np.maximum(h, h_floor[lo:hi], out=h)
    # d1,2 = (ln(F0/K) + ln(1+m)) / (2h) ± h: the log is per (unit, scenario), not per element
    x = log_g + half_ln_fk[lo:hi]
    x /= h
    d1 = x + h
    x -= h
    n1 = ndtr(d1, out=d1)
    n1 -= put[lo:hi]
    n1 *= grow
    n1 *= s_f0[lo:hi]
    n2 = ndtr(x, out=x)
    n2 *= s_k[lo:hi]
    n1 -= n2
    n1 += const[lo:hi]
    out: FloatArray = n1
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

    Delta rows cost a few whole-book array operations (per-group sums then one groups ×
    scenarios product, or with ``keep_rows`` one rows × scenarios product summed by group).
    Option rows are valued in cache-sized chunks, each converted and reduced into its groups
    while still in cache; chunks never split a group, so worker threads write disjoint group
    rows.

    Examples
    --------
    >>> res = scenario_pnl(book, stack_grids([unit_grid("BTC", ScenarioParams())]))  # doctest: +SKIP
    >>> res.group_pnl.shape  # (groups, scenarios)  # doctest: +SKIP
    (1, 35)
    """
    s = matrix.n_scenarios
    o = book.option
    group_mc = _group_mc_unit(book, matrix.joint)
    d_rows: FloatArray | None = None
    if keep_rows:
        d_cols = _delta_row_pnl(book, matrix, group_mc)  # scenarios × rows
        g = _group_sums(d_cols, book.delta_runs, book.n_groups)
        d_rows = d_cols.T
    else:
        g = _delta_group_pnl(book, matrix, group_mc)
    o_rows = np.empty((o.size, s)) if keep_rows else None
    if o.size:
        _ = (matrix.price_move_t, matrix.vol_shock_t)  # build the cached layouts before any thread
        pre = _option_pre(o, matrix)
        value0 = o.size_usd * pre[-1]  # current Black-76 value of each row, USD
        o_plan = _plan(book, o, group_mc, s)

        def option_work(c: _Rows) -> None:
            vals = _option_chunk(o, matrix, pre, c)
            _convert_and_reduce(vals, value0, o_plan, c, matrix, g, o_rows)

        _run_chunks(o.size * s, o_plan.chunks, option_work)
    return EngineResult(g, d_rows, o_rows)
