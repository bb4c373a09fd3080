"""Alembic migrations: a previous-release store upgrades without losing or changing a row.

Every test that touches a database runs on a SQLite file and on the real PostgreSQL (a fresh
schema each). Revisions that are not shipped (a failing one, a batch copy of a referenced
table) are written into ``tmp_path`` and handed to ``migrate_store`` as an extra versions
folder, the way a developer's new revision runs before it ships.
"""

from __future__ import annotations

import itertools
import re
import sqlite3
import textwrap
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from ledger_helpers import T0, fresh_pg_schema
from legacy_store import (
    HASH_3,
    ROWS,
    build_legacy_store,
    legacy_ddl,
    raw_rows,
    typed_rows,
)
from sqlalchemy import Engine, create_engine, inspect, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from core.errors import ConfigError, DataError, PmrError
from core.ledger.audit_log import append_audit_event, verify_audit_chain
from core.ledger.chain import AuditKey
from core.ledger.migrations.__main__ import main as migrations_main
from core.ledger.migrations.__main__ import model_differences
from core.ledger.migrations.apply import migrate_store
from core.ledger.migrations.config import (
    BASELINE,
    alembic_config,
    head_revision,
    next_revision_id,
    render_item,
    script_directory,
)
from core.ledger.migrations.status import SchemaStatus, baseline_metadata, read_status
from core.ledger.plans import latest_plan_version, load_plan
from core.ledger.store import (
    init_db,
    load_snapshot,
    make_engine,
    session_scope,
    upgrade_db,
    view_statements,
)
from core.ledger.tables import LedgerTable, VenueRow, WalletRow

HEAD = head_revision()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An engine on an empty database: an existing SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        path = tmp_path / "pmr.db"
        sqlite3.connect(path).close()  # what a desk already has; pmr did not create it
        engine = make_engine(f"sqlite:///{path}")
        yield engine
        engine.dispose()
        return
    with fresh_pg_schema(request.getfixturevalue("postgres_url"), "mig") as (engine, _schema):
        yield engine


def _columns(engine: Engine) -> dict[str, list[str]]:
    with engine.connect() as conn:
        insp = inspect(conn)
        return {t: [c["name"] for c in insp.get_columns(t)] for t in ROWS}


def _revision_file(folder: Path, rev: str, body: str) -> Path:
    """Write an unshipped revision ``rev`` on top of head whose ``upgrade`` runs ``body``."""
    folder.mkdir(exist_ok=True)
    path = folder / f"{rev}_test.py"
    steps = textwrap.indent(textwrap.dedent(body).strip(), "    ")
    source = (
        f'"""test revision {rev}"""\n'
        "import sqlalchemy as sa\n"
        "from alembic import op\n\n"
        f"revision = {rev!r}\n"
        f"down_revision = {HEAD!r}\n"
        "branch_labels = None\n"
        "depends_on = None\n\n\n"
        f"def upgrade():\n{steps}\n\n\n"
        "def downgrade():\n    pass\n"
    )
    path.write_text(source, encoding="utf-8")
    return folder


def _version(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return read_status(conn).current


# --- the previous release's store -------------------------------------------------------------


def test_upgrade_with_previous_release_store_full_of_rows_keeps_every_row_and_the_chain(
    store: Engine,
) -> None:
    build_legacy_store(store)
    old_columns = _columns(store)
    with store.connect() as conn:
        before_raw = {t: raw_rows(conn, t, old_columns[t]) for t in ROWS}
        assert {t: typed_rows(conn, t) for t in ROWS} == ROWS  # the fixture went in exactly
    assert all(before_raw[t] for t in baseline_metadata().tables)  # every table has rows

    report = upgrade_db(store)

    assert (report.stamped, report.revision_before, report.revision) == (BASELINE, BASELINE, HEAD)
    # The tables revisions after the baseline added (0003: plan_leg; 0004: audit_anchor;
    # 0005: rate_weight, venue_ban), and nothing else.
    assert set(report.created) == set(LedgerTable.metadata.tables) - set(baseline_metadata().tables)
    with store.connect() as conn:
        after_raw = {t: raw_rows(conn, t, old_columns[t], at_head=True) for t in ROWS}
        assert after_raw == before_raw
        assert {t: typed_rows(conn, t, at_head=True) for t in ROWS} == ROWS
        # 0002: old positions are one-way legs; old reports never recorded a desk level
        sides = conn.exec_driver_sql("SELECT DISTINCT side FROM position_snapshot").all()
        assert sides == [("both",)]
        levels = conn.exec_driver_sql("SELECT DISTINCT desk_level FROM margin_report").all()
        assert levels == [(None,)]
        # 0003: plans numbered per call in the order they were made; old legs are unknown
        versions = conn.exec_driver_sql("SELECT id, version FROM plan ORDER BY id").all()
        assert versions == [("plan-1", 2), ("plan-b", 1), ("plan-c", 1)]
        new_columns = conn.exec_driver_sql(
            "SELECT plan_version, leg_no, route_id, owner, lease_expires_at FROM transfer"
        ).all()
        assert new_columns == [(None, None, None, None, None)]
        assert conn.exec_driver_sql("SELECT count(*) FROM plan_leg").scalar() == 0
        # 0004: the old chain was hashed with plain SHA-256, and says so
        schemes = conn.exec_driver_sql("SELECT DISTINCT hash_scheme FROM audit_event").all()
        assert schemes == [("sha256",)]
        # 0005: the shared rate window and venue bans start empty, with their CHECK in force
        for table in ("rate_weight", "venue_ban"):
            assert conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar() == 0
        # 0006: every old call is a margin call, and still the one open call of its pool
        kinds = conn.exec_driver_sql("SELECT id, kind, status FROM margin_call").all()
        assert kinds == [("call-1", "margin_call", "open")]
        assert read_status(conn).state == "current"
    with pytest.raises(IntegrityError, match="ck_rate_weight_weight_positive"), store.begin() as c:
        c.exec_driver_sql(
            "INSERT INTO rate_weight (venue_id, family, ts_ns, weight) VALUES ('sim-a', 'sapi', 1, 0)"
        )
    call = ("INSERT INTO margin_call (id, pool_id, venue_id, status, raised_at, target_ratio, "
            "deficit_usd, kind) VALUES ('{id}', 'sim-a.pm', 'sim-a', 'open', '2026-01-01', 0, 0, "
            "'{kind}')")  # fmt: skip
    with pytest.raises(IntegrityError, match="ck_margin_call_kind"), store.begin() as c:
        c.exec_driver_sql(call.format(id="call-x", kind="sweep"))
    # a second open margin call of the pool (SQLite names the columns, PostgreSQL the index)
    unique = r"uq_margin_call_open_pool_id|UNIQUE constraint failed: margin_call.pool_id"
    with pytest.raises(IntegrityError, match=unique), store.begin() as c:
        c.exec_driver_sql(call.format(id="call-2", kind="margin_call"))
    with store.begin() as c:  # an open pre-funding into the same pool is not a margin call
        c.exec_driver_sql(call.format(id="pf-1", kind="prefund"))
        c.exec_driver_sql("UPDATE margin_call SET status = 'applied' WHERE id = 'pf-1'")
    with Session(store) as s:
        verdict = verify_audit_chain(s, expected_head=(3, HASH_3))
        assert (verdict.ok, verdict.checked) == (True, 3), str(verdict)
        snapshot = load_snapshot(s, 1)
        assert latest_plan_version(s, "call-1") == 2
        with pytest.raises(DataError, match="before revision 0003"):  # no legs to execute
            load_plan(s, "call-1")
    assert [p.qty for p in snapshot.positions] == [Decimal("-3.5"), Decimal("2.5")]
    if store.dialect.name == "postgresql":  # the old views were dropped and re-created
        assert report.views == tuple(view_statements())
        with store.connect() as conn:
            delivered = conn.execute(text("SELECT delivered_usd FROM source_mix_per_call")).scalar()
        assert delivered == Decimal("50000")
    assert snapshot.balances[1].amount == Decimal("12345678901234567.123456789012345678")
    # Today's code extends the old chain with keyed events, and a second upgrade has nothing to do.
    key = AuditKey.from_text("desk-audit-key-" + "0" * 17, source="test")
    with session_scope(store) as s:
        append_audit_event(
            s, event_id="evt-after-upgrade", kind="PlanEscalated", ts_event=1, ts_init=2,
            payload={"reason": "post-upgrade"}, margin_call_id="call-1", key=key,
        )  # fmt: skip
    with Session(store) as s:
        verdict = verify_audit_chain(s, key=key)
    assert (verdict.ok, verdict.checked, verdict.plain, verdict.keyed) == (True, 4, 3, 1)
    again = upgrade_db(store)
    assert (again.applied, again.stamped, again.revision_before) == ((), None, HEAD)


@pytest.mark.parametrize(
    ("alteration", "named"),
    [
        ("ALTER TABLE transfer ADD COLUMN desk_note VARCHAR(3)", "column transfer.desk_note"),
        ("DROP TABLE recon_drift", "table recon_drift missing"),
        ("DROP INDEX ix_transfer_status", "index ix_transfer_status missing"),
    ],
)
def test_upgrade_with_tables_unlike_the_previous_release_is_refused_and_changes_nothing(
    store: Engine, alteration: str, named: str
) -> None:
    build_legacy_store(store)
    with store.begin() as conn:
        conn.exec_driver_sql(alteration)
        tables_before = sorted(inspect(conn).get_table_names())
    with pytest.raises(ConfigError, match="match no schema pmr knows") as caught:
        upgrade_db(store)
    assert named in str(caught.value)
    with pytest.raises(ConfigError, match="match no schema pmr knows"):
        init_db(store)
    with store.connect() as conn:
        assert sorted(inspect(conn).get_table_names()) == tables_before  # no alembic_version
        assert typed_rows(conn, "transfer") == ROWS["transfer"]


def test_upgrade_with_two_open_calls_for_one_pool_is_refused_naming_them_and_changes_nothing(
    store: Engine,
) -> None:
    """0003 allows one open margin call per pool; a store with two must be tidied first."""
    build_legacy_store(store)
    with store.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO margin_call (id, pool_id, venue_id, status, raised_at, target_ratio, "
            "deficit_usd) VALUES ('call-2', 'sim-a.pm', 'sim-a', 'open', "
            "'2026-03-12 09:31:00+00:00', 1.25, 100)"
        )
    with pytest.raises(PmrError, match="one open margin call") as caught:
        upgrade_db(store)
    assert "sim-a.pm: call-1, sim-a.pm: call-2" in str(caught.value)
    with store.connect() as conn:
        assert read_status(conn).current is None  # not even stamped: all or nothing
        assert "plan_leg" not in inspect(conn).get_table_names()
    with store.begin() as conn:
        conn.exec_driver_sql("UPDATE margin_call SET status = 'cancelled' WHERE id = 'call-2'")
    assert upgrade_db(store).revision == HEAD


def test_upgrade_with_store_at_revision_unknown_to_this_pmr_is_refused(store: Engine) -> None:
    init_db(store)
    with store.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    for run in (upgrade_db, init_db):
        with pytest.raises(ConfigError, match="revision 9999, which this pmr does not have"):
            run(store)
    assert _version(store) == "9999"


def test_upgrade_with_empty_database_is_refused_and_creates_no_table(store: Engine) -> None:
    with pytest.raises(ConfigError, match=r"no pmr store here .*`pmr db init` creates one"):
        upgrade_db(store)
    with store.connect() as conn:
        assert inspect(conn).get_table_names() == []


def test_init_db_with_memory_sqlite_leaves_foreign_keys_on_and_rollback_working() -> None:
    """The migration borrows StaticPool's one connection in autocommit mode; it gives it back."""
    engine = make_engine("sqlite://")
    init_db(engine)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1

    def book_venue_then_orphan_wallet() -> None:
        with session_scope(engine) as s:
            s.add(VenueRow(id="sim-a", exchange="sim", mode="sim", created_at=T0))
            s.flush()
            s.add(WalletRow(venue_id="no-such-venue", account="main", kind="spot"))

    with pytest.raises(IntegrityError):
        book_venue_then_orphan_wallet()
    with Session(engine) as s:
        assert s.get(VenueRow, "sim-a") is None  # the whole transaction rolled back


def test_init_with_empty_database_applies_every_revision_then_nothing(store: Engine) -> None:
    first = init_db(store)
    assert first.revision_before is None
    assert first.applied == tuple(
        reversed([s.revision for s in script_directory().walk_revisions()])
    )
    assert set(first.created) == set(LedgerTable.metadata.tables)
    second = init_db(store)
    assert (second.applied, second.created, second.revision) == ((), (), HEAD)


# --- atomicity ----------------------------------------------------------------------------------


def test_upgrade_with_failing_revision_rolls_back_the_stamp_and_every_step(
    store: Engine, tmp_path: Path
) -> None:
    build_legacy_store(store)
    extra = _revision_file(
        tmp_path / "versions",
        "9001",
        """
        op.add_column("transfer", sa.Column("desk_note", sa.String(8)))
        op.execute("INSERT INTO venue (id) VALUES ('half-done')")  # NOT NULL columns missing
        """,
    )
    with pytest.raises(ConfigError, match="cannot upgrade the store"):
        migrate_store(store, create=False, extra_version_locations=[extra])
    with store.connect() as conn:
        assert "alembic_version" not in inspect(conn).get_table_names()  # stamp rolled back
        assert "desk_note" not in [c["name"] for c in inspect(conn).get_columns("transfer")]
        assert typed_rows(conn, "venue") == ROWS["venue"]


def test_upgrade_with_revision_orphaning_rows_is_rolled_back(store: Engine, tmp_path: Path) -> None:
    """SQLite runs migrations with foreign keys off; the check before COMMIT catches orphans."""
    build_legacy_store(store)
    init_db(store)
    extra = _revision_file(tmp_path / "v", "9001", 'op.execute("DELETE FROM plan_step")')
    with pytest.raises(PmrError, match=r"pointing at missing parents|FOREIGN KEY|foreign key"):
        migrate_store(store, create=False, extra_version_locations=[extra])
    assert _version(store) == HEAD
    with store.connect() as conn:
        assert typed_rows(conn, "plan_step") == ROWS["plan_step"]


def _constraints(engine: Engine, table: str) -> dict[str, object]:
    with engine.connect() as conn:
        insp = inspect(conn)
        return {
            "pk": insp.get_pk_constraint(table)["name"],
            "fks": sorted(
                (fk["name"], tuple(fk["constrained_columns"]), fk["referred_table"])
                for fk in insp.get_foreign_keys(table)
            ),
            "uniques": sorted(u["name"] for u in insp.get_unique_constraints(table)),
            "checks": sorted(
                (c["name"], re.sub(r"\W+", " ", c["sqltext"]).strip().lower())
                for c in insp.get_check_constraints(table)
            ),
            "indexes": sorted(str(i["name"]) for i in insp.get_indexes(table)),
        }


def test_batch_migration_of_referenced_table_keeps_rows_keys_and_checks(
    store: Engine, tmp_path: Path
) -> None:
    """A type change copies ``plan_step`` on SQLite (batch mode) while ``transfer`` points at it."""
    build_legacy_store(store)
    init_db(store)
    before = {t: _constraints(store, t) for t in ("plan_step", "transfer")}
    with store.connect() as conn:
        rows = {t: raw_rows(conn, t, _columns(store)[t]) for t in ("plan_step", "transfer")}
    extra = _revision_file(
        tmp_path / "v",
        "9001",
        """
        with op.batch_alter_table("plan_step") as batch:
            batch.alter_column("source_id", type_=sa.String(160), existing_nullable=False)
        """,
    )
    report = migrate_store(store, create=False, extra_version_locations=[extra])
    assert report.applied == ("9001",)
    assert {t: _constraints(store, t) for t in ("plan_step", "transfer")} == before
    with store.connect() as conn:
        assert {t: raw_rows(conn, t, _columns(store)[t]) for t in rows} == rows
        source_id = next(
            c for c in inspect(conn).get_columns("plan_step") if c["name"] == "source_id"
        )
        assert getattr(source_id["type"], "length", None) == 160
    with store.connect() as conn, pytest.raises(IntegrityError):  # foreign keys enforced again
        conn.execute(text("UPDATE transfer SET step_no = 7 WHERE id = 1"))


# --- the schema at head is the models' schema ----------------------------------------------------


def test_models_with_store_at_head_have_no_autogenerate_differences(store: Engine) -> None:
    init_db(store)
    with store.connect() as conn:
        assert model_differences(conn) == []


def test_models_with_a_column_missing_from_the_store_are_detected(store: Engine) -> None:
    """The check can fail: a store lacking a model column is what a forgotten revision looks like."""
    init_db(store)
    with store.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE transfer DROP COLUMN error_message")
    with store.connect() as conn:
        differences = model_differences(conn)
    assert [(d[0], d[2], d[3].name) for d in differences] == [  # type: ignore[index]
        ("add_column", "transfer", "error_message")
    ]


def _sqlite_catalog(engine: Engine) -> dict[str, object]:
    with engine.connect() as conn:
        insp = inspect(conn)
        tables = sorted(t for t in insp.get_table_names() if t != "alembic_version")
        # Sorted: a migration appends a new column, the models may declare it anywhere.
        columns = {
            t: sorted(
                (c["name"], str(c["type"]), c["nullable"], c["default"])
                for c in insp.get_columns(t)
            )
            for t in tables
        }
    return {"columns": columns, **{t: _constraints(engine, t) for t in tables}}


def test_sqlite_store_migrated_to_head_has_the_models_catalog(tmp_path: Path) -> None:
    migrated = make_engine(f"sqlite:///{tmp_path / 'migrated.db'}")
    init_db(migrated)
    built = create_engine(f"sqlite:///{tmp_path / 'models.db'}")
    LedgerTable.metadata.create_all(built)
    assert _sqlite_catalog(migrated) == _sqlite_catalog(built)
    migrated.dispose()
    built.dispose()


def test_baseline_on_sqlite_writes_the_previous_release_ddl_verbatim(tmp_path: Path) -> None:
    engine = create_engine("sqlite://")
    baseline_metadata().create_all(engine)
    with engine.connect() as conn:
        ours = {
            r[0]
            for r in conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL")
        }

    def norm(sql: str) -> str:
        return re.sub(r"\s+", " ", sql).strip()

    theirs = re.sub(r"^--.*$", "", legacy_ddl("sqlite"), flags=re.MULTILINE)
    assert {norm(s) for s in ours} == {norm(s) for s in theirs.split(";") if s.strip()}


# --- history and developer commands ----------------------------------------------------------


def test_history_with_shipped_revisions_is_linear_and_numbered_from_baseline() -> None:
    revisions = list(reversed(list(script_directory().walk_revisions())))
    assert revisions[0].revision == BASELINE
    assert [r.revision for r in revisions] == [f"{i:04d}" for i in range(1, len(revisions) + 1)]
    assert all(r.down_revision == p.revision for p, r in itertools.pairwise(revisions))
    assert next_revision_id() == f"{int(HEAD) + 1:04d}"


def test_render_item_with_our_column_types_writes_plain_sqlalchemy_and_coltypes() -> None:
    from alembic.autogenerate.api import AutogenContext
    from alembic.runtime.migration import MigrationContext
    from sqlmodel.sql.sqltypes import AutoString

    from core.ledger.coltypes import JsonPayload, Money, UtcDateTime

    with create_engine("sqlite://").connect() as conn:
        ctx = AutogenContext(MigrationContext.configure(conn), autogenerate=False)
    types = (AutoString(16), Money(), UtcDateTime(), JsonPayload())
    rendered = [render_item("type", t, ctx) for t in types]
    assert rendered == [
        "sa.String(16)",
        "coltypes.Money()",
        "coltypes.UtcDateTime()",
        "coltypes.JsonPayload()",
    ]
    assert ctx.imports == {"from core.ledger import coltypes"}
    assert render_item("column", AutoString(16), ctx) is False


def test_developer_commands_with_committed_tree_report_everything_in_step(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert migrations_main(["check"]) == 0
    assert migrations_main(["schema-sql", "--check"]) == 0
    assert migrations_main(["history"]) == 0
    out = capsys.readouterr().out
    assert f"models match revision {HEAD}" in out
    assert "is up to date" in out
    assert f"{BASELINE}  Baseline: the store exactly as the previous release" in out


# --- concurrency ---------------------------------------------------------------------------------


def test_init_from_four_threads_at_once_applies_each_revision_once(store: Engine) -> None:
    barrier = threading.Barrier(4)
    applied: list[tuple[str, ...]] = []
    errors: list[BaseException] = []

    def run() -> None:
        engine = (
            make_engine(store.url.render_as_string(hide_password=False))
            if store.dialect.name == "sqlite"
            else store
        )
        barrier.wait()
        try:
            applied.append(init_db(engine).applied)
        except BaseException as exc:  # collected and asserted on
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(applied) == [
        (),
        (),
        (),
        tuple(reversed([s.revision for s in script_directory().walk_revisions()])),
    ]


@pytest.mark.parametrize(
    ("current", "known", "tables", "state", "line"),
    [
        (None, False, (), "empty", "schema revision: none (no pmr tables); run `pmr db init`"),
        (None, False, ("venue",), "unversioned",
         "schema revision: none recorded (a store of the previous release?); run `pmr db upgrade`"),
        ("0002", True, ("venue",), "current", "schema revision: 0002 (head)"),
        ("0001", True, ("venue",), "behind",
         "schema revision: 0001, behind head 0002; run `pmr db upgrade`"),
        ("0003", False, ("venue",), "unknown",
         "schema revision: 0003, unknown to this pmr (head 0002): a newer pmr upgraded this "
         "store; use that version"),
    ],
)  # fmt: skip
def test_schema_status_with_each_state_says_what_to_do(
    current: str | None, known: bool, tables: tuple[str, ...], state: str, line: str
) -> None:
    status = SchemaStatus(current=current, head="0002", known=known, tables=tables)
    assert (status.state, str(status)) == (state, line)


def test_read_status_with_store_behind_an_unshipped_revision_reports_behind(
    tmp_path: Path,
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'pmr.db'}")
    init_db(engine)
    extra = _revision_file(tmp_path / "v", "9001", "pass")
    with engine.connect() as conn:
        cfg = alembic_config(extra_version_locations=[extra])
        status = read_status(conn, script_directory(cfg))
    engine.dispose()
    assert (status.current, status.head, status.state) == (HEAD, "9001", "behind")
