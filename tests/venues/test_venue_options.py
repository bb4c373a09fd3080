"""Binance European options on the simulator and through the adapter (``eapi``).

Marks are checked against a Black-76 written out here with ``math.erf`` (not the code under
test): mark(t) = B76(F_t, T_t) + (mark_0 − B76(F_0, T_0))·√(T_t/T_0), floored at 0.
"""

from __future__ import annotations

import math
import tomllib
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.clock import ManualClock
from core.config import DeskConfig, parse_desk
from core.domain import Asset, PositionSide, WalletKind
from core.errors import DataError, StalePriceError
from core.venues.factory import DeskVenues, build_desk_venues, sim_exchange_from_desk
from core.venues.parse_options import parse_option_marks, parse_option_positions
from core.venues.sim.engine import SimConfig, SimExchange
from core.venues.sim.options import OptionBook, SimOption

D = Decimal
YEAR_S = 365 * 86_400
BTC_CALL, BTC_PUT, ETH_CALL = "BTC-270326-100000-C", "BTC-270326-80000-P", "ETH-270625-3500-C"
EXPIRY_BTC = datetime(2027, 3, 26, 8, tzinfo=UTC)


def _b76(f: float, k: float, t: float, sigma: float, call: bool) -> float:
    """Black-76, r = 0, by hand: F·N(d1) − K·N(d2) (put by parity)."""
    n = lambda x: 0.5 * (1 + math.erf(x / math.sqrt(2)))  # noqa: E731
    sd = sigma * math.sqrt(t)
    d1 = (math.log(f / k) + 0.5 * sd * sd) / sd
    c = f * n(d1) - k * n(d1 - sd)
    return c if call else c - (f - k)


def test_option_marks_with_fresh_seed_give_the_desk_marks_ivs_and_indices(
    sims: DeskVenues,
) -> None:
    marks = {m.symbol: m for m in sims.venues["sim-b"].option_marks()}
    assert {s: (m.mark, m.mark_iv, m.index) for s, m in marks.items()} == {
        BTC_CALL: (D(9150), D("0.52"), D(95_000)),
        BTC_PUT: (D(5480), D("0.58"), D(95_000)),
        ETH_CALL: (D(521), D("0.66"), D(3200)),
    }
    call = marks[BTC_CALL]
    assert (call.bid_iv, call.ask_iv) == (D("0.51"), D("0.53"))  # mark IV ∓ one vol point
    assert call.at == datetime(2026, 1, 1, tzinfo=UTC)  # the index's time: the seed instant
    # delta of the call at F = 95,000, K = 100,000, σ = 52 %, 449 days 8 h to expiry
    t = (EXPIRY_BTC - datetime(2026, 1, 1, tzinfo=UTC)).total_seconds() / YEAR_S
    d1 = (math.log(95_000 / 100_000) + 0.5 * 0.52**2 * t) / (0.52 * math.sqrt(t))
    assert float(call.delta) == pytest.approx(0.5 * (1 + math.erf(d1 / math.sqrt(2))), abs=1e-8)


def test_option_marks_with_six_hours_of_the_walk_follow_black76_from_the_seed(
    desk: DeskConfig,
) -> None:
    clock = ManualClock()
    with build_desk_venues(desk, clock) as dv:
        dv.warm_up()
        clock.advance(6 * 3600)
        b = dv.venues["sim-b"]
        marks = {m.symbol: m for m in b.option_marks()}
    t0 = (EXPIRY_BTC - datetime(2026, 1, 1, tzinfo=UTC)).total_seconds() / YEAR_S
    t1 = t0 - 6 * 3600 / YEAR_S
    f1 = float(marks[BTC_CALL].index)
    assert f1 != 95_000  # the seeded walk moved BTC
    for symbol, k, sigma, call, mark0 in (
        (BTC_CALL, 100_000, 0.52, True, 9150),
        (BTC_PUT, 80_000, 0.58, False, 5480),
    ):
        offset = mark0 - _b76(95_000, k, t0, sigma, call)
        expected = max(0.0, _b76(f1, k, t1, sigma, call) + offset * math.sqrt(t1 / t0))
        assert float(marks[symbol].mark) == pytest.approx(expected, abs=1e-6), symbol


def test_option_marks_with_frozen_prices_do_not_decay_over_a_month(desk: DeskConfig) -> None:
    clock = ManualClock()
    engine, _ = sim_exchange_from_desk(desk, "sim-b", clock, frozen_prices=True)
    clock.advance(30 * 86_400)
    assert engine.option_quote(BTC_CALL).mark == D(9150)
    moving, _ = sim_exchange_from_desk(desk, "sim-b", ManualClock(), frozen_prices=False)
    assert moving.option_quote(BTC_CALL).mark == D(9150)  # at its seed instant


def _one_option_engine(clock: ManualClock, *, seed_mark: str) -> SimExchange:
    expiry_ns = clock.timestamp_ns() + 86_400 * 10**9  # one day out
    option = SimOption("BTC-260102-90000-C", "BTC", "USDT", D(90_000), expiry_ns, True,
                       D("0.5"), D(1), D(seed_mark))  # fmt: skip
    return SimExchange(
        "sim-x",
        clock,
        asset_decimals={"BTC": 8, "USDT": 8},
        prices_usd={"BTC": D(100_000), "USDT": D(1)},
        options=[option],
        config=SimConfig(price_vol_annual_frac=0.0),
    )


def test_option_quote_with_expiry_passed_is_the_intrinsic_value() -> None:
    # Seeded 2,000 above its Black-76 value; a day later the offset has faded: 100,000 − 90,000.
    clock = ManualClock()
    engine = _one_option_engine(clock, seed_mark="12000")
    assert engine.option_quote("BTC-260102-90000-C").mark == D(12_000)
    clock.advance(2 * 86_400)
    assert engine.option_quote("BTC-260102-90000-C").mark == D(10_000)


def test_option_marks_on_a_frozen_underlying_are_refused_as_stale(
    sims: DeskVenues, clock: ManualClock
) -> None:
    engine = sims.engines["sim-b"]
    engine.prices.freeze("BTC", clock.timestamp_ns())
    clock.advance(121)
    b = sims.venues["sim-b"]
    with pytest.raises(StalePriceError) as err:
        b.option_marks(max_age_s=120)
    assert err.value.context["symbol"] == BTC_CALL
    (eth,) = b.option_marks([ETH_CALL], max_age_s=120)  # ETH's index is live
    assert eth.at == clock.now()


def test_options_positions_with_shorts_read_signed_quantities_where_ccxt_reads_unsigned(
    sims: DeskVenues,
) -> None:
    b = sims.venues["sim-b"]
    ours = {p.symbol: (p.qty, p.side, p.margin_asset) for p in b.positions(WalletKind.OPTIONS)}
    assert ours == {
        BTC_CALL: (D(-60), PositionSide.BOTH, Asset("USDT")),
        BTC_PUT: (D(-80), PositionSide.BOTH, Asset("USDT")),
        ETH_CALL: (D(900), PositionSide.BOTH, Asset("USDT")),
    }
    assert b.request_log[-1] == ("GET", "/eapi/v1/position")
    # Unmodified ccxt 4.5.90 negates every non-LONG quantity: a short's contracts come out > 0.
    rows = b.exchange.fetch_positions(None, {"method": "option"})
    assert {(r["info"]["symbol"], r["contracts"], r["side"]) for r in rows} == {
        (BTC_CALL, 60.0, "short"),
        (BTC_PUT, 80.0, "short"),
        (ETH_CALL, 900.0, "long"),
    }


def test_ccxt_fetch_balance_with_type_option_silently_returns_spot(sims: DeskVenues) -> None:
    """ccxt 4.5.90's fetchBalance has no options branch: the adapter reads eapi directly."""
    b = sims.venues["sim-b"]
    b.exchange.fetch_balance({"type": "option"})
    assert b.request_log[-1] == ("GET", "/api/v3/account")
    assert {x.asset.code: x.amount for x in b.balances(WalletKind.OPTIONS)} == {
        "USDT": D(2_200_000)
    }
    assert b.request_log[-1] == ("GET", "/eapi/v1/marginAccount")


def test_options_margin_account_with_held_options_books_cash_and_values_them_at_mark(
    sims: DeskVenues,
) -> None:
    info = sims.venues["sim-b"].exchange.eapiPrivateGetMarginAccount({})
    (usdt,) = info["asset"]
    # cash 2,200,000; at mark −60·9,150 − 80·5,480 + 900·521 = −518,500; PnL against entry
    # −60·(9,150 − 7,400) − 80·(5,480 − 3,900) + 900·(521 − 240) = 21,500
    assert D(usdt["marginBalance"]) == D(2_200_000)
    assert D(usdt["equity"]) == D(1_681_500)
    assert D(usdt["unrealizedPNL"]) == D(21_500)
    assert {g["underlying"] for g in info["greek"]} == {"BTCUSDT", "ETHUSDT"}


def test_unmodified_ccxt_with_option_markets_enabled_loads_them_and_fetches_a_position(
    sims: DeskVenues,
) -> None:
    ex = sims.venues["sim-b"].exchange
    ex.options["fetchMarkets"] = {"types": ["spot", "linear", "inverse", "option"]}
    ex.load_markets(reload=True)
    unified = "BTC/USDT:USDT-270326-100000-C"
    m = ex.markets[unified]
    assert (m["option"], m["strike"], m["optionType"], m["settle"]) == (
        True,
        100000,
        "call",
        "USDT",
    )
    assert m["expiry"] == int(EXPIRY_BTC.timestamp() * 1000)
    pos = ex.fetch_position(unified)
    assert (pos["side"], pos["info"]["quantity"]) == ("short", "-60.00000000")
    assert ex.fetch_mark_price(unified)["info"]["markIV"] == "0.52000000"


def test_parse_option_positions_with_side_and_sign_disagreeing_refuses_the_row() -> None:
    row = {"symbol": BTC_CALL, "side": "SHORT", "quantity": "60", "entryPrice": "1",
           "markPrice": "1", "unrealizedPNL": "0", "quoteAsset": "USDT"}  # fmt: skip
    with pytest.raises(DataError, match="option quantity and side disagree"):
        parse_option_positions("v", [row])
    with pytest.raises(DataError, match="unknown Binance option side"):
        parse_option_positions("v", [{**row, "side": "BOTH"}])
    assert parse_option_positions("v", [{**row, "quantity": "0", "side": "LONG"}]) == ()


def test_parse_option_marks_with_missing_index_or_no_bid_is_explicit() -> None:
    row = {"symbol": BTC_CALL, "markPrice": "9150", "bidIV": "-1.0", "askIV": "0.53",
           "markIV": "0.52", "delta": "0.5", "gamma": "0", "theta": "-1", "vega": "1"}  # fmt: skip
    at = datetime(2026, 1, 1, tzinfo=UTC)
    (m,) = parse_option_marks("v", [row], {"BTCUSDT": (D(95_000), at)})
    assert (m.bid_iv, m.ask_iv, m.index, m.at) == (None, D("0.53"), D(95_000), at)
    with pytest.raises(DataError, match="no index for the option's underlying"):
        parse_option_marks("v", [row], {})


_ODD_OPTIONS = """
[desk]
name = "odd options"
[assets.BTC]
[assets.USDT]
kind = "stablecoin"
[[venues]]
name = "sim-x"
kind = "sim"
[[pools]]
id = "sim-x.opt"
venue = "sim-x"
wallets = ["options"]
model = "scenario"
[[instruments]]
symbol = "BTC-27MAR27-100000-C"
kind = "option"
underlying = "BTC"
expiry = 2027-03-26T08:00:00Z
strike = 100000
right = "call"
settlement = "linear"
[[instruments]]
symbol = "BTC-270326-90000-C"
kind = "option"
underlying = "BTC"
quote = "USD"
expiry = 2027-03-26T08:00:00Z
strike = 90000
right = "call"
settlement = "inverse"
[[prices]]
symbol = "BTC"
mark = 95000
[[prices]]
symbol = "USDT"
mark = 1
[[prices]]
symbol = "BTC-27MAR27-100000-C"
mark = 9000
iv = 0.5
[[prices]]
symbol = "BTC-270326-90000-C"
mark = 0.1
iv = 0.5
[[positions]]
venue = "sim-x"
wallet = "options"
symbol = "BTC-27MAR27-100000-C"
qty = "1"
entry_price = "8000"
[[positions]]
venue = "sim-x"
wallet = "options"
symbol = "BTC-270326-90000-C"
qty = "1"
entry_price = "0.1"
"""


def test_sim_from_desk_with_options_binance_cannot_list_skips_them_saying_why() -> None:
    desk = parse_desk(tomllib.loads(_ODD_OPTIONS), source="odd")
    engine, skipped = sim_exchange_from_desk(desk, "sim-x", ManualClock())
    assert engine.option_book.options == {}
    assert skipped == [
        "position sim-x/options/BTC-27MAR27-100000-C (not simulated: not a Binance option id "
        "BASE-YYMMDD-STRIKE-C|P)",
        "position sim-x/options/BTC-270326-90000-C (not simulated: Binance options are quoted "
        "and settled in USDT)",
    ]


@settings(max_examples=60, deadline=None)
@given(
    strike=st.integers(20_000, 200_000),
    iv=st.decimals("0.1", "1.5", places=2),
    seed_mark=st.decimals("0", "30000", places=2),
    call=st.booleans(),
    moves=st.lists(st.floats(-0.5, 0.5), min_size=2, max_size=6),
    days=st.integers(0, 400),
)
def test_option_book_with_any_seed_keeps_it_and_moves_monotonically_with_the_forward(
    strike: int, iv: Decimal, seed_mark: Decimal, call: bool, moves: list[float], days: int
) -> None:
    seed_ns = 1_767_225_600_000_000_000
    opt = SimOption("BTC-270326-1-C" if call else "BTC-270326-1-P", "BTC", "USDT", D(strike),
                    seed_ns + 450 * 86_400 * 10**9, call, iv, D(1), seed_mark)  # fmt: skip
    book = OptionBook([opt], seed_forwards={opt.symbol: D(95_000)}, seed_ns=seed_ns)
    assert book.quote(opt.symbol, D(95_000), seed_ns, seed_ns).mark == seed_mark
    now = seed_ns + days * 86_400 * 10**9
    forwards = sorted(D(repr(round(95_000 * (1 + m), 2))) for m in moves)
    marks = [book.quote(opt.symbol, f, now, now).mark for f in forwards]
    assert all(m >= 0 for m in marks)
    ordered = marks if call else marks[::-1]
    assert ordered == sorted(ordered)  # a call never falls as F rises, a put never rises
