"""Evaluate a desk under stress scenarios: post-shock margin, then time-to-cover (DESIGN §4).

For every pool × scenario: the post-shock margin report (ratio, desk level, venue band,
deficit to the pool's ``target``), then, for pools in deficit only, **time-to-cover**: the
router in dry mode on the post-shock state under the scenario's venue conditions (halted
venues and wallet pairs drop their sources, delayed withdrawals slow on-chain legs, a cut API
weight limit shrinks the request budget), solved with deadlines of 10 s, 60 s and 10 min. The
USD the plan credits by each deadline is ``covered_10s`` / ``covered_60s`` / ``covered_10m``;
``uncovered`` is what no plan covers within 10 min.

``liquidation_before_cover`` flags a pool whose shocked ratio is at or below its
``liquidation`` level *and* whose first 10 s of cover does not lift it back above that level:
the venue would liquidate before enough collateral lands (a liquidation engine acts within
seconds; 10 s is the fastest deadline we measure).

The evaluation is a pure function of (desk, state, scenario batch): ``evaluate`` on a list of
scenarios equals the concatenation of ``evaluate`` on any split of that list, in order, so the
flow can fan batches out (tested).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Protocol

from core.config import DeskConfig
from core.domain import Portfolio
from core.errors import DataError
from core.margin.api import evaluate_pool
from core.margin.report import MarginReport
from core.routing.legs import LegKind
from core.routing.sources import CollateralSource, RoutingInput
from core.stress.scenarios import Scenario, VenueConditions
from core.stress.shocks import shock_portfolio

__all__ = ["COVER_DEADLINES_S", "PoolStress", "apply_conditions", "evaluate", "time_to_cover"]

#: The deadlines time-to-cover reports (seconds): 10 s, 60 s, 10 min.
COVER_DEADLINES_S = (10.0, 60.0, 600.0)
_ZERO = Decimal(0)
_CENT = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class PoolStress:
    """One pool under one scenario. USD amounts are ``Decimal`` rounded to cents.

    ``ratio`` is ``None`` where the pool carries no margin. ``covered_*`` are cumulative (what
    lands within 60 s includes what lands within 10 s). ``worst_position`` is the position
    contributing most to the post-shock requirement (``None`` for a pool without positions).
    """

    pool_id: str
    scenario: str
    ratio: Decimal | None
    desk_level: str
    venue_band: str
    deficit_usd: Decimal
    covered_10s_usd: Decimal
    covered_60s_usd: Decimal
    covered_10m_usd: Decimal
    uncovered_usd: Decimal
    liquidation_before_cover: bool
    worst_position: str | None
    stale_prices: bool = False


def _cents(x: Decimal | float) -> Decimal:
    return Decimal(repr(x) if isinstance(x, float) else x).quantize(_CENT)


def _worst_position(report: MarginReport) -> str | None:
    best: tuple[Decimal, str] | None = None
    for c in report.contributions:
        if c.key.startswith(("balance:", "cash:", "loan:")):
            continue
        size = c.worst_loss_usd if c.worst_loss_usd is not None else c.mm_usd
        if size is not None and (best is None or size > best[0]):
            best = (size, c.key)
    return None if best is None else best[1]


def apply_conditions(inp: RoutingInput, conditions: VenueConditions) -> RoutingInput:
    """``inp`` as the venues would allow under ``conditions``.

    A source with any leg on a halted venue (sending or receiving) or through a halted wallet
    pair is dropped; on-chain legs take ``withdrawal_delay_x`` × their latency; API weight
    budgets shrink to ``weight_limit_frac``.
    """
    if conditions.normal:
        return inp
    kept: list[CollateralSource] = []
    for s in inp.sources:
        venues = {s.venue} | {g.venue for g in s.legs} | {g.to_venue for g in s.legs if g.to_venue}
        if venues & conditions.halted_venues:
            continue
        pairs = {(g.venue, g.from_wallet.value, g.to_wallet.value) for g in s.legs}
        if pairs & conditions.halted_pairs:
            continue
        slow = sum(g.latency_s for g in s.legs if g.kind is LegKind.WITHDRAWAL)
        if slow and conditions.withdrawal_delay_x != 1.0:
            s = replace(s, latency_s=s.latency_s + slow * (conditions.withdrawal_delay_x - 1.0))
        kept.append(s)
    budget = {k: v * conditions.weight_limit_frac for k, v in inp.api_weight_budget.items()}
    return replace(inp, sources=tuple(kept), api_weight_budget=budget)


def time_to_cover(
    inp: RoutingInput, deadlines_s: Sequence[float] = COVER_DEADLINES_S
) -> list[Decimal]:
    """USD credited within each deadline (cumulative, non-decreasing), by a dry-run route."""
    from core.routing.router import Router

    router = Router()
    covered: list[Decimal] = []
    best = _ZERO
    for t in deadlines_s:
        calls = tuple(replace(c, deadline_s=t) for c in inp.calls)
        plan = router.route(replace(inp, calls=calls))
        # A longer deadline can only allow more: keep the running maximum (the router's
        # cost-optimal plan at 60 s may credit slightly less than its 10 s one at rounding).
        best = max(best, _cents(plan.credit_usd))
        covered.append(best)
    return covered


def _to_liquidation_usd(report: MarginReport) -> Decimal:
    """USD of adjusted equity needed to lift the pool above its ``liquidation`` level."""
    return report.deficit(report.thresholds.liquidation)


def evaluate(
    desk: DeskConfig,
    state: Portfolio,
    scenarios: Iterable[Scenario],
    *,
    pools: Sequence[str] | None = None,
    build_input: BuildInput | None = None,
) -> list[PoolStress]:
    """Every pool (or ``pools``) of ``desk`` under every scenario, scenario-major order.

    ``build_input(desk, shocked_state, reports, pool_id)`` builds the routing input covering
    one pool in deficit (default: ``core.routing.from_state.routing_input_from_state`` with the
    desk's routes, swaps and pre-authorisations, as the margin-call flow plans). Raises ``DataError`` naming the scenario when a
    move names an asset the desk does not know.
    """
    pool_ids = list(pools) if pools is not None else [p.id for p in desk.pools]
    known = {p.id: p for p in desk.pools}
    for pid in pool_ids:
        if pid not in known:
            raise DataError("unknown pool", pool=pid)
    build = build_input or _default_input
    out: list[PoolStress] = []
    for sc in scenarios:
        unknown = sorted(sc.assets() - set(desk.assets))
        if unknown:
            raise DataError(
                "scenario moves an asset the desk does not hold or price",
                where=f"scenario {sc.name!r}",
                assets=", ".join(unknown),
            )
        shocked_by_venue: dict[tuple[tuple[str, float], ...], Portfolio] = {}
        for pid in pool_ids:
            venue = known[pid].venue
            moves = sc.moves_on(venue)
            key = tuple(sorted(moves.items()))
            shocked = shocked_by_venue.get(key)
            if shocked is None:
                shocked = shock_portfolio(
                    state, desk.instrument_map(), moves, vol_up_frac=sc.vol_up_frac
                )
                shocked_by_venue[key] = shocked
            out.append(_one(desk, shocked, pid, sc, build))
    return out


class BuildInput(Protocol):
    """Builds the routing input that covers one pool (see ``evaluate``)."""

    def __call__(
        self,
        desk: DeskConfig,
        state: Portfolio,
        reports: Mapping[str, MarginReport],
        pool_id: str,
    ) -> RoutingInput: ...


def _default_input(
    desk: DeskConfig, state: Portfolio, reports: Mapping[str, MarginReport], pool_id: str
) -> RoutingInput:
    from core.routing.from_state import routing_input_from_state

    return routing_input_from_state(desk, state, reports, [pool_id], deadline_s=600.0).input


def _one(
    desk: DeskConfig,
    shocked: Portfolio,
    pid: str,
    sc: Scenario,
    build: BuildInput,
    reports: Mapping[str, MarginReport] | None = None,
) -> PoolStress:
    """One pool × scenario, exactly; ``reports`` (default: every pool's, evaluated here) are
    the shocked state's margin reports the routing input reads."""
    pool = next(p for p in desk.pools if p.id == pid)
    stale = pool.venue in sc.conditions.stale_price_venues
    report = evaluate_pool(desk, pid, shocked)
    deficit = report.deficit(pool.thresholds.target)
    covered = [_ZERO, _ZERO, _ZERO]
    if deficit > 0 and not stale:
        # Time-to-cover only where there is something to cover; a stale feed means the
        # monitor refuses to act, so nothing is covered (the pool is flagged instead).
        if reports is None:
            reports = {p.id: evaluate_pool(desk, p.id, shocked) for p in desk.pools}
        inp = apply_conditions(build(desk, shocked, reports, pid), sc.conditions)
        if inp.sources:
            covered = time_to_cover(inp)
    covered = [min(c, _cents(deficit)) for c in covered]
    to_liq = _to_liquidation_usd(report)
    liq_first = (
        report.ratio is not None
        and report.ratio <= Decimal(str(pool.thresholds.liquidation))
        and covered[0] < to_liq
    )
    ratio = report.ratio
    if ratio is not None and not math.isfinite(float(ratio)):
        ratio = None
    return PoolStress(
        pool_id=pid,
        scenario=sc.name,
        ratio=ratio,
        desk_level=report.desk_level.value,
        venue_band=report.venue_band.value,
        deficit_usd=_cents(deficit),
        covered_10s_usd=covered[0],
        covered_60s_usd=covered[1],
        covered_10m_usd=covered[2],
        uncovered_usd=_cents(deficit) - covered[2],
        liquidation_before_cover=liq_first,
        worst_position=_worst_position(report),
        stale_prices=stale,
    )
