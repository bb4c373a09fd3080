"""A desk's side of the executor: re-price a pool from its venues, re-plan a call's remaining
deficit without what failed, and check a recorded plan against the desk's config.

:class:`DeskCure` is both the executor's ``Verifier`` and its ``Replanner`` for one desk:

* ``verify(call)``: read every venue (``core.venues.state.read_desk_state``), margin the
  call's pool on what the venues hold now, compare with the call's target ratio;
* ``replan(call, previous, excluded_sources, excluded_routes)``: the same read, the pool's
  deficit to its target, and a routing input (``core.execution.planning.plan_inputs``) with
  every source that failed or was refused, or that uses a route that did, left out (a halted
  venue or wallet pair is routed around), solved by the router; with the store ``engine``
  given, the rolling 24 h pre-authorisation already used (``core.execution.gate.router_usage``)
  caps the re-plan as the gate will;
* :func:`check_plan_against_desk`: every leg's venue, route or swap still in the config with the
  same venue, wallets and asset (a route removed since the plan was made is refused).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from decimal import Decimal

from sqlalchemy import Engine

from core.clock import Clock
from core.config import DeskConfig
from core.domain import Portfolio
from core.errors import DataError, ExecutionError
from core.execution.executor import Exclusions, Verification
from core.execution.gate import router_usage
from core.execution.planning import plan_inputs
from core.ledger.plans import RecordedPlan
from core.ledger.store import session_scope
from core.ledger.tables import MarginCallRow
from core.margin.api import evaluate_pool
from core.margin.report import MarginReport
from core.routing import Router
from core.routing.plan import Plan
from core.venues.base import Venue
from core.venues.state import read_desk_state

__all__ = ["DeskCure", "check_plan_against_desk"]


class DeskCure:
    """Verifier and re-planner of one desk's margin calls on its venues."""

    def __init__(
        self,
        desk: DeskConfig,
        venues: Mapping[str, Venue],
        clock: Clock,
        *,
        deadline_s: float = 60.0,
        engine: Engine | None = None,
        router: Router | None = None,
    ) -> None:
        self.desk = desk
        self.venues = venues
        self.clock = clock
        self.deadline_s = deadline_s
        self.engine = engine  # the store: the re-plan reads the rolling usage from it
        # One router for every call of the desk: it keeps the problems it built (per thread),
        # so the next call of a pool only rewrites Parameter values instead of building the
        # problem in cvxpy again (most of a plan's time when built afresh).
        self.router = router or Router()

    def used_24h_usd(self) -> dict[str, Decimal]:
        """The rolling pre-authorisation used, in the router's terms (empty without a store)."""
        if self.engine is None:
            return {}
        with session_scope(self.engine) as s:
            return router_usage(s, self.desk, now=self.clock.now())

    def read(self) -> tuple[dict[str, MarginReport], dict[str, Portfolio]]:
        """Every pool's margin on what the venues hold now and, per pool, the portfolio to
        plan its call on.

        That portfolio is the desk-wide one when the venues agree on every price; otherwise
        (two exchanges never quite agree, and simulated venues on the wall clock drift apart on
        their seeded paths) the pool's own venue's, which its margin was computed on. A call is
        planned on its pool's entry: another venue's portfolio holds none of the pool's
        wallets, so the plan would find no source there (served margin-call runs planned every
        call of the second venue "infeasible" so, until the re-plan read the right one).
        """
        state = read_desk_state(self.desk, self.venues, self.clock)
        try:
            pf = state.portfolio
            pools = dict.fromkeys((p.id for p in self.desk.pools), pf)
        except DataError:
            pools = {p.id: state.venue(p.venue).portfolio for p in self.desk.pools}
        reports = {
            p.id: evaluate_pool(self.desk, p.id, pools[p.id], brackets=state.brackets_for(p.id))
            for p in self.desk.pools
        }
        return reports, pools

    def reports(self, pool_id: str | None = None) -> tuple[dict[str, MarginReport], Portfolio]:
        """Every pool's margin on what the venues hold now, and the portfolio to plan
        ``pool_id``'s call on (the desk's first pool's without one; see :meth:`read`)."""
        reports, pools = self.read()
        return reports, pools[pool_id or self.desk.pools[0].id]

    def verify(self, call: MarginCallRow) -> Verification:
        reports, _ = self.reports()
        r = reports[call.pool_id]
        pool = next(p for p in self.desk.pools if p.id == call.pool_id)
        return Verification(
            call.pool_id, r.ratio, call.target_ratio,
            max(Decimal(0), r.deficit(call.target_ratio)),
            restored_at=min(call.target_ratio, Decimal(str(pool.thresholds.target))),
        )  # fmt: skip

    __call__ = verify

    def replan(
        self,
        call: MarginCallRow,
        previous: RecordedPlan,
        excluded: Exclusions,
    ) -> Plan | None:
        reports, pf = self.reports(call.pool_id)
        deficit = reports[call.pool_id].deficit(call.target_ratio)
        if deficit <= 0:
            return None
        planned = plan_inputs(
            self.desk, pf, [call.pool_id], deadline_s=self.deadline_s, reports=reports,
            used_24h_usd=self.used_24h_usd(), call_ids={call.pool_id: call.id},
        )  # fmt: skip
        kept = tuple(
            src for src in planned.input.sources
            if src.id not in excluded.sources
            and not any(t.route_id in excluded.routes for t in src.legs if t.route_id is not None)
            and not any((t.venue, t.from_wallet.value, t.to_wallet.value) in excluded.pairs
                        for t in src.legs)
        )  # fmt: skip
        if not kept:
            return None
        notes = (
            *planned.notes,
            f"re-plan of {previous.plan_id} without {', '.join(sorted(excluded.sources))}",
        )
        plan = self.router.route(replace(planned.input, sources=kept), notes=notes)
        return plan if any(a.legs for a in plan.allocations) else None


def check_plan_against_desk(desk: DeskConfig, recorded: RecordedPlan) -> None:
    """Refuse a plan one of whose legs the desk no longer allows; nothing is sent.

    Raises
    ------
    ExecutionError
        A leg's venue is not the desk's, or its route or swap left the config (or changed
        venue, wallets or asset since the plan was made); the error names the leg.
    """
    venues = {v.name for v in desk.venues}
    routes = {r.id: r for r in desk.routes}
    swaps = {s.id: s for s in desk.swaps}
    for step_no, step in enumerate(recorded.plan.allocations):
        for leg in step.legs:
            where = f"plan {recorded.plan_id} step {step_no} leg {leg.leg_no} ({step.source})"
            if leg.venue not in venues:
                raise ExecutionError(f"{where}: unknown venue {leg.venue!r}; nothing sent")
            rid = leg.route_id
            if rid is None:
                raise ExecutionError(f"{where}: the leg names no desk route; nothing sent")
            route = routes.get(rid)
            if route is not None:
                same = (route.venue, route.from_wallet, route.to_wallet, route.asset) == (
                    leg.venue, leg.from_wallet, leg.to_wallet, leg.asset)  # fmt: skip
                if not same:
                    raise ExecutionError(
                        f"{where}: route {rid!r} changed since the plan was made; nothing sent"
                    )
                continue
            swap = swaps.get(rid)
            if swap is None:
                raise ExecutionError(
                    f"{where}: route {rid!r} is no longer in the desk config; nothing sent"
                )
            if swap.venue != leg.venue or swap.from_asset != leg.asset:
                raise ExecutionError(
                    f"{where}: swap {rid!r} changed since the plan was made; nothing sent"
                )
