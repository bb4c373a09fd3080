"""The hot-path solver in a long-lived process (issue 12, point 19) and the tight formulation
of fixed-fee sources (point 21). No timing assertions: the clock is HiGHS's own run clock."""

from __future__ import annotations

import numpy as np
import pytest
from routing_helpers import EPS_ZERO, brute_force, oracle, random_input

from core.routing import CollateralSource, Deficit, Policy, Router, RoutingInput, Segment, Tier
from core.routing.arrays import structure_of
from core.routing.router import raw_cost_usd


def test_router_with_highs_run_clock_past_time_limit_keeps_solving_each_route() -> None:
    # HiGHS compares time_limit with the object's accumulated run clock; a router reusing one
    # object used to fail every solve once the total passed the limit. Run until the object's
    # clock reads three times the per-solve limit: every solve must still be optimal.
    rng = np.random.default_rng(8)
    inp = random_input(rng, 150, binaries=False, policy=Policy.COST)
    router = Router(time_limit_s=0.05, with_alternative=False)
    router.solve_raw(inp)
    highs = router.problem_for(structure_of(inp)).solver.h
    solves = 0
    while highs.getRunTime() < 0.15 and solves < 20_000:
        raw, _, _ = router.solve_raw(inp)  # raises RoutingError on "time limit reached"
        assert raw.shortfall.sum() <= 1e-6
        solves += 1
    assert highs.getRunTime() >= 0.15
    plan = router.route(inp)
    assert plan.method == "optimiser"


def test_router_with_binaries_past_time_limit_keeps_branching_per_solve() -> None:
    # the same with binaries: the branch and bound's node LPs get the solve's own budget
    rng = np.random.default_rng(9)
    inp = random_input(rng, 120, policy=Policy.COST, deficit_usd=20_000.0)
    router = Router(time_limit_s=0.05, with_alternative=False)
    router.solve_raw(inp)
    rp = router.problem_for(structure_of(inp))
    solves = 0
    while rp.solver.h.getRunTime() < 0.15 and solves < 20_000:
        router.solve_raw(inp)
        solves += 1
    assert rp.solver.h.getRunTime() >= 0.15
    assert router.route(inp).method == "optimiser"


@pytest.mark.parametrize(("fee_usd", "cost_usd"), [(2.0, 4.0), (1.0, 3.5)])
def test_fixed_fee_source_with_two_segments_is_integral_at_the_root(
    fee_usd: float, cost_usd: float
) -> None:
    # 800 USD to cover: the swap alone costs 800·0.005 = 4.00; the fee source's free first
    # segment (300) plus 500 from the swap costs fee + 2.50: worth it only below a 1.50 fee.
    # With only X ≤ M·y the relaxation sets y = 300/800 and charges 37.5 % of the fee
    # (fractional root); the per-segment link x₁ ≤ 300·y makes the root LP integral.
    fee = CollateralSource(
        "otc",
        Tier.TRANSFER,
        1.0,
        (Segment(300.0, 1.0, 0.0), Segment(700.0, 1.0, 0.01)),
        fixed_fee_usd=fee_usd,
    )
    lin = CollateralSource("swap", Tier.TRANSFER, 1.0, (Segment(5000.0, 1.0, 0.005),))
    inp = RoutingInput((Deficit("c", 800.0, 60.0),), (fee, lin), Policy.COST, **EPS_ZERO)
    router = Router(with_alternative=False)
    raw, arrays, _ = router.solve_raw(inp)
    assert router.problem_for(structure_of(inp)).bb_nodes_last == 1
    assert raw_cost_usd(raw, arrays) == pytest.approx(cost_usd)


@pytest.mark.parametrize("seed", range(12))
def test_optimiser_with_multi_segment_fee_sources_matches_brute_force(seed: int) -> None:
    # the per-segment links tighten the relaxation without cutting off any integer solution
    rng = np.random.default_rng(6000 + seed)
    inp = random_input(rng, 5, **EPS_ZERO)
    best_obj, best_cost = brute_force(inp)
    raw, arrays, _ = Router(with_alternative=False).solve_raw(inp)
    if not np.isfinite(best_obj):
        assert raw.shortfall.sum() > 1e-6
        return
    assert raw_cost_usd(raw, arrays) == pytest.approx(best_cost, rel=1e-6, abs=1e-6)


@pytest.mark.parametrize("seed", range(8))
def test_cost_policy_with_forty_fee_heavy_sources_matches_exact_milp_oracle(seed: int) -> None:
    # the plain cvxpy model (no Parameters, weak big-M, HiGHS MIP to a 1e-9 gap) is the
    # oracle; the router's tight formulation + warm branch and bound must reach the same
    # optimum within 1e-6 relative (the stated tolerance: the search prunes at 1e-7)
    rng = np.random.default_rng(7000 + seed)
    inp = random_input(rng, 40, **EPS_ZERO)
    total = sum(s.credit_for(s.capacity_usd(60.0)) for s in inp.sources)
    inp = RoutingInput(
        (Deficit("c0", round(0.3 * total, 2), 60.0),), inp.sources, Policy.COST, **EPS_ZERO
    )
    status, _, cost = oracle(inp)
    raw, arrays, _ = Router(with_alternative=False).solve_raw(inp)
    assert status == "optimal"
    assert raw.shortfall.sum() <= 1e-5
    assert raw_cost_usd(raw, arrays) == pytest.approx(cost, rel=1e-6, abs=1e-6)
