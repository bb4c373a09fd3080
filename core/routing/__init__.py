"""Collateral router (DESIGN §5): sources, the cvxpy/HiGHS optimiser, greedy baseline, plans.

Public API: build a ``RoutingInput`` (or parse DESIGN §5.3 JSON with ``parse_problem``) and call
``Router().route(inp)`` for a ``Plan``; ``plan_to_json`` gives the §5.3 output.

Exports are resolved lazily (PEP 562) so that importing a light piece, such as the
``Policy`` enum for a command-line option, does not load cvxpy and HiGHS.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.lazy import lazy_getattr

if TYPE_CHECKING:
    from core.routing.backends import Backend
    from core.routing.greedy import greedy_solution
    from core.routing.jsonio import input_to_json, parse_problem, plan_to_json
    from core.routing.plan import Allocation, Alternative, CallOutcome, LazyAlternative, Plan
    from core.routing.problem import RoutingProblem
    from core.routing.router import Router, route_json
    from core.routing.sources import (
        CollateralSource,
        Deficit,
        Policy,
        RoutingInput,
        Segment,
        SourceMode,
        Tier,
        requests_within,
    )

_EXPORTS = {
    "Allocation": "core.routing.plan",
    "Alternative": "core.routing.plan",
    "Backend": "core.routing.backends",
    "CallOutcome": "core.routing.plan",
    "CollateralSource": "core.routing.sources",
    "Deficit": "core.routing.sources",
    "LazyAlternative": "core.routing.plan",
    "Plan": "core.routing.plan",
    "Policy": "core.routing.sources",
    "Router": "core.routing.router",
    "RoutingInput": "core.routing.sources",
    "RoutingProblem": "core.routing.problem",
    "Segment": "core.routing.sources",
    "SourceMode": "core.routing.sources",
    "Tier": "core.routing.sources",
    "greedy_solution": "core.routing.greedy",
    "input_to_json": "core.routing.jsonio",
    "parse_problem": "core.routing.jsonio",
    "plan_to_json": "core.routing.jsonio",
    "requests_within": "core.routing.sources",
    "route_json": "core.routing.router",
}


__getattr__ = lazy_getattr(__name__, _EXPORTS, globals())


__all__ = [
    "Allocation",
    "Alternative",
    "Backend",
    "CallOutcome",
    "CollateralSource",
    "Deficit",
    "LazyAlternative",
    "Plan",
    "Policy",
    "Router",
    "RoutingInput",
    "RoutingProblem",
    "Segment",
    "SourceMode",
    "Tier",
    "greedy_solution",
    "input_to_json",
    "parse_problem",
    "plan_to_json",
    "requests_within",
    "route_json",
]
