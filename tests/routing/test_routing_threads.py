"""One ``Router`` shared by the eight threads of Prefect's thread task runner.

A shared built problem holds one HiGHS model; two threads solving it at once crashed the
process (segfault). Each thread now keeps its own built problems: eight threads routing
concurrently through one router, many times, over inputs that share a structure (the case that
crashed) and inputs that do not, give exactly the plans serial routes give. No timing is
asserted.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import numpy as np
from routing_helpers import random_input

from core.routing import Alternative, Plan, Policy, Router, RoutingInput
from core.routing.jsonio import plan_to_json


def _inputs(rng: np.random.Generator) -> list[RoutingInput]:
    base = random_input(rng, 30, policy=Policy.STRICT)
    same_structure = [
        replace(base, calls=(replace(base.calls[0], deficit_usd=100.0 + 75.0 * i),))
        for i in range(12)
    ]
    others = [
        random_input(rng, 8 + i, policy=Policy.COST if i % 2 else Policy.STRICT) for i in range(6)
    ]
    return same_structure + others


def _json(router: Router, inp: RoutingInput) -> dict[str, Any]:
    return plan_to_json(router.route(inp), timings=False)  # solves the lazy alternative too


def _untimed_alternative(plan: Plan) -> Alternative | None:
    alt = plan.alternative
    return None if alt is None else replace(alt, solve_ms=None)


def test_router_shared_by_eight_threads_gives_the_serial_plans(rng: np.random.Generator) -> None:
    inputs = _inputs(rng)
    serial = [_json(Router(), inp) for inp in inputs]
    shared = Router()
    jobs = [k % len(inputs) for k in range(8 * 3 * len(inputs))]
    threads: set[int] = set()

    def route(k: int) -> tuple[int, dict[str, Any]]:
        threads.add(threading.get_ident())
        return k, _json(shared, inputs[k])

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(route, jobs))
    assert len(threads) > 1  # the routes really ran on several threads
    mismatches = [k for k, out in results if out != serial[k]]
    assert mismatches == []


def test_lazy_alternative_solved_on_another_thread_matches_the_serial_one(
    rng: np.random.Generator,
) -> None:
    """A plan made on one thread may have its comparison solved on another (printing it after
    the first leg was sent): that thread uses its own built problem."""
    inputs = _inputs(rng)[:4]
    shared = Router()
    plans = [shared.route(inp) for inp in inputs]
    assert all(p.alternative_pending for p in plans)
    with ThreadPoolExecutor(4) as pool:
        alternatives = list(pool.map(_untimed_alternative, plans))
    assert alternatives == [_untimed_alternative(Router().route(inp)) for inp in inputs]
