"""Router benchmark: warm re-solve latency, joint calls, and greedy-vs-optimiser cost.

Prints human-readable lines, then one JSON object on the last line (never pass/fail on time).
Targets (DESIGN §10): 100 sources warm re-solve p50 ≤ 5 ms and p99 ≤ 25 ms; 10 simultaneous
calls solved jointly ≤ 50 ms.

What is timed:

* ``solve``: ``RoutingProblem.update`` (numpy → Parameter values) plus the policy's solve(s)
  on an already built problem, with new numbers each time (same structure); for both back-ends
  (``highspy``: cvxpy's cached Parameter-updated matrices handed to one reused HiGHS object;
  ``cvxpy``: ``problem.solve(solver=cp.HIGHS)``);
* ``route``: the whole ``Router.route`` call: solve, rounding, Decimal re-check, top-up,
  folding, explanations, keys: the plan needed to act. The other policy (the plan's
  ``alternative``) is solved lazily, off the critical path; ``route+alternative`` times the
  plan plus that deferred solve, as a caller that prints or stores the plan pays it;
* ``cost scaling``: the ``cost`` policy's warm solve at 50 … 1,000 sources (fixed fees on 10 %
  of the sources, so these are MILPs), with the log-log slope of p50 against the size, and the
  branch-and-bound nodes per solve;
* ``plain cvxpy``: the same cost MILP as a plain cvxpy model built fresh and solved with HiGHS
  (the oracle of the tests), for scale.

Run: ``uv run python benchmarks/router.py [--quick]``; the long-run check (10,000 warm routes
in one process) is ``benchmarks/router_longrun.py``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.errors import RoutingError
from core.routing import (
    Backend,
    CollateralSource,
    Deficit,
    Policy,
    Router,
    RoutingInput,
    Segment,
    Tier,
)
from core.routing.arrays import structure_of
from core.routing.greedy import greedy_solution
from core.routing.policies import solve_policy
from core.routing.problem import RoutingProblem
from core.routing.router import raw_cost_usd


def realistic_sources(
    rng: np.random.Generator, n: int, *, n_calls: int = 1, fee_share: float = 0.1
) -> tuple[CollateralSource, ...]:
    """A desk-like mix: few tier-1/2, mostly transfers and swaps with book-depth segments."""
    out = []
    for i in range(n):
        tier = Tier(int(rng.choice([1, 2, 3], p=[0.1, 0.2, 0.7])))
        k = 1 if tier is Tier.PNL_OFFSET else int(rng.integers(1, 4))
        width = rng.uniform(5_000, 400_000, k)
        credit = np.sort(rng.uniform(0.90, 1.0, k))[::-1] if tier is not Tier.PNL_OFFSET else [1.0]
        cost = (
            np.sort(rng.uniform(0.0, 0.004, k))
            if tier is Tier.TRANSFER
            else np.sort(rng.uniform(0.0, 0.0005, k))
        )
        rate = float(rng.choice([0.0, 1.0, 2.0, 10.0]))
        has_fee = rng.random() < fee_share
        calls = None
        if n_calls > 1 and rng.random() < 0.5:
            calls = frozenset({f"call-{int(rng.integers(n_calls))}"})
        out.append(
            CollateralSource(
                id=f"src-{i}",
                tier=tier,
                latency_s=float(rng.choice([0.0, 0.5, 1.0, 2.0, 5.0, 30.0, 1200.0])),
                segments=tuple(
                    Segment(float(w), float(c), float(q))
                    for w, c, q in zip(width, credit, cost, strict=True)
                ),
                preauth_usd=float(rng.uniform(50_000, 1_000_000)) if rng.random() < 0.4 else None,
                rate_per_s=rate if rate > 0 else None,
                per_request_usd=float(rng.uniform(20_000, 300_000)) if rate > 0 else None,
                fixed_fee_usd=float(rng.uniform(1, 25)) if has_fee else 0.0,
                min_ticket_usd=float(rng.uniform(1_000, 10_000))
                if has_fee and rng.random() < 0.5
                else 0.0,
                calls=calls,
            )
        )
    return tuple(out)


def realistic_input(
    rng: np.random.Generator, n: int, *, n_calls: int = 1, policy: Policy = Policy.STRICT, **kw: Any
) -> RoutingInput:
    sources = realistic_sources(rng, n, n_calls=n_calls, fee_share=kw.pop("fee_share", 0.1))
    total = sum(s.total_width_usd for s in sources)
    calls = tuple(
        Deficit(f"call-{d}", float(rng.uniform(0.02, 0.25) * total / n_calls), 60.0)
        for d in range(n_calls)
    )
    return RoutingInput(calls, sources, policy, **kw)


def perturbed(inp: RoutingInput, rng: np.random.Generator) -> RoutingInput:
    """Same structure, new numbers: what a repeated margin call looks like to the router."""
    srcs = tuple(
        replace(
            s,
            segments=tuple(
                replace(g, width_usd=g.width_usd * float(rng.uniform(0.8, 1.2))) for g in s.segments
            ),
            latency_s=s.latency_s * float(rng.uniform(0.9, 1.1)),
        )
        for s in inp.sources
    )
    calls = tuple(
        replace(c, deficit_usd=c.deficit_usd * float(rng.uniform(0.8, 1.2))) for c in inp.calls
    )
    return replace(inp, calls=calls, sources=srcs)


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q))


def time_solve(
    inp: RoutingInput, backend: Backend, iters: int, rng: np.random.Generator
) -> dict[str, Any]:
    rp = RoutingProblem(structure_of(inp), backend=backend)
    nodes: list[int] = []
    start = time.perf_counter()
    rp.update(inp)
    failures = 0
    try:
        solve_policy(rp, inp.policy)  # first solve: canonicalisation and cache
    except RoutingError:
        failures += 1
    first_ms = (time.perf_counter() - start) * 1e3
    times = []
    for _ in range(iters):
        nxt = perturbed(inp, rng)
        start = time.perf_counter()
        rp.update(nxt)
        try:
            solve_policy(rp, nxt.policy)
        except RoutingError:
            failures += 1  # time limit: the router would fall back to greedy here
        times.append((time.perf_counter() - start) * 1e3)
        nodes.append(rp.bb_nodes_last)
    if rp.build_count != 1:
        raise RuntimeError("warm re-solve rebuilt the problem")
    return {
        "p50_ms": pct(times, 50),
        "p99_ms": pct(times, 99),
        "first_ms": first_ms,
        "n": iters,
        "solver_failures": failures,
        "binaries": len(rp.st.binary_sources),
        "bb_nodes_max": max(nodes) if backend is Backend.HIGHSPY else None,
    }


def time_route(inp: RoutingInput, iters: int, rng: np.random.Generator) -> dict[str, float]:
    """``Router.route`` (the plan to act on) and, separately, the deferred alternative."""
    router = Router()
    router.route(inp).alternative  # noqa: B018 - builds and warms both policies
    plan_ms: list[float] = []
    total_ms: list[float] = []
    fallbacks = 0
    for _ in range(iters):
        nxt = perturbed(inp, rng)
        start = time.perf_counter()
        plan = router.route(nxt)
        plan_ms.append((time.perf_counter() - start) * 1e3)
        plan.alternative  # noqa: B018 - the deferred solve
        total_ms.append((time.perf_counter() - start) * 1e3)
        fallbacks += plan.method != "optimiser"
    return {
        "p50_ms": pct(plan_ms, 50),
        "p99_ms": pct(plan_ms, 99),
        "with_alternative_p50_ms": pct(total_ms, 50),
        "with_alternative_p99_ms": pct(total_ms, 99),
        "fallbacks": float(fallbacks),
        "n": float(iters),
    }


def plain_cvxpy_cost_ms(inp: RoutingInput) -> float:
    """One cost-policy MILP as a plain cvxpy model built fresh (the test oracle's model)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "routing"))
    from routing_helpers import oracle

    start = time.perf_counter()
    oracle(inp)
    return (time.perf_counter() - start) * 1e3


def cost_scaling(
    sizes: list[int], iters: int, rng: np.random.Generator, *, plain_at: int | None
) -> dict[str, Any]:
    """Warm cost-policy solves over sizes; slope of log p50 against log size (1 = linear)."""
    out: dict[str, Any] = {}
    for n in sizes:
        inp = realistic_input(rng, n, policy=Policy.COST)
        r = time_solve(inp, Backend.HIGHSPY, iters, rng)
        if plain_at is not None and n == plain_at:
            r["plain_cvxpy_fresh_ms"] = plain_cvxpy_cost_ms(inp)
        out[str(n)] = r
        extra = (
            f"  plain cvxpy fresh {r['plain_cvxpy_fresh_ms']:8.1f} ms"
            if "plain_cvxpy_fresh_ms" in r
            else ""
        )
        print(
            f"cost   {n:5d} sources  highspy  p50 {r['p50_ms']:8.2f} ms  p99 {r['p99_ms']:8.2f} ms"
            f"  binaries {r['binaries']}  max nodes {r['bb_nodes_max']}"
            f"  failures {r['solver_failures']}{extra}"
        )
    xs = np.log([float(n) for n in sizes])
    ys = np.log([out[str(n)]["p50_ms"] for n in sizes])
    out["loglog_slope_p50"] = float(np.polyfit(xs, ys, 1)[0])
    print(
        f"cost   log-log slope of p50 from {sizes[0]} to {sizes[-1]} sources: "
        f"{out['loglog_slope_p50']:.2f} (1 = linear)"
    )
    return out


def greedy_vs_optimiser(n_instances: int, rng: np.random.Generator) -> dict[str, float]:
    extra: list[float] = []
    skipped = 0
    router = Router(with_alternative=False)
    for _ in range(n_instances):
        n = int(rng.integers(5, 41))
        inp = realistic_input(
            rng,
            n,
            policy=Policy.COST,
            latency_weight_usd_per_usd_s=0.0,
            tie_break_usd_per_usd=0.0,
            fee_share=0.25,
        )
        raw, arrays, st = router.solve_raw(inp)
        greedy = greedy_solution(inp, st, arrays, Policy.COST)
        if raw.shortfall.sum() > 1e-3 or greedy.shortfall.sum() > 1e-3:
            skipped += 1
            continue
        opt = raw_cost_usd(raw, arrays)
        gre = raw_cost_usd(greedy, arrays)
        extra.append(0.0 if gre <= opt + 1e-9 else 100.0 * (gre - opt) / max(opt, 1e-9))
    return {
        "instances": float(len(extra)),
        "skipped_uncoverable": float(skipped),
        "median_extra_pct": statistics.median(extra),
        "mean_extra_pct": statistics.fmean(extra),
        "worst_extra_pct": max(extra),
        "greedy_worse_share": sum(1 for e in extra if e > 1e-6) / len(extra),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer iterations (smoke run)")
    args = ap.parse_args()
    rng = np.random.default_rng(20261127)
    iters = {10: 200, 100: 200, 1000: 30} if not args.quick else {10: 20, 100: 20, 1000: 5}
    result: dict[str, Any] = {"benchmark": "router", "solve": {}, "route": {}}
    for n, it in iters.items():
        inp = realistic_input(rng, n)
        for backend in (Backend.HIGHSPY, Backend.CVXPY):
            r = time_solve(inp, backend, it if backend is Backend.HIGHSPY else max(5, it // 4), rng)
            result["solve"][f"{n}_{backend.value}"] = r
            print(
                f"solve  {n:5d} sources  {backend.value:8s} p50 {r['p50_ms']:8.2f} ms  "
                f"p99 {r['p99_ms']:8.2f} ms  first {r['first_ms']:8.1f} ms  "
                f"binaries {r['binaries']}  failures {r['solver_failures']}/{r['n'] + 1}"
            )
        r = time_route(inp, max(5, it // 4), rng)
        result["route"][str(n)] = r
        print(
            f"route  {n:5d} sources  (plan) p50 {r['p50_ms']:8.2f} ms  p99 {r['p99_ms']:8.2f} ms"
            f"   (+alternative) p50 {r['with_alternative_p50_ms']:8.2f} ms"
            f"  p99 {r['with_alternative_p99_ms']:8.2f} ms"
        )
    joint = realistic_input(rng, 100, n_calls=10)
    r = time_solve(joint, Backend.HIGHSPY, 50 if not args.quick else 5, rng)
    result["joint_10_calls_100_sources"] = r
    print(f"joint  10 calls × 100 sources   p50 {r['p50_ms']:8.2f} ms  p99 {r['p99_ms']:8.2f} ms")
    rj = time_route(joint, 20 if not args.quick else 3, rng)
    result["route"]["joint_10_calls_100_sources"] = rj
    print(
        f"route  10 calls × 100 sources (plan) p50 {rj['p50_ms']:8.2f} ms"
        f"   (+alternative) p50 {rj['with_alternative_p50_ms']:8.2f} ms"
    )
    sizes = [50, 100, 200, 400, 1000]
    result["cost_scaling"] = cost_scaling(
        sizes, 30 if not args.quick else 5, rng, plain_at=None if args.quick else 400
    )
    g = greedy_vs_optimiser(300 if not args.quick else 30, rng)
    result["greedy_vs_optimiser"] = g
    print(
        f"greedy vs optimiser on {int(g['instances'])} instances: median extra {g['median_extra_pct']:.3f} %, "
        f"worst {g['worst_extra_pct']:.2f} %, greedy dearer in {100 * g['greedy_worse_share']:.0f} %"
    )
    s100 = result["solve"]["100_highspy"]
    c1000 = result["cost_scaling"]["1000"]
    result["targets"] = {
        "p50_100_ms_le_5": s100["p50_ms"] <= 5.0,
        "p99_100_ms_le_25": s100["p99_ms"] <= 25.0,
        "joint_10_le_50_ms": result["joint_10_calls_100_sources"]["p50_ms"] <= 50.0,
        "cost_1000_p50_ms_le_50": c1000["p50_ms"] <= 50.0,
        "cost_scaling_slope_le_1": result["cost_scaling"]["loglog_slope_p50"] <= 1.0,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
