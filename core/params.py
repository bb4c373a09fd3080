"""Parameter types shared by the desk config, the margin models and the venues (DESIGN §3).

Thresholds and venue levels, collateral rates and their tiers, maintenance-margin brackets,
scenario, offset, crash and standard-rule parameters: typed, frozen, every field with its unit
and where its default comes from. They sit below ``core.config``, ``core.margin`` and
``core.venues`` so the arrows point one way: the config declares them, the margin models read
them, the venue adapter returns brackets in them, and none of the three imports another for
them (``tests/core/test_import_arrows.py`` pins it). ``core.margin.params`` re-exports them next
to ``MarginParams``, the per-pool bundle the models take.

Validation errors surface through the config loader with the file and key path prepended.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

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

PositiveFrac = Annotated[float, Field(gt=0.0, le=1.0)]
NonNegFrac = Annotated[float, Field(ge=0.0, le=1.0)]

# Paradex / Deribit extended table of tail moves (DESIGN §3.2), applied on vol-up.
DEFAULT_EXTENDED_MOVES: tuple[float, ...] = (-0.66, -0.33, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0)
# Binance Portfolio Margin: MMR of a margin loan by the account's leverage setting.
DEFAULT_LOAN_MMR_BY_LEVERAGE: dict[int, float] = {3: 0.10, 5: 0.08, 10: 0.05}


class FrozenModel(BaseModel):
    """Base for config models: immutable, and unknown keys are errors rather than ignored."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)


class Thresholds(FrozenModel):
    """The desk's own margin-ratio levels of a pool (DESIGN §3.3), which set ``desk_level``.

    ``ratio ≤ warn`` → warn, ``≤ call`` → call (a margin call is raised), ``≤ reduce_only`` →
    reduce_only, ``≤ liquidation`` → liquidation. The defaults copy Binance PM Pro's numbers;
    a desk should put ``call`` at or above its venue's margin-call level (``VenueLevels``) so
    it acts before the venue restricts the account (``pmr config check`` warns otherwise).
    ``target`` is where a margin call restores the ratio to; ``buffer_frac`` is added on top for
    price moves while the cure is in flight (target·(1 + buffer)).
    """

    warn: float = Field(1.5, gt=0)
    call: float = Field(1.2, gt=0)
    reduce_only: float = Field(1.05, gt=0)
    liquidation: float = Field(1.0, gt=0)
    target: float = Field(1.5, gt=0)
    buffer_frac: float = Field(0.02, ge=0, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        if not (self.warn >= self.call >= self.reduce_only >= self.liquidation):
            raise ValueError(
                "thresholds must satisfy warn >= call >= reduce_only >= liquidation, got "
                f"{self.warn} / {self.call} / {self.reduce_only} / {self.liquidation}"
            )
        if self.target < self.call:
            raise ValueError(f"target ({self.target}) must be >= call ({self.call})")
        return self


class VenueLevels(FrozenModel):
    """The venue's own ratio levels of a pool, which set ``venue_band`` (DESIGN §3.2).

    Defaults: Binance Portfolio Margin Pro ("maintenance margin ratio calculation" FAQ):
    uniMMR > 1.5 normal; 1.2 < r ≤ 1.5 margin_call; 1.05 < r ≤ 1.2 reduce_only;
    1.0 < r ≤ 1.05 liquidation; r ≤ 1.0 bankrupt. Each level is the ratio at or below which
    the venue enters that band. ``max_withdraw_ratio``: the venue lets collateral out down to
    this ratio, max withdraw = max(E − max_withdraw_ratio·MM, 0) (Binance PM: 1.2).
    """

    margin_call: float = Field(1.5, gt=0)
    reduce_only: float = Field(1.2, gt=0)
    liquidation: float = Field(1.05, gt=0)
    bankrupt: float = Field(1.0, gt=0)
    max_withdraw_ratio: float = Field(1.2, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> VenueLevels:
        if not (self.margin_call >= self.reduce_only >= self.liquidation >= self.bankrupt):
            raise ValueError(
                "venue levels must satisfy margin_call >= reduce_only >= liquidation >= "
                f"bankrupt, got {self.margin_call} / {self.reduce_only} / {self.liquidation} / "
                f"{self.bankrupt}"
            )
        return self


class CollateralTier(FrozenModel):
    """One bracket of a tiered collateral rate: USD value in [from_usd, to_usd) at ``rate``."""

    from_usd: Decimal = Field(ge=0)
    to_usd: Decimal | None = None  # None = open-ended (last tier only)
    rate: Decimal = Field(ge=0, le=1)


class CollateralRate(FrozenModel):
    """Collateral rate of an asset: flat (``rate``) or tiered by USD value, applied marginally.

    Binance's tiered collateral ratio works like tax brackets: 6,000 BTC at 20,000 with 100 %
    up to 100 M and 97.5 % from 100 M to 120 M values at 100 M + 0.975 × 20 M = 119.5 M.
    """

    rate: Decimal | None = Field(None, ge=0, le=1)
    tiers: tuple[CollateralTier, ...] | None = None

    @model_validator(mode="after")
    def _one_form(self) -> CollateralRate:
        if (self.rate is None) == (self.tiers is None):
            raise ValueError("give exactly one of 'rate' (flat) or 'tiers' (tiered)")
        if self.tiers is not None:
            if not self.tiers:
                raise ValueError("'tiers' must not be empty")
            if self.tiers[0].from_usd != 0:
                raise ValueError(f"the first tier must start at 0, not {self.tiers[0].from_usd}")
            for i, tier in enumerate(self.tiers):
                last = i == len(self.tiers) - 1
                if tier.to_usd is None and not last:
                    raise ValueError(f"tier {i} has no to_usd but is not the last tier")
                if tier.to_usd is not None and tier.to_usd <= tier.from_usd:
                    raise ValueError(f"tier {i}: to_usd {tier.to_usd} <= from_usd {tier.from_usd}")
                if not last:
                    nxt = self.tiers[i + 1].from_usd
                    if nxt > tier.to_usd:  # type: ignore[operator]
                        raise ValueError(
                            f"gap between tier {i} (to {tier.to_usd}) and {i + 1} (from {nxt})"
                        )
                    if nxt < tier.to_usd:  # type: ignore[operator]
                        raise ValueError(
                            f"tier {i} (to {tier.to_usd}) overlaps tier {i + 1} (from {nxt})"
                        )
        return self

    @classmethod
    def flat(cls, rate: Decimal | float | str) -> CollateralRate:
        return cls(rate=Decimal(str(rate)))


class Bracket(FrozenModel):
    """A notional bracket of a futures maintenance-margin table (Binance leverageBracket).

    MM of a position = |notional| × mmr − cum, with cum chosen so MM is continuous across
    brackets; ``cum_usd`` may be given (it is then checked) or left out (then derived).
    """

    floor_usd: Decimal = Field(ge=0)
    cap_usd: Decimal | None = None
    mmr: Decimal = Field(gt=0, le=1)
    cum_usd: Decimal | None = None
    max_leverage: int | None = Field(None, gt=0)


def bracket_cums(brackets: tuple[Bracket, ...]) -> tuple[Decimal, ...]:
    """Derive each bracket's ``cum`` so MM is continuous: cum_i = cum_{i-1} + floor_i·(mmr_i − mmr_{i-1})."""
    cums: list[Decimal] = []
    for i, b in enumerate(brackets):
        if i == 0:
            cums.append(Decimal(0))
        else:
            prev = brackets[i - 1]
            cums.append(cums[-1] + b.floor_usd * (b.mmr - prev.mmr))
    return tuple(cums)


def validate_brackets(brackets: tuple[Bracket, ...]) -> tuple[Bracket, ...]:
    """Check brackets are contiguous from 0, MMR non-decreasing, and any given cum is right."""
    if not brackets:
        raise ValueError("a bracket table needs at least one bracket")
    if brackets[0].floor_usd != 0:
        raise ValueError("the first bracket must start at floor_usd = 0")
    for i, b in enumerate(brackets):
        last = i == len(brackets) - 1
        if b.cap_usd is None and not last:
            raise ValueError(f"bracket {i} has no cap_usd but is not the last bracket")
        if b.cap_usd is not None and b.cap_usd <= b.floor_usd:
            raise ValueError(f"bracket {i}: cap_usd {b.cap_usd} <= floor_usd {b.floor_usd}")
        if not last and brackets[i + 1].floor_usd != b.cap_usd:
            raise ValueError(
                f"bracket {i} ends at {b.cap_usd} but bracket {i + 1} starts at "
                f"{brackets[i + 1].floor_usd} (gap or overlap)"
            )
        if i and b.mmr < brackets[i - 1].mmr:
            raise ValueError(f"bracket {i}: mmr {b.mmr} is below the previous bracket's")
    cums = bracket_cums(brackets)
    out = []
    for i, (b, cum) in enumerate(zip(brackets, cums, strict=True)):
        if b.cum_usd is not None and abs(b.cum_usd - cum) > Decimal("0.01"):
            raise ValueError(f"bracket {i}: cum_usd {b.cum_usd} should be {cum} for continuity")
        out.append(b.model_copy(update={"cum_usd": cum}))
    return tuple(out)


def _validate_tables(
    tables: dict[str, tuple[Bracket, ...]],
) -> dict[str, tuple[Bracket, ...]]:
    out = {}
    for symbol, table in tables.items():
        try:
            out[symbol] = validate_brackets(table)
        except ValueError as exc:
            raise ValueError(f"brackets.{symbol}: {exc}") from None
    return out


# Bracket tables by instrument symbol, checked and with ``cum_usd`` derived, wherever they load.
BracketTables = Annotated[dict[str, tuple[Bracket, ...]], AfterValidator(_validate_tables)]


class ScenarioParams(FrozenModel):
    """Risk-based (scenario) margin parameters of one risk unit, Deribit-like defaults.

    Deribit portfolio margin: BTC price range 16 %, ETH 18 %; vol up 50 %, down 25 %;
    MM = 0.8 × IM. Paradex extended moves weighted R/(2|m|) (|m| ≤ 1) or R/(2m²).
    """

    price_range_frac: float = Field(0.16, gt=0, le=1)
    buckets: int = Field(4, ge=1, le=50)
    vol_up_frac: float = Field(0.5, ge=0, le=5)
    vol_down_frac: float = Field(0.25, ge=0, lt=1)
    extended_moves: tuple[float, ...] = DEFAULT_EXTENDED_MOVES
    span_extreme: bool = False
    extreme_multiplier: float = Field(2.0, gt=0)
    extreme_weight: float = Field(0.35, gt=0, le=1)
    mm_factor: float = Field(0.8, gt=0, le=1)
    # Deribit roll shock: IM += this × Σ |size in coin| × price over the unit's futures and
    # perpetuals (a minimum annualised basis move, not scaled by time to expiry).
    roll_move_annual_frac: float = Field(0.0, ge=0, le=1)
    delta_unhedged_frac: float = Field(0.0, ge=0, le=1)
    delta_hedged_frac: float = Field(0.0, ge=0, le=1)
    # Vol-shock term structure (DESIGN §3.2): shock × (30 / max(DTE, 1))^p with p = short below
    # the cut-off and long above it. The legacy Deribit rule is p = 0.5 (sqrt) for every DTE.
    vol_power_short: float = Field(0.30, ge=0, le=2)
    vol_power_long: float = Field(0.13, ge=0, le=2)
    vol_power_cutoff_days: float = Field(30.0, gt=0)
    min_vol_frac: float = Field(0.01, gt=0, le=1, description="floor of a shocked IV (annualised)")
    balances_in_scenarios: bool = Field(
        True, description="wallet holdings of this asset are re-priced in its scenarios"
    )

    @field_validator("extended_moves")
    @classmethod
    def _moves_valid(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        for m in v:
            if m <= -1 or m == 0:
                raise ValueError(f"extended move {m} must be > -1 and non-zero")
        return v


class OffsetCredit(FrozenModel):
    """A cross-unit offset credit (OCC/SPAN style): ``credit_frac`` of the smaller of the two
    units' scan risks is given back when their worst scenarios point in opposite ways."""

    units: tuple[str, str]
    credit_frac: float = Field(gt=0, le=1)


class CrashScenario(FrozenModel):
    """The joint "crypto crash": every unit moves by ``move_frac`` at once with vol up.

    Each unit's crash PnL is weighted like the extended tail table (Paradex portfolio margin:
    R_u/(2|m|) for |m| ≤ 1, R_u/(2m²) above, R_u = the unit's ``price_range_frac``), times
    ``weight``; the weighted crash loss max(0, −Σ_u weight·w_u·PnL_u) floors IM (and
    ``mm_factor`` × it floors MM). So the crash is a floor against over-credited cross-unit
    offsets and losses the grid misses, not the IM of every directional book (DESIGN §3.2):
    a linear position's weighted crash loss is R/(2|m|)·|m|·notional, half its own scan.
    """

    move_frac: float = Field(-0.3, gt=-1, lt=0)
    vol_up_frac: float = Field(0.5, ge=0)
    weight: float = Field(1.0, gt=0, le=1, description="extra scale on the tail weights")
    mm_factor: float = Field(0.8, gt=0, le=1, description="MM = mm_factor × weighted crash loss")
    enabled: bool = True


class SizeScaledFutureParams(FrozenModel):
    """Deribit-style margin growing with size: IM = im_base + im_per_unit × |size in coin|."""

    im_base_frac: float = Field(gt=0, le=1)
    im_per_unit_frac: float = Field(ge=0)
    mm_base_frac: float = Field(gt=0, le=1)
    mm_per_unit_frac: float = Field(ge=0)


class OptionStandardParams(FrozenModel):
    """Bybit cross-margin short-option rule coefficients (per contract, S = index).

    MM = max(mm_floor·S, mm_floor·mark) + mark + mm_index·S;
    IM = max(max(im_otm·S − OTM, im_floor·S) + max(entry, mark), MM).
    """

    mm_floor_frac: float = Field(0.03, ge=0, le=1)
    mm_index_frac: float = Field(0.002, ge=0, le=1)
    im_otm_frac: float = Field(0.15, ge=0, le=1)
    im_floor_frac: float = Field(0.10, ge=0, le=1)


class StandardParams(FrozenModel):
    """Siloed rule-based margin: futures MMR from brackets (Binance) or size-scaled (Deribit)."""

    futures_mode: Literal["brackets", "size_scaled"] = "brackets"
    size_scaled: dict[str, SizeScaledFutureParams] = Field(default_factory=dict)
    options: OptionStandardParams = OptionStandardParams()
    # Binance sets each bracket's max leverage so that IM ≈ 2 × MMR at the first tier
    # (BTCUSDT: 125x ↔ 0.4 %); used for IM when a bracket has no ``max_leverage``.
    im_to_mm_multiple: float = Field(2.0, ge=1)


# Deribit portfolio margin price ranges where a desk configures nothing for the asset.
DEFAULT_SCENARIO_BY_ASSET: dict[str, ScenarioParams] = {
    "BTC": ScenarioParams(price_range_frac=0.16),
    "ETH": ScenarioParams(price_range_frac=0.18),
}
