"""The three margin models of DESIGN §3.2, one class each, behind one protocol.

- ``UnifiedModel``: Binance Portfolio Margin (uniMMR), "Binance Portfolio Margin Pro maintenance
  margin ratio calculation" FAQ and "What is the unified account maintenance margin ratio".
- ``ScenarioModel``: risk-based portfolio margin, Deribit "Portfolio Margin" support article,
  Paradex portfolio-margin docs, CME SPAN (see ``core.margin.scenario_model``).
- ``StandardModel``: siloed rule-based margin (Binance brackets or Deribit size-scaled futures
  margin, Bybit cross-margin short-option rule), the comparison baseline for capital efficiency.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Protocol

from core.domain import InstrumentKind, MarginModelKind, WalletKind
from core.errors import ConfigError, DataError
from core.margin.book import PoolBook, PricedPosition, asset_lines
from core.margin.params import MarginParams
from core.margin.report import ModelOutput, PositionContribution, SiloReport
from core.margin.rules import (
    PositionMargin,
    bracket_margin,
    loan_mm_usd,
    short_option_margin,
    size_scaled_margin,
)
from core.margin.scenario_model import evaluate_scenario

__all__ = ["MarginModel", "ScenarioModel", "StandardModel", "UnifiedModel", "model_for"]

_ZERO = Decimal(0)


class MarginModel(Protocol):
    """A margin model: a pure function of a validated pool book and its parameters."""

    kind: MarginModelKind

    def evaluate(self, book: PoolBook, params: MarginParams) -> ModelOutput: ...


def _brackets_for(p: PricedPosition, params: MarginParams) -> PositionMargin:
    table = params.brackets.get(p.position.instrument.symbol)
    if table is None:
        raise DataError(
            "no maintenance-margin brackets for instrument",
            symbol=p.position.instrument.symbol,
            where=f"position {p.key}",
        )
    return bracket_margin(
        p.notional_usd(), table, im_to_mm_multiple=params.standard.im_to_mm_multiple
    )


def _loan_lines(
    book: PoolBook, params: MarginParams, wallets: Iterable[WalletKind] | None = None
) -> list[tuple[str, Decimal]]:
    """(asset, loan MM USD) per borrowed asset in ``wallets`` (all of the pool's by default).

    Only margin loans (``loan`` + ``interest``) carry loan MM (Binance uniMMR FAQ: "margin loan
    × MMR"); a negative futures wallet balance is not a loan, it only lowers equity.
    """
    chosen = set(wallets) if wallets is not None else None
    owed: dict[str, Decimal] = {}
    for b in book.balances:
        if chosen is not None and b.wallet not in chosen:
            continue
        if b.loan or b.interest:
            owed[b.asset.code] = owed.get(b.asset.code, _ZERO) + b.loan + b.interest
    return [
        (a, loan_mm_usd(q, book.price_usd(a), params.loan_mmr)) for a, q in sorted(owed.items())
    ]


class UnifiedModel:
    """Binance Portfolio Margin: MM = Σ futures bracket MM + Σ (loan + interest) × MMR(leverage).

    uniMMR = adjusted equity / MM. Options cannot sit in a Binance PM account, so an option
    position is refused (use the ``scenario`` model for options books). IM is reported as Σ
    bracket IM + loan MM (Binance PM itself applies no IM to the unified ratio).
    """

    kind = MarginModelKind.UNIFIED

    def evaluate(self, book: PoolBook, params: MarginParams) -> ModelOutput:
        contributions: list[PositionContribution] = []
        im = mm = _ZERO
        for p in book.positions:
            if p.kind is InstrumentKind.OPTION:
                raise DataError(
                    "the unified (Binance PM) model does not margin options; use 'scenario'",
                    where=f"position {p.key}",
                )
            if p.kind is InstrumentKind.SPOT:
                continue
            pm = _brackets_for(p, params)
            im += pm.im_usd
            mm += pm.mm_usd
            contributions.append(
                PositionContribution(
                    p.key, p.unit, p.booked_value_usd(), None, pm.mm_usd, p.position.side
                )
            )
        for asset, loan_mm in _loan_lines(book, params):
            im += loan_mm
            mm += loan_mm
            contributions.append(PositionContribution(f"loan:{asset}", asset, _ZERO, None, loan_mm))
        return ModelOutput(im_usd=im, mm_usd=mm, contributions=tuple(contributions))


class StandardModel:
    """Siloed rule-based margin: each wallet margins its own positions with its own collateral.

    Futures: notional brackets (Binance) or size-scaled rates (Deribit), per
    ``params.standard.futures_mode``; short options: Bybit cross-margin rule; long options and
    spot: no margin; margin loans: loan MMR by leverage. No offsets between positions or silos.
    """

    kind = MarginModelKind.STANDARD

    def position_margin(self, p: PricedPosition, params: MarginParams) -> PositionMargin:
        """Standard IM/MM of one position."""
        if p.kind is InstrumentKind.SPOT:
            return PositionMargin(_ZERO, _ZERO)
        if p.kind is InstrumentKind.OPTION:
            return short_option_margin(p, params.standard.options)
        if params.standard.futures_mode == "size_scaled":
            sized = params.standard.size_scaled.get(p.unit)
            if sized is None:
                raise ConfigError(
                    "size_scaled futures margin has no parameters for this underlying",
                    unit=p.unit,
                    where=f"position {p.key}",
                )
            return size_scaled_margin(p, sized)
        return _brackets_for(p, params)

    def evaluate(self, book: PoolBook, params: MarginParams) -> ModelOutput:
        wallets = sorted(
            {b.wallet for b in book.balances} | {p.position.wallet for p in book.positions},
            key=lambda w: w.value,
        )
        silos: list[SiloReport] = []
        contributions: list[PositionContribution] = []
        for w in wallets:
            w_pos = [p for p in book.positions if p.position.wallet is w]
            w_bal = [b for b in book.balances if b.wallet is w]
            lines = asset_lines(w_bal, w_pos, book.prices_usd, params)
            im = mm = _ZERO
            for p in w_pos:
                pm = self.position_margin(p, params)
                im += pm.im_usd
                mm += pm.mm_usd
                contributions.append(
                    PositionContribution(
                        p.key, p.unit, p.booked_value_usd(), None, pm.mm_usd, p.position.side
                    )
                )
            for asset, loan_mm in _loan_lines(book, params, [w]):
                im += loan_mm
                mm += loan_mm
                contributions.append(
                    PositionContribution(f"loan:{w.value}:{asset}", asset, _ZERO, None, loan_mm)
                )
            equity = sum((a.collateral_usd for a in lines), _ZERO)
            silos.append(SiloReport(w.value, equity, im, mm))
        return ModelOutput(
            im_usd=sum((s.im_usd for s in silos), _ZERO),
            mm_usd=sum((s.mm_usd for s in silos), _ZERO),
            contributions=tuple(contributions),
            silos=tuple(silos),
        )


class ScenarioModel:
    """Risk-based portfolio margin (Deribit / Paradex / SPAN): see ``core.margin.scenario_model``."""

    kind = MarginModelKind.SCENARIO

    def evaluate(self, book: PoolBook, params: MarginParams) -> ModelOutput:
        return evaluate_scenario(book, params)


_MODELS: dict[MarginModelKind, MarginModel] = {
    MarginModelKind.UNIFIED: UnifiedModel(),
    MarginModelKind.SCENARIO: ScenarioModel(),
    MarginModelKind.STANDARD: StandardModel(),
}


def model_for(kind: MarginModelKind | str) -> MarginModel:
    """Return the model named ``kind`` or raise a ``ConfigError`` listing the known ones."""
    try:
        return _MODELS[MarginModelKind(kind)]
    except ValueError:
        known = ", ".join(k.value for k in MarginModelKind)
        raise ConfigError(f"unknown margin model {kind!r}; known: {known}") from None
