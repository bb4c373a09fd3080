"""What is too small to move (issue 12, points 11 and 14): dust deficits and remainders, and
steps below their minimum useful ticket. Every plan here comes from the optimiser."""

from __future__ import annotations

from decimal import Decimal

import pytest

from core.routing import (
    CollateralSource,
    Deficit,
    Policy,
    Router,
    RoutingInput,
    Segment,
    Tier,
    plan_to_json,
)

T3 = Tier.TRANSFER


def one_source_input(
    deficit_usd: float, *, step_usd: float = 0.01, credit: float = 1.0
) -> RoutingInput:
    src = CollateralSource(
        "funding", T3, 1.0, (Segment(10_000.0, credit, 0.0001),), step_usd=step_usd
    )
    return RoutingInput((Deficit("c", deficit_usd, 60.0),), (src,), Policy.COST)


@pytest.mark.parametrize("deficit_usd", [1e-12, 1e-9, 0.004, 0.0099])
def test_route_with_deficit_below_smallest_step_is_covered_with_empty_plan(
    deficit_usd: float,
) -> None:
    # one step of the only source credits 0.01 USD: anything less cannot be planned finer
    plan = Router().route(one_source_input(deficit_usd))
    assert plan.status == "optimal"
    assert plan.allocations == ()
    assert plan.uncovered_usd == 0
    assert plan.calls[0].deficit_usd == Decimal(repr(deficit_usd))
    assert plan.stages == ("dust",)
    assert plan.solves == 0
    assert any("below its dust threshold of 0.01 USD" in n for n in plan.notes)
    out = plan_to_json(plan)
    assert "escalation" not in out
    assert out["notes"] == list(plan.notes)


def test_route_with_deficit_just_above_smallest_step_moves_two_steps() -> None:
    plan = Router().route(one_source_input(0.0101))
    assert plan.status == "optimal"
    assert [a.amount_usd for a in plan.allocations] == [Decimal("0.02")]
    assert plan.notes == ()


def test_route_with_coarse_step_treats_deficit_below_one_step_credit_as_dust() -> None:
    # step 5 USD at credit 0.8: one step credits 4 USD; 3.99 is dust, 4.01 takes two steps
    below = Router().route(one_source_input(3.99, step_usd=5.0, credit=0.8))
    assert below.allocations == ()
    assert below.status == "optimal"
    above = Router().route(one_source_input(4.01, step_usd=5.0, credit=0.8))
    assert [a.amount_usd for a in above.allocations] == [Decimal("10.0")]
    assert above.credit_usd == Decimal("8.00")


def test_route_with_desk_dust_above_step_uses_the_desk_threshold() -> None:
    inp = one_source_input(0.5)
    inp = RoutingInput(inp.calls, inp.sources, Policy.COST, dust_usd=1.0)
    plan = Router().route(inp)
    assert plan.allocations == ()
    assert plan.status == "optimal"


def test_route_with_no_eligible_source_and_dust_deficit_is_covered_not_infeasible() -> None:
    # nothing arrives within 10 s, but 1e-12 USD is dust: covered (the desk threshold)
    slow = CollateralSource("slow", T3, 600.0, (Segment(1e6, 1.0, 0.0),))
    plan = Router().route(RoutingInput((Deficit("c", 1e-12, 10.0),), (slow,)))
    assert plan.status == "optimal"
    assert plan.uncovered_usd == 0


def test_joint_route_with_one_dust_call_plans_only_the_other() -> None:
    src = CollateralSource("funding", T3, 1.0, (Segment(10_000.0, 1.0, 0.0001),))
    inp = RoutingInput((Deficit("a", 1e-12, 60.0), Deficit("b", 250.0, 60.0)), (src,), Policy.COST)
    plan = Router().route(inp)
    assert plan.status == "optimal"
    assert [(a.call, a.amount_usd) for a in plan.allocations] == [("b", Decimal("250.00"))]
    assert [c.uncovered_usd for c in plan.calls] == [0, 0]
    assert any(n.startswith("call a:") for n in plan.notes)


# ---------------------------------------------------------------------- point 14


def swap_and_transfer(swap_second_cost: float | None) -> RoutingInput:
    """500,000 USD to cover; the swap's cheap first segment holds 499,999.99 USD. The cent
    left over is cheapest from the transfer (0.0002/USD) — unless the swap's own second
    segment is available, at 0.0005/USD."""
    segs = [Segment(499_999.99, 1.0, 0.0001)]
    if swap_second_cost is not None:
        segs.append(Segment(100_000.0, 1.0, swap_second_cost))
    swap = CollateralSource("swap", T3, 5.0, tuple(segs), mode="swap")
    transfer = CollateralSource("transfer", T3, 2.0, (Segment(1e6, 1.0, 0.0002),))
    return RoutingInput(
        (Deficit("c", 500_000.0, 60.0),),
        (swap, transfer),
        Policy.COST,
        latency_weight_usd_per_usd_s=0.0,
        tie_break_usd_per_usd=0.0,
    )


def test_route_with_cent_step_beside_large_swap_folds_it_into_the_swap() -> None:
    # The optimiser takes 0.01 from the transfer (0.000002 USD) rather than the swap's second
    # segment (0.000005): a request for one cent. The minimum useful ticket of the call is
    # 1e-6 × 500,000 = 0.50 USD of credit; the cent folds into the swap for 0.000003 more.
    router = Router()
    raw, _, _ = router.solve_raw(swap_and_transfer(0.0005))
    assert raw.x[0, 2] == pytest.approx(0.01, abs=1e-6)  # the transfer's cent, before finishing
    plan = router.route(swap_and_transfer(0.0005))
    assert {a.source: a.amount_usd for a in plan.allocations} == {"swap": Decimal("500000.00")}
    assert plan.status == "optimal"
    assert plan.credit_usd == Decimal("500000.00")
    assert plan.cost_usd == Decimal("49.999999") + Decimal("0.000005")
    assert any("step transfer of 0.01 USD" in n and "folded into swap" in n for n in plan.notes)


def test_route_with_cent_step_and_no_room_elsewhere_drops_it_as_dust() -> None:
    # the swap has no second segment: nothing to fold into; the cent it leaves uncovered is
    # below the call's threshold (0.50 USD), so the step is dropped and the call is covered
    plan = Router().route(swap_and_transfer(None))
    assert {a.source: a.amount_usd for a in plan.allocations} == {"swap": Decimal("499999.99")}
    assert plan.status == "optimal"
    assert plan.uncovered_usd == 0
    assert plan.calls[0].dust_usd == Decimal("0.01")
    assert any("dropped, leaving 0.01 USD" in n for n in plan.notes)
    out = plan_to_json(plan)
    assert out["calls"][0]["dust_usd"] == "0.01000000"


def test_route_with_small_step_needed_for_cover_keeps_it() -> None:
    # a 3 USD step whose 5 USD fee exceeds its credit is below its minimum useful ticket, but
    # nothing else can cover those 3 USD of a 1,000 USD call: cover first, the step stays
    main = CollateralSource("main", T3, 1.0, (Segment(997.0, 1.0, 0.0),))
    fee = CollateralSource("fee", T3, 1.0, (Segment(50.0, 1.0, 0.002),), fixed_fee_usd=5.0)
    plan = Router().route(RoutingInput((Deficit("c", 1000.0, 60.0),), (main, fee), Policy.COST))
    assert {a.source: a.amount_usd for a in plan.allocations} == {
        "main": Decimal("997.00"),
        "fee": Decimal("3.00"),
    }
    assert plan.status == "optimal"
    assert plan.notes == ()


def test_route_with_step_using_large_share_of_weight_budget_folds_it() -> None:
    # the transfer's request weighs 40 of the venue's 100: 40 % of the budget for a step of
    # 1,000 of a 100,000 call (1 %): below its minimum useful ticket (40,000 credit); the
    # funding source (no weight) has room at a slightly higher cost and takes it
    funding = CollateralSource(
        "funding", T3, 1.0, (Segment(99_000.0, 1.0, 0.0001), Segment(50_000.0, 1.0, 0.0003))
    )
    heavy = CollateralSource(
        "heavy", T3, 1.0, (Segment(50_000.0, 1.0, 0.0002),), api_weight=40.0, venue="v"
    )
    inp = RoutingInput(
        (Deficit("c", 100_000.0, 60.0),),
        (funding, heavy),
        Policy.COST,
        api_weight_budget={"v": 100.0},
        latency_weight_usd_per_usd_s=0.0,
        tie_break_usd_per_usd=0.0,
    )
    plan = Router().route(inp)
    # folding costs 1,000 × (0.0003 − 0.0002) = 0.10 USD more: above the 0.01 allowance, so
    # the step stays; with a 0.10 desk dust the fold is worth it
    assert {a.source for a in plan.allocations} == {"funding", "heavy"}
    folded = Router().route(
        RoutingInput(
            inp.calls,
            inp.sources,
            Policy.COST,
            api_weight_budget={"v": 100.0},
            latency_weight_usd_per_usd_s=0.0,
            tie_break_usd_per_usd=0.0,
            dust_usd=0.10,
        )
    )
    assert {a.source: a.amount_usd for a in folded.allocations} == {"funding": Decimal("100000.00")}
    assert any("step heavy" in n and "folded into funding" in n for n in folded.notes)
