"""Domain ↔ row mappers round-trip exactly, on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ledger_helpers import T0, sqlite_memory_engine
from sqlalchemy import Engine
from sqlmodel import Session, select

from core.domain import (
    Asset,
    Balance,
    Instrument,
    InstrumentKind,
    MarkPrice,
    OptionRight,
    Position,
    PositionSide,
    Settlement,
    WalletKind,
)
from core.errors import DataError
from core.ledger.coltypes import fit_decimal, tidy_decimal
from core.ledger.mappers import balance_to_row, position_to_row, price_to_row
from core.ledger.store import ensure_venue, load_snapshot, record_snapshot
from core.ledger.tables import BalanceRow, SnapshotRow
from core.ledger.vocab import SnapshotSource, VenueMode

# Domain objects: 10 integer + 18 fractional digits = 28, the default Decimal context, so domain
# arithmetic stays exact. The column itself holds 20 + 18 digits (tested on rows directly).
MAX_MONEY = Decimal("9999999999.999999999999999999")
EXPIRY = datetime(2026, 3, 27, 8, 0, tzinfo=UTC)

money = st.decimals(
    min_value=-MAX_MONEY, max_value=MAX_MONEY, places=18, allow_nan=False, allow_infinity=False
)
non_negative = st.decimals(
    min_value=Decimal(0), max_value=MAX_MONEY, places=18, allow_nan=False, allow_infinity=False
)
positive = st.decimals(
    min_value=Decimal("1e-18"), max_value=MAX_MONEY, places=18, allow_nan=False,
    allow_infinity=False,
)  # fmt: skip
zones = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=3))]
)
instants = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(2100, 1, 1), timezones=zones
)


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def backend(request: pytest.FixtureRequest) -> Iterator[Engine]:
    """A module-lived engine per backend (hypothesis forbids function-scoped fixtures)."""
    if request.param == "sqlite":
        engine = sqlite_memory_engine()
    else:
        engine = request.getfixturevalue("pg_engine")
    with Session(engine) as s:
        ensure_venue(s, "sim-a", exchange="sim", mode=VenueMode.SIM, at=T0)
        s.commit()
    yield engine
    if request.param == "sqlite":
        engine.dispose()


def _round_trip(
    engine: Engine,
    balances: tuple[Balance, ...] = (),
    positions: tuple[Position, ...] = (),
    prices: tuple[MarkPrice, ...] = (),
) -> tuple[tuple[Balance, ...], tuple[Position, ...], tuple[MarkPrice, ...]]:
    with Session(engine) as s:
        sid = record_snapshot(
            s, taken_at=T0, source=SnapshotSource.VENUE, venue_id="sim-a",
            balances=balances, positions=positions, prices=prices,
        )  # fmt: skip
        s.commit()
    with Session(engine) as s:  # a new session: values come from the database, not the cache
        snap = load_snapshot(s, sid)
    return snap.balances, snap.positions, snap.prices


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(amount=money, loan=non_negative, interest=non_negative)
def test_balance_with_any_18_place_decimal_round_trips_exactly(
    backend: Engine, amount: Decimal, loan: Decimal, interest: Decimal
) -> None:
    b = Balance("sim-a", WalletKind.PM, Asset("USDT"), amount, loan, interest)
    (back,), _, _ = _round_trip(backend, balances=(b,))
    assert back == b
    assert (back.amount, back.loan, back.interest) == (amount, loan, interest)
    assert back.net == b.net


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Built from integers: hypothesis' own decimals() rounds bounds at 28 digits.
@given(value=st.integers(-(10**38) + 1, 10**38 - 1).map(lambda n: Decimal(f"{n}e-18")))
def test_money_column_with_any_38_digit_value_round_trips_exactly(
    backend: Engine, value: Decimal
) -> None:
    with Session(backend) as s:
        sid = record_snapshot(s, taken_at=T0, source=SnapshotSource.VENUE, venue_id="sim-a")
        row = BalanceRow(
            snapshot_id=sid, venue_id="sim-a", wallet="spot", asset="BTC",
            amount=value, loan=value.copy_negate(), interest=Decimal(0),
        )  # fmt: skip
        s.add(row)
        s.commit()
        row_id = row.id
    with Session(backend) as s:
        back = s.get(BalanceRow, row_id)
        assert back is not None
        assert (back.amount, back.loan) == (value, value.copy_negate())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(qty=money, entry=positive, strike=positive, at=instants)
def test_positions_and_prices_with_any_decimal_and_zone_round_trip_exactly(
    backend: Engine, qty: Decimal, entry: Decimal, strike: Decimal, at: datetime
) -> None:
    perp = Instrument("BTCUSDT", InstrumentKind.LINEAR_PERP, Asset("BTC"), Asset("USDT"))
    inverse = Instrument(
        "BTCUSD_260327", InstrumentKind.INVERSE_FUTURE, Asset("BTC"), Asset("USD"),
        contract_size=Decimal(100), expiry=EXPIRY,
    )  # fmt: skip
    option = Instrument(
        "BTC-27MAR26-90000-C", InstrumentKind.OPTION, Asset("BTC"), Asset("USDT"),
        contract_size=Decimal("0.1"), expiry=at, strike=strike, right=OptionRight.CALL,
        settlement=Settlement.INVERSE,
    )  # fmt: skip
    positions = (
        Position("sim-a", WalletKind.UM, perp, qty, entry),
        Position("sim-a", WalletKind.CM, inverse, -qty, entry),
        Position("sim-a", WalletKind.OPTIONS, option, qty, entry),
        # hedge-mode legs of one symbol: same venue/wallet/symbol, told apart by side
        Position("sim-a", WalletKind.PM, perp, abs(qty), entry, PositionSide.LONG),
        Position("sim-a", WalletKind.PM, perp, -abs(qty), entry, PositionSide.SHORT),
    )
    prices = (
        MarkPrice("BTC", entry, at),
        MarkPrice("BTC-27MAR26-90000-C", strike, at, index=entry, iv=Decimal("0.55")),
    )
    _, pos_back, px_back = _round_trip(backend, positions=positions, prices=prices)
    assert pos_back == positions
    assert px_back == prices
    assert all(p.at.tzinfo is UTC and p.at == at for p in px_back)
    assert pos_back[2].instrument.expiry == at


@given(
    value=st.decimals(
        min_value=Decimal("-1e6"), max_value=Decimal("1e6"), places=24, allow_nan=False,
        allow_infinity=False,
    )
)  # fmt: skip
def test_fit_decimal_with_more_than_18_places_refuses_instead_of_rounding(value: Decimal) -> None:
    if value == value.quantize(Decimal("1e-18")):
        assert fit_decimal(value, "amount") == value
    else:
        with pytest.raises(DataError, match="more than 18 decimal places"):
            fit_decimal(value, "amount")


def test_balance_to_row_with_21_integer_digits_names_field_and_balance() -> None:
    b = Balance("sim-a", WalletKind.SPOT, Asset("SHIB"), Decimal("1.5"))
    object.__setattr__(b, "amount", Decimal("123456789012345678901"))  # past the domain's guard
    with pytest.raises(DataError, match="does not fit NUMERIC") as info:
        balance_to_row(b, snapshot_id=1)
    assert info.value.context["field"] == "amount"
    assert info.value.context["where"] == "balance sim-a/spot/SHIB"


def test_position_to_row_with_19_place_entry_price_refuses() -> None:
    perp = Instrument("ETHUSDT", InstrumentKind.LINEAR_PERP, Asset("ETH"), Asset("USDT"))
    p = Position("sim-a", WalletKind.UM, perp, Decimal(3), Decimal("3000.0000000000000000001"))
    with pytest.raises(DataError, match=r"decimal places"):
        position_to_row(p, snapshot_id=1)


def test_price_to_row_with_naive_datetime_is_refused_by_the_domain_first() -> None:
    with pytest.raises(DataError, match="timezone-aware"):
        price_to_row(MarkPrice("BTC", Decimal(1), datetime(2026, 1, 1)), snapshot_id=1)


def test_record_snapshot_with_one_bad_value_writes_nothing(session: Session) -> None:
    ensure_venue(session, "sim-a", exchange="sim", mode=VenueMode.SIM, at=T0)
    good = Balance("sim-a", WalletKind.UM, Asset("USDT"), Decimal("1000"))
    bad = Balance("sim-a", WalletKind.UM, Asset("BTC"), Decimal("0.0000000000000000001"))
    snapshots_before = len(session.exec(select(SnapshotRow)).all())
    balances_before = len(session.exec(select(BalanceRow)).all())
    with pytest.raises(DataError):
        record_snapshot(
            session, taken_at=T0, source=SnapshotSource.VENUE, venue_id="sim-a",
            balances=(good, bad),
        )  # fmt: skip
    assert len(session.exec(select(SnapshotRow)).all()) == snapshots_before
    assert len(session.exec(select(BalanceRow)).all()) == balances_before


@pytest.mark.parametrize(
    ("raw", "tidy"),
    [("1.500000000000000000", "1.5"), ("100.000", "100"), ("0E-18", "0"), ("-2.50", "-2.5")],
)
def test_tidy_decimal_with_trailing_zeros_keeps_value_and_plain_notation(
    raw: str, tidy: str
) -> None:
    out = tidy_decimal(Decimal(raw))
    assert out == Decimal(raw)
    assert str(out) == tidy
