"""The ``scenario`` model as a plain per-position Python loop: the test oracle (STYLE rule 22).

Not on the hot path. It re-derives every number from the validated ``PoolBook`` with ``math``
only: its own scenario list, its own valuation of each item in USD (coin PnL × coin price for
inverse instruments, Black-76 premium / F in the coin for inverse options), its own conversion
to the margin currency. Tests hold the vectorised engine equal to it to 1e-9 relative, and the
benchmark measures the speed-up against it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from core.domain import InstrumentKind, Settlement
from core.margin.book import PoolBook
from core.margin.params import MarginParams, ScenarioParams
from core.margin.riskbook import pool_units

__all__ = ["OracleResult", "oracle_joint_pnl", "oracle_scenario", "oracle_scenarios_for"]

Valuer = Callable[[float, float], float]  # (price move, signed vol shock) → value in USD


@dataclass
class OracleResult:
    """Margin-currency figures of the loop implementation, per unit and in total."""

    scan: dict[str, float] = field(default_factory=dict)
    worst_id: dict[str, str] = field(default_factory=dict)
    im_unit: dict[str, float] = field(default_factory=dict)
    mm_unit: dict[str, float] = field(default_factory=dict)
    roll_unit: dict[str, float] = field(default_factory=dict)
    crash_raw: float | None = None
    crash_weighted: float | None = None
    im: float = 0.0
    mm: float = 0.0
    pnl: dict[str, list[float]] = field(default_factory=dict)  # per unit, per scenario
    row_pnl: dict[str, list[float]] = field(default_factory=dict)  # per item key, per scenario


def _ncdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def _b76(f: float, k: float, t: float, sigma: float, call: bool) -> float:
    sd = sigma * math.sqrt(t)
    d1 = (math.log(f / k) + 0.5 * sd * sd) / sd
    d2 = d1 - sd
    if call:
        return f * _ncdf(d1) - k * _ncdf(d2)
    return k * _ncdf(-d2) - f * _ncdf(-d1)


def oracle_scenarios_for(unit: str, p: ScenarioParams) -> list[tuple[str, float, float, float]]:
    """(id, price move, signed vol shock, weight) of a unit's grid, written out by hand."""
    out = []
    r, n = p.price_range_frac, p.buckets
    for name, vol in (("up", p.vol_up_frac), ("same", 0.0), ("down", -p.vol_down_frac)):
        for i in range(2 * n + 1):
            m = r * (i - n) / n
            out.append((f"{unit}:grid:{m:+.4f}:vol-{name}", m, vol, 1.0))
    for m in p.extended_moves:
        w = r / (2.0 * abs(m)) if abs(m) <= 1.0 else r / (2.0 * m * m)
        out.append((f"{unit}:extended:{m:+.4f}:vol-up", m, p.vol_up_frac, w))
    if p.span_extreme:
        for sign in (-1.0, 1.0):
            m = sign * p.extreme_multiplier * r
            out.append((f"{unit}:extreme:{m:+.4f}:vol-same", m, 0.0, p.extreme_weight))
    return out


@dataclass
class _Item:
    key: str
    unit: str
    value: Valuer
    delta_usd: float  # d(value)/d(move) at 0
    futures_coin: float = 0.0  # |size in coin| of a future or perp (roll shock), else 0


def _holding(q: float, s: float) -> Valuer:
    def value(m: float, v: float) -> float:
        return q * s * (1 + m)

    return value


def _constant(c: float) -> Valuer:
    def value(m: float, v: float) -> float:
        return c

    return value


def _linear(q: float, entry: float, mark: float, quote_usd: float) -> Valuer:
    def value(m: float, v: float) -> float:
        return q * (mark * (1 + m) - entry) * quote_usd

    return value


def _inverse(q: float, entry: float, mark: float, s: float) -> Valuer:
    def value(m: float, v: float) -> float:
        coin = q * (1.0 / entry - 1.0 / (mark * (1 + m)))
        return coin * s * (1 + m)

    return value


def _items(book: PoolBook, params: MarginParams, units: tuple[str, ...]) -> list[_Item]:
    items: list[_Item] = []
    mc = book.pool.margin_currency.code
    lines = {a.asset: a for a in book.assets}
    for u in units:
        s = float(book.price_usd(u))
        sp = params.scenario_for(u)
        line = lines.get(u)
        if line is not None and line.balance_net != 0 and sp.balances_in_scenarios:
            q = float(line.balance_net)
            items.append(_Item(f"balance:{u}", u, _holding(q, s), q * s))
        if mc == u:
            for a in book.assets:
                if a.asset not in units and a.balance_net != 0:
                    c = float(a.balance_net * a.price_usd)
                    items.append(_Item(f"cash:{a.asset}", u, _constant(c), 0.0))
        for p in book.positions:
            if p.unit != u:
                continue
            inst = p.position.instrument
            q = float(p.units)
            entry, mark, qu = float(p.position.entry_price), float(p.mark), float(p.quote_usd)
            if inst.kind is InstrumentKind.SPOT:
                items.append(_Item(p.key, u, _holding(q, s), q * s))
            elif inst.is_linear:
                lin = _linear(q, entry, mark, qu)
                items.append(_Item(p.key, u, lin, q * mark * qu, abs(q)))
            elif inst.is_inverse:
                inv = _inverse(q, entry, mark, s)
                items.append(_Item(p.key, u, inv, q * s / entry, abs(q) / mark))
            else:
                if p.forward is None or p.iv is None or p.t_years is None:
                    raise ValueError(f"the oracle needs a priced option with an IV: {p.key}")
                f0, iv, t = float(p.forward), float(p.iv), p.t_years
                k_strike = float(inst.strike or 0)
                call = inst.right == "call"
                dte = max(t * 365.0, 1.0)
                power = sp.vol_power_short if dte < sp.vol_power_cutoff_days else sp.vol_power_long
                scale = (30.0 / dte) ** power
                floor = sp.min_vol_frac
                inverse = inst.settlement is Settlement.INVERSE

                def opt(
                    m: float,
                    v: float,
                    q: float = q,
                    f0: float = f0,
                    iv: float = iv,
                    t: float = t,
                    k: float = k_strike,
                    call: bool = call,
                    scale: float = scale,
                    floor: float = floor,
                    inverse: bool = inverse,
                    s: float = s,
                    qu: float = qu,
                ) -> float:
                    sigma = max(iv * (1.0 + v * scale), floor)
                    f = f0 * (1 + m)
                    premium = _b76(f, k, t, sigma, call)
                    if inverse:
                        return q * premium / f * s * (1 + m)  # coin premium × coin price
                    return q * premium * qu

                sd = iv * math.sqrt(t)
                d1 = (math.log(f0 / k_strike) + 0.5 * sd * sd) / sd
                fwd_delta = _ncdf(d1) if call else _ncdf(d1) - 1.0
                factor = s / f0 if inverse else qu
                items.append(_Item(p.key, u, opt, q * factor * fwd_delta * f0))
    return items


def oracle_joint_pnl(
    book: PoolBook,
    params: MarginParams,
    moves: Mapping[str, float],
    vol_shocks: Mapping[str, float],
) -> float:
    """Margin-currency PnL of the whole pool when every unit moves at once (crash, stress)."""
    units = pool_units(book, params)
    items = _items(book, params, units)
    mc = book.pool.margin_currency.code
    p0 = float(book.mc_price_usd)
    mc_move = moves.get(mc, 0.0) if mc in units else 0.0
    total = 0.0
    for it in items:
        v0 = it.value(0.0, 0.0)
        v1 = it.value(moves.get(it.unit, 0.0), vol_shocks.get(it.unit, 0.0))
        total += v1 / (p0 * (1 + mc_move)) - v0 / p0
    return total


def oracle_scenario(book: PoolBook, params: MarginParams) -> OracleResult:
    """Run the ``scenario`` model on ``book`` position by position, scenario by scenario."""
    res = OracleResult()
    units = pool_units(book, params)
    items = _items(book, params, units)
    mc = book.pool.margin_currency.code
    p0 = float(book.mc_price_usd)
    im_after: dict[str, float] = {}
    worst_move: dict[str, float] = {}
    for u in units:
        sp = params.scenario_for(u)
        best = (-math.inf, "", 0.0)
        pnls = []
        mine = [(it, it.value(0.0, 0.0)) for it in items if it.unit == u]
        for sid, m, v, w in oracle_scenarios_for(u, sp):
            total = 0.0
            mc_move = m if mc == u else 0.0
            for it, v0 in mine:
                pnl = it.value(m, v) / (p0 * (1 + mc_move)) - v0 / p0
                res.row_pnl.setdefault(it.key, []).append(pnl)
                total += pnl
            pnls.append(total)
            if -total * w > best[0]:
                best = (-total * w, sid, m)
        res.pnl[u] = pnls
        scan = max(0.0, best[0])
        res.scan[u], res.worst_id[u], worst_move[u] = scan, best[1], best[2]
        s_usd = float(book.price_usd(u))
        deltas, futures_coin = [], 0.0
        for it in items:
            if it.unit != u:
                continue
            v0 = it.value(0.0, 0.0)
            d_mc = (it.delta_usd - (v0 if mc == u else 0.0)) / s_usd
            deltas.append(d_mc)
            futures_coin += it.futures_coin
        net = abs(sum(deltas))
        gross = sum(abs(x) for x in deltas)
        s_mc = s_usd / p0
        charge = (sp.delta_unhedged_frac * net + sp.delta_hedged_frac * (gross - net) / 2.0) * s_mc
        roll = sp.roll_move_annual_frac * futures_coin * s_mc  # perps too, no time scaling
        res.roll_unit[u] = roll
        im_after[u] = max(scan, charge) + roll
    credits = dict.fromkeys(units, 0.0)
    for off in params.offsets:
        a, b = off.units
        if a in res.scan and b in res.scan and worst_move[a] * worst_move[b] < 0:
            c = off.credit_frac * min(res.scan[a], res.scan[b])
            credits[a] += c / 2.0
            credits[b] += c / 2.0
    for u in units:
        res.im_unit[u] = max(im_after[u] - credits[u], 0.0)
        res.mm_unit[u] = params.scenario_for(u).mm_factor * res.im_unit[u]
    res.im = sum(res.im_unit.values())
    res.mm = sum(res.mm_unit.values())
    if params.crash.enabled and units:
        cr = params.crash
        raw = weighted = 0.0
        for u in units:  # one unit's PnL at a time, all units moved: the same joint world
            moves = dict.fromkeys(units, cr.move_frac)
            vols = dict.fromkeys(units, cr.vol_up_frac)
            pnl_u = _unit_joint_pnl(book, params, u, moves, vols)
            r = params.scenario_for(u).price_range_frac
            m = abs(cr.move_frac)
            w = r / (2.0 * m) if m <= 1.0 else r / (2.0 * m * m)
            raw += pnl_u
            weighted += cr.weight * w * pnl_u
        res.crash_raw = max(0.0, -raw)
        res.crash_weighted = max(0.0, -weighted)
        res.im = max(res.im, res.crash_weighted)
        res.mm = max(res.mm, cr.mm_factor * res.crash_weighted)
    return res


def _unit_joint_pnl(
    book: PoolBook,
    params: MarginParams,
    unit: str,
    moves: Mapping[str, float],
    vol_shocks: Mapping[str, float],
) -> float:
    """Margin-currency PnL of ``unit``'s items when every unit moves at once."""
    units = pool_units(book, params)
    mc = book.pool.margin_currency.code
    p0 = float(book.mc_price_usd)
    mc_move = moves.get(mc, 0.0) if mc in units else 0.0
    total = 0.0
    for it in _items(book, params, units):
        if it.unit != unit:
            continue
        v0 = it.value(0.0, 0.0)
        v1 = it.value(moves.get(it.unit, 0.0), vol_shocks.get(it.unit, 0.0))
        total += v1 / (p0 * (1 + mc_move)) - v0 / p0
    return total
