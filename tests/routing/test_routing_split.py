"""A step above its source's per-request cap is one plan step per request.

The pre-authorisation gate checks every leg against the allow-list's ``per_transfer_usd``
(``core.execution.preauth``): a plan must never hold a leg worth more than its source's
per-request cap. ``core.routing.finalise`` cuts such a step into whole asset steps of at most
the cap (``core.routing.legs.request_chunks``), each its own step with its own legs, credit and
cost booked so that the steps add up exactly to the uncut one (``Finisher.book_parts``).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal, localcontext

import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from routing_helpers import legs_over_cap
from sqlmodel import Session

from core.domain import WalletKind as W
from core.errors import DataError
from core.ledger.plans import load_plan, record_margin_call, record_plan
from core.ledger.store import ensure_venue, init_db, make_engine
from core.ledger.tables import MarginCallRow
from core.ledger.vocab import CallStatus, VenueMode
from core.routing import CollateralSource, Deficit, Router, RoutingInput, Segment, Tier
from core.routing.from_state import request_cap_usd, usd_step
from core.routing.jsonio import plan_to_json
from core.routing.legs import LegKind, LegTemplate, floor_to_step, request_chunks
from core.routing.plan import Allocation, Plan
from core.routing.sources import SourceMode

AT = datetime(2026, 11, 27, tzinfo=UTC)
ROUTER = Router()  # one router: the property's examples re-solve one cached problem


def _usdt(**kw: object) -> LegTemplate:
    values: dict[str, object] = {
        "kind": LegKind.INTERNAL, "venue": "sim-a", "from_wallet": W.SPOT,
        "to_wallet": W.MARGIN, "asset": "USDT", "price_usd": Decimal(1),
        "asset_step": Decimal("1e-6"), "latency_s": 1.0, "route_id": "a.spot-margin.usdt",
    }  # fmt: skip
    values.update(kw)
    return LegTemplate(**values)  # type: ignore[arg-type]


def _convert(price: Decimal, step: Decimal) -> LegTemplate:
    return LegTemplate(
        LegKind.CONVERT, "sim-a", W.SPOT, W.SPOT, "USDC", price_usd=price, asset_step=step,
        latency_s=2.0, route_id="a.spot.usdc-usdt", to_asset="USDT",
    )  # fmt: skip


def _wide_sum(values: list[Decimal]) -> Decimal:
    """Sum exactly (booked figures have up to 36 digits; the default context keeps 28)."""
    with localcontext() as ctx:
        ctx.prec = 80
        return sum(values, Decimal(0))


# ------------------------------------------------------------------------- request_chunks


def test_request_chunks_with_remainder_puts_it_last() -> None:
    chunks = request_chunks((_usdt(),), Decimal(2_500_000), Decimal(1_000_000))
    assert chunks == (Decimal(1_000_000), Decimal(1_000_000), Decimal(500_000))


def test_request_chunks_within_the_cap_is_one_request() -> None:
    assert request_chunks((_usdt(),), Decimal(1_000_000), Decimal(1_000_000)) == (
        Decimal(1_000_000),
    )


def test_request_chunks_with_btc_cap_rounds_each_request_down_to_whole_satoshis() -> None:
    btc = _usdt(asset="BTC", price_usd=Decimal(95_000), asset_step=Decimal("1e-8"))
    # 500,000 / 95,000 = 5.263157894... BTC → 5.26315789 BTC = 499,999.99955 USD per request;
    # 12 BTC = 1,140,000 USD: two such requests, then the 1.47368422 BTC left
    chunks = request_chunks((btc,), Decimal(1_140_000), Decimal(500_000))
    assert chunks == (Decimal("499999.99955"), Decimal("499999.99955"), Decimal("140000.0009"))
    assert [c / Decimal(95_000) for c in chunks] == [
        Decimal("5.26315789"), Decimal("5.26315789"), Decimal("1.47368422"),
    ]  # fmt: skip


def test_request_chunks_with_remainder_below_min_ticket_spreads_the_steps() -> None:
    # 2,005,000 at 1,000,000 a request would leave 5,000 last, under a 10,000 minimum
    # withdrawal: three even requests instead (micro-USDT steps, the larger first)
    chunks = request_chunks(
        (_usdt(),), Decimal(2_005_000), Decimal(1_000_000), min_ticket_usd=Decimal(10_000)
    )
    assert chunks == (
        Decimal("668333.333334"), Decimal("668333.333333"), Decimal("668333.333333"),
    )  # fmt: skip
    assert sum(chunks) == Decimal(2_005_000)


def test_request_chunks_with_later_leg_priced_higher_fits_that_leg_under_the_cap() -> None:
    # a problem file may value the same USDT higher on the second leg: 1,000,000 USDT there
    # would be worth 1,250,000, so one request moves at most 800,000 USDT
    chain = (_usdt(), _usdt(from_wallet=W.MARGIN, to_wallet=W.UM, price_usd=Decimal("1.25")))
    chunks = request_chunks(chain, Decimal(2_000_000), Decimal(1_000_000))
    assert chunks == (Decimal(800_000), Decimal(800_000), Decimal(400_000))


def test_request_chunks_with_one_asset_step_above_the_cap_has_no_request() -> None:
    coarse = _usdt(asset="BTC", price_usd=Decimal(95_000), asset_step=Decimal(1))
    assert request_chunks((coarse,), Decimal(190_000), Decimal(50_000)) == ()
    with pytest.raises(DataError, match="without legs"):
        request_chunks((), Decimal(1), Decimal(1))


def test_request_cap_usd_with_desk_step_is_whole_usd_steps() -> None:
    # 500,000 of BTC at 95,000 in steps of 1e-6 BTC (0.095 USD): 5,263,157 steps
    assert request_cap_usd(Decimal(500_000), usd_step(Decimal(95_000), Decimal("1e-8"))) == (
        499_999.915
    )
    assert request_cap_usd(Decimal("0.05"), 0.095) == 0.0


# ------------------------------------------------------------------------- the hand case


def _hand_source(per_request_usd: float | None) -> CollateralSource:
    """USDT spot → margin: 2 M at credit 1 and 1 bp, then 3 M at 0.97 and 3 bp, a 5 USD fee,
    two requests a second after 1 s."""
    return CollateralSource(
        "usdt-spot-margin", Tier.TRANSFER, 1.0,
        (Segment(2_000_000.0, 1.0, 0.0001), Segment(3_000_000.0, 0.97, 0.0003)),
        per_request_usd=per_request_usd, rate_per_s=2.0, fixed_fee_usd=5.0,
        legs=(_usdt(),), venue="sim-a", mode=SourceMode.TRANSFER,
    )  # fmt: skip


def _hand(per_request_usd: float | None) -> Plan:
    # 2,485,000 of credit = 2,000,000 at 1.0 + 500,000 at 0.97: 2,500,000 USD moved
    inp = RoutingInput((Deficit("sim-a.pm", 2_485_000.0, 60.0),), (_hand_source(per_request_usd),))
    return Router().route(inp)


def _figures(a: Allocation) -> tuple[Decimal, Decimal, Decimal, float, int, Decimal]:
    return a.amount_usd, a.credit_usd, a.cost_usd, a.eta_s, a.requests, a.legs[0].amount


def test_step_of_2_5m_with_1m_cap_is_three_steps_with_exact_credit_and_cost() -> None:
    whole = _hand(None)
    assert [_figures(a) for a in whole.allocations] == [
        # cost: 2,000,000 × 0.0001 + 500,000 × 0.0003 + the 5 USD fee
        (Decimal(2_500_000), Decimal(2_485_000), Decimal(355), 1.0, 1, Decimal(2_500_000)),
    ]
    split = _hand(1_000_000.0)
    assert [_figures(a) for a in split.allocations] == [
        # [0, 1 M) on the first segment, and the fee: the first request pays it
        (Decimal(1_000_000), Decimal(1_000_000), Decimal(105), 1.0, 1, Decimal(1_000_000)),
        # [1 M, 2 M): the rest of the first segment, half a second later
        (Decimal(1_000_000), Decimal(1_000_000), Decimal(100), 1.5, 1, Decimal(1_000_000)),
        # [2 M, 2.5 M): the dearer second segment, 500,000 × 0.97 and × 0.0003
        (Decimal(500_000), Decimal(485_000), Decimal(150), 2.0, 1, Decimal(500_000)),
    ]
    assert sum(a.credit_usd for a in split.allocations) == whole.allocations[0].credit_usd
    assert sum(a.cost_usd for a in split.allocations) == whole.allocations[0].cost_usd
    assert (split.cost_usd, split.credit_usd, split.status) == (Decimal(355), 2_485_000, "optimal")
    assert {a.source for a in split.allocations} == {"usdt-spot-margin"}
    assert split.notes == (
        "call sim-a.pm: step usdt-spot-margin of 2500000 USD is 3 requests of at most "
        "1000000 USD each (its per-request cap)",
    )
    out = plan_to_json(split, timings=False)
    assert [(a["amount_usd"], a["requests"], a["eta_s"]) for a in out["allocations"]] == [
        ("1000000.00000000", 1, 1.0), ("1000000.00000000", 1, 1.5), ("500000.00000000", 1, 2.0),
    ]  # fmt: skip


def test_split_plan_is_recorded_and_read_back_unchanged() -> None:
    plan = _hand(1_000_000.0)
    engine = make_engine("sqlite://")
    init_db(engine)
    call = "mc-20261127-000000000-00000000000000a1"
    try:
        with Session(engine) as s:
            ensure_venue(s, "sim-a", exchange="sim", mode=VenueMode.SIM, at=AT)
            record_margin_call(s, MarginCallRow(
                id=call, pool_id="sim-a.pm", venue_id="sim-a", status=CallStatus.OPEN.value,
                raised_at=AT, ratio_at_raise=Decimal("1.18"), target_ratio=Decimal("1.5"),
                deficit_usd=Decimal(2_485_000),
            ))  # fmt: skip
            recorded, created = record_plan(s, call, plan, version=1, at=AT)
            s.commit()
        with Session(engine) as s:
            loaded = load_plan(s, call, 1)
    finally:
        engine.dispose()
    assert created
    assert loaded is not None
    assert loaded.plan.allocations == plan.allocations
    # one idempotency key per request: three transfers, each sent at most once
    assert len({recorded.leg_key(n, 0) for n in range(3)}) == 3


# ------------------------------------------------------------------------- a two-leg chain


def test_chain_of_conversion_then_transfer_splits_both_legs_per_request() -> None:
    # USDC converted to USDT (1 bp) then moved spot → margin; 1,000,000 USD per request
    source = CollateralSource(
        "usdc-usdt-margin", Tier.TRANSFER, 3.0, (Segment(5_000_000.0, 0.9999, 0.0001),),
        per_request_usd=1_000_000.0, rate_per_s=1.0,
        legs=(_convert(Decimal(1), Decimal("1e-6")), _usdt(latency_s=1.0)), venue="sim-a",
        mode=SourceMode.SWAP,
    )  # fmt: skip
    # 2,299,770 of credit at 0.9999: 2,300,000 USDC in, three conversions then three transfers
    inp = RoutingInput((Deficit("sim-a.pm", 2_299_770.0, 60.0),), (source,))
    plan = Router().route(inp)
    legs = [(a.amount_usd, a.credit_usd, a.cost_usd, a.eta_s,
             [(g.kind.value, g.asset, g.amount) for g in a.legs])
            for a in plan.allocations]  # fmt: skip
    # each transfer moves what its conversion delivers: the USDC in less its 1 bp
    assert legs == [
        (1_000_000, 999_900, 100, 3.0,
         [("convert", "USDC", 1_000_000), ("internal", "USDT", 999_900)]),
        (1_000_000, 999_900, 100, 4.0,
         [("convert", "USDC", 1_000_000), ("internal", "USDT", 999_900)]),
        (300_000, 299_970, 30, 5.0,
         [("convert", "USDC", 300_000), ("internal", "USDT", 299_970)]),
    ]  # fmt: skip
    assert legs_over_cap(plan, inp) == []
    whole = Router().route(replace(inp, sources=(replace(source, per_request_usd=None),)))
    (one,) = whole.allocations
    assert _wide_sum([a.credit_usd for a in plan.allocations]) == one.credit_usd
    assert _wide_sum([a.cost_usd for a in plan.allocations]) == one.cost_usd
    assert sum(a.legs[0].amount for a in plan.allocations) == one.legs[0].amount


# ------------------------------------------------------------------------- the property

_PRICES = st.decimals(min_value=Decimal("0.01"), max_value=Decimal(150_000), places=4)
_STEPS = st.sampled_from([Decimal("1e-8"), Decimal("1e-6"), Decimal("0.001"), Decimal("0.1")])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    price=_PRICES,
    step=_STEPS,
    deficit=st.floats(1_000, 40_000_000),
    cap_frac=st.floats(0.01, 1.5),
    credit=st.floats(0.8, 1.0),
    cost_bp=st.integers(0, 50),
    fee=st.sampled_from([0.0, 2.5]),
    min_frac=st.sampled_from([0.0, 0.1, 0.45]),
    chain=st.booleans(),
)
def test_any_split_keeps_legs_under_the_cap_and_adds_up_exactly(
    price: Decimal,
    step: Decimal,
    deficit: float,
    cap_frac: float,
    credit: float,
    cost_bp: int,
    fee: float,
    min_frac: float,
    chain: bool,
) -> None:
    unit = price * step
    cap = deficit * cap_frac
    # a request carries more than a few steps; 591 requests in 60 s (10 a second) carry every
    # segment, so the cap does not change what the router takes, only how it is sent
    assume(Decimal(repr(cap)) >= 2 * unit * 10)
    first = _convert(price, step) if chain else _usdt(asset="BTC", price_usd=price, asset_step=step)
    legs = (first, _usdt(price_usd=Decimal("0.9997"))) if chain else (first,)
    segments = (
        Segment(deficit * 0.7, credit, cost_bp / 1e4),
        Segment(deficit * 2.0, credit * 0.9, cost_bp / 1e4 + 0.0002),
    )
    source = CollateralSource(
        "src", Tier.TRANSFER, 1.0, segments, per_request_usd=cap, rate_per_s=10.0,
        fixed_fee_usd=fee, min_ticket_usd=cap * min_frac, legs=legs, venue="sim-a",
        mode=SourceMode.SWAP if chain else SourceMode.TRANSFER, step_usd=usd_step(price, step),
    )  # fmt: skip
    inp = RoutingInput((Deficit("c", deficit, 60.0),), (source,))
    split = ROUTER.route(inp)
    whole = ROUTER.route(replace(inp, sources=(replace(source, per_request_usd=None),)))
    if not whole.allocations:
        assert not split.allocations
        return
    (one,) = whole.allocations
    event(f"steps={min(len(split.allocations), 4)} chain={chain}")
    assert legs_over_cap(split, inp) == []
    assert all(a.requests == 1 for a in split.allocations) or len(split.allocations) == 1
    # the steps move the uncut step's asset amount, and book its credit and cost exactly
    assert sum(a.legs[0].amount for a in split.allocations) == one.legs[0].amount
    assert _wide_sum([a.credit_usd for a in split.allocations]) == one.credit_usd
    assert _wide_sum([a.cost_usd for a in split.allocations]) == one.cost_usd
    assert (split.credit_usd, split.cost_usd) == (whole.credit_usd, whole.cost_usd)
    # each step is whole asset steps, its leg 0 its amount, and ETAs one request apart
    for k, a in enumerate(split.allocations):
        assert a.legs[0].amount == floor_to_step(a.legs[0].amount, step)
        assert a.amount_usd == a.legs[0].amount_usd
        assert a.eta_s == source.request_eta_s(k + 1)
    # a last request below the minimum ticket is avoided when half a request clears it
    most = int(Decimal(repr(cap)) / unit)
    if len(split.allocations) > 1 and (most // 2) * unit >= Decimal(repr(cap * min_frac)):
        assert all(a.amount_usd >= Decimal(repr(cap * min_frac)) for a in split.allocations)
