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
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import TYPE_CHECKING, Protocol

from core.config import DeskConfig, PoolCfg
from core.domain import Balance, Pool, Portfolio, Position
from core.errors import DataError
from core.margin.api import evaluate_portfolio, params_for_pool
from core.margin.params import MarginParams
from core.margin.report import MarginReport
from core.routing.legs import LegKind
from core.routing.sources import CollateralSource, RoutingInput
from core.stress.cover import COVER_DEADLINES_S, CoverSolver, cents
from core.stress.scenarios import Scenario, VenueConditions
from core.stress.shocks import shock_portfolio

if TYPE_CHECKING:
    from core.routing.router import Router

__all__ = [
    "COVER_DEADLINES_S",
    "PoolStress",
    "ShockedReports",
    "VenueComponents",
    "apply_conditions",
    "evaluate",
    "time_to_cover",
]

_ZERO = Decimal(0)


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


_cents = cents


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
    inp: RoutingInput,
    deadlines_s: Sequence[float] = COVER_DEADLINES_S,
    *,
    router: Router | None = None,
) -> list[Decimal]:
    """USD credited within each deadline (cumulative, non-decreasing), by a dry-run route.

    The router's own figures, every deadline solved (``CoverSolver(fast=False)``), uncapped;
    ``evaluate`` asks a shared ``CoverSolver``, which gives the same figures capped at the
    deficit with far fewer solves. ``router``: reuse one (its cache of built problems).
    """
    solver = CoverSolver(router, fast=False)
    covered: list[Decimal] = []
    best = _ZERO
    for t in deadlines_s:
        # A longer deadline can only allow more: keep the running maximum (the router's
        # cost-optimal plan at 60 s may credit slightly less than its 10 s one at rounding).
        best = max(best, solver.credit_usd(inp, t))
        covered.append(best)
    return covered


def _to_liquidation_usd(report: MarginReport) -> Decimal:
    """USD of adjusted equity needed to lift the pool above its ``liquidation`` level."""
    return report.deficit(report.thresholds.liquidation)


class ShockedReports(Mapping[str, MarginReport]):
    """Exact margin reports of one shocked state, each computed once and only when read.

    A row reads its own pool's report, and its routing input reads those of the pools
    collateral may leave: evaluating every pool for every row was O(pools²) per scenario.
    ``pools`` (default: every pool of the desk) are the pools this state can evaluate;
    ``params`` a cache of each pool's model inputs shared between states (what
    ``evaluate_pool`` collects from the desk on every call). The reports leave out the standard
    model's comparison (``standard_mm_usd``, ``capital_efficiency``): no stress figure reads it.
    """

    def __init__(
        self,
        desk: DeskConfig,
        state: Portfolio,
        pools: Sequence[str] | None = None,
        params: dict[str, tuple[Pool, MarginParams]] | None = None,
    ) -> None:
        self._desk, self._state = desk, state
        self._ids = list(pools) if pools is not None else [p.id for p in desk.pools]
        self._known = set(self._ids)
        self._cache: dict[str, MarginReport] = {}
        self._params = params if params is not None else {}

    def __getitem__(self, pool_id: str) -> MarginReport:
        if pool_id not in self._known:
            raise KeyError(pool_id)
        rep = self._cache.get(pool_id)
        if rep is None:
            found = self._params.get(pool_id)
            if found is None:  # evaluate_pool's own inputs, collected once
                found = (self._desk.pool(pool_id).to_domain(), params_for_pool(self._desk, pool_id))
                self._params[pool_id] = found
            rep = evaluate_portfolio(self._state, found[0], found[1], compare=False)
            self._cache[pool_id] = rep
        return rep

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids)

    def __len__(self) -> int:
        return len(self._ids)


class VenueComponents:
    """The desk's venues grouped by the routes between them, with their balances and positions.

    A pool's margin reads only its own wallets, and its routing input only the wallets routes
    into it start from (and the pools those belong to): all on venues linked to the pool's by
    routes. Evaluating a pool on the state of its component alone gives the same report and
    input as on the whole desk's, without scanning every balance of a 1,000-pool desk for each
    (``build_book`` and the source builder filter the state's tuples). Shocks move prices
    only, so the component's balances and positions are split once, in the state's order.
    """

    def __init__(self, desk: DeskConfig, state: Portfolio) -> None:
        parent: dict[str, str] = {v.name: v.name for v in desk.venues}

        def root(v: str) -> str:
            parent.setdefault(v, v)
            while parent[v] != v:
                parent[v] = parent[parent[v]]
                v = parent[v]
            return v

        for r in desk.routes:
            a, b = root(r.venue), root(r.destination_venue)
            if a != b:
                parent[max(a, b)] = min(a, b)
        self._root = {v: root(v) for v in list(parent)}
        balances: dict[str, list[Balance]] = {}
        positions: dict[str, list[Position]] = {}
        for bal in state.balances:
            balances.setdefault(self._root.get(bal.venue, bal.venue), []).append(bal)
        for pos in state.positions:
            positions.setdefault(self._root.get(pos.venue, pos.venue), []).append(pos)
        self._balances = {k: tuple(v) for k, v in balances.items()}
        self._positions = {k: tuple(v) for k, v in positions.items()}
        pools: dict[str, list[str]] = {}
        for p in desk.pools:
            pools.setdefault(self.of(p.venue), []).append(p.id)
        self._pools = pools

    def of(self, venue: str) -> str:
        """The component (its first venue by name) ``venue`` belongs to."""
        return self._root.get(venue, venue)

    def pools(self, component: str) -> list[str]:
        return self._pools.get(component, [])

    def state(self, component: str, priced: Portfolio) -> Portfolio:
        """The component's balances and positions at ``priced``'s prices and instant."""
        return Portfolio(
            self._balances.get(component, ()),
            self._positions.get(component, ()),
            priced.prices,
            priced.as_of,
        )


class ShockedStates:
    """Per scenario, the shocked state (and its lazily evaluated reports) each row reads.

    The state is shocked once per set of venue moves (a de-peg printed on one venue moves
    its pools only); with the default routing input it is cut to the pool's venue component
    (``VenueComponents``), else the whole desk's state is kept (a custom ``build_input`` may
    read anything).
    """

    def __init__(self, desk: DeskConfig, state: Portfolio, *, components: bool = True) -> None:
        self.desk, self.state = desk, state
        self.instruments = desk.instrument_map()
        self.venue_of = {p.id: p.venue for p in desk.pools}
        self.components = VenueComponents(desk, state) if components else None
        # what is shocked: the prices alone when rows read component states
        self._base = Portfolio((), (), state.prices, state.as_of) if components else state
        self._scenario: Scenario | None = None
        self._found: dict[object, tuple[Portfolio, ShockedReports]] = {}
        self._params: dict[str, tuple[Pool, MarginParams]] = {}

    def for_row(self, sc: Scenario, pool_id: str) -> tuple[Portfolio, ShockedReports]:
        """The shocked state pool ``pool_id`` is evaluated on under ``sc``, and its reports."""
        if sc is not self._scenario:
            self._scenario, self._found = sc, {}
        venue = self.venue_of[pool_id]
        moves = sc.moves_on(venue)
        shock_key = tuple(sorted(moves.items()))
        found = self._found.get(shock_key)
        if found is None:
            priced = shock_portfolio(
                self._base, self.instruments, moves, vol_up_frac=sc.vol_up_frac
            )
            reports = ShockedReports(self.desk, priced, params=self._params)
            found = self._found[shock_key] = (priced, reports)
        if self.components is None:
            return found
        comp = self.components.of(venue)
        part_key = (shock_key, comp)
        part = self._found.get(part_key)
        if part is None:
            state = self.components.state(comp, found[0])
            pools = self.components.pools(comp)
            part = (state, ShockedReports(self.desk, state, pools, self._params))
            self._found[part_key] = part
        return part


def evaluate(
    desk: DeskConfig,
    state: Portfolio,
    scenarios: Iterable[Scenario],
    *,
    pools: Sequence[str] | None = None,
    build_input: BuildInput | None = None,
    cover: CoverSolver | None = None,
) -> list[PoolStress]:
    """Every pool (or ``pools``) of ``desk`` under every scenario, scenario-major order.

    ``build_input(desk, shocked_state, reports, pool_id)`` builds the routing input covering
    one pool in deficit (default: ``core.routing.from_state.routing_input_from_state`` with the
    desk's routes, swaps and pre-authorisations, as the margin-call flow plans). ``cover``
    answers time-to-cover (default: a new ``CoverSolver``; pass one to share its router across
    calls). Raises ``DataError`` naming the scenario when a move names an asset the desk does
    not know.
    """
    pool_ids = list(pools) if pools is not None else [p.id for p in desk.pools]
    known = {p.id: p for p in desk.pools}
    for pid in pool_ids:
        if pid not in known:
            raise DataError("unknown pool", pool=pid)
    build = build_input or _default_input
    solver = cover if cover is not None else CoverSolver()
    states = ShockedStates(desk, state, components=build_input is None)
    out: list[PoolStress] = []
    for sc in scenarios:
        unknown = sorted(sc.assets() - set(desk.assets))
        if unknown:
            raise DataError(
                "scenario moves an asset the desk does not hold or price",
                where=f"scenario {sc.name!r}",
                assets=", ".join(unknown),
            )
        for pid in pool_ids:
            shocked, reports = states.for_row(sc, pid)
            out.append(_one(desk, shocked, pid, sc, build, reports, solver, known[pid]))
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
    cover: CoverSolver | None = None,
    pool: PoolCfg | None = None,
) -> PoolStress:
    """One pool × scenario, exactly; ``reports`` (default: evaluated here, each pool at most
    once) are the shocked state's margin reports the row and its routing input read, ``cover``
    the time-to-cover solver (default: a new one), ``pool`` the pool's configuration."""
    if pool is None:
        pool = desk.pool(pid)
    stale = pool.venue in sc.conditions.stale_price_venues
    if reports is None:
        reports = ShockedReports(desk, shocked)
    report = reports[pid]
    deficit = report.deficit(pool.thresholds.target)
    covered = [_ZERO, _ZERO, _ZERO]
    if deficit > 0 and not stale:
        # Time-to-cover only where there is something to cover; a stale feed means the
        # monitor refuses to act, so nothing is covered (the pool is flagged instead).
        inp = apply_conditions(build(desk, shocked, reports, pid), sc.conditions)
        if inp.sources:
            covered = (cover if cover is not None else CoverSolver()).covered(inp, deficit)
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
