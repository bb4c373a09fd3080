"""The ``scenario`` model's arithmetic: scan risk per unit, contingencies, offsets, crash.

Deribit portfolio margin (support article "Portfolio Margin", S:PM/X:PM) and Paradex's
portfolio-margin docs, in the shape DESIGN §3.2 fixes:

- scan risk of a unit = the largest weighted loss over its grid (price × vol, extended table,
  optional SPAN extremes), every position fully re-priced (``core.margin.engine``);
- minimum delta charge = (unhedged·|net Δ| + hedged·(gross Δ − |net Δ|)/2) × spot;
- roll shock = ``roll_move_annual_frac`` × Σ |size in coin| × spot over the unit's futures
  *and perpetuals* (DESIGN §3.2, Deribit: Σ|q| × minimum annualised move × price; a linear
  contract's size is qty × contract size, an inverse one's is face / mark), not scaled by time
  to expiry: a short inverse perp at 0.5 % carries 0.5 % of its coin-equivalent size;
- IM_u = max(scan, delta charge) + roll; an ``OffsetCredit`` gives back ``credit_frac`` of the
  smaller scan risk of two units whose worst scenarios move in opposite directions (a long/short
  pair of correlated coins, OCC/SPAN inter-commodity credit), half to each unit;
- MM_u = mm_factor_u × IM_u; the joint crash (all units move together, vol up) floors the total.
  Each unit's crash PnL is weighted like the extended tail table, w_u = crash.weight ·
  R_u/(2|m|) (R_u/(2m²) above 100 %), so a directional book is margined by its own scan (a
  linear position's weighted crash loss is exactly half its scan) and the crash is a floor only
  where the joint move finds what the scans and credits miss (a loss reached at the crash move
  but not on the grid, offsets credited more than the joint move supports): weighted loss
  C = max(0, −Σ_u w_u·PnL_u), IM = max(Σ IM_u, C), MM = max(Σ MM_u, crash.mm_factor × C).
  The raw (unweighted) loss max(0, −Σ_u PnL_u) is reported next to it.

Everything is computed in the pool's margin currency and reported in USD.
"""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache

import numpy as np

from core.margin.book import PoolBook
from core.margin.engine import FloatArray, RiskBook, scenario_pnl, worst_losses
from core.margin.params import MarginParams
from core.margin.report import ModelOutput, PositionContribution, UnitRisk, to_dec
from core.margin.riskbook import RowLabels, build_risk_book
from core.margin.scenarios import (
    ScenarioMatrix,
    crash_matrix,
    extended_weight,
    stack_grids,
    unit_grid,
)
from core.params import CrashScenario, ScenarioParams

__all__ = ["evaluate_scenario", "unit_deltas"]

_ZERO = Decimal(0)
_FRAC_Q = Decimal("1e-6")


def unit_deltas(
    risk: RiskBook, labels: RowLabels, book: PoolBook
) -> tuple[dict[int, list[float]], dict[int, float]]:
    """Coin deltas (in margin-currency terms) per unit row, and Σ |futures size in coin| per unit.

    A row's delta is d(PnL in margin currency)/d(move) at m = 0, divided by the unit's coin
    price: (ΔV′ − V0·[margin currency moves with this unit]) / S. The futures sizes (perps and
    dated futures, ``RowLabels.delta_roll_coin``) are what the roll shock is charged on.
    """
    deltas: dict[int, list[float]] = {}
    roll_coin: dict[int, float] = {}
    d, o = risk.delta, risk.option
    mc_unit = risk.pool_mc_unit
    for i in range(d.size):
        u = int(d.unit[i])
        s_usd = float(book.price_usd(labels.units[u]))
        shocked = mc_unit[d.pool[i]] == u
        delta = (d.delta_usd[i] - (d.value0_usd[i] if shocked else 0.0)) / s_usd
        deltas.setdefault(u, []).append(delta)
        roll_coin[u] = roll_coin.get(u, 0.0) + labels.delta_roll_coin[i]
    if o.size:
        fwd_delta = o.delta()
        value0 = o.size_usd * o.base_value()
        for i in range(o.size):
            u = int(o.unit[i])
            s_usd = float(book.price_usd(labels.units[u]))
            shocked = mc_unit[o.pool[i]] == u
            dv = o.size_usd[i] * fwd_delta[i] * o.forward[i]
            delta = (dv - (value0[i] if shocked else 0.0)) / s_usd
            deltas.setdefault(u, []).append(float(delta))
    return deltas, roll_coin


def _unit_matrix(labels: RowLabels, params: MarginParams) -> ScenarioMatrix:
    return _stacked_grids(labels.units, tuple(params.scenario_for(u) for u in labels.units))


@lru_cache(maxsize=256)
def _stacked_grids(units: tuple[str, ...], params: tuple[ScenarioParams, ...]) -> ScenarioMatrix:
    """The units' grids, built once per (units, parameters): a pool is evaluated again on every
    price (the monitor, a stress test's thousands of shocked states) with the same grid. The
    shared matrix is read-only."""
    matrix = stack_grids([unit_grid(u, p) for u, p in zip(units, params, strict=True)])
    for a in (matrix.price_move, matrix.vol_shock, matrix.weight):
        a.flags.writeable = False
    return matrix


@lru_cache(maxsize=256)
def _crash_matrix(
    units: tuple[str, ...], crash: CrashScenario, ranges: tuple[float, ...]
) -> tuple[ScenarioMatrix, FloatArray]:
    """``crash_matrix`` and each unit's crash weight (``ranges``: their price ranges), built
    once per (units, crash, ranges) like ``_stacked_grids``; read-only."""
    matrix = crash_matrix(units, crash)
    weights = np.array([crash.weight * extended_weight(crash.move_frac, r) for r in ranges])
    for a in (matrix.price_move, matrix.vol_shock, matrix.weight, weights):
        a.flags.writeable = False
    return matrix, weights


def _crash_losses(risk: RiskBook, labels: RowLabels, params: MarginParams) -> tuple[float, float]:
    """(raw, weighted) joint-crash loss in margin currency, each floored at 0.

    Raw = −Σ_u PnL_u; weighted = −Σ_u w_u·PnL_u with w_u = crash.weight × the extended-table
    weight of the crash move at the unit's own range R_u (Paradex: R/(2|m|), R/(2m²) above
    100 %). Gains of one unit offset losses of another: the crash is one world.
    """
    units = labels.units
    ranges = tuple(params.scenario_for(u).price_range_frac for u in units)
    matrix, weights = _crash_matrix(units, params.crash, ranges)
    cres = scenario_pnl(risk, matrix, keep_rows=False)
    # Σ per unit in row order (``np.add.at``'s order)
    pnl_unit = np.bincount(risk.group_unit, cres.group_pnl[:, 0], len(units))
    raw = max(0.0, -float(pnl_unit.sum()))
    weighted = max(0.0, -float((weights * pnl_unit).sum()))
    return raw, weighted


def evaluate_scenario(book: PoolBook, params: MarginParams) -> ModelOutput:
    """Risk-based margin of one pool (see the module docstring for every step)."""
    risk, labels = build_risk_book([(book, params)])
    if not labels.units:
        return ModelOutput(_ZERO, _ZERO)
    matrix = _unit_matrix(labels, params)
    res = scenario_pnl(risk, matrix, keep_rows=True)
    scan_g, worst_g = worst_losses(res, risk, matrix)
    n = len(labels.units)
    scan = np.zeros(n)
    worst = np.zeros(n, dtype=np.int64)
    scan[risk.group_unit] = scan_g  # one pool: one group per unit
    worst[risk.group_unit] = worst_g
    p0 = float(book.mc_price_usd)
    deltas, roll_coin = unit_deltas(risk, labels, book)

    im = np.zeros(n)
    delta_charge = np.zeros(n)
    roll = np.zeros(n)
    for u in range(n):
        sp = params.scenario_for(labels.units[u])
        s_mc = float(book.price_usd(labels.units[u])) / p0
        ds = deltas.get(u, [])
        net, gross = abs(sum(ds)), sum(abs(x) for x in ds)
        delta_charge[u] = (
            sp.delta_unhedged_frac * net + sp.delta_hedged_frac * (gross - net) / 2.0
        ) * s_mc
        roll[u] = sp.roll_move_annual_frac * roll_coin.get(u, 0.0) * s_mc
        im[u] = max(scan[u], delta_charge[u]) + roll[u]

    credit = np.zeros(n)
    move_sign = np.sign(matrix.price_move[np.arange(n), worst])
    unit_ix = {u: i for i, u in enumerate(labels.units)}
    for off in params.offsets:
        a, b = (unit_ix.get(x) for x in off.units)
        if a is None or b is None or move_sign[a] * move_sign[b] >= 0:
            continue
        c = off.credit_frac * min(scan[a], scan[b])
        credit[a] += c / 2.0
        credit[b] += c / 2.0
    im_after = np.maximum(im - credit, 0.0)
    mm_u = np.array(
        [params.scenario_for(u).mm_factor * im_after[i] for i, u in enumerate(labels.units)]
    )
    im_total, mm_total = float(im_after.sum()), float(mm_u.sum())

    crash_raw: float | None = None
    crash_weighted: float | None = None
    if params.crash.enabled:
        crash_raw, crash_weighted = _crash_losses(risk, labels, params)
        im_total = max(im_total, crash_weighted)
        mm_total = max(mm_total, params.crash.mm_factor * crash_weighted)

    units_out = []
    for u in range(n):
        w = int(worst[u])
        units_out.append(
            UnitRisk(
                unit=labels.units[u],
                scenario_id=matrix.ids[u][w],
                price_move_frac=to_dec(float(matrix.price_move[u, w]), quantum=_FRAC_Q),
                vol_shock_frac=to_dec(float(matrix.vol_shock[u, w]), quantum=_FRAC_Q),
                weight=to_dec(float(matrix.weight[u, w]), quantum=_FRAC_Q),
                loss_usd=to_dec(scan[u] * p0),
                delta_charge_usd=to_dec(delta_charge[u] * p0),
                roll_usd=to_dec(roll[u] * p0),
                credit_usd=to_dec(credit[u] * p0),
                im_usd=to_dec(im_after[u] * p0),
                mm_usd=to_dec(mm_u[u] * p0),
            )
        )

    if res.delta_pnl is None or res.option_pnl is None:
        raise RuntimeError("engine did not keep per-row PnL")
    booked = {p.key: p.booked_value_usd() for p in book.positions}
    sides = {p.key: p.position.side for p in book.positions}
    contributions: list[PositionContribution] = []
    for rows_pnl, keys, block, value0 in (
        (res.delta_pnl, labels.delta_keys, risk.delta, risk.delta.value0_usd),
        (res.option_pnl, labels.option_keys, risk.option, risk.option.size_usd),
    ):
        for i, key in enumerate(keys):
            u = int(risk.group_unit[int(block.group[i])])
            w = int(worst[u])
            loss = -float(rows_pnl[i, w]) * float(matrix.weight[u, w]) * p0
            value = booked.get(key)  # wallet holdings and cash rows are valued at their price
            contributions.append(
                PositionContribution(
                    key=key,
                    unit=labels.units[u],
                    value_usd=value if value is not None else to_dec(float(value0[i])),
                    worst_loss_usd=to_dec(loss),
                    mm_usd=None,
                    side=sides.get(key),
                )
            )
    return ModelOutput(
        im_usd=to_dec(im_total * p0),
        mm_usd=to_dec(mm_total * p0),
        worst_scenarios=tuple(units_out),
        crash_loss_raw_usd=None if crash_raw is None else to_dec(crash_raw * p0),
        crash_loss_weighted_usd=None if crash_weighted is None else to_dec(crash_weighted * p0),
        contributions=tuple(contributions),
    )
