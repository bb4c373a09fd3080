"""Legs: sources say through which venue operations they are carried out, and plans book each
leg's asset amount rounded down to the venue's step (``core.routing.legs``)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.config import load_desk
from core.domain import WalletKind as W
from core.errors import DataError
from core.execution.planning import plan_inputs
from core.routing import CollateralSource, Deficit, Router, RoutingInput, Segment, Tier
from core.routing.from_state import usd_step
from core.routing.jsonio import input_to_json, parse_problem, plan_to_json
from core.routing.legs import LegKind, LegTemplate, check_chain, floor_to_step, legs_for
from core.routing.sources import SourceMode

ROOT = Path(__file__).resolve().parents[2]
AT = datetime(2026, 11, 27, tzinfo=UTC)
SAT = Decimal("1e-8")


def _leg(kind: LegKind = LegKind.INTERNAL, **kw: object) -> LegTemplate:
    values: dict[str, object] = {
        "kind": kind, "venue": "sim-a", "from_wallet": W.SPOT, "to_wallet": W.MARGIN,
        "asset": "BTC", "price_usd": Decimal(95000), "asset_step": SAT, "latency_s": 1.0,
        "route_id": "a.spot-margin.btc",
    }  # fmt: skip
    values.update(kw)
    return LegTemplate(**values)  # type: ignore[arg-type]


def test_legs_for_one_transfer_floors_the_asset_amount_and_rederives_usd() -> None:
    # 1,000 USD of BTC at 95,000 is 0.0105263157... BTC: 0.01052631 BTC moves, worth 999.99945
    (leg,), usd = legs_for((_leg(),), Decimal(1000), Decimal(0))
    assert (leg.amount, leg.amount_usd, usd) == (
        Decimal("0.01052631"), Decimal("999.99945"), Decimal("999.99945"),
    )  # fmt: skip
    assert (leg.leg_no, leg.kind, leg.route_id, leg.destination_venue) == (
        0, LegKind.INTERNAL, "a.spot-margin.btc", "sim-a",
    )  # fmt: skip


def test_legs_for_conversion_then_transfer_moves_what_the_conversion_should_deliver() -> None:
    convert = _leg(
        LegKind.CONVERT, from_wallet=W.SPOT, to_wallet=W.SPOT, asset="USDC", to_asset="USDT",
        price_usd=Decimal("0.9998"), route_id="a.spot.usdc-usdt",
    )  # fmt: skip
    transfer = _leg(asset="USDT", price_usd=Decimal(1), route_id="a.spot-margin.usdt")
    legs, usd = legs_for((convert, transfer), Decimal("10000"), Decimal("1.5"))
    # 10,000 / 0.9998 = 10002.00040008... USDC → 10002.00040008 USDC, worth 9999.99999999998
    assert legs[0].amount == Decimal("10002.00040008")
    assert usd == legs[0].amount_usd == Decimal("9999.999999999984")
    # what arrives is valued after the source's whole cost: (usd − 1.5) USDT, floored
    assert (legs[1].asset, legs[1].amount) == ("USDT", Decimal("9998.49999999"))
    assert legs[1].from_wallet == W.SPOT


def test_legs_for_withdrawal_then_transfer_moves_the_same_asset_amount_twice() -> None:
    out = _leg(
        LegKind.WITHDRAWAL, venue="sim-b", to_wallet=W.SPOT, asset="USDT", price_usd=Decimal(1),
        to_venue="sim-a", route_id="ba.onchain.usdt",
    )  # fmt: skip
    inside = _leg(asset="USDT", price_usd=Decimal(1), route_id="a.spot-margin.usdt")
    legs, usd = legs_for((out, inside), Decimal("2500.123456789"), Decimal(1))
    assert [g.amount for g in legs] == [Decimal("2500.12345678")] * 2
    assert [g.destination_venue for g in legs] == ["sim-a", "sim-a"]
    assert usd == Decimal("2500.12345678")


def test_legs_for_amount_below_one_asset_step_gives_no_legs() -> None:
    legs, usd = legs_for((_leg(),), Decimal("0.0009"), Decimal(0))  # 1 sat is 0.00095 USD
    assert (legs, usd) == ((), Decimal(0))


@pytest.mark.parametrize(
    ("amount", "step", "expected"),
    [
        ("0.0123456789", "1e-8", "0.01234567"),
        ("2.99999999999999999", "0.01", "3.00"),  # float noise next to a step is that step
        ("9998.499999999984", "1e-8", "9998.49999999"),  # a real 0.16-step shortfall is not
        ("2.9999999", "0.01", "2.99"),  # real shortfall rounds down
        ("5", "2", "4"),
        ("0", "1e-8", "0"),
    ],
)
def test_floor_to_step_rounds_down_except_float_noise(
    amount: str, step: str, expected: str
) -> None:
    assert floor_to_step(Decimal(amount), Decimal(step)) == Decimal(expected)


@settings(max_examples=200, deadline=None)
@given(
    st.decimals(min_value=Decimal("0.01"), max_value=Decimal("1e9"), places=8),
    st.decimals(min_value=Decimal("0.0001"), max_value=Decimal("1e6"), places=6),
    st.integers(0, 12),
)
def test_first_leg_with_any_amount_is_whole_steps_worth_at_most_the_amount(
    amount_usd: Decimal, price: Decimal, decimals: int
) -> None:
    step = Decimal(1).scaleb(-decimals)
    legs, usd = legs_for((_leg(price_usd=price, asset_step=step),), amount_usd, Decimal(0))
    if not legs:
        assert amount_usd < price * step  # less than one step of the asset
        return
    (leg,) = legs
    assert leg.amount % step == 0
    assert usd == leg.amount_usd == leg.amount * price <= amount_usd
    assert amount_usd - usd < price * step  # rounded down by less than one step


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"kind": LegKind.CONVERT, "to_wallet": W.SPOT}, "needs a to_asset"),
        ({"kind": LegKind.CONVERT, "to_asset": "USDT"}, "stays in one wallet"),
        ({"kind": LegKind.WITHDRAWAL}, "goes to another venue"),
        ({"to_wallet": W.SPOT}, "joins two different wallets"),
        ({"to_venue": "sim-b"}, "use a withdrawal leg"),
        ({"to_asset": "USDT"}, "moves one asset"),
        ({"price_usd": Decimal("0.1234567890123456789")}, "more than 18 decimal places"),
        ({"asset_step": Decimal(0)}, "asset_step must be > 0"),
        ({"asset": "btc"}, "asset code"),
        ({"kind": "teleport"}, "unknown leg kind"),
    ],
)
def test_leg_template_with_impossible_shape_is_refused_naming_why(
    kw: dict[str, object], message: str
) -> None:
    with pytest.raises(DataError, match=message):
        _leg(**kw)


def test_chain_of_legs_that_do_not_join_up_is_refused_naming_the_leg() -> None:
    first = _leg(asset="USDT", price_usd=Decimal(1), to_wallet=W.FUNDING)
    second = _leg(asset="USDT", price_usd=Decimal(1), from_wallet=W.SPOT)
    with pytest.raises(DataError, match="leg 1 does not start where leg 0 ends") as caught:
        check_chain((first, second), where="src")
    assert caught.value.context["field"] == "legs[1]"


def test_source_with_legs_takes_its_venue_and_says_it_is_executable() -> None:
    seg = (Segment(1000.0, 1.0, 0.0),)
    with_legs = CollateralSource("s", Tier.TRANSFER, 1.0, seg, legs=(_leg(),))
    bare = CollateralSource("t", Tier.TRANSFER, 1.0, seg)
    offset = CollateralSource("u", Tier.PNL_OFFSET, 0.0, seg, mode=SourceMode.PNL_OFFSET)
    assert (with_legs.venue, with_legs.executable) == ("sim-a", True)
    assert (bare.executable, offset.executable) == (False, True)


def test_usd_step_is_whole_asset_steps_worth_at_least_a_cent() -> None:
    assert usd_step(Decimal(95000), SAT) == 0.095  # 1e-6 BTC
    assert usd_step(Decimal(1), SAT) == 0.01  # 1e-6 USDT
    assert usd_step(Decimal("0.25"), SAT) == 0.025  # 0.1 DOGE
    assert usd_step(Decimal(95000), Decimal("0.01")) == 950.0  # a coarse venue step stays


def test_desk_sources_carry_legs_for_every_route_and_swap() -> None:
    desk = load_desk(ROOT / "examples" / "desk.toml")
    planned = plan_inputs(
        desk, desk.initial_portfolio(AT), ["sim-a.pm"], deadline_s=60,
        deficit_override_usd={"sim-a.pm": 1e6},
    )  # fmt: skip
    legs = {
        s.id: [(g.kind.value, g.venue, g.from_wallet.value, g.to_wallet.value, g.asset,
                g.to_asset, g.to_venue, g.route_id) for g in s.legs]
        for s in planned.input.sources
    }  # fmt: skip
    assert legs["sim-a.pm:a.margin.doge-usdt"] == [
        ("margin_order", "sim-a", "margin", "margin", "DOGE", "USDT", None, "a.margin.doge-usdt")
    ]
    assert legs["sim-a.pm:a.spot.usdc-usdt+a.spot-margin.usdt"] == [
        ("convert", "sim-a", "spot", "spot", "USDC", "USDT", None, "a.spot.usdc-usdt"),
        ("internal", "sim-a", "spot", "margin", "USDT", None, None, "a.spot-margin.usdt"),
    ]
    assert legs["sim-a.pm:ba.onchain.usdt+a.spot-margin.usdt"] == [
        ("withdrawal", "sim-b", "spot", "spot", "USDT", None, "sim-a", "ba.onchain.usdt"),
        ("internal", "sim-a", "spot", "margin", "USDT", None, None, "a.spot-margin.usdt"),
    ]
    assert all(s.executable for s in planned.input.sources)


def test_desk_plan_steps_are_exact_asset_amounts_at_the_plans_prices() -> None:
    desk = load_desk(ROOT / "examples" / "desk.toml")
    state = desk.initial_portfolio(AT)
    planned = plan_inputs(
        desk, state, ["sim-a.pm", "sim-b.opt"], deadline_s=60,
        deficit_override_usd={"sim-a.pm": 2_345_678.91, "sim-b.opt": 1_234_567.89},
    )  # fmt: skip
    plan = Router().route(planned.input)
    assert plan.executable
    assert plan.allocations
    for a in plan.allocations:
        first = a.legs[0]
        assert first.amount % Decimal("1e-8") == 0
        assert first.amount * first.price_usd == first.amount_usd == a.amount_usd
        assert first.price_usd == state.price(first.asset, where="test").mark
    doge = next(a for a in plan.allocations if a.source == "sim-a.pm:a.margin.doge-usdt")
    assert doge.legs[0].amount == doge.amount_usd / Decimal("0.25")  # whole DOGE steps


def test_problem_json_with_legs_round_trips_and_plans_legs_with_amounts() -> None:
    problem = json.loads((ROOT / "examples" / "route-problem.json").read_text())
    source = problem["sources"][0]
    source["legs"] = [
        {"kind": "internal", "venue": "sim-a", "from_wallet": "spot", "to_wallet": "margin",
         "asset": "ETH", "price_usd": "3200.5", "asset_step": "0.0001", "latency_s": 1,
         "route_id": "a.spot-margin.eth"},
    ]  # fmt: skip
    inp = parse_problem(problem)
    assert inp.sources[0].legs[0].price_usd == Decimal("3200.5")
    assert parse_problem(input_to_json(inp)) == inp
    plan = Router().route(inp)
    out = plan_to_json(plan)
    with_legs = [a for a in out["allocations"] if a["source"] == source["id"]]
    for a in with_legs:
        (leg,) = a["legs"]
        assert Decimal(leg["amount"]) % Decimal("0.0001") == 0
        assert Decimal(leg["amount"]) * Decimal("3200.5") == Decimal(leg["amount_usd"])
    assert out["executable"] is (len(with_legs) == len(out["allocations"]))


def test_problem_json_with_malformed_leg_names_source_and_field() -> None:
    problem = {
        "deficit_usd": 10, "deadline_s": 60,
        "sources": [{"id": "a", "tier": 3, "latency_s": 1,
                     "segments": [{"width_usd": 50, "credit_per_usd": 1, "cost_per_usd": 0}],
                     "legs": [{"kind": "internal", "venue": "sim-a", "from_wallet": "spot",
                               "to_wallet": "margin", "asset": "USDT", "price_usd": 1}]}],
    }  # fmt: skip
    with pytest.raises(DataError, match="missing required field") as caught:
        parse_problem(problem)
    assert caught.value.context["field"] == "asset_step"
    assert "sources[0] (id=a) legs[0]" in str(caught.value.context["source"])


def test_problem_step_that_is_not_whole_asset_steps_is_rounded_down_and_noted() -> None:
    btc = _leg()
    inp = RoutingInput(
        (Deficit("c", 1000.0, 60.0),),
        (CollateralSource("btc", Tier.TRANSFER, 1.0, (Segment(5000.0, 1.0, 0.0),), legs=(btc,)),),
    )
    plan = Router().route(inp)
    (a,) = plan.allocations
    # the 0.01 USD grid asks for 1000.00 USD; 0.01052631 BTC is what moves
    assert a.amount_usd == a.legs[0].amount_usd == Decimal("999.99945")
    assert any("rounded down to 999.99945 USD" in n for n in plan.notes)
    assert plan.calls[0].dust_usd == Decimal("0.00055")  # below the cent: covered


def test_plan_leg_amounts_unchanged_when_source_replaced_without_legs() -> None:
    seg = (Segment(1000.0, 1.0, 0.0),)
    s = CollateralSource(
        "s", Tier.TRANSFER, 1.0, seg, legs=(_leg(asset="USDT", price_usd=Decimal(1)),)
    )
    inp = RoutingInput((Deficit("c", 100.0, 60.0),), (s,))
    bare = replace(inp, sources=(replace(s, legs=()),))
    with_legs, without = Router().route(inp), Router().route(bare)
    assert with_legs.allocations[0].amount_usd == without.allocations[0].amount_usd
    assert (with_legs.executable, without.executable) == (True, False)
