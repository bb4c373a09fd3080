"""Hypothesis properties of the router (issue 5): coverage, monotonicity, scaling, deadlines,
exact uncovered amounts. Raw costs are compared with λ = ε = 0 so the objective is pure cost."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.routing import CollateralSource, Deficit, Policy, Router, RoutingInput, Segment, Tier
from core.routing.router import raw_cost_usd

ROUTER = Router(with_alternative=False)
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def sources(draw: st.DrawFn, i: int) -> CollateralSource:
    k = draw(st.integers(1, 3))
    credits = sorted(draw(st.lists(st.integers(60, 100), min_size=k, max_size=k)), reverse=True)
    costs = sorted(draw(st.lists(st.integers(0, 100), min_size=k, max_size=k)))
    widths = draw(st.lists(st.integers(10, 800), min_size=k, max_size=k))
    rate = draw(st.sampled_from([None, 0.5, 2.0]))
    return CollateralSource(
        id=f"s{i}",
        tier=Tier(draw(st.integers(1, 3))),
        latency_s=float(draw(st.sampled_from([0, 1, 5, 30, 90]))),
        segments=tuple(
            Segment(float(w), c / 100, q / 10_000)
            for w, c, q in zip(widths, credits, costs, strict=True)
        ),
        preauth_usd=draw(st.sampled_from([None, 150.0, 600.0])),
        rate_per_s=rate,
        per_request_usd=None if rate is None else float(draw(st.integers(20, 300))),
        fixed_fee_usd=float(draw(st.sampled_from([0, 0, 0, 1, 4]))),
        min_ticket_usd=float(draw(st.sampled_from([0, 0, 0, 30]))),
    )


@st.composite
def inputs(draw: st.DrawFn, policy: Policy = Policy.COST) -> RoutingInput:
    n = draw(st.integers(1, 5))
    srcs = tuple(draw(sources(i)) for i in range(n))
    deficit = float(draw(st.integers(1, 2000)))
    deadline = float(draw(st.sampled_from([10, 60, 120])))
    return RoutingInput(
        (Deficit("c", deficit, deadline),),
        srcs,
        policy,
        latency_weight_usd_per_usd_s=0.0,
        tie_break_usd_per_usd=0.0,
    )


def max_credit(inp: RoutingInput) -> float:
    """Single call, no shared limits: each source alone up to its capacity (if ≥ its ticket)."""
    call = inp.calls[0]
    total = 0.0
    for s in inp.sources:
        cap = s.capacity_usd(call.deadline_s)
        if cap >= s.min_ticket_usd:
            total += s.credit_for(cap)
    return total


def with_deficit(inp: RoutingInput, deficit: float) -> RoutingInput:
    return dataclasses.replace(inp, calls=(dataclasses.replace(inp.calls[0], deficit_usd=deficit),))


def with_deadline(inp: RoutingInput, deadline: float) -> RoutingInput:
    return dataclasses.replace(inp, calls=(dataclasses.replace(inp.calls[0], deadline_s=deadline),))


def scaled(inp: RoutingInput, k: float) -> RoutingInput:
    def sc(v: float | None) -> float | None:
        return None if v is None else v * k

    srcs = tuple(
        dataclasses.replace(
            s,
            segments=tuple(dataclasses.replace(g, width_usd=g.width_usd * k) for g in s.segments),
            preauth_usd=sc(s.preauth_usd),
            per_request_usd=sc(s.per_request_usd),
            fixed_fee_usd=s.fixed_fee_usd * k,
            min_ticket_usd=s.min_ticket_usd * k,
        )
        for s in inp.sources
    )
    return dataclasses.replace(
        inp,
        calls=(dataclasses.replace(inp.calls[0], deficit_usd=inp.calls[0].deficit_usd * k),),
        sources=srcs,
    )


def cost_of(inp: RoutingInput) -> tuple[float, float]:
    raw, arrays, _ = ROUTER.solve_raw(inp)
    return raw_cost_usd(raw, arrays), float(raw.shortfall.sum())


@SETTINGS
@given(inputs(Policy.STRICT) | inputs(Policy.COST))
def test_plan_with_any_input_covers_in_decimal_within_caps(inp: RoutingInput) -> None:
    plan = ROUTER.route(inp)
    assert plan.method == "optimiser", plan.fallback_reason
    call = inp.calls[0]
    deficit = Decimal(repr(call.deficit_usd))
    by_id = {s.id: s for s in inp.sources}
    for a in plan.allocations:
        s = by_id[a.source]
        assert a.amount_usd > 0
        assert float(a.amount_usd) <= s.capacity_usd(call.deadline_s) + 1e-9
        assert a.amount_usd % Decimal(repr(s.step_usd)) == 0
        assert a.amount_usd >= Decimal(repr(s.min_ticket_usd))
    assert plan.credit_usd == sum((a.credit_usd for a in plan.allocations), Decimal(0))
    # a remainder below the call's dust threshold (a cent, one step, 1e-6 of the deficit) is
    # counted as covered and reported as dust
    dust = plan.calls[0].dust_usd
    assert dust < Decimal("0.01")  # deficits here are at most 2,000 USD, steps 0.01
    assert plan.uncovered_usd + dust == max(Decimal(0), deficit - plan.credit_usd)
    if plan.status == "optimal":
        assert plan.credit_usd + dust >= deficit


@SETTINGS
@given(inputs(), st.floats(0.1, 0.95))
def test_cost_with_larger_deficit_is_not_lower(inp: RoutingInput, frac: float) -> None:
    big_cost, big_short = cost_of(inp)
    small_cost, small_short = cost_of(with_deficit(inp, inp.calls[0].deficit_usd * frac))
    if big_short <= 1e-5:
        assert small_short <= 1e-5
        assert small_cost <= big_cost + 1e-6 * (1 + big_cost)


@SETTINGS
@given(inputs(), st.sampled_from([0.5, 2.0, 10.0]))
def test_cost_with_deficit_and_widths_scaled_scales_by_same_factor(
    inp: RoutingInput, k: float
) -> None:
    base_cost, base_short = cost_of(inp)
    k_cost, k_short = cost_of(scaled(inp, k))
    assert np.isclose(k_short, k * base_short, rtol=1e-6, atol=1e-4)
    if base_short <= 1e-5:
        assert np.isclose(k_cost, k * base_cost, rtol=1e-6, atol=1e-6)


@SETTINGS
@given(inputs(), st.sampled_from([0.25, 0.5, 0.9]))
def test_cost_with_tighter_deadline_is_not_lower(inp: RoutingInput, frac: float) -> None:
    loose_cost, loose_short = cost_of(inp)
    tight_cost, tight_short = cost_of(with_deadline(inp, inp.calls[0].deadline_s * frac))
    assert tight_short >= loose_short - 1e-5
    if tight_short <= 1e-5:
        assert tight_cost >= loose_cost - 1e-6 * (1 + loose_cost)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(inputs(Policy.STRICT) | inputs(Policy.COST), st.floats(1.01, 3.0))
def test_plan_with_uncoverable_deficit_reports_exact_uncovered(
    inp: RoutingInput, factor: float
) -> None:
    most = max_credit(inp)
    deficit = round(most * factor + 1.0, 2)
    inp = with_deficit(inp, deficit)
    raw, _, _ = ROUTER.solve_raw(inp)
    assert np.isclose(raw.shortfall.sum(), deficit - most, rtol=1e-7, atol=1e-4)
    plan = ROUTER.route(inp)
    assert plan.status in ("partial", "infeasible")
    # rounding each source down to its 0.01 USD step loses at most one step per source
    slack = Decimal("0.01") * len(inp.sources) + Decimal("0.0001")
    exact = Decimal(repr(deficit)) - Decimal(repr(most))
    assert exact - Decimal("0.0001") <= plan.uncovered_usd <= exact + slack
