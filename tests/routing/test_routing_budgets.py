"""API-weight budgets in the rate limiter's units: a transfer weighs 900 of Binance's UID budget
of 180,000 a minute, not 1 request of the simulator's 6,000 IP weight (``core.routing.budgets``)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from core.clock import ManualClock
from core.config import load_desk
from core.execution.planning import plan_inputs
from core.routing import CollateralSource, Deficit, Router, RoutingInput, Segment, Tier
from core.routing.budgets import (
    BINANCE_LEG_ENDPOINTS,
    exchange_weight_limits,
    leg_budget,
    weight_budgets,
)
from core.routing.legs import LegKind
from core.venues.ratelimit import WeightLimiter, request_weight

ROOT = Path(__file__).resolve().parents[2]
AT = datetime(2026, 11, 27, tzinfo=UTC)


@pytest.mark.parametrize(
    ("kind", "pm", "budget"),
    [
        (LegKind.INTERNAL, False, "v/sapi-uid"),
        (LegKind.CONVERT, False, "v/sapi-uid"),
        (LegKind.WITHDRAWAL, True, "v/sapi-uid"),
        (LegKind.MARGIN_ORDER, True, "v/papi"),  # Portfolio Margin: POST /papi/v1/margin/order
        (LegKind.MARGIN_ORDER, False, "v/sapi-uid"),  # POST /sapi/v1/margin/order, UID-weighted
        (LegKind.SUB_ACCOUNT, False, "v/sapi"),
    ],
)
def test_leg_budget_is_the_limiters_family_for_the_legs_request(
    kind: LegKind, pm: bool, budget: str
) -> None:
    assert leg_budget(kind, "v", portfolio_margin=pm) == budget


def test_desk_route_weights_are_the_venues_own_weights_for_those_requests() -> None:
    """The desk's api_weight of a transfer route is the limiter's weight of its request."""
    desk = load_desk(ROOT / "examples" / "desk.toml")
    internal = BINANCE_LEG_ENDPOINTS[(LegKind.INTERNAL, True)]
    assert {r.api_weight for r in desk.routes if r.kind == "internal"} == {
        request_weight(*internal)
    }
    doge = next(s for s in desk.swaps if s.id == "a.margin.doge-usdt")
    assert doge.api_weight == request_weight(*BINANCE_LEG_ENDPOINTS[(LegKind.MARGIN_ORDER, True)])


@pytest.mark.parametrize(("deadline_s", "minutes"), [(1, 1), (60, 1), (61, 2), (600, 10)])
def test_weight_budget_is_the_limit_once_per_started_minute(
    deadline_s: float, minutes: int
) -> None:
    budgets = weight_budgets({"v": {"sapi-uid": 180_000, "papi": 6_000}}, deadline_s=deadline_s)
    assert budgets == {"v/papi": 6_000.0 * minutes, "v/sapi-uid": 180_000.0 * minutes}


def test_desk_budgets_are_the_exchanges_published_limits_not_the_sim_setting() -> None:
    desk = load_desk(ROOT / "examples" / "desk.toml")
    assert {v.sim.weight_limit_per_min for v in desk.venues} == {6000}  # the IP setting
    planned = plan_inputs(
        desk, desk.initial_portfolio(AT), ["sim-a.pm", "sim-b.opt"], deadline_s=60,
        deficit_override_usd={"sim-a.pm": 1e6, "sim-b.opt": 1e6},
    )  # fmt: skip
    assert dict(planned.input.api_weight_budget) == {
        "sim-a/papi": 6_000.0,
        "sim-a/sapi-uid": 180_000.0,
        "sim-b/sapi-uid": 180_000.0,
    }
    weights = {s.id: s.api_weights for s in planned.input.sources}
    assert weights["sim-a.pm:a.spot-margin.usdt"] == (("sim-a/sapi-uid", 900.0),)
    assert weights["sim-a.pm:a.margin.doge-usdt"] == (("sim-a/papi", 1.0),)
    # a chain spends on every venue it touches: the withdrawal on sim-a, the transfer on sim-b
    assert weights["sim-b.opt:ab.onchain.usdt+b.spot-options.usdt"] == (
        ("sim-a/sapi-uid", 600.0),
        ("sim-b/sapi-uid", 900.0),
    )
    # Convert (getQuote 200 + acceptQuote 500) then a transfer (900), both UID-weighted
    assert weights["sim-a.pm:a.spot.usdc-usdt+a.spot-margin.usdt"] == (("sim-a/sapi-uid", 1600.0),)


def test_desk_budgets_with_a_connected_venues_limits_use_those() -> None:
    desk = load_desk(ROOT / "examples" / "desk.toml")
    planned = plan_inputs(
        desk, desk.initial_portfolio(AT), ["sim-b.um"], deadline_s=120,
        deficit_override_usd={"sim-b.um": 1e6},
        weight_limits_per_min={"sim-b": {"sapi-uid": 90_000}},
    )  # fmt: skip
    assert dict(planned.input.api_weight_budget) == {
        "sim-a/sapi-uid": 360_000.0,  # exchange default, two minutes
        "sim-b/sapi-uid": 180_000.0,  # the venue's own, two minutes
    }
    assert exchange_weight_limits("binance")["sapi-uid"] == 180_000


def _transfers(budget: float) -> RoutingInput:
    """5,000,000 USD to move in 100,000 USD transfers (q), each weighing 900 UID weight."""
    source = CollateralSource(
        "spot-um", Tier.TRANSFER, 1.0, (Segment(10_000_000.0, 1.0, 0.0),),
        per_request_usd=100_000.0, api_weights=(("v/sapi-uid", 900.0),),
    )  # fmt: skip
    return RoutingInput(
        (Deficit("c", 5_000_000.0, 60.0),), (source,), api_weight_budget={"v/sapi-uid": budget}
    )


def test_budget_in_the_limiters_units_lets_fifty_transfers_through_where_sim_ip_allowed_six() -> (
    None
):
    covered = Router().route(_transfers(180_000.0))
    assert (covered.status, covered.allocations[0].requests) == ("optimal", 50)
    capped = Router().route(_transfers(6_000.0))  # the old budget: the sim's IP weight per minute
    assert capped.status == "partial"
    # requests are relaxed to X / q: 6,000 / 900 × 100,000 USD = 666,666.67, down to the cent
    assert capped.credit_usd == Decimal("666666.66")
    # ... and the limiter, with the same limit, lets the planned 50 transfers through at once
    limiter = WeightLimiter(ManualClock(), {"sapi-uid": 180_000})
    assert sum(limiter.acquire("sapi-uid", 900) for _ in range(50)) == 0.0


def test_every_leg_kind_has_its_binance_endpoint_in_the_capabilities() -> None:
    # the table is Binance knowledge kept with the venue's capabilities, keyed by plain values
    for kind in LegKind:
        for pm in (False, True):
            method, path = BINANCE_LEG_ENDPOINTS[(kind.value, pm)]
            assert method == "POST"
            assert path.startswith(("/sapi/", "/papi/"))
