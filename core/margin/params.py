"""``MarginParams``: everything a margin model needs besides the portfolio, for one pool.

The parameter types it is made of (thresholds, collateral rates, brackets, scenario, crash and
standard-rule parameters) live in :mod:`core.params`, below the config, the margin models and
the venues; they are re-exported here so ``from core.margin.params import Bracket`` keeps
working.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from core.params import (
    DEFAULT_EXTENDED_MOVES,
    DEFAULT_LOAN_MMR_BY_LEVERAGE,
    DEFAULT_SCENARIO_BY_ASSET,
    Bracket,
    BracketTables,
    CollateralRate,
    CollateralTier,
    CrashScenario,
    FrozenModel,
    OffsetCredit,
    OptionStandardParams,
    ScenarioParams,
    SizeScaledFutureParams,
    StandardParams,
    Thresholds,
    VenueLevels,
    bracket_cums,
    validate_brackets,
)

__all__ = [
    "DEFAULT_EXTENDED_MOVES",
    "DEFAULT_LOAN_MMR_BY_LEVERAGE",
    "DEFAULT_SCENARIO_BY_ASSET",
    "Bracket",
    "BracketTables",
    "CollateralRate",
    "CollateralTier",
    "CrashScenario",
    "FrozenModel",
    "MarginParams",
    "OffsetCredit",
    "OptionStandardParams",
    "ScenarioParams",
    "SizeScaledFutureParams",
    "StandardParams",
    "Thresholds",
    "VenueLevels",
    "bracket_cums",
    "validate_brackets",
]


class MarginParams(FrozenModel):
    """Everything a margin model needs besides the portfolio itself, for one pool.

    Built from a desk (``core.margin.api.params_for_pool``) or read from the ``params`` block of
    a self-contained portfolio file (``pmr margin --portfolio``). An asset without a collateral
    rate is not collateral (rate 0; negative nets still count at 100 %); an asset without its
    own scenario entry gets the Deribit-like defaults of ``ScenarioParams``.
    """

    max_price_age_s: float = Field(120.0, gt=0, description="older prices are refused as stale")
    thresholds: Thresholds = Thresholds()
    venue_levels: VenueLevels = VenueLevels()
    loan_leverage: Literal[3, 5, 10] = 3
    loan_mmr_by_leverage: dict[int, float] = Field(
        default_factory=lambda: dict(DEFAULT_LOAN_MMR_BY_LEVERAGE)
    )
    collateral_rates: dict[str, CollateralRate] = Field(default_factory=dict)
    brackets: BracketTables = Field(default_factory=dict)
    scenario: dict[str, ScenarioParams] = Field(default_factory=dict)
    offsets: tuple[OffsetCredit, ...] = ()
    crash: CrashScenario = CrashScenario()
    standard: StandardParams = StandardParams()

    @model_validator(mode="after")
    def _leverage_known(self) -> MarginParams:
        if self.loan_leverage not in self.loan_mmr_by_leverage:
            raise ValueError(
                f"loan_leverage {self.loan_leverage} has no entry in loan_mmr_by_leverage "
                f"{sorted(self.loan_mmr_by_leverage)}"
            )
        return self

    def collateral_rate(self, asset: str) -> CollateralRate:
        """The asset's collateral rate, or 0 (not collateral) when none is configured."""
        rate = self.collateral_rates.get(asset)
        return rate if rate is not None else CollateralRate.flat(0)

    def scenario_for(self, asset: str) -> ScenarioParams:
        """The asset's scenario parameters, else Deribit's for BTC/ETH, else the generic defaults."""
        found = self.scenario.get(asset)
        if found is not None:
            return found
        return DEFAULT_SCENARIO_BY_ASSET.get(asset) or ScenarioParams()

    @property
    def loan_mmr(self) -> float:
        """Binance PM margin-loan MMR at the pool's leverage (3x → 10 %, 5x → 8 %, 10x → 5 %)."""
        return self.loan_mmr_by_leverage[self.loan_leverage]
