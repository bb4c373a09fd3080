"""``MarginReport``: what a margin model says about one pool, as a typed object and as JSON.

Figures are ``Decimal`` in USD (``*_usd``); the pool's margin currency and its USD price are
carried so every figure can be given in that currency too (DESIGN §3.1: a coin-margined pool
measures in the coin). ``deficit(r*) = max(0, r*·MM − E)`` is what a margin call must bring in;
for a siloed (``standard``) pool it is the sum of each silo's own deficit, because collateral in
one silo does not help another.

Status bands (Binance Portfolio Margin Pro, "maintenance margin ratio calculation"):
``ratio > warn`` normal; ``call < ratio ≤ warn`` margin call; ``reduce_only < ratio ≤ call``
reduce-only; ``liquidation < ratio ≤ reduce_only`` liquidation; ``ratio ≤ liquidation`` bankrupt.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from pydantic import TypeAdapter

from core.domain import MarginModelKind
from core.margin.params import Thresholds

__all__ = [
    "AssetReport",
    "Band",
    "MarginReport",
    "ModelOutput",
    "PositionContribution",
    "SiloReport",
    "UnitRisk",
    "band_for",
    "to_dec",
]

_ZERO = Decimal(0)
_MONEY_Q = Decimal("1e-8")
_RATIO_Q = Decimal("1e-9")


def to_dec(x: float, *, quantum: Decimal = _MONEY_Q) -> Decimal:
    """Convert an engine float to a boundary ``Decimal`` (quantised; NaN/inf are refused)."""
    if not math.isfinite(x):
        raise ValueError(f"non-finite engine result {x!r}")
    return Decimal(repr(float(x))).quantize(quantum)


class Band(StrEnum):
    """Status band of a pool's margin ratio (Binance PM Pro bands, thresholds from config)."""

    NORMAL = "normal"
    MARGIN_CALL = "margin_call"
    REDUCE_ONLY = "reduce_only"
    LIQUIDATION = "liquidation"
    BANKRUPT = "bankrupt"


def band_for(ratio: Decimal | None, equity_usd: Decimal, thresholds: Thresholds) -> Band:
    """Return the band of ``ratio`` (``None`` = no margin requirement)."""
    if ratio is None:
        return Band.NORMAL if equity_usd >= 0 else Band.BANKRUPT
    r = float(ratio)
    if r > thresholds.warn:
        return Band.NORMAL
    if r > thresholds.call:
        return Band.MARGIN_CALL
    if r > thresholds.reduce_only:
        return Band.REDUCE_ONLY
    if r > thresholds.liquidation:
        return Band.LIQUIDATION
    return Band.BANKRUPT


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
    ``mm_usd``: its own maintenance margin (``unified`` and ``standard`` models).
    """

    key: str
    unit: str
    value_usd: Decimal
    worst_loss_usd: Decimal | None
    mm_usd: Decimal | None


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
    crash_loss_usd: Decimal | None = None
    contributions: tuple[PositionContribution, ...] = ()
    silos: tuple[SiloReport, ...] = ()


@dataclass(frozen=True, slots=True)
class MarginReport:
    """A pool's margin at one instant under one model (DESIGN §3.2).

    ``ratio`` = adjusted equity / MM (``None`` when MM is 0); for a ``standard`` pool it is the
    weakest silo's ratio, since that silo is liquidated first. ``capital_efficiency`` = standard
    (siloed) MM / this model's MM.

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
    band: Band
    max_withdraw_usd: Decimal
    standard_mm_usd: Decimal | None  # None when the standard rules lack parameters for a position
    capital_efficiency: Decimal | None
    thresholds: Thresholds
    assets: tuple[AssetReport, ...] = ()
    worst_scenarios: tuple[UnitRisk, ...] = ()
    crash_loss_usd: Decimal | None = None
    contributions: tuple[PositionContribution, ...] = ()
    silos: tuple[SiloReport, ...] = field(default=())

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
