"""Time-to-cover: ``CoverSolver``'s certificates give the router's figures, to the cent."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.config import load_desk
from core.routing.jsonio import parse_problem
from core.routing.router import Router
from core.routing.sources import (
    CollateralSource,
    Deficit,
    Policy,
    RoutingInput,
    Segment,
    Tier,
)
from core.stress.cover import CoverSolver, greedy_credit_usd, slack_usd
from core.stress.evaluate import _default_input, evaluate, time_to_cover
from core.stress.fast import evaluate_fast
from core.stress.scenarios import library

DESK = load_desk(Path(__file__).resolve().parents[2] / "examples" / "desk.toml")
STATE = DESK.initial_portfolio(datetime(2026, 11, 27, 12, 0, tzinfo=UTC))
STABLES = [a for a, c in DESK.assets.items() if c.kind == "stablecoin"]
LIB = list(
    library(
        venues=[v.name for v in DESK.venues], assets=list(DESK.assets), stablecoins=STABLES
    ).values()
)
# One router for the whole module: built problems are cached by structure (as in a stress run).
ROUTER = Router(with_alternative=False, cache_size=64)


def test_every_library_row_of_the_example_desk_equals_the_routers_figures() -> None:
    routed = CoverSolver(ROUTER, fast=False)
    fast = CoverSolver(ROUTER)
    reference = evaluate(DESK, STATE, LIB, cover=routed)
    assert evaluate(DESK, STATE, LIB, cover=fast) == reference
    assert evaluate_fast(DESK, STATE, LIB, cover=CoverSolver(ROUTER)) == reference
    # both branches ran: most deadlines certified full, the partial row routed
    assert fast.stats.full >= 100
    assert 0 < fast.stats.routed < routed.stats.routed
    partial = [r for r in reference if 0 < r.covered_10m_usd < r.deficit_usd]
    assert [(r.pool_id, r.scenario) for r in partial] == [("sim-b.opt", "joint-btc-50%-vol+100%")]


def test_component_states_give_the_rows_of_the_whole_desk_state() -> None:
    # a custom build_input keeps the whole desk's state; the default cuts it per component
    some = LIB[:6] + LIB[-10:]
    whole = evaluate(DESK, STATE, some, build_input=_default_input)
    assert evaluate(DESK, STATE, some) == whole
    assert any(r.covered_10s_usd > 0 for r in whole)


def _problem(deficit: float, per_request: float, rate: float | None = 1.0) -> RoutingInput:
    return parse_problem(
        {
            "deficit_usd": deficit,
            "deadline_s": 600,
            "sources": [
                {
                    "id": "spot",
                    "tier": 3,
                    "latency_s": 1,
                    "per_request_usd": per_request,
                    **({"rate_per_s": rate} if rate is not None else {}),
                    "segments": [{"width_usd": 50_000, "credit_per_usd": 1, "cost_per_usd": 0}],
                }
            ],
        }
    )


def test_a_clear_full_cover_is_certified_without_a_solve() -> None:
    inp = _problem(10_200, 2_000)  # by 10 s: 10 requests of 2,000 = 20,000
    solver = CoverSolver(ROUTER)
    got = solver.covered(inp, Decimal("10000.004"))
    assert got == [Decimal("10000.00")] * 3
    assert (solver.stats.full, solver.stats.routed) == (3, 0)
    assert CoverSolver(ROUTER, fast=False).covered(inp, Decimal("10000.004")) == got


def test_a_partial_cover_is_routed_and_equals_the_router() -> None:
    inp = _problem(30_000, 1_000)  # 10 requests by 10 s, 60 by 60 s
    solver = CoverSolver(ROUTER)
    got = solver.covered(inp, Decimal("29000"))
    assert got == [Decimal("10000.00"), Decimal("29000.00"), Decimal("29000.00")]
    assert (solver.stats.routed, solver.stats.full) == (1, 2)
    assert time_to_cover(inp, router=ROUTER)[0] == Decimal("10000.00")


def test_no_source_in_time_covers_nothing_without_a_solve() -> None:
    inp = parse_problem(
        {
            "deficit_usd": 5_000,
            "deadline_s": 600,
            "sources": [
                {
                    "id": "onchain",
                    "tier": 3,
                    "latency_s": 1200,
                    "segments": [{"width_usd": 9_000, "credit_per_usd": 1, "cost_per_usd": 0}],
                }
            ],
        }
    )
    solver = CoverSolver(ROUTER)
    assert solver.covered(inp, Decimal("4000")) == [Decimal("0.00")] * 3
    assert (solver.stats.none, solver.stats.routed) == (3, 0)


def test_the_certificate_is_a_feasible_lower_bound_with_a_slack() -> None:
    inp = _problem(30_000, 1_000)
    assert greedy_credit_usd(inp, 10.0) <= 10_000.0
    assert greedy_credit_usd(inp, 10.0) > 10_000.0 - 1e-3
    assert 0.01 < slack_usd(inp, 10.0) < 1.0


@st.composite
def _inputs(draw: st.DrawFn) -> tuple[RoutingInput, Decimal]:
    """One call, 1-5 sources with caps, rates, segments, steps, tickets and shared limits."""
    money = st.floats(1_000, 3_000_000)
    groups = ["g1", "g2"]
    sources = []
    for j in range(draw(st.integers(1, 5))):
        n_seg = draw(st.integers(1, 3))
        credit = sorted((draw(st.floats(0.3, 1.0)) for _ in range(n_seg)), reverse=True)
        cost = sorted(draw(st.floats(0.0, 0.01)) for _ in range(n_seg))
        binary = draw(st.booleans()) and draw(st.booleans())
        sources.append(
            CollateralSource(
                id=f"s{j}",
                tier=draw(st.sampled_from([Tier.IN_PRODUCT, Tier.TRANSFER])),
                latency_s=draw(st.sampled_from([0.5, 1.0, 2.0, 8.0, 30.0, 90.0, 1200.0])),
                segments=tuple(
                    Segment(draw(money), c, k) for c, k in zip(credit, cost, strict=True)
                ),
                rate_per_s=draw(st.one_of(st.none(), st.sampled_from([0.2, 1.0, 2.0]))),
                per_request_usd=draw(st.one_of(st.none(), st.floats(5_000, 1_000_000))),
                preauth_usd=draw(st.one_of(st.none(), money)),
                fixed_fee_usd=1.0 if binary else 0.0,
                min_ticket_usd=draw(st.sampled_from([0.0, 10_000.0])) if binary else 0.0,
                step_usd=draw(st.sampled_from([0.01, 0.095, 1.0])),
                groups=tuple(g for g in groups if draw(st.booleans())),
                origin_pool="o1" if draw(st.booleans()) else None,
                origin_debit_per_usd=draw(st.floats(0.5, 1.0)),
                api_weights=(("v/uid", 900.0),) if draw(st.booleans()) else (),
            )
        )
    deficit = draw(st.floats(1_000, 4_000_000))
    inp = RoutingInput(
        calls=(Deficit("call", deficit, 600.0),),
        sources=tuple(sources),
        policy=draw(st.sampled_from([Policy.STRICT, Policy.COST])),
        shared_limits_usd={g: draw(money) for g in groups},
        origin_headroom_usd={"o1": draw(st.floats(0, 2_000_000))},
        api_weight_budget={"v/uid": draw(st.sampled_from([20_000.0, 1_800_000.0]))},
    )
    # the stress deficit (to target) sits below the router's (to target × (1 + buffer))
    stress_deficit = Decimal(repr(deficit * draw(st.floats(0.9, 1.0)))).quantize(Decimal("1e-8"))
    return inp, stress_deficit


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=_inputs())
def test_random_inputs_give_the_routers_figures(case: tuple[RoutingInput, Decimal]) -> None:
    inp, deficit = case
    fast = CoverSolver(ROUTER).covered(inp, deficit)
    assert fast == CoverSolver(ROUTER, fast=False).covered(inp, deficit)
