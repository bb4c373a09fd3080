"""The pre-authorisation gate on the example desk: each refusal reason with its figures, the
rolling window's edge, which legs count, and a property that no sequence of legs gets past a cap.

Caps used below (examples/desk.toml): ``a.spot-margin.usdt`` 1,000,000 per transfer and
5,000,000 per 24 h, group ``sim-a-hot`` (usdt, usdc, btc routes) 6,000,000, venue ``sim-a``
8,000,000, ``sim-b`` 6,000,000; the cold route ``ba.onchain.usdt`` 2,000,000 per 24 h with a
cold quota of 1,000,000 per day.
"""

from __future__ import annotations

import copy
import doctest
import importlib
import itertools
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine
from sqlmodel import Session

import core.execution.preauth
from core.config import DeskConfig, load_desk, parse_desk
from core.domain import Asset
from core.errors import DataError
from core.execution.preauth import REFUSAL_REASONS, Refusal, authorise
from core.ledger.preauth_usage import preauth_usage
from core.ledger.store import ensure_venue, init_db, make_engine
from core.ledger.transfers import (
    TransferIntent,
    record_refused_leg,
    record_transfer_intent,
    record_transfer_result,
)
from core.ledger.vocab import TransferMode, TransferState, VenueMode
from core.routing.legs import Leg, LegKind

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "desk.toml"
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
PRICES = {"USDT": Decimal(1), "USDC": Decimal(1), "BTC": Decimal(95_000), "DOGE": Decimal("0.4")}
_keys = itertools.count()


@pytest.fixture(scope="module")
def desk() -> DeskConfig:
    return load_desk(EXAMPLE)


@pytest.fixture(scope="module")
def example_data() -> dict[str, Any]:
    return tomllib.loads(EXAMPLE.read_text())


def _with_venues(session: Session) -> Session:
    for v in ("sim-a", "sim-b"):
        ensure_venue(session, v, exchange="sim", mode=VenueMode.SIM, at=NOW - timedelta(days=3))
    return session


@pytest.fixture
def session() -> Iterator[Session]:
    """A fresh in-memory SQLite store at head with the example desk's venues."""
    engine = make_engine("sqlite://")
    init_db(engine)
    with Session(engine) as s:
        yield _with_venues(s)
    engine.dispose()


def leg_on(desk: DeskConfig, on: str, usd: Decimal | int | str, **change: Any) -> Leg:
    """A leg that matches route or swap ``on`` exactly, worth ``usd`` (``change``: fields
    to make it differ)."""
    usd = Decimal(usd)
    route, swap = desk.route(on), desk.swap(on)
    if route is not None:
        kind, venue, frm, to, asset = (
            LegKind.of_route(route.kind), route.venue, route.from_wallet, route.to_wallet,
            route.asset,
        )  # fmt: skip
        to_venue = route.to_venue if route.kind == "onchain" else None
        to_asset = None
    else:
        assert swap is not None
        kind, venue, frm, to, asset = (
            LegKind(swap.method.value),
            swap.venue,
            swap.wallet,
            swap.wallet,
            swap.from_asset,
        )
        to_venue, to_asset = None, swap.to_asset
    fields: dict[str, Any] = {
        "leg_no": 0, "kind": kind, "venue": venue, "from_wallet": frm, "to_wallet": to,
        "asset": asset, "amount": usd / PRICES[asset], "amount_usd": usd,
        "price_usd": PRICES[asset], "latency_s": 1.0, "route_id": on, "to_venue": to_venue,
        "to_asset": to_asset,
    }  # fmt: skip
    fields.update(change)
    return Leg(**fields)


def record(
    session: Session,
    leg: Leg,
    *,
    at: datetime,
    state: TransferState = TransferState.CONFIRMED,
    key: str | None = None,
) -> str:
    """Book ``leg`` in the store as a movement in ``state`` recorded at ``at``; return its key."""
    key = key or f"test-leg-{next(_keys)}"
    mode = {
        LegKind.INTERNAL: TransferMode.TRANSFER,
        LegKind.WITHDRAWAL: TransferMode.WITHDRAWAL,
    }.get(leg.kind, TransferMode.SWAP)
    intent = TransferIntent(
        key=key, mode=mode, venue_id=leg.venue, from_wallet=leg.from_wallet,
        to_wallet=leg.to_wallet, asset=Asset(leg.asset), amount=leg.amount,
        to_venue_id=leg.to_venue, to_asset=None if leg.to_asset is None else Asset(leg.to_asset),
        amount_usd=leg.amount_usd, route_id=leg.route_id,
    )  # fmt: skip
    if state is TransferState.REFUSED:
        record_refused_leg(session, intent, at=at, reason="route_24h_cap")
        return key
    record_transfer_intent(session, intent, at=at)
    if state is not TransferState.PENDING:
        record_transfer_result(session, key, state, at=at, sent_at=at)
    return key


def used(session: Session, desk: DeskConfig, route_id: str, usd: int, n: int = 1) -> None:
    """``n`` confirmed legs of ``usd`` each on ``route_id``, an hour ago."""
    for _ in range(n):
        record(session, leg_on(desk, route_id, usd), at=NOW - timedelta(hours=1))


# ---------------------------------------------------------------------------- allowed


def test_authorise_with_matching_leg_under_every_cap_allows_it(
    session: Session, desk: DeskConfig
) -> None:
    for route_id in ("a.spot-margin.usdt", "a.margin.doge-usdt", "ab.onchain.usdt"):
        assert authorise(session, desk, leg_on(desk, route_id, 100_000), now=NOW) is None


def test_authorise_with_leg_reaching_a_cap_exactly_allows_it(
    session: Session, desk: DeskConfig
) -> None:
    used(session, desk, "a.spot-margin.usdt", 900_000, n=4)  # 3.6M of 5M
    used(session, desk, "a.spot-margin.usdt", 400_000)  # 4.0M
    leg = leg_on(desk, "a.spot-margin.usdt", 1_000_000)  # = per-transfer cap, = 5M rolling
    assert authorise(session, desk, leg, now=NOW) is None


# ---------------------------------------------------------------------------- each reason


def test_authorise_with_undeclared_route_refuses_route_missing(
    session: Session, desk: DeskConfig
) -> None:
    leg = leg_on(desk, "a.spot-margin.usdt", 1000, route_id="a.spot-margin.xrp")
    assert authorise(session, desk, leg, now=NOW) == Refusal(
        "route_missing", "route or swap 'a.spot-margin.xrp' is not declared in the desk any more"
    )
    no_route = leg_on(desk, "a.spot-margin.usdt", 1000, route_id=None)
    refusal = authorise(session, desk, no_route, now=NOW)
    assert refusal == Refusal("route_missing", "leg 0 on sim-a names no route or swap")


def test_authorise_with_route_removed_from_config_refuses_route_missing(
    session: Session, example_data: dict[str, Any]
) -> None:
    data = copy.deepcopy(example_data)
    data["routes"] = [r for r in data["routes"] if r["id"] != "b.um-options.usdt"]
    data["preauth"] = [p for p in data["preauth"] if p["route"] != "b.um-options.usdt"]
    old = load_desk(EXAMPLE)
    leg = leg_on(old, "b.um-options.usdt", 10_000)
    refusal = authorise(session, parse_desk(data), leg, now=NOW)
    assert refusal is not None
    assert refusal.reason == "route_missing"


@pytest.mark.parametrize(
    ("route_id", "change", "detail"),
    [
        ("a.spot-margin.usdt", {"asset": "USDC"}, "asset USDC (route: USDT)"),
        (
            "a.spot-margin.usdt",
            {"venue": "sim-b"},
            "venue sim-b (route: sim-a), to_venue sim-b (route: sim-a)",
        ),
        ("a.spot-margin.usdt", {"from_wallet": "funding"}, "from_wallet funding (route: spot)"),
        ("ab.onchain.usdt", {"to_venue": "sim-c"}, "to_venue sim-c (route: sim-b)"),
        ("a.margin.doge-usdt", {"to_asset": "USDC"}, "to_asset USDC (swap: USDT)"),
        ("a.margin.doge-usdt", {"kind": LegKind.CONVERT}, "kind convert (swap: margin_order)"),
    ],
)
def test_authorise_with_leg_unlike_its_route_refuses_asset_or_wallet_mismatch(
    session: Session, desk: DeskConfig, route_id: str, change: dict[str, Any], detail: str
) -> None:
    from core.domain import WalletKind

    if "from_wallet" in change:
        change["from_wallet"] = WalletKind(change["from_wallet"])
    refusal = authorise(session, desk, leg_on(desk, route_id, 1000, **change), now=NOW)
    assert refusal is not None
    assert refusal.reason == "asset_or_wallet_mismatch"
    what = "swap" if desk.swap(route_id) is not None else "route"
    assert refusal.detail == f"leg does not match {what} {route_id}: {detail}"


def test_authorise_with_route_without_preauth_entry_refuses_not_allow_listed(
    session: Session, example_data: dict[str, Any]
) -> None:
    data = copy.deepcopy(example_data)
    data["preauth"] = [p for p in data["preauth"] if p["route"] != "b.spot-um.usdt"]
    desk = parse_desk(data)
    refusal = authorise(session, desk, leg_on(desk, "b.spot-um.usdt", 5), now=NOW)
    assert refusal == Refusal("not_allow_listed", "b.spot-um.usdt has no [[preauth]] entry")


def test_authorise_with_leg_over_per_transfer_cap_refuses_with_figures(
    session: Session, desk: DeskConfig
) -> None:
    leg = leg_on(desk, "a.spot-margin.usdt", "1000000.01")
    assert authorise(session, desk, leg, now=NOW) == Refusal(
        "per_transfer_cap",
        "leg 1,000,000.01 USD over per-transfer cap 1,000,000.00 USD on route a.spot-margin.usdt",
    )


def test_authorise_with_route_used_near_its_cap_refuses_route_24h_cap(
    session: Session, desk: DeskConfig
) -> None:
    used(session, desk, "a.spot-margin.usdt", 900_000, n=5)  # 4.5M of 5M
    refusal = authorise(session, desk, leg_on(desk, "a.spot-margin.usdt", 600_000), now=NOW)
    assert refusal == Refusal(
        "route_24h_cap",
        "leg 600,000.00 USD with 4,500,000.00 USD used in the last 24 h makes 5,100,000.00 USD, "
        "over the rolling 24 h cap 5,000,000.00 USD on route a.spot-margin.usdt",
    )
    assert authorise(session, desk, leg_on(desk, "a.spot-margin.usdt", 500_000), now=NOW) is None


def test_authorise_with_venue_used_near_its_cap_refuses_venue_24h_cap(
    session: Session, desk: DeskConfig
) -> None:
    used(session, desk, "a.funding-margin.usdt", 500_000, n=2)  # 1.0M
    used(session, desk, "ab.onchain.usdt", 2_000_000)  # 3.0M
    used(session, desk, "a.spot-margin.usdt", 900_000, n=5)  # 7.5M on sim-a; group 4.5M
    used(session, desk, "a.margin.doge-usdt", 1_000_000)  # a swap: not a venue movement
    leg = leg_on(desk, "a.spot-margin.usdc", 600_000)
    refusal = authorise(session, desk, leg, now=NOW)
    assert refusal == Refusal(
        "venue_24h_cap",
        "leg 600,000.00 USD with 7,500,000.00 USD used in the last 24 h makes 8,100,000.00 USD, "
        "over the rolling 24 h cap 8,000,000.00 USD of venue sim-a",
    )
    usage = preauth_usage(session, since=NOW - timedelta(hours=24))
    assert usage.venue_usd("sim-a") == Decimal(7_500_000)
    assert usage.route_usd("a.margin.doge-usdt") == Decimal(1_000_000)
    # the swap is under its own caps and not subject to the venue's
    assert authorise(session, desk, leg_on(desk, "a.margin.doge-usdt", 900_000), now=NOW) is None


def test_authorise_with_group_used_near_its_cap_refuses_group_24h_cap(
    session: Session, desk: DeskConfig
) -> None:
    used(session, desk, "a.spot-margin.usdt", 900_000, n=5)  # 4.5M
    used(session, desk, "a.spot-margin.btc", 475_000, n=3)  # 5.925M in sim-a-hot
    refusal = authorise(session, desk, leg_on(desk, "a.spot-margin.usdc", 100_000), now=NOW)
    assert refusal == Refusal(
        "group_24h_cap",
        "leg 100,000.00 USD with 5,925,000.00 USD used in the last 24 h makes 6,025,000.00 USD, "
        "over the rolling 24 h cap 6,000,000.00 USD of group sim-a-hot",
    )
    # outside the group, the same venue still has room
    assert authorise(session, desk, leg_on(desk, "a.funding-margin.usdt", 100_000), now=NOW) is None


def test_authorise_with_cold_route_past_its_quota_refuses_cold_quota(
    session: Session, desk: DeskConfig
) -> None:
    used(session, desk, "ba.onchain.usdt", 900_000)  # of a 1M cold quota (2M rolling cap)
    refusal = authorise(session, desk, leg_on(desk, "ba.onchain.usdt", 200_000), now=NOW)
    assert refusal == Refusal(
        "cold_quota",
        "leg 200,000.00 USD with 900,000.00 USD used in the last 24 h makes 1,100,000.00 USD, "
        "over the cold-wallet quota 1,000,000.00 USD per day on route ba.onchain.usdt",
    )
    assert authorise(session, desk, leg_on(desk, "ba.onchain.usdt", 100_000), now=NOW) is None
    # the hot on-chain route the other way has no quota: 1.5M passes its 2M caps
    assert authorise(session, desk, leg_on(desk, "ab.onchain.usdt", 1_500_000), now=NOW) is None


def test_authorise_with_address_off_the_allow_list_refuses_address_not_allowed(
    session: Session, desk: DeskConfig
) -> None:
    # A desk edited in memory (model_copy skips validation): the address is gone.
    emptied = desk.model_copy(update={"withdraw_addresses": ()})
    refusal = authorise(session, emptied, leg_on(desk, "ab.onchain.usdt", 10_000), now=NOW)
    assert refusal == Refusal(
        "address_not_allowed",
        "route ab.onchain.usdt names address 'sim-b.usdt.trx', which is not in "
        "[[withdraw_addresses]]",
    )
    moved = desk.withdraw_addresses[0].model_copy(update={"venue": "sim-a"})
    elsewhere = desk.model_copy(
        update={"withdraw_addresses": (moved, *desk.withdraw_addresses[1:])}
    )
    refusal = authorise(session, elsewhere, leg_on(desk, "ab.onchain.usdt", 10_000), now=NOW)
    assert refusal == Refusal(
        "address_not_allowed",
        "address 'sim-b.usdt.trx' receives USDT on sim-a; route ab.onchain.usdt sends USDT to "
        "sim-b",
    )


def test_authorise_checks_in_the_documented_order(session: Session, desk: DeskConfig) -> None:
    """Over the per-transfer cap *and* off its route: the mismatch is reported first."""
    leg = leg_on(desk, "a.spot-margin.usdt", 2_000_000, asset="USDC")
    refusal = authorise(session, desk, leg, now=NOW)
    assert refusal is not None
    assert refusal.reason == "asset_or_wallet_mismatch"
    assert REFUSAL_REASONS.index("asset_or_wallet_mismatch") < REFUSAL_REASONS.index(
        "per_transfer_cap"
    )


# ---------------------------------------------------------------------------- usage


def test_authorise_with_leg_24h_and_1s_old_no_longer_counts_it(
    session: Session, desk: DeskConfig
) -> None:
    route = "a.spot-margin.usdt"
    for _ in range(4):
        record(session, leg_on(desk, route, 1_000_000), at=NOW - timedelta(hours=2))
    record(session, leg_on(desk, route, 500_000), at=NOW - timedelta(hours=24))
    record(session, leg_on(desk, route, 900_000), at=NOW - timedelta(hours=24, seconds=1))
    leg = leg_on(desk, route, 600_000)
    # 4.0M + 0.5M (exactly 24 h old: still in the window) + 0.6M = 5.1M > 5M
    refusal = authorise(session, desk, leg, now=NOW)
    assert refusal is not None
    assert refusal.reason == "route_24h_cap"
    assert "with 4,500,000.00 USD used" in refusal.detail
    # one second later the 0.5M leg has left the window too
    assert authorise(session, desk, leg, now=NOW + timedelta(seconds=1)) is None


@pytest.mark.parametrize(
    ("state", "counted"),
    [
        (TransferState.PENDING, True),
        (TransferState.SENT, True),
        (TransferState.UNKNOWN, True),
        (TransferState.CONFIRMED, True),
        (TransferState.FAILED, False),
        (TransferState.REFUSED, False),
    ],
)
def test_authorise_counts_only_legs_that_may_have_moved(
    session: Session, desk: DeskConfig, state: TransferState, counted: bool
) -> None:
    route = "b.um-options.usdt"  # 500,000 per transfer, 1,000,000 per 24 h
    record(session, leg_on(desk, route, 500_000), at=NOW - timedelta(hours=1))
    record(session, leg_on(desk, route, 400_000), at=NOW - timedelta(hours=1), state=state)
    refusal = authorise(session, desk, leg_on(desk, route, 200_000), now=NOW)
    assert (refusal is not None) is counted
    if refusal is not None:
        assert refusal.reason == "route_24h_cap"


def test_authorise_with_own_intent_row_excluded_does_not_count_itself(
    session: Session, desk: DeskConfig
) -> None:
    route = "b.um-options.usdt"
    used(session, desk, route, 500_000)
    leg = leg_on(desk, route, 500_000)
    key = record(session, leg, at=NOW, state=TransferState.PENDING)
    assert authorise(session, desk, leg, now=NOW, exclude_key=key) is None
    refusal = authorise(session, desk, leg, now=NOW)  # counting itself: 1.5M
    assert refusal is not None
    assert refusal.reason == "route_24h_cap"


def test_authorise_with_bad_input_raises_naming_it(session: Session, desk: DeskConfig) -> None:
    with pytest.raises(DataError, match="timezone"):
        authorise(
            session, desk, leg_on(desk, "a.spot-margin.usdt", 5), now=NOW.replace(tzinfo=None)
        )
    zero = leg_on(desk, "a.spot-margin.usdt", 5, amount_usd=Decimal(0))
    with pytest.raises(DataError, match="amount_usd must be a positive Decimal"):
        authorise(session, desk, zero, now=NOW)
    with pytest.raises(DataError, match="unknown refusal reason"):
        Refusal("too_big", "no")


def test_preauth_modules_doctests_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    # core.ledger re-exports the function preauth_usage, which shadows the module's name there
    usage_module = importlib.import_module("core.ledger.preauth_usage")
    for module in (core.execution.preauth, usage_module):
        result = doctest.testmod(module)
        assert result.attempted > 0, module.__name__
        assert result.failed == 0, module.__name__


# ---------------------------------------------------------------------------- property


_ROUTES = ("a.spot-margin.usdt", "a.spot-margin.usdc", "a.funding-margin.usdt",
           "ab.onchain.usdt", "ba.onchain.usdt", "b.um-options.usdt", "a.margin.doge-usdt")  # fmt: skip
_FINAL = (TransferState.CONFIRMED, TransferState.SENT, TransferState.FAILED, TransferState.UNKNOWN)


def _window_sums(
    desk: DeskConfig, booked: list[tuple[datetime, Leg]], at: datetime
) -> dict[str, Decimal]:
    sums: dict[str, Decimal] = {}
    for when, leg in booked:
        if when < at - timedelta(hours=24):
            continue
        assert leg.route_id is not None
        scopes = [f"route:{leg.route_id}"]
        route = desk.route(leg.route_id)
        if route is not None:
            scopes.append(f"venue:{route.venue}")
        entry = desk.preauth_for(leg.route_id)
        if entry is not None and entry.group is not None:
            scopes.append(f"group:{entry.group}")
        for scope in scopes:
            sums[scope] = sums.get(scope, Decimal(0)) + leg.amount_usd
    return sums


def _caps(desk: DeskConfig) -> dict[str, Decimal]:
    caps = {f"route:{p.route}": p.rolling_24h_usd for p in desk.preauth}
    caps |= {f"venue:{v}": c for v, c in desk.preauth_venues.items()}
    caps |= {f"group:{g}": c for g, c in desk.preauth_groups.items()}
    for r in desk.routes:
        if r.cold and r.cold_quota_usd_per_day is not None:
            caps[f"route:{r.id}"] = min(caps[f"route:{r.id}"], r.cold_quota_usd_per_day)
    return caps


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.sampled_from(_ROUTES),
            st.integers(min_value=1, max_value=2_200),  # thousands of USD
            st.integers(min_value=0, max_value=8 * 60),  # minutes since the previous leg
            st.sampled_from(_FINAL),
        ),
        min_size=1,
        max_size=40,
    )
)
def test_authorise_over_any_sequence_of_legs_never_lets_a_window_pass_a_cap(
    steps: list[tuple[str, int, int, TransferState]],
) -> None:
    desk = load_desk(EXAMPLE)
    caps = _caps(desk)
    engine = make_engine("sqlite://")
    init_db(engine)
    booked: list[tuple[datetime, Leg]] = []  # allowed legs that may have moved
    at = NOW
    with Session(engine) as session:
        _with_venues(session)
        for route_id, thousands, gap_min, outcome in steps:
            at += timedelta(minutes=gap_min)
            leg = leg_on(desk, route_id, thousands * 1000)
            refusal = authorise(session, desk, leg, now=at)
            if refusal is not None:
                record(session, leg, at=at, state=TransferState.REFUSED)
                continue
            assert leg.amount_usd <= desk.preauth_for(route_id).per_transfer_usd  # type: ignore[union-attr]
            record(session, leg, at=at, state=outcome)
            if outcome.may_have_moved:
                booked.append((at, leg))
            for scope, total in _window_sums(desk, booked, at).items():
                assert total <= caps[scope], (scope, total, at)
    engine.dispose()


# ---------------------------------------------------------------------------- both stores


def test_authorise_on_sqlite_and_postgresql_reads_window_states_and_own_row_alike(
    store: Engine, desk: DeskConfig
) -> None:
    """The gate on both stores (SQLite, and PostgreSQL when PMR_TEST_POSTGRES_URL is set):
    the window edge, the state filter and the own-row exclusion read the same on both."""
    with Session(store) as session:
        _with_venues(session)
        route = "b.spot-um.usdt"  # 1,000,000 per transfer, 4,000,000 per 24 h, sim-b 6,000,000
        for _ in range(3):
            record(session, leg_on(desk, route, 1_000_000), at=NOW - timedelta(hours=24))
        record(session, leg_on(desk, route, 1_000_000), at=NOW - timedelta(hours=24, seconds=1))
        record(session, leg_on(desk, route, 900_000), at=NOW, state=TransferState.FAILED)
        leg = leg_on(desk, route, 1_000_000)
        own = record(session, leg, at=NOW, state=TransferState.PENDING)
        session.commit()
        assert authorise(session, desk, leg, now=NOW, exclude_key=own) is None  # 3M + 1M = 4M
        refusal = authorise(session, desk, leg, now=NOW)  # its own row counted: 5M
        assert refusal is not None
        assert "with 4,000,000.00 USD used" in refusal.detail
        assert (
            authorise(session, desk, leg, now=NOW + timedelta(seconds=1), exclude_key=own) is None
        )
        usage = preauth_usage(session, since=NOW - timedelta(hours=24), exclude_key=own)
        assert usage.route_usd(route) == Decimal(3_000_000)
        assert usage.venue_usd("sim-b") == Decimal(3_000_000)
