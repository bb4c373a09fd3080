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
from core.ledger.store import (
    database_url,
    get_plan,
    init_db,
    latest_snapshot_id,
    load_snapshot,
    make_engine,
    normalise_url,
    record_margin_call,
    record_plan,
    record_snapshot,
    redact_url,
    session_scope,
)
from core.ledger.tables import LedgerTable, MarginCallRow, PlanRow, PlanStepRow
from core.ledger.vocab import CallStatus, PlanStatus, SnapshotSource


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
    from sqlalchemy.exc import IntegrityError

    with pytest.raises(IntegrityError), session_scope(engine) as s:
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


def test_margin_call_recorded_twice_with_same_id_is_not_duplicated(
    session: Session, venues: object
) -> None:
    row = MarginCallRow(
        id="mc-sim-a.pm-1", pool_id="sim-a.pm", venue_id="sim-a", status=CallStatus.OPEN.value,
        raised_at=T0, target_ratio=Decimal("1.5"), deficit_usd=Decimal("250000"),
    )  # fmt: skip
    _, created = record_margin_call(session, row)
    again = MarginCallRow(**{**row.model_dump(), "deficit_usd": Decimal(1)})
    stored, created_again = record_margin_call(session, again)
    assert (created, created_again) == (True, False)
    assert stored.deficit_usd == Decimal("250000")


def test_plan_with_steps_round_trips_in_step_order(session: Session, venues: object) -> None:
    plan = PlanRow(
        id="plan-1", created_at=T0, policy="cost", solver="greedy",
        status=PlanStatus.PARTIAL.value, deadline_s=10.0, deficit_usd=Decimal("100"),
        credit_usd=Decimal("60"), cost_usd=Decimal("0.3"), uncovered_usd=Decimal("40"),
        solve_ms=0.8, alternative_policy="strict", alternative_cost_usd=Decimal("0.45"),
        config_repr="CostPolicy(lambda_per_s=0.01)",
    )  # fmt: skip
    steps = [
        PlanStepRow(
            plan_id="plan-1",
            step_no=n,
            source_id=f"s{n}",
            tier=3,
            mode="transfer",
            venue_id="sim-a",
            from_wallet="spot",
            to_wallet="um",
            asset="USDT",
            amount=Decimal(30),
            amount_usd=Decimal(30),
            credit_usd=Decimal(30),
            cost_usd=Decimal("0.15"),
            eta_s=0.2 * (n + 1),
        )
        for n in (1, 0)
    ]
    record_plan(session, plan, steps)
    loaded = get_plan(session, "plan-1")
    assert loaded is not None
    stored, stored_steps = loaded
    assert [s.step_no for s in stored_steps] == [0, 1]
    assert stored.uncovered_usd == Decimal(40)
    assert stored.config_repr == "CostPolicy(lambda_per_s=0.01)"
    assert get_plan(session, "nope") is None


def test_plan_with_duplicate_step_numbers_is_refused(session: Session, venues: object) -> None:
    plan = PlanRow(
        id="plan-2", created_at=T0, policy="strict", solver="highs",
        status=PlanStatus.OPTIMAL.value, deadline_s=10.0, deficit_usd=Decimal(1),
        credit_usd=Decimal(1), cost_usd=Decimal(0), uncovered_usd=Decimal(0), solve_ms=1.0,
        config_repr="StrictPolicy()",
    )  # fmt: skip

    def step() -> PlanStepRow:
        return PlanStepRow(
            plan_id="plan-2", step_no=0, source_id="s", tier=2, mode="in_place",
            venue_id="sim-a", asset="USDT", amount=Decimal(1), amount_usd=Decimal(1),
            credit_usd=Decimal(1), cost_usd=Decimal(0), eta_s=0.0,
        )  # fmt: skip

    with pytest.raises(DataError, match="distinct step_no"):
        record_plan(session, plan, [step(), step()])
    assert get_plan(session, "plan-2") is None
