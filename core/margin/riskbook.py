"""Turn validated pool books into the engine's struct of arrays (``RiskBook``).

One row per re-priced item, grouped by (pool, risk unit):

- positions: spot, linear and inverse futures (delta rows), options (option rows);
- ``balance:<ASSET>``: a pool's net wallet holding of a risk unit's coin, re-priced in that
  unit's scenarios (Deribit cross-collateral: collateral sits in the risk matrix), unless the
  unit's ``balances_in_scenarios`` is off;
- ``cash:<ASSET>``: in a pool whose margin currency is itself a risk unit (coin-margined), the
  other assets' balances, whose worth *in the coin* moves when the coin does.

A risk unit is the underlying of a position, or an asset with its own ``scenario`` entry that the
pool holds. Build once, then call ``engine.scenario_pnl`` with as many scenario matrices as
needed (stress tests re-use the same ``RiskBook``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

import numpy as np

from core.domain import InstrumentKind, Settlement
from core.errors import DataError
from core.margin.book import PoolBook, PricedPosition
from core.margin.engine import DeltaBlock, FloatArray, IntArray, OptionBlock, RiskBook
from core.margin.params import MarginParams
from core.margin.pricing import vol_shock_scale

__all__ = ["RowLabels", "build_risk_book", "pool_units"]

_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class RowLabels:
    """Names for the rows, units, groups and pools of a ``RiskBook``."""

    units: tuple[str, ...]
    pool_ids: tuple[str, ...]
    group_keys: tuple[tuple[str, str], ...]  # (pool id, unit) per group
    delta_keys: tuple[str, ...]
    option_keys: tuple[str, ...]
    delta_kinds: tuple[str, ...]  # instrument kind, "balance" or "cash" per delta row
    delta_roll_coin: tuple[float, ...]  # |size in coin| of futures and perps (roll shock), else 0


def _ia(x: list[int]) -> IntArray:
    return np.asarray(x, dtype=np.int64)


def _fa(x: list[float]) -> FloatArray:
    return np.asarray(x, dtype=np.float64)


def pool_units(book: PoolBook, params: MarginParams) -> tuple[str, ...]:
    """The risk units of a pool: position underlyings and held assets with their own parameters."""
    units = {p.unit for p in book.positions}
    for line in book.assets:
        p = params.scenario.get(line.asset)
        if p is not None and p.balances_in_scenarios and line.balance_net != 0:
            units.add(line.asset)
    return tuple(sorted(units))


@dataclass
class _Rows:
    """Column lists of one block while rows are collected."""

    group: list[int]
    unit: list[int]
    pool: list[int]
    keys: list[str]

    def add(self, group: int, unit: int, pool: int, key: str) -> None:
        self.group.append(group)
        self.unit.append(unit)
        self.pool.append(pool)
        self.keys.append(key)


@dataclass
class _DeltaRows(_Rows):
    delta_usd: list[float]
    value0_usd: list[float]
    kinds: list[str]
    roll_coin: list[float]

    def add_delta(
        self,
        where: tuple[int, int, int],
        key: str,
        delta: float,
        value: float,
        kind: str,
        roll_coin: float = 0.0,
    ) -> None:
        self.add(*where, key)
        self.delta_usd.append(delta)
        self.value0_usd.append(value)
        self.kinds.append(kind)
        self.roll_coin.append(roll_coin)


def build_risk_book(
    pools: Sequence[tuple[PoolBook, MarginParams]],
) -> tuple[RiskBook, RowLabels]:
    """Build the engine arrays for ``pools`` (one or many), rows sorted by (pool, unit).

    Raises
    ------
    DataError
        An option without an implied volatility (scenario margin re-prices it by Black-76).
    """
    units: list[str] = sorted({u for b, p in pools for u in pool_units(b, p)})
    unit_ix = {u: i for i, u in enumerate(units)}
    d = _DeltaRows([], [], [], [], [], [], [], [])
    o = _Rows([], [], [], [])
    o_cols: dict[str, list[float]] = {
        k: [] for k in ("size", "fwd", "k", "t", "iv", "call", "scale", "floor")
    }
    group_keys: list[tuple[str, str]] = []
    group_unit: list[int] = []
    group_pool: list[int] = []
    mc_price: list[float] = []
    mc_unit: list[int] = []
    for pool_ix, (book, params) in enumerate(pools):
        p_units = pool_units(book, params)
        mc = book.pool.margin_currency.code
        mc_price.append(float(book.mc_price_usd))
        mc_unit.append(unit_ix[mc] if mc in p_units else -1)
        by_unit: dict[str, list[PricedPosition]] = {u: [] for u in p_units}
        for pos in book.positions:
            by_unit[pos.unit].append(pos)
        lines = {a.asset: a for a in book.assets}
        for u in p_units:
            g = len(group_keys)
            group_keys.append((book.pool.id, u))
            group_unit.append(unit_ix[u])
            group_pool.append(pool_ix)
            s_usd = float(book.price_usd(u))
            sp = params.scenario_for(u)
            where = (g, unit_ix[u], pool_ix)

            line = lines.get(u)
            if line is not None and line.balance_net != 0 and sp.balances_in_scenarios:
                v = float(line.balance_net) * s_usd
                d.add_delta(where, f"balance:{u}", v, v, "balance")
            if mc == u:
                for a in book.assets:
                    if a.asset not in p_units and a.balance_net != 0:
                        v = float(a.balance_net * a.price_usd)
                        d.add_delta(where, f"cash:{a.asset}", 0.0, v, "cash")
            for pos in by_unit[u]:
                inst = pos.position.instrument
                units_f = float(pos.units)
                if inst.kind is InstrumentKind.SPOT:
                    v = units_f * s_usd
                    d.add_delta(where, pos.key, v, v, inst.kind.value)
                elif inst.is_linear or inst.is_inverse:
                    entry, mark, q_usd = (
                        float(pos.position.entry_price),
                        float(pos.mark),
                        float(pos.quote_usd),
                    )
                    if inst.is_linear:
                        delta = units_f * mark * q_usd
                        value = units_f * (mark - entry) * q_usd
                        size_coin = abs(units_f)
                    else:  # USD face: coin PnL × coin price moves by N·S·m/entry
                        delta = units_f * s_usd / entry
                        value = units_f * (1.0 / entry - 1.0 / mark) * s_usd
                        size_coin = abs(units_f) / mark  # face / mark: coin-equivalent size
                    d.add_delta(where, pos.key, delta, value, inst.kind.value, size_coin)
                else:
                    if pos.iv is None:
                        raise DataError(
                            "option has no implied volatility; scenario margin needs the mark IV",
                            where=f"position {pos.key}",
                        )
                    if pos.forward is None or pos.t_years is None:  # set by build_book
                        raise DataError("option was not priced", where=f"position {pos.key}")
                    fwd = float(pos.forward)
                    if inst.settlement is Settlement.INVERSE:
                        factor = s_usd / fwd
                    else:
                        factor = float(pos.quote_usd)
                    o.add(*where, pos.key)
                    o_cols["size"].append(units_f * factor)
                    o_cols["fwd"].append(fwd)
                    o_cols["k"].append(float(inst.strike or 0))
                    o_cols["t"].append(pos.t_years)
                    o_cols["iv"].append(float(pos.iv))
                    o_cols["call"].append(1.0 if inst.right == "call" else 0.0)
                    o_cols["scale"].append(
                        float(
                            vol_shock_scale(
                                pos.t_years * 365.0,
                                power_short=sp.vol_power_short,
                                power_long=sp.vol_power_long,
                                cutoff_days=sp.vol_power_cutoff_days,
                            )
                        )
                    )
                    o_cols["floor"].append(sp.min_vol_frac)

    # Rows ordered by (unit, group): groups stay contiguous and the engine's chunks each hold
    # one unit, so scenario moves broadcast instead of being gathered per row.
    d_ord = np.lexsort((_ia(d.group), _ia(d.unit)))
    o_ord = np.lexsort((_ia(o.group), _ia(o.unit)))
    delta_block = DeltaBlock(
        _ia(d.group)[d_ord],
        _ia(d.unit)[d_ord],
        _ia(d.pool)[d_ord],
        _fa(d.delta_usd)[d_ord],
        _fa(d.value0_usd)[d_ord],
    )
    option = OptionBlock(
        _ia(o.group)[o_ord],
        _ia(o.unit)[o_ord],
        _ia(o.pool)[o_ord],
        _fa(o_cols["size"])[o_ord],
        _fa(o_cols["fwd"])[o_ord],
        _fa(o_cols["k"])[o_ord],
        _fa(o_cols["t"])[o_ord],
        _fa(o_cols["iv"])[o_ord],
        _fa(o_cols["call"])[o_ord].astype(bool),
        _fa(o_cols["scale"])[o_ord],
        _fa(o_cols["floor"])[o_ord],
    )
    risk = RiskBook(
        delta_block, option, _ia(group_unit), _ia(group_pool), _fa(mc_price), _ia(mc_unit)
    )
    labels = RowLabels(
        tuple(units),
        tuple(b.pool.id for b, _ in pools),
        tuple(group_keys),
        tuple(d.keys[i] for i in d_ord),
        tuple(o.keys[i] for i in o_ord),
        tuple(d.kinds[i] for i in d_ord),
        tuple(d.roll_coin[i] for i in d_ord),
    )
    return risk, labels
