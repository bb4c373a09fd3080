"""Router benchmark: warm re-solve latency, joint calls, and greedy-vs-optimiser cost.

Prints human-readable lines, then one JSON object on the last line (never pass/fail on time).
Targets (DESIGN §10): 100 sources warm re-solve p50 ≤ 5 ms and p99 ≤ 25 ms; 10 simultaneous
calls solved jointly ≤ 50 ms.

What is timed:

* ``solve``: ``RoutingProblem.update`` (numpy → Parameter values) plus the policy's solve(s)
  on an already built problem, with new numbers each time (same structure); for both back-ends
  (``highspy``: cvxpy's cached Parameter-updated matrices handed to one reused HiGHS object;
  ``cvxpy``: ``problem.solve(solver=cp.HIGHS)``);
* ``route``: the whole ``Router.route`` call: solve, the other policy's solve (for the plan's
  ``alternative``), rounding, Decimal re-check, top-up, explanations, keys.

Run: ``uv run python benchmarks/router.py [--quick]``.
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
    if rp.build_count != 1:
        raise RuntimeError("warm re-solve rebuilt the problem")
    return {
        "p50_ms": pct(times, 50),
        "p99_ms": pct(times, 99),
        "first_ms": first_ms,
        "n": iters,
        "solver_failures": failures,
        "binaries": len(rp.st.binary_sources),
    }


def time_route(inp: RoutingInput, iters: int, rng: np.random.Generator) -> dict[str, float]:
    router = Router()
    router.route(inp)
    times = []
    for _ in range(iters):
        nxt = perturbed(inp, rng)
        start = time.perf_counter()
        router.route(nxt)
        times.append((time.perf_counter() - start) * 1e3)
    return {"p50_ms": pct(times, 50), "p99_ms": pct(times, 99), "n": float(iters)}


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
            f"route  {n:5d} sources  (full plan) p50 {r['p50_ms']:8.2f} ms  p99 {r['p99_ms']:8.2f} ms"
        )
    joint = realistic_input(rng, 100, n_calls=10)
    r = time_solve(joint, Backend.HIGHSPY, 50 if not args.quick else 5, rng)
    result["joint_10_calls_100_sources"] = r
    print(f"joint  10 calls × 100 sources   p50 {r['p50_ms']:8.2f} ms  p99 {r['p99_ms']:8.2f} ms")
    g = greedy_vs_optimiser(300 if not args.quick else 30, rng)
    result["greedy_vs_optimiser"] = g
    print(
        f"greedy vs optimiser on {int(g['instances'])} instances: median extra {g['median_extra_pct']:.3f} %, "
        f"worst {g['worst_extra_pct']:.2f} %, greedy dearer in {100 * g['greedy_worse_share']:.0f} %"
    )
    s100 = result["solve"]["100_highspy"]
    result["targets"] = {
        "p50_100_ms_le_5": s100["p50_ms"] <= 5.0,
        "p99_100_ms_le_25": s100["p99_ms"] <= 25.0,
        "joint_10_le_50_ms": r["p50_ms"] <= 50.0,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
