"""The router facade: cache built problems by structure, solve, fall back, finalise.

``Router.route(inp)`` is the Python API behind ``pmr route``: it reuses a built
``RoutingProblem`` whenever a new input has the same structure (same calls, segment counts,
binaries and shared limits), so a repeated margin call only re-writes Parameter values. If the
solver fails, times out or reports an inaccurate status the greedy baseline plans instead and
the plan says so (``method="greedy-fallback"``, ``fallback_reason``). Every plan also reports
what the other policy would have cost, solved lazily: the plan needed to act comes first.
A deficit below its dust threshold is covered without a solve (``core.routing.worth``); an
input with no source at all gives an ``infeasible`` plan with its escalation and reasons.

A ``Router`` is not thread-safe: one per thread (or a lock around ``route``).
"""

from __future__ import annotations

import functools
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import replace
from decimal import Decimal
from typing import Any

import numpy as np
import numpy.typing as npt

from core.errors import RoutingError
from core.routing.arrays import Arrays, Structure, compile_arrays, structure_of
from core.routing.finish import Finisher, dec, usd_text
from core.routing.greedy import greedy_solution
from core.routing.jsonio import parse_problem, plan_to_json
from core.routing.plan import Alternative, LazyAlternative, Plan, finalise, plan_id_of
from core.routing.policies import RawSolution, solve_policy
from core.routing.problem import DEFAULT_TIME_LIMIT_S, Backend, RoutingProblem
from core.routing.sources import RoutingInput
from core.routing.worth import dust_threshold_usd

__all__ = ["Router", "raw_cost_usd", "route_json"]

FloatArray = npt.NDArray[np.float64]
_ZERO = Decimal(0)


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
    >>> plan.status, plan.allocations[0].amount_usd == 100
    ('optimal', True)
    >>> plan.alternative.policy.value  # the other policy, solved now (lazily)
    'cost'
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

    def route(self, inp: RoutingInput, *, notes: Sequence[str] = ()) -> Plan:
        """Plan ``inp``: optimiser, greedy fallback on failure, then rounding and checks.

        The other policy's cost (``plan.alternative``) is solved only when first asked for,
        off the critical path (issue 12, point 20). ``notes`` (e.g. why candidate sources were
        left out) are carried into the plan.
        """
        start = time.perf_counter()
        st = structure_of(inp)
        solve_inp, arrays, targets, dust, dust_notes = self._prepare(inp, st)
        raw, method, reason = self._solve(solve_inp, st, arrays, targets)
        solve_ms = (time.perf_counter() - start) * 1e3
        finisher = Finisher(solve_inp, st, arrays, targets, dust)
        alternative = (
            LazyAlternative(functools.partial(self.alternative_for, solve_inp, targets))
            if self.with_alternative
            else None
        )
        return finalise(
            finisher,
            raw,
            deficits=[dec(c.deficit_usd) for c in inp.calls],
            plan_id=plan_id_of(inp),
            solve_ms=solve_ms,
            method=method,
            fallback_reason=reason,
            alternative=alternative,
            config=f"{self!r} policy={inp.policy.value} "
            f"λ={inp.latency_weight_usd_per_usd_s} ε={inp.tie_break_usd_per_usd} "
            f"dust_usd={inp.dust_usd} min_step_frac={inp.min_step_frac}",
            notes=(*notes, *dust_notes, *_unreachable_notes(solve_inp, arrays, targets)),
        )

    def _prepare(
        self, inp: RoutingInput, st: Structure
    ) -> tuple[RoutingInput, Arrays, list[Decimal], FloatArray, list[str]]:
        """The input to solve (dust deficits set to 0), its arrays, each call's target credit,
        the dust thresholds and a note per call covered as dust (``core.routing.worth``)."""
        arrays = self._update(inp, st)
        dust = dust_threshold_usd(inp, arrays)
        deficit = arrays.deficit
        is_dust = (deficit > 0) & (deficit < dust)
        notes = [
            f"call {c.id}: deficit {usd_text(dec(c.deficit_usd))} USD is below its dust "
            f"threshold of {usd_text(dec(dust[d]))} USD (the smallest step any eligible "
            f"source can credit, or the desk's dust_usd): covered, nothing to move"
            for d, c in enumerate(inp.calls)
            if is_dust[d]
        ]
        targets = [_ZERO if is_dust[d] else dec(c.deficit_usd) for d, c in enumerate(inp.calls)]
        if not is_dust.any():
            return inp, arrays, targets, dust, notes
        calls = tuple(
            replace(c, deficit_usd=0.0) if is_dust[d] else c for d, c in enumerate(inp.calls)
        )
        solve_inp = replace(inp, calls=calls)
        return solve_inp, self._update(solve_inp, st), targets, dust, notes

    def _update(self, inp: RoutingInput, st: Structure) -> Arrays:
        if not inp.sources:  # nothing to build a problem from: the arrays alone
            return compile_arrays(inp, st)
        return self.problem_for(st).update(inp)

    def _solve(
        self, inp: RoutingInput, st: Structure, arrays: Arrays, targets: list[Decimal]
    ) -> tuple[RawSolution, str, str | None]:
        """The raw solution, the method (``optimiser`` or ``greedy-fallback``) and why."""
        if not inp.sources or all(t == 0 for t in targets):
            return _nothing_to_solve(st, arrays, inp.sources), "optimiser", None
        rp = self.problem_for(st)
        try:
            return solve_policy(rp, inp.policy), "optimiser", None
        except RoutingError as exc:
            return greedy_solution(inp, st, arrays, inp.policy), "greedy-fallback", str(exc)

    def alternative_for(self, inp: RoutingInput, targets: list[Decimal]) -> Alternative:
        """Solve ``inp`` under the other policy: its cost before rounding, and its status."""
        other = inp.policy.other
        start = time.perf_counter()
        st = structure_of(inp)
        if not inp.sources or all(t == 0 for t in targets):
            arrays = self._update(inp, st)
            raw = _nothing_to_solve(st, arrays, inp.sources)
            return Alternative(other, _ZERO, _raw_status(raw, arrays), note="nothing to solve")
        rp = self.problem_for(st)
        arrays = rp.update(inp)
        try:
            alt = solve_policy(rp, other)
        except RoutingError as exc:
            return Alternative(other, None, "failed", note=str(exc))
        return Alternative(
            other,
            Decimal(repr(round(raw_cost_usd(alt, arrays), 8))),
            _raw_status(alt, arrays),
            note="before rounding to venue steps",
            solve_ms=(time.perf_counter() - start) * 1e3,
        )


def _nothing_to_solve(st: Structure, arrays: Arrays, sources: Sequence[object]) -> RawSolution:
    """The raw solution when there is nothing to optimise: no source, or every call dust."""
    shortfall = arrays.deficit.copy()
    stage = "no-source" if not sources else "dust"
    return RawSolution(
        x=np.zeros((st.n_calls, st.n_pieces)),
        y=None,
        shortfall=shortfall,
        solves=0,
        stages=(stage,),
    )


def _unreachable_notes(inp: RoutingInput, arrays: Arrays, targets: list[Decimal]) -> list[str]:
    """Why a call cannot be covered at all: no source may serve it by its deadline."""
    notes: list[str] = []
    reach: npt.NDArray[np.bool_] = np.zeros(len(inp.calls), dtype=bool)
    if inp.sources:
        reach = np.asarray((arrays.cap > 0).any(axis=1), dtype=bool)
    for d, call in enumerate(inp.calls):
        if targets[d] > 0 and not reach[d]:
            notes.append(
                f"call {call.id}: no source can deliver to it within {call.deadline_s:g} s"
                + ("" if inp.sources else " (no candidate source at all)")
            )
    return notes


def route_json(problem: object, router: Router | None = None) -> dict[str, Any]:
    """DESIGN §5.3 in one call: problem JSON object in, plan JSON object out."""
    inp = parse_problem(problem)
    return plan_to_json((router or Router()).route(inp))
