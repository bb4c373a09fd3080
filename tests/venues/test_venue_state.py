"""The desk's state read from its venues (``core.venues.state``), priced by ``core.margin``.

The oracle is the desk file itself: a freshly seeded simulator holds exactly the declared
state, so every pool margined on what the venues report must give the very report the declared
``desk.initial_portfolio(at)`` gives, options pool included, in-process and over HTTP.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Literal

import pytest

from core.clock import ManualClock
from core.config import DeskConfig
from core.domain import WalletKind
from core.errors import ConfigError, DataError, StalePriceError, UnknownAssetError
from core.margin.api import evaluate_pool
from core.margin.collateral import desk_collateral_usd
from core.params import Bracket, validate_brackets
from core.venues.factory import DeskVenues, build_desk_venues
from core.venues.state import DeskState, read_desk_state

D = Decimal


@pytest.fixture(params=["inprocess", "http"])
def fresh(
    request: pytest.FixtureRequest, desk: DeskConfig, clock: ManualClock
) -> Iterator[DeskVenues]:
    transport: Literal["inprocess", "http"] = request.param
    with build_desk_venues(desk, clock, transport=transport) as dv:
        dv.warm_up()
        yield dv


def test_read_desk_state_with_fresh_sims_margins_every_pool_exactly_as_declared(
    desk: DeskConfig, fresh: DeskVenues, clock: ManualClock
) -> None:
    state = read_desk_state(desk, fresh.venues, clock)
    declared = desk.initial_portfolio(clock.now())
    for pool in desk.pools:
        pf = state.pool_portfolio(pool.id)
        read = evaluate_pool(desk, pool.id, pf, brackets=state.brackets_for(pool.id))
        assert read == evaluate_pool(desk, pool.id, declared), pool.id
    assert state.bracket_drift == ()
    opt = evaluate_pool(desk, "sim-b.opt", state.pool_portfolio("sim-b.opt"))
    assert {c.key for c in opt.contributions if "options" in c.key} == {
        "sim-b/options/BTC-270326-100000-C",
        "sim-b/options/BTC-270326-80000-P",
        "sim-b/options/ETH-270625-3500-C",
    }


def test_read_desk_state_with_fresh_sims_holds_the_declared_balances_and_positions(
    desk: DeskConfig, sims: DeskVenues, clock: ManualClock
) -> None:
    state = read_desk_state(desk, sims.venues, clock)
    declared = desk.initial_portfolio(clock.now())
    key = lambda b: (b.venue, b.wallet, b.asset.code)  # noqa: E731
    assert {key(b): (b.amount, b.loan, b.interest) for b in state.portfolio.balances} == {
        key(b): (b.amount, b.loan, b.interest) for b in declared.balances
    }
    assert {p.key: (p.qty, p.entry_price, p.instrument) for p in state.portfolio.positions} == {
        p.key: (p.qty, p.entry_price, p.instrument) for p in declared.positions
    }
    btc = state.venue("sim-a").portfolio.prices["BTC"]
    assert (btc.mark, btc.at) == (D(95_000), clock.now())  # price index × USDT's 1 USD
    call = state.venue("sim-b").portfolio.prices["BTC-270326-100000-C"]
    assert (call.mark, call.index, call.iv) == (D(9150), D(95_000), D("0.52"))


def test_read_desk_state_with_a_frozen_btc_feed_refuses_it_as_stale(
    desk: DeskConfig, sims: DeskVenues, clock: ManualClock
) -> None:
    sims.engines["sim-a"].prices.freeze("BTC", clock.timestamp_ns())
    clock.advance(desk.desk.max_price_age_s + 1)
    with pytest.raises(StalePriceError) as err:
        read_desk_state(desk, sims.venues, clock)
    assert err.value.context["symbol"] == "BTCUSDT"  # /sapi/v1/margin/priceIndex?symbol=BTCUSDT
    assert err.value.context["age_s"] == 121.0


def test_read_desk_state_with_an_undeclared_option_held_refuses_the_symbol(
    desk: DeskConfig, sims: DeskVenues, clock: ManualClock
) -> None:
    gone = "ETH-270625-3500-C"
    partial = desk.model_copy(
        update={
            "instruments": tuple(i for i in desk.instruments if i.symbol != gone),
            "positions": tuple(p for p in desk.positions if p.symbol != gone),
            "prices": tuple(p for p in desk.prices if p.symbol != gone),
        }
    )
    with pytest.raises(UnknownAssetError) as err:
        read_desk_state(partial, sims.venues, clock)
    assert (err.value.context["symbol"], err.value.context["wallet"]) == (gone, "options")


def _with_bracket(desk: DeskConfig, symbol: str, index: int, **change: object) -> DeskConfig:
    """The desk with one bracket changed (cums derived again, as loading the file does)."""
    table = [b.model_copy(update={"cum_usd": None}) for b in desk.brackets[symbol]]
    table[index] = table[index].model_copy(update=change)
    tables = {**desk.brackets, symbol: validate_brackets(tuple(table))}
    return desk.model_copy(update={"brackets": tables})


def test_read_desk_state_with_stale_desk_brackets_lists_drift_and_margins_on_the_venues(
    desk: DeskConfig, sims: DeskVenues, clock: ManualClock
) -> None:
    # The desk file says BTCUSDT's second bracket is 0.6 %; both venues say 0.5 %.
    outdated = _with_bracket(desk, "BTCUSDT", 1, mmr=D("0.006"))
    state = read_desk_state(outdated, sims.venues, clock)
    assert [str(d) for d in state.bracket_drift] == [
        "sim-a BTCUSDT: bracket 2: venue [300000, 3000000) mmr 0.005, desk [300000, 3000000) mmr 0.006",
        "sim-b BTCUSDT: bracket 2: venue [300000, 3000000) mmr 0.005, desk [300000, 3000000) mmr 0.006",
    ]
    declared = desk.initial_portfolio(clock.now())
    for pid in ("sim-a.pm", "sim-b.um"):
        read = evaluate_pool(
            outdated, pid, state.pool_portfolio(pid), brackets=state.brackets_for(pid)
        )
        assert read == evaluate_pool(desk, pid, declared)  # the venue's 0.5 % is used
        assert read != evaluate_pool(outdated, pid, declared)  # the desk's 0.6 % would differ


def test_read_desk_state_with_venue_max_leverage_keeps_the_desks_initial_margin_rule(
    desk: DeskConfig, sims: DeskVenues, clock: ManualClock
) -> None:
    # The simulator reports initialLeverage 20 for every bracket (Binance: the highest allowed).
    raw = sims.venues["sim-b"].leverage_brackets(WalletKind.UM)["ETHUSDT"]
    assert {b.max_leverage for b in raw} == {20}
    state = read_desk_state(desk, sims.venues, clock)
    assert {b.max_leverage for b in state.brackets_for("sim-b.um")["ETHUSDT"]} == {None}
    levered = _with_bracket(desk, "ETHUSDT", 0, max_leverage=50)
    state = read_desk_state(levered, sims.venues, clock)
    first: Bracket = state.brackets_for("sim-b.um")["ETHUSDT"][0]
    assert (first.floor_usd, first.mmr, first.max_leverage) == (D(0), D("0.005"), 50)
    assert state.bracket_drift == ()  # leverage is the desk's choice, not drift


def test_desk_portfolio_with_venues_on_their_own_walks_refuses_to_merge_their_prices(
    desk: DeskConfig, sims: DeskVenues, clock: ManualClock
) -> None:
    clock.advance(60)  # sim-a (seed 11) and sim-b (seed 22) walk apart
    state: DeskState = read_desk_state(desk, sims.venues, clock)
    a, b = (state.venue(v).portfolio.prices["BTC"].mark for v in ("sim-a", "sim-b"))
    assert a != b
    with pytest.raises(DataError, match="venues report different prices for one symbol"):
        _ = state.portfolio
    for pool in desk.pools:  # each pool still margins on its own venue's prices
        evaluate_pool(desk, pool.id, state.pool_portfolio(pool.id))


def test_read_desk_state_with_a_pm_wallet_pool_or_no_usdt_price_is_a_config_error(
    desk: DeskConfig, sims: DeskVenues, clock: ManualClock
) -> None:
    pm_pool = desk.pools[0].model_copy(update={"wallets": (WalletKind.PM,)})
    with pytest.raises(ConfigError, match="lists the pm wallet"):
        read_desk_state(
            desk.model_copy(update={"pools": (pm_pool, *desk.pools[1:])}), sims.venues, clock
        )
    no_usdt = desk.model_copy(
        update={"prices": tuple(p for p in desk.prices if p.symbol != "USDT")}
    )
    with pytest.raises(ConfigError, match="must declare the USD price of USDT"):
        read_desk_state(no_usdt, sims.venues, clock)
    with pytest.raises(ConfigError, match="no venue object"):
        read_desk_state(desk, {"sim-a": sims.venues["sim-a"]}, clock)


def test_desk_collateral_from_the_venues_state_equals_the_declared_totals(
    desk: DeskConfig, sims: DeskVenues, clock: ManualClock
) -> None:
    state = read_desk_state(desk, sims.venues, clock)
    read = desk_collateral_usd(
        desk, state.portfolio.balances, {s: p.mark for s, p in state.portfolio.prices.items()}
    )
    declared = desk_collateral_usd(
        desk, desk.initial_balances(), {p.symbol: p.mark for p in desk.prices}
    )
    assert (read.by_pool, read.free) == (declared.by_pool, declared.free)


def test_read_desk_state_with_no_options_on_a_venue_sends_it_no_options_request(
    desk: DeskConfig, sims: DeskVenues, clock: ManualClock
) -> None:
    """Binance answers eapi only for accounts with options enabled: sim-a's desk names none."""
    logs = {name: d.request_log for name, d in sims.dialects.items()}
    before = {name: len(log) for name, log in logs.items()}
    read_desk_state(desk, sims.venues, clock)
    paths = {name: [p for _, p in log[before[name] :]] for name, log in logs.items()}
    assert not [p for p in paths["sim-a"] if p.startswith("/eapi/")]
    assert {p for p in paths["sim-b"] if p.startswith("/eapi/")} == {
        "/eapi/v1/marginAccount",
        "/eapi/v1/position",
        "/eapi/v1/mark",
        "/eapi/v1/index",
    }
    assert "/papi/v1/um/leverageBracket" in paths["sim-a"]  # a Portfolio Margin account
    assert "/fapi/v1/leverageBracket" in paths["sim-b"]
