"""``MarginReport``: what a margin model says about one pool, as a typed object and as JSON.

Figures are ``Decimal`` in USD (``*_usd``); the pool's margin currency and its USD price are
carried so every figure can be given in that currency too (DESIGN §3.1: a coin-margined pool
measures in the coin). ``deficit(r*) = max(0, r*·MM − E)`` is what a margin call must bring in;
for a siloed (``standard``) pool it is the sum of each silo's own deficit, because collateral in
one silo does not help another.

A report names two statuses apart (DESIGN §3.2; the levels and the breach rule live in
:mod:`core.margin.levels`, re-exported here):

- ``venue_band``: where the *venue* puts the account, from the pool's ``VenueLevels``
  (Binance Portfolio Margin Pro, "maintenance margin ratio calculation": ratio > 1.5 normal;
  1.2 < r ≤ 1.5 margin_call; 1.05 < r ≤ 1.2 reduce_only; 1.0 < r ≤ 1.05 liquidation;
  r ≤ 1.0 bankrupt);
- ``desk_level``: where the *desk's own* thresholds put it (``Thresholds``: r > warn ok;
  call < r ≤ warn warn; reduce_only < r ≤ call call; liquidation < r ≤ reduce_only
  reduce_only; r ≤ liquidation liquidation). Margin calls are raised on ``desk_level``.

Both are upper-inclusive like Binance's ("120 % < uniMMR ≤ 150 %: margin call").
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import TypeAdapter

from core.domain import MarginModelKind, PositionSide
from core.margin.levels import DeskLevel, VenueBand, desk_level_for, venue_band_for
from core.params import Thresholds, VenueLevels

__all__ = [
    "AssetReport",
    "DeskLevel",
    "MarginReport",
    "ModelOutput",
    "PositionContribution",
    "SiloReport",
    "UnitRisk",
    "VenueBand",
    "desk_level_for",
    "to_dec",
    "venue_band_for",
]

_ZERO = Decimal(0)
_MONEY_Q = Decimal("1e-8")
_RATIO_Q = Decimal("1e-9")


def to_dec(x: float, *, quantum: Decimal = _MONEY_Q) -> Decimal:
    """Convert an engine float to a boundary ``Decimal`` (quantised; NaN/inf are refused)."""
    if not math.isfinite(x):
        raise ValueError(f"non-finite engine result {x!r}")
    return Decimal(repr(float(x))).quantize(quantum)


@dataclass(frozen=True, slots=True)
class AssetReport:
    """One asset's net in the pool and its value as collateral."""

    asset: str
    net: Decimal
    price_usd: Decimal
    value_usd: Decimal
    collateral_usd: Decimal


@dataclass(frozen=True, slots=True)
class UnitRisk:
    """A risk unit's worst scenario and margin components (``scenario`` model)."""

    unit: str
    scenario_id: str
    price_move_frac: Decimal
    vol_shock_frac: Decimal
    weight: Decimal
    loss_usd: Decimal  # weighted loss in the worst scenario (the scan risk, ≥ 0)
    delta_charge_usd: Decimal
    roll_usd: Decimal
    credit_usd: Decimal
    im_usd: Decimal
    mm_usd: Decimal


@dataclass(frozen=True, slots=True)
class PositionContribution:
    """What one position (or a wallet holding, ``balance:<ASSET>``) adds to the margin.

    ``worst_loss_usd``: its weighted loss in its unit's worst scenario (``scenario`` model);
    ``mm_usd``: its own maintenance margin (``unified`` and ``standard`` models);
    ``side``: the position's leg (``both``, or ``long``/``short`` in hedge mode, whose ``key``
    ends in ``:long``/``:short``); ``None`` for holdings, cash and loans.
    """

    key: str
    unit: str
    value_usd: Decimal
    worst_loss_usd: Decimal | None
    mm_usd: Decimal | None
    side: PositionSide | None = None


@dataclass(frozen=True, slots=True)
class SiloReport:
    """One silo of a ``standard`` pool: a wallet margined only by its own collateral."""

    wallet: str
    adjusted_equity_usd: Decimal
    im_usd: Decimal
    mm_usd: Decimal

    def deficit(self, target_ratio: float | Decimal) -> Decimal:
        return max(_ZERO, Decimal(str(target_ratio)) * self.mm_usd - self.adjusted_equity_usd)


@dataclass(frozen=True, slots=True)
class ModelOutput:
    """What a margin model computes; ``core.margin.api`` turns it into a ``MarginReport``."""

    im_usd: Decimal
    mm_usd: Decimal
    worst_scenarios: tuple[UnitRisk, ...] = ()
    crash_loss_raw_usd: Decimal | None = None
    crash_loss_weighted_usd: Decimal | None = None
    contributions: tuple[PositionContribution, ...] = ()
    silos: tuple[SiloReport, ...] = ()


@dataclass(frozen=True, slots=True)
class MarginReport:
    """A pool's margin at one instant under one model (DESIGN §3.2).

    ``ratio`` = adjusted equity / MM (``None`` when MM is 0); for a ``standard`` pool it is the
    weakest silo's ratio, since that silo is liquidated first. ``capital_efficiency`` = standard
    (siloed) MM / this model's MM. ``venue_band`` is the venue's status of the account and
    ``desk_level`` the desk's own (module docstring); ``margin_call_due`` reads the latter.
    ``crash_loss_raw_usd`` is the joint crash's unweighted loss, ``crash_loss_weighted_usd``
    the tail-weighted loss that floors IM (``scenario`` model only).

    Examples
    --------
    >>> r = MarginReport.from_json(report_json)  # doctest: +SKIP
    >>> r.deficit(1.5)  # USD to bring in to restore a ratio of 1.5  # doctest: +SKIP
    Decimal('0')
    """

    pool_id: str
    model: MarginModelKind
    as_of: datetime
    margin_currency: str
    margin_currency_usd: Decimal
    equity_usd: Decimal
    adjusted_equity_usd: Decimal
    im_usd: Decimal
    mm_usd: Decimal
    ratio: Decimal | None
    venue_band: VenueBand
    desk_level: DeskLevel
    max_withdraw_usd: Decimal
    standard_mm_usd: Decimal | None  # None when the standard rules lack parameters for a position
    capital_efficiency: Decimal | None
    thresholds: Thresholds
    venue_levels: VenueLevels
    assets: tuple[AssetReport, ...] = ()
    worst_scenarios: tuple[UnitRisk, ...] = ()
    crash_loss_raw_usd: Decimal | None = None
    crash_loss_weighted_usd: Decimal | None = None
    contributions: tuple[PositionContribution, ...] = ()
    silos: tuple[SiloReport, ...] = field(default=())

    @property
    def margin_call_due(self) -> bool:
        """The desk's own level is at or below ``call``: raise a margin call for this pool."""
        return self.desk_level.needs_margin_call

    def deficit(self, target_ratio: float | Decimal) -> Decimal:
        """USD of adjusted equity needed to restore ``target_ratio``: max(0, r*·MM − E).

        For a siloed pool: the sum of the silos' own deficits.
        """
        if self.silos:
            return sum((s.deficit(target_ratio) for s in self.silos), _ZERO)
        return max(_ZERO, Decimal(str(target_ratio)) * self.mm_usd - self.adjusted_equity_usd)

    def in_margin_currency(self, usd: Decimal) -> Decimal:
        """Convert a USD figure of this report into the pool's margin currency."""
        return usd / self.margin_currency_usd

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict: Decimals as strings, plus an ``in_margin_currency`` summary block."""
        out: dict[str, Any] = _ADAPTER.dump_python(self, mode="json")
        q = _MONEY_Q
        out["in_margin_currency"] = {
            "currency": self.margin_currency,
            "equity": str(self.in_margin_currency(self.equity_usd).quantize(q)),
            "adjusted_equity": str(self.in_margin_currency(self.adjusted_equity_usd).quantize(q)),
            "im": str(self.in_margin_currency(self.im_usd).quantize(q)),
            "mm": str(self.in_margin_currency(self.mm_usd).quantize(q)),
        }
        return out

    def to_json(self, *, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MarginReport:
        clean = {k: v for k, v in data.items() if k != "in_margin_currency"}
        return _ADAPTER.validate_python(clean)

    @classmethod
    def from_json(cls, text: str) -> MarginReport:
        return cls.from_dict(json.loads(text))


_ADAPTER: TypeAdapter[MarginReport] = TypeAdapter(MarginReport)
