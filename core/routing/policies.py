"""The two routing policies, composed from the terms of one built ``RoutingProblem``.

``strict`` (default) follows the product brief's order as a hard rule: maximise tier-1 credit,
then tier-2 credit, then cover the rest as cheaply as possible (a lexicographic LP/MILP solved
in stages; Ehrgott, *Multicriteria Optimization*, 2nd ed., §5.1). The stages are usually
unnecessary: the maximum tier credit is bounded above by what each tier's sources could credit
within their own capacities, and when the cost stage is feasible with those bounds as floors
they *are* the lexicographic maxima. So strict first tries one solve with these optimistic
floors and runs the real stages only if that is infeasible (shared limits, joint calls or an
uncoverable deficit make the bound unattainable).

``cost`` minimises cost + λ·latency + ε·tier in one solve.

Either policy, when the deficit cannot be covered, first minimises the total shortfall and
then solves with the shortfall capped at that minimum: the best partial plan.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from core.errors import RoutingError
from core.routing.cvx import set_value
from core.routing.problem import Failed, Infeasible, Outcome, RoutingProblem, Solved
from core.routing.sources import Policy, RoutingInput, Tier

__all__ = ["RawSolution", "optimistic_floors", "solve_policy"]

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class RawSolution:
    """Amounts before rounding: x (calls × pieces), used binaries y (calls × B), shortfall."""

    x: FloatArray
    y: FloatArray | None
    shortfall: FloatArray
    solves: int
    stages: tuple[str, ...]


def _tolerance(deficit: FloatArray) -> FloatArray:
    # HiGHS's primal feasibility tolerance is 1e-7 on scaled rows; floors and shortfall caps
    # are relaxed a little more so a bound found by one solve is feasible in the next.
    return 1e-6 + 1e-9 * deficit


def optimistic_floors(inp: RoutingInput, rp: RoutingProblem) -> tuple[FloatArray, FloatArray]:
    """Upper bounds on tier-1 and tier-1+2 credit per call, capped at the deficit.

    Each source alone can credit at most ``credit_for(Cap_j(T_d))`` (zero if its capacity is
    below its minimum ticket); coupling constraints can only lower the sum.
    """
    f1 = np.zeros(len(inp.calls))
    f2 = np.zeros(len(inp.calls))
    for d, call in enumerate(inp.calls):
        for s in inp.sources:
            if s.tier is Tier.TRANSFER or not s.serves(call.id):
                continue
            cap = s.capacity_usd(call.deadline_s)
            if cap < s.min_ticket_usd:
                continue
            credit = s.credit_for(cap)
            if s.tier is Tier.PNL_OFFSET:
                f1[d] += credit
            f2[d] += credit
    deficit = np.array([c.deficit_usd for c in inp.calls])
    return np.minimum(f1, deficit), np.minimum(f2, deficit)


def _floors_attainable(inp: RoutingInput, f1: FloatArray, f2: FloatArray, tol: FloatArray) -> bool:
    """A necessary condition for the optimistic floors: jointly, the calls cannot take more
    tier credit than the tier's sources hold, each counted once (their capacity at the latest
    deadline). Failing it, the optimistic solve is certainly infeasible and is skipped; a
    single call always passes, since there the floors are built from the same capacities."""
    if len(inp.calls) == 1:
        return True
    t_max = max(c.deadline_s for c in inp.calls)
    total1 = total12 = 0.0
    for s in inp.sources:
        if s.tier is Tier.TRANSFER:
            continue
        cap = s.capacity_usd(t_max)
        credit = s.credit_for(cap) if cap >= s.min_ticket_usd else 0.0
        total12 += credit
        if s.tier is Tier.PNL_OFFSET:
            total1 += credit
    return bool(
        (f1 - tol).sum() <= total1 + 1e-6 * (1 + total1)
        and (f2 - tol).sum() <= total12 + 1e-6 * (1 + total12)
    )


def _expect(out: Outcome, stage: str, inp: RoutingInput) -> Solved | None:
    """Return the solution, ``None`` if infeasible; raise a typed error on failure."""
    if isinstance(out, Solved):
        return out
    if isinstance(out, Infeasible):
        return None
    reason = out.reason if isinstance(out, Failed) else repr(out)
    raise RoutingError(
        f"solver failed in stage {stage}: {reason}",
        call_id=",".join(c.id for c in inp.calls),
        policy=inp.policy.value,
        stage=stage,
    )


def _raw(sol: Solved, solves: int, stages: list[str]) -> RawSolution:
    v = sol.values
    return RawSolution(
        x=np.maximum(v["x"], 0.0),
        y=None if "y" not in v else np.round(v["y"]),
        shortfall=np.maximum(v["u"], 0.0),
        solves=solves,
        stages=tuple(stages),
    )


def _min_shortfall(rp: RoutingProblem, inp: RoutingInput, stages: list[str]) -> FloatArray:
    arrays = rp.arrays
    if arrays is None:
        raise RoutingError("solve before update()", policy=inp.policy.value)
    rp.floors.set_floors(np.zeros_like(arrays.deficit), np.zeros_like(arrays.deficit))
    stages.append("cover")
    sol = _expect(rp.run("cover"), "cover", inp)
    if sol is None:
        raise RoutingError(
            "the shortfall problem is infeasible; check origin headroom and shared limits",
            call_id=",".join(c.id for c in inp.calls),
            policy=inp.policy.value,
        )
    shortfall = np.maximum(sol.values["u"], 0.0)
    cap = shortfall + _tolerance(arrays.deficit)
    set_value(rp.cover.max_shortfall, np.minimum(cap, arrays.deficit))
    return shortfall


def _finish_partial_or_main(
    rp: RoutingProblem, inp: RoutingInput, stages: list[str]
) -> RawSolution:
    """Cost stage with the floors as set: hard cover first, least shortfall if infeasible."""
    stages.append("main")
    sol = _expect(rp.run_main(), "main", inp)
    if sol is None:
        _min_shortfall(rp, inp, stages)
        stages.append("main")
        sol = _expect(rp.run_main(), "main-partial", inp)
    if sol is None:
        raise RoutingError(
            "infeasible with the minimum shortfall",
            call_id=inp.calls[0].id,
            policy=inp.policy.value,
        )
    return _raw(sol, len(stages), stages)


def solve_policy(rp: RoutingProblem, policy: Policy) -> RawSolution:
    """Solve the updated problem ``rp`` under ``policy``; raise ``RoutingError`` on failure."""
    inp, arrays = rp.input, rp.arrays
    if inp is None or arrays is None:
        raise RoutingError("solve_policy before update()", policy=policy.value)
    zeros = np.zeros_like(arrays.deficit)
    tol = _tolerance(arrays.deficit)
    set_value(rp.cover.max_shortfall, zeros)
    stages: list[str] = []
    if policy is Policy.COST:
        rp.floors.set_floors(zeros, zeros)
        return _finish_partial_or_main(rp, inp, stages)

    # strict: one solve with optimistic floors, stages only when that is infeasible
    f1, f2 = optimistic_floors(inp, rp)
    if _floors_attainable(inp, f1, f2, tol):
        rp.floors.set_floors(f1 - tol, f2 - tol)
        stages.append("main-optimistic")
        sol = _expect(rp.run_main(), "main-optimistic", inp)
        if sol is not None:
            return _raw(sol, 1, stages)
    has_t1 = bool(np.any(arrays.credit_tier1 > 0))
    has_t2 = bool(np.any((arrays.credit_tier12 > 0) & (arrays.credit_tier1 == 0)))
    rp.floors.set_floors(zeros, zeros)
    s1 = zeros
    first = "stage-tier1" if has_t1 else "stage-tier2" if has_t2 else None
    if first is None:
        # no tier-1/2 source at all: strict is the cost policy with a hard cover
        return _finish_partial_or_main(rp, inp, stages)
    # The first stage runs with a hard cover (ū = 0); only if that is infeasible is the
    # least shortfall needed (an extra solve), after which the stage runs again.
    rp.stage.set_stage(arrays.credit_tier1 if has_t1 else arrays.credit_tier12, arrays.deficit)
    stages.append(first)
    out = _expect(rp.run("stage"), first, inp)
    if out is None:
        _min_shortfall(rp, inp, stages)
        stages.append(first)
        out = _expect(rp.run("stage"), first, inp)
        if out is None:
            raise RoutingError(f"{first} infeasible", call_id=inp.calls[0].id, policy="strict")
    if has_t1:
        s1 = np.maximum(out.values["s"], 0.0)
    else:
        s2_only = np.maximum(out.values["s"], 0.0)
        rp.floors.set_floors(zeros, s2_only - tol)
        stages.append("main")
        sol = _expect(rp.run_main(), "main-staged", inp)
        if sol is None:
            raise RoutingError(
                "cost stage infeasible after tier stages", call_id=inp.calls[0].id, policy="strict"
            )
        return _raw(sol, len(stages), stages)
    rp.floors.set_floors(s1 - tol, zeros)
    s2 = s1
    if has_t2:
        rp.stage.set_stage(arrays.credit_tier12, arrays.deficit)
        stages.append("stage-tier2")
        out = _expect(rp.run("stage"), "stage-tier2", inp)
        if out is None:
            raise RoutingError("tier-2 stage infeasible", call_id=inp.calls[0].id, policy="strict")
        s2 = np.maximum(out.values["s"], 0.0)
    rp.floors.set_floors(s1 - tol, s2 - tol)
    stages.append("main")
    sol = _expect(rp.run_main(), "main-staged", inp)
    if sol is None:
        raise RoutingError(
            "cost stage infeasible after tier stages", call_id=inp.calls[0].id, policy="strict"
        )
    return _raw(sol, len(stages), stages)
