"""Post-shock margin for many pools × many scenarios at once, as float64 arrays (issue 15).

``evaluate`` re-prices the ``Portfolio`` in ``Decimal`` and runs each pool's margin model once per
pool × scenario (about 1.5 ms each). This module compiles the desk state **once** into a struct
of arrays and evaluates every pool in every column of a batch of scenarios (named scenarios or
Monte Carlo paths) with whole-array operations. It computes the same quantities as the exact
path, in float64:

- **equity**: per asset line (pool × asset, and wallet × asset for siloed pools) the balance net
  plus the positions' booked values at the shocked marks (linear and inverse futures exactly,
  options at ``mark + Black76(F', σ') − Black76(F, σ)`` with the shock's floor, as
  ``core.stress.shocks`` does), valued at the shocked USD price and counted at its collateral
  rate (flat or tiered, negative nets at 100 %);
- **unified / standard MM**: every rule re-evaluated on the shocked inputs: notional brackets
  (the bracket is looked up again at the shocked notional), size-scaled futures, Bybit's
  short-option rule, margin-loan MM × the shocked price; silos kept apart for ``standard``;
- **scenario MM**: *exact*, not approximated: the risk book is re-built **around the shocked
  state** (delta rows scale linearly: δ′ = δ·(1+m_u), V0′ = δ·(1+m_u) − (δ − V0)·(1+m_q);
  option rows get the shocked forward, IV and size) and the whole unit grid, delta charge, roll
  shock, offset credits and joint-crash floor are computed for every (pool, scenario) by the
  engine (``core.margin.engine.scenario_pnl``) in one call per batch: each column of the batch
  becomes its own copy of the pools in one large ``RiskBook``. Option rows are re-priced once
  per **distinct contract** and column (Black-76 is per unit of size; pools holding the same
  listed option differ only in size), then summed into groups by size (``_OptionCopies``);
  the equity's option marks likewise.

Nothing here is an approximation of the models: the differences to ``evaluate_pool`` are float
rounding (the exact path quantises money to 1e-8 USD and ratios to 1e-9 and keeps option marks at
1e-8). ``tests/stress/test_stress_fast.py`` holds ratio, equity and MM to a relative 1e-9
(plus 1e-6 USD) on the example desk for every library scenario and on random pools and moves.

``evaluate_fast`` returns the same ``PoolStress`` rows as ``evaluate``: the fast figures for
every pool, and the exact path (``evaluate_pool`` and the dry-run router) only for the pools in
deficit, or within a cent of it. ``pool_monte_carlo_fast`` is ``pool_monte_carlo`` on the same
draws, batch by batch.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import pairwise
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from scipy import sparse

from core.domain import (
    Balance,
    InstrumentKind,
    MarginModelKind,
    Portfolio,
    Position,
    Settlement,
    WalletKind,
)
from core.errors import ConfigError, DataError
from core.margin.api import params_for_pool
from core.margin.book import PoolBook, build_book
from core.margin.engine import (
    DeltaBlock,
    OptionBlock,
    RiskBook,
    Runs,
    _group_mc_unit,
    scenario_pnl,
)
from core.margin.levels import desk_level_for, venue_band_for
from core.margin.params import MarginParams
from core.margin.pricing import black76
from core.margin.riskbook import RowLabels, build_risk_book
from core.margin.scenarios import ScenarioMatrix, crash_matrix, extended_weight, stack_grids
from core.margin.scenarios import unit_grid as _unit_grid
from core.params import CollateralRate, CrashScenario
from core.stress.cover import CoverSolver
from core.stress.evaluate import BuildInput, PoolStress, ShockedStates, _default_input, _one
from core.stress.montecarlo import PoolMonteCarlo, draw_returns
from core.stress.scenarios import Scenario

if TYPE_CHECKING:
    from core.config import DeskConfig

__all__ = [
    "FastDesk",
    "FastMargin",
    "Moves",
    "compile_desk",
    "evaluate_fast",
    "fast_margin",
    "moves_from_draws",
    "moves_from_scenarios",
    "pool_monte_carlo_fast",
    "stress_rows",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

_USD = "USD"
_SPOT, _LINEAR, _INVERSE, _OPTION = 0, 1, 2, 3
# Rule codes of a position's maintenance margin (unified / standard pools).
_NO_RULE, _BRACKET, _SIZE_SCALED, _SHORT_OPTION = 0, 1, 2, 3
_MODEL_CODE = {MarginModelKind.UNIFIED: 0, MarginModelKind.STANDARD: 1, MarginModelKind.SCENARIO: 2}
# Virtual rows per engine call for scenario-model pools (bounds memory: ~100 B per row-column),
# and group × grid cells per call (the groups' PnL over the unit grid, a few arrays of 8 B each).
_ENGINE_ROWS = 400_000
_GROUP_CELLS = 1 << 21
_ZERO = Decimal(0)
_RATIO_Q = Decimal("1e-9")
_CENT = Decimal("0.01")


def _fa(x: Iterable[float]) -> FloatArray:
    return np.asarray(list(x), dtype=np.float64)


def _ia(x: Iterable[int]) -> IntArray:
    return np.asarray(list(x), dtype=np.int64)


# --------------------------------------------------------------------------- compiled desk


@dataclass(frozen=True, slots=True)
class _Lines:
    """Asset lines (one per owner × asset): balance net, USD price, factor column, rate."""

    owner: IntArray  # pool index (pool lines) or silo index (silo lines)
    asset: IntArray  # factor column of the asset
    venue: IntArray
    bnet: FloatArray
    price_usd: FloatArray
    flat_rate: FloatArray  # nan where the rate is tiered
    tiered: tuple[tuple[IntArray, FloatArray, FloatArray, FloatArray], ...]  # lines, from, to, rate
    from_rows: sparse.csr_matrix  # (lines × position rows): which rows book into the line

    def collateral(self, value: FloatArray) -> FloatArray:
        """Collateral value of each line's USD ``value`` (lines × S): ``collateral_value_usd``."""
        out = np.where(value > 0, value * np.nan_to_num(self.flat_rate, nan=1.0)[:, None], value)
        for lines, lo, hi, rate in self.tiered:
            v = value[lines]
            credited = np.zeros_like(v)
            for j in range(lo.size):
                credited += rate[j] * np.clip(v - lo[j], 0.0, hi[j] - lo[j])
            out[lines] = np.where(v > 0, credited, v)
        return out


@dataclass(frozen=True, slots=True)
class _Rows:
    """Every position of every pool (equity), with its maintenance-margin rule if it has one."""

    pool: IntArray
    venue: IntArray
    kind: IntArray
    u: IntArray  # factor column of the underlying
    q: IntArray  # factor column of the quote (the constant 1 column for USD)
    units: FloatArray
    entry: FloatArray
    mark: FloatArray
    quote_usd: FloatArray
    underlying_usd: FloatArray
    # options (zeros elsewhere)
    strike: FloatArray
    t_years: FloatArray
    iv: FloatArray
    forward: FloatArray
    is_call: BoolArray
    inverse_premium: BoolArray
    # maintenance-margin rule
    rule: IntArray
    table: IntArray  # bracket table index
    mm_base: FloatArray  # size-scaled: base rate; short option: a (mm_floor_frac)
    mm_per_unit: FloatArray  # size-scaled: per coin; short option: b (mm_index_frac)
    keys: tuple[str, ...]
    worst_order: IntArray  # rank in the exact report's contributions (−1: not a contribution)

    @property
    def size(self) -> int:
        return int(self.pool.size)


@dataclass(frozen=True, slots=True)
class _ScenarioPart:
    """The scenario-model pools: their base ``RiskBook`` and what shocking its rows needs."""

    pools: IntArray  # global pool index per local pool
    risk: RiskBook
    labels: RowLabels
    grid: ScenarioMatrix
    pool_venue: IntArray
    pool_mc_col: IntArray  # factor column of each pool's margin currency
    d_u: IntArray  # delta rows: factor column of the unit
    d_q: IntArray  # delta rows: factor column of the second price (quote, or the cash asset)
    d_inverse: BoolArray  # inverse future: its roll size is face / mark
    o_u: IntArray
    o_q: IntArray
    unit_col: IntArray  # factor column per unit of ``labels.units``
    unit_price_usd: FloatArray
    mm_factor: FloatArray  # per unit
    roll_frac: FloatArray
    delta_unhedged: FloatArray
    delta_hedged: FloatArray
    crash_weight: FloatArray  # per unit: crash.weight × extended weight at the unit's range
    crash_enabled: bool
    crash_mm_factor: float
    crash: CrashScenario
    offsets: tuple[tuple[float, IntArray, IntArray], ...]  # credit, group of a / b per pool (−1)
    worst_candidate: BoolArray  # delta rows then option rows: a position (not balance / cash)
    # option rows told apart by their terms (``_distinct``): first row of each contract, and
    # each row's contract (``_OptionCopies`` splits them further by how their venues move)
    contract_first: IntArray
    contract: IntArray


@dataclass(frozen=True, slots=True)
class FastDesk:
    """A desk state compiled once for ``fast_margin`` (``compile_desk``).

    ``assets`` name the factor columns (one more, last, is the constant 1 of nominal USD);
    ``venues`` the venues whose moves may differ (venue-local de-pegs).
    """

    pool_ids: tuple[str, ...]
    models: IntArray
    pool_venue: IntArray
    assets: tuple[str, ...]
    venues: tuple[str, ...]
    rows: _Rows
    pool_lines: _Lines
    silo_lines: _Lines
    silo_pool: IntArray  # pool of each silo (standard pools; silos of a pool contiguous)
    row_silo: IntArray  # silo of each position row (−1 outside standard pools)
    loans: tuple[IntArray, IntArray, IntArray, FloatArray]  # pool, silo, factor column, base MM
    brackets: tuple[tuple[FloatArray, FloatArray, FloatArray], ...]  # caps, mmr, cum per table
    scenario: _ScenarioPart | None
    target: FloatArray
    liquidation: FloatArray
    thresholds: tuple[object, ...]
    venue_levels: tuple[object, ...]
    books: Mapping[str, PoolBook] = field(repr=False)

    @property
    def n_pools(self) -> int:
        return len(self.pool_ids)


def _rate_lines(
    rates: list[CollateralRate],
) -> tuple[FloatArray, tuple[tuple[IntArray, FloatArray, FloatArray, FloatArray], ...]]:
    flat = np.full(len(rates), np.nan)
    tiered: dict[tuple[tuple[float, float, float], ...], list[int]] = {}
    for i, r in enumerate(rates):
        if r.rate is not None:
            flat[i] = float(r.rate)
        else:
            key = tuple(
                (
                    float(t.from_usd),
                    math.inf if t.to_usd is None else float(t.to_usd),
                    float(t.rate),
                )
                for t in r.tiers or ()
            )
            tiered.setdefault(key, []).append(i)
    groups = tuple(
        (_ia(ix), _fa(t[0] for t in key), _fa(t[1] for t in key), _fa(t[2] for t in key))
        for key, ix in tiered.items()
    )
    return flat, groups


class _LineBuilder:
    def __init__(self) -> None:
        self.index: dict[tuple[int, str], int] = {}
        self.owner: list[int] = []
        self.asset: list[str] = []
        self.venue: list[int] = []
        self.bnet: list[float] = []
        self.price: list[float] = []
        self.rates: list[CollateralRate] = []
        self.links: list[tuple[int, int]] = []  # (line, row)

    def line(self, owner: int, asset: str, venue: int, book: PoolBook, params: MarginParams) -> int:
        key = (owner, asset)
        ix = self.index.get(key)
        if ix is None:
            ix = len(self.owner)
            self.index[key] = ix
            self.owner.append(owner)
            self.asset.append(asset)
            self.venue.append(venue)
            self.bnet.append(0.0)
            self.price.append(float(book.price_usd(asset)))
            self.rates.append(params.collateral_rate(asset))
        return ix

    def build(self, col: Mapping[str, int], n_rows: int) -> _Lines:
        flat, tiered = _rate_lines(self.rates)
        n = len(self.owner)
        if self.links:
            li, ri = zip(*self.links, strict=True)
            m = sparse.csr_matrix(
                (np.ones(len(li)), (_ia(li), _ia(ri))), shape=(n, n_rows), dtype=np.float64
            )
        else:
            m = sparse.csr_matrix((n, n_rows), dtype=np.float64)
        # Balance nets are summed in Decimal by the exact path; float sums of the same nets.
        return _Lines(
            _ia(self.owner),
            _ia(col[a] for a in self.asset),
            _ia(self.venue),
            _fa(self.bnet),
            _fa(self.price),
            flat,
            tiered,
            m,
        )


def compile_desk(
    desk: DeskConfig, state: Portfolio, pools: Sequence[str] | None = None
) -> FastDesk:
    """Validate every pool's book once (``build_book``) and lay the desk out as arrays.

    Raises what ``evaluate_pool`` raises for the same state: a missing or stale price, an option
    in a ``unified`` pool, a future without brackets, ``size_scaled`` parameters missing.
    """
    pool_ids = tuple(pools) if pools is not None else tuple(p.id for p in desk.pools)
    known = {p.id: p for p in desk.pools}
    for pid in pool_ids:
        if pid not in known:
            raise DataError("unknown pool", pool=pid)
    books: dict[str, PoolBook] = {}
    params: dict[str, MarginParams] = {}
    # A pool only holds wallets of its own venue: split the state by venue once, so building
    # every pool's book costs its venue's rows, not the whole desk's (linear in pools).
    by_venue: dict[str, tuple[list[Balance], list[Position]]] = {}
    for b in state.balances:
        by_venue.setdefault(b.venue, ([], []))[0].append(b)
    for pos in state.positions:
        by_venue.setdefault(pos.venue, ([], []))[1].append(pos)
    local = {
        v: Portfolio(tuple(bs), tuple(ps), state.prices, state.as_of)
        for v, (bs, ps) in by_venue.items()
    }
    empty = Portfolio((), (), state.prices, state.as_of)
    for pid in pool_ids:
        params[pid] = params_for_pool(desk, pid)
        venue_state = local.get(known[pid].venue, empty)
        books[pid] = build_book(venue_state, known[pid].to_domain(), params[pid])
    assets = sorted(
        set(desk.assets)
        | {a.asset for b in books.values() for a in b.assets}
        | {p.unit for b in books.values() for p in b.positions}
        | {p.position.instrument.quote.code for b in books.values() for p in b.positions}
        | {b.pool.margin_currency.code for b in books.values()}
    )
    col = {a: i for i, a in enumerate(assets)}
    one = len(assets)  # the constant-1 column (nominal USD quotes)
    venues = sorted({known[pid].venue for pid in pool_ids})
    vix = {v: i for i, v in enumerate(venues)}

    def qcol(code: str) -> int:
        return one if code == _USD else col[code]

    r: dict[str, list[float]] = {
        k: []
        for k in (
            *("pool", "venue", "kind", "u", "q", "units", "entry", "mark", "quote_usd"),
            *("underlying_usd", "strike", "t", "iv", "fwd", "call", "inv", "rule", "table"),
            *("base", "per_unit", "order"),
        )
    }
    keys: list[str] = []
    row_silo: list[int] = []
    pool_lines, silo_lines = _LineBuilder(), _LineBuilder()
    silo_pool: list[int] = []
    loans: list[tuple[int, int, int, float]] = []
    # Bracket tables by content: every pool's parameters hold their own copy of a symbol's
    # table, and ``_rule_mm`` looks brackets up once per distinct table.
    tables: dict[tuple[tuple[float, float, float], ...], int] = {}
    table_arrays: list[tuple[FloatArray, FloatArray, FloatArray]] = []

    def table_of(symbol: str, p: MarginParams, where: str) -> int:
        t = p.brackets.get(symbol)
        if t is None:
            raise DataError("no maintenance-margin brackets for instrument", symbol=symbol,
                            where=where)  # fmt: skip
        key = tuple(
            (
                math.inf if b.cap_usd is None else float(b.cap_usd),
                float(b.mmr),
                0.0 if b.cum_usd is None else float(b.cum_usd),
            )
            for b in t
        )
        if key not in tables:
            tables[key] = len(table_arrays)
            table_arrays.append(
                (_fa(k[0] for k in key), _fa(k[1] for k in key), _fa(k[2] for k in key))
            )
        return tables[key]

    for pix, pid in enumerate(pool_ids):
        book, prm = books[pid], params[pid]
        model = book.pool.model
        v = vix[book.pool.venue]
        silo_of: dict[WalletKind, int] = {}
        if model is MarginModelKind.STANDARD:
            wallets = sorted(
                {b.wallet for b in book.balances} | {p.position.wallet for p in book.positions},
                key=lambda w: w.value,
            )
            for w in wallets:
                silo_of[w] = len(silo_pool)
                silo_pool.append(pix)
        for b in book.balances:
            pool_lines.bnet[pool_lines.line(pix, b.asset.code, v, book, prm)] += float(b.net)
            if silo_of:
                s = silo_of[b.wallet]
                silo_lines.bnet[silo_lines.line(s, b.asset.code, v, book, prm)] += float(b.net)
        # loan MM: (loan + interest) × price × MMR, per silo for standard pools
        owed: dict[tuple[int, str], Decimal] = {}
        for b in book.balances:
            if b.loan or b.interest:
                s = silo_of.get(b.wallet, -1)
                owed[(s, b.asset.code)] = owed.get((s, b.asset.code), _ZERO) + b.loan + b.interest
        if model is not MarginModelKind.SCENARIO:
            for (s, a), q in sorted(owed.items()):
                mm0 = float(q * book.price_usd(a) * Decimal(str(prm.loan_mmr)))
                loans.append((pix, s, qcol(a), mm0))
        wallet_rank = {w: i for i, w in enumerate(silo_of)}
        for n, p in enumerate(book.positions):
            inst = p.position.instrument
            where = f"position {p.key}"
            kind = (
                _SPOT
                if inst.kind is InstrumentKind.SPOT
                else _OPTION
                if inst.is_option
                else _INVERSE
                if inst.is_inverse
                else _LINEAR
            )
            rule, table, base, per_unit, order = _NO_RULE, -1, 0.0, 0.0, -1
            if model is MarginModelKind.UNIFIED:
                if kind == _OPTION:
                    raise DataError(
                        "the unified (Binance PM) model does not margin options; use 'scenario'",
                        where=where,
                    )
                if kind != _SPOT:
                    rule, table, order = _BRACKET, table_of(inst.symbol, prm, where), n
            elif model is MarginModelKind.STANDARD:
                order = wallet_rank[p.position.wallet] * 1_000_000 + n
                if kind == _OPTION:
                    if p.position.qty < 0:
                        o = prm.standard.options
                        rule, base, per_unit = _SHORT_OPTION, o.mm_floor_frac, o.mm_index_frac
                elif kind != _SPOT:
                    if prm.standard.futures_mode == "size_scaled":
                        sized = prm.standard.size_scaled.get(p.unit)
                        if sized is None:
                            raise ConfigError(
                                "size_scaled futures margin has no parameters for this underlying",
                                unit=p.unit,
                                where=where,
                            )
                        rule, base, per_unit = (
                            _SIZE_SCALED,
                            float(Decimal(str(sized.mm_base_frac))),
                            float(Decimal(str(sized.mm_per_unit_frac))),
                        )
                    else:
                        rule, table = _BRACKET, table_of(inst.symbol, prm, where)
            i = len(keys)
            keys.append(p.key)
            for k, x in (
                ("pool", pix), ("venue", v), ("kind", kind), ("u", col[p.unit]),
                ("q", qcol(inst.quote.code)), ("units", float(p.units)),
                ("entry", float(p.position.entry_price)), ("mark", float(p.mark)),
                ("quote_usd", float(p.quote_usd)), ("underlying_usd", float(p.underlying_usd)),
                ("strike", float(inst.strike or 0)), ("t", max(p.t_years or 0.0, 1e-9)),
                ("iv", float(p.iv or 0)), ("fwd", float(p.forward or 0)),
                ("call", float(inst.right == "call")),
                ("inv", float(inst.settlement is Settlement.INVERSE)), ("rule", rule),
                ("table", table), ("base", base), ("per_unit", per_unit), ("order", order),
            ):  # fmt: skip
                r[k].append(float(x))
            if kind == _OPTION and (p.iv is None or p.forward is None):
                raise DataError("an option needs an IV and a forward to be shocked", where=where)
            line = pool_lines.line(pix, p.settle_asset, v, book, prm)
            pool_lines.links.append((line, i))
            if silo_of:
                s = silo_of[p.position.wallet]
                silo_lines.links.append((silo_lines.line(s, p.settle_asset, v, book, prm), i))
                row_silo.append(s)
            else:
                row_silo.append(-1)

    n_rows = len(keys)
    rows = _Rows(
        pool=_ia(int(x) for x in r["pool"]),
        venue=_ia(int(x) for x in r["venue"]),
        kind=_ia(int(x) for x in r["kind"]),
        u=_ia(int(x) for x in r["u"]),
        q=_ia(int(x) for x in r["q"]),
        units=_fa(r["units"]),
        entry=_fa(r["entry"]),
        mark=_fa(r["mark"]),
        quote_usd=_fa(r["quote_usd"]),
        underlying_usd=_fa(r["underlying_usd"]),
        strike=_fa(r["strike"]),
        t_years=_fa(r["t"]),
        iv=_fa(r["iv"]),
        forward=_fa(r["fwd"]),
        is_call=_fa(r["call"]).astype(bool),
        inverse_premium=_fa(r["inv"]).astype(bool),
        rule=_ia(int(x) for x in r["rule"]),
        table=_ia(int(x) for x in r["table"]),
        mm_base=_fa(r["base"]),
        mm_per_unit=_fa(r["per_unit"]),
        keys=tuple(keys),
        worst_order=_ia(int(x) for x in r["order"]),
    )
    lp, ls, lc, lm = zip(*loans, strict=True) if loans else ((), (), (), ())
    scen = [pid for pid in pool_ids if books[pid].pool.model is MarginModelKind.SCENARIO]
    return FastDesk(
        pool_ids=pool_ids,
        models=_ia(_MODEL_CODE[books[pid].pool.model] for pid in pool_ids),
        pool_venue=_ia(vix[known[pid].venue] for pid in pool_ids),
        assets=tuple(assets),
        venues=tuple(venues),
        rows=rows,
        pool_lines=pool_lines.build(col, n_rows),
        silo_lines=silo_lines.build(col, n_rows),
        silo_pool=_ia(silo_pool),
        row_silo=_ia(row_silo),
        loans=(_ia(lp), _ia(ls), _ia(lc), _fa(lm)),
        brackets=tuple(table_arrays),
        scenario=(
            _scenario_part(desk, pool_ids, scen, books, params, col, qcol, vix) if scen else None
        ),
        target=_fa(known[pid].thresholds.target for pid in pool_ids),
        liquidation=_fa(known[pid].thresholds.liquidation for pid in pool_ids),
        thresholds=tuple(known[pid].thresholds for pid in pool_ids),
        venue_levels=tuple(known[pid].venue_levels for pid in pool_ids),
        books=books,
    )


def _scenario_part(
    desk: DeskConfig,
    pool_ids: Sequence[str],
    scen: list[str],
    books: Mapping[str, PoolBook],
    params: Mapping[str, MarginParams],
    col: Mapping[str, int],
    qc: Callable[[str], int],
    vix: Mapping[str, int],
) -> _ScenarioPart:
    risk, labels = build_risk_book([(books[pid], params[pid]) for pid in scen])
    pool_index = {pid: i for i, pid in enumerate(pool_ids)}
    prm = params[scen[0]]  # scenario parameters, offsets and crash are the desk's
    units = labels.units
    by_pool = [{p.key: p for p in books[pid].positions} for pid in scen]
    d_u, d_q, d_inv = [], [], []
    for i, key in enumerate(labels.delta_keys):
        u = units[int(risk.delta.unit[i])]
        d_u.append(col[u])
        if key.startswith("balance:"):
            d_q.append(col[u])
            d_inv.append(False)
        elif key.startswith("cash:"):
            d_q.append(qc(key.removeprefix("cash:")))
            d_inv.append(False)
        else:
            inst = by_pool[int(risk.delta.pool[i])][key].position.instrument
            if inst.kind is InstrumentKind.SPOT:
                d_q.append(col[u])
            else:
                d_q.append(qc(inst.quote.code) if inst.is_linear else qc(_USD))
            d_inv.append(bool(inst.is_inverse))
    o_u, o_q = [], []
    for i, key in enumerate(labels.option_keys):
        inst = by_pool[int(risk.option.pool[i])][key].position.instrument
        o_u.append(col[inst.underlying.code])
        o_q.append(qc(inst.quote.code))
    unit_price = []
    for u in units:
        for pid in scen:
            if u in books[pid].prices_usd:
                unit_price.append(float(books[pid].price_usd(u)))
                break
        else:  # pragma: no cover - a unit is always priced in the book that holds it
            raise DataError("risk unit without a price", unit=u)
    sps = [prm.scenario_for(u) for u in units]
    uix = {u: i for i, u in enumerate(units)}
    group_of = {(int(risk.group_pool[g]), int(risk.group_unit[g])): g for g in range(risk.n_groups)}
    offsets = []
    for off in prm.offsets:
        a, b = (uix.get(x) for x in off.units)
        if a is None or b is None:
            continue
        ga = _ia(group_of.get((p, a), -1) for p in range(len(scen)))
        gb = _ia(group_of.get((p, b), -1) for p in range(len(scen)))
        offsets.append((float(off.credit_frac), ga, gb))
    crash = prm.crash
    worst_candidate = np.array(
        [not k.startswith(("balance:", "cash:")) for k in labels.delta_keys]
        + [True] * len(labels.option_keys),
        dtype=bool,
    )
    o = risk.option
    o_u_arr, o_q_arr = _ia(o_u), _ia(o_q)
    contract_first, contract = _distinct(
        o.unit, o_u_arr, o_q_arr, o.forward, o.strike, o.t_years, o.iv, o.is_call,
        o.vol_scale, o.vol_floor,
    )  # fmt: skip
    return _ScenarioPart(
        pools=_ia(pool_index[pid] for pid in scen),
        risk=risk,
        labels=labels,
        grid=stack_grids([_unit_grid(u, sp) for u, sp in zip(units, sps, strict=True)]),
        pool_venue=_ia(vix[books[pid].pool.venue] for pid in scen),
        pool_mc_col=_ia(qc(books[pid].pool.margin_currency.code) for pid in scen),
        d_u=_ia(d_u),
        d_q=_ia(d_q),
        d_inverse=np.array(d_inv, dtype=bool),
        o_u=o_u_arr,
        o_q=o_q_arr,
        unit_col=_ia(col[u] for u in units),
        unit_price_usd=_fa(unit_price),
        mm_factor=_fa(sp.mm_factor for sp in sps),
        roll_frac=_fa(sp.roll_move_annual_frac for sp in sps),
        delta_unhedged=_fa(sp.delta_unhedged_frac for sp in sps),
        delta_hedged=_fa(sp.delta_hedged_frac for sp in sps),
        crash_weight=_fa(
            crash.weight * extended_weight(crash.move_frac, sp.price_range_frac) for sp in sps
        ),
        crash_enabled=bool(crash.enabled),
        crash_mm_factor=float(crash.mm_factor),
        crash=crash,
        offsets=tuple(offsets),
        worst_candidate=worst_candidate,
        contract_first=contract_first,
        contract=contract,
    )


# --------------------------------------------------------------------------- moves


@dataclass(frozen=True, slots=True)
class Moves:
    """A batch of S columns: price factor 1 + m per venue × factor column × column, whether the
    asset is named by the column's moves (an option re-prices, and its IV scales, only then, as
    in ``shock_portfolio``), and the IV factor 1 + vol_up_frac per column."""

    factor: FloatArray  # (V, A + 1, S)
    moved: BoolArray  # (V, A + 1, S)
    vol: FloatArray  # (S,)

    @property
    def n(self) -> int:
        return int(self.vol.size)

    def columns(self, lo: int, hi: int) -> Moves:
        return Moves(self.factor[:, :, lo:hi], self.moved[:, :, lo:hi], self.vol[lo:hi])


def moves_from_scenarios(fd: FastDesk, scenarios: Sequence[Scenario]) -> Moves:
    """The named scenarios as one batch (``Scenario.moves_on``: venue-local overrides per venue)."""
    n_a = len(fd.assets) + 1
    col = {a: i for i, a in enumerate(fd.assets)}
    vix = {v: i for i, v in enumerate(fd.venues)}
    factor = np.ones((len(fd.venues), n_a, len(scenarios)))
    moved = np.zeros(factor.shape, dtype=bool)

    def put(venues: slice | int, moves: Mapping[str, float], s: int) -> None:
        for a, m in moves.items():
            if not -1.0 < m < 10.0:
                raise DataError("price move must be in (-100 %, +1000 %)", asset=a, move=m)
            c = col.get(a)
            if c is not None:
                factor[venues, c, s] = 1.0 + float(m)
                moved[venues, c, s] = True

    for s, sc in enumerate(scenarios):
        put(slice(None), sc.moves, s)  # every venue, then each venue's overrides on top
        for venue, local in sc.venue_moves.items():
            if venue in vix:
                put(vix[venue], local, s)
    vol = _fa(1.0 + sc.vol_up_frac for sc in scenarios)
    return Moves(factor, moved, vol)


def moves_from_draws(
    fd: FastDesk, assets: Sequence[str], draws: FloatArray, *, vol_up_frac: float = 0.0
) -> Moves:
    """Monte Carlo draws (paths × assets, USD returns) as a batch, the same on every venue."""
    n_a = len(fd.assets) + 1
    col = {a: i for i, a in enumerate(fd.assets)}
    paths = int(draws.shape[0])
    factor = np.ones((1, n_a, paths))
    moved = np.zeros(factor.shape, dtype=bool)
    for j, a in enumerate(assets):
        c = col.get(a)
        if c is not None:
            factor[0, c] = 1.0 + draws[:, j]
            moved[0, c] = draws[:, j] != 0.0
    v = len(fd.venues)
    return Moves(
        np.broadcast_to(factor, (v, n_a, paths)),
        np.broadcast_to(moved, (v, n_a, paths)),
        np.full(paths, 1.0 + vol_up_frac),
    )


# --------------------------------------------------------------------------- evaluation


@dataclass(frozen=True, slots=True)
class FastMargin:
    """Per pool × column (P × S), USD: equity, adjusted equity, MM, ratio (nan: no margin),
    deficits to ``target`` and to ``liquidation``, the equity the bands read, the signed gap to
    ``target`` (positive in deficit), and (when asked)
    the index into ``FastDesk.rows.keys`` / scenario labels of the worst position (−1: none)."""

    equity_usd: FloatArray
    adjusted_usd: FloatArray
    mm_usd: FloatArray
    ratio: FloatArray
    deficit_usd: FloatArray
    to_liquidation_usd: FloatArray
    band_equity_usd: FloatArray
    gap_usd: FloatArray  # signed target·MM − adjusted (siloed: the largest silo's): > 0 in deficit
    worst: list[list[str | None]] | None = None


def _gather(moves: Moves, venue: IntArray, colix: IntArray) -> FloatArray:
    out: FloatArray = moves.factor[venue, colix, :]
    return out


def _b76(
    f: FloatArray, k: FloatArray, t: FloatArray, iv: FloatArray, call: BoolArray
) -> FloatArray:
    out: FloatArray = black76(f, k, t, iv, call)
    return out


def _position_marks(fd: FastDesk, mv: Moves) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Shocked marks (rows × S), and the underlying and quote factors."""
    r = fd.rows
    fu = _gather(mv, r.venue, r.u)
    fq = _gather(mv, r.venue, r.q)
    mark = r.mark[:, None] * (fu / fq)
    opt = np.flatnonzero(r.kind == _OPTION)
    if opt.size:
        # Each distinct contract (terms, forward, IV, mark, on venues moved alike) once: pools
        # holding the same listed option share its Black-76 re-pricing.
        vclass = _venue_classes(mv, np.union1d(r.u[opt], r.q[opt]))[r.venue[opt]]
        first, contract = _distinct(
            vclass, r.u[opt], r.q[opt], r.forward[opt], r.strike[opt], r.t_years[opt],
            r.iv[opt], r.is_call[opt], r.inverse_premium[opt], r.mark[opt],
        )  # fmt: skip
        one = opt[first]
        f = fu[one] / fq[one]
        moved = mv.moved[r.venue[one], r.u[one], :] | (
            mv.moved[r.venue[one], r.q[one], :] & (r.q[one] < len(fd.assets))[:, None]
        )
        k, t, iv = (x[one][:, None] for x in (r.strike, r.t_years, r.iv))
        call = r.is_call[one][:, None]
        f0 = r.forward[one][:, None]
        f1 = f0 * f
        v0 = _b76(f0, k, t, iv, call)
        v1 = _b76(f1, k, t, iv * np.where(moved, mv.vol[None, :], 1.0), call)
        inv = r.inverse_premium[one][:, None]
        v0 = np.where(inv, v0 / f0, v0)
        v1 = np.where(inv, v1 / f1, v1)
        floor = np.where(inv, 1e-8, 1e-8 * f1)
        shocked = np.maximum(r.mark[one][:, None] + (v1 - v0), floor)
        mark[opt] = np.where(moved, shocked, r.mark[one][:, None])[contract]
    return mark, fu, fq


def _booked(fd: FastDesk, mark: FloatArray) -> FloatArray:
    """Each position's booked value in its settlement asset (``PricedPosition.booked_value``),
    each kind's formula on its own rows."""
    r = fd.rows
    out: FloatArray = np.empty(mark.shape)
    for kind in (_SPOT, _LINEAR, _INVERSE, _OPTION):
        ix = np.flatnonzero(r.kind == kind)
        if ix.size == 0:
            continue
        units, m = r.units[ix, None], mark[ix]
        if kind == _SPOT:
            out[ix] = units
        elif kind == _LINEAR:
            out[ix] = units * (m - r.entry[ix, None])
        elif kind == _INVERSE:
            with np.errstate(divide="ignore", invalid="ignore"):
                out[ix] = units * (1.0 / r.entry[ix, None] - 1.0 / m)
        else:
            out[ix] = units * m
    return out


def _line_values(fd: FastDesk, lines: _Lines, booked: FloatArray, mv: Moves) -> FloatArray:
    net = lines.bnet[:, None] + lines.from_rows @ booked
    out: FloatArray = net * lines.price_usd[:, None] * _gather(mv, lines.venue, lines.asset)
    return out


def _notional(
    kind: IntArray, units: FloatArray, mark: FloatArray, q_usd: FloatArray, s_usd: FloatArray
) -> FloatArray:
    """|Notional| in USD (``PricedPosition.notional_usd``) of rows of one kind-mix."""
    out: FloatArray = np.abs(units)[:, None] * s_usd
    inverse = np.flatnonzero(kind == _INVERSE)
    if inverse.size:
        out[inverse] = np.abs(units[inverse])[:, None] * q_usd[inverse]
    linear = np.flatnonzero(kind == _LINEAR)
    if linear.size:
        out[linear] = np.abs(units[linear, None] * mark[linear]) * q_usd[linear]
    return out


def _rule_mm(fd: FastDesk, mark: FloatArray, fu: FloatArray, fq: FloatArray) -> FloatArray:
    """Maintenance margin of every position under its rule (rows × S), 0 without a rule.

    Only rows with a rule are computed (scenario-model rows and spot stay 0)."""
    r = fd.rows
    mm = np.zeros(mark.shape)
    for rule in (_BRACKET, _SIZE_SCALED, _SHORT_OPTION):
        ix = np.flatnonzero(r.rule == rule)
        if ix.size == 0:
            continue
        m, q_usd = mark[ix], r.quote_usd[ix, None] * fq[ix]
        s_usd = r.underlying_usd[ix, None] * fu[ix]
        units = np.abs(r.units[ix])[:, None]
        if rule == _BRACKET:
            notional = _notional(r.kind[ix], r.units[ix], m, q_usd, s_usd)
            for t, (caps, mmr, cum) in enumerate(fd.brackets):
                sub = np.flatnonzero(r.table[ix] == t)
                if sub.size:
                    n = notional[sub]
                    b = np.minimum(np.searchsorted(caps, n, side="right"), caps.size - 1)
                    mm[ix[sub]] = np.maximum(0.0, n * mmr[b] - cum[b])
        elif rule == _SIZE_SCALED:
            notional = _notional(r.kind[ix], r.units[ix], m, q_usd, s_usd)
            size = np.where((r.kind[ix] == _INVERSE)[:, None], units / m, units)
            mm[ix] = notional * (r.mm_base[ix, None] + r.mm_per_unit[ix, None] * size)
        else:
            prem = np.where(r.inverse_premium[ix][:, None], m * s_usd, m * q_usd)
            a, b = r.mm_base[ix, None], r.mm_per_unit[ix, None]
            mm[ix] = (np.maximum(a * s_usd, a * prem) + prem + b * s_usd) * units
    return mm


def _aggregate(owner: IntArray, values: FloatArray, n: int) -> FloatArray:
    out = np.zeros((n, values.shape[1]))
    if owner.size:
        m = sparse.csr_matrix(
            (np.ones(owner.size), (owner, np.arange(owner.size))), shape=(n, owner.size)
        )
        out += m @ values
    return out


def _bincount(ix: IntArray, weights: FloatArray, n: int) -> FloatArray:
    """Sums of ``weights`` per index (float even when empty)."""
    out: FloatArray = np.bincount(ix, weights, n).astype(np.float64, copy=False)
    return out


def _first_max(owner: IntArray, value: FloatArray, order: IntArray, n: int) -> IntArray:
    """Per owner, the index of its largest value (money rounded to 1e-8 as the report is),
    first in ``order`` on ties (the exact path keeps the first contribution of a tie)."""
    best = np.full(n, -1, dtype=np.int64)
    if owner.size == 0:
        return best
    rounded = np.round(value, 8)
    ix = np.lexsort((order, -rounded, owner))
    o = owner[ix]
    first = np.r_[True, o[1:] != o[:-1]]
    best[o[first]] = ix[first]
    return best


def fast_margin(fd: FastDesk, mv: Moves, *, worst: bool = False) -> FastMargin:
    """Every pool of ``fd`` in every column of ``mv`` (see the module doc)."""
    n_p, n_s = fd.n_pools, mv.n
    mark, fu, fq = _position_marks(fd, mv)
    booked = _booked(fd, mark)
    pool_val = _line_values(fd, fd.pool_lines, booked, mv)
    equity = _aggregate(fd.pool_lines.owner, pool_val, n_p)
    adjusted = _aggregate(fd.pool_lines.owner, fd.pool_lines.collateral(pool_val), n_p)
    rule_mm = _rule_mm(fd, mark, fu, fq)
    lp, ls, lc, lm = fd.loans
    loan_mm = lm[:, None] * mv.factor[fd.pool_venue[lp], lc, :] if lp.size else np.zeros((0, n_s))
    has_rule = fd.rows.rule != _NO_RULE
    mm = _aggregate(fd.rows.pool[has_rule], rule_mm[has_rule], n_p) + _aggregate(lp, loan_mm, n_p)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(mm > 0, adjusted / mm, np.nan)
    deficit = np.maximum(0.0, fd.target[:, None] * mm - adjusted)
    to_liq = np.maximum(0.0, fd.liquidation[:, None] * mm - adjusted)
    band_eq = adjusted.copy()
    gap = fd.target[:, None] * mm - adjusted

    std = np.flatnonzero(fd.models == _MODEL_CODE[MarginModelKind.STANDARD])
    if std.size:
        n_silo = fd.silo_pool.size
        silo_val = _line_values(fd, fd.silo_lines, booked, mv)
        s_adj = _aggregate(fd.silo_lines.owner, fd.silo_lines.collateral(silo_val), n_silo)
        in_silo = has_rule & (fd.row_silo >= 0)
        s_mm = _aggregate(fd.row_silo[in_silo], rule_mm[in_silo], n_silo)
        s_mm += _aggregate(ls[ls >= 0], loan_mm[ls >= 0], n_silo)
        with np.errstate(divide="ignore", invalid="ignore"):
            s_ratio = np.where(s_mm > 0, s_adj / s_mm, np.inf)
        sp = fd.silo_pool
        # a pool's silos are contiguous: per-pool min / max by ``reduceat`` over their runs
        r_min = np.full((n_p, n_s), np.inf)
        a_min = np.full((n_p, n_s), np.inf)
        g_max = np.full((n_p, n_s), -np.inf)
        if sp.size:
            starts = np.flatnonzero(np.r_[True, sp[1:] != sp[:-1]])
            owners = sp[starts]
            r_min[owners] = np.minimum.reduceat(s_ratio, starts, axis=0)
            a_min[owners] = np.minimum.reduceat(s_adj, starts, axis=0)
            g_max[owners] = np.maximum.reduceat(fd.target[sp, None] * s_mm - s_adj, starts, axis=0)
        gap[std] = g_max[std]
        mm[std] = _aggregate(sp, s_mm, n_p)[std]
        ratio[std] = np.where(np.isfinite(r_min[std]), r_min[std], np.nan)
        deficit[std] = _aggregate(sp, np.maximum(0.0, fd.target[sp, None] * s_mm - s_adj), n_p)[std]
        to_liq[std] = _aggregate(sp, np.maximum(0.0, fd.liquidation[sp, None] * s_mm - s_adj), n_p)[
            std
        ]
        band_eq[std] = np.where(np.isnan(ratio[std]) & (a_min[std] < 0), a_min[std], adjusted[std])

    names: list[list[str | None]] | None = None
    if worst:
        names = [[None] * n_s for _ in range(n_p)]
        cand = np.flatnonzero(fd.rows.worst_order >= 0)
        if cand.size:
            owner = (np.arange(n_s)[None, :] * n_p + fd.rows.pool[cand][:, None]).ravel()
            order = np.repeat(fd.rows.worst_order[cand], n_s)
            best = _first_max(owner, rule_mm[cand].ravel(), order, n_p * n_s)
            found = np.flatnonzero(best >= 0)
            for k, row in zip(found.tolist(), cand[best[found] // n_s].tolist(), strict=True):
                s, p = divmod(k, n_p)
                names[p][s] = fd.rows.keys[row]

    if fd.scenario is not None:
        sc_mm, sc_worst = _scenario_mm(fd.scenario, mv, worst=worst)
        pools = fd.scenario.pools
        mm[pools] = sc_mm
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio[pools] = np.where(sc_mm > 0, adjusted[pools] / sc_mm, np.nan)
        gap[pools] = fd.target[pools, None] * sc_mm - adjusted[pools]
        deficit[pools] = np.maximum(0.0, gap[pools])
        to_liq[pools] = np.maximum(0.0, fd.liquidation[pools, None] * sc_mm - adjusted[pools])
        if names is not None and sc_worst is not None:
            for j, p in enumerate(pools):
                names[int(p)] = sc_worst[j]
    return FastMargin(equity, adjusted, mm, ratio, deficit, to_liq, band_eq, gap, names)


def _scenario_mm(
    part: _ScenarioPart, mv: Moves, *, worst: bool
) -> tuple[FloatArray, list[list[str | None]] | None]:
    """MM (USD) of the scenario-model pools (P_s × S), in engine calls of bounded size."""
    risk = part.risk
    n_rows = max(1, risk.delta.size + risk.option.size)
    n_cells = max(1, risk.n_groups * part.grid.n_scenarios)
    step = max(1, min(_ENGINE_ROWS // n_rows, _GROUP_CELLS // n_cells))
    n_p = part.pools.size
    out = np.zeros((n_p, mv.n))
    names: list[list[str | None]] | None = [[None] * mv.n for _ in range(n_p)] if worst else None
    for lo in range(0, mv.n, step):
        hi = min(mv.n, lo + step)
        mm, w = _scenario_chunk(part, mv.columns(lo, hi), worst=worst)
        out[:, lo:hi] = mm
        if names is not None and w is not None:
            for p in range(n_p):
                names[p][lo:hi] = w[p]
    return out, names


def _trusted_book(
    delta: DeltaBlock,
    option: OptionBlock,
    group_unit: IntArray,
    group_pool: IntArray,
    mc_price_usd: FloatArray,
    mc_unit: IntArray,
) -> RiskBook:
    """A ``RiskBook`` of copies of an already validated book, without re-validating it.

    ``RiskBook.__post_init__`` proves group contiguity with ``np.unique`` over the runs and
    checks every row's unit and pool against its group: on millions of virtual rows that is
    a tenth of a Monte Carlo's time, and the copies hold by construction (each column's copy
    keeps the base book's (unit, group) order; prices are base prices × factors > 0). The runs
    are found here in one pass.
    """

    def runs(group: IntArray) -> Runs:
        if group.size == 0:
            return Runs(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
        starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]]).astype(np.int64)
        return Runs(starts, group[starts])

    book = object.__new__(RiskBook)
    for name, value in (
        ("delta", delta), ("option", option), ("group_unit", group_unit),
        ("group_pool", group_pool), ("pool_mc_price_usd", mc_price_usd),
        ("pool_mc_unit", mc_unit), ("delta_runs", runs(delta.group)),
        ("option_runs", runs(option.group)),
    ):  # fmt: skip
        object.__setattr__(book, name, value)
    return book


def _virtual_order(unit: IntArray, n_s: int) -> tuple[IntArray, IntArray]:
    """Rows (sorted by unit, then group) copied once per column, ordered (unit, column, group):
    base row and column of each virtual row."""
    n = int(unit.size)
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    edges = [*np.flatnonzero(np.r_[True, unit[1:] != unit[:-1]]).tolist(), n]
    rows, cols = [], []
    for lo, hi in pairwise(edges):
        rows.append(np.tile(np.arange(lo, hi), n_s))
        cols.append(np.repeat(np.arange(n_s), hi - lo))
    return np.concatenate(rows), np.concatenate(cols)


def _venue_classes(mv: Moves, cols: IntArray) -> IntArray:
    """Per venue, a class: venues whose moves of the factor columns ``cols`` (factor and moved
    flag) agree in every column of the batch share one, so what they hold alike is re-priced
    once. A Monte Carlo moves every venue alike; a de-peg printed on one venue splits it off."""
    n_v = int(mv.factor.shape[0])
    if n_v <= 1 or (mv.factor.strides[0] == 0 and mv.moved.strides[0] == 0):
        return np.zeros(n_v, dtype=np.int64)
    key = np.concatenate(
        [mv.factor[:, cols, :].reshape(n_v, -1), mv.moved[:, cols, :].reshape(n_v, -1)], axis=1
    )
    _, inverse = np.unique(key, axis=0, return_inverse=True)
    out: IntArray = inverse.reshape(-1).astype(np.int64)
    return out


def _distinct(*columns: FloatArray | IntArray | BoolArray) -> tuple[IntArray, IntArray]:
    """Rows of the stacked ``columns`` told apart by value (exact float equality): the first
    row of each distinct one, in the order of the first column (stable), and per row its
    distinct row's index."""
    key = np.column_stack([np.asarray(c, dtype=np.float64) for c in columns])
    _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
    order = np.lexsort((first, key[first, 0]))
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return first[order].astype(np.int64), rank[inverse.reshape(-1)].astype(np.int64)


def _no_options() -> OptionBlock:
    i, f = np.zeros(0, dtype=np.int64), np.zeros(0)
    return OptionBlock(i, i, i, f, f, f, f, f, np.zeros(0, dtype=bool), f, f)


@dataclass(frozen=True, slots=True)
class _OptionCopies:
    """The option rows of every column's copy of the scenario-model pools, re-priced once per
    distinct contract and column.

    Black-76 is per unit of size, and positions on one contract (same unit, strike, expiry,
    forward and IV, on venues the batch moves alike) differ only in size: each distinct
    contract is re-priced once per column (``pricing``: ``scenario_pnl`` on unit-size copies,
    each its own group and pool, in USD), and each virtual row takes its size × that. Pools
    that hold the same listed options (sub-accounts of one venue) share the work; a book whose
    option rows are all distinct costs what pricing every row did. Groups sum their rows'
    value changes and convert them to their margin currency as ``core.margin.engine`` does,
    linear in the sizes: (A + ΔV)/(P0·(1 + m_mc)) − A/P0 where the margin currency moves.
    """

    rows: IntArray  # base option row of each virtual row
    cols: IntArray  # column of each virtual row
    vgroup: IntArray  # virtual group of each virtual row
    priced: IntArray  # its contract-column in ``pricing``: column · n_contracts + contract
    size_usd: FloatArray  # its size at the column's quote price
    pricing: RiskBook
    sums: sparse.csr_matrix  # (virtual groups × contract-columns): Σ size_usd / P0
    base: FloatArray  # per contract-column: Black-76 value at the shocked forward and IV
    delta: FloatArray  # per contract-column: forward delta
    forward: FloatArray  # per contract-column: shocked forward

    @classmethod
    def of(cls, part: _ScenarioPart, mv: Moves, p0: FloatArray) -> _OptionCopies:
        """``p0``: the margin-currency USD price of each virtual group's pool."""
        o, n_s, n_g = part.risk.option, mv.n, part.risk.n_groups
        venue = part.pool_venue[o.pool]
        vclass = _venue_classes(mv, np.union1d(part.o_u, part.o_q))[venue]
        if np.all(vclass == vclass[0]):  # every venue moves alike (a Monte Carlo, most often)
            first, contract = part.contract_first, part.contract
        else:  # contracts in unit order, split by venue class
            first, contract = _distinct(part.contract, vclass)
        n_c = first.size
        # the pricing book: contract-columns ordered (unit, column, contract), one row each
        cr, cs = _virtual_order(o.unit[first], n_s)
        rep, v_rep = first[cr], venue[first[cr]]
        fu = mv.factor[v_rep, part.o_u[rep], cs]
        fq = mv.factor[v_rep, part.o_q[rep], cs]
        moved = mv.moved[v_rep, part.o_u[rep], cs] | (
            mv.moved[v_rep, part.o_q[rep], cs] & (part.o_q[rep] < mv.factor.shape[1] - 1)
        )
        k = cs * n_c + cr
        n_k = n_c * n_s
        fwd = o.forward[rep] * fu / fq
        block = OptionBlock(
            k, o.unit[rep], k, np.ones(k.size), fwd, o.strike[rep], o.t_years[rep],
            o.iv[rep] * np.where(moved, mv.vol[cs], 1.0), o.is_call[rep], o.vol_scale[rep],
            o.vol_floor[rep],
        )  # fmt: skip
        pricing = _trusted_book(
            DeltaBlock(*(np.zeros(0, dtype=np.int64),) * 3, np.zeros(0), np.zeros(0)),
            block,
            np.tile(o.unit[first], n_s),
            np.arange(n_k, dtype=np.int64),
            np.ones(n_k),
            np.full(n_k, -1, dtype=np.int64),
        )
        base, delta, forward = np.empty(n_k), np.empty(n_k), np.empty(n_k)
        base[k], delta[k], forward[k] = block.base_value(), block.delta(), fwd
        rows, cols = _virtual_order(o.unit, n_s)
        vgroup = cols * n_g + o.group[rows]
        size = o.size_usd[rows] * mv.factor[venue[rows], part.o_q[rows], cols]
        priced = cols * n_c + contract[rows]
        sums = sparse.csr_matrix((size / p0[vgroup], (vgroup, priced)), shape=(p0.size, n_k))
        return cls(rows, cols, vgroup, priced, size, pricing, sums, base, delta, forward)

    def group_pnl(
        self, matrix: ScenarioMatrix, group_mc: IntArray, group_unit: IntArray, *, weighted: bool
    ) -> tuple[FloatArray, FloatArray]:
        """Value change per unit size (contract-columns × scenarios, USD) and the groups' PnL
        (virtual groups × scenarios, margin currency), ``weighted`` by the matrix's weight of
        each group's unit (a group's contracts are of its unit, so the weight is applied to
        the few contract-columns, not to every group)."""
        unit_dv = scenario_pnl(self.pricing, matrix, keep_rows=False).group_pnl
        w = matrix.weight[self.pricing.group_unit] if weighted else 1.0
        out: FloatArray = np.asarray(self.sums @ (unit_dv * w))
        mc = np.flatnonzero(group_mc >= 0)
        if mc.size:
            a = np.asarray(self.sums[mc] @ self.base)[:, None]
            moved = np.asarray(self.sums[mc] @ unit_dv)
            out[mc] = (a + moved) / (1.0 + matrix.price_move[group_mc[mc]]) - a
            if weighted:
                out[mc] *= matrix.weight[group_unit[mc]]
        return unit_dv, out

    def row_pnl(
        self,
        unit_dv: FloatArray,
        matrix: ScenarioMatrix,
        group_mc: IntArray,
        p0: FloatArray,
        col: IntArray,
    ) -> FloatArray:
        """Each virtual row's PnL (margin currency) in column ``col`` of its group."""
        w = col[self.vgroup]
        out: FloatArray = self.size_usd * unit_dv[self.priced, w] / p0[self.vgroup]
        mc = group_mc[self.vgroup]
        sel = np.flatnonzero(mc >= 0)
        if sel.size:
            v0 = self.size_usd[sel] * self.base[self.priced[sel]] / p0[self.vgroup[sel]]
            out[sel] = (v0 + out[sel]) / (1.0 + matrix.price_move[mc[sel], w[sel]]) - v0
        return out


def _scenario_chunk(
    part: _ScenarioPart, mv: Moves, *, worst: bool
) -> tuple[FloatArray, list[list[str | None]] | None]:
    risk, n_s = part.risk, mv.n
    n_g, n_p = risk.n_groups, part.pools.size
    n_vg, n_vp = n_g * n_s, n_p * n_s
    d, o = risk.delta, risk.option
    d_venue = part.pool_venue[d.pool]
    # --- the shocked book, one copy of every pool per column: delta rows here, option rows
    # re-priced per distinct contract (``_OptionCopies``)
    dr, ds = _virtual_order(d.unit, n_s)
    fu_d = mv.factor[d_venue[dr], part.d_u[dr], ds]
    fq_d = mv.factor[d_venue[dr], part.d_q[dr], ds]
    delta_v = d.delta_usd[dr] * fu_d
    value_v = delta_v - (d.delta_usd[dr] - d.value0_usd[dr]) * fq_d
    vgroup_d = ds * n_g + d.group[dr]
    group_unit = np.tile(risk.group_unit, n_s)
    group_pool = (np.repeat(np.arange(n_s), n_g) * n_p + np.tile(risk.group_pool, n_s)).astype(
        np.int64
    )
    mc_f = mv.factor[part.pool_venue, part.pool_mc_col, :]  # (P, S)
    p0 = (risk.pool_mc_price_usd[:, None] * mc_f).T.ravel()  # virtual pool s·P + p
    book = _trusted_book(
        DeltaBlock(vgroup_d, d.unit[dr], group_pool[vgroup_d], delta_v, value_v),
        _no_options(),
        group_unit,
        group_pool,
        p0,
        np.tile(risk.pool_mc_unit, n_s),
    )
    p0_g = p0[group_pool]
    grid = part.grid
    grid_mc = _group_mc_unit(book, grid.joint)
    # ``worst_losses`` on groups ordered (column, group): weights broadcast per base group
    # instead of being gathered per virtual group, in place (the group PnL is not read again).
    res = scenario_pnl(book, grid, keep_rows=worst) if d.size else None
    weighted = np.zeros((n_s, n_g, grid.n_scenarios))
    if res is not None:
        weighted = res.group_pnl.reshape(n_s, n_g, -1)
        weighted *= grid.weight[risk.group_unit][None]
    opts = _OptionCopies.of(part, mv, p0_g) if o.size else None
    unit_dv: FloatArray | None = None
    if opts is not None:
        unit_dv, o_pnl = opts.group_pnl(grid, grid_mc, group_unit, weighted=True)
        if res is None:
            weighted = o_pnl.reshape(n_s, n_g, -1)
        else:
            weighted += o_pnl.reshape(n_s, n_g, -1)
    worst_col = np.argmin(weighted, axis=2)
    scan = np.maximum(-np.take_along_axis(weighted, worst_col[..., None], axis=2), 0.0).ravel()
    worst_col = worst_col.ravel()
    # --- delta charge and roll (``unit_deltas``), per virtual group
    s_usd_d = part.unit_price_usd[d.unit[dr]] * fu_d
    mc_moves_d = book.pool_mc_unit[book.delta.pool] == book.delta.unit
    coin_d = (delta_v - np.where(mc_moves_d, value_v, 0.0)) / s_usd_d
    roll_coin = np.asarray(part.labels.delta_roll_coin)[dr]
    roll_coin = np.where(part.d_inverse[dr], roll_coin / fu_d, roll_coin)
    net = _bincount(vgroup_d, coin_d, n_vg)
    gross = _bincount(vgroup_d, np.abs(coin_d), n_vg)
    roll = _bincount(vgroup_d, roll_coin, n_vg)
    if opts is not None:
        orr, ocs, priced = opts.rows, opts.cols, opts.priced
        value0 = opts.size_usd * opts.base[priced]
        dv = opts.size_usd * opts.delta[priced] * opts.forward[priced]
        mc_moves_o = book.pool_mc_unit[group_pool[opts.vgroup]] == o.unit[orr]
        s_usd_o = (
            part.unit_price_usd[o.unit[orr]]
            * mv.factor[part.pool_venue[o.pool[orr]], part.o_u[orr], ocs]
        )
        coin_o = (dv - np.where(mc_moves_o, value0, 0.0)) / s_usd_o
        net += _bincount(opts.vgroup, coin_o, n_vg)
        gross += _bincount(opts.vgroup, np.abs(coin_o), n_vg)
    net = np.abs(net)
    gu = group_unit
    s_mc = (
        part.unit_price_usd[gu]
        * mv.factor[part.pool_venue[group_pool % n_p], part.unit_col[gu], group_pool // n_p]
        / p0[group_pool]
    )
    charge = (part.delta_unhedged[gu] * net + part.delta_hedged[gu] * (gross - net) / 2.0) * s_mc
    im = np.maximum(scan, charge) + part.roll_frac[gu] * roll * s_mc
    # --- offsets: credit where the two units' worst columns move in opposite directions
    credit = np.zeros(n_vg)
    sign = np.sign(grid.price_move[gu, worst_col])
    for frac, ga, gb in part.offsets:
        ok = (ga >= 0) & (gb >= 0)
        if not ok.any():
            continue
        va = (np.arange(n_s)[:, None] * n_g + ga[ok][None, :]).ravel()
        vb = (np.arange(n_s)[:, None] * n_g + gb[ok][None, :]).ravel()
        opp = sign[va] * sign[vb] < 0
        c = frac * np.minimum(scan[va], scan[vb]) * opp
        credit[va] += c / 2.0  # one group per pool and unit: no index repeats
        credit[vb] += c / 2.0
    mm_g = part.mm_factor[gu] * np.maximum(im - credit, 0.0)
    mm_p = _bincount(group_pool, mm_g, n_vp)
    if part.crash_enabled and part.labels.units:
        crash = crash_matrix(part.labels.units, part.crash)
        crash_pnl = np.zeros(n_vg)
        if d.size:
            crash_pnl += scenario_pnl(book, crash, keep_rows=False).group_pnl[:, 0]
        if opts is not None:
            crash_mc = _group_mc_unit(book, crash.joint)
            crash_pnl += opts.group_pnl(crash, crash_mc, group_unit, weighted=False)[1][:, 0]
        weighted = -_bincount(group_pool, part.crash_weight[gu] * crash_pnl, n_vp)
        mm_p = np.maximum(mm_p, part.crash_mm_factor * np.maximum(weighted, 0.0))
    mm_usd = (mm_p * p0).reshape(n_s, n_p).T
    names: list[list[str | None]] | None = None
    if worst:
        names = [[None] * n_s for _ in range(n_p)]
        keys = (*part.labels.delta_keys, *part.labels.option_keys)
        pnl_d = np.zeros(0)
        if res is not None and res.delta_pnl is not None:
            pnl_d = res.delta_pnl[np.arange(dr.size), worst_col[vgroup_d]]
        if opts is not None and unit_dv is not None:
            base_row = np.concatenate([dr, opts.rows + d.size])
            vgroup = np.concatenate([vgroup_d, opts.vgroup])
            pnl = np.concatenate([pnl_d, opts.row_pnl(unit_dv, grid, grid_mc, p0_g, worst_col)])
        else:
            base_row, vgroup, pnl = dr, vgroup_d, pnl_d
        cand = part.worst_candidate[base_row]
        w = worst_col[vgroup]
        vpool = group_pool[vgroup]
        loss = -pnl * grid.weight[gu[vgroup], w] * p0[vpool]
        cand_row = base_row[cand]
        best = _first_max(vpool[cand], loss[cand], cand_row, n_vp)
        found = np.flatnonzero(best >= 0)
        for k, row in zip(found.tolist(), cand_row[best[found]].tolist(), strict=True):
            s, p = divmod(k, n_p)
            names[p][s] = keys[row]
    return mm_usd, names


# --------------------------------------------------------------------------- PoolStress rows


def _ratio_dec(x: float) -> Decimal | None:
    if not math.isfinite(x):
        return None
    return Decimal(repr(float(x))).quantize(_RATIO_Q)


def evaluate_fast(
    desk: DeskConfig,
    state: Portfolio,
    scenarios: Iterable[Scenario],
    *,
    pools: Sequence[str] | None = None,
    build_input: BuildInput | None = None,
    tolerance_usd: float = 0.01,
    cover: CoverSolver | None = None,
) -> list[PoolStress]:
    """``evaluate`` with the fast figures where no collateral is needed (same rows, same order).

    A pool × scenario whose fast deficit to ``target`` is above −``tolerance_usd`` (in deficit,
    or within a cent of it) is re-evaluated exactly, with time-to-cover by the dry-run router;
    the router reads the other pools' exact reports only where it needs them, each on the
    state of its venue component (``ShockedStates``). Every other row takes its ratio, levels
    and worst position from ``fast_margin`` and covers nothing. ``cover``: the time-to-cover
    solver (default: a new ``CoverSolver``; its ``stats`` say how each deadline was answered).
    """
    scenarios = list(scenarios)
    for sc in scenarios:
        unknown = sorted(sc.assets() - set(desk.assets))
        if unknown:
            raise DataError(
                "scenario moves an asset the desk does not hold or price",
                where=f"scenario {sc.name!r}",
                assets=", ".join(unknown),
            )
    fd = compile_desk(desk, state, pools)
    res = fast_margin(fd, moves_from_scenarios(fd, scenarios), worst=True)
    return stress_rows(
        desk,
        state,
        scenarios,
        fd,
        res,
        build_input=build_input,
        tolerance_usd=tolerance_usd,
        cover=cover,
    )


def stress_rows(
    desk: DeskConfig,
    state: Portfolio,
    scenarios: Sequence[Scenario],
    fd: FastDesk,
    res: FastMargin,
    *,
    build_input: BuildInput | None = None,
    tolerance_usd: float = 0.01,
    cover: CoverSolver | None = None,
) -> list[PoolStress]:
    """``evaluate_fast``'s rows from a computed ``fast_margin(fd, …, worst=True)`` of
    ``scenarios``: the exact re-evaluation and time-to-cover of the rows in deficit, the fast
    figures for the others (``benchmarks/stress.py`` times this stage on its own)."""
    if res.worst is None:
        raise ValueError("stress_rows needs fast_margin(..., worst=True)")
    known = {p.id: p for p in desk.pools}
    build = build_input or _default_input
    solver = cover if cover is not None else CoverSolver()
    states = ShockedStates(desk, state, components=build_input is None)
    out: list[PoolStress] = []
    pools = [known[pid] for pid in fd.pool_ids]
    # per scenario, Python floats (the same doubles): a row reads them one at a time
    gap, mm = res.gap_usd.T.tolist(), res.mm_usd.T.tolist()
    ratios, band_equity = res.ratio.T.tolist(), res.band_equity_usd.T.tolist()
    no_cents = _ZERO.quantize(_CENT)
    for s, sc in enumerate(scenarios):
        stale_venues = sc.conditions.stale_price_venues
        gap_s, mm_s, ratio_s, band_s = gap[s], mm[s], ratios[s], band_equity[s]
        for p, pid in enumerate(fd.pool_ids):
            pool = pools[p]
            if gap_s[p] > -tolerance_usd - 1e-9 * mm_s[p]:
                shocked, reports = states.for_row(sc, pid)
                out.append(_one(desk, shocked, pid, sc, build, reports, solver, pool))
                continue
            ratio = _ratio_dec(ratio_s[p])
            band_eq = Decimal(repr(band_s[p]))
            out.append(
                PoolStress(
                    pool_id=pid,
                    scenario=sc.name,
                    ratio=ratio,
                    desk_level=desk_level_for(ratio, band_eq, pool.thresholds).value,
                    venue_band=venue_band_for(ratio, band_eq, pool.venue_levels).value,
                    deficit_usd=no_cents,
                    covered_10s_usd=_ZERO,
                    covered_60s_usd=_ZERO,
                    covered_10m_usd=_ZERO,
                    uncovered_usd=no_cents,
                    liquidation_before_cover=False,
                    worst_position=res.worst[p][s],
                    stale_prices=pool.venue in stale_venues,
                )
            )
    return out


# --------------------------------------------------------------------------- Monte Carlo


def pool_monte_carlo_fast(
    desk: DeskConfig,
    state: Portfolio,
    *,
    paths: int,
    seed: int,
    horizon: str = "1d",
    vol_up_frac: float = 0.0,
    batch: int = 500,
    fast_desk: FastDesk | None = None,
    threads: int | None = None,
) -> list[PoolMonteCarlo]:
    """``pool_monte_carlo`` on the same draws, ``batch`` paths per ``fast_margin`` call.

    Batches are independent (each fills its own columns of the result), so they run on
    ``threads`` worker threads (default: one per core, at most 2): most of a batch is whole-array
    numpy work, which releases the GIL. The figures do not depend on either.
    """
    stables = [a for a, c in desk.assets.items() if c.kind == "stablecoin"]
    assets = list(desk.assets)
    draws = draw_returns(assets, paths=paths, seed=seed, horizon=horizon, stablecoins=stables)
    fd = fast_desk if fast_desk is not None else compile_desk(desk, state)
    ratios = np.full((fd.n_pools, paths), np.nan)
    deficits = np.zeros((fd.n_pools, paths))

    def run(lo: int) -> None:
        hi = min(paths, lo + batch)
        res = fast_margin(fd, moves_from_draws(fd, assets, draws[lo:hi], vol_up_frac=vol_up_frac))
        ratios[:, lo:hi] = res.ratio
        deficits[:, lo:hi] = res.deficit_usd

    starts = range(0, paths, batch)
    workers = threads if threads is not None else min(2, os.cpu_count() or 1)
    if workers > 1 and len(starts) > 1:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pmr-mc") as pool:
            list(pool.map(run, starts))  # list(): raise what a batch raised
    else:
        for lo in starts:
            run(lo)
    return _pool_figures(desk, fd.pool_ids, ratios, deficits)


_QUANTILES = (0.01, 0.05, 0.5)


def _pool_figures(
    desk: DeskConfig, pool_ids: Sequence[str], ratios: FloatArray, deficits: FloatArray
) -> list[PoolMonteCarlo]:
    """``pool_monte_carlo``'s per-pool figures, the quantiles of the pools whose every path
    has a ratio in one call, and each expected shortfall from its worst paths alone
    (``np.partition``), summed in the order a full sort gives (the same figures)."""
    known = {p.id: p for p in desk.pools}
    paths = ratios.shape[1]
    n_tail = max(1, int(np.ceil(paths * 0.01)))
    whole = np.flatnonzero(np.isfinite(ratios).all(axis=1))
    at = {int(i): j for j, i in enumerate(whole)}
    quantiles = np.quantile(ratios[whole], _QUANTILES, axis=1) if whole.size else None
    out = []
    for i, pid in enumerate(pool_ids):
        th = known[pid].thresholds
        x = ratios[i]
        j = at.get(i)
        finite = x if j is not None else x[np.isfinite(x)]
        if j is not None and quantiles is not None:
            q = {f"p{int(k * 100)}": float(quantiles[n, j]) for n, k in enumerate(_QUANTILES)}
        elif finite.size:
            q = {f"p{int(k * 100)}": float(np.quantile(finite, k)) for k in _QUANTILES}
        else:
            q = {}
        worst = np.partition(deficits[i], paths - n_tail)[paths - n_tail :]
        tail = np.sort(worst)[::-1]
        out.append(
            PoolMonteCarlo(
                pool_id=pid,
                ratios=x,
                quantiles=q,
                p_call=float(np.mean(finite <= th.call)) if finite.size else 0.0,
                p_liquidation=float(np.mean(finite <= th.liquidation)) if finite.size else 0.0,
                es99_deficit_usd=float(tail.mean()),
            )
        )
    return out
