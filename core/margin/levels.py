"""Where a pool stands: the venue's band, the desk's level, and which pools need a margin call.

Two statuses, kept apart (DESIGN §3.2, §3.3):

- ``venue_band``: where the *venue* puts the account, from the pool's ``VenueLevels`` (Binance
  Portfolio Margin Pro, "maintenance margin ratio calculation": ratio > 1.5 normal;
  1.2 < r ≤ 1.5 margin_call; 1.05 < r ≤ 1.2 reduce_only; 1.0 < r ≤ 1.05 liquidation;
  r ≤ 1.0 bankrupt);
- ``desk_level``: where the *desk's own* thresholds put it (``Thresholds``: r > warn ok;
  call < r ≤ warn warn; reduce_only < r ≤ call call; liquidation < r ≤ reduce_only reduce_only;
  r ≤ liquidation liquidation).

Both are upper-inclusive like Binance's ("120 % < uniMMR ≤ 150 %: margin call") and compared in
``Decimal``: a threshold is its decimal literal (``1.6`` is 1.6, not the binary double
1.600000000000000088…), so a ratio exactly at a level falls where the rule says it does.

Margin calls are raised on the desk's level, never on the venue's band: :func:`margin_calls_due`
is the one breach rule the monitor, the demo and the stress tests call.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from functools import lru_cache
from typing import TYPE_CHECKING

from core.errors import ConfigError
from core.params import Thresholds, VenueLevels

if TYPE_CHECKING:  # types only: margin reads the config, never at import time
    from core.config import DeskConfig
    from core.margin.report import MarginReport

__all__ = [
    "DeskLevel",
    "MarginCallDue",
    "VenueBand",
    "desk_level_for",
    "margin_calls_due",
    "target_ratio",
    "venue_band_for",
]


@lru_cache(maxsize=1024)
def _dec(level: float) -> Decimal:
    """A configured level as the decimal it was written as (``1.6`` → ``Decimal('1.6')``);
    a desk has a handful of levels, read on every report and stress row."""
    return Decimal(repr(float(level)))


class VenueBand(StrEnum):
    """The venue's own status band of a pool (Binance PM Pro names, levels ``VenueLevels``)."""

    NORMAL = "normal"
    MARGIN_CALL = "margin_call"
    REDUCE_ONLY = "reduce_only"
    LIQUIDATION = "liquidation"
    BANKRUPT = "bankrupt"


class DeskLevel(StrEnum):
    """The desk's own level of a pool (its ``Thresholds``); calls are raised from ``CALL`` down."""

    OK = "ok"
    WARN = "warn"
    CALL = "call"
    REDUCE_ONLY = "reduce_only"
    LIQUIDATION = "liquidation"

    @property
    def needs_margin_call(self) -> bool:
        """At or below the pool's ``call`` threshold: collateral must be brought in."""
        return self in (DeskLevel.CALL, DeskLevel.REDUCE_ONLY, DeskLevel.LIQUIDATION)


def venue_band_for(ratio: Decimal | None, equity_usd: Decimal, levels: VenueLevels) -> VenueBand:
    """Return the venue's band of ``ratio`` (``None`` = no margin requirement).

    >>> venue_band_for(Decimal("1.5"), Decimal(1), VenueLevels())
    <VenueBand.MARGIN_CALL: 'margin_call'>
    """
    if ratio is None:
        return VenueBand.NORMAL if equity_usd >= 0 else VenueBand.BANKRUPT
    if ratio > _dec(levels.margin_call):
        return VenueBand.NORMAL
    if ratio > _dec(levels.reduce_only):
        return VenueBand.MARGIN_CALL
    if ratio > _dec(levels.liquidation):
        return VenueBand.REDUCE_ONLY
    if ratio > _dec(levels.bankrupt):
        return VenueBand.LIQUIDATION
    return VenueBand.BANKRUPT


def desk_level_for(ratio: Decimal | None, equity_usd: Decimal, thresholds: Thresholds) -> DeskLevel:
    """Return the desk's level of ``ratio`` (``None`` = no margin requirement).

    >>> desk_level_for(Decimal("1.2"), Decimal(1), Thresholds())
    <DeskLevel.CALL: 'call'>
    """
    if ratio is None:
        return DeskLevel.OK if equity_usd >= 0 else DeskLevel.LIQUIDATION
    if ratio > _dec(thresholds.warn):
        return DeskLevel.OK
    if ratio > _dec(thresholds.call):
        return DeskLevel.WARN
    if ratio > _dec(thresholds.reduce_only):
        return DeskLevel.CALL
    if ratio > _dec(thresholds.liquidation):
        return DeskLevel.REDUCE_ONLY
    return DeskLevel.LIQUIDATION


def target_ratio(thresholds: Thresholds) -> Decimal:
    """The ratio a margin call restores: ``target`` × (1 + ``buffer_frac``) (DESIGN §3.3).

    >>> target_ratio(Thresholds(target=2.0, buffer_frac=0.02))
    Decimal('2.040')
    """
    return _dec(thresholds.target) * (1 + _dec(thresholds.buffer_frac))


@dataclass(frozen=True, slots=True)
class MarginCallDue:
    """A pool at or below its own ``call`` level, and what restoring its target takes.

    ``deficit_usd`` = max(0, target·MM − adjusted equity) (summed per silo for a siloed pool),
    at ``target_ratio`` = target × (1 + buffer).
    """

    pool_id: str
    desk_level: DeskLevel
    ratio: Decimal | None
    call_ratio: Decimal
    target_ratio: Decimal
    deficit_usd: Decimal


def margin_calls_due(
    desk: DeskConfig, reports: Mapping[str, MarginReport]
) -> tuple[MarginCallDue, ...]:
    """The pools of ``desk`` whose report puts them at or below their own ``call`` level.

    In the desk's pool order, one entry per pool whose ``desk_level`` needs a margin call,
    whatever the venue's band says (a desk calls before its venue restricts the account).
    Pools without a report are not judged.

    Raises
    ------
    ConfigError
        A report for a pool the desk does not declare, or computed with other thresholds than
        the desk's for that pool (its level would not be the desk's).
    """
    declared = {p.id: p for p in desk.pools}
    for pool_id, report in reports.items():
        pool = declared.get(pool_id)
        if pool is None or report.pool_id != pool_id:
            raise ConfigError(
                "a margin report for a pool the desk does not declare",
                pool=pool_id,
                known=", ".join(declared),
            )
        if report.thresholds != pool.thresholds:
            raise ConfigError(
                "the margin report was computed with other thresholds than the desk's",
                pool=pool_id,
            )
    due = []
    for pool in desk.pools:
        judged = reports.get(pool.id)
        if judged is None or not judged.desk_level.needs_margin_call:
            continue
        target = target_ratio(pool.thresholds)
        due.append(
            MarginCallDue(
                pool_id=pool.id,
                desk_level=judged.desk_level,
                ratio=judged.ratio,
                call_ratio=_dec(pool.thresholds.call),
                target_ratio=target,
                deficit_usd=judged.deficit(target),
            )
        )
    return tuple(due)
