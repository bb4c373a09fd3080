"""The router facade: cache built problems by structure, solve, fall back, finalise.

``Router.route(inp)`` is the Python API behind ``pmr route``: it reuses a built
``RoutingProblem`` whenever a new input has the same structure (same calls, segment counts,
binaries and shared limits), so a repeated margin call only re-writes Parameter values. If the
solver fails, times out or reports an inaccurate status the greedy baseline plans instead and
the plan says so (``method="greedy-fallback"``, ``fallback_reason``). Every plan also reports
what the other policy would have cost.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from decimal import Decimal
from typing import Any

import numpy as np

from core.errors import RoutingError
from core.routing.arrays import Arrays, Structure, structure_of
from core.routing.greedy import greedy_solution
from core.routing.jsonio import input_to_json, parse_problem, plan_to_json
from core.routing.plan import Alternative, Plan, finalise, plan_id_of
from core.routing.policies import RawSolution, solve_policy
from core.routing.problem import DEFAULT_TIME_LIMIT_S, Backend, RoutingProblem
from core.routing.sources import RoutingInput

__all__ = ["Router", "raw_cost_usd", "route_json"]


def raw_cost_usd(raw: RawSolution, arrays: Arrays) -> float:
    """Σ c·x + Σ F·y of a raw solution (before rounding)."""
    cost = float((raw.x @ arrays.cost).sum())
    if raw.y is not None and arrays.fee.size:
        cost += float((raw.y @ arrays.fee).sum())
    return cost


def _raw_status(raw: RawSolution, arrays: Arrays) -> str:
    tol = 1e-6 + 1e-9 * arrays.deficit
    if bool(np.all(raw.shortfall <= tol)):
        return "optimal"
    return "partial" if float(raw.x.sum()) > 0 else "infeasible"


class Router:
    """Plans margin-call cover; keeps up to ``cache_size`` built problems.

    Examples
    --------
    >>> router = Router()
    >>> plan = router.route(parse_problem({"deficit_usd": 100, "deadline_s": 60,
    ...     "sources": [{"id": "usdt-funding", "tier": 3, "latency_s": 1,
    ...                  "segments": [{"width_usd": 500, "credit_per_usd": 1,
    ...                                "cost_per_usd": 0.0}]}]}))
    >>> plan.status, str(plan.allocations[0].amount_usd)
    ('optimal', '100.00')
    """

    def __init__(
        self,
        *,
        backend: Backend = Backend.HIGHSPY,
        time_limit_s: float = DEFAULT_TIME_LIMIT_S,
        cache_size: int = 8,
        with_alternative: bool = True,
    ) -> None:
        self.backend = Backend(backend)
        self.time_limit_s = time_limit_s
        self.cache_size = cache_size
        self.with_alternative = with_alternative
        self._cache: OrderedDict[Structure, RoutingProblem] = OrderedDict()

    def __repr__(self) -> str:
        return (
            f"Router(backend={self.backend.value}, time_limit_s={self.time_limit_s}, "
            f"with_alternative={self.with_alternative})"
        )

    def problem_for(self, st: Structure) -> RoutingProblem:
        """The built problem for ``st``, building (once) on a cache miss."""
        rp = self._cache.get(st)
        if rp is None:
            rp = RoutingProblem(st, backend=self.backend, time_limit_s=self.time_limit_s)
            self._cache[st] = rp
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(st)
        return rp

    def solve_raw(self, inp: RoutingInput) -> tuple[RawSolution, Arrays, Structure]:
        """Update and solve under ``inp.policy`` (no fallback); raises ``RoutingError``."""
        st = structure_of(inp)
        rp = self.problem_for(st)
        arrays = rp.update(inp)
        return solve_policy(rp, inp.policy), arrays, st

    def route(self, inp: RoutingInput) -> Plan:
        """Plan ``inp``: optimiser, greedy fallback on failure, then rounding and checks."""
        start = time.perf_counter()
        st = structure_of(inp)
        rp = self.problem_for(st)
        arrays = rp.update(inp)
        method = "optimiser"
        reason: str | None = None
        try:
            raw = solve_policy(rp, inp.policy)
        except RoutingError as exc:
            raw = greedy_solution(inp, st, arrays, inp.policy)
            method = "greedy-fallback"
            reason = str(exc)
        solve_ms = (time.perf_counter() - start) * 1e3
        alternative: Alternative | None = None
        if self.with_alternative:
            other = inp.policy.other
            try:
                alt = solve_policy(rp, other)
                alternative = Alternative(
                    other,
                    Decimal(repr(round(raw_cost_usd(alt, arrays), 8))),
                    _raw_status(alt, arrays),
                    note="before rounding to venue steps",
                )
            except RoutingError as exc:
                alternative = Alternative(other, None, "failed", note=str(exc))
        canonical = input_to_json(inp)
        return finalise(
            inp,
            st,
            arrays,
            raw,
            plan_id=plan_id_of(canonical),
            solve_ms=solve_ms,
            method=method,
            fallback_reason=reason,
            alternative=alternative,
            config=f"{self!r} policy={inp.policy.value} "
            f"λ={inp.latency_weight_usd_per_usd_s} ε={inp.tie_break_usd_per_usd}",
        )


def route_json(problem: object, router: Router | None = None) -> dict[str, Any]:
    """DESIGN §5.3 in one call: problem JSON object in, plan JSON object out."""
    inp = parse_problem(problem)
    return plan_to_json((router or Router()).route(inp))
