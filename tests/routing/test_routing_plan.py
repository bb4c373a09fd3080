"""Plan finishing: rounding, Decimal re-check, top-up, ordering, idempotency keys, fallback."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

from core.routing import (
    Backend,
    CollateralSource,
    Deficit,
    Policy,
    Router,
    RoutingInput,
    Segment,
    Tier,
    input_to_json,
    parse_problem,
    plan_to_json,
)
from core.routing.arrays import structure_of

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "route-problem.json"
T3 = Tier.TRANSFER


def test_plan_with_coarse_steps_rounds_down_then_tops_up_cheapest_total() -> None:
    # 1000 USD deficit; the cheap source moves whole 300 USD lots. The LP wants 1000 from it,
    # rounding keeps 900, and the last 100 costs either one more lot (300 · 0.0001 = 0.03) or
    # 100 from the swap (100 · 0.002 = 0.20): the lot wins, over-covering on purpose.
    lots = CollateralSource("lots", T3, 1.0, (Segment(5000.0, 1.0, 0.0001),), step_usd=300.0)
    swap = CollateralSource("swap", T3, 1.0, (Segment(5000.0, 1.0, 0.002),))
    plan = Router().route(RoutingInput((Deficit("c", 1000.0, 60.0),), (lots, swap), Policy.COST))
    assert {a.source: a.amount_usd for a in plan.allocations} == {"lots": Decimal("1200.0")}
    assert plan.cost_usd == Decimal("0.12")
    assert plan.status == "optimal"


def test_plan_with_coarse_dear_steps_tops_up_from_fine_source() -> None:
    # Same, but a lot now costs 300 · 0.001 = 0.30 > 0.20 for 100 from the swap.
    lots = CollateralSource("lots", T3, 1.0, (Segment(5000.0, 1.0, 0.001),), step_usd=300.0)
    swap = CollateralSource("swap", T3, 1.0, (Segment(5000.0, 1.0, 0.002),))
    plan = Router().route(RoutingInput((Deficit("c", 1000.0, 60.0),), (lots, swap), Policy.COST))
    got = {a.source: a.amount_usd for a in plan.allocations}
    assert got == {"lots": Decimal("900.0"), "swap": Decimal("100.00")}
    assert plan.credit_usd == Decimal("1000.00")


def test_plan_with_credit_below_one_tops_up_in_decimal() -> None:
    # credit 0.997: 100 / 0.997 = 100.3009... → the LP amount rounds down to 100.30 (credit
    # 99.9991 < 100) and the top-up adds one 0.01 step: 100.31 → 100.00907 ≥ 100.
    s = CollateralSource("swap", T3, 1.0, (Segment(5000.0, 0.997, 0.001),))
    plan = Router().route(RoutingInput((Deficit("c", 100.0, 60.0),), (s,)))
    assert plan.allocations[0].amount_usd == Decimal("100.31")
    assert plan.credit_usd >= Decimal("100")
    assert plan.credit_usd == Decimal("100.31") * Decimal("0.997")


def test_plan_with_same_input_gives_same_idempotency_keys() -> None:
    inp = parse_problem(json.loads(EXAMPLE.read_text()))
    a = Router().route(inp)
    b = Router(backend=Backend.CVXPY).route(inp)
    assert a.plan_id == b.plan_id
    assert [x.idempotency_key for x in a.allocations] == [x.idempotency_key for x in b.allocations]
    assert len({x.idempotency_key for x in a.allocations}) == len(a.allocations)
    other = Router().route(inp.with_policy(Policy.COST))
    assert other.plan_id != a.plan_id


def test_plan_with_steps_of_different_eta_is_ordered_by_completion() -> None:
    inp = parse_problem(json.loads(EXAMPLE.read_text()))
    etas = [a.eta_s for a in Router().route(inp).allocations]
    assert etas == sorted(etas)


def test_route_with_solver_time_limit_falls_back_to_greedy_and_says_so() -> None:
    inp = parse_problem(json.loads(EXAMPLE.read_text()))
    plan = Router(time_limit_s=0.0).route(inp)
    out = plan_to_json(plan)
    assert out["method"] == "greedy-fallback"
    assert "time limit" in out["fallback_reason"].lower()
    assert out["status"] == "optimal"
    # the strict greedy takes tiers in order and then the cheapest per credited USD
    assert {a["source"]: a["amount_usd"] for a in out["allocations"]} == {
        "upnl-btcusdt-perp": "300.00000000",
        "btc-in-pm": "400.00000000",
        "usdt-spot-to-pm": "250.00000000",
        "usdc-swap-usdt": "100.00000000",
    }
    assert out["alternative"]["status"] == "failed"


def test_input_json_with_round_trip_is_unchanged() -> None:
    raw = json.loads(EXAMPLE.read_text())
    inp = parse_problem(raw)
    again = parse_problem(input_to_json(inp))
    assert again == inp


def test_plan_json_with_design_schema_has_every_documented_key() -> None:
    out = plan_to_json(Router().route(parse_problem(json.loads(EXAMPLE.read_text()))))
    for key in ("status", "cost_usd", "credit_usd", "uncovered_usd", "allocations", "solve_ms"):
        assert key in out
    assert set(out["alternative"]) >= {"policy", "cost_usd"}
    for a in out["allocations"]:
        assert set(a) >= {"source", "amount_usd", "credit_usd", "cost_usd", "eta_s"}
        assert a["why"].startswith(f"tier {a['tier']}")
    json.dumps(out)  # serialisable as is


def test_route_with_alternative_solves_other_policy_only_when_first_asked() -> None:
    inp = parse_problem(json.loads(EXAMPLE.read_text()))
    router = Router()
    plan = router.route(inp)
    solver = router.problem_for(structure_of(inp)).solver
    runs_after_plan = solver.runs
    assert plan.alternative_pending
    alt = plan.alternative
    assert alt is not None
    assert alt.policy is Policy.COST
    assert alt.cost_usd == Decimal("0.25")
    assert not plan.alternative_pending
    assert solver.runs > runs_after_plan  # the cost policy was solved now
    runs = solver.runs
    assert plan.alternative is alt  # once
    assert solver.runs == runs


def test_lazy_alternative_with_other_routes_in_between_costs_its_own_input() -> None:
    # the built problem is shared by inputs of one structure: the deferred solve re-writes
    # its own numbers first
    base = parse_problem(json.loads(EXAMPLE.read_text()))
    router = Router()
    first = router.route(base)
    bigger = parse_problem({**json.loads(EXAMPLE.read_text()), "deficit_usd": 1500})
    router.route(bigger).alternative  # noqa: B018 - solves the other input's alternative
    alt = first.alternative
    fresh = Router().route(base).alternative
    assert alt is not None
    assert fresh is not None
    assert alt.cost_usd == fresh.cost_usd == Decimal("0.25")


def test_route_with_no_source_at_all_gives_infeasible_plan_with_escalation() -> None:
    call = Deficit("sim-b.um", 40_000.0, 60.0, target_ratio=1.6, mm_usd=100_000.0)
    plan = Router().route(
        RoutingInput((call,), ()), notes=("route b.onchain.usdt: no allow-list entry; left out",)
    )
    assert plan.status == "infeasible"
    assert plan.allocations == ()
    assert plan.uncovered_usd == Decimal("40000.0")
    # deficit = r*·MM − E: cutting MM by 40,000 / 1.6 = 25,000 closes it (25 % of MM)
    assert plan.calls[0].mm_reduction_usd == Decimal("25000")
    assert plan.calls[0].position_reduction_frac == 0.25
    assert plan.notes[0] == "route b.onchain.usdt: no allow-list entry; left out"
    assert "no candidate source at all" in plan.notes[1]
    out = plan_to_json(plan)
    assert out["escalation"]["uncovered_usd"] == "40000.00000000"
    assert out["calls"][0]["suggested_reduction"]["mm_reduction_usd"] == "25000.00000000"
    assert out["alternative"]["status"] == "infeasible"


def test_plan_json_with_timings_off_is_identical_across_runs() -> None:
    inp = parse_problem(json.loads(EXAMPLE.read_text()))
    first = json.dumps(plan_to_json(Router().route(inp), timings=False))
    second = json.dumps(plan_to_json(Router().route(inp), timings=False))
    assert first == second
    assert json.loads(first)["solve_ms"] is None


def test_routing_docstring_examples_with_doctest_run_as_written() -> None:
    import doctest
    import importlib

    for name in ("router", "problem", "jsonio", "sources"):
        module = importlib.import_module(f"core.routing.{name}")
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.attempted > 0, name
        assert result.failed == 0, name
