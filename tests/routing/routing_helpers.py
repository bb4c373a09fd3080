"""Instance generators and from-scratch oracles for the router tests.

The oracle is the "REPLICATE WITH CVXPY" model of cvxportfolio's tests: the same maths written
plainly, one variable per (call, source), no Parameters, no caching, rebuilt every time, so a
bug in the Parameter plumbing, the structure cache or the highspy hot path shows as a mismatch.
"""

from __future__ import annotations

import itertools
from decimal import Decimal
from typing import Any

import cvxpy
import numpy as np

from core.routing import CollateralSource, Deficit, Policy, RoutingInput, Segment, Tier
from core.routing.plan import Plan

# cvxpy re-exports its atoms with a star import that mypy cannot follow.
cp: Any = cvxpy

EPS_ZERO: dict[str, Any] = {"latency_weight_usd_per_usd_s": 0.0, "tie_break_usd_per_usd": 0.0}


def amounts_by_source(plan: Plan) -> dict[str, Decimal]:
    """USD each source moves in ``plan``, over all its steps (a step above the source's
    per-request cap is one step per request)."""
    out: dict[str, Decimal] = {}
    for a in plan.allocations:
        out[a.source] = out.get(a.source, Decimal(0)) + a.amount_usd
    return out


def legs_over_cap(plan: Plan, inp: RoutingInput) -> list[tuple[str, int, Decimal]]:
    """(source, leg, USD) of every leg valued above its source's per-request cap."""
    caps = {s.id: s.per_request_usd for s in inp.sources}
    return [
        (a.source, g.leg_no, g.amount_usd)
        for a in plan.allocations
        for g in a.legs
        if caps[a.source] is not None and g.amount_usd > Decimal(repr(caps[a.source]))
    ]


def random_source(rng: np.random.Generator, i: int, *, binaries: bool = True) -> CollateralSource:
    k = int(rng.integers(1, 4))
    credits = np.sort(rng.uniform(0.6, 1.0, k))[::-1]
    costs = np.sort(rng.uniform(0.0, 0.01, k))
    widths = rng.uniform(50, 800, k)
    segs = tuple(
        Segment(round(float(w), 2), round(float(c), 4), round(float(q), 6))
        for w, c, q in zip(widths, credits, costs, strict=True)
    )
    # Rounding can break strict monotonicity only into ties, which stay valid.
    rate = float(rng.choice([0.0, 0.5, 2.0]))
    has_fee = binaries and rng.random() < 0.3
    has_min = binaries and rng.random() < 0.3
    return CollateralSource(
        id=f"s{i}",
        tier=Tier(int(rng.integers(1, 4))),
        latency_s=float(rng.choice([0.0, 1.0, 5.0, 30.0, 120.0])),
        segments=segs,
        preauth_usd=float(rng.uniform(100, 1500)) if rng.random() < 0.3 else None,
        rate_per_s=rate if rate > 0 else None,
        per_request_usd=float(rng.uniform(50, 400)) if rate > 0 else None,
        fixed_fee_usd=round(float(rng.uniform(0.1, 3.0)), 2) if has_fee else 0.0,
        min_ticket_usd=round(float(rng.uniform(20, 200)), 2) if has_min else 0.0,
    )


def random_input(
    rng: np.random.Generator,
    n_sources: int,
    *,
    policy: Policy = Policy.COST,
    binaries: bool = True,
    deficit_usd: float | None = None,
    deadline_s: float = 60.0,
    **extra: Any,
) -> RoutingInput:
    sources = tuple(random_source(rng, i, binaries=binaries) for i in range(n_sources))
    if deficit_usd is None:
        deficit_usd = round(float(rng.uniform(100, 1500)), 2)
    return RoutingInput(
        calls=(Deficit("c0", deficit_usd, deadline_s),),
        sources=sources,
        policy=policy,
        **extra,
    )


def oracle(
    inp: RoutingInput,
    fixed_y: dict[tuple[int, int], int] | None = None,
    strict_floors: list[float] | None = None,
) -> tuple[str, float, float]:
    """Solve the cost policy from scratch: (status, objective, pure cost USD).

    ``fixed_y`` fixes the used/not-used decision of binary sources (for brute force). Given a
    list as ``strict_floors``, solve the strict policy instead (maximise capped tier-1, then
    tier-1+2 credit summed over calls, then cost) and append the two stage optima to it.
    """
    cons: list[Any] = []
    obj_terms: list[Any] = []
    cost_terms: list[Any] = []
    lam, eps = inp.latency_weight_usd_per_usd_s, inp.tie_break_usd_per_usd
    t_max = max(c.deadline_s for c in inp.calls)
    moved: dict[int, list[Any]] = {j: [] for j in range(len(inp.sources))}
    per_piece: dict[tuple[int, int], list[Any]] = {}
    credit_of_call: list[list[Any]] = [[] for _ in inp.calls]
    tier_credit: dict[tuple[int, int], list[Any]] = {
        (d, t): [] for d in range(len(inp.calls)) for t in (1, 2, 3)
    }
    for d, call in enumerate(inp.calls):
        for j, s in enumerate(inp.sources):
            xv = cp.Variable(len(s.segments), nonneg=True)
            cr = np.array([g.credit_per_usd for g in s.segments])
            co = np.array([g.cost_per_usd for g in s.segments])
            for k in range(len(s.segments)):
                per_piece.setdefault((j, k), []).append(xv[k])
            X = cp.sum(xv)
            moved[j].append(X)
            cap = s.capacity_usd(call.deadline_s) if s.serves(call.id) else 0.0
            if s.needs_binary:
                if fixed_y is not None:
                    yv: Any = float(fixed_y[(d, j)])
                else:
                    yv = cp.Variable(boolean=True)
                cons += [cap * yv >= X, s.min_ticket_usd * yv <= X]
                obj_terms.append(s.fixed_fee_usd * yv)
                cost_terms.append(s.fixed_fee_usd * yv)
            else:
                cons.append(cap >= X)
            credit_of_call[d].append(cr @ xv)
            tier_credit[(d, int(s.tier))].append(cr @ xv)
            obj_terms.append(co @ xv + lam * s.latency_s * (cr @ xv) + eps * (int(s.tier) - 1) * X)
            cost_terms.append(co @ xv)
    for (j, k), xs in per_piece.items():
        cons.append(cp.sum(cp.hstack(xs)) <= inp.sources[j].segments[k].width_usd)
    for j, s in enumerate(inp.sources):
        cons.append(cp.sum(cp.hstack(moved[j])) <= s.capacity_usd(t_max))
    for g, limit in inp.shared_limits_usd.items():
        members = [cp.sum(cp.hstack(moved[j])) for j, s in enumerate(inp.sources) if g in s.groups]
        if members:
            cons.append(cp.sum(cp.hstack(members)) <= limit)
    for o, head in inp.origin_headroom_usd.items():
        members = [
            s.origin_debit_per_usd * cp.sum(cp.hstack(moved[j]))
            for j, s in enumerate(inp.sources)
            if s.origin_pool == o
        ]
        if members:
            cons.append(cp.sum(cp.hstack(members)) <= head)
    for d, call in enumerate(inp.calls):
        cons.append(cp.sum(cp.hstack(credit_of_call[d])) >= call.deficit_usd)
    if strict_floors is not None:
        # lexicographic stages of the strict policy, each a from-scratch problem
        for tiers in ((1,), (1, 2)):
            caps = []
            for d, call in enumerate(inp.calls):
                terms = [e for t in tiers for e in tier_credit[(d, t)]]
                if terms:
                    caps.append(cp.minimum(cp.sum(cp.hstack(terms)), call.deficit_usd))
            if not caps:
                strict_floors.append(0.0)
                continue
            stage = cp.Problem(cp.Maximize(cp.sum(cp.hstack(caps))), cons)
            stage.solve(solver=cp.HIGHS)
            if stage.status != cp.OPTIMAL:
                return str(stage.status), float("inf"), float("inf")
            best = float(stage.value)
            strict_floors.append(best)
            cons = [*cons, cp.sum(cp.hstack(caps)) >= best - 1e-6 * (1 + best)]
    prob = cp.Problem(cp.Minimize(cp.sum(cp.hstack(obj_terms))), cons)
    prob.solve(solver=cp.HIGHS, mip_rel_gap=1e-9)
    if prob.status != cp.OPTIMAL:
        return str(prob.status), float("inf"), float("inf")
    cost = float(cp.sum(cp.hstack(cost_terms)).value)
    return "optimal", float(prob.value), cost


def brute_force(inp: RoutingInput) -> tuple[float, float]:
    """Enumerate every used/not-used pattern of binary sources, LP each: (objective, cost)."""
    keys = [
        (d, j) for d in range(len(inp.calls)) for j, s in enumerate(inp.sources) if s.needs_binary
    ]
    best = (float("inf"), float("inf"))
    for pattern in itertools.product((0, 1), repeat=len(keys)):
        status, obj, cost = oracle(inp, dict(zip(keys, pattern, strict=True)))
        if status == "optimal" and obj < best[0]:
            best = (obj, cost)
    return best


def objective_of(inp: RoutingInput, x: np.ndarray, y: np.ndarray | None) -> float:
    """Cost-policy objective of a raw solution, computed independently of the model."""
    lam, eps = inp.latency_weight_usd_per_usd_s, inp.tie_break_usd_per_usd
    total = 0.0
    b = 0
    p = 0
    for _j, s in enumerate(inp.sources):
        for g in s.segments:
            for d in range(x.shape[0]):
                amt = x[d, p]
                total += amt * (
                    g.cost_per_usd + lam * s.latency_s * g.credit_per_usd + eps * (int(s.tier) - 1)
                )
            p += 1
        if s.needs_binary:
            if y is not None:
                total += s.fixed_fee_usd * float(y[:, b].sum())
            b += 1
    return total
