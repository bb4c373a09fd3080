"""Collateral router (DESIGN §5): sources, the cvxpy/HiGHS optimiser, greedy baseline, plans.

Public API: build a ``RoutingInput`` (or parse DESIGN §5.3 JSON with ``parse_problem``) and call
``Router().route(inp)`` for a ``Plan``; ``plan_to_json`` gives the §5.3 output.
"""

from core.routing.greedy import greedy_solution
from core.routing.jsonio import input_to_json, parse_problem, plan_to_json
from core.routing.plan import Allocation, Alternative, CallOutcome, Plan
from core.routing.problem import Backend, RoutingProblem
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

__all__ = [
    "Allocation",
    "Alternative",
    "Backend",
    "CallOutcome",
    "CollateralSource",
    "Deficit",
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
