"""Hand-checked optima (issue 5, correctness (a) and friends), on both solver back-ends."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from core.routing import (
    Backend,
    CollateralSource,
    Deficit,
    Policy,
    Router,
    RoutingInput,
    Segment,
    Tier,
    parse_problem,
    plan_to_json,
    requests_within,
)

T1, T2, T3 = Tier.PNL_OFFSET, Tier.IN_PRODUCT, Tier.TRANSFER
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "route-problem.json"


def brief_case(policy: Policy = Policy.STRICT, deficit: float = 1029.80) -> RoutingInput:
    """UPnL 300 free; BTC 400 at 0.95; pre-authorised transfer ≤ 250 at 0.0002/USD; swap at
    credit 0.998 and cost 0.002; an on-chain source (900 s) too slow for T = 60 s."""
    return RoutingInput(
        calls=(Deficit("call-1", deficit, 60.0),),
        sources=(
            CollateralSource("upnl", T1, 0.0, (Segment(300.0, 1.0, 0.0),)),
            CollateralSource("btc-pm", T2, 0.0, (Segment(400.0, 0.95, 0.0),)),
            CollateralSource(
                "usdt-transfer", T3, 2.0, (Segment(5000.0, 1.0, 0.0002),), preauth_usd=250.0
            ),
            CollateralSource("usdc-swap", T3, 5.0, (Segment(2000.0, 0.998, 0.002),)),
            CollateralSource("onchain", T3, 900.0, (Segment(100000.0, 1.0, 0.0),)),
        ),
        policy=policy,
    )


def amounts(plan_json: dict[str, Any]) -> dict[str, float]:
    """Allocated USD per source, from the JSON's decimal strings."""
    return {a["source"]: float(a["amount_usd"]) for a in plan_json["allocations"]}


@pytest.mark.parametrize("backend", [Backend.HIGHSPY, Backend.CVXPY])
@pytest.mark.parametrize("policy", [Policy.STRICT, Policy.COST])
def test_route_with_brief_priority_case_allocates_300_400_250_100_0(
    backend: Backend, policy: Policy
) -> None:
    plan = Router(backend=backend).route(brief_case(policy))
    out = plan_to_json(plan)
    assert plan.status == "optimal"
    assert amounts(out) == {
        "upnl": 300.0,
        "btc-pm": 400.0,
        "usdt-transfer": 250.0,
        "usdc-swap": 100.0,
    }
    # 300 + 400·0.95 + 250 + 100·0.998 = 1029.80 exactly; cost 250·0.0002 + 100·0.002 = 0.25
    assert plan.credit_usd == Decimal("1029.800")
    assert plan.cost_usd == Decimal("0.25")
    assert plan.uncovered_usd == 0
    assert out["alternative"]["policy"] == policy.other.value
    assert float(out["alternative"]["cost_usd"]) == pytest.approx(0.25, abs=1e-6)
    by_source = {a.source: a for a in plan.allocations}
    assert by_source["usdt-transfer"].binding == "preauth_limit"
    assert by_source["usdc-swap"].binding == "deficit_covered"
    # one more USD of cover would come from the swap: 0.002 / 0.998 USD per credited USD
    assert plan.calls[0].shadow_price_usd_per_usd == pytest.approx(0.002 / 0.998)


def test_route_with_example_file_matches_brief_case() -> None:
    out = plan_to_json(Router().route(parse_problem(json.loads(EXAMPLE.read_text()))))
    assert amounts(out) == {
        "upnl-btcusdt-perp": 300.0,
        "btc-in-pm": 400.0,
        "usdt-spot-to-pm": 250.0,
        "usdc-swap-usdt": 100.0,
    }
    assert out["cost_usd"] == "0.25000000"
    # ordered by expected completion: the in-place sources (0 s) before transfer (2 s), swap (5 s)
    assert [a["eta_s"] for a in out["allocations"]] == [0.0, 0.0, 2.0, 5.0]


def test_strict_with_expensive_tier2_takes_tier2_before_cheaper_transfer() -> None:
    sources = (
        CollateralSource("in-product", T2, 0.0, (Segment(500.0, 1.0, 0.004),)),
        CollateralSource("transfer", T3, 1.0, (Segment(500.0, 1.0, 0.0001),)),
    )
    inp = RoutingInput((Deficit("c", 300.0, 60.0),), sources, Policy.STRICT)
    strict = Router().route(inp)
    assert {a.source: a.amount_usd for a in strict.allocations} == {"in-product": Decimal("300.00")}
    assert strict.cost_usd == Decimal("1.2")
    assert strict.alternative is not None
    assert strict.alternative.cost_usd == Decimal("0.03")
    cost = Router().route(inp.with_policy(Policy.COST))
    assert {a.source: a.amount_usd for a in cost.allocations} == {"transfer": Decimal("300.00")}


def test_requests_within_with_rate_limit_counts_first_request_at_latency() -> None:
    # ⌊(60 − 2)·0.5⌋ + 1 = 30 requests; too slow → 0; no rate → unbounded
    assert requests_within(2.0, 0.5, 60.0) == 30
    assert requests_within(61.0, 0.5, 60.0) == 0
    assert requests_within(2.0, None, 60.0) is None


def test_route_with_rate_limited_source_caps_at_q_times_n() -> None:
    # q = 100 USD per request, ρ = 0.1/s, L = 10 s, T = 40 s → N = ⌊30·0.1⌋ + 1 = 4 → 400 USD
    slow = CollateralSource(
        "sub-account",
        T3,
        10.0,
        (Segment(10_000.0, 1.0, 0.0),),
        rate_per_s=0.1,
        per_request_usd=100.0,
    )
    dear = CollateralSource("swap", T3, 1.0, (Segment(10_000.0, 1.0, 0.001),))
    plan = Router().route(RoutingInput((Deficit("c", 1000.0, 40.0),), (slow, dear), Policy.COST))
    got = {a.source: a for a in plan.allocations}
    assert got["sub-account"].amount_usd == Decimal("400.00")
    assert got["sub-account"].requests == 4
    assert got["sub-account"].eta_s == pytest.approx(10.0 + 3 / 0.1)
    assert got["sub-account"].binding == "deadline_rate_limit"
    assert got["swap"].amount_usd == Decimal("600.00")
    assert plan.cost_usd == Decimal("0.6")


def test_route_with_fixed_fee_prefers_fee_free_source_for_small_deficit() -> None:
    # 100 USD: fee source costs 5 + 0 = 5; linear source 100·0.01 = 1 → linear.
    # 1000 USD: linear 10 > fee 5 → fee source.
    fee = CollateralSource("withdrawal", T3, 1.0, (Segment(5000.0, 1.0, 0.0),), fixed_fee_usd=5.0)
    lin = CollateralSource("swap", T3, 1.0, (Segment(5000.0, 1.0, 0.01),))
    r = Router()
    small = r.route(RoutingInput((Deficit("c", 100.0, 60.0),), (fee, lin), Policy.COST))
    big = r.route(RoutingInput((Deficit("c", 1000.0, 60.0),), (fee, lin), Policy.COST))
    assert [a.source for a in small.allocations] == ["swap"]
    assert small.cost_usd == Decimal("1.00")
    assert [a.source for a in big.allocations] == ["withdrawal"]
    assert big.cost_usd == Decimal("5.0")


def test_route_with_min_ticket_moves_at_least_the_ticket() -> None:
    # need 30 USD; cheap source has a 100 USD minimum ticket: 100 at 0.001 = 0.10 beats
    # 30 at 0.005 = 0.15, so the optimiser over-covers on purpose.
    ticket = CollateralSource("otc", T3, 1.0, (Segment(1000.0, 1.0, 0.001),), min_ticket_usd=100.0)
    other = CollateralSource("swap", T3, 1.0, (Segment(1000.0, 1.0, 0.005),))
    plan = Router().route(RoutingInput((Deficit("c", 30.0, 60.0),), (ticket, other), Policy.COST))
    assert {a.source: a.amount_usd for a in plan.allocations} == {"otc": Decimal("100.00")}
    assert plan.allocations[0].binding == "min_ticket"


def test_route_with_uncoverable_deficit_reports_exact_uncovered_and_reduction() -> None:
    srcs = (
        CollateralSource("a", T3, 1.0, (Segment(200.0, 1.0, 0.0),)),
        CollateralSource("b", T3, 1.0, (Segment(100.0, 0.9, 0.001),)),
        CollateralSource("too-slow", T3, 120.0, (Segment(1e6, 1.0, 0.0),)),
    )
    call = Deficit("c", 500.0, 60.0, target_ratio=1.5, mm_usd=10_000.0)
    plan = Router().route(RoutingInput((call,), srcs, Policy.STRICT))
    out = plan_to_json(plan)
    assert plan.status == "partial"
    assert plan.credit_usd == Decimal("290.0")
    assert plan.uncovered_usd == Decimal("210.0")
    assert out["uncovered_usd"] == "210.00000000"
    assert plan.calls[0].mm_reduction_usd == Decimal("140")
    assert plan.calls[0].position_reduction_frac == pytest.approx(0.014)
    assert plan.calls[0].shadow_price_usd_per_usd is None
    assert out["escalation"]["uncovered_usd"] == "210.00000000"


def test_route_with_nothing_in_time_is_infeasible_with_full_uncovered() -> None:
    srcs = (CollateralSource("slow", T3, 600.0, (Segment(1e6, 1.0, 0.0),)),)
    plan = Router().route(RoutingInput((Deficit("c", 500.0, 60.0),), srcs))
    assert plan.status == "infeasible"
    assert plan.uncovered_usd == Decimal("500.0")
    assert plan.allocations == ()


def test_route_with_two_calls_shares_one_source_without_double_spending() -> None:
    # One 600 USD funding balance can serve both pools; each needs 400. The cheap balance is
    # split (600 total), the rest comes from each pool's own dearer source.
    shared = CollateralSource("funding-usdt", T3, 1.0, (Segment(600.0, 1.0, 0.0001),))
    own_a = CollateralSource(
        "swap-a", T3, 1.0, (Segment(1000.0, 1.0, 0.002),), calls=frozenset({"a"})
    )
    own_b = CollateralSource(
        "swap-b", T3, 1.0, (Segment(1000.0, 1.0, 0.003),), calls=frozenset({"b"})
    )
    inp = RoutingInput(
        (Deficit("a", 400.0, 60.0), Deficit("b", 400.0, 60.0)), (shared, own_a, own_b), Policy.COST
    )
    plan = Router().route(inp)
    got = {(a.call, a.source): a.amount_usd for a in plan.allocations}
    assert sum(v for (c, s), v in got.items() if s == "funding-usdt") == Decimal("600.00")
    # b's own swap is dearer, so b gets all 400 of the shared balance and a takes 200 of it
    assert got[("b", "funding-usdt")] == Decimal("400.00")
    assert got[("a", "funding-usdt")] == Decimal("200.00")
    assert got[("a", "swap-a")] == Decimal("200.00")
    assert plan.cost_usd == Decimal("0.46")
    assert all(c.uncovered_usd == 0 for c in plan.calls)


def test_route_with_origin_pool_at_call_level_moves_only_headroom() -> None:
    # Moving BTC out of pool "okx-pm" debits 0.9 of its equity per USD; it may lose 180 before
    # hitting its call level → at most 200 USD may leave it.
    out_of_pool = CollateralSource(
        "okx-btc-out",
        T3,
        1.0,
        (Segment(5000.0, 1.0, 0.0),),
        origin_pool="okx-pm",
        origin_debit_per_usd=0.9,
    )
    dear = CollateralSource("swap", T3, 1.0, (Segment(5000.0, 1.0, 0.01),))
    inp = RoutingInput(
        (Deficit("c", 500.0, 60.0),),
        (out_of_pool, dear),
        Policy.COST,
        origin_headroom_usd={"okx-pm": 180.0},
    )
    plan = Router().route(inp)
    got = {a.source: a for a in plan.allocations}
    assert got["okx-btc-out"].amount_usd == Decimal("200.00")
    assert got["okx-btc-out"].binding == "origin_call_level:okx-pm"
    assert got["swap"].amount_usd == Decimal("300.00")


def test_route_with_shared_preauth_group_respects_group_limit() -> None:
    a = CollateralSource("a", T3, 1.0, (Segment(500.0, 1.0, 0.0),), groups=("cold",))
    b = CollateralSource("b", T3, 1.0, (Segment(500.0, 1.0, 0.0001),), groups=("cold",))
    c = CollateralSource("c", T3, 1.0, (Segment(5000.0, 1.0, 0.01),))
    inp = RoutingInput(
        (Deficit("x", 800.0, 60.0),), (a, b, c), Policy.COST, shared_limits_usd={"cold": 600.0}
    )
    got = {x.source: x.amount_usd for x in Router().route(inp).allocations}
    assert got == {"a": Decimal("500.00"), "b": Decimal("100.00"), "c": Decimal("200.00")}


def test_route_with_zero_deficit_plans_nothing() -> None:
    plan = Router().route(brief_case(deficit=0.0))
    assert plan.status == "optimal"
    assert plan.allocations == ()
    assert plan.cost_usd == 0


def test_route_with_no_source_in_time_and_no_binaries_reports_infeasible() -> None:
    # every column is fixed at zero after folding: the LP handed to HiGHS must not be empty
    srcs = (
        CollateralSource("slow-a", T3, 90.0, (Segment(500.0, 1.0, 0.0),)),
        CollateralSource("slow-b", T3, 120.0, (Segment(500.0, 1.0, 0.001),)),
    )
    for policy in (Policy.COST, Policy.STRICT):
        plan = Router().route(RoutingInput((Deficit("c", 100.0, 10.0),), srcs, policy))
        assert plan.method == "optimiser"
        assert plan.status == "infeasible"
        assert plan.uncovered_usd == Decimal("100.0")
