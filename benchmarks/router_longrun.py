"""Long-run router benchmark: many warm routes in one process, first vs last thousand.

A monitor or a served deployment keeps one ``Router`` (and its reused HiGHS objects) for
hours. HiGHS's ``time_limit`` is compared with the object's accumulated run clock, so before
issue 12 (point 19) every solve after the clock passed the limit stopped at once and the router
fell back to greedy. This runs ``--routes`` warm routes of one structure with new numbers each
time (and solves each plan's lazy alternative too, as a caller that stores plans does), then
prints p50/p99 of the first and last thousand side by side, the fallbacks and the HiGHS run
clock at the end. Never pass/fail on time: the last line is one JSON object.

Run: ``uv run python benchmarks/router_longrun.py [--routes 10000] [--sources 100]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from router import perturbed, realistic_input

from core.routing import Router
from core.routing.arrays import structure_of


def window(times_ms: list[float]) -> dict[str, float]:
    arr = np.asarray(times_ms)
    return {"p50_ms": float(np.percentile(arr, 50)), "p99_ms": float(np.percentile(arr, 99))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--routes", type=int, default=10_000, help="warm routes in one process")
    ap.add_argument("--sources", type=int, default=100, help="sources per problem")
    ap.add_argument("--window", type=int, default=1_000, help="routes per compared window")
    args = ap.parse_args()
    rng = np.random.default_rng(20261127)
    inp = realistic_input(rng, args.sources)
    router = Router()
    router.route(inp).alternative  # noqa: B018 - build and warm both policies
    rp = router.problem_for(structure_of(inp))
    times: list[float] = []
    fallbacks = 0
    alternative_failures = 0
    started = time.perf_counter()
    for i in range(args.routes):
        nxt = perturbed(inp, rng)
        start = time.perf_counter()
        plan = router.route(nxt)
        times.append((time.perf_counter() - start) * 1e3)
        fallbacks += plan.method != "optimiser"
        alt = plan.alternative
        alternative_failures += alt is not None and alt.status == "failed"
        if (i + 1) % 2_000 == 0:
            print(f"  {i + 1:6d} routes, {fallbacks} fallbacks", file=sys.stderr)
    w = min(args.window, max(1, args.routes // 2))
    first, last = window(times[:w]), window(times[-w:])
    result: dict[str, Any] = {
        "benchmark": "router_longrun",
        "routes": args.routes,
        "sources": args.sources,
        "binaries": len(rp.st.binary_sources),
        "window": w,
        "first": first,
        "last": last,
        "fallbacks": fallbacks,
        "alternative_failures": alternative_failures,
        "highs_run_clock_s": float(rp.solver.h.getRunTime()),
        "time_limit_s": router.time_limit_s,
        "wall_s": time.perf_counter() - started,
    }
    print(f"{'':12s}{'first ' + str(w):>16s}{'last ' + str(w):>16s}")
    print(f"{'p50 (ms)':12s}{first['p50_ms']:16.2f}{last['p50_ms']:16.2f}")
    print(f"{'p99 (ms)':12s}{first['p99_ms']:16.2f}{last['p99_ms']:16.2f}")
    print(
        f"{args.routes} routes at {args.sources} sources: {fallbacks} greedy fallbacks, "
        f"{alternative_failures} failed alternatives; HiGHS run clock "
        f"{result['highs_run_clock_s']:.1f} s against a per-solve limit of "
        f"{router.time_limit_s} s"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
