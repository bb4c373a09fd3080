"""Entry points: margin of a desk's pool, or of a self-contained portfolio without a desk.

``evaluate_pool(desk, pool_id, portfolio)`` selects the pool's wallets from a venue- or desk-wide
``Portfolio``, takes the model and parameters from the desk, and returns a ``MarginReport``.
``evaluate_portfolio(portfolio, pool, params)`` is the same without a desk (``pmr margin
--portfolio``). Either returns a whole report or raises: no partial report ever exists.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from decimal import Decimal
from typing import TYPE_CHECKING

from core.domain import MarginModelKind, Pool, Portfolio
from core.errors import ConfigError, DataError
from core.margin.book import PoolBook, build_book
from core.margin.models import StandardModel, model_for
from core.margin.params import Bracket, MarginParams
from core.margin.report import (
    AssetReport,
    MarginReport,
    ModelOutput,
    desk_level_for,
    venue_band_for,
)

if TYPE_CHECKING:  # the desk type only: margin never needs config at import time
    from core.config import DeskConfig

__all__ = ["evaluate_book", "evaluate_pool", "evaluate_portfolio", "params_for_pool"]

_ZERO = Decimal(0)
_MONEY_Q = Decimal("1e-8")
_RATIO_Q = Decimal("1e-9")


def params_for_pool(
    desk: DeskConfig,
    pool_id: str,
    *,
    brackets: Mapping[str, tuple[Bracket, ...]] | None = None,
) -> MarginParams:
    """Collect a pool's margin parameters from the desk (pool collateral rates override the
    desk's; ``brackets``, the pool's venue's tables, override the desk's symbol by symbol:
    ``core.venues.state.DeskState.brackets_for``)."""
    pool = desk.pool(pool_id)
    rates = dict(desk.collateral_rates)
    rates.update(pool.collateral_rates)
    tables = {**desk.brackets, **(brackets or {})}
    return MarginParams(
        max_price_age_s=desk.desk.max_price_age_s,
        thresholds=pool.thresholds,
        venue_levels=pool.venue_levels,
        loan_leverage=pool.loan_leverage,
        collateral_rates=rates,
        brackets=tables,
        scenario=desk.scenario,
        offsets=desk.offsets,
        crash=desk.crash,
        standard=desk.standard,
    )


def evaluate_pool(
    desk: DeskConfig,
    pool_id: str,
    portfolio: Portfolio,
    *,
    brackets: Mapping[str, tuple[Bracket, ...]] | None = None,
) -> MarginReport:
    """Margin of pool ``pool_id`` of ``desk`` on ``portfolio`` (any wider set of wallets).

    ``brackets``: maintenance tables read from the pool's venue, overriding the desk's for the
    symbols they cover (``read_desk_state(...).brackets_for(pool_id)``).

    Raises
    ------
    ConfigError
        Unknown pool, or parameters the model needs are missing.
    DataError
        Missing, stale or unusable prices, expired options, inconsistent units (the error names
        the position or asset).

    Examples
    --------
    >>> desk = load_desk("examples/desk.toml")  # doctest: +SKIP
    >>> at = datetime(2026, 11, 27, tzinfo=UTC)  # doctest: +SKIP
    >>> pf = Portfolio.of(desk.initial_balances(), desk.initial_positions(),
    ...                   desk.initial_prices(at), at)  # doctest: +SKIP
    >>> evaluate_pool(desk, "sim-a.pm", pf).venue_band  # doctest: +SKIP
    <VenueBand.NORMAL: 'normal'>
    """
    pool = desk.pool(pool_id).to_domain()
    return evaluate_portfolio(portfolio, pool, params_for_pool(desk, pool_id, brackets=brackets))


def evaluate_portfolio(
    portfolio: Portfolio,
    pool: Pool,
    params: MarginParams,
    *,
    model: MarginModelKind | str | None = None,
    compare: bool = True,
) -> MarginReport:
    """Margin of ``pool``'s wallets in ``portfolio`` under ``model`` (default: the pool's).

    ``compare=False`` skips evaluating the standard model beside the pool's own (for a pool of
    another model ``standard_mm_usd`` and ``capital_efficiency`` are then ``None``): a stress test
    re-evaluates thousands of shocked states and reads neither.
    """
    kind = model_for(model).kind if model is not None else pool.model  # unknown → ConfigError
    book = build_book(portfolio, pool, params)
    return evaluate_book(book, params, kind, compare=compare)


def evaluate_book(
    book: PoolBook, params: MarginParams, kind: MarginModelKind, *, compare: bool = True
) -> MarginReport:
    """Run ``kind`` on an already validated book and assemble the report (stress tests re-use it);
    ``compare``: see ``evaluate_portfolio``."""
    out = model_for(kind).evaluate(book, params)
    standard_mm: Decimal | None
    if kind is MarginModelKind.STANDARD:
        standard_mm = out.mm_usd
    elif not compare:
        standard_mm = None
    else:
        try:  # the comparison needs standard parameters the pool's own model may not
            standard_mm = StandardModel().evaluate(book, params).mm_usd
        except (ConfigError, DataError):
            standard_mm = None
    return _assemble(book, params, kind, out, standard_mm)


def _q(x: Decimal) -> Decimal:
    return x.quantize(_MONEY_Q)


def _assemble(
    book: PoolBook,
    params: MarginParams,
    kind: MarginModelKind,
    out: ModelOutput,
    standard_mm_usd: Decimal | None,
) -> MarginReport:
    adjusted = book.adjusted_equity_usd
    mm = out.mm_usd
    ratio: Decimal | None
    if out.silos:
        ratios = [s.adjusted_equity_usd / s.mm_usd for s in out.silos if s.mm_usd > 0]
        ratio = min(ratios).quantize(_RATIO_Q) if ratios else None
        if ratio is None and any(s.adjusted_equity_usd < 0 for s in out.silos):
            adjusted_for_band = min(s.adjusted_equity_usd for s in out.silos)
        else:
            adjusted_for_band = adjusted
    else:
        ratio = (adjusted / mm).quantize(_RATIO_Q) if mm > 0 else None
        adjusted_for_band = adjusted
    venue_band = venue_band_for(ratio, adjusted_for_band, params.venue_levels)
    desk_level = desk_level_for(ratio, adjusted_for_band, params.thresholds)
    withdraw_ratio = Decimal(str(params.venue_levels.max_withdraw_ratio))
    max_withdraw = max(_ZERO, adjusted - withdraw_ratio * mm)
    efficiency = None
    if standard_mm_usd is not None and mm > 0:
        efficiency = (standard_mm_usd / mm).quantize(_RATIO_Q)
    assets = tuple(
        AssetReport(a.asset, a.net, a.price_usd, _q(a.value_usd), _q(a.collateral_usd))
        for a in book.assets
    )
    return MarginReport(
        pool_id=book.pool.id,
        model=kind,
        as_of=book.as_of,
        margin_currency=book.pool.margin_currency.code,
        margin_currency_usd=book.mc_price_usd,
        equity_usd=_q(book.equity_usd),
        adjusted_equity_usd=_q(adjusted),
        im_usd=_q(out.im_usd),
        mm_usd=_q(mm),
        ratio=ratio,
        venue_band=venue_band,
        desk_level=desk_level,
        max_withdraw_usd=_q(max_withdraw),
        standard_mm_usd=None if standard_mm_usd is None else _q(standard_mm_usd),
        capital_efficiency=efficiency,
        thresholds=params.thresholds,
        venue_levels=params.venue_levels,
        assets=assets,
        worst_scenarios=out.worst_scenarios,
        crash_loss_raw_usd=out.crash_loss_raw_usd,
        crash_loss_weighted_usd=out.crash_loss_weighted_usd,
        contributions=tuple(
            replace(
                c,
                value_usd=_q(c.value_usd),
                worst_loss_usd=None if c.worst_loss_usd is None else _q(c.worst_loss_usd),
                mm_usd=None if c.mm_usd is None else _q(c.mm_usd),
            )
            for c in out.contributions
        ),
        silos=tuple(
            type(s)(s.wallet, _q(s.adjusted_equity_usd), _q(s.im_usd), _q(s.mm_usd))
            for s in out.silos
        ),
    )
