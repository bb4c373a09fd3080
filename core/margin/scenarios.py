"""Scenario grids as arrays with named axes: units × scenarios (DESIGN §3.2).

Per risk unit (an underlying) the ``scenario`` model re-prices every position in:

- 2n+1 evenly spaced price moves from −R to +R, each with vol up, unchanged and down
  (Deribit portfolio margin: "maximum underlying price move e.g. ±16 % … 9 evenly spaced
  buckets … Volatility Range Up, Same, and Down");
- an extended table of tail moves (−66 %, −33 %, +50 %, +100 % … +500 %) on vol-up only, each
  loss weighted by R/(2|m|) for |m| ≤ 1 and R/(2m²) above (Paradex portfolio margin);
- optionally SPAN's extreme moves: ±multiplier × R with vol unchanged at a weight (CME SPAN:
  ±2 × price scan range, 35 % of the loss).

A ``ScenarioMatrix`` holds the moves as (units × scenarios) arrays. In a per-unit matrix
(``joint=False``) column s of row u is unit u's own scenario s and units are scanned separately;
grids of different lengths are padded by repeating their first scenario (harmless for a max).
In a joint matrix (``joint=True``: the crash scenario, stress tests) column s is one world in
which every unit moves at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from core.errors import DataError
from core.params import CrashScenario, ScenarioParams

__all__ = ["ScenarioMatrix", "UnitGrid", "crash_matrix", "joint_matrix", "stack_grids", "unit_grid"]

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class UnitGrid:
    """One unit's scenarios: price move, signed vol shock (fraction of IV) and loss weight."""

    unit: str
    ids: tuple[str, ...]
    price_move: FloatArray
    vol_shock: FloatArray
    weight: FloatArray

    def __len__(self) -> int:
        return len(self.ids)


def extended_weight(move: float, range_frac: float) -> float:
    """Paradex weight of an extended-table loss: R/(2|m|) for |m| ≤ 1, R/(2m²) above."""
    a = abs(move)
    return range_frac / (2.0 * a) if a <= 1.0 else range_frac / (2.0 * a * a)


def unit_grid(unit: str, p: ScenarioParams) -> UnitGrid:
    """Build the scenario grid of ``unit`` from its parameters.

    Examples
    --------
    >>> g = unit_grid("BTC", ScenarioParams())
    >>> len(g), float(g.price_move.min()), float(g.price_move.max())
    (35, -0.66, 5.0)
    """
    r, n = p.price_range_frac, p.buckets
    ids: list[str] = []
    moves: list[float] = []
    vols: list[float] = []
    weights: list[float] = []
    # r·(i − n)/n rather than linspace: the middle move is exactly 0 (no direction, so it can
    # never earn an offset credit by a rounding sign) and the oracle writes the same formula.
    price_moves = r * (np.arange(2 * n + 1) - n) / n
    for vol_name, vol in (("up", p.vol_up_frac), ("same", 0.0), ("down", -p.vol_down_frac)):
        for m in price_moves:
            ids.append(f"{unit}:grid:{m:+.4f}:vol-{vol_name}")
            moves.append(float(m))
            vols.append(vol)
            weights.append(1.0)
    for m in p.extended_moves:
        ids.append(f"{unit}:extended:{m:+.4f}:vol-up")
        moves.append(m)
        vols.append(p.vol_up_frac)
        weights.append(extended_weight(m, r))
    if p.span_extreme:
        for sign in (-1.0, 1.0):
            m = sign * p.extreme_multiplier * r
            if m <= -1.0:
                raise DataError(
                    "SPAN extreme move would take the price to zero or below",
                    unit=unit,
                    move=m,
                )
            ids.append(f"{unit}:extreme:{m:+.4f}:vol-same")
            moves.append(m)
            vols.append(0.0)
            weights.append(p.extreme_weight)
    return UnitGrid(
        unit,
        tuple(ids),
        np.asarray(moves, dtype=np.float64),
        np.asarray(vols, dtype=np.float64),
        np.asarray(weights, dtype=np.float64),
    )


@dataclass(frozen=True, slots=True)
class ScenarioMatrix:
    """Scenario moves per unit (rows, in ``units`` order) and scenario (columns)."""

    units: tuple[str, ...]
    ids: tuple[tuple[str, ...], ...]  # per unit row, one id per column
    price_move: FloatArray  # (U, S) relative move of the unit's prices: 0.1 = +10 %
    vol_shock: FloatArray  # (U, S) signed IV shock before DTE scaling: +0.5 = vol up 50 %
    weight: FloatArray  # (U, S) weight applied to the loss of the column
    joint: bool
    _cache: dict[str, FloatArray] = field(default_factory=dict, repr=False, compare=False)

    @property
    def n_scenarios(self) -> int:
        return int(self.price_move.shape[1])

    @property
    def price_move_t(self) -> FloatArray:
        """``price_move`` as a contiguous (scenarios × units) array, for column gathers."""
        return self._transposed("price_move")

    @property
    def vol_shock_t(self) -> FloatArray:
        """``vol_shock`` as a contiguous (scenarios × units) array."""
        return self._transposed("vol_shock")

    def _transposed(self, name: str) -> FloatArray:
        cached = self._cache.get(name)
        if cached is None:
            cached = np.ascontiguousarray(getattr(self, name).T)
            self._cache[name] = cached
        return cached

    def __post_init__(self) -> None:
        shape = self.price_move.shape
        if self.vol_shock.shape != shape or self.weight.shape != shape:
            raise DataError("scenario arrays differ in shape", shape=shape)
        if shape[0] != len(self.units):
            raise DataError("scenario rows do not match units", rows=shape[0], units=self.units)
        if not np.all(np.isfinite(self.price_move)) or np.any(self.price_move <= -1.0):
            raise DataError("scenario price moves must be finite and > -100 %")


def stack_grids(grids: Sequence[UnitGrid]) -> ScenarioMatrix:
    """Stack per-unit grids into one per-unit matrix, padding short grids with their first column."""
    width = max((len(g) for g in grids), default=1)
    units = tuple(g.unit for g in grids)
    u = len(grids)
    pm = np.zeros((u, width))
    vs = np.zeros((u, width))
    w = np.zeros((u, width))
    ids: list[tuple[str, ...]] = []
    for i, g in enumerate(grids):
        pad = width - len(g)
        pm[i] = np.concatenate([g.price_move, np.full(pad, g.price_move[0])])
        vs[i] = np.concatenate([g.vol_shock, np.full(pad, g.vol_shock[0])])
        w[i] = np.concatenate([g.weight, np.full(pad, g.weight[0])])
        ids.append(g.ids + (g.ids[0],) * pad)
    return ScenarioMatrix(units, tuple(ids), pm, vs, w, joint=False)


def crash_matrix(units: Sequence[str], crash: CrashScenario) -> ScenarioMatrix:
    """The joint "crypto crash": every unit moves ``move_frac`` at once with vol up."""
    u = len(units)
    label = f"crash:{crash.move_frac:+.4f}:vol+{crash.vol_up_frac:.2f}"
    return ScenarioMatrix(
        tuple(units),
        tuple((label,) for _ in units),
        np.full((u, 1), crash.move_frac),
        np.full((u, 1), crash.vol_up_frac),
        np.full((u, 1), crash.weight),
        joint=True,
    )


def joint_matrix(
    units: Sequence[str],
    price_move: FloatArray,
    vol_shock: FloatArray,
    ids: Sequence[str],
    weight: FloatArray | None = None,
) -> ScenarioMatrix:
    """Joint scenarios for stress tests: column s moves every unit at once (weights default 1)."""
    pm = np.asarray(price_move, dtype=np.float64)
    vs = np.asarray(vol_shock, dtype=np.float64)
    w = np.ones_like(pm) if weight is None else np.broadcast_to(weight, pm.shape).astype(float)
    row = tuple(ids)
    return ScenarioMatrix(tuple(units), tuple(row for _ in units), pm, vs, w, joint=True)
