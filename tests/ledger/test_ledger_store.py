"""Where the store lives, engine creation, ``init_db`` idempotency and repository helpers."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from ledger_helpers import T0
from sqlalchemy import inspect
from sqlmodel import Session

from core.domain import (
    Asset,
    Balance,
    Instrument,
    InstrumentKind,
    MarkPrice,
    Position,
    PositionSide,
    WalletKind,
)
from core.errors import ConfigError, DataError
from core.ledger.plans import record_margin_call
from core.ledger.store import (
    database_url,
    init_db,
    latest_snapshot_id,
    load_snapshot,
    make_engine,
    normalise_url,
    record_snapshot,
    redact_url,
    session_scope,
)
from core.ledger.tables import LedgerTable, MarginCallRow
from core.ledger.vocab import SnapshotSource


def test_database_url_with_nothing_set_is_sqlite_under_pmr_home(tmp_path: Path) -> None:
    assert database_url({"PMR_HOME": str(tmp_path)}) == f"sqlite:///{tmp_path}/pmr.db"
    assert database_url({}) == f"sqlite:///{Path('~/.pmr').expanduser().resolve()}/pmr.db"


def test_database_url_with_postgres_env_pins_psycopg_driver() -> None:
    env = {"PMR_DATABASE_URL": "postgres://desk:pw@db.internal:5432/pmr", "PMR_HOME": "/x"}
    assert database_url(env) == "postgresql+psycopg://desk:pw@db.internal:5432/pmr"
    assert redact_url(database_url(env)) == "postgresql+psycopg://desk:***@db.internal:5432/pmr"


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("mysql://u@h/db", "unsupported database driver 'mysql'"),
        ("postgresql+psycopg2://u@h/db", "unsupported database driver"),
        ("not a url", "not a database URL"),
    ],
)
def test_normalise_url_with_unsupported_url_raises_config_error(url: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        normalise_url(url)


def test_config_error_for_bad_url_never_echoes_the_password() -> None:
    with pytest.raises(ConfigError) as info:
        normalise_url("oracle://trader:hunter2@db/x")
    assert "hunter2" not in str(info.value)


def test_init_db_on_file_sqlite_twice_creates_then_keeps_tables(tmp_path: Path) -> None:
    engine = make_engine(env={"PMR_HOME": str(tmp_path / "desk")})
    first = init_db(engine)
    second = init_db(engine)
    assert (tmp_path / "desk" / "pmr.db").is_file()
    assert set(first.created) == set(LedgerTable.metadata.tables)
    assert second.created == ()
    assert first.views == ()
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        tables = set(inspect(conn).get_table_names())
    assert tables == {*LedgerTable.metadata.tables, "alembic_version"}
    engine.dispose()


def test_sqlite_foreign_keys_with_unknown_venue_are_enforced(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/fk.db")
    init_db(engine)
    with (
        pytest.raises(DataError, match="venue or margin report that is not recorded"),
        session_scope(engine) as s,
    ):
        record_margin_call(
            s,
            MarginCallRow(
                id="mc-1", pool_id="p", venue_id="no-such-venue", status="open", raised_at=T0,
                target_ratio=Decimal("1.5"), deficit_usd=Decimal(1),
            ),
        )  # fmt: skip
    with Session(engine) as s:
        assert s.get(MarginCallRow, "mc-1") is None  # rolled back, nothing half-written
    engine.dispose()


def test_snapshots_with_two_reads_latest_is_the_newer_and_loads_back(
    session: Session, venues: object
) -> None:
    old = record_snapshot(
        session, taken_at=T0, source=SnapshotSource.VENUE, venue_id="sim-a",
        balances=[Balance("sim-a", WalletKind.UM, Asset("USDT"), Decimal("1000"))],
    )  # fmt: skip
    new = record_snapshot(
        session, taken_at=T0 + timedelta(minutes=5), source=SnapshotSource.VENUE,
        venue_id="sim-a",
        balances=[Balance("sim-a", WalletKind.UM, Asset("USDT"), Decimal("1250.5"))],
        prices=[MarkPrice("BTC", Decimal("83250.1"), T0)],
    )  # fmt: skip
    assert latest_snapshot_id(session, source=SnapshotSource.VENUE, venue_id="sim-a") == new
    assert latest_snapshot_id(session, source=SnapshotSource.EXPECTED) is None
    snap = load_snapshot(session, new)
    assert snap.balances[0].amount == Decimal("1250.5")
    assert snap.prices[0].mark == Decimal("83250.1")
    assert load_snapshot(session, old).balances[0].amount == Decimal(1000)
    portfolio = snap.portfolio()
    assert portfolio.as_of == T0 + timedelta(minutes=5)
    assert portfolio.price("BTC").mark == Decimal("83250.1")
    with pytest.raises(DataError, match="no such snapshot"):
        load_snapshot(session, 10_000)


_PERP = Instrument("BTCUSDT", InstrumentKind.LINEAR_PERP, Asset("BTC"), Asset("USDT"))


def test_snapshot_with_hedge_mode_legs_stores_and_loads_both_sides(
    session: Session, venues: object
) -> None:
    legs = [
        Position("sim-a", WalletKind.UM, _PERP, Decimal("0.5"), Decimal(60_000), PositionSide.LONG),
        Position(
            "sim-a", WalletKind.UM, _PERP, Decimal("-0.3"), Decimal(62_000), PositionSide.SHORT
        ),
    ]
    # A negative UM wallet (no loan) is stored as such, not turned into a loan.
    negative = Balance("sim-a", WalletKind.UM, Asset("USDT"), Decimal(-8000))
    sid = record_snapshot(
        session, taken_at=T0, source=SnapshotSource.VENUE, venue_id="sim-a",
        balances=[negative], positions=legs,
    )  # fmt: skip
    snap = load_snapshot(session, sid)
    assert snap.positions == tuple(legs)
    assert [p.key for p in snap.positions] == ["sim-a/um/BTCUSDT:long", "sim-a/um/BTCUSDT:short"]
    assert snap.balances == (negative,)


def test_snapshot_with_two_rows_for_one_key_is_refused_naming_it_and_writes_nothing(
    session: Session, venues: object
) -> None:
    leg = Position(
        "sim-a", WalletKind.UM, _PERP, Decimal("0.5"), Decimal(60_000), PositionSide.LONG
    )
    usdt = Balance("sim-a", WalletKind.UM, Asset("USDT"), Decimal(1))
    btc = MarkPrice("BTC", Decimal(95_000), T0)
    cases = (
        ({"positions": [leg, leg]}, "position", "sim-a/um/BTCUSDT:long"),
        ({"balances": [usdt, usdt]}, "balance", "sim-a/um/USDT"),
        ({"prices": [btc, btc]}, "price", "BTC"),
    )
    for rows, kind, key in cases:
        with pytest.raises(DataError, match=f"two {kind} rows.*key={key}"):
            record_snapshot(
                session, taken_at=T0, source=SnapshotSource.VENUE, venue_id="sim-a", **rows
            )  # type: ignore[arg-type]
    assert latest_snapshot_id(session, source=SnapshotSource.VENUE, venue_id="sim-a") is None
