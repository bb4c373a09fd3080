"""Domain value objects reject nonsense at construction, naming the field and value."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.domain import (
    Amount,
    Asset,
    Balance,
    Instrument,
    InstrumentKind,
    MarkPrice,
    Pool,
    Portfolio,
    Position,
    PositionSide,
    WalletKind,
    to_decimal,
)
from core.errors import DataError, NaNPriceError, StalePriceError, UnknownAssetError

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
BTC, USDT = Asset("BTC"), Asset("USDT")
PERP = Instrument("BTCUSDT", InstrumentKind.LINEAR_PERP, BTC, USDT)

LIMIT = Decimal(10) ** 17  # sums of two stay below the 1e18 cap
finite_decimals = st.decimals(min_value=-LIMIT, max_value=LIMIT, places=8)


def test_to_decimal_with_float_keeps_its_shortest_repr() -> None:
    assert to_decimal(0.1, "x") == Decimal("0.1")
    assert to_decimal("1_000.5", "x") == Decimal("1000.5")


@pytest.mark.parametrize("bad", [math.nan, math.inf, "NaN", "abc", True, None, [1]])
def test_to_decimal_with_nonsense_raises_naming_the_field(bad: object) -> None:
    with pytest.raises(DataError) as err:
        to_decimal(bad, "mark", where="price BTC")
    assert "field=mark" in str(err.value)
    assert "price BTC" in str(err.value)


@given(finite_decimals, finite_decimals)
def test_amount_addition_with_same_asset_is_exact(a: Decimal, b: Decimal) -> None:
    assert (Amount(a, BTC) + Amount(b, BTC)).value == a + b
    assert (Amount(a, BTC) - Amount(b, BTC) + Amount(b, BTC)).value == a


def test_to_decimal_with_implausible_magnitude_raises() -> None:
    with pytest.raises(DataError, match="implausibly large"):
        to_decimal("1e18", "amount")


def test_amount_arithmetic_across_assets_raises() -> None:
    with pytest.raises(DataError, match="different assets"):
        _ = Amount(Decimal(1), BTC) + Amount(Decimal(1), USDT)


@pytest.mark.parametrize("code", ["btc", "B", "BTC-USD", "", "A" * 16])
def test_asset_with_malformed_code_raises(code: str) -> None:
    with pytest.raises(UnknownAssetError):
        Asset(code)


@given(st.decimals(min_value=-LIMIT, max_value=Decimal("-0.00000001"), places=8))
def test_balance_with_negative_component_raises(neg: Decimal) -> None:
    for field in ("amount", "loan", "interest"):
        kwargs = {"amount": Decimal(1), "loan": Decimal(0), "interest": Decimal(0), field: neg}
        with pytest.raises(DataError, match=f"{field} must be >= 0"):
            Balance("sim-a", WalletKind.MARGIN, USDT, **kwargs)


@pytest.mark.parametrize("wallet", [WalletKind.SPOT, WalletKind.FUNDING, WalletKind.MARGIN])
def test_balance_with_negative_amount_in_a_wallet_that_cannot_go_negative_raises(
    wallet: WalletKind,
) -> None:
    with pytest.raises(DataError, match=f"amount must be >= 0 in a {wallet.value} wallet"):
        Balance("sim-a", wallet, USDT, Decimal("-0.01"))


@pytest.mark.parametrize(
    "wallet", [WalletKind.UM, WalletKind.CM, WalletKind.OPTIONS, WalletKind.PM]
)
def test_balance_with_negative_futures_wallet_is_a_negative_amount_not_a_loan(
    wallet: WalletKind,
) -> None:
    b = Balance("sim-a", wallet, USDT, Decimal(-8000))
    assert (b.amount, b.loan, b.interest, b.net) == (Decimal(-8000), 0, 0, Decimal(-8000))
    with pytest.raises(DataError, match="loan must be >= 0"):
        Balance("sim-a", wallet, USDT, Decimal(-8000), Decimal(-1))


@given(
    st.decimals(min_value=0, max_value=10**9, places=8),
    st.decimals(min_value=0, max_value=10**9, places=8),
)
def test_balance_net_is_amount_minus_loan_and_interest(amount: Decimal, loan: Decimal) -> None:
    b = Balance("sim-a", WalletKind.MARGIN, USDT, amount, loan, Decimal("1.5"))
    assert b.net == amount - loan - Decimal("1.5")


def test_balance_with_unknown_wallet_kind_raises_listing_known_kinds() -> None:
    with pytest.raises(DataError, match=r"unknown wallet kind 'future'.*spot, funding"):
        Balance("sim-a", "future", USDT, Decimal(1))  # type: ignore[arg-type]


@pytest.mark.parametrize("mark", [Decimal(-1), float("nan"), float("inf")])
def test_mark_price_with_negative_or_nan_raises_nan_price_error(mark: object) -> None:
    with pytest.raises(NaNPriceError, match="price BTC"):
        MarkPrice("BTC", mark, T0)  # type: ignore[arg-type]


def test_mark_price_with_zero_mark_is_a_price_but_zero_index_or_iv_is_not() -> None:
    # A worthless far out-of-the-money option is quoted at exactly 0 (margin decides per use).
    assert MarkPrice("BTC-C", Decimal(0), T0, Decimal(95_000), Decimal("0.6")).mark == 0
    for field, args in (("index", (Decimal(0), None)), ("iv", (None, Decimal(0)))):
        with pytest.raises(NaNPriceError, match=f"{field} must be > 0"):
            MarkPrice("BTC-C", Decimal(1), T0, *args)


def test_mark_price_with_naive_timestamp_raises() -> None:
    with pytest.raises(DataError, match="timezone-aware"):
        MarkPrice("BTC", Decimal(1), datetime(2026, 1, 1))


def test_mark_price_older_than_max_age_is_stale() -> None:
    p = MarkPrice("BTC", Decimal(95_000), T0)
    p.check_fresh(T0 + timedelta(seconds=60), max_age_s=60)
    with pytest.raises(StalePriceError, match=r"age_s=60\.001"):
        p.check_fresh(T0 + timedelta(seconds=60, milliseconds=1), max_age_s=60)


def test_option_without_expiry_raises() -> None:
    with pytest.raises(DataError, match="option needs an expiry"):
        Instrument("BTC-C", InstrumentKind.OPTION, BTC, USDT, strike=Decimal(1))


def test_option_without_strike_or_right_raises() -> None:
    with pytest.raises(DataError, match="strike, right"):
        Instrument("BTC-C", InstrumentKind.OPTION, BTC, USDT, expiry=T0)


def test_perp_with_expiry_or_strike_raises() -> None:
    with pytest.raises(DataError, match="has no expiry"):
        Instrument("BTCUSDT", InstrumentKind.LINEAR_PERP, BTC, USDT, expiry=T0)
    with pytest.raises(DataError, match="options only"):
        Instrument("BTCUSDT", InstrumentKind.LINEAR_PERP, BTC, USDT, strike=Decimal(1))


def test_inverse_option_settles_in_the_coin() -> None:
    opt = Instrument(
        "BTC-27MAR27-100000-C",
        InstrumentKind.OPTION,
        BTC,
        Asset("USD"),
        expiry=T0 + timedelta(days=120),
        strike=Decimal(100_000),
        right="call",  # type: ignore[arg-type]
        settlement="inverse",  # type: ignore[arg-type]
    )
    assert opt.settle_asset == BTC
    assert PERP.settle_asset == USDT


def test_position_with_zero_entry_price_raises_for_futures() -> None:
    with pytest.raises(DataError, match="entry_price must be > 0"):
        Position("sim-a", WalletKind.UM, PERP, Decimal(1), Decimal(0))


def test_position_with_hedge_mode_sides_has_one_key_per_leg() -> None:
    long_leg = Position("sim-a", WalletKind.UM, PERP, Decimal("0.5"), Decimal(60_000), "long")  # type: ignore[arg-type]
    short_leg = Position(
        "sim-a", WalletKind.UM, PERP, Decimal("-0.3"), Decimal(62_000), PositionSide.SHORT
    )
    one_way = Position("sim-a", WalletKind.UM, PERP, Decimal("0.2"), Decimal(61_000))
    assert long_leg.side is PositionSide.LONG
    assert (long_leg.key, short_leg.key, one_way.key) == (
        "sim-a/um/BTCUSDT:long",
        "sim-a/um/BTCUSDT:short",
        "sim-a/um/BTCUSDT",
    )
    pf = Portfolio.of([], [long_leg, short_leg], [], T0)
    assert len(pf.positions) == 2


@pytest.mark.parametrize(
    ("qty", "side", "message"),
    [
        ("-0.1", "long", "a long leg cannot hold qty -0.1"),
        ("0.1", "short", "a short leg cannot hold qty 0.1"),
        ("0.1", "sideways", "unknown side 'sideways'"),
    ],
)
def test_position_with_a_side_contradicting_its_sign_raises(
    qty: str, side: str, message: str
) -> None:
    with pytest.raises(DataError, match=message):
        Position("sim-a", WalletKind.UM, PERP, Decimal(qty), Decimal(60_000), side)  # type: ignore[arg-type]


def test_position_side_on_a_spot_or_option_position_raises() -> None:
    spot = Instrument("BTC/USDT", InstrumentKind.SPOT, BTC, USDT)
    with pytest.raises(DataError, match="hedge mode"):
        Position("sim-a", WalletKind.SPOT, spot, Decimal(1), Decimal(1), PositionSide.LONG)


def test_portfolio_with_two_positions_for_one_leg_raises_naming_it() -> None:
    a = Position("sim-a", WalletKind.UM, PERP, Decimal("0.5"), Decimal(60_000), PositionSide.LONG)
    b = Position("sim-a", WalletKind.UM, PERP, Decimal("0.1"), Decimal(61_000), PositionSide.LONG)
    with pytest.raises(DataError, match=r"two positions.*sim-a/um/BTCUSDT:long"):
        Portfolio.of([], [a, b], [], T0)


def test_pool_with_bad_id_or_no_wallet_raises() -> None:
    with pytest.raises(DataError, match="pool id"):
        Pool("Sim A", "sim-a", frozenset({WalletKind.UM}), "unified")  # type: ignore[arg-type]
    with pytest.raises(DataError, match="at least one wallet"):
        Pool("sim-a.pm", "sim-a", frozenset(), "unified")  # type: ignore[arg-type]


def test_portfolio_price_lookup_names_who_needed_it() -> None:
    pf = Portfolio.of([], [], [MarkPrice("BTC", Decimal(1), T0)], T0)
    assert pf.price("BTC").mark == 1
    with pytest.raises(UnknownAssetError, match="needed_by=position sim-a/um/ETHUSDT"):
        pf.price("ETHUSDT", where="position sim-a/um/ETHUSDT")


def test_portfolio_is_immutable() -> None:
    pf = Portfolio.of([], [], [MarkPrice("BTC", Decimal(1), T0)], T0)
    with pytest.raises(TypeError):
        pf.prices["ETH"] = MarkPrice("ETH", Decimal(1), T0)  # type: ignore[index]


def test_to_decimal_just_below_the_cap_is_not_rounded_up_and_refused() -> None:
    just_below = Decimal("999999999999999999.99999999995")
    assert to_decimal(just_below, "amount") == just_below


def test_amount_with_a_string_asset_raises() -> None:
    with pytest.raises(DataError, match="asset must be an Asset"):
        Amount(Decimal(1), "BTC")  # type: ignore[arg-type]


def test_pool_with_bogus_wallet_or_model_raises_data_error_naming_the_field() -> None:
    with pytest.raises(DataError, match="unknown wallet kind 'bogus'"):
        Pool("sim-a.pm", "sim-a", frozenset({"bogus"}), "unified")  # type: ignore[arg-type]
    with pytest.raises(DataError, match=r"unknown model 'foo'; known: unified"):
        Pool("sim-a.pm", "sim-a", frozenset({WalletKind.UM}), "foo")  # type: ignore[arg-type]
    with pytest.raises(DataError, match="venue must be"):
        Pool("sim-a.pm", "", frozenset({WalletKind.UM}), "unified")  # type: ignore[arg-type]


def test_option_with_unknown_right_raises_data_error() -> None:
    with pytest.raises(DataError, match="unknown right 'straddle'"):
        Instrument(
            "BTC-X",
            InstrumentKind.OPTION,
            BTC,
            USDT,
            expiry=T0,
            strike=Decimal(1),
            right="straddle",  # type: ignore[arg-type]
            settlement="linear",  # type: ignore[arg-type]
        )


def test_portfolio_with_two_prices_for_one_symbol_raises() -> None:
    with pytest.raises(DataError, match="two prices for one symbol"):
        Portfolio.of(
            [], [], [MarkPrice("BTC", Decimal(95_000), T0), MarkPrice("BTC", Decimal(1), T0)], T0
        )


def test_mark_price_stamped_in_the_future_beyond_skew_raises() -> None:
    p = MarkPrice("BTC", Decimal(95_000), T0 + timedelta(seconds=5))
    p.check_fresh(T0, max_age_s=60)  # within clock skew
    late = MarkPrice("BTC", Decimal(95_000), T0 + timedelta(hours=23))
    with pytest.raises(DataError, match="stamped in the future"):
        late.check_fresh(T0, max_age_s=60)
